//! Patients' rights: export everything about one patient as one archive, and erase a
//! patient from every store.
//!
//! Erasure covers the metadata (registration, care-team links, tokens bound to the patient,
//! patient accounts, which are disabled), the vault, samples (buffer, write-ahead log and
//! every lake partition), events, alerts and their notices, dead letters that mention the
//! patient, cohorts and API rules scoped to them. It keeps the audit log: the record of who
//! read and who erased the data is itself required (accountability), and it names the
//! pseudonym only, which after erasure points to nothing.

use std::io::Write;

use anyhow::Context;
use serde_json::{Value, json};
use vitals_core::PatientId;
use vitals_core::time::format_time;
use vitals_storage::ReadRequest;
use vitals_storage::ledger::{Ledger as _, LedgerEntry};

use crate::app::App;

/// What an erasure removed, by store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ErasureReport {
    pub registered: bool,
    pub identity: bool,
    pub segments: usize,
    pub samples: u64,
    pub events: usize,
    pub alerts: usize,
    pub notices: usize,
    pub dead_letters: usize,
    pub cohorts: usize,
    /// Connections to vendor clouds, with their sealed credentials.
    pub connections: usize,
    pub rules: Vec<String>,
    /// Files of the file drop (copies in `processed/` and `failed/`, their reports, files
    /// waiting in the inbox) removed or rewritten without the patient, and ledger entries.
    pub dropped_files: usize,
    pub ledger_entries: usize,
    /// WAL files set aside as damaged (`*.damaged`) that held the patient, removed.
    pub damaged_wal_files: usize,
}

impl std::fmt::Display for ErasureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identity {}, {} samples in {} segments, {} events, {} alerts, {} notices, {} dead letters, {} cohorts, {} connections, rules [{}], {} dropped files, {} ledger entries, {} damaged WAL files",
            if self.identity { "erased" } else { "none" },
            self.samples,
            self.segments,
            self.events,
            self.alerts,
            self.notices,
            self.dead_letters,
            self.cohorts,
            self.connections,
            self.rules.join(", "),
            self.dropped_files,
            self.ledger_entries,
            self.damaged_wal_files
        )
    }
}

/// Whether `hay` mentions `id` as a whole identifier (not inside a longer one).
fn mentions(hay: &[u8], id: &str) -> bool {
    let id = id.as_bytes();
    let is_id = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    hay.windows(id.len())
        .enumerate()
        .any(|(i, w)| w == id && (i == 0 || !is_id(hay[i - 1])) && hay.get(i + id.len()).is_none_or(|b| !is_id(*b)))
}

/// Erases a patient from every store (blocking: run it off the async workers). In cluster
/// mode the erasure goes on the log first (nothing is erased if that fails), and every
/// node's tail erases what that node holds when it reads it (`erase_local`); the shared
/// stores (metadata, vault, alerts, cohorts, rules, campaigns) are erased here, once.
pub fn erase(app: &App, patient: &PatientId) -> anyhow::Result<ErasureReport> {
    let p = patient.as_str();
    if let Some(cluster) = &app.cluster {
        cluster
            .publisher
            .erase(patient)
            .map_err(|e| anyhow::anyhow!("putting the erasure on the cluster's log: {e}"))?;
    }
    // Stop the patient's senders and the live engine first.
    let registered = app.directory.meta().delete_patient(p)?;
    let identity = app.vault.delete(p)?;
    let sent = app.campaigns.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing from campaigns: {e}"))?;
    let (alerts, notices) =
        app.alerts.erase_patient(p, &sent).map_err(|e| anyhow::anyhow!("erasing alerts and notices: {e}"))?;
    let cohorts = app.cohorts.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing from cohorts: {e}"))?;
    let rules = app.rules.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing from rules: {e}"))?;
    let connections =
        app.connections.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing vendor connections: {e}"))?;
    let local = erase_local(app, patient)?;
    Ok(ErasureReport { registered, identity, alerts, notices, cohorts, connections, rules, ..local })
}

