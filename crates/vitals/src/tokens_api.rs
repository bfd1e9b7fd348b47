//! Admin routes for API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api_error::{ApiError, Code};
use crate::auth::Role;
use crate::server::AppState;

#[derive(Debug, Deserialize)]
pub struct CreateToken {
    name: String,
    role: Role,
    /// Binds the token to one patient.
    patient: Option<String>,
}

pub async fn list_tokens(State(app): State<AppState>) -> Json<serde_json::Value> {
    let tokens: Vec<_> = app
        .tokens
        .list()
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "name": t.name, "role": t.role, "patient": t.patient,
                "created": vitals_core::time::format_time(t.created_ms),
            })
        })
        .collect();
    Json(serde_json::json!({ "tokens": tokens }))
}

/// Creates a token; the secret is in this response and nowhere else, ever.
pub async fn create_token(
    State(app): State<AppState>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let (rec, secret) = app
        .tokens
        .create(&req.name, req.role, None, req.patient.as_deref(), app.clock.now_ms())
        .map_err(|e| ApiError::new(Code::InvalidBody, format!("{e:#}")))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": rec.id, "name": rec.name, "role": rec.role, "token": secret})),
    ))
}

pub async fn revoke_token(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match app.tokens.revoke(&id) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(Code::NotFound, format!("no token {id:?}"))),
        Err(e) => Err(ApiError::internal(format!("{e:#}"))),
    }
}
