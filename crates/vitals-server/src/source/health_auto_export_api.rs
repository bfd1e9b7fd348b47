//! `POST /api/v1/ingest/health-auto-export`: the Health Auto Export app's REST JSON.
//!
//! The patient is the one the token is bound to, or the `patient` query parameter for
//! unbound tokens. Re-sent overlapping ranges are harmless: a (patient, metric, device,
//! time) is one sample. The answer lists accepted count, refused points with their path,
//! and the parts not stored yet (`unsupported`), which are kept as a dead letter.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use vitals_core::Rejection;
use vitals_ingest::health_auto_export::Unsupported;

use super::pipeline::Submission;
use super::wire_format::WireFormat;
use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::Principal;

const SOURCE: &str = "health_auto_export";

#[derive(Debug, Serialize)]
pub(crate) struct ExportResponse {
    pub(crate) accepted: usize,
    /// Workouts and sleep intervals stored as events.
    pub(crate) events: usize,
    /// The first refusals (see `rejected_total`).
    pub(crate) rejected: Vec<Rejection>,
    pub(crate) rejected_total: usize,
    pub(crate) unsupported: Vec<Unsupported>,
}

pub(crate) async fn post_export(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExportResponse>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                Code::PayloadTooLarge,
                "export larger than server.body_limit_bytes; enable Batch Requests in the app",
            )
        } else {
            ApiError::new(Code::InvalidBody, e.body_text())
        }
    })?;
    let patient = super::upload_api::patient_for_write(&principal, params.get("patient"))?;
    let sub = Submission::new(SOURCE, WireFormat::HealthAutoExport, body).patient(Some(patient));
    let r = app.pipeline.ingest(sub).await?;
    Ok(Json(ExportResponse {
        accepted: r.accepted,
        events: r.events,
        rejected: r.rejected,
        rejected_total: r.refused,
        unsupported: r.unsupported,
    }))
}
