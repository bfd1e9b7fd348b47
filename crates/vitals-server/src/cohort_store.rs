//! Cohorts: named groups of patients (a ward, a study arm, "my family"), which rule scopes
//! (`{"cohort": "ward-3"}`) and notification subscriptions (`cohorts = [...]`) refer to.
//! Kept in `<data_dir>/cohorts/cohorts.log`, an append-only JSON log of puts and deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_storage::json_log::JsonLog;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Put { name: String, patients: BTreeSet<String> },
    Delete(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error("{0}")]
    Invalid(String),
    #[error("no cohort {0:?}")]
    NotFound(String),
    #[error("the cohort store: {0}")]
    Io(String),
}

pub struct CohortStore {
    cohorts: RwLock<BTreeMap<String, BTreeSet<String>>>,
    log: Mutex<JsonLog>,
    /// Bumped on every change, so readers notice cheaply.
    version: AtomicU64,
}

impl CohortStore {
    pub fn open(dir: &Path) -> anyhow::Result<CohortStore> {
        let (log, changes) = JsonLog::open::<Change>(dir, "cohorts.log", *b"VCOH", 1)?;
        let mut cohorts = BTreeMap::new();
        for c in changes {
            match c {
                Change::Put { name, patients } => {
                    cohorts.insert(name, patients);
                }
                Change::Delete(name) => {
                    cohorts.remove(&name);
                }
            }
        }
        Ok(CohortStore { cohorts: RwLock::new(cohorts), log: Mutex::new(log), version: AtomicU64::new(0) })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn list(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.cohorts.read().clone()
    }

    pub fn members(&self, name: &str) -> Option<BTreeSet<String>> {
        self.cohorts.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str, patient: &str) -> bool {
        self.cohorts.read().get(name).is_some_and(|m| m.contains(patient))
    }

    /// Creates or replaces a cohort; returns whether it is new.
    pub fn put(&self, name: &str, patients: BTreeSet<String>) -> Result<bool, CohortError> {
        vitals_core::PatientId::new(name).map_err(|e| CohortError::Invalid(format!("cohort name {name:?}: {e}")))?;
        for p in &patients {
            vitals_core::PatientId::new(p).map_err(|e| CohortError::Invalid(format!("patient {p:?}: {e}")))?;
        }
        let mut c = self.cohorts.write();
        self.log
            .lock()
            .append(&Change::Put { name: name.to_owned(), patients: patients.clone() })
            .map_err(|e| CohortError::Io(e.to_string()))?;
        let new = c.insert(name.to_owned(), patients).is_none();
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(new)
    }

    /// Takes a patient out of every cohort and rewrites the log without them; returns the
    /// number of cohorts changed.
    pub fn erase_patient(&self, patient: &str) -> Result<usize, CohortError> {
        let mut c = self.cohorts.write();
        let mut changed = 0;
        for members in c.values_mut() {
            changed += usize::from(members.remove(patient));
        }
        let snapshot: Vec<Change> =
            c.iter().map(|(name, patients)| Change::Put { name: name.clone(), patients: patients.clone() }).collect();
        self.log.lock().rewrite(&snapshot).map_err(|e| CohortError::Io(e.to_string()))?;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(changed)
    }

    pub fn delete(&self, name: &str) -> Result<(), CohortError> {
        let mut c = self.cohorts.write();
        if !c.contains_key(name) {
            return Err(CohortError::NotFound(name.to_owned()));
        }
        self.log.lock().append(&Change::Delete(name.to_owned())).map_err(|e| CohortError::Io(e.to_string()))?;
        c.remove(name);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohorts_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = CohortStore::open(dir.path()).expect("open");
        assert!(s.put("ward-3", ["p-1".to_owned(), "p-2".to_owned()].into()).expect("put"));
        assert!(s.put("family", ["p-9".to_owned()].into()).expect("put"));
        assert!(!s.put("ward-3", ["p-1".to_owned()].into()).expect("replace"));
        s.delete("family").expect("delete");
        assert!(matches!(s.put("bad name", BTreeSet::new()), Err(CohortError::Invalid(_))));
        assert!(s.version() >= 4);
        drop(s);
        let s = CohortStore::open(dir.path()).expect("reopen");
        assert_eq!(s.list().len(), 1);
        assert!(s.contains("ward-3", "p-1") && !s.contains("ward-3", "p-2"));
    }
}
