//! A Nightscout-compatible API per patient, `/nightscout/{patient}/api/v1/...`, so that
//! existing CGM uploaders (xDrip+, Loop, AndroidAPS) and followers work unchanged.
//!
//! Auth as those clients do it: `api-secret: <hex SHA-1 of a Vitals token>` (Vitals keeps
//! only hashes), `?token=<token>`, `?secret=<sha1>` or `Authorization: Bearer <token>`.
//! Unlike Nightscout there are no anonymous reads. A token bound to a patient serves only
//! that patient's URL. Gzip request bodies are accepted.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;
use vitals_core::{Event, PatientId};
use vitals_ingest::nightscout;
use vitals_ingest::nightscout_doc::{Collection, identifier, is_valid, ns_doc, reading_doc};
use vitals_ingest::nightscout_query::{Condition, equality_find, time_bounds};
use vitals_query::{QueryResult, SeriesQuery};
use vitals_storage::documents::DocumentQuery;

use super::pipeline::{IngestError, Submission};
use super::wire_format::{NightscoutCollection, WireFormat};
use crate::app::AppState;

pub(super) fn ns_error(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({"status": status.as_u16(), "message": message}))).into_response();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::PAYLOAD_TOO_LARGE) {
        crate::api::error::closing(&mut r);
    }
    r
}

/// A refusal as Nightscout answers it.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    ns_error(status, message)
}

pub(super) fn patient(raw: &str) -> Result<PatientId, Box<Response>> {
    PatientId::new(raw).map_err(|e| Box::new(ns_error(StatusCode::BAD_REQUEST, &format!("patient {raw:?} {e}"))))
}

/// Takes an upload through the pipeline; answers with the accepted documents.
async fn ingest(
    app: AppState,
    patient_raw: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: NightscoutCollection,
) -> Response {
    let p = match patient(&patient_raw) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return ns_error(e.status(), &e.body_text()),
    };
    match upload(app, p, headers, body, what, false).await {
        Ok(stored) => Json(Value::Array(stored.into_iter().map(|s| ns_doc(s.doc)).collect())).into_response(),
        Err(r) => *r,
    }
}

/// A document as stored by an upload.
pub(super) struct Stored {
    pub doc: Event,
    /// Whether it replaced a document that was there (and not deleted).
    pub replaced: bool,
}

/// Decodes a body of a collection, stamps its documents (see [`stamp`]) and stores them
/// with their samples; once durable, what was stored. Refusals in Nightscout's format;
/// `strict`: a body of which nothing is stored is refused with the first reason (API v3
/// writes one document; API v1 answers such a batch with an empty list, as before).
pub(super) async fn upload(
    app: AppState,
    p: PatientId,
    headers: HeaderMap,
    body: Bytes,
    what: NightscoutCollection,
    strict: bool,
) -> Result<Vec<Stored>, Box<Response>> {
    let limit = app.config.server.body_limit_bytes;
    let decoded = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let plain = super::request_body::plain(&headers, &body, limit)?;
            let source = format!("nightscout/{}", what.as_str());
            let sub = Submission::new(source, WireFormat::Nightscout(what), plain.into_owned()).patient(Some(p));
            let mut accepted = app.pipeline.decode(&sub).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
            if strict
                && accepted.events.is_empty()
                && let Some(r) = accepted.report.rejected.first()
            {
                // Nothing stored: say why (the first reason), as Nightscout refuses a document.
                return Err((StatusCode::BAD_REQUEST, format!("item {}: {}", r.index, r.message)));
            }
            let replaced = stamp(&app, &mut accepted.events, app.clock.now_ms());
            let docs = accepted.events.clone();
            let pending = app.pipeline.submit(accepted).map_err(|e| match e {
                IngestError::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            })?;
            let stored = docs.into_iter().zip(replaced).map(|(doc, replaced)| Stored { doc, replaced }).collect();
            Ok::<_, (StatusCode, String)>((pending, stored))
        })
        .await
    };
    let (pending, stored) = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err((status, msg))) => return Err(Box::new(ns_error(status, &msg))),
        Err(e) => {
            tracing::error!(error = %e, "nightscout decode task");
            return Err(Box::new(ns_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")));
        }
    };
    match pending.durable().await {
        Ok(_) => Ok(stored),
        Err(IngestError::Store(e)) => Err(Box::new(crate::api::error::ApiError::from(e).into_response())),
        Err(e) => Err(Box::new(ns_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))),
    }
}

