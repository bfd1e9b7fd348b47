//! `/api/v1/notifications`: the outbox and its dead-letter list. List (`?state=pending|
//! delivered|dead&alert=&limit=`), read, replay a dead notice, and send a test notice to a
//! contact to check its channels.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;

use crate::api::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_core::time::format_time;

use crate::alert_store::AlertError;
use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use vitals_alerts::{Notice, NoticeState};

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> ApiError {
        match e {
            AlertError::NotFound(_) | AlertError::NoticeNotFound(_) => ApiError::new(Code::NotFound, e.to_string()),
            AlertError::Invalid(m) => ApiError::new(Code::Conflict, m),
            AlertError::Io(m) => ApiError::internal(m),
        }
    }
}

pub fn render(n: &Notice) -> Value {
    json!({
        "id": n.id, "kind": n.kind, "alert": n.alert, "contact": n.contact, "channel": n.channel,
        "address": n.address, "severity": n.severity, "subject": n.subject, "text": n.text,
        "state": n.state, "attempts": n.attempts, "created": format_time(n.created_ms),
        "next_attempt": (n.state == NoticeState::Pending).then(|| format_time(n.next_ms)),
        "last_error": n.last_error, "delivered": n.delivered_ms.map(format_time),
    })
}

pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.get("state") {
        Some(s) => Some(
            NoticeState::parse(s)
                .ok_or_else(|| ApiError::new(Code::InvalidQuery, "state: pending, delivered or dead"))?,
        ),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::new(Code::InvalidQuery, "limit: a number"))?,
        None => 100,
    };
    let notices: Vec<Value> =
        app.alerts.notices(state, q.get("alert").map(String::as_str), limit.min(10_000)).iter().map(render).collect();
    Ok(Json(json!({ "notifications": notices })))
}

pub async fn get_one(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = app.alerts.notice(&id).ok_or_else(|| ApiError::new(Code::NotFound, format!("no notice {id:?}")))?;
    Ok(Json(render(&n)))
}

/// Puts a dead notice back into the outbox. (A body is read and ignored, so the connection
/// stays usable.)
pub async fn replay(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let n = app.alerts.replay_notice(&id, app.clock.now_ms())?;
    Ok(Json(render(&n)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestNotice {
    contact: String,
}

/// Sends a test message to every channel of a contact, through the outbox.
pub async fn test(
    State(app): State<AppState>,
    body: Result<Json<TestNotice>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(t) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let cfg = &app.config.notify;
    if !cfg.contacts.iter().any(|c| c.name == t.contact) {
        return Err(ApiError::new(Code::NotFound, format!("no contact {:?} in notify.contacts", t.contact)));
    }
    let now = app.clock.now_ms();
    let one = crate::config::NotifyConfig {
        operator_contacts: vec![t.contact.clone()],
        subscriptions: Vec::new(),
        ..cfg.clone()
    };
    let notices = vitals_alerts::notice::operator_notices(
        &one,
        &format!("test:{now}"),
        "test message",
        &format!("A test message from Vitals to {}: this channel works.", t.contact),
        now,
    );
    app.alerts.commit(Vec::new(), notices.clone())?;
    Ok((StatusCode::ACCEPTED, Json(json!({"notifications": notices.iter().map(render).collect::<Vec<_>>()}))))
}
