//! Connections to vendor clouds: per patient and vendor, the account's credentials sealed
//! by the vault (never stored or shown in the clear) and the sync state (the cursor: the
//! newest reading stored; last attempt, success and error; when to try next). Kept in
//! `<data_dir>/connections/connections.log`, an append-only JSON log compacted as it
//! grows; in cluster mode, in the log every node shares (`store_log`), so any node shows
//! the state and the node owning the patient's bucket pulls.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_cloud::Vendor;
use vitals_storage::json_log::JsonLog;
use vitals_vault::SealedSecret;

use crate::store_log::{Applied, StoreLog};

/// Whether a connection is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    /// The vendor refused the credentials: nothing is tried until they change or a sync is asked.
    NeedsAttention,
}

/// How a connection's pulls have gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncState {
    pub status: Status,
    pub last_attempt_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    /// Why the last attempt failed (`None` after a success).
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the next pull is due (`None`: paused).
    pub next_attempt_ms: Option<i64>,
    /// The cursor: the newest reading stored from this connection.
    pub newest_ms: Option<i64>,
    /// Readings stored from this connection.
    pub readings: u64,
}

/// One patient's account at one vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub patient: String,
    pub vendor: Vendor,
    pub created_ms: i64,
    /// Who connected it (an actor id, as in the audit log).
    pub created_by: String,
    /// The vendor region given (not secret; shown).
    pub region: String,
    /// The credentials (`vitals_cloud::Credentials` as JSON), sealed by the vault.
    pub secret: SealedSecret,
    pub state: SyncState,
}

impl Connection {
    /// What the vault binds the sealed credentials to.
    pub fn context(patient: &str, vendor: Vendor) -> String {
        format!("connection/{patient}/{vendor}")
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Put(Connection),
    State { patient: String, vendor: Vendor, state: SyncState },
    Secret { patient: String, vendor: Vendor, secret: SealedSecret },
    Delete { patient: String, vendor: Vendor },
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("no {vendor} connection for {patient}")]
    NotFound { patient: String, vendor: Vendor },
    #[error("the connection store: {0}")]
    Io(String),
}

type Key = (String, Vendor);

pub struct ConnectionStore {
    connections: RwLock<BTreeMap<Key, Connection>>,
    log: Mutex<StoreLog>,
    /// Records written since the log was last compacted.
    written: Mutex<usize>,
}

/// Compact when the log holds this many records more than twice the connections.
const COMPACT_AFTER: usize = 2000;

impl ConnectionStore {
    pub fn open(dir: &Path) -> anyhow::Result<ConnectionStore> {
        let (log, changes) = JsonLog::open::<Change>(dir, "connections.log", *b"VCON", 1)?;
        let written = changes.len();
        let s = ConnectionStore {
            connections: RwLock::default(),
            log: Mutex::new(StoreLog::Local(log)),
            written: Mutex::new(written),
        };
        for c in changes {
            s.apply(Applied::Record(c));
        }
        Ok(s)
    }

    /// Cluster mode: the connections every node shares.
    pub fn open_shared(records: vitals_postgres::Records) -> anyhow::Result<ConnectionStore> {
        let log = Mutex::new(StoreLog::Shared { records, name: "connections", applied: 0 });
        let s = ConnectionStore { connections: RwLock::default(), log, written: Mutex::new(0) };
        s.log.lock().refresh(|a| s.apply(a)).map_err(|e| anyhow::anyhow!(e))?;
        Ok(s)
    }

    fn apply(&self, a: Applied<Change>) {
        let mut m = self.connections.write();
        match a {
            Applied::Reset => m.clear(),
            Applied::Record(Change::Put(c)) => {
                m.insert((c.patient.clone(), c.vendor), c);
            }
            Applied::Record(Change::State { patient, vendor, state }) => {
                if let Some(c) = m.get_mut(&(patient, vendor)) {
                    c.state = state;
                }
            }
            Applied::Record(Change::Secret { patient, vendor, secret }) => {
                if let Some(c) = m.get_mut(&(patient, vendor)) {
                    c.secret = secret;
                }
            }
            Applied::Record(Change::Delete { patient, vendor }) => {
                m.remove(&(patient, vendor));
            }
        }
    }

    /// Cluster mode: catches up with the other nodes' changes; a failure is logged.
    fn sync(&self) {
        self.log.lock().sync("connection store", |a| self.apply(a));
    }

    fn write(&self, change: Change) -> Result<(), ConnectionError> {
        let mut log = self.log.lock();
        log.refresh(|a| self.apply(a)).map_err(ConnectionError::Io)?;
        log.write(change, |a| self.apply(a)).map_err(ConnectionError::Io)?;
        let mut written = self.written.lock();
        *written += 1;
        let live = self.connections.read().len();
        if *written > COMPACT_AFTER + 2 * live {
            let snapshot: Vec<Change> = self.connections.read().values().cloned().map(Change::Put).collect();
            log.rewrite(&snapshot).map_err(ConnectionError::Io)?;
            *written = snapshot.len();
        }
        Ok(())
    }

