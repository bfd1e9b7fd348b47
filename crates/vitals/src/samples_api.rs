//! `POST /api/v1/samples`: native JSON, `{"samples": [...]}`, NDJSON or CSV.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use vitals_core::{PatientId, Rejection, Validator};
use vitals_ingest::{Batch, Format, native};

use crate::api_error::{ApiError, Code};
use crate::auth::Principal;
use crate::dead_letter_api::{Refused, WireFormat};
use crate::server::AppState;
use crate::telemetry::CodeLabel;

/// The dead-letter source name of this route.
const SOURCE: &str = "api/samples";

/// Bodies larger than this are decoded on a blocking thread.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

pub async fn post_samples(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, ApiError> {
    let started = Instant::now();
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
    let wire = WireFormat::Native(format);
    let batch = match decode(&app, body.clone(), format, principal.patient).await {
        Ok(b) => b,
        Err(e) => {
            app.keep_refused(SOURCE, wire, &body, &Refused { whole_failure: Some(&e.message), ..Refused::default() });
            return Err(e);
        }
    };
    app.keep_refused(SOURCE, wire, &body, &Refused { rejections: &batch.rejections, ..Refused::default() });
    for r in &batch.rejections {
        app.telemetry.rejected.get_or_create(&CodeLabel { code: r.code.as_str().to_owned() }).inc();
    }
    let accepted = batch.samples.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.store.submit(batch.samples, move |r| {
        let _ = tx.send(r);
    })?;
    match rx.await {
        Ok(Ok(_seq)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(ApiError::new(Code::Unavailable, "the server is shutting down")),
    }
    app.telemetry.ingested.inc_by(accepted as u64);
    app.telemetry.write_latency.observe(started.elapsed().as_secs_f64());
    Ok(Json(IngestResponse { accepted, rejected: batch.rejections }))
}

async fn decode(app: &AppState, body: Bytes, format: Format, only: Option<PatientId>) -> Result<Batch, ApiError> {
    let big = body.len() > INLINE_DECODE_BYTES;
    let run = {
        let app = app.clone();
        move || {
            let cfg = &app.config.ingest;
            let mut v =
                Validator::new(app.catalog, app.clock.now_ms(), cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()))
                    .only_patient(only);
            native::decode(&body, format, &mut v)
        }
    };
    // Large bodies are decoded off the async workers so they never stall other requests.
    let result = if big { tokio::task::spawn_blocking(run).await.map_err(ApiError::internal)? } else { run() };
    result.map_err(|e| ApiError::new(Code::InvalidBody, e.to_string()))
}
