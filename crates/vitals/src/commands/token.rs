//! `vitals admin token`: create, list and revoke API tokens, offline or through a server.

use std::process::ExitCode;

use anyhow::bail;
use vitals_core::time::format_time;
use vitals_core::{Clock, SystemClock};
use vitals_server::auth::Directory;
use vitals_server::config::Config;

use super::{remote, url_escape};
use crate::cli::TokenCommand;

pub(crate) fn token(config: &Config, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create { role, name, user, device, patient, expires_in, remote: r } => {
            if let Some(c) = remote(&r)? {
                let body = serde_json::json!({"name": name, "role": role, "user": user, "device": device,
                    "patient": patient, "expires_in": expires_in.map(|d| d.to_string())})
                .to_string();
                let v: serde_json::Value =
                    serde_json::from_str(&c.post("/api/v1/tokens", "application/json", body.as_bytes())?)?;
                println!("{}", v.get("token").and_then(|t| t.as_str()).unwrap_or_default());
            } else {
                let tokens = Directory::open_for(config)?;
                let now = SystemClock.now_ms();
                let new = vitals_server::auth::NewToken {
                    name: &name,
                    role,
                    user: user.as_deref(),
                    device: device.as_deref(),
                    patient: patient.as_deref(),
                    expires_ms: expires_in.map(|d| now + d.as_ms()),
                    secret: None,
                };
                let (rec, secret) = tokens.create_token(&new, now)?;
                super::admin::cli_audit(&tokens, "token.create", None, &format!("token {}", rec.id))?;
                eprintln!("created {} token {} ({}); it is shown only this once:", rec.role.as_str(), rec.id, rec.name);
                println!("{secret}");
            }
        }
        TokenCommand::List { remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", c.get("/api/v1/tokens", "application/json")?);
            } else {
                let now = SystemClock.now_ms();
                for t in Directory::open_for(config)?.list()? {
                    let state = if t.revoked_ms.is_some() {
                        "revoked"
                    } else if t.is_live(now) {
                        "live"
                    } else {
                        "expired"
                    };
                    let owner = t.user_id.clone().or_else(|| t.patient.clone().map(|p| format!("patient {p}")));
                    println!(
                        "{}  {:<9} {:<7} {}  {}  {}",
                        t.id,
                        t.role.as_str(),
                        state,
                        format_time(t.created_ms),
                        t.name,
                        owner.unwrap_or_default()
                    );
                }
            }
        }
        TokenCommand::Revoke { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                c.delete(&format!("/api/v1/tokens/{}", url_escape(&id)))?;
            } else {
                let d = Directory::open_for(config)?;
                if !d.revoke(&id, SystemClock.now_ms())? {
                    bail!("no live token {id:?}");
                }
                super::admin::cli_audit(&d, "token.revoke", None, &format!("token {id}"))?;
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