    /// A patient's connections.
    pub fn of_patient(&self, patient: &str) -> Vec<Connection> {
        self.sync();
        self.connections.read().values().filter(|c| c.patient == patient).cloned().collect()
    }

    pub fn get(&self, patient: &str, vendor: Vendor) -> Option<Connection> {
        self.sync();
        self.connections.read().get(&(patient.to_owned(), vendor)).cloned()
    }

    /// Connections due at `now_ms` (active, their next attempt reached).
    pub fn due(&self, now_ms: i64) -> Vec<Connection> {
        self.sync();
        self.connections
            .read()
            .values()
            .filter(|c| c.state.status == Status::Active && c.state.next_attempt_ms.is_some_and(|t| t <= now_ms))
            .cloned()
            .collect()
    }

    /// Connects (or reconnects, with new credentials: the cursor is kept) an account.
    pub fn put(&self, c: Connection) -> Result<(), ConnectionError> {
        self.write(Change::Put(c))
    }

    pub fn set_state(&self, patient: &str, vendor: Vendor, state: SyncState) -> Result<(), ConnectionError> {
        if self.get(patient, vendor).is_none() {
            return Err(ConnectionError::NotFound { patient: patient.to_owned(), vendor });
        }
        self.write(Change::State { patient: patient.to_owned(), vendor, state })
    }

    pub fn set_secret(&self, patient: &str, vendor: Vendor, secret: SealedSecret) -> Result<(), ConnectionError> {
        if self.get(patient, vendor).is_none() {
            return Err(ConnectionError::NotFound { patient: patient.to_owned(), vendor });
        }
        self.write(Change::Secret { patient: patient.to_owned(), vendor, secret })
    }

    /// Forgets a connection and its credentials.
    pub fn delete(&self, patient: &str, vendor: Vendor) -> Result<(), ConnectionError> {
        if self.get(patient, vendor).is_none() {
            return Err(ConnectionError::NotFound { patient: patient.to_owned(), vendor });
        }
        self.write(Change::Delete { patient: patient.to_owned(), vendor })
    }

    /// Forgets every connection of a patient and rewrites the log without them (erasure);
    /// returns how many there were.
    pub fn erase_patient(&self, patient: &str) -> Result<usize, ConnectionError> {
        let mut log = self.log.lock();
        log.refresh(|a| self.apply(a)).map_err(ConnectionError::Io)?;
        let mut m = self.connections.write();
        let before = m.len();
        m.retain(|(p, _), _| p != patient);
        let erased = before - m.len();
        let snapshot: Vec<Change> = m.values().cloned().map(Change::Put).collect();
        log.rewrite(&snapshot).map_err(ConnectionError::Io)?;
        *self.written.lock() = snapshot.len();
        Ok(erased)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(patient: &str) -> Connection {
        Connection {
            patient: patient.into(),
            vendor: Vendor::DexcomShare,
            created_ms: 1,
            created_by: "user:1".into(),
            region: String::new(),
            secret: SealedSecret { key_id: "k1".into(), nonce: "n".into(), sealed: "s".into() },
            state: SyncState { next_attempt_ms: Some(10), ..SyncState::default() },
        }
    }

    #[test]
    fn connections_and_their_state_survive_a_reopen_and_the_log_is_compacted() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = ConnectionStore::open(dir.path()).expect("open");
        s.put(conn("p-1")).expect("put");
        s.put(conn("p-2")).expect("put");
        assert_eq!(s.due(10).len(), 2);
        assert!(s.due(9).is_empty());
        for i in 0..(COMPACT_AFTER as i64 + 10) {
            let state = SyncState { newest_ms: Some(i), next_attempt_ms: Some(i + 100), ..SyncState::default() };
            s.set_state("p-1", Vendor::DexcomShare, state).expect("state");
        }
        s.delete("p-2", Vendor::DexcomShare).expect("delete");
        assert!(s.delete("p-2", Vendor::DexcomShare).is_err());
        drop(s);
        let log_len = std::fs::metadata(dir.path().join("connections.log")).expect("log").len();
        assert!(log_len < 200_000, "compacted: {log_len} bytes");
        let s = ConnectionStore::open(dir.path()).expect("reopen");
        let c = s.get("p-1", Vendor::DexcomShare).expect("kept");
        assert_eq!(c.state.newest_ms, Some(COMPACT_AFTER as i64 + 9));
        assert!(s.get("p-2", Vendor::DexcomShare).is_none());
        assert_eq!(s.erase_patient("p-1").expect("erase"), 1);
        drop(s);
        assert!(ConnectionStore::open(dir.path()).expect("reopen").of_patient("p-1").is_empty());
    }
}
