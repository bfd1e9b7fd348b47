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

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use vitals_core::{Catalog, PatientId, Rejection, Validator};
use vitals_ingest::{Batch, Format, apple_health, empatica, health_auto_export, native};
use vitals_storage::event_store::EventStore;
use vitals_storage::ledger::{FileLedger, LedgerEntry};
use vitals_storage::{Store, StoreError};

use crate::config::Config;
use crate::server::AppState;

/// The running watcher; dropping it stops the thread.
pub struct FileDrop {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FileDrop {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The staging directory of a config.
pub fn drop_dir(app: &AppState) -> PathBuf {
    let d = &app.config.file_drop.dir;
    if d.as_os_str().is_empty() { app.config.storage.data_dir.join("drop") } else { d.clone() }
}

/// Starts the watcher if `[file_drop] enabled`.
pub fn spawn(app: AppState) -> anyhow::Result<Option<FileDrop>> {
    if !app.config.file_drop.enabled {
        return Ok(None);
    }
    let dir = drop_dir(&app);
    for sub in ["inbox", "processed", "failed"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let ledger = Arc::new(FileLedger::open(&dir).context("opening the file-drop ledger")?);
    let _ = app.file_ledger.set(ledger.clone());
    let (stop, stopped) = mpsc::channel::<()>();
    let interval = Duration::from_millis(app.config.file_drop.poll_interval.as_ms() as u64);
    let thread = std::thread::Builder::new().name("vitals-file-drop".into()).spawn(move || {
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        loop {
            if let Err(e) = poll(&app, &dir, &ledger, &mut seen) {
                tracing::error!(error = %format!("{e:#}"), "file drop");
            }
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    })?;
    Ok(Some(FileDrop { stop: Some(stop), thread: Some(thread) }))
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
    ledger: &FileLedger,
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

fn hash(unit: &Unit) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    if unit.folder {
        let mut files: Vec<PathBuf> =
            fs::read_dir(&unit.path)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            h.update(f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
            h.update([0]);
            h.update(fs::read(&f)?);
        }
    } else {
        h.update(fs::read(&unit.path)?);
    }
    Ok(hex::encode(h.finalize()))
}

/// What ingesting one file or folder gave.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub accepted: u64,
    /// Refused items (the first [`MAX_REPORTED`]), with `refused` counting all.
    pub rejections: Vec<Rejection>,
    pub refused: u64,
    /// Parts that cannot be stored yet, e.g. `Workout (3)`.
    pub not_stored: Vec<String>,
    /// Events stored (workouts, sleep).
    pub events: u64,
}

/// Refused items listed in a report (all are counted).
pub const MAX_REPORTED: usize = 10_000;

/// Chunk size when streaming large files into the store.
const CHUNK: usize = 50_000;

impl FileOutcome {
    fn add(&mut self, store: &Store, batch: Batch) -> anyhow::Result<()> {
        self.refused += batch.rejections.len() as u64;
        let room = MAX_REPORTED.saturating_sub(self.rejections.len());
        self.rejections.extend(batch.rejections.into_iter().take(room));
        self.accepted += batch.samples.len() as u64;
        match store.write(batch.samples) {
            Ok(_) => Ok(()),
            Err(StoreError::Overloaded { .. }) => bail!("the store is overloaded; try again later"),
            Err(e) => Err(e.into()),
        }
    }
}

fn is_signal(name: &str) -> bool {
    empatica::SIGNAL_FILES.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// An Empatica E4 session (from a folder or a zip): its signal files and `tags.csv`.
#[allow(clippy::too_many_arguments)] // reason: the shared tail of two callers
fn ingest_e4_session(
    store: &Store,
    events: &EventStore,
    v: &mut Validator<'_>,
    patient: &str,
    session: &str,
    files: Vec<(String, String)>,
    out: &mut FileOutcome,
) -> anyhow::Result<()> {
    let device = format!("e4-{}", health_auto_export::device_from_source(session).unwrap_or_else(|| "session".into()));
    if !files.iter().any(|(n, _)| is_signal(n)) {
        bail!("holds none of {}", empatica::SIGNAL_FILES.join(", "));
    }
    for (f, text) in files {
        if f.eq_ignore_ascii_case("tags.csv") {
            let (evs, bad) = empatica::decode_tags(&text, patient, &device);
            out.events += evs.len() as u64;
            events.put(evs)?;
            out.add(store, Batch { items: bad.len(), samples: Vec::new(), rejections: bad })?;
            continue;
        }
        let mut b = empatica::decode(&f, &text, patient, &device, v)?;
        for r in &mut b.rejections {
            r.message = format!("{f} line {}: {}", r.index + 1, r.message);
        }
        out.add(store, b)?;
    }
    Ok(())
}

/// Ingests one file or folder by its content: an Empatica E4 session folder, zip or signal file,
/// an Apple Health `export.xml` (streamed), a Health Auto Export JSON or CSV export (these
/// need `patient`), or native NDJSON/CSV/JSON. Shared by the file drop and `vitals ingest`;
/// `progress` gets the bytes read so far of large files.
pub fn ingest_path(
    config: &Config,
    store: &Store,
    events: &EventStore,
    now_ms: i64,
    path: &Path,
    patient: Option<&PatientId>,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<FileOutcome> {
    let cfg = &config.ingest;
    let mut v = Validator::new(Catalog::standard(), now_ms, cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()))
        .only_patient(patient.cloned());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let need_patient = || {
        patient
            .map(|p| p.as_str().to_owned())
            .context("this format has no patient ids: drop it into inbox/<patient>/ (or pass --patient)")
    };
    let mut out = FileOutcome::default();
    if path.is_dir() {
        let p = need_patient()?;
        let mut files = Vec::new();
        for e in fs::read_dir(path)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && (is_signal(&n) || n.eq_ignore_ascii_case("tags.csv")) {
                files.push((
                    n,
                    fs::read_to_string(e.path()).with_context(|| format!("{}: not UTF-8 text", e.path().display()))?,
                ));
            }
        }
        ingest_e4_session(store, events, &mut v, &p, &name, files, &mut out)?;
        return Ok(out);
    }
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut fs::File::open(path)?, &mut magic)?;
    if n == 4 && &magic == b"PK\x03\x04" {
        let p = need_patient()?;
        let mut archive = zip::ZipArchive::new(fs::File::open(path)?).context("reading the zip archive")?;
        let mut files = Vec::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).context("reading the zip archive")?;
            let base = f.name().context("a zip entry name")?.rsplit('/').next().unwrap_or_default().to_owned();
            if f.is_file() && (is_signal(&base) || base.eq_ignore_ascii_case("tags.csv")) {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text)
                    .with_context(|| format!("{base} in the zip: not UTF-8 text"))?;
                files.push((base, text));
            }
        }
        let stem = name.strip_suffix(".zip").unwrap_or(&name).to_owned();
        ingest_e4_session(store, events, &mut v, &p, &stem, files, &mut out)?;
        return Ok(out);
    }
    if empatica::SIGNAL_FILES.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
        let p = need_patient()?;
        let text = fs::read_to_string(path).context("not UTF-8 text")?;
        out.add(store, empatica::decode(&name, &text, &p, "e4", &mut v)?)?;
        return Ok(out);
    }
    let mut head = vec![0u8; 512];
    let n = std::io::Read::read(&mut fs::File::open(path)?, &mut head)?;
    let head: String = String::from_utf8_lossy(&head[..n]).chars().filter(|c| !c.is_whitespace()).collect();
    if head.starts_with("<?xml") || head.starts_with("<HealthData") || head.starts_with("<!DOCTYPEHealthData") {
        let p = need_patient()?;
        let reader = std::io::BufReader::with_capacity(1 << 20, fs::File::open(path)?);
        let summary = apple_health::stream(reader, &p, &mut v, CHUNK, |batch, evs, bytes| {
            progress(bytes);
            out.events += evs.len() as u64;
            events.put(evs)?;
            out.add(store, batch)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.not_stored = summary.not_stored.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        return Ok(out);
    }
    let bytes = fs::read(path)?;
    if head.starts_with("{\"data\":") {
        let p = need_patient()?;
        let d = health_auto_export::decode(&bytes, &p, &mut v)?;
        out.not_stored = d.unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
        out.events = d.events.len() as u64;
        events.put(d.events)?;
        out.add(store, d.batch)?;
        return Ok(out);
    }
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    if first_line.len() > 4 && first_line[..4].eq_ignore_ascii_case(b"date") && first_line.contains(&b'(') {
        // Health Auto Export's CSV export: `Date/Time,Active Energy (kcal),...`.
        let p = need_patient()?;
        let d = health_auto_export::decode_csv(&bytes, &p, &mut v)?;
        out.not_stored = d.unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
        out.add(store, d.batch)?;
        return Ok(out);
    }
    out.add(store, native::decode(&bytes, Format::sniff(&bytes), &mut v)?)?;
    Ok(out)
}

fn stamp(app: &AppState) -> String {
    vitals_core::time::format_time(app.clock.now_ms()).replace([':', '-'], "").replace(".000Z", "Z")
}

fn process(app: &AppState, dir: &Path, ledger: &FileLedger, unit: &Unit) {
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
        if let Err(e) = fs::write(&side, text) {
            tracing::error!(file = %side.display(), error = %e, "file drop: cannot write the report");
        }
        entry.moved_to = format!("{sub}/{prefix}{name}");
    };
    if let Some(before) = ledger.processed(&sha) {
        entry.status = "duplicate".into();
        let report = serde_json::json!({"file": shown, "sha256": sha, "duplicate_of": before.name, "processed_at": vitals_core::time::format_time(before.time_ms)});
        report_and_move("processed", &mut entry, report, ".report.json");
        tracing::info!(file = %shown, first = %before.name, "file drop: same content already processed; not ingested again");
    } else {
        let now = app.clock.now_ms();
        match ingest_path(&app.config, &app.store, &app.events, now, &unit.path, unit.patient.as_ref(), &mut |_| {}) {
            Ok(o) => {
                entry.status = "processed".into();
                entry.accepted = o.accepted;
                entry.rejected = o.refused;
                let bad: Vec<serde_json::Value> = o
                    .rejections
                    .iter()
                    .map(|r| serde_json::json!({"line": r.index + 1, "code": r.code, "message": r.message}))
                    .collect();
                let report = serde_json::json!({"file": shown, "sha256": sha, "accepted": o.accepted,
                    "rejected": o.refused, "refused": bad, "not_stored_yet": o.not_stored});
                report_and_move("processed", &mut entry, report, ".report.json");
                tracing::info!(file = %shown, accepted = o.accepted, rejected = o.refused, "file drop: processed");
            }
            Err(e) => {
                let why = format!("{e:#}");
                if why.contains("overloaded") {
                    tracing::warn!(file = %shown, "file drop: store overloaded; retrying later");
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
