//! `vitals admin dead-letters`: list, show, replay and purge refused input.

use std::process::ExitCode;

use vitals_core::time::format_time;
use vitals_server::config::Config;
use vitals_server::stores;

use super::{pretty, remote};
use crate::cli::DeadLetterCommand;

pub(crate) fn dead_letters(config: &Config, cmd: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeadLetterCommand::List { after, limit, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!(
                    "{}",
                    pretty(&c.get(&format!("/api/v1/dead-letters?after={after}&limit={limit}"), "application/json")?)
                );
            } else {
                let dead = stores::open_dead_letters(config)?;
                for d in dead.list(after, limit) {
                    println!("{:>6}  {}  {:<14} {:<13} {}", d.id, format_time(d.time_ms), d.source, d.format, d.reason);
                }
                eprintln!("{} kept, {} dropped because the store was full", dead.len(), dead.dropped());
            }
        }
        DeadLetterCommand::Show { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.get(&format!("/api/v1/dead-letters/{id}"), "application/json")?));
            } else {
                let (meta, raw) = stores::open_dead_letters(config)?.get(id)?;
                println!("{}", serde_json::to_string_pretty(&meta)?);
                println!("--- raw ({} bytes) ---", raw.len());
                println!("{}", String::from_utf8_lossy(&raw));
            }
        }
        DeadLetterCommand::Replay { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.post(&format!("/api/v1/dead-letters/{id}/replay"), "application/json", b"")?));
            } else {
                let (store, pipeline) = stores::open_pipeline(config)?;
                let r = pipeline.replay(id)?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                store.close()?;
            }
        }
        DeadLetterCommand::Purge { remote: r } => {
            if let Some(c) = remote(&r)? {
                c.delete("/api/v1/dead-letters")?;
                eprintln!("purged");
            } else {
                eprintln!("purged {} dead letters", stores::open_dead_letters(config)?.purge()?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
