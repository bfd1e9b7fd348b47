//! A Nightscout-compatible API per patient, `/nightscout/{patient}/api/v1/...`, so that
//! existing CGM uploaders (xDrip+, Loop, AndroidAPS) and followers work unchanged.
//!
//! Auth as those clients do it: `api-secret: <hex SHA-1 of a Vitals token>` (Vitals keeps
//! only hashes), `?token=<token>`, `?secret=<sha1>` or `Authorization: Bearer <token>`.
//! Unlike Nightscout there are no anonymous reads. A token bound to a patient serves only
//! that patient's URL. Gzip request bodies are accepted.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vitals_core::time::{MS_PER_DAY, format_time, parse_time};
use vitals_core::{PatientId, Validator};
use vitals_ingest::nightscout;
use vitals_query::{QueryResult, SeriesQuery};

use crate::auth::Principal;
use crate::dead_letter_api::{Refused, WireFormat};
use crate::server::AppState;

fn ns_error(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({"status": status.as_u16(), "message": message}))).into_response();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::PAYLOAD_TOO_LARGE) {
        crate::api_error::closing(&mut r);
    }
    r
}

fn query_param(uri: &axum::http::Uri, key: &str) -> Option<String> {
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    q.get(key).cloned()
}

/// A refusal as Nightscout answers it.
pub fn refuse(status: StatusCode, message: &str) -> Response {
    ns_error(status, message)
}

/// Authenticates as Nightscout clients do: `api-secret` (the token or its SHA-1), a bearer
/// token, or `token`/`secret` query parameters.
pub fn principal(app: &AppState, req: &Request, now: i64) -> Option<Principal> {
    let d = &app.directory;
    let headers = req.headers();
    if let Some(secret) = headers.get("api-secret").and_then(|v| v.to_str().ok()) {
        let s = secret.trim();
        let p = if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            d.authenticate_sha1(s, now)
        } else {
            d.authenticate(s, now)
        };
        if p.is_some() {
            return p;
        }
    }
    if let Some(b) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
        && let Some(p) = d.authenticate(b.trim(), now)
    {
        return Some(p);
    }
    if let Some(p) = query_param(req.uri(), "token").and_then(|t| d.authenticate(&t, now)) {
        return Some(p);
    }
    query_param(req.uri(), "secret").and_then(|t| d.authenticate_sha1(&t, now))
}

/// The Nightscout-compatible API of each patient: reads are `ReadPatientData`, writes
/// `WriteSamples`, both on the path's patient.
pub(crate) fn routes(r: &mut crate::server::Routes) {
    use crate::authz::Action::{ReadPatientData as Read, WriteSamples as Write};
    use crate::server::Credentials::Nightscout as Ns;
    let base = "/nightscout/{patient}/api/v1";
    for path in ["entries", "entries.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, false, post_entries);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, false, get_entries);
    }
    for path in ["entries/sgv.json", "entries/sgv"] {
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, false, get_sgv);
    }
    r.add(Method::GET, &format!("{base}/entries/mbg.json"), Read, Ns, false, get_mbg);
    r.add(Method::GET, &format!("{base}/entries/current.json"), Read, Ns, false, get_current);
    for path in ["devicestatus", "devicestatus.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, false, post_devicestatus);
    }
    for path in ["treatments", "treatments.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, false, post_treatments);
        r.add(Method::PUT, &format!("{base}/{path}"), Write, Ns, false, post_treatments);
    }
    for path in ["status.json", "status"] {
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, false, status);
    }
}

fn patient(raw: &str) -> Result<PatientId, Box<Response>> {
    PatientId::new(raw).map_err(|e| Box::new(ns_error(StatusCode::BAD_REQUEST, &format!("patient {raw:?} {e}"))))
}