/// Erases what this node holds of a patient: the live engine's state, samples, events,
/// dead letters, dropped files and their ledger, damaged WAL files. (The report's counts of
/// shared stores are zero.)
pub fn erase_local(app: &App, patient: &PatientId) -> anyhow::Result<ErasureReport> {
    let p = patient.as_str();
    app.erased.add(p);
    let samples = app.store.erase_patient(patient).context("erasing samples")?;
    let events = app.events.erase_patient(p).context("erasing events")?;
    let dead_letters = app
        .dead_letters
        .erase_matching(|meta, raw| {
            mentions(raw, p)
                || meta.context.values().any(|v| mentions(v.as_bytes(), p))
                || mentions(meta.reason.as_bytes(), p)
        })
        .context("erasing dead letters")?;
    let dropped_files = erase_from_file_drop(&app.config.file_drop_dir(), p).context("erasing dropped files")?
        + erase_failed_uploads(&app.config.storage.data_dir, p).context("erasing failed uploads")?;
    app.devices.erase_patient(p);
    app.devices.save_if_changed().context("erasing device telemetry")?;
    let theirs = |e: &LedgerEntry| e.name.starts_with(&format!("{p}/"));
    let ledger_entries = match (app.file_ledger.get(), &app.cluster) {
        (Some(l), _) => l.erase_matching(&theirs).context("erasing the file ledger")?,
        // Cluster mode: the shared ledger, though this node's file drop is off.
        (None, Some(c)) => c.ledger()?.erase_matching(&theirs).context("erasing the file ledger")?,
        (None, None) => erase_from_ledger_file(&app.config.file_drop_dir(), p)?,
    };
    let damaged_wal_files =
        erase_damaged_wal_files(&app.config.data_dir().wal(), p).context("erasing damaged WAL files")?;
    Ok(ErasureReport {
        registered: false,
        identity: false,
        segments: samples.segments,
        samples: samples.rows,
        events,
        alerts: 0,
        notices: 0,
        dead_letters,
        cohorts: 0,
        connections: 0,
        rules: Vec::new(),
        dropped_files,
        ledger_entries,
        damaged_wal_files,
    })
}

/// Uploads of the patient that could not be read (`uploads/failed/<patient>/`): how many
/// files went.
fn erase_failed_uploads(data_dir: &std::path::Path, patient: &str) -> std::io::Result<usize> {
    let dir = data_dir.join("uploads").join("failed").join(patient);
    let n = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().filter(|e| !e.file_name().to_string_lossy().ends_with(".error.txt")).count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    std::fs::remove_dir_all(&dir)?;
    Ok(n)
}

/// The ledger of a file drop that is not running (its log is opened here).
fn erase_from_ledger_file(dir: &std::path::Path, p: &str) -> anyhow::Result<usize> {
    if !dir.join("ledger.log").exists() {
        return Ok(0);
    }
    let ledger = vitals_storage::ledger::FileLedger::open(dir).context("opening the file ledger")?;
    ledger.erase_matching(&|e| e.name.starts_with(&format!("{p}/"))).context("erasing the file ledger")
}

/// The file drop's copies of a patient's data: their own files (`inbox/<patient>/`, and in
/// `processed/` and `failed/` the files named `<stamp>-<patient>-...` with their reports)
/// are removed; other files that mention the patient are rewritten without the lines that
/// do (line-based files and reports), or removed. Returns how many files were touched.
fn erase_from_file_drop(dir: &std::path::Path, p: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let inbox_dir = dir.join("inbox").join(p);
    if inbox_dir.exists() {
        std::fs::remove_dir_all(&inbox_dir).with_context(|| format!("removing {}", inbox_dir.display()))?;
        n += 1;
    }
    for sub in ["processed", "failed", "inbox"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let own = name.split_once('-').is_some_and(|(_, rest)| rest.starts_with(&format!("{p}-")));
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if !own && !mentions(&bytes, p) {
                continue;
            }
            n += 1;
            let kept: Option<Vec<u8>> = if own {
                None
            } else if name.ends_with(".report.json") {
                // A report of a file of several patients: without the refusals naming this one.
                serde_json::from_slice::<Value>(&bytes).ok().map(|mut v| {
                    if let Some(items) = v.get_mut("refused").and_then(Value::as_array_mut) {
                        items.retain(|i| !mentions(i.to_string().as_bytes(), p));
                    }
                    serde_json::to_vec_pretty(&v).unwrap_or_default()
                })
            } else if name.ends_with(".ndjson") || name.ends_with(".csv") || name.ends_with(".txt") {
                Some(bytes.split_inclusive(|b| *b == b'\n').filter(|l| !mentions(l, p)).flatten().copied().collect())
            } else {
                None
            };
            match kept {
                Some(k) if !mentions(&k, p) => {
                    replace_file(&path, &k)?;
                }
                _ => std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?,
            }
        }
    }
    Ok(n)
}

