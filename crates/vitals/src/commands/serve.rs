//! `vitals serve`: the server on a data directory until SIGINT/SIGTERM, then a clean stop
//! (requests finished, the buffer flushed).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use vitals_core::{Clock, SystemClock};
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::{runtime, shutdown, stores, tls};

use crate::cli::ServeArgs;

pub(crate) fn serve(config: Config, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = stores::open_store(&config)?;
        let tokens = Directory::open(&config.storage.data_dir)?;
        if tokens.is_empty()? {
            let preset = vitals_server::config::initial_admin_token();
            let (_, secret) = tokens.create("initial admin", Role::Admin, preset.as_deref(), None, clock.now_ms())?;
            if preset.is_none() {
                println!("admin token (shown once, store it safely): {secret}");
            } else {
                println!("admin token set from VITALS_ADMIN_TOKEN");
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if tls::enabled(&config) { "https" } else { "http" };
        println!("vitals listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.storage.data_dir.display(), "serving");
        let app = Arc::new(App::open(store.clone(), tokens, config, clock)?);
        runtime::serve(listener, app, shutdown::os_signal()).await?;
        tokio::task::spawn_blocking(move || store.close()).await?.context("flushing the store at shutdown")?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}
