//! FHIR Bulk Data `$export` over HTTP, asynchronous as the specification has it: a
//! kick-off starts a job and answers `202 Accepted` with a status URL; the status answers
//! `202` with `X-Progress` while the job runs, then the output manifest; the files are
//! fetched with the same credentials; `DELETE` on the status cancels a job or removes its
//! files. A job's files are NDJSON per resource type (`Patient`, `Device`,
//! `Observation`) written by [`crate::fhir::bulk`] under `exports/fhir/<job>/` of the data
//! directory.
//!
//! Jobs live in memory: a restart ends them and removes their files (the client kicks off
//! again). Only the principal who started a job sees it. Finished jobs and their files are
//! removed [`KEEP_MS`] after they finished; at most [`MAX_RUNNING`] run at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::Value;

use crate::app::App;
use crate::fhir::{self, Selection, Types};

/// Jobs running at once; a kick-off beyond is answered `429` with `Retry-After`.
pub const MAX_RUNNING: usize = 2;
/// How long a finished job's files stay (the manifest's `expires`).
pub const KEEP_MS: i64 = 24 * 3_600_000;

/// Where a job stands.
#[derive(Debug, Clone)]
pub enum JobState {
    Running,
    /// The files written: (resource type, file name, resources).
    Done {
        files: Vec<(&'static str, String, u64)>,
        finished_ms: i64,
    },
    Failed {
        message: String,
        finished_ms: i64,
    },
}

/// One export.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    /// The actor who started it (only they may see it).
    pub owner: String,
    /// The kick-off URL, as the manifest's `request`.
    pub request: String,
    pub started_ms: i64,
    pub state: Mutex<JobState>,
    /// Observations written so far.
    pub progress: AtomicU64,
    cancel: AtomicBool,
}

/// Every job of this process.
#[derive(Debug)]
pub struct BulkExports {
    dir: PathBuf,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// Why a kick-off was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{running} exports are running; try again when one has finished")]
    Busy { running: usize },
    #[error("{0}")]
    Failed(String),
}

impl BulkExports {
    /// The registry, with `dir` emptied (files of jobs of an earlier process are gone).
    pub fn new(dir: PathBuf) -> BulkExports {
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the files of earlier FHIR exports");
        }
        BulkExports { dir, jobs: Mutex::new(HashMap::new()) }
    }

    /// The job `id` if `owner` started it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Arc<Job>> {
        self.jobs.lock().get(id).filter(|j| j.owner == owner).cloned()
    }

    /// Where a job's file is, if the job is done and wrote it.
    pub fn file(&self, job: &Job, name: &str) -> Option<PathBuf> {
        match &*job.state.lock() {
            JobState::Done { files, .. } if files.iter().any(|f| f.1 == name) => {
                Some(self.dir.join(&job.id).join(name))
            }
            _ => None,
        }
    }

    /// Starts an export on a blocking thread.
    pub fn start(
        self: &Arc<Self>,
        app: &Arc<App>,
        owner: &str,
        request: String,
        selection: Selection,
        types: Types,
    ) -> Result<Arc<Job>, StartError> {
        let now = app.clock.now_ms();
        self.expire(now);
        let id = vitals_meta::random_secret("").map_err(|e| StartError::Failed(e.to_string()))?;
        let job = Arc::new(Job {
            id: id.clone(),
            owner: owner.to_owned(),
            request,
            started_ms: now,
            state: Mutex::new(JobState::Running),
            progress: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
        });
        {
            let mut jobs = self.jobs.lock();
            let running = jobs.values().filter(|j| matches!(*j.state.lock(), JobState::Running)).count();
            if running >= MAX_RUNNING {
                return Err(StartError::Busy { running });
            }
            jobs.insert(id.clone(), job.clone());
        }
        let (app, exports, j) = (app.clone(), self.clone(), job.clone());
        tokio::task::spawn_blocking(move || {
            let dir = exports.dir.join(&j.id);
            let stop = |n: u64| {
                j.progress.store(n, Ordering::Relaxed);
                j.cancel.load(Ordering::Relaxed)
            };
            let result = fhir::bulk(&app, &dir, &selection, types, &stop);
            let finished_ms = app.clock.now_ms();
            let state = match result {
                Ok(files) => JobState::Done { files, finished_ms },
                Err(e) => {
                    tracing::warn!(job = %j.id, error = %e, "a FHIR export failed");
                    JobState::Failed { message: e.to_string(), finished_ms }
                }
            };
            *j.state.lock() = state;
            if j.cancel.load(Ordering::Relaxed) {
                remove_dir(&dir);
            }
        });
        Ok(job)
    }

    /// Cancels a running job or removes a finished one's files; the job is gone after.
    pub fn remove(&self, job: &Job) {
        job.cancel.store(true, Ordering::Relaxed);
        self.jobs.lock().remove(&job.id);
        if !matches!(*job.state.lock(), JobState::Running) {
            remove_dir(&self.dir.join(&job.id));
        }
    }

    /// Removes jobs that finished over [`KEEP_MS`] ago, with their files.
    pub fn expire(&self, now_ms: i64) {
        let old: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .values()
            .filter(|j| match &*j.state.lock() {
                JobState::Done { finished_ms, .. } | JobState::Failed { finished_ms, .. } => {
                    finished_ms.saturating_add(KEEP_MS) <= now_ms
                }
                JobState::Running => false,
            })
            .cloned()
            .collect();
        for j in old {
            self.remove(&j);
        }
    }

    /// The output manifest of a finished job, its file URLs under `base`.
    pub fn manifest(job: &Job, base: &str) -> Option<Value> {
        match &*job.state.lock() {
            JobState::Done { files, .. } => {
                let files: Vec<(&str, String, u64)> = files
                    .iter()
                    .map(|(t, name, n)| (*t, format!("{base}/api/v1/fhir/$export-file/{}/{name}", job.id), *n))
                    .collect();
                Some(vitals_query::fhir::bulk_manifest(job.started_ms, &job.request, &files))
            }
            _ => None,
        }
    }
}

fn remove_dir(dir: &Path) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a FHIR export's files");
    }
}
