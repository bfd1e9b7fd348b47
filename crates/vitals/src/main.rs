//! The `vitals` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vitals::cli::Cli::parse();
    match vitals::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
