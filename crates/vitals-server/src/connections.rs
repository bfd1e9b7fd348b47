//! The puller of vendor clouds: a thread that, every quarter second, takes the connections
//! that are due (in cluster mode only those of patients whose bucket this node owns),
//! opens their credentials with the vault, pulls (`vitals_cloud::pull`), takes what came
//! through the pipeline like any other way in (source `cloud/<vendor>`: per-item refusals,
//! dead letters), waits until it is durable, and only then moves the connection's cursor
//! and records the outcome and when to try next (`vitals_cloud::next_attempt`: the
//! vendor's polling pace, backoff on failures, a pause when the credentials are refused).
//! A session the vendor gave is sealed and kept, so a restart does not sign in again.

use std::time::Duration;

use vitals_cloud::{Client, CloudError, Credentials};
use vitals_core::PatientId;

use crate::app::AppState;
use crate::connection_store::{Connection, Status, SyncState};
use crate::shutdown::Shutdown;
use crate::source::pipeline::Submission;
use crate::source::wire_format::WireFormat;

/// How often due connections are looked for.
const TICK: Duration = Duration::from_millis(250);

/// Starts the puller unless `[connections] enabled = false`.
pub(crate) fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !app.config.connections.enabled {
        return Ok(None);
    }
    let client = app.config.connections.client();
    let thread = std::thread::Builder::new().name("vitals-connections".into()).spawn(move || {
        loop {
            let now = app.clock.now_ms();
            for c in app.connections.due(now) {
                let mine = app.cluster.as_ref().is_none_or(|cl| cl.ownership.owns(&c.patient));
                if mine && !shutdown.is_triggered() {
                    sync_one(&app, &client, &c);
                }
            }
            if shutdown.wait_timeout(TICK) {
                return;
            }
        }
    })?;
    Ok(Some(thread))
}

/// Opens a connection's credentials.
fn credentials(app: &AppState, c: &Connection) -> Result<Credentials, String> {
    let plain = app
        .vault
        .open_secret(&Connection::context(&c.patient, c.vendor), &c.secret)
        .map_err(|e| format!("the credentials cannot be opened: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("the credentials cannot be read: {e}"))
}

/// Seals and keeps changed credentials (a new session), or ones sealed under an older key.
fn keep_credentials(app: &AppState, c: &Connection, creds: &Credentials) -> Result<(), String> {
    let plain = serde_json::to_vec(creds).map_err(|e| e.to_string())?;
    let sealed =
        app.vault.seal_secret(&Connection::context(&c.patient, c.vendor), &plain).map_err(|e| e.to_string())?;
    app.connections.set_secret(&c.patient, c.vendor, sealed).map_err(|e| e.to_string())
}

/// One pull of one connection, start to end; the outcome is recorded in its state.
pub(crate) fn sync_one(app: &AppState, client: &Client, c: &Connection) {
    let now = app.clock.now_ms();
    let mut state = SyncState { last_attempt_ms: Some(now), ..c.state.clone() };
    let outcome = pull_and_store(app, client, c, &mut state);
    match &outcome {
        Ok(()) => {
            state.failures = 0;
            state.last_success_ms = Some(now);
            state.last_error = None;
            state.status = Status::Active;
        }
        Err(e) => {
            state.failures = state.failures.saturating_add(1);
            state.last_error = Some(e.to_string());
            if matches!(e, CloudError::Credentials(_)) {
                state.status = Status::NeedsAttention;
            }
            app.telemetry.connection_pull_failures.inc();
            tracing::warn!(patient = %c.patient, vendor = %c.vendor, error = %e, failures = state.failures, "vendor pull failed");
        }
    }
    state.next_attempt_ms =
        vitals_cloud::next_attempt(c.vendor, app.clock.now_ms(), outcome.as_ref().map(|_| ()), state.failures);
    if let Err(e) = app.connections.set_state(&c.patient, c.vendor, state) {
        // Deleted meanwhile, or the store failed: the next round sees.
        tracing::warn!(patient = %c.patient, vendor = %c.vendor, error = %e, "recording a pull's outcome");
    }
    // Counted once the outcome is recorded.
    app.telemetry.connection_pulls.inc();
}

fn pull_and_store(app: &AppState, client: &Client, c: &Connection, state: &mut SyncState) -> Result<(), CloudError> {
    let mut creds = credentials(app, c).map_err(CloudError::Credentials)?;
    let before = creds.clone();
    let pulled = vitals_cloud::pull(client, c.vendor, &mut creds, state.newest_ms, app.clock.now_ms());
    if creds != before || c.secret.key_id != app.vault.primary_key_id() {
        keep_credentials(app, c, &creds).map_err(|e| CloudError::Unavailable(format!("keeping the session: {e}")))?;
    }
    for body in pulled? {
        store(app, c, body, state)?;
    }
    Ok(())
}

/// Takes one answer through the pipeline and waits until it is durable; then the cursor moves.
fn store(app: &AppState, c: &Connection, body: Vec<u8>, state: &mut SyncState) -> Result<(), CloudError> {
    let patient = PatientId::new(&c.patient).map_err(|e| CloudError::Protocol(format!("patient: {e}")))?;
    let sub = Submission::new(format!("cloud/{}", c.vendor), WireFormat::Cloud(c.vendor), body).patient(Some(patient));
    let context = [("vendor", c.vendor.name().to_owned())];
    let accepted = match app.pipeline.decode_with(&sub, &context) {
        Ok(a) => a,
        // Kept as a dead letter; the rest of the pull still counts.
        Err(crate::source::pipeline::IngestError::Undecodable { message, .. }) => {
            return Err(CloudError::Protocol(message));
        }
        Err(e) => return Err(CloudError::Unavailable(format!("storing: {e}"))),
    };
    let newest = accepted.samples.iter().map(|s| s.time_ms).max();
    // Vendors answer overlapping windows: count what is newer than the cursor.
    let n = accepted.samples.iter().filter(|s| state.newest_ms.is_none_or(|c| s.time_ms > c)).count() as u64;
    let durable = app.pipeline.submit(accepted).and_then(|p| p.wait());
    durable.map_err(|e| CloudError::Unavailable(format!("storing: {e}")))?;
    state.newest_ms = state.newest_ms.max(newest);
    state.readings += n;
    Ok(())
}
