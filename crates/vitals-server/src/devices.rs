//! Device telemetry: per device (not only per patient), when the server last heard from it
//! (its samples became durable here), its newest reading, how many readings, its last
//! battery level and radio signal, and the ways in it used. Fed on one node by the sink the
//! pipeline writes through, in cluster mode by the tail that writes the replicated log into
//! each node's store, so every node knows every device. Kept in memory and written to
//! `<data_dir>/devices/telemetry.json` every few seconds (written aside, synced, renamed),
//! so a restart does not forget when a device was last heard. The stale-device alarm
//! (`alerting`) reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use vitals_core::{Catalog, Clock, DeviceId, Event, MetricId, PatientId, Sample};
use vitals_storage::{Store, StoreError};

use crate::shutdown::Shutdown;
use crate::source::sink::{Done, EventSink, SampleSink};

/// A reading of a device's own state (battery, signal) and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub time_ms: i64,
    pub value: f64,
}

/// What the server knows of one device of one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub patient: String,
    pub device: String,
    /// When the server first and last heard from it (its readings became durable).
    pub first_heard_ms: i64,
    pub last_heard_ms: i64,
    /// The time of its newest reading.
    pub last_sample_ms: i64,
    pub samples: u64,
    pub battery: Option<Reading>,
    pub signal: Option<Reading>,
    /// The ways in its readings came through (`native`, `nightscout`, `fit`...).
    pub sources: BTreeSet<String>,
    /// While the stale-device alarm holds: when the device became stale (the alert's start).
    #[serde(default)]
    pub stale_since_ms: Option<i64>,
    /// Its firmware and model, as the newest `device_info` event said.
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// When that event was (its own time).
    #[serde(default)]
    pub described_ms: Option<i64>,
}

impl DeviceState {
    /// A device first heard at `now_ms`, its first reading (or description) at `at_ms`.
    fn new(patient: &str, device: &str, now_ms: i64, at_ms: i64) -> DeviceState {
        DeviceState {
            patient: patient.to_owned(),
            device: device.to_owned(),
            first_heard_ms: now_ms,
            last_heard_ms: now_ms,
            last_sample_ms: at_ms,
            samples: 0,
            battery: None,
            signal: None,
            sources: BTreeSet::new(),
            stale_since_ms: None,
            firmware: None,
            model: None,
            described_ms: None,
        }
    }
}

/// The newer of a reading kept and a new one (the new one on a tie: the last sent).
fn newest(kept: Option<Reading>, new: Reading) -> Reading {
    match kept {
        Some(k) if k.time_ms > new.time_ms => k,
        _ => new,
    }
}

/// What one batch of samples told of one device.
struct Seen {
    patient: PatientId,
    device: DeviceId,
    first_sample_ms: i64,
    last_sample_ms: i64,
    samples: u64,
    battery: Option<Reading>,
    signal: Option<Reading>,
    sources: BTreeSet<&'static str>,
}

/// What a batch of samples told of its devices ([`DeviceBook::summarize`]).
pub struct Heard(Vec<Seen>);

#[derive(Default, Serialize, Deserialize)]
struct Book {
    devices: BTreeMap<String, BTreeMap<String, DeviceState>>,
    #[serde(skip)]
    dirty: bool,
}

/// The device book (see the module's documentation).
pub struct DeviceBook {
    book: Mutex<Book>,
    path: PathBuf,
    /// When this process opened the book: it could hear devices only since.
    opened_ms: i64,
    battery: Option<MetricId>,
    signal: Option<MetricId>,
}

