//! FHIR Bulk Data `$export` (see [`crate::fhir_export`]):
//!
//! - kick-off: `GET /api/v1/fhir/$export`, `/api/v1/fhir/Patient/$export` (every patient
//!   the caller may see) and `/api/v1/fhir/Group/{cohort}/$export` (a cohort's), with
//!   `_type`, `_since`, `_outputFormat` (NDJSON only) and Vitals' `metric`; `202` with
//!   `Content-Location` naming the status URL;
//! - `GET /api/v1/fhir/$export-status/{job}`: `202` with `X-Progress` and `Retry-After`
//!   while it runs, then `200` with the output manifest; `DELETE` cancels or removes;
//! - `GET /api/v1/fhir/$export-file/{job}/{file}`: an NDJSON file (`application/fhir+ndjson`).
//!
//! Only the principal who started a job sees it (another gets `404`).

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vitals_core::PatientId;
use vitals_core::time::parse_time;

use crate::api::error::{ApiError, Code};
use crate::api::extract::{Path, Query};
use crate::app::AppState;
use crate::audit::AuditTarget;
use crate::auth::Principal;
use crate::fhir::{Selection, Types};
use crate::fhir_export::{BulkExports, JobState, StartError};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExportParams {
    #[serde(rename = "_outputFormat")]
    output_format: Option<String>,
    #[serde(rename = "_since")]
    since: Option<String>,
    #[serde(rename = "_type")]
    types: Option<String>,
    #[serde(rename = "_typeFilter")]
    type_filter: Option<String>,
    /// Vitals' own: metric codes, comma separated (default: every metric).
    metric: Option<String>,
}

/// Kick-off of an export of every patient the caller may see.
pub(crate) async fn kick_off(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<ExportParams>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    start(&app, &who, q, &headers, &uri, None)
}

/// Kick-off of an export of one cohort's patients (FHIR's `Group`).
pub(crate) async fn kick_off_group(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(group): Path<String>,
    Query(q): Query<ExportParams>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let members = app
        .cohorts
        .members(&group)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no cohort (Group) {group:?}")))?;
    start(&app, &who, q, &headers, &uri, Some(members))
}

fn start(
    app: &AppState,
    who: &Principal,
    q: ExportParams,
    headers: &HeaderMap,
    uri: &Uri,
    group: Option<BTreeSet<String>>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(Code::InvalidQuery, m);
    if let Some(f) = q.output_format.as_deref()
        && !matches!(f, "application/fhir+ndjson" | "application/ndjson" | "ndjson")
    {
        return Err(bad(format!("_outputFormat {f:?}: only application/fhir+ndjson is written")));
    }
    if q.type_filter.is_some() {
        return Err(bad("_typeFilter is not supported; use _type, _since and metric".into()));
    }
    let types = match q.types.as_deref().filter(|t| !t.is_empty()) {
        None => Types::ALL,
        Some(list) => {
            let mut t = Types::NONE;
            for name in list.split(',').map(str::trim) {
                match name {
                    "Patient" => t.patient = true,
                    "Device" => t.device = true,
                    "Observation" => t.observation = true,
                    other => {
                        return Err(bad(format!("_type {other:?}: Vitals exports Patient, Device and Observation")));
                    }
                }
            }
            t
        }
    };
    let from = q.since.as_deref().map(parse_time).transpose().map_err(|e| bad(format!("_since: {e}")))?.unwrap_or(0);
    let metrics = crate::api::fhir_api::metric_codes(app, q.metric.as_deref())?;
    // The caller's patients, as their SQL sees them, within the cohort when one is named.
    let scope = crate::sql::scope(who).ok_or_else(|| ApiError::new(Code::Forbidden, "no bulk export for this role"))?;
    let mut patients: Option<BTreeSet<String>> = match scope {
        vitals_sql::Scope::All => None,
        vitals_sql::Scope::Patients(p) => Some(p),
    };
    if let Some(members) = group {
        patients = Some(match patients {
            None => members,
            Some(p) => p.intersection(&members).cloned().collect(),
        });
    }
    let patients = patients.map(|p| p.iter().filter_map(|s| PatientId::new(s).ok()).collect());
    let to = app.clock.now_ms() + app.config.ingest.max_future.as_ms() + 1;
    let selection = Selection { patients, metrics, from, to };
    let base = base_url(app, headers);
    let request = format!("{base}{uri}");
    let job = match app.bulk_exports.start(app, &who.actor, request.clone(), selection, types) {
        Ok(j) => j,
        Err(e @ StartError::Busy { .. }) => {
            let mut r = ApiError::new(Code::RateLimited, e.to_string()).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return Ok(r);
        }
        Err(StartError::Failed(e)) => return Err(ApiError::new(Code::Internal, e)),
    };
    let status = format!("{base}/api/v1/fhir/$export-status/{}", job.id);
    let mut r = StatusCode::ACCEPTED.into_response();
    r.headers_mut().insert(header::CONTENT_LOCATION, HeaderValue::from_str(&status).map_err(ApiError::internal)?);
    r.extensions_mut().insert(AuditTarget(request));
    Ok(r)
}

/// The server's own URL as the client reached it (the manifest's URLs are absolute).
fn base_url(app: &AppState, headers: &HeaderMap) -> String {
    let scheme = if app.config.server.tls_cert.as_os_str().is_empty() { "http" } else { "https" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .map(str::to_owned)
        .unwrap_or_else(|| app.config.server.listen.clone());
    format!("{scheme}://{host}")
}

fn job_of(app: &AppState, who: &Principal, id: &str) -> Result<std::sync::Arc<crate::fhir_export::Job>, ApiError> {
    app.bulk_exports.get(id, &who.actor).ok_or_else(|| {
        ApiError::new(Code::NotFound, format!("no export {id:?} of yours (finished ones are kept 24 h)"))
    })
}

/// The status of a job: `202` while it runs, the manifest once done.
pub(crate) async fn status(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    app.bulk_exports.expire(app.clock.now_ms());
    let job = job_of(&app, &who, &id)?;
    let state = job.state.lock().clone();
    match state {
        JobState::Running => {
            let n = job.progress.load(std::sync::atomic::Ordering::Relaxed);
            let mut r = StatusCode::ACCEPTED.into_response();
            let progress = HeaderValue::from_str(&format!("{n} observations written")).map_err(ApiError::internal)?;
            r.headers_mut().insert("x-progress", progress);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(r)
        }
        JobState::Done { .. } => {
            let manifest = BulkExports::manifest(&job, &base_url(&app, &headers))
                .ok_or_else(|| ApiError::new(Code::Internal, "the export has no manifest"))?;
            Ok(axum::Json(manifest).into_response())
        }
        JobState::Failed { message, .. } => Err(ApiError::new(Code::Internal, format!("the export failed: {message}"))),
    }
}

/// Cancels a running job, or removes a finished one and its files.
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = job_of(&app, &who, &id)?;
    app.bulk_exports.remove(&job);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// One NDJSON file of a finished job, streamed.
pub(crate) async fn file(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = job_of(&app, &who, &id)?;
    let path = app
        .bulk_exports
        .file(&job, &name)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("the export {id:?} has no file {name:?} (yet)")))?;
    let file = tokio::fs::File::open(&path).await.map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let mut r = (
        [(header::CONTENT_TYPE, "application/fhir+ndjson".to_owned()), (header::CONTENT_LENGTH, len.to_string())],
        crate::api::file_body(file),
    )
        .into_response();
    r.extensions_mut().insert(AuditTarget(format!("fhir export {id} {name}")));
    Ok(r)
}
