//! `POST /api/v1/ingest/health-auto-export`: the Health Auto Export app's REST JSON.
//!
//! The patient is the one the token is bound to, or the `patient` query parameter for
//! unbound tokens. Re-sent overlapping ranges are harmless: a (patient, metric, device,
//! time) is one sample. The answer lists accepted count, refused points with their path,
//! and the parts not stored yet (`unsupported`), which are kept as a dead letter.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use vitals_core::{PatientId, Rejection, Validator};
use vitals_ingest::health_auto_export::{self, Unsupported};

use crate::api_error::{ApiError, Code};
use crate::auth::Principal;
use crate::dead_letter_api::{Refused, WireFormat};
use crate::server::AppState;
use crate::telemetry::CodeLabel;

const SOURCE: &str = "health_auto_export";

#[derive(Debug, Serialize)]
pub struct ExportResponse {
    pub accepted: usize,
    /// Workouts and sleep intervals stored as events.
    pub events: usize,
    pub rejected: Vec<Rejection>,
    pub unsupported: Vec<Unsupported>,
}

pub async fn post_export(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExportResponse>, ApiError> {
    let started = Instant::now();
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
    let asked = params.get("patient").filter(|p| !p.is_empty());
    let patient = match (&principal.patient, asked) {
        (Some(bound), None) => bound.clone(),
        (Some(bound), Some(p)) if bound.as_str() == p => bound.clone(),
        (Some(bound), Some(p)) => {
            return Err(ApiError::new(
                Code::Forbidden,
                format!("this token may only write for patient {bound}, not {p}"),
            ));
        }
        (None, Some(p)) => {
            PatientId::new(p).map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient {p:?} {e}")))?
        }
        (None, None) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                "add ?patient=<pseudonym> to the URL, or use a token bound to a patient",
            ));
        }
    };
    let decoded = {
        let (app, body, patient) = (app.clone(), body.clone(), patient.clone());
        tokio::task::spawn_blocking(move || {
            let cfg = &app.config.ingest;
            let mut v =
                Validator::new(app.catalog, app.clock.now_ms(), cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()));
            health_auto_export::decode(&body, patient.as_str(), &mut v)
        })
        .await
        .map_err(ApiError::internal)?
    };
    let d = match decoded {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            let refused = Refused { whole_failure: Some(&msg), patient: Some(patient.as_str()), ..Refused::default() };
            app.keep_refused(SOURCE, WireFormat::HealthAutoExport, &body, &refused);
            return Err(ApiError::new(Code::InvalidBody, msg));
        }
    };
    let refused = Refused {
        rejections: &d.batch.rejections,
        unsupported: &d.unsupported,
        patient: Some(patient.as_str()),
        ..Refused::default()
    };
    app.keep_refused(SOURCE, WireFormat::HealthAutoExport, &body, &refused);
    for r in &d.batch.rejections {
        app.telemetry.rejected.get_or_create(&CodeLabel { code: r.code.as_str().to_owned() }).inc();
    }
    let accepted = d.batch.samples.len();
    let events = d.events.len();
    let store_events = {
        let app = app.clone();
        let evs = d.events;
        tokio::task::spawn_blocking(move || app.events.put(evs)).await.map_err(ApiError::internal)?
    };
    store_events.map_err(ApiError::internal)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.store.submit(d.batch.samples, move |r| {
        let _ = tx.send(r);
    })?;
    match rx.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(ApiError::new(Code::Unavailable, "the server is shutting down")),
    }
    app.telemetry.ingested.inc_by(accepted as u64);
    app.telemetry.write_latency.observe(started.elapsed().as_secs_f64());
    Ok(Json(ExportResponse { accepted, events, rejected: d.batch.rejections, unsupported: d.unsupported }))
}
