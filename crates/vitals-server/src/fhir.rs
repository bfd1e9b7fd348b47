//! FHIR R4 exports (resources from `vitals_query::fhir`): a patient's `Bundle`
//! (`GET /api/v1/patients/{patient}/fhir`) and bulk NDJSON per resource type in the shape
//! of FHIR Bulk Data `$export` (`vitals lake fhir`, and over HTTP in [`crate::fhir_export`]). Both read the store as the REST API
//! does: every acknowledged sample, buffered or in the lake (fetched from the bucket for
//! cold days), last write wins. Identities never leave the vault: a Patient is its
//! pseudonym.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use vitals_core::time::MS_PER_DAY;
use vitals_core::{DeviceId, MetricId, PatientId};
use vitals_query::fhir;
use vitals_storage::{ReadRequest, Store, StoreError};

use crate::app::App;

/// Observations one Bundle may hold; more asks for a narrower range or the bulk export.
pub const MAX_BUNDLE_OBSERVATIONS: u64 = 100_000;
/// Points one read of a (patient, metric, day) may hold (a day of 1 Hz data is 86,400).
const MAX_DAY_POINTS: usize = 20_000_000;

/// Which resource types a bulk export writes (`_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Types {
    pub patient: bool,
    pub device: bool,
    pub observation: bool,
}

impl Types {
    pub const ALL: Types = Types { patient: true, device: true, observation: true };
    pub const NONE: Types = Types { patient: false, device: false, observation: false };
}

/// Observations between two calls of a bulk export's `stop`.
const PROGRESS_EVERY: u64 = 10_000;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `None`: every patient.
    pub patients: Option<BTreeSet<PatientId>>,
    /// `None`: every metric.
    pub metrics: Option<BTreeSet<MetricId>>,
    pub from: i64,
    pub to: i64,
}

