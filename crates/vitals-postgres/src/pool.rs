//! A small pool of PostgreSQL connections for synchronous callers.
//!
//! The `postgres` client blocks on a runtime of its own, which tokio forbids on a thread
//! that drives tasks (the server's handlers call the stores from such threads, as they call
//! SQLite). So a call made inside a tokio runtime runs on a scoped thread, which may borrow
//! the caller's arguments; elsewhere it runs in place. Connections are opened lazily, up to
//! `size`; one that broke is dropped and the next call opens a new one. Nothing is retried
//! here: whether a statement may run twice is the store's decision.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use postgres::{Client, NoTls};

use crate::PgError;

/// How long a call waits for a free connection before it gives up.
const WAIT: Duration = Duration::from_secs(10);

/// Connections to one database, all with the same `search_path`.
pub struct Pool {
    config: postgres::Config,
    /// Where the connection goes, without credentials (for errors and logs).
    target: String,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Client>,
    /// Connections open or being opened, idle or in use.
    open: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("target", &self.target).field("size", &self.size).finish()
    }
}

/// Runs `f` where the `postgres` client may block: on a scoped thread inside a tokio
/// runtime, in place elsewhere.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, PgError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(f());
    }
    std::thread::scope(|s| s.spawn(f).join()).map_err(|_| PgError::Panicked)
}

impl Pool {
    /// A pool for `url` (a `postgres://` URL or a `key=value` connection string) whose
    /// connections use `schema`. Connects once to check, and keeps that connection.
    pub fn connect(url: &str, schema: &str, size: usize) -> Result<Arc<Pool>, PgError> {
        crate::check_identifier(schema)?;
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| PgError::Config(e.to_string()))?;
        config.options(&format!("-c search_path={schema}"));
        config.application_name("vitals");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let target = format!(
            "postgres {}:{}/{}",
            config.get_hosts().first().map(host_name).unwrap_or_default(),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("")
        );
        let pool =
            Arc::new(Pool { config, target, size: size.max(1), state: Default::default(), freed: Condvar::new() });
        pool.with(|_| Ok(()))?;
        Ok(pool)
    }

    /// Where the pool connects, without credentials.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a connection of the pool.
    pub fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, PgError> {
        let idle = self.take()?;
        let config = &self.config;
        let outcome = off_runtime(move || {
            let mut client = match idle {
                Some(c) => c,
                None => match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&mut client);
            if client.is_closed() {
                drop(client); // here, off the runtime: dropping a client blocks
                (None, result)
            } else {
                (Some(client), result)
            }
        });
        let (client, result) = match outcome {
            Ok(pair) => pair,
            Err(e) => {
                self.give_back(None);
                return Err(e);
            }
        };
        self.give_back(client);
        result.map_err(|source| PgError::db(&self.target, source))
    }

    /// An idle connection, or `None` when the caller may open one.
    fn take(&self) -> Result<Option<Client>, PgError> {
        let mut state = self.state.lock();
        loop {
            if let Some(c) = state.idle.pop() {
                return Ok(Some(c));
            }
            if state.open < self.size {
                state.open += 1;
                return Ok(None);
            }
            if self.freed.wait_for(&mut state, WAIT).timed_out() {
                return Err(PgError::Busy { target: self.target.clone(), waited: WAIT });
            }
        }
    }

    fn give_back(&self, client: Option<Client>) {
        let mut state = self.state.lock();
        match client {
            Some(c) => state.idle.push(c),
            None => state.open -= 1,
        }
        drop(state);
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().idle);
        // Closing a connection blocks; the pool may be dropped on a tokio worker.
        let _ = off_runtime(move || drop(idle));
    }
}

fn host_name(h: &postgres::config::Host) -> String {
    match h {
        postgres::config::Host::Tcp(name) => name.clone(),
        postgres::config::Host::Unix(path) => path.display().to_string(),
    }
}
