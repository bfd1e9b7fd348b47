//! The `vitals` binary: the command line over the server library (`vitals-server`).
//!
//! `cli` parses the arguments, `commands` runs one subcommand each (serve, demo, simulate,
//! ingest, query, admin, bench), `client` talks to a running server for `--url`.

mod cli;
mod client;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: a flush or a compaction frees large arrays, and
/// glibc kept that memory in its heaps (the demo stayed near 360 MB after its backfill);
/// mimalloc gives it back to the OS (about 200 MB). See docs/raspberry-pi.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