impl Selection {
    fn wants(&self, p: &PatientId, m: MetricId) -> bool {
        self.patients.as_ref().is_none_or(|s| s.contains(p)) && self.metrics.as_ref().is_none_or(|s| s.contains(&m))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error(
        "the range holds about {found} samples, more than the {MAX_BUNDLE_OBSERVATIONS} one Bundle takes; narrow \
         from/to or the metrics, or use the bulk export (vitals lake fhir)"
    )]
    TooMany { found: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Calls `each` with every selected sample, one (patient, metric, UTC day) read at a time,
/// so memory follows a day of one series, not the export.
fn for_each_sample(
    store: &Store,
    sel: &Selection,
    mut each: impl FnMut(&PatientId, MetricId, Option<&DeviceId>, i64, f64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // A patient's series are looked up; only an export of everyone walks the whole index.
    let series = match &sel.patients {
        Some(ps) => ps.iter().flat_map(|p| store.series_days(Some(p))).collect(),
        None => store.series_days(None),
    };
    for ((p, m), days) in series {
        if !sel.wants(&p, m) {
            continue;
        }
        for day in days {
            let (from, to) = (day.max(sel.from), day.saturating_add(MS_PER_DAY).min(sel.to));
            if from >= to {
                continue;
            }
            let read = store.read(&ReadRequest {
                patient: p.clone(),
                metric: m,
                device: None,
                from,
                to,
                rollups: false,
                max_points: MAX_DAY_POINTS,
                sources: false,
            })?;
            for s in &read.raw {
                for (t, v) in s.times.iter().zip(&s.values) {
                    each(&p, m, s.device.as_ref(), *t, *v)?;
                }
            }
        }
    }
    Ok(())
}

/// A patient's samples in the range as a `collection` Bundle: the Patient, the Devices
/// that sent them, and one Observation per sample (oldest first per metric).
pub fn bundle(app: &App, p: &PatientId, sel: &Selection) -> Result<Value, FhirError> {
    let one = Selection { patients: Some([p.clone()].into()), ..sel.clone() };
    let found: u64 = app
        .catalog
        .all()
        .filter(|(m, _)| one.wants(p, *m))
        .map(|(m, _)| {
            app.store.estimate(&ReadRequest {
                patient: p.clone(),
                metric: m,
                device: None,
                from: sel.from,
                to: sel.to,
                rollups: false,
                max_points: usize::MAX,
                sources: false,
            })
        })
        .sum();
    if found > MAX_BUNDLE_OBSERVATIONS {
        return Err(FhirError::TooMany { found });
    }
    let mut devices = BTreeSet::new();
    let mut observations = Vec::new();
    let r = for_each_sample(&app.store, &one, |p, m, d, t, v| {
        if let Some(d) = d {
            devices.insert(d.clone());
        }
        observations.push(fhir::observation(app.catalog, p, m, d, t, v));
        Ok(())
    });
    if let Err(e) = r {
        return Err(match e.downcast::<StoreError>() {
            Ok(e) => FhirError::Store(e),
            Err(e) => FhirError::Store(StoreError::Failed(e.to_string())),
        });
    }
    let mut resources = vec![fhir::patient(p)];
    resources.extend(devices.iter().map(|d| fhir::device(d, p)));
    resources.extend(observations);
    Ok(fhir::bundle(resources, app.clock.now_ms()))
}

/// Writes the NDJSON files of `types` (`Patient.ndjson`, `Device.ndjson`,
/// `Observation.ndjson`, one resource per line) into `dir`; returns (type, file name,
/// resources) of each. `stop` is called with the observations so far every
/// [`PROGRESS_EVERY`]; when it answers true the export ends with an error (cancelled).
pub fn bulk(
    app: &App,
    dir: &Path,
    sel: &Selection,
    types: Types,
    stop: &dyn Fn(u64) -> bool,
) -> anyhow::Result<Vec<(&'static str, String, u64)>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let create = |name: &str| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(std::io::BufWriter::new(f))
    };
    let mut obs = if types.observation { Some(create("Observation.ndjson")?) } else { None };
    let mut n_obs = 0u64;
    let mut patients: BTreeSet<PatientId> = BTreeSet::new();
    let mut devices: BTreeMap<(PatientId, DeviceId), ()> = BTreeMap::new();
    for_each_sample(&app.store, sel, |p, m, d, t, v| {
        if !patients.contains(p) {
            patients.insert(p.clone());
        }
        if let Some(d) = d {
            devices.entry((p.clone(), d.clone())).or_default();
        }
        if let Some(obs) = obs.as_mut() {
            serde_json::to_writer(&mut *obs, &fhir::observation(app.catalog, p, m, d, t, v))?;
            obs.write_all(b"\n")?;
        }
        n_obs += 1;
        if n_obs.is_multiple_of(PROGRESS_EVERY) && stop(n_obs) {
            anyhow::bail!("cancelled");
        }
        Ok(())
    })?;
    stop(n_obs);
    let mut files = Vec::new();
    if let Some(mut obs) = obs {
        obs.flush()?;
        files.push(("Observation", "Observation.ndjson".to_owned(), n_obs));
    }
    if types.patient {
        let mut pat = create("Patient.ndjson")?;
        for p in &patients {
            serde_json::to_writer(&mut pat, &fhir::patient(p))?;
            pat.write_all(b"\n")?;
        }
        pat.flush()?;
        files.insert(0, ("Patient", "Patient.ndjson".to_owned(), patients.len() as u64));
    }
    if types.device {
        let mut dev = create("Device.ndjson")?;
        for (p, d) in devices.keys() {
            serde_json::to_writer(&mut dev, &fhir::device(d, p))?;
            dev.write_all(b"\n")?;
        }
        dev.flush()?;
        let at = usize::from(types.patient);
        files.insert(at, ("Device", "Device.ndjson".to_owned(), devices.len() as u64));
    }
    Ok(files)
}

/// [`bulk`] of every type into `dir`, then `manifest.json` (the `$export` output manifest,
/// with file names as URLs); returns the manifest (`vitals lake fhir`).
pub fn bulk_to_dir(app: &App, dir: &Path, sel: &Selection, request: &str) -> anyhow::Result<Value> {
    let started = app.clock.now_ms();
    let files = bulk(app, dir, sel, Types::ALL, &|_| false)?;
    let manifest = fhir::bulk_manifest(started, request, &files);
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}
