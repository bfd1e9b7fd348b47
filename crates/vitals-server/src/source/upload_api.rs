//! `POST /api/v1/ingest/file`: one file of any format the file drop reads (a FIT file, a
//! Gadgetbridge database, a Fitbit Takeout zip or per-day file, an Apple Health
//! `export.xml` or `export.zip`, an E4 session zip, a Health Auto Export file, native
//! JSON/NDJSON/CSV), told from its content or named with `format`.
//!
//! The body is streamed to `<data_dir>/uploads/` (at most `server.upload_limit_bytes`,
//! never held in memory), read like a dropped file, and removed; the answer comes once
//! everything accepted is durable. A file that cannot be read at all is moved to
//! `<data_dir>/uploads/failed/<patient>/` with its error beside it, and the answer says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use vitals_core::{PatientId, Rejection};
use vitals_ingest::health_auto_export::Unsupported;

use super::file::{NAMED_FORMATS, ingest_path_as};
use super::request_body::is_gzip;
use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::Principal;

/// The dead-letter source name of uploaded files.
const SOURCE: &str = "api/file";
/// The longest file name kept.
const MAX_NAME_CHARS: usize = 120;

#[derive(Debug, Serialize)]
pub(crate) struct FileResponse {
    pub(crate) file: String,
    pub(crate) accepted: usize,
    /// Workouts, sleep stages and other intervals stored as events.
    pub(crate) events: usize,
    /// The first refusals (see `rejected_total`).
    pub(crate) rejected: Vec<Rejection>,
    pub(crate) rejected_total: usize,
    pub(crate) unsupported: Vec<Unsupported>,
    /// Where the refused input was kept.
    pub(crate) dead_letter: Option<u64>,
}

/// The patient a write is for: the token's own, or `?patient=` for tokens bound to none.
pub(crate) fn patient_for_write(principal: &Principal, asked: Option<&String>) -> Result<PatientId, ApiError> {
    let asked = asked.filter(|p| !p.is_empty());
    match (&principal.patient, asked) {
        (Some(bound), None) => Ok(bound.clone()),
        (Some(bound), Some(p)) if bound.as_str() == p => Ok(bound.clone()),
        (Some(bound), Some(p)) => {
            Err(ApiError::new(Code::Forbidden, format!("this token may only write for patient {bound}, not {p}")))
        }
        (None, Some(p)) => {
            PatientId::new(p).map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient {p:?} {e}")))
        }
        (None, None) => Err(ApiError::new(
            Code::InvalidQuery,
            "add ?patient=<pseudonym> to the URL, or use a token bound to a patient",
        )),
    }
}

/// A file name safe to create: its last path part, without control characters, at most
/// [`MAX_NAME_CHARS`]; `upload` when nothing is left.
fn safe_name(name: Option<&String>) -> String {
    let base = name.map(|n| n.rsplit(['/', '\\']).next().unwrap_or("")).unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    if clean.is_empty() { "upload".to_owned() } else { clean }
}

