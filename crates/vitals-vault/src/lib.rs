//! The identity vault: who a pseudonym is, encrypted at rest, apart from everything else.
//!
//! Patients' identifying data (name, date of birth, contacts, external ids such as a
//! hospital number) lives only here, in its own SQLite file (`vault/identity.sqlite`; in
//! cluster mode in PostgreSQL, through the [`Backend`] trait), each record sealed with AES-256-GCM under a key the vault never stores: it comes from a key
//! file or an environment variable ([`Keyring`]). The pseudonym and the key id are bound to
//! each ciphertext as associated data, so a record cannot be moved to another patient.
//! Physiological data, the lake, logs and everything an analyst reaches hold the pseudonym
//! only.
//!
//! Key rotation: add a new key at the top of the key file (it becomes the primary key; the
//! older keys stay for reading), run [`Vault::rotate`] to re-seal every record under it,
//! then remove the old key. A per-key check value tells a wrong key ("this is not the key
//! that sealed the vault") from a damaged record.

#[cfg(feature = "conformance")]
pub mod conformance;
mod keyring;
mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

pub use keyring::{KEY_ENV, Keyring};
pub use sqlite::SqliteBackend;

/// What the check value of each key decrypts to.
const CHECK_PLAINTEXT: &[u8] = b"vitals identity vault key check v1";

/// A key's check value: [`CHECK_PLAINTEXT`] sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub id: String,
    pub nonce: Vec<u8>,
    pub check: Vec<u8>,
}

/// One patient's sealed identity, as a backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub patient: String,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub sealed: Vec<u8>,
    pub updated_ms: i64,
}

/// Where sealed records and key checks are kept. It sees ciphertext only; the
/// [`Vault`] seals and opens. Every call is durable when it returns.
pub trait Backend: Send + Sync {
    /// Where it is, for errors and logs (never credentials).
    fn location(&self) -> String;
    fn key_checks(&self) -> Result<Vec<KeyCheck>, VaultError>;
    /// Stores (replacing) `record`, and `check` unless its key already has one, at once.
    fn put(&self, check: &KeyCheck, record: &SealedRecord) -> Result<(), VaultError>;
    fn get(&self, patient: &str) -> Result<Option<SealedRecord>, VaultError>;
    /// Removes a record, leaving no readable copy where the backend can help it.
    fn delete(&self, patient: &str) -> Result<bool, VaultError>;
    /// Records per key id.
    fn key_usage(&self) -> Result<BTreeMap<String, usize>, VaultError>;
    fn patients_not_under(&self, key_id: &str) -> Result<Vec<String>, VaultError>;
    /// Forgets the check values of keys other than `keep` that seal nothing.
    fn drop_unused_key_checks(&self, keep: &str) -> Result<(), VaultError>;
}

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("identity vault {path}: {source}")]
    Db { path: String, source: rusqlite::Error },
    /// Where another backend keeps the records failed (PostgreSQL in cluster mode).
    #[error("identity vault {location}: {reason}")]
    Backend { location: String, reason: String },
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

/// The vault: sealing and opening records with the key ring, over where they are kept (its
/// SQLite file on one node, PostgreSQL in cluster mode).
pub struct Vault {
    backend: Box<dyn Backend>,
    keys: Keyring,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", &self.backend.location())
            .field("primary_key", &self.keys.primary_id())
            .finish()
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
    /// Opens (creating if needed) the vault's SQLite file at `path` and checks that the key
    /// ring opens it.
    pub fn open(path: &Path, keys: Keyring) -> Result<Vault, VaultError> {
        Vault::with_backend(Box::new(SqliteBackend::open(path)?), keys)
    }

    /// The vault over `backend`, once the key ring is checked against what it holds.
    pub fn with_backend(backend: Box<dyn Backend>, keys: Keyring) -> Result<Vault, VaultError> {
        let vault = Vault { backend, keys };
        vault.check_keys()?;
        Ok(vault)
    }

    /// Every key id that seals a record must be in the ring and be the right key.
    fn check_keys(&self) -> Result<(), VaultError> {
        for id in self.backend.key_usage()?.keys() {
            if self.keys.get(id).is_none() {
                return Err(VaultError::MissingKey { id: id.clone() });
            }
        }
        for check in self.backend.key_checks()? {
            let Some(key) = self.keys.get(&check.id) else { continue };
            let id = check.id;
            let nonce = Nonce::try_from(check.nonce.as_slice()).map_err(|_| VaultError::WrongKey { id: id.clone() })?;
            let opened = cipher(key).decrypt(&nonce, Payload { msg: &check.check, aad: id.as_bytes() });
            if opened.as_deref() != Ok(CHECK_PLAINTEXT) {
                return Err(VaultError::WrongKey { id });
            }
        }
        Ok(())
    }

    /// The primary key's check value, recorded by the backend unless it has one.
    fn primary_check(&self) -> Result<KeyCheck, VaultError> {
        let (id, key) = self.keys.primary();
        let nonce = random_nonce()?;
        let check = cipher(key)
            .encrypt(&nonce.into(), Payload { msg: CHECK_PLAINTEXT, aad: id.as_bytes() })
            .map_err(|_| VaultError::Key("sealing the key check".into()))?;
        Ok(KeyCheck { id: id.to_owned(), nonce: nonce.to_vec(), check })
    }

