//! People: `/api/v1/me`, users, care teams and the audit log (admins).

use std::collections::HashMap;

use axum::extract::State;

use crate::api::extract::{Path, Query};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_core::time::format_time;
use vitals_meta::{AuditFilter, MetaError, Role, User};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::{Principal, Scope};

fn meta_error(e: MetaError) -> ApiError {
    match e {
        MetaError::Invalid(m) => ApiError::new(Code::InvalidBody, m),
        MetaError::Conflict(m) => ApiError::new(Code::Conflict, format!("{m} already exists")),
        MetaError::NotFound(m) => ApiError::new(Code::NotFound, format!("{m} does not exist")),
        e => ApiError::internal(e),
    }
}

fn body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))
}

/// A user as the API shows them (never the password hash).
pub(crate) fn render_user(u: &User, now_ms: i64) -> Value {
    json!({
        "id": u.id, "name": u.name, "role": u.role, "patient": u.patient, "disabled": u.disabled,
        "locked": u.locked_until_ms.is_some_and(|t| now_ms < t),
        "locked_until": u.locked_until_ms.filter(|t| now_ms < *t).map(format_time),
        "failed_logins": u.failed_logins, "created": format_time(u.created_ms),
    })
}

/// Who am I, and which patients do I reach.
pub(crate) async fn me(Extension(who): Extension<Principal>) -> Json<Value> {
    let patients = match &who.scope {
        Scope::All => Value::String("all".into()),
        Scope::Patients(p) => json!(p),
    };
    Json(json!({
        "name": who.name, "role": who.role, "actor": who.actor, "patients": patients,
        "patient": who.patient.as_ref().map(|p| p.to_string()), "csrf": who.csrf,
    }))
}

pub(crate) async fn list_users(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = app.clock.now_ms();
    let users = app.directory.meta().users().map_err(meta_error)?;
    Ok(Json(json!({"users": users.iter().map(|u| render_user(u, now)).collect::<Vec<_>>()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    name: String,
    role: Role,
    password: Option<String>,
    patient: Option<String>,
}

pub(crate) async fn create_user(
    State(app): State<AppState>,
    b: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    let now = app.clock.now_ms();
    let d = app.clone();
    let user = tokio::task::spawn_blocking(move || {
        d.directory.create_user(&req.name, req.role, req.password.as_deref(), req.patient.as_deref(), now)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e.downcast::<MetaError>() {
        Ok(m) => meta_error(m),
        Err(e) => ApiError::new(Code::InvalidBody, format!("{e:#}")),
    })?;
    Ok((StatusCode::CREATED, Json(render_user(&user, now))))
}

fn find_user(app: &AppState, key: &str) -> Result<User, ApiError> {
    app.directory
        .meta()
        .user(key)
        .map_err(meta_error)?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no user {key:?}")))
}

pub(crate) async fn get_user(State(app): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(render_user(&find_user(&app, &key)?, app.clock.now_ms())))
}

/// Changes a user: `{"role"?, "password"?, "disabled"?, "unlock"?}`.
pub(crate) async fn update_user(
    State(app): State<AppState>,
    Path(key): Path<String>,
    b: Result<Json<crate::people::UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let change = body(b)?;
    find_user(&app, &key)?;
    let a = app.clone();
    let u = tokio::task::spawn_blocking(move || crate::people::change_user(a.directory.meta(), &key, change))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(Code::InvalidBody, format!("{e:#}")))?;
    Ok(Json(render_user(&u, app.clock.now_ms())))
}

pub(crate) async fn delete_user(State(app): State<AppState>, Path(key): Path<String>) -> Result<StatusCode, ApiError> {
    let u = find_user(&app, &key)?;
    app.directory.meta().delete_user(&u.id).map_err(meta_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn render_team(app: &AppState, t: &vitals_meta::Team) -> Value {
    let mut names: Vec<String> = t
        .members
        .iter()
        .map(|id| app.directory.meta().user(id).ok().flatten().map_or_else(|| id.clone(), |u| u.name))
        .collect();
    names.sort();
    json!({"name": t.name, "members": names, "patients": t.patients, "created": format_time(t.created_ms)})
}

pub(crate) async fn list_teams(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let teams = app.directory.meta().teams().map_err(meta_error)?;
    Ok(Json(json!({"teams": teams.iter().map(|t| render_team(&app, t)).collect::<Vec<_>>()})))
}

/// A team's full membership: user names and patient pseudonyms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamSpec {
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    patients: Vec<String>,
}

/// Creates or replaces a care team.
pub(crate) async fn put_team(
    State(app): State<AppState>,
    Path(name): Path<String>,
    b: Result<Json<TeamSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let spec = body(b)?;
    let team = crate::people::set_team(app.directory.meta(), &name, &spec.members, &spec.patients, app.clock.now_ms())
        .map_err(|e| ApiError::new(Code::InvalidBody, format!("{e:#}")))?;
    Ok(Json(render_team(&app, &team)))
}

pub(crate) async fn delete_team(State(app): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if app.directory.meta().delete_team(&name).map_err(meta_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(Code::NotFound, format!("no team {name:?}")))
    }
}

/// The audit log, newest first: `?patient=&actor=&action=&from=&to=&before=&limit=`.
pub(crate) async fn audit(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let time = |k: &str| q.get(k).map(|s| crate::api::error::query_time(k, s)).transpose();
    let number = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|s| s.parse::<i64>().map_err(|_| ApiError::new(Code::InvalidQuery, format!("{k}: a number"))))
            .transpose()
    };
    let filter = AuditFilter {
        patient: q.get("patient").cloned(),
        actor: q.get("actor").cloned(),
        action: q.get("action").cloned(),
        from_ms: time("from")?,
        to_ms: time("to")?,
        before_seq: number("before")?,
        limit: number("limit")?.unwrap_or(100).clamp(1, 10_000) as usize,
    };
    let entries = app.directory.meta().audit(&filter).map_err(meta_error)?;
    let out: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"seq": e.seq, "time": format_time(e.event.ts_ms), "actor": e.event.actor,
                "action": e.event.action, "patient": e.event.patient, "target": e.event.target,
                "origin": e.event.origin, "outcome": e.event.outcome, "hash": e.hash})
        })
        .collect();
    Ok(Json(json!({"entries": out})))
}
