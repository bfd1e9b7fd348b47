//! The admin routes over refused input (dead letters): list, show, replay once the cause is
//! gone, remove, purge. (Keeping them is the ingest pipeline's, `crate::source`.)

use axum::Json;
use axum::extract::State;

use crate::api::extract::{Path, Query};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::app::AppState;
use crate::source::pipeline::{ReplayError, Replayed};

#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    after: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn list(State(app): State<AppState>, Query(p): Query<ListParams>) -> Json<serde_json::Value> {
    let entries = app.dead_letters.list(p.after.unwrap_or(0), p.limit.unwrap_or(100).min(1000));
    Json(
        serde_json::json!({ "dead_letters": entries, "total": app.dead_letters.len(), "dropped": app.dead_letters.dropped() }),
    )
}

pub(crate) async fn show(
    State(app): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (meta, raw) = app.dead_letters.get(id).map_err(|e| ApiError::from(ReplayError::from(e)))?;
    let mut v = serde_json::to_value(&meta).map_err(ApiError::internal)?;
    match String::from_utf8(raw) {
        Ok(text) => v["raw"] = serde_json::Value::String(text),
        Err(e) => {
            v["raw_base64"] = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()))
        }
    }
    Ok(Json(v))
}

/// (A body, if any, is read and ignored: a connection whose request body was left unread
/// cannot be kept alive.)
pub(crate) async fn replay_one(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    _body: axum::body::Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let r = tokio::task::spawn_blocking(move || app.pipeline.replay(id)).await.map_err(ApiError::internal)??;
    Ok(Json(r))
}

pub(crate) async fn remove_one(State(app): State<AppState>, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    app.dead_letters.remove(id).map_err(|e| ApiError::from(ReplayError::from(e)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn purge(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let n = app.dead_letters.purge().map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "purged": n })))
}
