//! `vitals admin notifications`: list, show and replay notices of the outbox.

use std::process::ExitCode;

use vitals_core::time::format_time;
use vitals_core::{Clock, SystemClock};
use vitals_server::config::Config;
use vitals_server::stores;

use super::{pretty, remote};
use crate::cli::NotificationCommand;

pub(crate) fn notifications(config: &Config, cmd: NotificationCommand) -> anyhow::Result<ExitCode> {
    use vitals_alerts::NoticeState;
    match cmd {
        NotificationCommand::List { state, limit, remote: r } => {
            let parsed = match &state {
                Some(s) => Some(
                    NoticeState::parse(s)
                        .ok_or_else(|| anyhow::anyhow!("--state: pending, delivered, dead or withdrawn"))?,
                ),
                None => None,
            };
            if let Some(c) = remote(&r)? {
                let q = state.map(|s| format!("&state={s}")).unwrap_or_default();
                println!("{}", pretty(&c.get(&format!("/api/v1/notifications?limit={limit}{q}"), "application/json")?));
            } else {
                let alerts = stores::open_alerts(config)?;
                for n in alerts.notices(parsed, None, limit) {
                    let state = serde_json::to_value(n.state)?.as_str().unwrap_or_default().to_owned();
                    println!(
                        "{}  {}  {:<9} {:<8} {:<16} {:>2}  {}{}",
                        n.id,
                        format_time(n.created_ms),
                        state,
                        n.channel.as_str(),
                        n.contact,
                        n.attempts,
                        n.subject,
                        n.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        NotificationCommand::Show { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.get(&format!("/api/v1/notifications/{id}"), "application/json")?));
            } else {
                let n = stores::open_alerts(config)?.notice(&id).ok_or_else(|| anyhow::anyhow!("no notice {id:?}"))?;
                println!("{}", serde_json::to_string_pretty(&vitals_server::api::notifications_api::render(&n))?);
            }
        }
        NotificationCommand::Replay { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!(
                    "{}",
                    pretty(&c.post(&format!("/api/v1/notifications/{id}/replay"), "application/json", b"")?)
                );
            } else {
                // The data directory's lock: no server may be running on it meanwhile.
                let store = stores::open_store(config)?;
                let n = stores::open_alerts(config)?.replay_notice(&id, SystemClock.now_ms())?;
                println!("{}", serde_json::to_string_pretty(&vitals_server::api::notifications_api::render(&n))?);
                eprintln!("back in the outbox; the server delivers it when it runs");
                store.close()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
