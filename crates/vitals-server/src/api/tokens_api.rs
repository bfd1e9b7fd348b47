//! Admin routes for API tokens: of users (acting as the user) and of devices.

use axum::Json;
use axum::extract::State;

use crate::api::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use vitals_core::time::{DurationMs, format_time};
use vitals_meta::Token;

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::{NewToken, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    /// `admin` or `device` for tokens without a user.
    role: Option<Role>,
    /// The user the token acts for (name or id).
    user: Option<String>,
    /// The device the token belongs to.
    device: Option<String>,
    /// Binds a device token to one patient.
    patient: Option<String>,
    /// Lifetime, e.g. `90d`; absent: until revoked.
    expires_in: Option<DurationMs>,
}

/// A token as listed (never its secret or hashes).
pub(crate) fn render(t: &Token, now_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "name": t.name, "role": t.role, "user": t.user_id, "device": t.device, "patient": t.patient,
        "created": format_time(t.created_ms), "expires": t.expires_ms.map(format_time),
        "revoked": t.revoked_ms.map(format_time), "live": t.is_live(now_ms),
    })
}

pub(crate) async fn list_tokens(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    let tokens = app.directory.list().map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "tokens": tokens.iter().map(|t| render(t, now)).collect::<Vec<_>>() })))
}

/// Creates a token; the secret is in this response and nowhere else, ever.
pub(crate) async fn create_token(
    State(app): State<AppState>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let now = app.clock.now_ms();
    let new = NewToken {
        name: &req.name,
        role: req.role,
        user: req.user.as_deref(),
        device: req.device.as_deref(),
        patient: req.patient.as_deref(),
        expires_ms: req.expires_in.map(|d| now + d.as_ms()),
        secret: None,
    };
    let (rec, secret) =
        app.directory.create_token(&new, now).map_err(|e| ApiError::new(Code::InvalidBody, format!("{e:#}")))?;
    let mut out = render(&rec, now);
    out["token"] = serde_json::Value::String(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

pub(crate) async fn revoke_token(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match app.directory.revoke(&id, app.clock.now_ms()) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(Code::NotFound, format!("no live token {id:?}"))),
        Err(e) => Err(ApiError::internal(format!("{e:#}"))),
    }
}
