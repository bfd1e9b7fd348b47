//! InfluxDB-compatible write endpoints: `POST /write` (1.x) and `POST /api/v2/write`, so
//! Telegraf, influxdb-python and the epilepsy platform's writers work unchanged.
//!
//! Responses are what InfluxDB gives: 204 when every point was written; 400 with
//! `{"error": "partial write: ... dropped=N"}` when some were not (the rest is durable);
//! 400 `unable to parse` when none parsed; 401 with `WWW-Authenticate: Basic`; 413; 503.
//! Every response carries `X-Influxdb-Version`; errors also `X-Influxdb-Error`.
//! Credentials: the password of HTTP Basic, of `u`/`p`, or of `Authorization: Token
//! user:password` is a Vitals token; `Token <token>` and `Bearer <token>` work too.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vitals_core::Rejection;
use vitals_ingest::line_protocol::Precision;

use super::pipeline::{IngestError, Submission};
use super::wire_format::WireFormat;
use crate::app::AppState;
use crate::auth::Principal;

/// The dead-letter source name of these routes.
const SOURCE: &str = "line_protocol";

/// The version reported to clients (they only check that the header exists).
const INFLUX_VERSION: &str = "1.8.10-vitals";

fn influx_response(status: StatusCode, error: Option<&str>) -> Response {
    let mut r = match error {
        Some(e) => (status, axum::Json(serde_json::json!({ "error": e }))).into_response(),
        None => status.into_response(),
    };
    r.headers_mut().insert("X-Influxdb-Version", HeaderValue::from_static(INFLUX_VERSION));
    if let Some(e) = error {
        let short: String = e.chars().take(1024).collect();
        if let Ok(v) = HeaderValue::from_str(&short) {
            r.headers_mut().insert("X-Influxdb-Error", v);
        }
    }
    r
}

/// A refusal as InfluxDB answers it.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = influx_response(status, Some(message));
    crate::api::error::closing(&mut r);
    r
}

/// `POST /write?db=...&precision=...` (InfluxDB 1.x).
pub(crate) async fn write_v1(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if params.get("db").is_none_or(|d| d.is_empty()) {
        return influx_response(StatusCode::BAD_REQUEST, Some("database is required"));
    }
    let precision = params.get("precision").map(String::as_str).unwrap_or("");
    write(app, principal, precision, &headers, body).await
}

/// `POST /api/v2/write?org=...&bucket=...&precision=...` (InfluxDB 2.x).
pub(crate) async fn write_v2(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if params.get("bucket").is_none_or(|d| d.is_empty()) {
        return influx_response(StatusCode::BAD_REQUEST, Some("bucket is required"));
    }
    let precision = params.get("precision").map(String::as_str).unwrap_or("");
    write(app, principal, precision, &headers, body).await
}

async fn write(
    app: AppState,
    principal: Principal,
    precision: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let limit = app.config.server.body_limit_bytes;
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let mut r = influx_response(StatusCode::PAYLOAD_TOO_LARGE, Some("Request Entity Too Large"));
            crate::api::error::closing(&mut r);
            return r;
        }
        Err(e) => return influx_response(StatusCode::BAD_REQUEST, Some(&e.body_text())),
    };
    let precision: Precision = match precision.parse() {
        Ok(p) => p,
        Err(e) => return influx_response(StatusCode::BAD_REQUEST, Some(&e)),
    };
    // Gzip bodies are inflated (capped at the body limit) off the async workers; plain
    // ones go on as they are.
    let plain = if super::request_body::is_gzip(headers) {
        let headers = headers.clone();
        let inflated = tokio::task::spawn_blocking(move || {
            super::request_body::plain(&headers, &body, limit).map(|p| Bytes::from(p.into_owned()))
        })
        .await;
        match inflated {
            Ok(Ok(p)) => p,
            Ok(Err((status, msg))) => {
                let msg =
                    if status == StatusCode::PAYLOAD_TOO_LARGE { "Request Entity Too Large".to_owned() } else { msg };
                return influx_response(status, Some(&msg));
            }
            Err(e) => {
                tracing::error!(error = %e, "line protocol inflate task");
                return influx_response(StatusCode::INTERNAL_SERVER_ERROR, Some("internal error"));
            }
        }
    } else {
        body
    };
    let sub = Submission::new(SOURCE, WireFormat::LineProtocol(precision), plain.clone()).only(principal.patient);
    let report = match app.pipeline.ingest(sub).await {
        Ok(r) => r,
        Err(IngestError::Store(e)) => return store_error(e),
        Err(IngestError::ShuttingDown) => {
            return influx_response(StatusCode::SERVICE_UNAVAILABLE, Some("shutting down"));
        }
        Err(e) => {
            tracing::error!(error = %e, "line protocol write failed");
            return influx_response(StatusCode::SERVICE_UNAVAILABLE, Some("storage unavailable"));
        }
    };
    let Some(first) = report.rejected.first() else {
        return influx_response(StatusCode::NO_CONTENT, None);
    };
    let reason = describe(first, &line_text(&plain, first.index));
    if report.accepted == 0 && report.rejected.iter().all(|r| r.code == vitals_core::RejectCode::Malformed) {
        return influx_response(StatusCode::BAD_REQUEST, Some(&format!("unable to parse {reason}")));
    }
    influx_response(StatusCode::BAD_REQUEST, Some(&format!("partial write: {reason} dropped={}", report.refused)))
}

fn describe(r: &Rejection, line: &str) -> String {
    let line: String = line.chars().take(200).collect();
    format!("'{line}' (line {}): {}: {}", r.index + 1, r.code, r.message)
}

fn line_text(body: &[u8], index: usize) -> String {
    body.split(|b| *b == b'\n').nth(index).map(|l| String::from_utf8_lossy(l).into_owned()).unwrap_or_default()
}

fn store_error(e: vitals_storage::StoreError) -> Response {
    match e {
        vitals_storage::StoreError::Overloaded { .. } => {
            let mut r = influx_response(StatusCode::SERVICE_UNAVAILABLE, Some(&e.to_string()));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        other => {
            tracing::error!(error = %other, "line protocol write failed");
            influx_response(StatusCode::SERVICE_UNAVAILABLE, Some("storage unavailable"))
        }
    }
}
