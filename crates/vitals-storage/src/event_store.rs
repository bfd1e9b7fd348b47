//! The event store: events of every patient in an append-only log (record format, magic
//! `VEVT`, JSON payloads), indexed in memory by patient and start time. Writing an event
//! with an existing id replaces it (re-sends are harmless). Durable when `put` returns.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use vitals_core::Event;

use crate::record::{self, Tail};
use crate::wal::sync_dir;

const MAGIC: [u8; 4] = *b"VEVT";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Default)]
struct Index {
    /// patient -> (start, id) -> event
    by_patient: HashMap<String, BTreeMap<(i64, String), Event>>,
    /// id -> (patient, start) to find what an id replaces
    by_id: HashMap<String, (String, i64)>,
}

impl Index {
    fn put(&mut self, e: Event) {
        if let Some((p, start)) = self.by_id.remove(&e.id)
            && let Some(m) = self.by_patient.get_mut(&p)
        {
            m.remove(&(start, e.id.clone()));
        }
        self.by_id.insert(e.id.clone(), (e.patient.clone(), e.start_ms));
        self.by_patient.entry(e.patient.clone()).or_default().insert((e.start_ms, e.id.clone()), e);
    }
}

#[derive(Debug)]
pub struct EventStore {
    path: PathBuf,
    file: Mutex<File>,
    index: parking_lot::RwLock<Index>,
}

impl EventStore {
    pub fn open(dir: &Path) -> Result<EventStore, EventStoreError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| EventStoreError::Io { path: p, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("events.log");
        let mut index = Index::default();
        match fs::read(&path) {
            Ok(bytes) => {
                let scan = record::scan(&bytes, MAGIC, VERSION)
                    .map_err(|e| EventStoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                for (offset, payload) in &scan.records {
                    let events: Vec<Event> = serde_json::from_slice(payload).map_err(|e| EventStoreError::Corrupt {
                        path: path.clone(),
                        reason: format!("record at offset {offset}: {e}"),
                    })?;
                    for e in events {
                        index.put(e);
                    }
                }
                match scan.tail {
                    Tail::Clean => {}
                    Tail::Torn { offset } => {
                        let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                        f.set_len(offset.max(record::HEADER_LEN as u64)).map_err(io(&path))?;
                    }
                    Tail::Corrupt { offset, reason } => {
                        return Err(EventStoreError::Corrupt { path, reason: format!("offset {offset}: {reason}") });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut f = File::create(&path).map_err(io(&path))?;
                f.write_all(&record::header(MAGIC, VERSION)).and_then(|()| f.sync_all()).map_err(io(&path))?;
                sync_dir(dir).map_err(io(dir))?;
            }
            Err(e) => return Err(EventStoreError::Io { path, source: e }),
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        Ok(EventStore { path, file: Mutex::new(file), index: parking_lot::RwLock::new(index) })
    }

    /// Stores events durably (one fsync), replacing events with the same id.
    pub fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_vec(&events)
            .map_err(|e| EventStoreError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        let mut buf = Vec::with_capacity(payload.len() + record::FRAME_LEN);
        record::encode(&mut buf, &payload);
        {
            let mut f = self.file.lock();
            f.write_all(&buf)
                .and_then(|()| f.sync_data())
                .map_err(|source| EventStoreError::Io { path: self.path.clone(), source })?;
        }
        let mut idx = self.index.write();
        for e in events {
            idx.put(e);
        }
        Ok(())
    }

    /// A patient's events overlapping `[from, to)`, by start time, optionally of one kind.
    pub fn query(&self, patient: &str, from: i64, to: i64, kind: Option<&str>) -> Vec<Event> {
        let idx = self.index.read();
        let Some(m) = idx.by_patient.get(patient) else { return Vec::new() };
        m.range(..(to, String::new()))
            .map(|(_, e)| e)
            .filter(|e| e.end_ms.max(e.start_ms) >= from && kind.is_none_or(|k| e.kind == k))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, start: i64, kind: &str) -> Event {
        Event {
            id: id.into(),
            patient: "p".into(),
            kind: kind.into(),
            start_ms: start,
            end_ms: start + 10,
            source: "test".into(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn events_are_upserted_by_id_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = EventStore::open(dir.path()).expect("open");
            s.put(vec![ev("a", 100, "sleep"), ev("b", 200, "workout")]).expect("put");
            s.put(vec![ev("a", 150, "sleep")]).expect("re-send moves it");
        }
        let s = EventStore::open(dir.path()).expect("reopen");
        let all = s.query("p", 0, 1000, None);
        assert_eq!(all.iter().map(|e| (e.id.as_str(), e.start_ms)).collect::<Vec<_>>(), vec![("a", 150), ("b", 200)]);
        assert_eq!(s.query("p", 0, 1000, Some("workout")).len(), 1);
        assert_eq!(s.query("p", 165, 1000, None).len(), 1, "an event ending before from is out");
        assert!(s.query("q", 0, 1000, None).is_empty());
    }
}
