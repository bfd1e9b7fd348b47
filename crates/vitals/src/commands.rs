//! The commands: each subcommand in its own file under `commands/`; here the dispatch,
//! logging, and what several of them share (talking to a running server).

pub(crate) mod admin;
pub(crate) mod bench;
pub(crate) mod dead_letters;
pub(crate) mod demo;
pub(crate) mod ingest;
pub(crate) mod notifications;
pub(crate) mod query;
pub(crate) mod serve;
pub(crate) mod simulate;
pub(crate) mod sql;
pub(crate) mod token;

use std::process::ExitCode;

use vitals_server::config::{Config, Overrides};

use crate::cli::{AdminCommand, Cli, Command, RemoteArgs};
use crate::client::Client;

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides { data_dir: cli.data_dir.clone(), ..Overrides::default() };
    if let Command::Serve(a) = &cli.command {
        overrides.listen = a.listen.clone();
        overrides.repair_wal = a.repair_wal;
    }
    if let Command::Demo(a) = &cli.command {
        overrides.listen = a.listen.clone();
        overrides.data_dir = Some(cli.data_dir.clone().unwrap_or_else(demo::default_data_dir));
    }
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    init_logging(&config, matches!(cli.command, Command::Serve(_)));
    match cli.command {
        Command::Serve(a) => serve::serve(config, &a),
        Command::Query(a) => query::query(&config, &a),
        Command::Sql(a) => sql::sql(config, &a),
        Command::Lake { command } => sql::lake(&config, command),
        Command::Ingest(a) => ingest::ingest(&config, &a),
        Command::Admin(a) => match a.command {
            AdminCommand::Token { command } => token::token(&config, command),
            AdminCommand::User { command } => admin::user(&config, command),
            AdminCommand::Team { command } => admin::team(&config, command),
            AdminCommand::Patient { command } => admin::patient(&config, command),
            AdminCommand::Audit { command } => admin::audit(&config, command),
            AdminCommand::Device { command } => admin::device(&config, command),
            AdminCommand::Vault { command } => admin::vault(&config, command),
            AdminCommand::DeadLetters { command } => dead_letters::dead_letters(&config, command),
            AdminCommand::Notifications { command } => notifications::notifications(&config, command),
        },
        Command::Bench(a) => bench::run(&config, &a),
        Command::Simulate(a) => simulate::run(&a),
        Command::Demo(a) => demo::run(config, &a),
    }
}

fn init_logging(config: &Config, server: bool) {
    let default = if server { config.log.level.clone() } else { "warn".to_owned() };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log.format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// A client of the server at `--url`, if one was given.
pub(crate) fn remote(r: &RemoteArgs) -> anyhow::Result<Option<Client>> {
    r.url.as_deref().map(|u| Client::new(u, r.token.as_deref())).transpose()
}

/// Percent-encodes a URL path segment or query value.
pub(crate) fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON answer of the server, indented (other text as it is).
pub(crate) fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
