//! The file-drop source (the medical data-lake system's staging flow).
//!
//! Layout under `file_drop.dir` (default `<data_dir>/drop`):
//! - `inbox/<file>`: native NDJSON, CSV or JSON (each row names its patient);
//! - `inbox/<patient>/<file>`: a Health Auto Export JSON export, native samples of that
//!   patient only, or one Empatica E4 signal file (`EDA.csv`, `IBI.csv`...);
//! - `inbox/<patient>/<session>/`: an Empatica E4 session folder.
//!
//! Items are processed one at a time in arrival order (modification time, then name),
//! once their size and time stayed the same for one poll (so half-written files wait;
//! writing elsewhere and renaming in is best). Each is recorded in the ledger by content
//! hash: the same content dropped again is not ingested twice. Then it moves to
//! `processed/` with a `.report.json` beside it listing every refused line, or to
//! `failed/` with an `.error.txt`; a failure goes to the operator contacts through the
//! notifier's outbox, and is logged and counted in `/metrics` (`vitals_file_drop_failed`).
//! Files go through the ingest pipeline like every way in: refused items are dead letters
//! (source `file-drop`) and counted, besides being listed in the report.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use sha2::{Digest, Sha256};
use vitals_core::PatientId;
use vitals_storage::ledger::{Begin, FileLedger, Ledger, LedgerEntry};

use super::file::ingest_path;
use crate::app::AppState;
use crate::shutdown::Shutdown;

/// The dead-letter source name of dropped files.
const SOURCE: &str = "file-drop";

/// Starts the watcher if `[file_drop] enabled`; it runs until `shutdown` (a file being
/// processed is finished first).
pub(crate) fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !app.config.file_drop.enabled {
        return Ok(None);
    }
    let dir = app.config.file_drop_dir();
    for sub in ["inbox", "processed", "failed"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    // Cluster mode: the cluster's ledger in PostgreSQL (a file is a duplicate on every node).
    let ledger: Arc<dyn Ledger> = match &app.cluster {
        Some(c) => Arc::new(c.ledger()?),
        None => Arc::new(FileLedger::open(&dir).context("opening the file-drop ledger")?),
    };
    let _ = app.file_ledger.set(ledger.clone());
    let interval = Duration::from_millis(app.config.file_drop.poll_interval.as_ms() as u64);
    let thread = std::thread::Builder::new().name("vitals-file-drop".into()).spawn(move || {
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        loop {
            if let Err(e) = poll(&app, &dir, ledger.as_ref(), &mut seen) {
                tracing::error!(error = %format!("{e:#}"), "file drop");
            }
            if shutdown.wait_timeout(interval) {
                return;
            }
        }
    })?;
    Ok(Some(thread))
}

/// One thing to process: a file or an Empatica session folder, maybe of a patient.
#[derive(Debug, Clone)]
struct Unit {
    path: PathBuf,
    patient: Option<PatientId>,
    folder: bool,
}

fn skip(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

fn signature(path: &Path) -> Option<(u64, SystemTime)> {
    let m = fs::metadata(path).ok()?;
    if !m.is_dir() {
        return Some((m.len(), m.modified().ok()?));
    }
    let mut size = 0;
    let mut newest = m.modified().ok()?;
    for e in fs::read_dir(path).ok()?.flatten() {
        let m = e.metadata().ok()?;
        size += m.len();
        newest = newest.max(m.modified().ok()?);
    }
    Some((size, newest))
}

fn discover(inbox: &Path) -> anyhow::Result<Vec<Unit>> {
    let mut units = Vec::new();
    for e in fs::read_dir(inbox)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let path = e.path();
        if e.file_type()?.is_dir() {
            let patient = PatientId::new(&name).ok();
            for inner in fs::read_dir(&path)?.flatten() {
                let n = inner.file_name().to_string_lossy().into_owned();
                if !skip(&n) {
                    units.push(Unit {
                        path: inner.path(),
                        patient: patient.clone(),
                        folder: inner.file_type()?.is_dir(),
                    });
                }
            }
        } else {
            units.push(Unit { path, patient: None, folder: false });
        }
    }
    Ok(units)
}

fn poll(
    app: &AppState,
    dir: &Path,
    ledger: &dyn Ledger,
    seen: &mut HashMap<PathBuf, (u64, SystemTime)>,
) -> anyhow::Result<()> {
    let inbox = dir.join("inbox");
    let mut ready = Vec::new();
    let mut now_seen = HashMap::new();
    for u in discover(&inbox)? {
        let Some(sig) = signature(&u.path) else { continue };
        if seen.get(&u.path) == Some(&sig) {
            ready.push((sig.1, u.clone()));
        }
        now_seen.insert(u.path.clone(), sig);
    }
    *seen = now_seen;
    ready.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
    for (_, unit) in ready {
        process(app, dir, ledger, &unit);
        seen.remove(&unit.path);
    }
    Ok(())
}

/// The content hash of a file or folder, read in blocks (never a whole file in memory).
fn hash(unit: &Unit) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    if unit.folder {
        let mut files: Vec<PathBuf> =
            fs::read_dir(&unit.path)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            h.update(f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
            h.update([0]);
            hash_file(&mut h, &f)?;
        }
    } else {
        hash_file(&mut h, &unit.path)?;
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_file(h: &mut Sha256, path: &Path) -> anyhow::Result<()> {
    let mut f = fs::File::open(path)?;
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut block)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&block[..n]);
    }
}

