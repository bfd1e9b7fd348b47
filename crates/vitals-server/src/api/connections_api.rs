//! `/api/v1/patients/{p}/connections`: a patient's accounts at vendor clouds. `PUT
//! .../{vendor}` connects one with its credentials (sealed by the vault at once, never
//! shown again), `GET` lists them with their sync state (last attempt, success and error,
//! newest reading, next attempt), `POST .../{vendor}/sync` asks for a pull now, `DELETE
//! .../{vendor}` forgets the account and its credentials.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, extract::rejection::JsonRejection};
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_cloud::{Credentials, Vendor};
use vitals_core::PatientId;
use vitals_core::time::format_time;

use crate::api::error::{ApiError, Code};
use crate::api::extract::Path;
use crate::app::AppState;
use crate::auth::Principal;
use crate::connection_store::{Connection, ConnectionError, Status, SyncState};

/// What `PUT` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Connect {
    username: String,
    password: String,
    #[serde(default)]
    region: String,
    /// LibreLinkUp: the followed person's patient id (empty: the account's first connection).
    #[serde(default)]
    follow: String,
}

fn pseudonym(patient: &str) -> Result<PatientId, ApiError> {
    PatientId::new(patient).map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient id {patient:?} {e}")))
}

fn vendor(name: &str) -> Result<Vendor, ApiError> {
    Vendor::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Vendor::ALL.iter().map(|v| v.name()).collect();
        ApiError::new(Code::NotFound, format!("no vendor {name:?}; one of {}", known.join(", ")))
    })
}

fn store_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::NotFound { .. } => ApiError::new(Code::NotFound, e.to_string()),
        ConnectionError::Io(_) => ApiError::internal(e),
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| Value::String(format_time(t)))
}

/// A connection as shown: never the credentials.
fn shown(c: &Connection) -> Value {
    let s = &c.state;
    json!({
        "vendor": c.vendor.name(),
        "title": c.vendor.title(),
        "region": c.region,
        "connected_at": format_time(c.created_ms),
        "status": match s.status { Status::Active => "active", Status::NeedsAttention => "needs_attention" },
        "last_attempt": time(s.last_attempt_ms),
        "last_success": time(s.last_success_ms),
        "last_error": s.last_error,
        "failures": s.failures,
        "next_attempt": time(s.next_attempt_ms),
        "newest_reading": time(s.newest_ms),
        "readings": s.readings,
    })
}

pub(crate) async fn list(State(app): State<AppState>, Path(patient): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    let connections: Vec<Value> = app.connections.of_patient(p.as_str()).iter().map(shown).collect();
    let vendors: Vec<Value> =
        Vendor::ALL.iter().map(|v| json!({"vendor": v.name(), "title": v.title(), "regions": v.regions()})).collect();
    Ok(Json(json!({"patient": p.as_str(), "connections": connections, "vendors": vendors})))
}

pub(crate) async fn connect(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((patient, vendor_name)): Path<(String, String)>,
    body: Result<Json<Connect>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = pseudonym(&patient)?;
    let vendor = vendor(&vendor_name)?;
    let Json(given) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let creds = Credentials {
        username: given.username.trim().to_owned(),
        password: given.password,
        region: given.region.trim().to_ascii_lowercase(),
        follow: given.follow.trim().to_owned(),
        ..Credentials::default()
    };
    if let Some(problem) = creds.problems(vendor) {
        return Err(ApiError::new(Code::InvalidBody, problem));
    }
    let plain = serde_json::to_vec(&creds).map_err(ApiError::internal)?;
    let secret = app
        .vault
        .seal_secret(&Connection::context(p.as_str(), vendor), &plain)
        .map_err(|e| ApiError::new(Code::Unavailable, format!("the vault cannot seal the credentials: {e}")))?;
    let now = app.clock.now_ms();
    let before = app.connections.get(p.as_str(), vendor);
    let existed = before.is_some();
    // New credentials: pulled at once; the cursor and the count stay (no gap, no duplicate).
    let kept = before.map(|c| c.state).unwrap_or_default();
    let state = SyncState {
        status: Status::Active,
        next_attempt_ms: Some(now),
        failures: 0,
        last_error: None,
        newest_ms: kept.newest_ms,
        readings: kept.readings,
        last_success_ms: kept.last_success_ms,
        last_attempt_ms: kept.last_attempt_ms,
    };
    let c = Connection {
        patient: p.as_str().to_owned(),
        vendor,
        created_ms: now,
        created_by: who.actor.clone(),
        region: creds.region.clone(),
        secret,
        state,
    };
    let store = app.connections.clone();
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || store.put(c2)).await.map_err(ApiError::internal)?.map_err(store_error)?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(shown(&c))))
}

pub(crate) async fn sync_now(
    State(app): State<AppState>,
    Path((patient, vendor_name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = pseudonym(&patient)?;
    let vendor = vendor(&vendor_name)?;
    let c = app
        .connections
        .get(p.as_str(), vendor)
        .ok_or_else(|| store_error(ConnectionError::NotFound { patient: p.as_str().to_owned(), vendor }))?;
    let state = SyncState { status: Status::Active, next_attempt_ms: Some(app.clock.now_ms()), ..c.state.clone() };
    let store = app.connections.clone();
    let (pp, st) = (p.as_str().to_owned(), state.clone());
    tokio::task::spawn_blocking(move || store.set_state(&pp, vendor, st))
        .await
        .map_err(ApiError::internal)?
        .map_err(store_error)?;
    Ok((StatusCode::ACCEPTED, Json(shown(&Connection { state, ..c }))))
}

pub(crate) async fn disconnect(
    State(app): State<AppState>,
    Path((patient, vendor_name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let p = pseudonym(&patient)?;
    let vendor = vendor(&vendor_name)?;
    let store = app.connections.clone();
    let pp = p.as_str().to_owned();
    tokio::task::spawn_blocking(move || store.delete(&pp, vendor))
        .await
        .map_err(ApiError::internal)?
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}