/// Rewrites a file through a temporary one and a rename, so a crash leaves one or the other.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("erasing");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// WAL files set aside by `--repair-wal` (`*.damaged`) that mention the patient.
fn erase_damaged_wal_files(wal: &std::path::Path, p: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(wal) else { return Ok(0) };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "damaged") {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if mentions(&bytes, p) {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The most points an export holds at once (one window of one metric).
pub const EXPORT_WINDOW_POINTS: u64 = 1 << 20;

/// The narrowest window an export halves down to.
const MIN_WINDOW_MS: i64 = 3_600_000;

fn request(patient: &PatientId, metric: vitals_core::MetricId, from: i64, to: i64) -> ReadRequest {
    ReadRequest {
        patient: patient.clone(),
        metric,
        device: None,
        from,
        to,
        rollups: false,
        // The window was chosen so that its estimate fits; an hour of data is read whole.
        max_points: usize::MAX,
        sources: false,
    }
}

/// Time windows `[from, to)` in order that cover all of time and hold data: each is halved
/// while `estimate` says it holds more than [`EXPORT_WINDOW_POINTS`] points, down to an hour.
fn export_windows(estimate: impl Fn(i64, i64) -> u64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![(0, vitals_core::time::MAX_TIME_MS + 1)];
    while let Some((from, to)) = stack.pop() {
        let n = estimate(from, to);
        if n == 0 {
            continue;
        }
        if n <= EXPORT_WINDOW_POINTS || to - from <= MIN_WINDOW_MS {
            out.push((from, to));
            continue;
        }
        let mid = from + (to - from) / 2;
        // The earlier half first.
        stack.push((mid, to));
        stack.push((from, mid));
    }
    out
}

fn zip_err(e: zip::result::ZipError) -> anyhow::Error {
    anyhow::anyhow!("writing the archive: {e}")
}

/// Everything about a patient as a zip archive: `patient.json`, `identity.json`,
/// `samples/<metric>.csv`, `events.json`, `documents.ndjson` (what CGM uploaders sent, whole),
/// `alerts.json`, `notices.json` (without the
/// addresses of other people), `audit.json` (who read or changed their data), `README.txt`.
///
/// The archive is written to `out` (a file: it may be larger than memory) as it is built,
/// and samples are read a window of at most [`EXPORT_WINDOW_POINTS`] at a time, so the
/// memory an export takes does not grow with the patient's history.
pub fn export<W: Write + std::io::Seek>(
    app: &App,
    patient: &PatientId,
    now_ms: i64,
    out: W,
) -> anyhow::Result<(W, String)> {
    let p = patient.as_str();
    let mut zip = zip::ZipWriter::new(out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    let add_json = |zip: &mut zip::ZipWriter<W>, name: &str, v: &Value| {
        zip.start_file(name, opts).map_err(zip_err)?;
        zip.write_all(&serde_json::to_vec_pretty(v)?)?;
        anyhow::Ok(())
    };
    let meta = app.directory.meta();
    let registered = meta.patient(p)?;
    let teams: Vec<String> =
        meta.teams()?.into_iter().filter(|t| t.patients.iter().any(|x| x == p)).map(|t| t.name).collect();
    add_json(
        &mut zip,
        "patient.json",
        &json!({"patient": p, "registered": registered.map(|r| format_time(r.created_ms)),
            "care_teams": teams, "exported": format_time(now_ms)}),
    )?;
    let identity = app.vault.get(p)?;
    if let Some(i) = &identity {
        add_json(&mut zip, "identity.json", &serde_json::to_value(i)?)?;
    }
    let mut samples = 0u64;
    let mut metrics = Vec::new();
    for (id, m) in app.catalog.all() {
        let windows = export_windows(|from, to| app.store.estimate(&request(patient, id, from, to)));
        let mut n = 0u64;
        for (from, to) in windows {
            let read = app.store.read(&request(patient, id, from, to))?;
            for s in &read.raw {
                if n == 0 && !s.times.is_empty() {
                    zip.start_file(format!("samples/{}.csv", m.code), opts).map_err(zip_err)?;
                    writeln!(zip, "time,value,unit,device")?;
                }
                let device = s.device.as_ref().map_or("", |d| d.as_str());
                for (t, v) in s.times.iter().zip(&s.values) {
                    writeln!(zip, "{},{},{},{}", format_time(*t), v, m.unit, device)?;
                }
                n += s.times.len() as u64;
            }
        }
        if n > 0 {
            samples += n;
            metrics.push(m.code);
        }
    }
    let events = app.events.query(p, i64::MIN, i64::MAX, None);
    add_json(&mut zip, "events.json", &serde_json::to_value(&events)?)?;
    // Documents (what CGM uploaders sent) one line each, never all in memory at once.
    zip.start_file("documents.ndjson", opts).map_err(zip_err)?;
    let documents = app.events.documents().each_of_patient(p, |doc| -> anyhow::Result<()> {
        serde_json::to_writer(&mut zip, &doc)?;
        zip.write_all(b"\n")?;
        Ok(())
    })?;
    let alerts = app.alerts.list(Some(p), None, i64::MIN, i64::MAX);
    add_json(&mut zip, "alerts.json", &Value::Array(alerts.iter().map(vitals_alerts::Alert::render).collect()))?;
    let notices: Vec<Value> = alerts
        .iter()
        .flat_map(|a| app.alerts.notices(None, Some(&a.id), usize::MAX))
        .map(|n| {
            json!({"id": n.id, "alert": n.alert, "channel": n.channel, "severity": n.severity,
                "subject": n.subject, "state": n.state, "created": format_time(n.created_ms),
                "delivered": n.delivered_ms.map(format_time)})
        })
        .collect();
    add_json(&mut zip, "notices.json", &Value::Array(notices))?;
    let audit =
        meta.audit(&vitals_meta::AuditFilter { patient: Some(p.to_owned()), limit: 10_000, ..Default::default() })?;
    let audit: Vec<Value> = audit
        .iter()
        .map(|e| {
            json!({"time": format_time(e.event.ts_ms), "actor": e.event.actor, "action": e.event.action,
                "target": e.event.target, "outcome": e.event.outcome})
        })
        .collect();
    add_json(&mut zip, "audit.json", &Value::Array(audit))?;
    zip.start_file("README.txt", opts).map_err(zip_err)?;
    write!(
        zip,
        "Everything Vitals holds about patient {p}, exported {}.\n\n\
         patient.json   registration and care teams\n\
         identity.json  identifying data from the vault (if any was recorded)\n\
         samples/*.csv  every reading: time (UTC), value, unit, device\n\
         events.json    events (sleep, workouts, seizures...)\n\
         documents.ndjson  what CGM uploaders sent (entries, device statuses), one per line\n\
         alerts.json    alerts and their lifecycle\n\
         notices.json   notifications sent about them (recipients' addresses left out)\n\
         audit.json     who read, changed or exported these data, and when\n",
        format_time(now_ms)
    )?;
    let out = zip.finish().map_err(zip_err)?;
    let summary = format!(
        "{samples} samples of {} metrics, {} events, {documents} documents, {} alerts, identity {}",
        metrics.len(),
        events.len(),
        alerts.len(),
        if identity.is_some() { "included" } else { "none recorded" }
    );
    Ok((out, summary))
}

/// The application over a data directory for offline commands (fails while a server runs).
fn offline_app(config: &crate::config::Config, directory: crate::auth::Directory) -> anyhow::Result<App> {
    let store = crate::stores::open_store(config).context("the server must be stopped; or use the API")?;
    App::open(store, directory, config.clone(), std::sync::Arc::new(vitals_core::SystemClock))
}

/// `vitals admin patient export` on a stopped server's data directory.
pub fn export_offline(config: &crate::config::Config, patient: &str, out: &std::path::Path) -> anyhow::Result<String> {
    let id = PatientId::new(patient).map_err(|e| anyhow::anyhow!("patient {patient:?} {e}"))?;
    let app = offline_app(config, crate::auth::Directory::open_for(config)?)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let (file, summary) = export(&app, &id, vitals_core::Clock::now_ms(&vitals_core::SystemClock), file)?;
    file.sync_all().with_context(|| format!("writing {}", out.display()))?;
    app.store.close()?;
    Ok(summary)
}

/// `vitals admin patient erase` on a stopped server's data directory.
pub fn erase_offline(config: &crate::config::Config, patient: &str) -> anyhow::Result<ErasureReport> {
    let id = PatientId::new(patient).map_err(|e| anyhow::anyhow!("patient {patient:?} {e}"))?;
    let app = offline_app(config, crate::auth::Directory::open_for(config)?)?;
    let r = erase(&app, &id)?;
    app.store.close()?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_windows_cover_the_data_in_order_and_fit_the_window_limit() {
        // 3 M points a day over days 100..110 (ms since the epoch / day), none elsewhere.
        let day = 86_400_000i64;
        let density = 3_000_000.0 / day as f64;
        let estimate = |from: i64, to: i64| {
            let (lo, hi) = (from.max(100 * day), to.min(110 * day));
            if hi <= lo { 0 } else { ((hi - lo) as f64 * density).ceil() as u64 }
        };
        let w = export_windows(estimate);
        assert!(w.windows(2).all(|p| p[0].1 <= p[1].0), "in order, no overlap: {w:?}");
        assert!(w.iter().all(|&(f, t)| estimate(f, t) <= EXPORT_WINDOW_POINTS || t - f <= MIN_WINDOW_MS));
        // Together they cover every point.
        let covered: u64 = w.iter().map(|&(f, t)| estimate(f, t)).sum();
        assert!(covered >= 30_000_000, "{covered}");
        assert!(w.first().is_some_and(|f| f.0 <= 100 * day) && w.last().is_some_and(|l| l.1 >= 110 * day));
        // Nothing to export: no window.
        assert!(export_windows(|_, _| 0).is_empty());
    }

    #[test]
    fn mentions_matches_whole_identifiers_only() {
        assert!(mentions(b"{\"patient\":\"p-1\"}", "p-1"));
        assert!(mentions(b"p-1,heart_rate", "p-1"));
        assert!(!mentions(b"p-10,heart_rate", "p-1"));
        assert!(!mentions(b"xp-1", "p-1"));
        assert!(mentions(b"p-1", "p-1"));
    }
}
