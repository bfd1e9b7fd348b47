//! The `vitals` binary: the command line over the server library (`vitals-server`).
//!
//! `cli` parses the arguments, `commands` runs one subcommand each (serve, demo, simulate,
//! ingest, query, admin, bench), `client` talks to a running server for `--url`.

mod cli;
mod client;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