impl DeviceBook {
    /// Opens the book of a data directory at `now_ms` (empty when there is none yet; a
    /// damaged file is logged and started afresh: it only holds what the next readings tell
    /// again).
    pub fn open(data_dir: &Path, now_ms: i64) -> DeviceBook {
        let path = data_dir.join("devices").join("telemetry.json");
        let book = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Book>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "device telemetry unreadable; starting afresh");
                Book::default()
            }),
            Err(_) => Book::default(),
        };
        let catalog = Catalog::standard();
        DeviceBook {
            book: Mutex::new(book),
            path,
            opened_ms: now_ms,
            battery: catalog.id("battery_level"),
            signal: catalog.id("signal_strength"),
        }
    }

    /// When this process opened the book.
    pub fn opened_ms(&self) -> i64 {
        self.opened_ms
    }

    /// Notes durable samples heard at `now_ms`. Samples without a device are not a device's.
    pub fn heard(&self, samples: &[Sample], now_ms: i64) {
        self.note(self.summarize(samples), now_ms);
    }

    /// What samples tell of their devices, one entry per device: taken before the samples
    /// are handed to the store (no copy of them is kept) and noted once they are durable.
    pub fn summarize(&self, samples: &[Sample]) -> Heard {
        let mut seen: HashMap<(&PatientId, &DeviceId), Seen> = HashMap::new();
        for s in samples {
            let Some(device) = &s.device else { continue };
            let d = seen.entry((&s.patient, device)).or_insert_with(|| Seen {
                patient: s.patient.clone(),
                device: device.clone(),
                first_sample_ms: s.time_ms,
                last_sample_ms: s.time_ms,
                samples: 0,
                battery: None,
                signal: None,
                sources: BTreeSet::new(),
            });
            d.first_sample_ms = d.first_sample_ms.min(s.time_ms);
            d.last_sample_ms = d.last_sample_ms.max(s.time_ms);
            d.samples += 1;
            let reading = Reading { time_ms: s.time_ms, value: s.value };
            if Some(s.metric) == self.battery {
                d.battery = Some(newest(d.battery, reading));
            }
            if Some(s.metric) == self.signal {
                d.signal = Some(newest(d.signal, reading));
            }
            if let Some(name) = s.source.name() {
                d.sources.insert(name);
            }
        }
        Heard(seen.into_values().collect())
    }

    /// Notes what [`summarize`](Self::summarize) found, heard at `now_ms`.
    pub fn note(&self, heard: Heard, now_ms: i64) {
        if heard.0.is_empty() {
            return;
        }
        let mut book = self.book.lock();
        for h in heard.0 {
            let devices = book.devices.entry(h.patient.as_str().to_owned()).or_default();
            let d = devices
                .entry(h.device.as_str().to_owned())
                .or_insert_with(|| DeviceState::new(h.patient.as_str(), h.device.as_str(), now_ms, h.first_sample_ms));
            d.last_heard_ms = d.last_heard_ms.max(now_ms);
            d.last_sample_ms = d.last_sample_ms.max(h.last_sample_ms);
            d.samples += h.samples;
            if let Some(r) = h.battery {
                d.battery = Some(newest(d.battery, r));
            }
            if let Some(r) = h.signal {
                d.signal = Some(newest(d.signal, r));
            }
            for name in h.sources {
                if !d.sources.contains(name) {
                    d.sources.insert(name.to_owned());
                }
            }
        }
        book.dirty = true;
    }

    /// Notes what durable `device_info` events say of devices (firmware, model): the newest
    /// by its own time wins. A device not heard yet is noted as heard at `now_ms`.
    pub fn described(&self, events: &[Event], now_ms: i64) {
        let mut book = self.book.lock();
        for e in events.iter().filter(|e| e.kind == vitals_ingest::fit::DEVICE_INFO) {
            let Some(device) = e.attributes.get("device").and_then(serde_json::Value::as_str) else { continue };
            let text = |k: &str| e.attributes.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
            let d = book.devices.entry(e.patient.clone()).or_default().entry(device.to_owned()).or_insert_with(|| {
                let mut d = DeviceState::new(&e.patient, device, now_ms, e.start_ms);
                d.sources.insert(e.source.clone());
                d
            });
            if d.described_ms.is_none_or(|t| t <= e.start_ms) {
                d.described_ms = Some(e.start_ms);
                d.firmware = text("firmware").or(d.firmware.take());
                d.model = text("model").or(d.model.take());
            }
        }
        book.dirty = true;
    }

    /// The devices of `patient`, or of everyone, ordered by patient and device.
    pub fn list(&self, patient: Option<&str>) -> Vec<DeviceState> {
        let book = self.book.lock();
        match patient {
            Some(p) => book.devices.get(p).map(|d| d.values().cloned().collect()).unwrap_or_default(),
            None => book.devices.values().flat_map(|d| d.values().cloned()).collect(),
        }
    }

    /// Records that a device's stale alarm holds since `since`, or no longer holds.
    pub fn set_stale(&self, patient: &str, device: &str, since: Option<i64>) {
        let mut book = self.book.lock();
        if let Some(d) = book.devices.get_mut(patient).and_then(|d| d.get_mut(device))
            && d.stale_since_ms != since
        {
            d.stale_since_ms = since;
            book.dirty = true;
        }
    }

    /// Forgets a patient's devices (erasure).
    pub fn erase_patient(&self, patient: &str) {
        let mut book = self.book.lock();
        if book.devices.remove(patient).is_some() {
            book.dirty = true;
        }
    }

    /// Writes the book if it changed since the last save.
    pub fn save_if_changed(&self) -> std::io::Result<()> {
        let bytes = {
            let mut book = self.book.lock();
            if !book.dirty {
                return Ok(());
            }
            book.dirty = false;
            serde_json::to_vec(&*book).map_err(std::io::Error::other)?
        };
        let saved = (|| {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(".telemetry.json.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if saved.is_err() {
            self.book.lock().dirty = true;
        }
        saved
    }
}

/// How often the book is written when it changed.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes the book every [`SAVE_EVERY`] when it changed, and once more at shutdown.
pub fn spawn_saver(book: Arc<DeviceBook>, shutdown: Shutdown) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("vitals-devices".into()).spawn(move || {
        loop {
            let stop = shutdown.wait_timeout(SAVE_EVERY);
            if let Err(e) = book.save_if_changed() {
                tracing::error!(error = %e, "device telemetry: saving");
            }
            if stop {
                return;
            }
        }
    })
}