    fn seal(&self, patient: &str, identity: &Identity, now_ms: i64) -> Result<SealedRecord, VaultError> {
        let (id, key) = self.keys.primary();
        let plain = serde_json::to_vec(identity).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let nonce = random_nonce()?;
        let sealed = cipher(key)
            .encrypt(&nonce.into(), Payload { msg: &plain, aad: &aad(patient, id) })
            .map_err(|_| VaultError::Key("sealing a record".into()))?;
        Ok(SealedRecord {
            patient: patient.to_owned(),
            key_id: id.to_owned(),
            nonce: nonce.to_vec(),
            sealed,
            updated_ms: now_ms,
        })
    }

    fn open_record(&self, r: &SealedRecord) -> Result<Identity, VaultError> {
        let key = self.keys.get(&r.key_id).ok_or_else(|| VaultError::MissingKey { id: r.key_id.clone() })?;
        let damaged = || VaultError::Damaged { patient: r.patient.clone() };
        let nonce = Nonce::try_from(r.nonce.as_slice()).map_err(|_| damaged())?;
        let plain = cipher(key)
            .decrypt(&nonce, Payload { msg: &r.sealed, aad: &aad(&r.patient, &r.key_id) })
            .map_err(|_| damaged())?;
        serde_json::from_slice(&plain).map_err(|_| damaged())
    }

    /// Stores (replacing) a patient's identity.
    pub fn put(&self, patient: &str, identity: &Identity, now_ms: i64) -> Result<(), VaultError> {
        identity.validate()?;
        let record = self.seal(patient, identity, now_ms)?;
        self.backend.put(&self.primary_check()?, &record)
    }

    /// A patient's identity, if recorded.
    pub fn get(&self, patient: &str) -> Result<Option<Identity>, VaultError> {
        self.backend.get(patient)?.map(|r| self.open_record(&r)).transpose()
    }

    /// Removes a patient's identity (erasure).
    pub fn delete(&self, patient: &str) -> Result<bool, VaultError> {
        self.backend.delete(patient)
    }

    /// Number of identity records.
    pub fn len(&self) -> Result<usize, VaultError> {
        Ok(self.backend.key_usage()?.values().sum())
    }

    pub fn is_empty(&self) -> Result<bool, VaultError> {
        self.len().map(|n| n == 0)
    }

    /// How many records each key id seals.
    pub fn key_usage(&self) -> Result<BTreeMap<String, usize>, VaultError> {
        self.backend.key_usage()
    }

    /// Re-seals every record not under the primary key with it; returns how many. Each record
    /// is re-sealed on its own, so an interrupted rotation is simply run again.
    pub fn rotate(&self, now_ms: i64) -> Result<usize, VaultError> {
        let primary = self.keys.primary_id().to_owned();
        let stale = self.backend.patients_not_under(&primary)?;
        for patient in &stale {
            if let Some(identity) = self.get(patient)? {
                self.put(patient, &identity, now_ms)?;
            }
        }
        self.backend.drop_unused_key_checks(&primary)?;
        Ok(stale.len())
    }
}

/// A secret sealed under the vault's key ring (a vendor account's credentials), for the
/// caller to keep: only the ring's keys open it, and only for the context it was sealed
/// for (the context and the key id are its associated data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub key_id: String,
    /// Base64 of the nonce and of the ciphertext.
    pub nonce: String,
    pub sealed: String,
}

fn secret_aad(context: &str, key_id: &str) -> Vec<u8> {
    format!("vitals-secret\0{context}\0{key_id}").into_bytes()
}

impl Vault {
    /// The id of the key new records and secrets are sealed under.
    pub fn primary_key_id(&self) -> &str {
        self.keys.primary_id()
    }

    /// Seals `plain` for `context` (e.g. `connection/<patient>/<vendor>`) under the primary key.
    pub fn seal_secret(&self, context: &str, plain: &[u8]) -> Result<SealedSecret, VaultError> {
        use base64::Engine as _;
        let (id, key) = self.keys.primary();
        let nonce = random_nonce()?;
        let sealed = cipher(key)
            .encrypt(&nonce.into(), Payload { msg: plain, aad: &secret_aad(context, id) })
            .map_err(|_| VaultError::Key("sealing a secret".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(SealedSecret { key_id: id.to_owned(), nonce: b64.encode(nonce), sealed: b64.encode(sealed) })
    }

    /// Opens a secret sealed for `context`; fails if it was sealed for another context, under
    /// a key not in the ring, or was altered.
    pub fn open_secret(&self, context: &str, s: &SealedSecret) -> Result<Vec<u8>, VaultError> {
        use base64::Engine as _;
        let key = self.keys.get(&s.key_id).ok_or_else(|| VaultError::MissingKey { id: s.key_id.clone() })?;
        let damaged = || VaultError::Damaged { patient: context.to_owned() };
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = b64.decode(&s.nonce).map_err(|_| damaged())?;
        let sealed = b64.decode(&s.sealed).map_err(|_| damaged())?;
        let nonce = Nonce::try_from(nonce.as_slice()).map_err(|_| damaged())?;
        cipher(key)
            .decrypt(&nonce, Payload { msg: &sealed, aad: &secret_aad(context, &s.key_id) })
            .map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests;