/// What the server adds to every stored document, as Nightscout does: `srvModified` (now),
/// `srvCreated` (kept from the document replaced, else now) and `identifier` (the sender's,
/// else the document's own id); for each, whether it replaced a live document.
pub(super) fn stamp(app: &crate::app::App, docs: &mut [Event], now: i64) -> Vec<bool> {
    // The documents they replace, in one lookup per patient (a backfill brings hundreds).
    let mut before: HashMap<(String, String), Event> = HashMap::new();
    let mut patients: Vec<&str> = docs.iter().map(|e| e.patient.as_str()).collect();
    patients.sort_unstable();
    patients.dedup();
    for p in patients {
        let ids: Vec<&str> = docs.iter().filter(|e| e.patient == p).map(|e| e.id.as_str()).collect();
        for e in app.events.get_many(p, &ids).unwrap_or_default() {
            before.insert((e.patient.clone(), e.id.clone()), e);
        }
    }
    docs.iter_mut()
        .map(|e| {
            let before = before.get(&(e.patient.clone(), e.id.clone()));
            let created = before.and_then(|b| b.attributes.get("srvCreated").cloned()).unwrap_or(json!(now));
            e.attributes.insert("srvModified".into(), json!(now));
            e.attributes.insert("srvCreated".into(), created);
            let id = identifier(e);
            e.attributes.entry("identifier".to_owned()).or_insert(json!(id));
            before.is_some_and(is_valid)
        })
        .collect()
}

pub(crate) async fn post_entries(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::Entries).await
}

pub(crate) async fn post_devicestatus(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::DeviceStatus).await
}

/// Treatments become `treatment` events (re-sends with the same id replace them).
pub(crate) async fn post_treatments(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::Treatments).await
}

/// Profiles become `profile` events holding the whole document.
pub(crate) async fn post_profile(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::Profile).await
}

/// `GET profile`: the patient's profile documents as uploaded, newest `startDate` first
/// (`count`, all by default), as followers read basal rates, ratios and targets.
pub(crate) async fn get_profile(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let mut events = app.events.query(p.as_str(), i64::MIN, i64::MAX, Some("profile"));
    events.retain(is_valid);
    events.sort_by_key(|e| std::cmp::Reverse(e.start_ms));
    events.truncate(count);
    Json(Value::Array(events.into_iter().map(ns_doc).collect())).into_response()
}

/// Which entries a read returns.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    All,
    Sgv,
    Mbg,
}

