//! Cohorts: named groups of patients (a ward, a study arm, "my family"), which rule scopes
//! (`{"cohort": "ward-3"}`) and notification subscriptions (`cohorts = [...]`) refer to.
//! Kept in `<data_dir>/cohorts/cohorts.log`, an append-only JSON log of puts and deletes;
//! in cluster mode, in the log every node shares (`store_log`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_storage::json_log::JsonLog;

use crate::store_log::{Applied, StoreLog};

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
    log: Mutex<StoreLog>,
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
        let log = Mutex::new(StoreLog::Local(log));
        Ok(CohortStore { cohorts: RwLock::new(cohorts), log, version: AtomicU64::new(0) })
    }

    /// Cluster mode: the cohorts every node shares.
    pub fn open_shared(records: vitals_postgres::Records) -> anyhow::Result<CohortStore> {
        let log = Mutex::new(StoreLog::Shared { records, name: "cohorts", applied: 0 });
        let s = CohortStore { cohorts: RwLock::default(), log, version: AtomicU64::new(0) };
        s.refresh(&mut s.log.lock()).map_err(|e| anyhow::anyhow!(e))?;
        Ok(s)
    }

    /// Applies the shared log's new records (cluster mode), bumping the version if any.
    fn refresh(&self, log: &mut StoreLog) -> Result<(), String> {
        log.refresh(|a| self.apply(a))
    }

    /// Cluster mode: catches up with the other nodes' changes; a failure is logged.
    fn sync(&self) {
        self.log.lock().sync("cohort store", |a| self.apply(a));
    }

    fn apply(&self, a: Applied<Change>) {
        let mut c = self.cohorts.write();
        match a {
            Applied::Reset => c.clear(),
            Applied::Record(Change::Put { name, patients }) => {
                c.insert(name, patients);
            }
            Applied::Record(Change::Delete(name)) => {
                c.remove(&name);
            }
        }
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn version(&self) -> u64 {
        self.sync();
        self.version.load(Ordering::Acquire)
    }

    pub fn list(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.sync();
        self.cohorts.read().clone()
    }

    pub fn members(&self, name: &str) -> Option<BTreeSet<String>> {
        self.sync();
        self.cohorts.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str, patient: &str) -> bool {
        self.sync();
        self.cohorts.read().get(name).is_some_and(|m| m.contains(patient))
    }

    /// Creates or replaces a cohort; returns whether it is new.
    pub fn put(&self, name: &str, patients: BTreeSet<String>) -> Result<bool, CohortError> {
        vitals_core::PatientId::new(name).map_err(|e| CohortError::Invalid(format!("cohort name {name:?}: {e}")))?;
        for p in &patients {
            vitals_core::PatientId::new(p).map_err(|e| CohortError::Invalid(format!("patient {p:?}: {e}")))?;
        }
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(CohortError::Io)?;
        let new = !self.cohorts.read().contains_key(name);
        log.write(Change::Put { name: name.to_owned(), patients }, |a| self.apply(a)).map_err(CohortError::Io)?;
        Ok(new)
    }

    /// Takes a patient out of every cohort and rewrites the log without them; returns the
    /// number of cohorts changed.
    pub fn erase_patient(&self, patient: &str) -> Result<usize, CohortError> {
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(CohortError::Io)?;
        let mut c = self.cohorts.write();
        let mut changed = 0;
        for members in c.values_mut() {
            changed += usize::from(members.remove(patient));
        }
        let snapshot: Vec<Change> =
            c.iter().map(|(name, patients)| Change::Put { name: name.clone(), patients: patients.clone() }).collect();
        log.rewrite(&snapshot).map_err(CohortError::Io)?;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(changed)
    }

    pub fn delete(&self, name: &str) -> Result<(), CohortError> {
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(CohortError::Io)?;
        if !self.cohorts.read().contains_key(name) {
            return Err(CohortError::NotFound(name.to_owned()));
        }
        log.write(Change::Delete(name.to_owned()), |a| self.apply(a)).map_err(CohortError::Io)
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