/// Decodes, keeps what was refused, writes what was accepted; answers with the accepted docs.
async fn ingest(
    app: AppState,
    patient_raw: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &'static str,
) -> Response {
    let p = match patient(&patient_raw) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return ns_error(e.status(), &e.body_text()),
    };
    let limit = app.config.server.body_limit_bytes;
    let result = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let plain = crate::request_body::plain(&headers, &body, limit)?;
            let cfg = &app.config.ingest;
            let mut v =
                Validator::new(app.catalog, app.clock.now_ms(), cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()));
            let decoded = match what {
                "entries" => nightscout::decode_entries(&plain, p.as_str(), &mut v),
                "devicestatus" => nightscout::decode_devicestatus(&plain, p.as_str(), &mut v),
                _ => nightscout::decode_treatments(&plain, p.as_str(), &mut v),
            };
            let source = format!("nightscout/{what}");
            let refused = match &decoded {
                Ok(d) => Refused { rejections: &d.batch.rejections, unsupported: &d.unsupported, ..Refused::default() },
                Err(_) => Refused::default(),
            };
            let whole = decoded.as_ref().err().map(|e| e.to_string());
            let refused = Refused { whole_failure: whole.as_deref(), patient: Some(p.as_str()), ..refused };
            // Kept in its own format so a replay knows how to read it.
            app.keep_refused(&source, WireFormat::Nightscout(what), &plain, &refused);
            let mut decoded = decoded.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
            let events = std::mem::take(&mut decoded.events);
            let docs: Vec<Value> = events
                .iter()
                .map(|e| {
                    let mut doc = Value::Object(e.attributes.clone().into_iter().collect());
                    doc["_id"] = json!(e.id);
                    doc
                })
                .collect();
            app.events.put(events).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok((decoded, docs))
        })
        .await
    };
    let (decoded, event_docs) = match result {
        Ok(Ok(d)) => d,
        Ok(Err((status, msg))) => return ns_error(status, &msg),
        Err(e) => {
            tracing::error!(error = %e, "nightscout decode task");
            return ns_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut docs: Vec<Value> = decoded
        .batch
        .samples
        .iter()
        .map(|s| {
            let code = app.catalog.get(s.metric).code;
            let ty = if code == "blood_glucose_meter" {
                "mbg"
            } else if code == "blood_glucose" {
                "sgv"
            } else {
                code
            };
            json!({"_id": doc_id(ty, s.time_ms), "type": ty, ty: num(s.value), "date": s.time_ms,
                   "dateString": format_time(s.time_ms), "device": s.device.as_ref().map(|d| d.as_str())})
        })
        .collect();
    docs.extend(event_docs);
    let accepted = decoded.batch.samples.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = app.store.submit(decoded.batch.samples, move |r| {
        let _ = tx.send(r);
    }) {
        return crate::api_error::ApiError::from(e).into_response();
    }
    match rx.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return crate::api_error::ApiError::from(e).into_response(),
        Err(_) => return ns_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
    app.telemetry.ingested.inc_by(accepted as u64);
    Json(Value::Array(docs)).into_response()
}

/// Glucose as clients expect it: an integer when it is one (`118`, not `118.0`).
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 { json!(v as i64) } else { json!(v) }
}

fn doc_id(ty: &str, time_ms: i64) -> String {
    format!("{ty}-{time_ms}")
}

pub async fn post_entries(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, "entries").await
}

pub async fn post_devicestatus(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, "devicestatus").await
}

/// Treatments become `treatment` events (re-sends with the same id replace them).
pub async fn post_treatments(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, "treatments").await
}

/// Which entries a read returns.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    All,
    Sgv,
    Mbg,
}

fn bound(q: &HashMap<String, String>, field: &str, op: &str) -> Option<i64> {
    let v = q.get(&format!("find[{field}][{op}]"))?;
    if let Ok(ms) = v.trim().parse::<f64>() {
        return Some(ms as i64);
    }
    parse_time(v).ok().or_else(|| parse_time(&format!("{}T00:00:00Z", v.trim())).ok())
}

