//! Patients: the registry of pseudonyms (`GET/POST /api/v1/patients`) and their identity
//! in the vault (`GET/PUT /api/v1/patients/{patient}/identity`).

use axum::extract::State;

use crate::api::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_core::PatientId;
use vitals_core::time::format_time;
use vitals_meta::{MetaError, Patient, Role};
use vitals_vault::{Identity, VaultError};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::audit::AuditPatient;
use crate::auth::Principal;
use crate::authz::{self, Action};

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::Invalid(m) => ApiError::new(Code::InvalidBody, m),
        e => ApiError::internal(e),
    }
}

/// The patients the caller reaches: registered ones and those with data, pseudonyms only.
/// A listed patient: pseudonym, when registered, when last seen.
pub(crate) type Listed = (String, Option<i64>, Option<i64>);

/// The patients `who` may list: registered ones and those with data.
pub(crate) fn reachable(app: &AppState, who: &Principal) -> Result<Vec<Listed>, ApiError> {
    let mut rows: std::collections::BTreeMap<String, (Option<i64>, Option<i64>)> = Default::default();
    for p in app.directory.meta().patients().map_err(ApiError::internal)? {
        rows.entry(p.id).or_default().0 = Some(p.created_ms);
    }
    for (p, seen) in app.store.patients() {
        rows.entry(p.to_string()).or_default().1 = Some(seen);
    }
    Ok(rows
        .into_iter()
        .filter(|(p, _)| authz::visible(who, Action::ListPatients, p))
        .map(|(p, (registered, seen))| (p, registered, seen))
        .collect())
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let out: Vec<Value> = reachable(&app, &who)?
        .into_iter()
        .map(|(p, registered, seen)| {
            json!({"patient": p, "registered": registered.map(format_time), "last_seen": seen.map(format_time)})
        })
        .collect();
    Ok(Json(json!({ "patients": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPatient {
    /// A care team to link the patient to (a clinician must name one of theirs).
    team: Option<String>,
    identity: Option<Identity>,
}

/// Registers a patient: a new random pseudonym, optionally linked to a care team and with
/// an identity. Answers with the pseudonym, the only id used anywhere else.
pub(crate) async fn create(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewPatient>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let meta = app.directory.meta();
    if let Some(team) = &req.team {
        let t = meta
            .teams()
            .map_err(ApiError::internal)?
            .into_iter()
            .find(|t| &t.name == team)
            .ok_or_else(|| ApiError::new(Code::InvalidBody, format!("no team {team:?}")))?;
        if who.role != Role::Admin && !who.user_id.as_ref().is_some_and(|u| t.members.contains(u)) {
            return Err(ApiError::new(Code::Forbidden, format!("you are not a member of team {team:?}")));
        }
    } else if who.role != Role::Admin {
        return Err(ApiError::new(
            Code::InvalidBody,
            "team: name one of your care teams, so that you reach the patient",
        ));
    }
    if let Some(i) = &req.identity {
        i.validate().map_err(vault_error)?;
    }
    let now = app.clock.now_ms();
    let id = vitals_meta::new_pseudonym().map_err(ApiError::internal)?;
    meta.create_patient(&Patient { id: id.clone(), created_ms: now, created_by: who.actor.clone() })
        .map_err(ApiError::internal)?;
    if let Some(team) = &req.team {
        meta.set_team_patient(team, &id, true).map_err(ApiError::internal)?;
    }
    if let Some(i) = &req.identity {
        app.vault.put(&id, i, now).map_err(vault_error)?;
    }
    let mut r = (StatusCode::CREATED, Json(json!({"patient": id, "team": req.team}))).into_response();
    r.extensions_mut().insert(AuditPatient(id));
    Ok(r)
}

/// A pseudonym from a path (checked, not looked up).
pub(crate) fn pseudonym(raw: &str) -> Result<PatientId, ApiError> {
    PatientId::new(raw).map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient id {raw:?} {e}")))
}

pub(crate) async fn get_identity(
    State(app): State<AppState>,
    Path(patient): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    match app.vault.get(p.as_str()).map_err(vault_error)? {
        Some(identity) => Ok(Json(json!({"patient": p.as_str(), "identity": identity}))),
        None => Err(ApiError::new(Code::NotFound, format!("no identity recorded for patient {patient:?}"))),
    }
}

/// Replaces a patient's identity (registering the pseudonym if it only had data so far).
pub(crate) async fn put_identity(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(patient): Path<String>,
    body: Result<Json<Identity>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    let Json(identity) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let now = app.clock.now_ms();
    let registered = Patient { id: p.to_string(), created_ms: now, created_by: who.actor.clone() };
    match app.directory.meta().create_patient(&registered) {
        Ok(()) | Err(MetaError::Conflict(_)) => {}
        Err(e) => return Err(ApiError::internal(e)),
    }
    app.vault.put(p.as_str(), &identity, now).map_err(vault_error)?;
    Ok(Json(json!({"patient": p.as_str(), "identity": identity})))
}

/// Everything about a patient as one zip archive, streamed from a file that has no name
/// (in `<data_dir>/exports`: on the data disk, never in memory, gone when the answer is
/// sent or the process ends).
pub(crate) async fn export(State(app): State<AppState>, Path(patient): Path<String>) -> Result<Response, ApiError> {
    use std::io::Seek;

    let p = pseudonym(&patient)?;
    let now = app.clock.now_ms();
    let a = app.clone();
    let pid = p.clone();
    let (file, _) = tokio::task::spawn_blocking(move || {
        let dir = a.config.storage.data_dir.join("exports");
        std::fs::create_dir_all(&dir)?;
        let file = tempfile::tempfile_in(&dir)?;
        let (mut file, summary) = crate::rights::export(&a, &pid, now, file)?;
        file.rewind()?;
        anyhow::Ok((file, summary))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let len = file.metadata().map_err(ApiError::internal)?.len();
    let disposition = format!("attachment; filename=\"vitals-patient-{p}.zip\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/zip".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (axum::http::header::CONTENT_LENGTH, len.to_string()),
        ],
        crate::api::file_body(tokio::fs::File::from_std(file)),
    )
        .into_response())
}

/// Erases a patient from every store (see [`crate::rights`]); answers with what went.
pub(crate) async fn erase(State(app): State<AppState>, Path(patient): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    let a = app.clone();
    let report = tokio::task::spawn_blocking(move || crate::rights::erase(&a, &p))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::to_value(&report).map_err(ApiError::internal)?))
}
