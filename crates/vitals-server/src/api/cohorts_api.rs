//! `/api/v1/cohorts`: named groups of patients for rule scopes and subscriptions.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;

use crate::api::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::cohort_store::CohortError;

impl From<CohortError> for ApiError {
    fn from(e: CohortError) -> ApiError {
        match e {
            CohortError::Invalid(m) => ApiError::new(Code::InvalidBody, m),
            CohortError::NotFound(_) => ApiError::new(Code::NotFound, e.to_string()),
            CohortError::Io(m) => ApiError::internal(m),
        }
    }
}

pub(crate) async fn list(State(app): State<AppState>) -> Json<Value> {
    let cohorts: Vec<Value> =
        app.cohorts.list().into_iter().map(|(name, patients)| json!({"name": name, "patients": patients})).collect();
    Json(json!({ "cohorts": cohorts }))
}

pub(crate) async fn get_one(State(app): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let m = app.cohorts.members(&name).ok_or_else(|| ApiError::new(Code::NotFound, format!("no cohort {name:?}")))?;
    Ok(Json(json!({"name": name, "patients": m})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Members {
    patients: BTreeSet<String>,
}

pub(crate) async fn put(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<Members>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(m) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let new = app.cohorts.put(&name, m.patients.clone())?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"name": name, "patients": m.patients}))))
}

pub(crate) async fn delete(State(app): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    app.cohorts.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}
