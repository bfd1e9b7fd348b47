//! Nightscout API v3 per patient, `/nightscout/{patient}/api/v3/...`, as AndroidAPS'
//! NSClient v3 and Trio use it: documents with an `identifier`, `srvCreated` and
//! `srvModified` (ms, set by the server at each change), soft deletion (`isValid: false`,
//! still in the history so that syncing clients learn of it), `history/{since}` (what
//! changed after a time, oldest change first), `lastModified`, search with
//! `<field>$<op>=` filters, `sort`/`sort$desc`, `limit`, `skip`, `fields`. Answers in v3's
//! envelope `{"status": ..., "result": ...}`.
//!
//! The collections are the v1 API's (`entries`, `devicestatus`, `treatments`, `profile`):
//! a document written through either API is read through both, and v3 writes take the same
//! decoders, pipeline and durability. Authentication as for v1; the token exchange
//! `GET /api/v2/authorization/request/{token}` answers the token itself as `token` (Vitals'
//! tokens are bearer tokens already, stored hashed), which clients then send as
//! `Authorization: Bearer`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use vitals_core::{Event, PatientId};
use vitals_ingest::nightscout_doc::{Collection, identifier, is_valid, v3_doc};
use vitals_ingest::nightscout_query::{MAX_LIMIT, project, search_of};
use vitals_storage::documents::DocumentQuery;

use super::nightscout_api::{header_time, ns_error, patient, upload, with_last_modified};
use super::wire_format::NightscoutCollection;
use crate::app::AppState;

/// The wire format of a collection's uploads.
fn wire(c: Collection) -> NightscoutCollection {
    match c {
        Collection::Entries => NightscoutCollection::Entries,
        Collection::DeviceStatus => NightscoutCollection::DeviceStatus,
        Collection::Treatments => NightscoutCollection::Treatments,
        Collection::Profile => NightscoutCollection::Profile,
        Collection::Food => NightscoutCollection::Food,
    }
}

fn envelope(status: StatusCode, result: Value) -> Response {
    (status, Json(json!({"status": status.as_u16(), "result": result}))).into_response()
}

fn collection(raw: &str) -> Result<Collection, Box<Response>> {
    Collection::parse(raw)
        .ok_or_else(|| Box::new(ns_error(StatusCode::NOT_FOUND, &format!("collection {raw:?} is not served here"))))
}

/// A patient's documents of a collection starting in `[from, to)`, in time order.
fn list(
    app: &crate::app::App,
    p: &PatientId,
    c: Collection,
    (from, to): (i64, i64),
    ascending: bool,
    limit: usize,
    live_only: bool,
) -> Result<Vec<Event>, String> {
    if c.is_document() {
        let q =
            DocumentQuery { patient: p.as_str(), kind: c.kind(), from, to, limit, field: None, ascending, live_only };
        return app.events.documents().newest(&q).map_err(|e| e.to_string());
    }
    let mut events = app.events.query(p.as_str(), i64::MIN, i64::MAX, Some(c.kind()));
    events.retain(|e| e.start_ms >= from && e.start_ms < to && (!live_only || is_valid(e)));
    if !ascending {
        events.reverse();
    }
    events.truncate(limit);
    Ok(events)
}

/// A patient's documents of a collection changed after `since`, oldest change first.
fn changed_since(
    app: &crate::app::App,
    p: &PatientId,
    c: Collection,
    since: i64,
    limit: usize,
) -> Result<Vec<Event>, String> {
    if c.is_document() {
        return app.events.documents().changed_since(p.as_str(), c.kind(), since, limit).map_err(|e| e.to_string());
    }
    let mut events = app.events.query(p.as_str(), i64::MIN, i64::MAX, Some(c.kind()));
    events.retain(|e| e.changed_ms() > since);
    events.sort_by(|a, b| a.changed_ms().cmp(&b.changed_ms()).then_with(|| a.id.cmp(&b.id)));
    events.truncate(limit);
    Ok(events)
}