/// Removes what a crash left in the spool folder, once per process (before the first
/// upload, so no upload is under way).
fn clean_spool_once(spool: &Path) {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| {
        if let Ok(entries) = std::fs::read_dir(spool) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("up-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
}

pub(crate) async fn post_file(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileResponse>, ApiError> {
    let patient = patient_for_write(&principal, params.get("patient"))?;
    let format = params.get("format").filter(|f| !f.is_empty()).cloned();
    if let Some(f) = &format
        && !NAMED_FORMATS.contains(&f.as_str())
    {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!(
                "unknown format {f:?}; leave it out to have the content tell, or one of {}",
                NAMED_FORMATS.join(", ")
            ),
        ));
    }
    if is_gzip(&headers) {
        return Err(ApiError::new(
            Code::InvalidBody,
            "send the file as it is (no Content-Encoding): zip archives are read as they are",
        ));
    }
    let name = safe_name(params.get("name"));
    let uploads = app.config.storage.data_dir.join("uploads");
    clean_spool_once(&uploads);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = uploads.join(format!("up-{}-{}", app.clock.now_ms(), NEXT.fetch_add(1, Ordering::Relaxed)));
    tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
    let path = dir.join(&name);
    let spooled = spool(body, &path, app.config.server.upload_limit_bytes).await;
    if let Err(e) = spooled {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(e);
    }
    let (work_app, work_path, work_patient) = (app.clone(), path.clone(), patient.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        ingest_path_as(&work_app.pipeline, SOURCE, &work_path, Some(&work_patient), format.as_deref(), &mut |_| {})
    })
    .await
    .map_err(ApiError::internal)?;
    match outcome {
        Ok(r) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Ok(Json(FileResponse {
                file: name,
                accepted: r.accepted,
                events: r.events,
                rejected: r.rejected,
                rejected_total: r.refused,
                unsupported: r.unsupported,
                dead_letter: r.dead_letter,
            }))
        }
        Err(e) => {
            let why = format!("{e:#}");
            if why.contains("overloaded") {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(ApiError::new(Code::Overloaded, "the store is overloaded; send the file again shortly"));
            }
            let failed = uploads.join("failed").join(patient.as_str());
            let kept = keep_failed(&failed, &dir, &path, &name, &why, app.clock.now_ms()).await;
            tracing::warn!(file = %name, patient = %patient, error = %why, "upload: the file could not be read");
            Err(ApiError::new(Code::InvalidBody, format!("{name}: {why}{kept}")))
        }
    }
}

/// Writes the body to `path`, refusing it past `limit` bytes.
async fn spool(body: Body, path: &PathBuf, limit: u64) -> Result<(), ApiError> {
    use futures_util::StreamExt as _;
    let mut file = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let text = e.to_string();
            if text.contains("timed out") || text.contains("timeout") {
                ApiError::new(Code::RequestTimeout, "the upload stalled; send the file again")
            } else {
                ApiError::new(Code::InvalidBody, format!("reading the upload: {text}"))
            }
        })?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(ApiError::new(
                Code::PayloadTooLarge,
                format!("the file is larger than server.upload_limit_bytes ({limit} bytes)"),
            ));
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    if written == 0 {
        return Err(ApiError::new(Code::InvalidBody, "the upload is empty"));
    }
    Ok(())
}

/// Moves a file that could not be read to `failed` (`uploads/failed/<patient>/`, which
/// the patient's erasure removes) with its error beside it, and says where (or that it
/// could not be kept).
async fn keep_failed(failed: &Path, dir: &Path, path: &Path, name: &str, why: &str, now_ms: i64) -> String {
    let target = failed.join(format!("{now_ms}-{name}"));
    let moved = async {
        tokio::fs::create_dir_all(&failed).await?;
        tokio::fs::rename(path, &target).await?;
        tokio::fs::write(failed.join(format!("{now_ms}-{name}.error.txt")), why).await
    }
    .await;
    let _ = tokio::fs::remove_dir_all(dir).await;
    let patient = failed.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match moved {
        Ok(()) => format!(" (the file is kept on the server as uploads/failed/{patient}/{now_ms}-{name})"),
        Err(e) => {
            tracing::error!(file = %name, error = %e, "upload: could not keep the failed file");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_last_part_only() {
        let n = |s: &str| safe_name(Some(&s.to_owned()));
        assert_eq!(n("../../etc/passwd"), "passwd");
        assert_eq!(n("C:\\Users\\a\\export.zip"), "export.zip");
        assert_eq!(n(".."), "upload");
        assert_eq!(n("a\u{0}b\nc.fit"), "abc.fit");
        assert_eq!(safe_name(None), "upload");
        assert_eq!(n(&"x".repeat(500)).len(), MAX_NAME_CHARS);
    }
}