async fn entries(app: AppState, p: String, q: HashMap<String, String>, kind: Kind, default_count: usize) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(default_count).min(100_000);
    let now = app.clock.now_ms();
    let mut from = 0i64;
    let mut to = now + app.config.ingest.max_future.as_ms() + 1;
    for field in ["date", "dateString"] {
        if let Some(t) = bound(&q, field, "$gte") {
            from = from.max(t);
        }
        if let Some(t) = bound(&q, field, "$gt") {
            from = from.max(t + 1);
        }
        if let Some(t) = bound(&q, field, "$lte") {
            to = to.min(t + 1);
        }
        if let Some(t) = bound(&q, field, "$lt") {
            to = to.min(t);
        }
    }
    let metrics: &[(&str, &str)] = match kind {
        Kind::All => &[("blood_glucose", "sgv"), ("blood_glucose_meter", "mbg")],
        Kind::Sgv => &[("blood_glucose", "sgv")],
        Kind::Mbg => &[("blood_glucose_meter", "mbg")],
    };
    let store = app.store.clone();
    let catalog = app.catalog;
    let metrics: Vec<(&'static str, &'static str)> = metrics.to_vec();
    let docs = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        let mut docs: Vec<(i64, Value)> = Vec::new();
        for (code, ty) in metrics {
            let Some(metric) = catalog.id(code) else { continue };
            // Look back in growing windows until enough readings are found.
            let mut window = MS_PER_DAY;
            let points = loop {
                let start = (to - window).max(from);
                let q = SeriesQuery {
                    patient: p.clone(),
                    metric,
                    device: None,
                    from: start,
                    to,
                    every_ms: None,
                    aggs: vec![],
                };
                let pts = match vitals_query::run(&store, &q).map_err(|e| e.to_string())? {
                    QueryResult::Raw(pts) => pts,
                    QueryResult::Buckets(_) => Vec::new(),
                };
                if pts.len() > count || start <= from || window > 400 * MS_PER_DAY {
                    break pts;
                }
                window *= 4;
            };
            let n = points.len();
            for (i, pt) in points.iter().enumerate().skip(n.saturating_sub(count)) {
                let mut doc = json!({"_id": doc_id(ty, pt.time_ms), "type": ty, ty: num(pt.value), "date": pt.time_ms,
                    "dateString": format_time(pt.time_ms), "sysTime": format_time(pt.time_ms),
                    "device": pt.device.as_ref().map(|d| d.as_str())});
                if ty == "sgv" {
                    let prev = i.checked_sub(1).map(|j| &points[j]).filter(|q| pt.time_ms - q.time_ms <= 15 * 60_000);
                    doc["direction"] = json!(direction(
                        prev.map(|q| (pt.value - q.value) / ((pt.time_ms - q.time_ms) as f64 / 60_000.0))
                    ));
                }
                docs.push((pt.time_ms, doc));
            }
        }
        docs.sort_by_key(|d| std::cmp::Reverse(d.0));
        docs.truncate(count);
        Ok(docs.into_iter().map(|d| d.1).collect())
    })
    .await;
    match docs {
        Ok(Ok(d)) => Json(Value::Array(d)).into_response(),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Nightscout's trend arrow for a rate of change in mg/dL per minute.
fn direction(rate: Option<f64>) -> &'static str {
    match rate {
        None => "NONE",
        Some(r) if !r.is_finite() => "NOT COMPUTABLE",
        Some(r) if r > 3.0 => "DoubleUp",
        Some(r) if r > 2.0 => "SingleUp",
        Some(r) if r > 1.0 => "FortyFiveUp",
        Some(r) if r >= -1.0 => "Flat",
        Some(r) if r >= -2.0 => "FortyFiveDown",
        Some(r) if r >= -3.0 => "SingleDown",
        Some(_) => "DoubleDown",
    }
}

pub async fn get_entries(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::All, 10).await
}

pub async fn get_sgv(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::Sgv, 10).await
}

pub async fn get_mbg(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::Mbg, 10).await
}

pub async fn get_current(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Response {
    q.insert("count".into(), "1".into());
    entries(app, p, q, Kind::Sgv, 1).await
}

pub async fn status(State(app): State<AppState>, Path(p): Path<String>) -> Response {
    if let Err(r) = patient(&p) {
        return *r;
    }
    let now = app.clock.now_ms();
    Json(json!({
        "status": "ok", "name": "Vitals", "version": env!("CARGO_PKG_VERSION"),
        "serverTime": format_time(now), "serverTimeEpoch": now,
        "apiEnabled": true, "careportalEnabled": false, "boluscalcEnabled": false,
        "settings": {"units": "mg/dl", "timeFormat": 24, "enable": [],
                     "thresholds": {"bgHigh": 260, "bgTargetTop": 180, "bgTargetBottom": 80, "bgLow": 55}},
        "authorized": null
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::direction;

    #[test]
    fn directions_follow_nightscout_thresholds() {
        let cases = [
            (None, "NONE"),
            (Some(3.5), "DoubleUp"),
            (Some(2.5), "SingleUp"),
            (Some(1.5), "FortyFiveUp"),
            (Some(0.0), "Flat"),
            (Some(-1.5), "FortyFiveDown"),
            (Some(-2.5), "SingleDown"),
            (Some(-4.0), "DoubleDown"),
        ];
        for (rate, want) in cases {
            assert_eq!(direction(rate), want, "{rate:?}");
        }
    }
}
