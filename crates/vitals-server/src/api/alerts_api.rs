//! `/api/v1/alerts`: list (`?patient=&state=&from=&to=`), read, acknowledge, snooze.

use std::collections::HashMap;

use axum::extract::State;

use crate::api::extract::{Path, Query};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_core::time::DurationMs;

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::audit::AuditPatient;
use crate::auth::Principal;
use crate::authz::{self, Action};
use axum::response::{IntoResponse, Response};
use vitals_alerts::{Alert, AlertState};

fn time_param(q: &HashMap<String, String>, key: &str, default: i64) -> Result<i64, ApiError> {
    q.get(key).map_or(Ok(default), |s| crate::api::error::query_time(key, s))
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.get("state") {
        Some(s) => Some(
            AlertState::parse(s)
                .ok_or_else(|| ApiError::new(Code::InvalidQuery, "state: open, acknowledged, resolved or retracted"))?,
        ),
        None => None,
    };
    let from = time_param(&q, "from", i64::MIN)?;
    let to = time_param(&q, "to", i64::MAX)?;
    let alerts: Vec<Value> = app
        .alerts
        .list(q.get("patient").map(String::as_str), state, from, to)
        .iter()
        .filter(|a| authz::visible(&who, Action::ReadAlerts, &a.patient))
        .map(Alert::render)
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}

/// An alert the caller may see (others are "not found", not "forbidden": their existence
/// is not the caller's business).
fn reachable(app: &AppState, who: &Principal, id: &str, action: Action) -> Result<Alert, ApiError> {
    app.alerts
        .get(id)
        .filter(|a| authz::visible(who, Action::ReadAlerts, &a.patient))
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no alert {id:?}")))
        .and_then(|a| {
            authz::check(who, action, Some(&a.patient)).map_err(|d| ApiError::new(Code::Forbidden, d.to_string()))?;
            Ok(a)
        })
}

fn answer(a: &Alert) -> Response {
    let mut r = Json(a.render()).into_response();
    r.extensions_mut().insert(AuditPatient(a.patient.clone()));
    r
}

pub(crate) async fn get_one(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(answer(&reachable(&app, &who, &id, Action::ReadAlerts)?))
}

/// Acknowledges an alert. (A body is read and ignored, so the connection stays usable.)
pub(crate) async fn ack(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    _body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    reachable(&app, &who, &id, Action::ActOnAlerts)?;
    let a = app.alerts.ack(&id, &who.name, app.clock.now_ms())?;
    Ok(answer(&a))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snooze {
    #[serde(rename = "for")]
    for_: String,
}

pub(crate) async fn snooze(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<Snooze>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(s) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let d: DurationMs = s
        .for_
        .parse()
        .map_err(|_| ApiError::new(Code::InvalidBody, format!("for: {:?} is not a duration like 30m", s.for_)))?;
    let max = app.config.alerting.max_snooze;
    if d.as_ms() > max.as_ms() {
        return Err(ApiError::new(Code::InvalidBody, format!("for: at most {max}")));
    }
    reachable(&app, &who, &id, Action::ActOnAlerts)?;
    let a = app.alerts.snooze(&id, d.as_ms(), max.as_ms(), app.clock.now_ms())?;
    Ok(answer(&a))
}
