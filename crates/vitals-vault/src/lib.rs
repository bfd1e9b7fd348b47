//! The identity vault: who a pseudonym is, encrypted at rest, apart from everything else.
//!
//! Patients' identifying data (name, date of birth, contacts, external ids such as a
//! hospital number) lives only here, in its own SQLite file (`vault/identity.sqlite`), each
//! record sealed with AES-256-GCM under a key the vault never stores: it comes from a key
//! file or an environment variable ([`Keyring`]). The pseudonym and the key id are bound to
//! each ciphertext as associated data, so a record cannot be moved to another patient.
//! Physiological data, the lake, logs and everything an analyst reaches hold the pseudonym
//! only.
//!
//! Key rotation: add a new key at the top of the key file (it becomes the primary key; the
//! older keys stay for reading), run [`Vault::rotate`] to re-seal every record under it,
//! then remove the old key. A per-key check value tells a wrong key ("this is not the key
//! that sealed the vault") from a damaged record.

mod keyring;

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use keyring::{KEY_ENV, Keyring};

/// What the check value of each key decrypts to.
const CHECK_PLAINTEXT: &[u8] = b"vitals identity vault key check v1";

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("identity vault {path}: {source}")]
    Db { path: String, source: rusqlite::Error },
    #[error("vault key: {0}")]
    Key(String),
    #[error(
        "the identity vault was sealed with key {id:?}, which is not in the key ring (key file or {KEY_ENV}); \
         without it those records cannot be read"
    )]
    MissingKey { id: String },
    #[error("wrong key for key id {id:?}: it does not open this vault's records sealed with {id:?}")]
    WrongKey { id: String },
    #[error("the identity record of {patient} is damaged or was altered (authentication failed)")]
    Damaged { patient: String },
    #[error("identity record: {0}")]
    Invalid(String),
}

/// A patient's identifying data. Every field is optional; empty fields are not stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ISO 8601 date (`1984-03-09`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<ContactPoint>,
    /// External identifiers by system, e.g. `{"mrn": "H-123456"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// One way to reach a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPoint {
    /// `phone`, `email`, `address`, ...
    pub kind: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Identity {
    /// Checks sizes and formats (records are small; this bounds what a client can store).
    pub fn validate(&self) -> Result<(), VaultError> {
        let bad = |m: String| Err(VaultError::Invalid(m));
        let short = |what: &str, s: &str, max: usize| {
            if s.len() > max { Err(VaultError::Invalid(format!("{what} is longer than {max} bytes"))) } else { Ok(()) }
        };
        if let Some(n) = &self.name {
            short("name", n, 200)?;
        }
        if let Some(d) = &self.date_of_birth {
            let ok = d.len() == 10
                && d.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            if !ok {
                return bad(format!("date_of_birth {d:?} is not a date like 1984-03-09"));
            }
        }
        if self.contacts.len() > 20 {
            return bad("at most 20 contacts".into());
        }
        for c in &self.contacts {
            short("a contact kind", &c.kind, 40)?;
            short("a contact value", &c.value, 400)?;
        }
        if self.external_ids.len() > 20 {
            return bad("at most 20 external ids".into());
        }
        for (k, v) in &self.external_ids {
            short("an external id system", k, 40)?;
            short("an external id", v, 200)?;
        }
        if let Some(n) = &self.notes {
            short("notes", n, 4000)?;
        }
        Ok(())
    }
}

/// The vault over its SQLite file.
pub struct Vault {
    path: String,
    conn: Mutex<Connection>,
    keys: Keyring,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).field("primary_key", &self.keys.primary_id()).finish()
    }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(&(*key).into())
}

fn random_nonce() -> Result<[u8; 12], VaultError> {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).map_err(|e| VaultError::Key(format!("no randomness available: {e}")))?;
    Ok(n)
}

fn aad(patient: &str, key_id: &str) -> Vec<u8> {
    format!("vitals-identity\0{patient}\0{key_id}").into_bytes()
}