/// `GET entries`: the uploaders' entries as they sent them (the CGM's own arrow, delta,
/// noise, raw values, the device name), newest first; readings that came another way in
/// (an app, a file) are added as Nightscout would show them, their arrow computed.
async fn entries(app: AppState, p: String, q: HashMap<String, String>, kind: Kind, default_count: usize) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(default_count).min(100_000);
    let now = app.clock.now_ms();
    let (from, to) = time_bounds(&q, &["date", "dateString"], (0, now + app.config.ingest.max_future.as_ms() + 1));
    let metrics: &[(&str, &str)] = match kind {
        Kind::All => &[("blood_glucose", "sgv"), ("blood_glucose_meter", "mbg")],
        Kind::Sgv => &[("blood_glucose", "sgv")],
        Kind::Mbg => &[("blood_glucose_meter", "mbg")],
    };
    let only_type = match kind {
        Kind::All => None,
        Kind::Sgv => Some("sgv"),
        Kind::Mbg => Some("mbg"),
    };
    let metrics: Vec<(&'static str, &'static str)> = metrics.to_vec();
    let docs = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        let query = DocumentQuery {
            patient: p.as_str(),
            kind: nightscout::ENTRIES,
            from,
            to,
            limit: count,
            field: only_type.map(|t| ("type", t)),
            ascending: false,
            live_only: false,
        };
        let stored = app.events.documents().newest(&query).map_err(|e| e.to_string())?;
        let mut docs: Vec<(i64, String, Value)> = Vec::new();
        let mut sent: HashSet<String> = HashSet::new();
        for e in stored {
            // A deleted entry hides its reading too.
            sent.insert(e.id.clone());
            if is_valid(&e) {
                docs.push((e.start_ms, e.id.clone(), ns_doc(e)));
            }
        }
        for (code, ty) in metrics {
            let Some(metric) = app.catalog.id(code) else { continue };
            let points = newest_points(&app, &p, metric, (from, to), count)?;
            let n = points.len();
            for (i, pt) in points.iter().enumerate().skip(n.saturating_sub(count)) {
                let id = format!("{ty}-{}", pt.time_ms);
                if sent.contains(&id) {
                    continue;
                }
                let prev = i.checked_sub(1).map(|j| (points[j].time_ms, points[j].value));
                let device = pt.device.as_ref().map(|d| d.as_str());
                docs.push((pt.time_ms, id, reading_doc(ty, (pt.time_ms, pt.value), device, prev)));
            }
        }
        docs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        docs.truncate(count);
        Ok(docs.into_iter().map(|d| d.2).collect())
    })
    .await;
    match docs {
        Ok(Ok(d)) => Json(Value::Array(d)).into_response(),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// At least the newest `count` readings of a metric in `[from, to)` (oldest first), looked
/// for in growing windows back from `to`.
fn newest_points(
    app: &AppState,
    p: &PatientId,
    metric: vitals_core::MetricId,
    (from, to): (i64, i64),
    count: usize,
) -> Result<Vec<vitals_query::RawPoint>, String> {
    let mut window = MS_PER_DAY;
    loop {
        let start = to.saturating_sub(window).max(from);
        let q = SeriesQuery { patient: p.clone(), metric, device: None, from: start, to, every_ms: None, aggs: vec![] };
        let pts = match vitals_query::run(&app.store, &q).map_err(|e| e.to_string())? {
            QueryResult::Raw(pts) => pts,
            QueryResult::Buckets(_) => Vec::new(),
        };
        if pts.len() > count || start <= from || window > 400 * MS_PER_DAY {
            return Ok(pts);
        }
        window *= 4;
    }
}

/// `GET devicestatus`: the uploaders' statuses as sent (loop and pump state, predictions,
/// batteries), newest first; `count` (10), `find[created_at][$gte|$gt|$lte|$lt]` (also on
/// `date` and `mills`), and one `find[<field>]=<value>` (e.g. `find[device]=...`).
pub(crate) async fn get_devicestatus(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_documents(app, p, q, nightscout::DEVICESTATUS, 10).await
}

/// `GET activity`: xDrip+'s activity records as sent, newest first (as `devicestatus`).
pub(crate) async fn get_activity(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_documents(app, p, q, nightscout::ACTIVITY, 10).await
}

/// `GET food`: the food database (all of it unless `count` is given).
pub(crate) async fn get_food(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_documents(app, p, q, nightscout::FOOD, 100_000).await
}

/// Documents of a kind, newest first: `count`, time bounds on `created_at`, `date` or
/// `mills`, one `find[<field>]=` on a plain field name.
async fn read_documents(
    app: AppState,
    p: String,
    q: HashMap<String, String>,
    kind: &'static str,
    default_count: usize,
) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(default_count).min(100_000);
    let (from, to) = time_bounds(&q, &["created_at", "date", "mills"], (i64::MIN, i64::MAX));
    let field = match plain_find(&q) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let read = tokio::task::spawn_blocking(move || {
        let query = DocumentQuery {
            patient: p.as_str(),
            kind,
            from,
            to,
            limit: count,
            field: field.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
            ascending: false,
            live_only: true,
        };
        app.events.documents().newest(&query)
    })
    .await;
    match read {
        Ok(Ok(docs)) => Json(Value::Array(docs.into_iter().map(ns_doc).collect())).into_response(),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The query's `find[<field>]=<value>`, refused unless the field is a plain name.
fn plain_find(q: &HashMap<String, String>) -> Result<Option<(String, String)>, Box<Response>> {
    equality_find(q).map_err(|why| Box::new(ns_error(StatusCode::BAD_REQUEST, &why)))
}

/// `GET treatments`: the patient's treatments as the uploader sent them (every field kept),
/// newest first; `count` (10), `find[created_at][$gte|$gt|$lte|$lt]` (also on `date` and
/// `mills`: milliseconds or a date), one `find[<field>]=...` (`eventType`; xDrip+ looks its
/// own up by `uuid` before deleting them).
///
/// xDrip+ downloads treatments only when they changed: the answer has an `ETag` (of every
/// treatment's id, last change and deletion) and `Last-Modified`; `If-None-Match` with that
/// tag, or `If-Modified-Since` a second after the last change or later, gets 304. (Not the
/// same second: a change later in that second would be missed.)
pub(crate) async fn get_treatments(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(10).min(100_000);
    let (from, to) = time_bounds(&q, &["created_at", "date", "mills"], (i64::MIN, i64::MAX));
    let field = match plain_find(&q) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut events = app.events.query(p.as_str(), i64::MIN, i64::MAX, Some("treatment"));
    let last = events.iter().map(Event::changed_ms).max();
    let tag = format!(
        "\"{}\"",
        Event::content_id(
            p.as_str(),
            "treatments",
            0,
            0,
            &events.iter().fold(query_key(&q), |mut acc, e| {
                acc.push_str(&format!("{}:{}:{}\u{1f}", e.id, e.changed_ms(), is_valid(e)));
                acc
            })
        )
    );
    let unchanged_tag = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let unchanged_since =
        matches!((last, header_time(&headers, header::IF_MODIFIED_SINCE)), (Some(l), Some(s)) if l < s);
    let mut r = if unchanged_tag || (unchanged_since && headers.get(header::IF_NONE_MATCH).is_none()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        events.retain(|e| e.start_ms >= from && e.start_ms < to && is_valid(e));
        if let Some((field, value)) = field {
            let c = Condition { field, op: "eq".into(), value };
            events.retain(|e| c.holds(&Value::Object(e.attributes.clone().into_iter().collect())));
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.start_ms));
        events.truncate(count);
        Json(Value::Array(events.into_iter().map(ns_doc).collect())).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    with_last_modified(r, last)
}

/// A query's parameters in a stable order, one text (a tag differs per query).
fn query_key(q: &HashMap<String, String>) -> String {
    let mut pairs: Vec<(&String, &String)> = q.iter().collect();
    pairs.sort();
    pairs.into_iter().fold(String::new(), |acc, (k, v)| acc + k + "=" + v + "\u{1e}")
}

/// A time in an HTTP date header (`If-Modified-Since`, `Last-Modified`), as ms.
pub(super) fn header_time(headers: &HeaderMap, name: header::HeaderName) -> Option<i64> {
    let v = headers.get(name)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(v).ok().map(|t| t.timestamp_millis())
}

/// The answer with `Last-Modified: <last>` (an HTTP date), if there is a last change.
pub(super) fn with_last_modified(mut r: Response, last: Option<i64>) -> Response {
    let date = last.and_then(chrono::DateTime::from_timestamp_millis);
    if let Some(Ok(v)) = date.map(|t| HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())) {
        r.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    r
}

/// `POST activity`: xDrip+'s heart rate (also a reading), steps and motion records.
pub(crate) async fn post_activity(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::Activity).await
}

/// `POST food`: foods of the food database.
pub(crate) async fn post_food(
    State(app): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(app, p, headers, body, NightscoutCollection::Food).await
}

/// `DELETE treatments/{id}` (and `devicestatus/{id}`, `entries/{id}`, `food/{id}`): marks
/// the document deleted, as API v3's `DELETE` does.
pub(crate) async fn delete_document(
    State(app): State<AppState>,
    Path((p, collection, id)): Path<(String, String, String)>,
) -> Response {
    let (p, c) = match (patient(&p), Collection::parse(&collection)) {
        (Ok(p), Some(c)) => (p, c),
        (Err(r), _) => return *r,
        (_, None) => return ns_error(StatusCode::NOT_FOUND, &format!("collection {collection:?} is not served here")),
    };
    match tokio::task::spawn_blocking(move || super::nightscout_v3::tombstone(&app, &p, c, &id)).await {
        Ok(Ok(Some(()))) => Json(json!({"n": 1, "ok": 1})).into_response(),
        Ok(Ok(None)) => ns_error(StatusCode::NOT_FOUND, "no such document"),
        Ok(Err(e)) => ns_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(crate) async fn get_entries(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::All, 10).await
}

pub(crate) async fn get_sgv(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::Sgv, 10).await
}

pub(crate) async fn get_mbg(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    entries(app, p, q, Kind::Mbg, 10).await
}

pub(crate) async fn get_current(
    State(app): State<AppState>,
    Path(p): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Response {
    q.insert("count".into(), "1".into());
    entries(app, p, q, Kind::Sgv, 1).await
}

/// `status.json`: the server's settings as followers and uploaders read them (`[nightscout]`:
/// units, thresholds, the enabled plugins).
pub(crate) async fn status(State(app): State<AppState>, Path(p): Path<String>) -> Response {
    if let Err(r) = patient(&p) {
        return *r;
    }
    Json(app.config.nightscout.status_json(env!("CARGO_PKG_VERSION"), app.clock.now_ms())).into_response()
}
