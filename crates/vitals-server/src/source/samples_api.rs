//! `POST /api/v1/samples`: native JSON, `{"samples": [...]}`, NDJSON or CSV.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use vitals_core::Rejection;
use vitals_ingest::Format;

use super::pipeline::Submission;
use super::wire_format::WireFormat;
use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::Principal;

/// The dead-letter source name of this route.
const SOURCE: &str = "api/samples";

#[derive(Debug, Serialize)]
pub(crate) struct IngestResponse {
    pub(crate) accepted: usize,
    /// The first refusals (see `rejected_total`).
    pub(crate) rejected: Vec<Rejection>,
    /// Every refusal.
    pub(crate) rejected_total: usize,
}

pub(crate) async fn post_samples(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                Code::PayloadTooLarge,
                format!(
                    "body larger than {} bytes; split it into several requests",
                    app.config.server.body_limit_bytes
                ),
            )
        } else {
            ApiError::new(Code::InvalidBody, e.body_text())
        }
    })?;
    let format = Format::from_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let sub = Submission::new(SOURCE, WireFormat::Native(format), body).only(principal.patient);
    let r = app.pipeline.ingest(sub).await?;
    Ok(Json(IngestResponse { accepted: r.accepted, rejected: r.rejected, rejected_total: r.refused }))
}