impl Vault {
    /// Opens (creating if needed) the vault at `path` and checks that the key ring opens it.
    pub fn open(path: &Path, keys: Keyring) -> Result<Vault, VaultError> {
        let p = path.display().to_string();
        let db = |source| VaultError::Db { path: p.clone(), source };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        // Deleted records are overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", true).map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, nonce BLOB NOT NULL, check_value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS identities (
                 patient TEXT PRIMARY KEY, key_id TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL,
                 updated_ms INTEGER NOT NULL);",
        )
        .map_err(db)?;
        let vault = Vault { path: p, conn: Mutex::new(conn), keys };
        vault.check_keys()?;
        Ok(vault)
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> VaultError + '_ {
        |source| VaultError::Db { path: self.path.clone(), source }
    }

    /// Every key id that seals a record must be in the ring and be the right key.
    fn check_keys(&self) -> Result<(), VaultError> {
        let c = self.conn.lock();
        let mut s = c.prepare("SELECT id, nonce, check_value FROM keys").map_err(self.db())?;
        let known: Vec<(String, Vec<u8>, Vec<u8>)> = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.db())?;
        let mut used = c.prepare("SELECT DISTINCT key_id FROM identities").map_err(self.db())?;
        let used: Vec<String> =
            used.query_map([], |r| r.get(0)).map_err(self.db())?.collect::<rusqlite::Result<_>>().map_err(self.db())?;
        for id in &used {
            if self.keys.get(id).is_none() {
                return Err(VaultError::MissingKey { id: id.clone() });
            }
        }
        for (id, nonce, check) in known {
            let Some(key) = self.keys.get(&id) else { continue };
            let nonce = Nonce::try_from(nonce.as_slice()).map_err(|_| VaultError::WrongKey { id: id.clone() })?;
            let opened = cipher(key).decrypt(&nonce, Payload { msg: &check, aad: id.as_bytes() });
            if opened.as_deref() != Ok(CHECK_PLAINTEXT) {
                return Err(VaultError::WrongKey { id });
            }
        }
        Ok(())
    }

    /// Records the primary key's check value the first time it seals something.
    fn ensure_check(&self, c: &Connection) -> Result<(), VaultError> {
        let (id, key) = self.keys.primary();
        let have = c.query_row("SELECT 1 FROM keys WHERE id = ?1", [id], |_| Ok(())).optional().map_err(self.db())?;
        if have.is_none() {
            let nonce = random_nonce()?;
            let check = cipher(key)
                .encrypt(&nonce.into(), Payload { msg: CHECK_PLAINTEXT, aad: id.as_bytes() })
                .map_err(|_| VaultError::Key("sealing the key check".into()))?;
            c.execute("INSERT INTO keys (id, nonce, check_value) VALUES (?1, ?2, ?3)", params![id, &nonce[..], check])
                .map_err(self.db())?;
        }
        Ok(())
    }

    fn seal(&self, patient: &str, identity: &Identity) -> Result<(String, [u8; 12], Vec<u8>), VaultError> {
        let (id, key) = self.keys.primary();
        let plain = serde_json::to_vec(identity).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let nonce = random_nonce()?;
        let sealed = cipher(key)
            .encrypt(&nonce.into(), Payload { msg: &plain, aad: &aad(patient, id) })
            .map_err(|_| VaultError::Key("sealing a record".into()))?;
        Ok((id.to_owned(), nonce, sealed))
    }

    fn open_record(&self, patient: &str, key_id: &str, nonce: &[u8], sealed: &[u8]) -> Result<Identity, VaultError> {
        let key = self.keys.get(key_id).ok_or_else(|| VaultError::MissingKey { id: key_id.to_owned() })?;
        let damaged = || VaultError::Damaged { patient: patient.to_owned() };
        let nonce = Nonce::try_from(nonce).map_err(|_| damaged())?;
        let plain =
            cipher(key).decrypt(&nonce, Payload { msg: sealed, aad: &aad(patient, key_id) }).map_err(|_| damaged())?;
        serde_json::from_slice(&plain).map_err(|_| damaged())
    }

    /// Stores (replacing) a patient's identity.
    pub fn put(&self, patient: &str, identity: &Identity, now_ms: i64) -> Result<(), VaultError> {
        identity.validate()?;
        let (key_id, nonce, sealed) = self.seal(patient, identity)?;
        let c = self.conn.lock();
        self.ensure_check(&c)?;
        c.execute(
            "INSERT INTO identities (patient, key_id, nonce, sealed, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (patient) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             sealed = excluded.sealed, updated_ms = excluded.updated_ms",
            params![patient, key_id, &nonce[..], sealed, now_ms],
        )
        .map_err(self.db())?;
        Ok(())
    }

    /// A patient's identity, if recorded.
    pub fn get(&self, patient: &str) -> Result<Option<Identity>, VaultError> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = {
            let c = self.conn.lock();
            c.query_row("SELECT key_id, nonce, sealed FROM identities WHERE patient = ?1", [patient], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(self.db())?
        };
        row.map(|(k, n, s)| self.open_record(patient, &k, &n, &s)).transpose()
    }

    /// Removes a patient's identity (erasure); the freed pages are zeroed.
    pub fn delete(&self, patient: &str) -> Result<bool, VaultError> {
        let c = self.conn.lock();
        let n = c.execute("DELETE FROM identities WHERE patient = ?1", [patient]).map_err(self.db())?;
        // Move the deleted content out of the write-ahead log into the (zeroed) main file.
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(self.db())?;
        Ok(n > 0)
    }

    /// Number of identity records.
    pub fn len(&self) -> Result<usize, VaultError> {
        let c = self.conn.lock();
        c.query_row("SELECT count(*) FROM identities", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.db())
    }

    pub fn is_empty(&self) -> Result<bool, VaultError> {
        self.len().map(|n| n == 0)
    }

    /// How many records each key id seals.
    pub fn key_usage(&self) -> Result<BTreeMap<String, usize>, VaultError> {
        let c = self.conn.lock();
        let mut s = c.prepare("SELECT key_id, count(*) FROM identities GROUP BY key_id").map_err(self.db())?;
        s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
            .map_err(self.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.db())
    }

    /// Re-seals every record not under the primary key with it; returns how many. Each record
    /// is re-sealed in its own transaction, so an interrupted rotation is simply run again.
    pub fn rotate(&self, now_ms: i64) -> Result<usize, VaultError> {
        let primary = self.keys.primary_id().to_owned();
        let stale: Vec<String> = {
            let c = self.conn.lock();
            let mut s = c.prepare("SELECT patient FROM identities WHERE key_id <> ?1").map_err(self.db())?;
            s.query_map([&primary], |r| r.get(0))
                .map_err(self.db())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.db())?
        };
        for patient in &stale {
            if let Some(identity) = self.get(patient)? {
                self.put(patient, &identity, now_ms)?;
            }
        }
        let c = self.conn.lock();
        c.execute("DELETE FROM keys WHERE id <> ?1 AND id NOT IN (SELECT key_id FROM identities)", [&primary])
            .map_err(self.db())?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(self.db())?;
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests;
