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
    pub rules: Vec<String>,
}

impl std::fmt::Display for ErasureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identity {}, {} samples in {} segments, {} events, {} alerts, {} notices, {} dead letters, {} cohorts, rules [{}]",
            if self.identity { "erased" } else { "none" },
            self.samples,
            self.segments,
            self.events,
            self.alerts,
            self.notices,
            self.dead_letters,
            self.cohorts,
            self.rules.join(", ")
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

/// Erases a patient from every store (blocking: run it off the async workers).
pub fn erase(app: &App, patient: &PatientId) -> anyhow::Result<ErasureReport> {
    let p = patient.as_str();
    // Stop the patient's senders and the live engine first.
    let registered = app.directory.meta().delete_patient(p)?;
    app.erased.add(p);
    let identity = app.vault.delete(p)?;
    let samples = app.store.erase_patient(patient).context("erasing samples")?;
    let events = app.events.erase_patient(p).context("erasing events")?;
    let (alerts, notices) = app.alerts.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing alerts: {e}"))?;
    let dead_letters = app
        .dead_letters
        .erase_matching(|meta, raw| {
            mentions(raw, p)
                || meta.context.values().any(|v| mentions(v.as_bytes(), p))
                || mentions(meta.reason.as_bytes(), p)
        })
        .context("erasing dead letters")?;
    let cohorts = app.cohorts.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing from cohorts: {e}"))?;
    let rules = app.rules.erase_patient(p).map_err(|e| anyhow::anyhow!("erasing from rules: {e}"))?;
    Ok(ErasureReport {
        registered,
        identity,
        segments: samples.segments,
        samples: samples.rows,
        events,
        alerts,
        notices,
        dead_letters,
        cohorts,
        rules,
    })
}

fn zip_err(e: zip::result::ZipError) -> anyhow::Error {
    anyhow::anyhow!("writing the archive: {e}")
}

/// Everything about a patient as a zip archive: `patient.json`, `identity.json`,
/// `samples/<metric>.csv`, `events.json`, `alerts.json`, `notices.json` (without the
/// addresses of other people), `audit.json` (who read or changed their data), `README.txt`.
pub fn export(app: &App, patient: &PatientId, now_ms: i64) -> anyhow::Result<(Vec<u8>, String)> {
    let p = patient.as_str();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let add_json = |zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, name: &str, v: &Value| {
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
        let read = app.store.read(&ReadRequest {
            patient: patient.clone(),
            metric: id,
            device: None,
            from: 0,
            to: i64::MAX / 4,
            rollups: false,
            // The archive is built in memory; see docs/security.md on its size.
            max_points: usize::MAX,
        })?;
        let n: usize = read.raw.iter().map(|s| s.times.len()).sum();
        if n == 0 {
            continue;
        }
        zip.start_file(format!("samples/{}.csv", m.code), opts).map_err(zip_err)?;
        writeln!(zip, "time,value,unit,device")?;
        for s in &read.raw {
            let device = s.device.as_ref().map_or("", |d| d.as_str());
            for (t, v) in s.times.iter().zip(&s.values) {
                writeln!(zip, "{},{},{},{}", format_time(*t), v, m.unit, device)?;
            }
        }
        samples += n as u64;
        metrics.push(m.code);
    }
    let events = app.events.query(p, i64::MIN, i64::MAX, None);
    add_json(&mut zip, "events.json", &serde_json::to_value(&events)?)?;
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
         alerts.json    alerts and their lifecycle\n\
         notices.json   notifications sent about them (recipients' addresses left out)\n\
         audit.json     who read, changed or exported these data, and when\n",
        format_time(now_ms)
    )?;
    let bytes = zip.finish().map_err(zip_err)?.into_inner();
    let summary = format!(
        "{samples} samples of {} metrics, {} events, {} alerts, identity {}",
        metrics.len(),
        events.len(),
        alerts.len(),
        if identity.is_some() { "included" } else { "none recorded" }
    );
    Ok((bytes, summary))
}

/// The application over a data directory for offline commands (fails while a server runs).
fn offline_app(config: &crate::config::Config, directory: crate::auth::Directory) -> anyhow::Result<App> {
    let store = crate::stores::open_store(config).context("the server must be stopped; or use the API")?;
    App::open(store, directory, config.clone(), std::sync::Arc::new(vitals_core::SystemClock))
}

/// `vitals admin patient export` on a stopped server's data directory.
pub fn export_offline(config: &crate::config::Config, patient: &str, out: &std::path::Path) -> anyhow::Result<String> {
    let id = PatientId::new(patient).map_err(|e| anyhow::anyhow!("patient {patient:?} {e}"))?;
    let app = offline_app(config, crate::auth::Directory::open(&config.storage.data_dir)?)?;
    let (bytes, summary) = export(&app, &id, vitals_core::Clock::now_ms(&vitals_core::SystemClock))?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    app.store.close()?;
    Ok(summary)
}

/// `vitals admin patient erase` on a stopped server's data directory.
pub fn erase_offline(config: &crate::config::Config, patient: &str) -> anyhow::Result<ErasureReport> {
    let id = PatientId::new(patient).map_err(|e| anyhow::anyhow!("patient {patient:?} {e}"))?;
    let app = offline_app(config, crate::auth::Directory::open(&config.storage.data_dir)?)?;
    let r = erase(&app, &id)?;
    app.store.close()?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_matches_whole_identifiers_only() {
        assert!(mentions(b"{\"patient\":\"p-1\"}", "p-1"));
        assert!(mentions(b"p-1,heart_rate", "p-1"));
        assert!(!mentions(b"p-10,heart_rate", "p-1"));
        assert!(!mentions(b"xp-1", "p-1"));
        assert!(mentions(b"p-1", "p-1"));
    }
}
