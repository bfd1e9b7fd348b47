//! The event store: events of every patient in an append-only log (record format, magic
//! `VEVT`, JSON payloads), indexed in memory by patient and start time. Writing an event
//! with an id the same patient already has replaces it (re-sends are harmless); ids are
//! the patient's own, so one patient's event never replaces another's. Durable when `put`
//! returns. Documents (events whose kind names a collection, `nightscout/entries`: many,
//! and read only by time) are handed to the [`DocumentStore`] beside the log instead and
//! never held in memory: `query` does not see them, `documents()` reads them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use parking_lot::Mutex;
use vitals_core::Event;

use crate::documents::{DocumentError, DocumentStore, is_document};
use crate::json_log::{JsonLog, JsonLogError};

const MAGIC: [u8; 4] = *b"VEVT";
const VERSION: u32 = 1;

/// What went wrong storing events.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error(transparent)]
    Log(#[from] JsonLogError),
    #[error(transparent)]
    Documents(#[from] DocumentError),
}

#[derive(Debug, Default)]
struct Index {
    /// patient -> (start, id) -> event
    by_patient: HashMap<String, BTreeMap<(i64, String), Event>>,
    /// (patient, id) -> start, to find what an event replaces
    by_id: HashMap<(String, String), i64>,
}

impl Index {
    fn put(&mut self, e: Event) {
        let key = (e.patient.clone(), e.id.clone());
        if let Some(start) = self.by_id.remove(&key)
            && let Some(m) = self.by_patient.get_mut(&e.patient)
        {
            m.remove(&(start, e.id.clone()));
        }
        self.by_id.insert(key, e.start_ms);
        self.by_patient.entry(e.patient.clone()).or_default().insert((e.start_ms, e.id.clone()), e);
    }
}

#[derive(Debug)]
pub struct EventStore {
    log: Mutex<JsonLog>,
    index: parking_lot::RwLock<Index>,
    documents: DocumentStore,
}

impl EventStore {
    pub fn open(dir: &Path) -> Result<EventStore, EventStoreError> {
        let (log, records) = JsonLog::open::<Vec<Event>>(dir, "events.log", MAGIC, VERSION)?;
        let mut index = Index::default();
        for e in records.into_iter().flatten() {
            index.put(e);
        }
        let documents = DocumentStore::open(dir)?;
        Ok(EventStore { log: Mutex::new(log), index: parking_lot::RwLock::new(index), documents })
    }

    /// The documents kept beside the events.
    pub fn documents(&self) -> &DocumentStore {
        &self.documents
    }

    /// Stores events durably (one fsync), replacing events with the same id; documents go
    /// to the document store (one transaction).
    pub fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError> {
        let (docs, events): (Vec<Event>, Vec<Event>) = events.into_iter().partition(|e| is_document(&e.kind));
        self.documents.put(&docs)?;
        if events.is_empty() {
            return Ok(());
        }
        self.log.lock().append(&events)?;
        let mut idx = self.index.write();
        for e in events {
            idx.put(e);
        }
        Ok(())
    }

    /// Removes every event of a patient and rewrites the log without them (so no earlier
    /// record holds them); returns how many were removed.
    pub fn erase_patient(&self, patient: &str) -> Result<usize, EventStoreError> {
        let documents = self.documents.erase_patient(patient)?;
        Ok(documents + self.erase_events(patient)?)
    }

    fn erase_events(&self, patient: &str) -> Result<usize, EventStoreError> {
        let mut log = self.log.lock();
        let mut idx = self.index.write();
        let Some(gone) = idx.by_patient.remove(patient) else { return Ok(0) };
        for (_, id) in gone.keys() {
            idx.by_id.remove(&(patient.to_owned(), id.clone()));
        }
        let rest: Vec<Event> = idx.by_patient.values().flat_map(|m| m.values().cloned()).collect();
        let chunks: Vec<&[Event]> = rest.chunks(1000).collect();
        log.rewrite(&chunks)?;
        Ok(gone.len())
    }

    /// Every patient with at least one event.
    pub fn patients(&self) -> Vec<String> {
        self.index.read().by_patient.keys().cloned().collect()
    }

    /// A patient's event or document by its id.
    pub fn get(&self, patient: &str, id: &str) -> Result<Option<Event>, EventStoreError> {
        let idx = self.index.read();
        if let Some(start) = idx.by_id.get(&(patient.to_owned(), id.to_owned()))
            && let Some(e) = idx.by_patient.get(patient).and_then(|m| m.get(&(*start, id.to_owned())))
        {
            return Ok(Some(e.clone()));
        }
        drop(idx);
        Ok(self.documents.get(patient, id)?)
    }

    /// A patient's events and documents with these ids (those that exist): one lookup in
    /// memory per id, one query for the documents.
    pub fn get_many(&self, patient: &str, ids: &[&str]) -> Result<Vec<Event>, EventStoreError> {
        let mut found = Vec::new();
        let mut rest = Vec::new();
        {
            let idx = self.index.read();
            for id in ids {
                let key = (patient.to_owned(), (*id).to_owned());
                match idx.by_id.get(&key).and_then(|start| idx.by_patient.get(patient)?.get(&(*start, key.1.clone()))) {
                    Some(e) => found.push(e.clone()),
                    None => rest.push(*id),
                }
            }
        }
        found.extend(self.documents.get_many(patient, &rest)?);
        Ok(found)
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
    fn an_id_is_the_patients_own_so_another_patient_cannot_replace_an_event() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = EventStore::open(dir.path()).expect("open");
        let theirs =
            |patient: &str, start| Event { patient: patient.into(), ..ev("treatment-abc", start, "treatment") };
        s.put(vec![theirs("a", 100)]).expect("a's");
        s.put(vec![theirs("b", 500)]).expect("b's, with the same id");
        assert_eq!(s.query("a", 0, 1000, None).iter().map(|e| e.start_ms).collect::<Vec<_>>(), vec![100]);
        assert_eq!(s.query("b", 0, 1000, None).iter().map(|e| e.start_ms).collect::<Vec<_>>(), vec![500]);
        s.put(vec![theirs("b", 600)]).expect("b replaces its own");
        drop(s);
        let s = EventStore::open(dir.path()).expect("reopen");
        assert_eq!(s.query("a", 0, 1000, None).len(), 1);
        assert_eq!(s.query("b", 0, 1000, None).iter().map(|e| e.start_ms).collect::<Vec<_>>(), vec![600]);
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

    #[test]
    fn erasing_a_patient_rewrites_the_log_without_their_events() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = EventStore::open(dir.path()).expect("open");
        let mut other = ev("c", 5, "sleep");
        other.patient = "keep-me".into();
        s.put(vec![ev("a", 100, "sleep-of-erased"), other]).expect("put");
        assert_eq!(s.erase_patient("p").expect("erase"), 1);
        assert_eq!(s.erase_patient("p").expect("again"), 0);
        let bytes = std::fs::read(dir.path().join("events.log")).expect("read");
        assert!(!bytes.windows(14).any(|w| w == b"sleep-of-erase"), "no trace in the file");
        drop(s);
        let s = EventStore::open(dir.path()).expect("reopen");
        assert!(s.query("p", 0, 1000, None).is_empty());
        assert_eq!(s.query("keep-me", 0, 1000, None).len(), 1);
    }
}
