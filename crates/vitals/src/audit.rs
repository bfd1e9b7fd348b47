//! Recording to the audit log from the server (the chain itself is `vitals_meta::audit`).

use vitals_meta::AuditEvent;

use crate::server::AppState;

/// Appends an entry durably (off the async workers: it waits for the disk).
pub async fn record(app: &AppState, event: AuditEvent) -> anyhow::Result<()> {
    let meta = app.directory.meta_arc();
    tokio::task::spawn_blocking(move || meta.append_audit(&event)).await??;
    Ok(())
}

/// An entry made by a principal of a request.
pub fn event(
    who: &crate::auth::Principal,
    now_ms: i64,
    action: &str,
    patient: Option<&str>,
    target: &str,
    origin: &str,
) -> AuditEvent {
    AuditEvent {
        ts_ms: now_ms,
        actor: who.actor.clone(),
        action: action.to_owned(),
        patient: patient.map(str::to_owned),
        target: target.to_owned(),
        origin: origin.to_owned(),
        outcome: "ok".to_owned(),
    }
}