/// The store as the pipeline's sink, noting in the device book what became durable.
pub struct BookedStore {
    pub store: Arc<Store>,
    pub book: Arc<DeviceBook>,
    pub clock: Arc<dyn Clock>,
}

impl SampleSink for BookedStore {
    fn submit(&self, samples: Vec<Sample>, done: Done) -> Result<(), StoreError> {
        // One entry per device, not a copy of the samples, waits for durability.
        let heard = self.book.summarize(&samples);
        let (book, clock) = (self.book.clone(), self.clock.clone());
        self.store.submit(
            samples,
            Box::new(move |r: Result<u64, StoreError>| {
                if r.is_ok() {
                    book.note(heard, clock.now_ms());
                }
                done(r)
            }),
        )
    }
}

/// The event store as the pipeline's event sink, noting in the device book what
/// `device_info` events say once they are durable.
pub struct BookedEvents {
    pub events: Arc<vitals_storage::event_store::EventStore>,
    pub book: Arc<DeviceBook>,
    pub clock: Arc<dyn Clock>,
}

impl EventSink for BookedEvents {
    fn put_events(&self, events: Vec<Event>) -> Result<(), String> {
        let infos: Vec<Event> = events.iter().filter(|e| e.kind == vitals_ingest::fit::DEVICE_INFO).cloned().collect();
        self.events.put(events).map_err(|e| e.to_string())?;
        if !infos.is_empty() {
            self.book.described(&infos, self.clock.now_ms());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use vitals_core::{DeviceId, PatientId, Source};

    use super::*;

    fn sample(p: &str, metric: &str, device: Option<&str>, t: i64, v: f64) -> Sample {
        Sample {
            patient: PatientId::new(p).expect("p"),
            metric: Catalog::standard().id(metric).expect("metric"),
            time_ms: t,
            value: v,
            device: device.map(|d| DeviceId::new(d).expect("d")),
            id: None,
            source: Source::Nightscout,
        }
    }

    #[test]
    fn devices_are_heard_kept_across_reopen_and_erased() {
        let dir = tempfile::tempdir().expect("tmp");
        let book = DeviceBook::open(dir.path(), 0);
        book.heard(
            &[
                sample("p-1", "blood_glucose", Some("cgm"), 1_000, 100.0),
                sample("p-1", "battery_level", Some("cgm"), 2_000, 80.0),
                sample("p-1", "battery_level", Some("cgm"), 1_500, 90.0),
                sample("p-1", "heart_rate", None, 3_000, 60.0),
                sample("p-2", "signal_strength", Some("band"), 500, -70.0),
            ],
            10_000,
        );
        book.heard(&[sample("p-1", "blood_glucose", Some("cgm"), 900, 99.0)], 20_000);
        let cgm = &book.list(Some("p-1"))[0];
        assert_eq!(
            (cgm.first_heard_ms, cgm.last_heard_ms, cgm.last_sample_ms, cgm.samples),
            (10_000, 20_000, 2_000, 4)
        );
        assert_eq!(cgm.battery, Some(Reading { time_ms: 2_000, value: 80.0 }), "the newest reading, not the last sent");
        assert_eq!(cgm.sources, BTreeSet::from(["nightscout".to_owned()]));
        assert_eq!(book.list(None).len(), 2);
        // Firmware and model: the newest description by its own time wins, whatever the order.
        let info = |t: i64, firmware: &str| Event {
            id: format!("d-{t}"),
            patient: "p-1".into(),
            kind: vitals_ingest::fit::DEVICE_INFO.into(),
            start_ms: t,
            end_ms: t,
            source: "fit".into(),
            attributes: [("device", "cgm"), ("firmware", firmware), ("model", "G7")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                .collect(),
        };
        book.described(&[info(5_000, "2.0"), info(4_000, "1.9")], 30_000);
        let cgm = &book.list(Some("p-1"))[0];
        assert_eq!(
            (cgm.firmware.as_deref(), cgm.model.as_deref(), cgm.last_heard_ms),
            (Some("2.0"), Some("G7"), 20_000)
        );
        book.save_if_changed().expect("save");
        let again = DeviceBook::open(dir.path(), 0);
        assert_eq!(again.list(None), book.list(None));
        again.erase_patient("p-1");
        again.save_if_changed().expect("save");
        assert_eq!(DeviceBook::open(dir.path(), 0).list(None).len(), 1);
    }
}