/// The document of a collection with this identifier (deleted ones too).
fn find(app: &crate::app::App, p: &PatientId, c: Collection, ident: &str) -> Result<Option<Event>, String> {
    let direct = app.events.get(p.as_str(), &format!("{}{ident}", c.prefix())).map_err(|e| e.to_string())?;
    if let Some(e) = direct.filter(|e| e.kind == c.kind()) {
        return Ok(Some(e));
    }
    // A sender's own `identifier` that is not the id (an entry's, or beside an `_id`).
    if c.is_document() {
        let q = DocumentQuery {
            patient: p.as_str(),
            kind: c.kind(),
            from: i64::MIN,
            to: i64::MAX,
            limit: 1,
            field: Some(("identifier", ident)),
            ascending: false,
            live_only: false,
        };
        return Ok(app.events.documents().newest(&q).map_err(|e| e.to_string())?.into_iter().next());
    }
    let events = app.events.query(p.as_str(), i64::MIN, i64::MAX, Some(c.kind()));
    Ok(events.into_iter().find(|e| identifier(e) == ident))
}

/// `GET /api/v3/{collection}`: search, newest first unless `sort=<field>` (oldest first).
pub(crate) async fn search(
    State(app): State<AppState>,
    Path((p, c)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (p, c) = match (patient(&p), collection(&c)) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let s = match search_of(&q) {
        Ok(s) => s,
        Err(why) => return ns_error(StatusCode::BAD_REQUEST, &why),
    };
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        // Conditions other than time are checked here: read more than asked for them.
        let want = s.skip.saturating_add(s.limit);
        let fetch = if s.conditions.is_empty() { want } else { want.saturating_mul(20).min(100_000) };
        let docs = list(&app, &p, c, s.window, s.ascending, fetch, true)?;
        Ok(docs
            .into_iter()
            .map(v3_doc)
            .filter(|d| s.conditions.iter().all(|k| k.holds(d)))
            .skip(s.skip)
            .take(s.limit)
            .map(|d| project(d, s.fields.as_deref()))
            .collect())
    })
    .await;
    match found {
        Ok(Ok(docs)) => envelope(StatusCode::OK, Value::Array(docs)),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/v3/{collection}/history/{since}` (ms), or `.../history` with `Last-Modified`:
/// the documents changed after it, deleted ones too, oldest change first (`limit`, 1000).
pub(crate) async fn history(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (p, c) = match (
        patient(params.get("patient").map_or("", String::as_str)),
        collection(params.get("collection").map_or("", String::as_str)),
    ) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let since = match params.get("since") {
        Some(raw) => raw.parse::<i64>().ok(),
        None => {
            header_time(&headers, header::IF_MODIFIED_SINCE).or_else(|| header_time(&headers, header::LAST_MODIFIED))
        }
    };
    let Some(since) = since else {
        return ns_error(StatusCode::BAD_REQUEST, "history needs a time: /history/{ms} or a Last-Modified header");
    };
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let fields = q.get("fields").cloned();
    let found = tokio::task::spawn_blocking(move || changed_since(&app, &p, c, since, limit)).await;
    match found {
        Ok(Ok(docs)) => {
            let last = docs.iter().map(Event::changed_ms).max();
            let docs: Vec<Value> = docs.into_iter().map(|d| project(v3_doc(d), fields.as_deref())).collect();
            with_last_modified(envelope(StatusCode::OK, Value::Array(docs)), last)
        }
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/v3/{collection}/{identifier}`: 404 if there is none, 410 if it was deleted.
pub(crate) async fn read(
    State(app): State<AppState>,
    Path((p, c, ident)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (p, c) = match (patient(&p), collection(&c)) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let found = tokio::task::spawn_blocking(move || find(&app, &p, c, &ident)).await;
    match found {
        Ok(Ok(Some(e))) if is_valid(&e) => {
            envelope(StatusCode::OK, project(v3_doc(e), q.get("fields").map(String::as_str)))
        }
        Ok(Ok(Some(_))) => ns_error(StatusCode::GONE, "deleted"),
        Ok(Ok(None)) => ns_error(StatusCode::NOT_FOUND, "no such document"),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The JSON object of a v3 write's body.
fn object_of(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, Box<Response>> {
    let body = body.map_err(|e| Box::new(ns_error(e.status(), &e.body_text())))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Box::new(ns_error(StatusCode::BAD_REQUEST, "the body must be one JSON object"))),
        Err(e) => Err(Box::new(ns_error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")))),
    }
}

/// Fields the server keeps: a write never sets them.
const SERVER_FIELDS: [&str; 5] = ["_id", "srvCreated", "srvModified", "isValid", "subject"];

/// Stores one document through the collection's decoder; its stored form.
async fn write(
    app: AppState,
    p: PatientId,
    c: Collection,
    headers: HeaderMap,
    mut doc: Map<String, Value>,
) -> Result<(Event, bool), Box<Response>> {
    for k in SERVER_FIELDS {
        doc.remove(k);
    }
    let body = Bytes::from(Value::Object(doc).to_string());
    let mut headers = headers;
    headers.remove(header::CONTENT_ENCODING);
    let mut stored = upload(app, p, headers, body, wire(c), true).await?;
    match stored.pop() {
        Some(s) => Ok((s.doc, s.replaced)),
        None => Err(Box::new(ns_error(StatusCode::BAD_REQUEST, "nothing in the body could be stored"))),
    }
}

fn written(status: StatusCode, e: &Event, dedup: bool) -> Response {
    let mut body = json!({"status": status.as_u16(), "identifier": identifier(e), "lastModified": e.changed_ms()});
    if dedup {
        body["isDeduplication"] = json!(true);
        body["deduplicatedIdentifier"] = json!(identifier(e));
    }
    (status, Json(body)).into_response()
}

/// `POST /api/v3/{collection}`: creates a document (201), or replaces the one with the same
/// identity (entries: type and date; others: the sender's identifier, else their time and
/// kind) and says so (200, `isDeduplication`).
pub(crate) async fn create(
    State(app): State<AppState>,
    Path((p, c)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (p, c, doc) = match (patient(&p), collection(&c), object_of(body)) {
        (Ok(p), Ok(c), Ok(d)) => (p, c, d),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return *r,
    };
    match write(app, p, c, headers, doc).await {
        Ok((e, false)) => written(StatusCode::CREATED, &e, false),
        Ok((e, true)) => written(StatusCode::OK, &e, true),
        Err(r) => *r,
    }
}

/// `PUT /api/v3/{collection}/{identifier}`: replaces (or creates) the document.
pub(crate) async fn replace(
    State(app): State<AppState>,
    Path((p, c, ident)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (p, c, mut doc) = match (patient(&p), collection(&c), object_of(body)) {
        (Ok(p), Ok(c), Ok(d)) => (p, c, d),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return *r,
    };
    doc.insert("identifier".into(), json!(ident));
    match write(app, p, c, headers, doc).await {
        Ok((e, replaced)) => written(if replaced { StatusCode::OK } else { StatusCode::CREATED }, &e, false),
        Err(r) => *r,
    }
}

/// `PATCH /api/v3/{collection}/{identifier}`: changes the fields given (`null` removes
/// one); 404 if there is no such document, 410 if it was deleted.
pub(crate) async fn patch(
    State(app): State<AppState>,
    Path((p, c, ident)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (p, c, changes) = match (patient(&p), collection(&c), object_of(body)) {
        (Ok(p), Ok(c), Ok(d)) => (p, c, d),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return *r,
    };
    let found = {
        let (app, p, ident) = (app.clone(), p.clone(), ident.clone());
        tokio::task::spawn_blocking(move || find(&app, &p, c, &ident)).await
    };
    let before = match found {
        Ok(Ok(Some(e))) if is_valid(&e) => e,
        Ok(Ok(Some(_))) => return ns_error(StatusCode::GONE, "deleted"),
        Ok(Ok(None)) => return ns_error(StatusCode::NOT_FOUND, "no such document"),
        Ok(Err(e)) => return ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => return ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut doc: Map<String, Value> = before.attributes.into_iter().collect();
    for (k, v) in changes {
        if v.is_null() {
            doc.remove(&k);
        } else {
            doc.insert(k, v);
        }
    }
    doc.insert("identifier".into(), json!(ident));
    match write(app, p, c, headers, doc).await {
        Ok((e, _)) => written(StatusCode::OK, &e, false),
        Err(r) => *r,
    }
}

/// `DELETE /api/v3/{collection}/{identifier}`: marks the document deleted (`isValid:
/// false`, a new `srvModified`), so that the history tells syncing clients; v1 and v3
/// reads no longer show it. An entry's reading stays in the lake (see docs/sources.md).
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path((p, c, ident)): Path<(String, String, String)>,
) -> Response {
    let (p, c) = match (patient(&p), collection(&c)) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let done = tokio::task::spawn_blocking(move || tombstone(&app, &p, c, &ident)).await;
    match done {
        Ok(Ok(Some(()))) => (StatusCode::OK, Json(json!({"status": 200}))).into_response(),
        Ok(Ok(None)) => ns_error(StatusCode::NOT_FOUND, "no such document"),
        Ok(Err(e)) => ns_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Marks a document deleted (`isValid: false`, a new `srvModified`), durably; `None` if
/// there is no such document. Deleting a deleted document changes nothing.
pub(super) fn tombstone(
    app: &crate::app::App,
    p: &PatientId,
    c: Collection,
    ident: &str,
) -> Result<Option<()>, String> {
    let Some(mut e) = find(app, p, c, ident)? else { return Ok(None) };
    if is_valid(&e) {
        e.attributes.insert("identifier".into(), json!(identifier(&e)));
        e.attributes.insert("isValid".into(), json!(false));
        e.attributes.insert("srvModified".into(), json!(app.clock.now_ms()));
        app.pipeline.put_events(vec![e]).map_err(|e| e.to_string())?;
    }
    Ok(Some(()))
}

/// `GET /api/v3/lastModified`: when each collection of the patient last changed.
pub(crate) async fn last_modified(State(app): State<AppState>, Path(p): Path<String>) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let now = app.clock.now_ms();
    let found = tokio::task::spawn_blocking(move || -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for c in Collection::ALL {
            let last = if c.is_document() {
                app.events.documents().last_modified(p.as_str(), c.kind()).map_err(|e| e.to_string())?
            } else {
                app.events.query(p.as_str(), i64::MIN, i64::MAX, Some(c.kind())).iter().map(Event::changed_ms).max()
            };
            if let Some(t) = last {
                out.insert(c.name().into(), json!(t));
            }
        }
        Ok(out)
    })
    .await;
    match found {
        Ok(Ok(collections)) => envelope(StatusCode::OK, json!({"srvDate": now, "collections": collections})),
        Ok(Err(e)) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => ns_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn about(app: &crate::app::App) -> Value {
    let now = app.clock.now_ms();
    json!({"version": env!("CARGO_PKG_VERSION"), "apiVersion": "3.0.4", "srvDate": now,
           "storage": {"storage": "vitals", "version": env!("CARGO_PKG_VERSION")}})
}

/// `GET /api/v3/version`.
pub(crate) async fn version(State(app): State<AppState>, Path(p): Path<String>) -> Response {
    if let Err(r) = patient(&p) {
        return *r;
    }
    envelope(StatusCode::OK, about(&app))
}

/// `GET /api/v3/status`: the version, and what the caller may do with each collection.
pub(crate) async fn status(
    State(app): State<AppState>,
    Path(p): Path<String>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
) -> Response {
    let p = match patient(&p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    use crate::authz::{Action, check};
    let read = check(&who, Action::SyncNightscout, Some(p.as_str())).is_ok();
    let write = check(&who, Action::WriteSamples, Some(p.as_str())).is_ok();
    let rights = match (read, write) {
        (true, true) => "crud",
        (true, false) => "r",
        (false, true) => "cu",
        (false, false) => "",
    };
    let mut result = about(&app);
    result["apiPermissions"] =
        Value::Object(Collection::ALL.iter().map(|c| (c.name().to_owned(), json!(rights))).collect());
    envelope(StatusCode::OK, result)
}

/// `GET /api/v2/authorization/request/{token}`: the token exchange v3 clients begin with.
/// The guard authenticated the token in the path; the answer is that same token (an
/// opaque bearer for the client) with the times clients plan their renewal by.
pub(crate) async fn authorization_request(
    State(app): State<AppState>,
    Path((p, token)): Path<(String, String)>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
) -> Response {
    if let Err(r) = patient(&p) {
        return *r;
    }
    let now = app.clock.now_ms();
    let Some(by_path) = app.directory.authenticate(&token, now) else {
        return ns_error(StatusCode::UNAUTHORIZED, "the access token is not valid");
    };
    if by_path.actor != who.actor {
        return ns_error(StatusCode::UNAUTHORIZED, "the access token is not the one authenticated");
    }
    let iat = now / 1000;
    Json(json!({"token": token, "sub": who.name, "permissionGroups": [[format!("{}", who.role)]],
                "iat": iat, "exp": iat + 8 * 3600}))
    .into_response()
}
