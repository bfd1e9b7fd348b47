//! One shutdown signal for every task: async tasks await [`Shutdown::triggered`], threads
//! look at [`Shutdown::is_triggered`] or sleep in [`Shutdown::wait_timeout`], which wakes
//! at once when the signal comes.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// A clonable handle on the signal.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    flag: Mutex<bool>,
    threads: Condvar,
    tasks: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("triggered", &self.is_triggered()).finish()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tasks, _) = tokio::sync::watch::channel(false);
        Shutdown { inner: Arc::new(Inner { flag: Mutex::new(false), threads: Condvar::new(), tasks }) }
    }

    /// Signals every holder; later calls do nothing.
    pub fn trigger(&self) {
        let mut flag = self.inner.flag.lock();
        if !*flag {
            *flag = true;
            self.inner.threads.notify_all();
            self.inner.tasks.send_replace(true);
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.inner.flag.lock()
    }

    /// Sleeps up to `timeout` or until the signal; returns whether it came.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut flag = self.inner.flag.lock();
        if !*flag {
            self.inner.threads.wait_for(&mut flag, timeout);
        }
        *flag
    }

    /// Resolves once the signal came.
    pub async fn triggered(&self) {
        let mut rx = self.inner.tasks.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = rx.wait_for(|t| *t).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing requests and flushing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_and_tasks_wake_when_the_signal_comes() {
        let s = Shutdown::new();
        assert!(!s.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_timeout(Duration::from_secs(60)))
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let task = {
            let s = s.clone();
            rt.spawn(async move { s.triggered().await })
        };
        s.trigger();
        assert!(waiter.join().expect("thread"), "the thread woke for the signal, not the timeout");
        rt.block_on(task).expect("task");
        assert!(s.is_triggered());
        // Late subscribers see it at once.
        rt.block_on(s.triggered());
    }
}
