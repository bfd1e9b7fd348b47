//! `vitals bench`: placeholder until the benchmark lands.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_config: &crate::config::Config, _a: &BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
