//! Operating the server: health, Prometheus metrics, the admin view's system summary, the
//! file-drop ledger and device certificates.

use axum::Json;
use axum::extract::State;

use crate::api::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vitals_core::time::format_time;

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::telemetry::LoadLabel;

/// `GET /healthz`: 200 while storage works (no credentials).
pub(crate) async fn healthz(State(app): State<AppState>) -> Response {
    match app.store.failure() {
        None => match &app.cluster {
            None => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
            Some(c) => axum::Json(serde_json::json!({"status": "ok", "cluster": c.status()})).into_response(),
        },
        Some(why) => {
            tracing::error!(error = %why, "health check: storage failed");
            ApiError::new(Code::Unavailable, "storage failed").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let c = &app.config;
    for (load, permits, max) in [
        ("write", &app.write_permits, c.server.max_concurrent_writes),
        ("heavy", &app.heavy_permits, c.server.max_concurrent_heavy),
        ("live", &app.live_permits, c.server.max_live_streams),
        ("login", &app.login_permits, c.auth.max_concurrent_logins),
    ] {
        let used = max.saturating_sub(permits.available_permits());
        app.telemetry.slots_in_use.get_or_create(&LoadLabel { load: load.into() }).set(used as i64);
    }
    if let Some(cluster) = &app.cluster {
        use std::sync::atomic::Ordering::Relaxed;
        let t = &app.telemetry;
        t.cluster_owned_buckets.set(cluster.ownership.owned().len() as i64);
        t.cluster_live_nodes.set(cluster.ownership.live_nodes() as i64);
        t.cluster_log_behind.set(cluster.tail.behind.load(Relaxed) as i64);
        t.cluster_log_applied.set(cluster.tail.applied.load(Relaxed));
        t.cluster_log_undecodable.set(cluster.tail.undecodable.load(Relaxed));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.telemetry.render(&app.store, &app.dead_letters),
    )
        .into_response()
}

/// `GET /api/v1/system`: the admin view's health: storage sizes and write counters (the
/// dashboard turns two readings into a rate), dead letters, people and patients.
pub(crate) async fn system(State(app): State<AppState>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let sizes = app.store.sizes();
    let stats = app.store.stats();
    let meta = app.directory.meta();
    Json(json!({
        "status": if app.store.failure().is_none() { "ok" } else { "storage failed" },
        "now": format_time(app.clock.now_ms()),
        "samples_written": stats.samples_written.load(Relaxed),
        "wal_bytes": stats.wal_bytes.load(Relaxed),
        "segments": sizes.segments, "segment_bytes": sizes.segment_bytes, "segment_rows": sizes.segment_rows,
        "buffered_samples": sizes.buffered_samples,
        "flushes": stats.flushes.load(Relaxed), "compactions": stats.compactions.load(Relaxed),
        "lake_archived": stats.archived.load(Relaxed),
        "maintenance_errors": stats.maintenance_errors.load(Relaxed),
        "lake_uploads": stats.uploads.load(Relaxed), "lake_fetches": stats.fetches.load(Relaxed),
        "lake_remote_errors": stats.remote_errors.load(Relaxed),
        "lake_adopted": stats.adopted.load(Relaxed), "lake_published": stats.published.load(Relaxed),
        "dead_letters": app.dead_letters.len(), "dead_letters_dropped": app.dead_letters.dropped(),
        "patients": app.store.patients().len(),
        "users": meta.users().map(|u| u.len()).unwrap_or(0),
        "device_certificates": meta.device_certs().map(|c| c.len()).unwrap_or(0),
    }))
}

/// `GET /api/v1/file-drop?limit=`: the newest entries of the file-drop ledger (what each
/// dropped file became), empty while the watcher is off.
pub(crate) async fn file_drop_ledger(
    State(app): State<AppState>,
    crate::api::extract::Query(q): crate::api::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).min(1000);
    let entries: Vec<Value> = app
        .file_ledger
        .get()
        .and_then(|l| l.recent(limit).inspect_err(|e| tracing::error!(error = %e, "the file-drop ledger")).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            json!({"name": e.name, "time": format_time(e.time_ms), "status": e.status, "accepted": e.accepted,
                "rejected": e.rejected, "moved_to": e.moved_to, "error": e.error, "sha256": e.sha256})
        })
        .collect();
    Json(json!({"enabled": app.config.file_drop.enabled, "entries": entries}))
}

/// `GET /api/v1/devices`: registered device certificates (fingerprints, never keys).
pub(crate) async fn devices(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let certs = app.directory.meta().device_certs().map_err(ApiError::internal)?;
    let out: Vec<Value> = certs
        .iter()
        .map(|c| {
            json!({"id": c.id, "name": c.name, "device": c.device, "patient": c.patient, "sha256": c.sha256,
                "created": format_time(c.created_ms), "revoked": c.revoked_ms.map(format_time)})
        })
        .collect();
    Ok(Json(json!({ "devices": out })))
}

/// `DELETE /api/v1/devices/{id}`: revokes a device certificate; refused at the next connection.
pub(crate) async fn revoke_device(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match app.directory.meta().revoke_device_cert(&id, app.clock.now_ms()) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(Code::NotFound, format!("no live device certificate {id:?}"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}