fn stamp(app: &AppState) -> String {
    vitals_core::time::format_time(app.clock.now_ms()).replace([':', '-'], "").replace(".000Z", "Z")
}

fn process(app: &AppState, dir: &Path, ledger: &dyn Ledger, unit: &Unit) {
    let name = unit.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let shown = match &unit.patient {
        Some(p) => format!("{p}/{name}"),
        None => name.clone(),
    };
    let sha = match hash(unit) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(file = %shown, error = %e, "file drop: cannot read yet");
            return;
        }
    };
    let prefix = match &unit.patient {
        Some(p) => format!("{}-{p}-", stamp(app)),
        None => format!("{}-", stamp(app)),
    };
    let mut entry = LedgerEntry {
        sha256: sha.clone(),
        name: shown.clone(),
        time_ms: app.clock.now_ms(),
        status: String::new(),
        accepted: 0,
        rejected: 0,
        moved_to: String::new(),
        error: String::new(),
    };
    let report_and_move = |sub: &str, entry: &mut LedgerEntry, report: serde_json::Value, suffix: &str| {
        let target = dir.join(sub).join(format!("{prefix}{name}"));
        if let Err(e) = fs::rename(&unit.path, &target) {
            tracing::error!(file = %shown, error = %e, "file drop: cannot move");
        }
        let side = target.with_file_name(format!("{prefix}{name}{suffix}"));
        let text = if suffix.ends_with(".json") {
            serde_json::to_string_pretty(&report).unwrap_or_default()
        } else {
            report.as_str().unwrap_or_default().to_owned()
        };
        // Written aside and renamed: whoever watches processed/ and failed/ (a person, a
        // script, the tests) never reads a report half written.
        let tmp = side.with_file_name(format!(".{prefix}{name}{suffix}.tmp"));
        if let Err(e) = fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, &side)) {
            let _ = fs::remove_file(&tmp);
            tracing::error!(file = %side.display(), error = %e, "file drop: cannot write the report");
        }
        entry.moved_to = format!("{sub}/{prefix}{name}");
    };
    let before = match ledger.begin(&sha) {
        Ok(Begin::Processed(before)) => Some(before),
        Ok(Begin::Claimed) => None,
        Ok(Begin::Busy) => {
            tracing::info!(file = %shown, "file drop: another node is processing the same content; left for later");
            return;
        }
        Err(e) => {
            tracing::warn!(file = %shown, error = %e, "file drop: the ledger does not answer; retrying later");
            return;
        }
    };
    if let Some(before) = before {
        entry.status = "duplicate".into();
        let report = serde_json::json!({"file": shown, "sha256": sha, "duplicate_of": before.name, "processed_at": vitals_core::time::format_time(before.time_ms)});
        report_and_move("processed", &mut entry, report, ".report.json");
        tracing::info!(file = %shown, first = %before.name, "file drop: same content already processed; not ingested again");
    } else {
        match ingest_path(&app.pipeline, SOURCE, &unit.path, unit.patient.as_ref(), &mut |_| {}) {
            Ok(o) => {
                entry.status = "processed".into();
                entry.accepted = o.accepted as u64;
                entry.rejected = o.refused as u64;
                let bad: Vec<serde_json::Value> = o
                    .rejected
                    .iter()
                    .map(|r| serde_json::json!({"line": r.index + 1, "code": r.code, "message": r.message}))
                    .collect();
                let not_stored: Vec<String> =
                    o.unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
                let report = serde_json::json!({"file": shown, "sha256": sha, "accepted": o.accepted,
                    "rejected": o.refused, "refused": bad, "not_stored_yet": not_stored,
                    "dead_letter": o.dead_letter});
                report_and_move("processed", &mut entry, report, ".report.json");
                tracing::info!(file = %shown, accepted = o.accepted, rejected = o.refused, "file drop: processed");
            }
            Err(e) => {
                let why = format!("{e:#}");
                if why.contains("overloaded") {
                    tracing::warn!(file = %shown, "file drop: store overloaded; retrying later");
                    if let Err(e) = ledger.release(&sha) {
                        tracing::warn!(file = %shown, error = %e, "file drop: letting go of the file's claim");
                    }
                    return;
                }
                entry.status = "failed".into();
                entry.error = why.clone();
                report_and_move(
                    "failed",
                    &mut entry,
                    serde_json::Value::String(format!("{shown}: {why}\n")),
                    ".error.txt",
                );
                app.telemetry.file_drop_failed.inc();
                tracing::error!(file = %shown, error = %why, operator_notification = true, "file drop: failed");
                app.alerts.operator_event(
                    &app.config.notify,
                    &format!("file-drop:{}", entry.sha256),
                    &format!("dropped file {shown} failed"),
                    &format!(
                        "The dropped file {shown} could not be processed: {why}. It was moved to failed/ with an .error.txt; fix it and drop it again."
                    ),
                    app.clock.now_ms(),
                );
            }
        }
    }
    if let Err(e) = ledger.record(entry) {
        tracing::error!(error = %e, "file drop: cannot write the ledger");
    }
}
