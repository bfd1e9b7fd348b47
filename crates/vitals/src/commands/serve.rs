//! `vitals serve`: the server on a data directory until SIGINT/SIGTERM, then a clean stop
//! (requests finished, the buffer flushed).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use vitals_server::app::App;
use vitals_server::auth::Role;
use vitals_server::config::Config;
use vitals_server::{runtime, shutdown, tls};

use crate::cli::ServeArgs;

pub(crate) fn serve(config: Config, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let app = App::open_data_dir(config)?;
        let tokens = &app.directory;
        if tokens.is_empty()? {
            let preset = vitals_server::config::initial_admin_token();
            let now = app.clock.now_ms();
            let created = tokens.create("initial admin", Role::Admin, preset.as_deref(), None, now);
            // Cluster nodes starting together with the same preset: one of them made it.
            if preset.is_some()
                && let Err(e) = &created
                && e.to_string().contains("already exists")
            {
                println!("admin token set from VITALS_ADMIN_TOKEN (by another node)");
            } else if preset.is_none() {
                let (_, secret) = created?;
                println!("admin token (shown once, store it safely): {secret}");
            } else {
                created?;
                println!("admin token set from VITALS_ADMIN_TOKEN");
            }
        }
        let config = &app.config;
        let listener = tokio::net::TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if tls::enabled(config) { "https" } else { "http" };
        println!("vitals listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.storage.data_dir.display(), "serving");
        // Stopping flushes the store too.
        runtime::serve(listener, Arc::new(app), shutdown::os_signal()).await?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}
