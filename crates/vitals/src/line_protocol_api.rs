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
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use vitals_core::{Rejection, Validator};
use vitals_ingest::line_protocol::{self, Mapping, Precision};

use crate::auth::Principal;
use crate::dead_letter_api::{Refused, WireFormat};
use crate::server::AppState;
use crate::telemetry::CodeLabel;

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

/// The Vitals token in any of the ways InfluxDB clients send credentials.
pub fn influx_token(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let auth = auth.trim();
        if let Some(t) = auth.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
        if let Some(t) = auth.strip_prefix("Token ") {
            let t = t.trim();
            return Some(t.split_once(':').map(|(_, p)| p).unwrap_or(t).to_owned());
        }
        if let Some(b) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text.split_once(':').map(|(_, p)| p.to_owned());
        }
    }
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("p").cloned()
}

/// The principal of an InfluxDB client's credentials.
pub fn principal(app: &AppState, req: &Request, now: i64) -> Option<Principal> {
    influx_token(req.headers(), req.uri()).and_then(|t| app.directory.authenticate(&t, now))
}

/// A refusal as InfluxDB answers it.
pub fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = influx_response(status, Some(message));
    crate::api_error::closing(&mut r);
    r
}

/// `POST /write?db=...&precision=...` (InfluxDB 1.x).
pub async fn write_v1(
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
pub async fn write_v2(
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
    let started = Instant::now();
    let limit = app.config.server.body_limit_bytes;
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let mut r = influx_response(StatusCode::PAYLOAD_TOO_LARGE, Some("Request Entity Too Large"));
            crate::api_error::closing(&mut r);
            return r;
        }
        Err(e) => return influx_response(StatusCode::BAD_REQUEST, Some(&e.body_text())),
    };
    let precision: Precision = match precision.parse() {
        Ok(p) => p,
        Err(e) => return influx_response(StatusCode::BAD_REQUEST, Some(&e)),
    };
    let headers = headers.clone();
    let mapping = Mapping { rules: app.config.line_protocol.measurements.clone() };
    let decoded = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || -> Result<_, (StatusCode, String)> {
            let plain = crate::request_body::plain(&headers, &body, limit).map_err(|(status, msg)| {
                let msg =
                    if status == StatusCode::PAYLOAD_TOO_LARGE { "Request Entity Too Large".to_owned() } else { msg };
                (status, msg)
            })?;
            let bytes: &[u8] = &plain;
            let now = app.clock.now_ms();
            let cfg = &app.config.ingest;
            let mut v = Validator::new(app.catalog, now, cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()))
                .only_patient(principal.patient);
            let batch = line_protocol::decode(bytes, precision, &mapping, &mut v, now);
            let first_bad_line = batch.rejections.first().map(|r| line_text(bytes, r.index));
            let refused = Refused { rejections: &batch.rejections, ..Refused::default() };
            app.keep_refused("line_protocol", WireFormat::LineProtocol(precision), bytes, &refused);
            Ok((batch, first_bad_line))
        })
        .await
    };
    let (batch, first_bad_line) = match decoded {
        Ok(Ok(x)) => x,
        Ok(Err((status, msg))) => return influx_response(status, Some(&msg)),
        Err(e) => {
            tracing::error!(error = %e, "line protocol decode task");
            return influx_response(StatusCode::INTERNAL_SERVER_ERROR, Some("internal error"));
        }
    };
    for r in &batch.rejections {
        app.telemetry.rejected.get_or_create(&CodeLabel { code: r.code.as_str().to_owned() }).inc();
    }
    let accepted = batch.samples.len();
    if accepted > 0 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Err(e) = app.store.submit(batch.samples, move |r| {
            let _ = tx.send(r);
        }) {
            return store_error(e);
        }
        match rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return store_error(e),
            Err(_) => return influx_response(StatusCode::SERVICE_UNAVAILABLE, Some("shutting down")),
        }
        app.telemetry.ingested.inc_by(accepted as u64);
        app.telemetry.write_latency.observe(started.elapsed().as_secs_f64());
    }
    if batch.rejections.is_empty() {
        return influx_response(StatusCode::NO_CONTENT, None);
    }
    let first = &batch.rejections[0];
    let reason = describe(first, first_bad_line.as_deref().unwrap_or(""));
    if accepted == 0 && batch.rejections.iter().all(|r| r.code == vitals_core::RejectCode::Malformed) {
        return influx_response(StatusCode::BAD_REQUEST, Some(&format!("unable to parse {reason}")));
    }
    influx_response(
        StatusCode::BAD_REQUEST,
        Some(&format!("partial write: {reason} dropped={}", batch.rejections.len())),
    )
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
