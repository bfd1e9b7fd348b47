//! `/api/v1/patients/{p}/connections`: a patient's accounts at vendor clouds. `PUT
//! .../{vendor}` connects one with its credentials (sealed by the vault at once, never
//! shown again); OAuth vendors instead: `POST .../{vendor}/authorize` gives the vendor's
//! sign-in address, whose `state` is sealed by the vault (patient, vendor, who asked, ten
//! minutes), and the vendor sends the user back to the dashboard, which hands code and
//! state to `POST /api/v1/connections/oauth`. `GET` lists the connections with their sync
//! state, `POST .../{vendor}/sync` asks for a pull now, `DELETE .../{vendor}` revokes the
//! grant at OAuth vendors and forgets the account and its credentials.

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
use crate::authz::{Action, check};
use crate::connection_store::{Connection, ConnectionError, Status, SyncState};

/// How long a sign-in at a vendor may take, from `authorize` to the code's return.
const STATE_TTL_MS: i64 = 10 * 60_000;
/// What the vault binds OAuth states to.
const STATE_CONTEXT: &str = "oauth-state";

/// What an OAuth `state` holds, sealed: whose sign-in it is.
#[derive(serde::Serialize, Deserialize)]
struct SignIn {
    patient: String,
    vendor: Vendor,
    actor: String,
    expires_ms: i64,
}

/// What `POST /api/v1/connections/oauth` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Returned {
    code: String,
    state: String,
}

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

/// Whether the patient had this vendor connected, and the state of the connection with
/// new credentials: pulled at once, the cursor and the count kept (no gap, no duplicate).
fn reconnected(app: &AppState, patient: &str, vendor: Vendor, now: i64) -> (bool, SyncState) {
    let before = app.connections.get(patient, vendor);
    let existed = before.is_some();
    let kept = before.map(|c| c.state).unwrap_or_default();
    (existed, SyncState { status: Status::Active, next_attempt_ms: Some(now), failures: 0, last_error: None, ..kept })
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
    let vendors: Vec<Value> = Vendor::ALL
        .iter()
        .map(|v| json!({"vendor": v.name(), "title": v.title(), "regions": v.regions(), "oauth": v.oauth()}))
        .collect();
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
    let (existed, state) = reconnected(&app, p.as_str(), vendor, now);
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
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        // OAuth vendors: the grant is revoked at the vendor first (best effort: the
        // credentials are forgotten here either way).
        if vendor.oauth()
            && let Some(c) = store.get(&pp, vendor)
        {
            let revoked = a
                .vault
                .open_secret(&Connection::context(&pp, vendor), &c.secret)
                .map_err(|e| e.to_string())
                .and_then(|plain| serde_json::from_slice::<Credentials>(&plain).map_err(|e| e.to_string()))
                .and_then(|creds| {
                    vitals_cloud::revoke(&a.config.connections.client(), vendor, &creds, a.clock.now_ms())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = revoked {
                tracing::warn!(patient = %pp, vendor = %vendor, error = %e, "revoking the grant at the vendor failed");
            }
        }
        store.delete(&pp, vendor)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn seal_state(app: &AppState, state: &SignIn) -> Result<String, ApiError> {
    use base64::Engine as _;
    let plain = serde_json::to_vec(state).map_err(ApiError::internal)?;
    let sealed = app
        .vault
        .seal_secret(STATE_CONTEXT, &plain)
        .map_err(|e| ApiError::new(Code::Unavailable, format!("the vault cannot seal the sign-in state: {e}")))?;
    let json = serde_json::to_vec(&sealed).map_err(ApiError::internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

fn open_state(app: &AppState, text: &str) -> Result<SignIn, ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::new(Code::InvalidBody, "the sign-in state is not one this server gave: start again");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let sealed: vitals_vault::SealedSecret = serde_json::from_slice(&json).map_err(|_| bad())?;
    let plain = app.vault.open_secret(STATE_CONTEXT, &sealed).map_err(|_| bad())?;
    let state: SignIn = serde_json::from_slice(&plain).map_err(|_| bad())?;
    if state.expires_ms < app.clock.now_ms() {
        return Err(ApiError::new(Code::InvalidBody, "the sign-in took longer than 10 minutes: start again"));
    }
    Ok(state)
}

/// `POST .../{vendor}/authorize`: the vendor's sign-in address for this patient.
pub(crate) async fn authorize(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((patient, vendor_name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    let vendor = vendor(&vendor_name)?;
    if !vendor.oauth() {
        return Err(ApiError::new(
            Code::InvalidBody,
            format!("{} is connected with PUT and its credentials", vendor.title()),
        ));
    }
    let state = SignIn {
        patient: p.as_str().to_owned(),
        vendor,
        actor: who.actor.clone(),
        expires_ms: app.clock.now_ms() + STATE_TTL_MS,
    };
    let sealed = seal_state(&app, &state)?;
    let client = app.config.connections.client();
    let url = vitals_cloud::authorize_url(&client, vendor, &sealed)
        .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))?;
    Ok(Json(json!({"patient": p.as_str(), "vendor": vendor.name(), "authorize_url": url})))
}

/// `POST /api/v1/connections/oauth`: the code and state the vendor sent the user back with.
pub(crate) async fn finish(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<Returned>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(returned) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let state = open_state(&app, &returned.state)?;
    // The caller must still be allowed to change this patient's connections.
    check(&who, Action::ManageConnections, Some(&state.patient))
        .map_err(|e| ApiError::new(Code::Forbidden, e.to_string()))?;
    let client = app.config.connections.client();
    let (vendor, code, now) = (state.vendor, returned.code, app.clock.now_ms());
    let creds = tokio::task::spawn_blocking(move || vitals_cloud::exchange(&client, vendor, &code, now))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(Code::InvalidBody, format!("{}: {e}", vendor.title())))?;
    let plain = serde_json::to_vec(&creds).map_err(ApiError::internal)?;
    let secret = app
        .vault
        .seal_secret(&Connection::context(&state.patient, vendor), &plain)
        .map_err(|e| ApiError::new(Code::Unavailable, format!("the vault cannot seal the tokens: {e}")))?;
    let (existed, sync) = reconnected(&app, &state.patient, vendor, now);
    let c = Connection {
        patient: state.patient.clone(),
        vendor,
        created_ms: now,
        created_by: who.actor.clone(),
        region: String::new(),
        secret,
        state: sync,
    };
    let store = app.connections.clone();
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || store.put(c2)).await.map_err(ApiError::internal)?.map_err(store_error)?;
    let mut shown = shown(&c);
    shown["patient"] = json!(state.patient);
    Ok((if existed { StatusCode::OK } else { StatusCode::CREATED }, Json(shown)))
}
