//! The metadata store: who may use Vitals and what they did.
//!
//! People (users with Argon2id passwords and a role), care teams linking clinicians and
//! caregivers to patients, API tokens of users and devices (hashed, revocable, expiring),
//! devices' client certificates (mTLS) mapped to a device and a patient,
//! dashboard sessions, the registry of patients' pseudonyms, and the hash-chained audit log.
//! Identity (names, birth dates...) is not here: it lives in the encrypted vault
//! (`vitals-vault`). [`MetaStore`] is the contract; [`SqliteMeta`] the embedded
//! implementation; `vitals-postgres` has the PostgreSQL one of cluster mode, and
//! [`conformance`] (feature `conformance`) is the contract both pass.
//!
//! Policy that does not depend on the database (password rules, lockout, the audit chain's
//! hashing and verification) lives in this crate outside the trait, so every implementation
//! shares it.

pub mod audit;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod model;
pub mod password;
mod sqlite;

pub use audit::{AuditEntry, AuditEvent, ChainBreak};
pub use model::{DeviceCert, Patient, Role, Session, Team, Token, User};
pub use sqlite::SqliteMeta;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database {path}: {source}")]
    Db { path: String, source: rusqlite::Error },
    /// A database other than the embedded one (PostgreSQL in cluster mode).
    #[error("metadata database: {source}")]
    Backend {
        disk_full: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Crypto(String),
    #[error("audit chain broken: {0}")]
    Chain(#[from] ChainBreak),
}

impl MetaError {
    /// Whether the database refused a write because its disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            MetaError::Db { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            MetaError::Backend { disk_full, .. } => *disk_full,
            _ => false,
        }
    }
}

/// Which audit entries to return (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub patient: Option<String>,
    pub actor: Option<String>,
    /// An action or a prefix ending in `.` (`login.` matches `login.ok` and `login.failed`).
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Entries with a smaller sequence number only (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// The metadata contract. Every method is one transaction.
pub trait MetaStore: Send + Sync {
    fn create_user(&self, user: &User) -> Result<(), MetaError>;
    /// By id or by sign-in name.
    fn user(&self, id_or_name: &str) -> Result<Option<User>, MetaError>;
    fn users(&self) -> Result<Vec<User>, MetaError>;
    /// Replaces the user's role, password hash, patient and disabled flag (not the sign-in
    /// counters: those change only through the three methods below, atomically).
    fn update_user(&self, user: &User) -> Result<(), MetaError>;
    /// Counts a failed sign-in in one atomic update: a lockout that has expired starts the
    /// count again; reaching `max_failed` locks the account until `now_ms + lockout_ms`.
    /// Returns the lock's end if the account is locked now.
    fn record_failed_login(
        &self,
        id: &str,
        now_ms: i64,
        max_failed: u32,
        lockout_ms: i64,
    ) -> Result<Option<i64>, MetaError>;
    /// Ends a lockout and clears the count (an administrator's unlock).
    fn unlock_user(&self, id: &str) -> Result<(), MetaError>;
    /// Deletes the user with their tokens, sessions and team memberships.
    fn delete_user(&self, id: &str) -> Result<bool, MetaError>;

    fn create_token(&self, token: &Token) -> Result<(), MetaError>;
    fn token(&self, id: &str) -> Result<Option<Token>, MetaError>;
    fn token_by_sha256(&self, sha256_hex: &str) -> Result<Option<Token>, MetaError>;
    /// By [`Token::api_secret_sha256`].
    fn token_by_api_secret(&self, api_secret_sha256: &str) -> Result<Option<Token>, MetaError>;
    fn tokens(&self) -> Result<Vec<Token>, MetaError>;
    /// Marks a token revoked (kept for the record); false if it does not exist or already was.
    fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, MetaError>;

    fn create_team(&self, name: &str, now_ms: i64) -> Result<(), MetaError>;
    fn delete_team(&self, name: &str) -> Result<bool, MetaError>;
    fn teams(&self) -> Result<Vec<Team>, MetaError>;
    fn set_member(&self, team: &str, user_id: &str, member: bool) -> Result<(), MetaError>;
    fn set_team_patient(&self, team: &str, patient: &str, linked: bool) -> Result<(), MetaError>;
    /// The patients of all care teams the user is a member of.
    fn patients_of_member(&self, user_id: &str) -> Result<Vec<String>, MetaError>;

    fn create_patient(&self, patient: &Patient) -> Result<(), MetaError>;
    fn patient(&self, id: &str) -> Result<Option<Patient>, MetaError>;
    fn patients(&self) -> Result<Vec<Patient>, MetaError>;
    /// Removes the patient's registration, team links, patient accounts' binding and
    /// device tokens bound to them (erasure).
    fn delete_patient(&self, id: &str) -> Result<bool, MetaError>;

    /// Registers a device's client certificate (by the SHA-256 of its DER encoding).
    fn create_device_cert(&self, cert: &DeviceCert) -> Result<(), MetaError>;
    fn device_cert(&self, sha256_hex: &str) -> Result<Option<DeviceCert>, MetaError>;
    fn device_certs(&self) -> Result<Vec<DeviceCert>, MetaError>;
    fn revoke_device_cert(&self, id: &str, at_ms: i64) -> Result<bool, MetaError>;

    fn create_session(&self, session: &Session) -> Result<(), MetaError>;
    fn session(&self, sha256_hex: &str) -> Result<Option<Session>, MetaError>;
    fn delete_session(&self, sha256_hex: &str) -> Result<(), MetaError>;
    fn delete_sessions_of(&self, user_id: &str) -> Result<(), MetaError>;

    /// Appends an entry to the chain (durably, before returning).
    fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry, MetaError> {
        let mut v = self.append_audit_batch(std::slice::from_ref(event))?;
        v.pop().ok_or_else(|| MetaError::Invalid("no audit entry appended".into()))
    }
    /// Appends entries in order in one transaction (one disk sync for all: the server's
    /// group commit of concurrent requests' entries).
    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>, MetaError>;
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, MetaError>;
    /// Entries with `seq > after`, in order, at most `limit` (for verification).
    fn audit_run(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, MetaError>;
    /// The last entry's `(seq, hash)` as recorded when it was appended.
    fn audit_head(&self) -> Result<(i64, String), MetaError>;
    /// The key that entries appended from now on are hashed under (from its first entry).
    fn set_audit_key(&self, key: audit::AuditKey);
}

/// Verifies the whole audit chain against its recorded head, entries from the key's first
/// on under `key`; returns the number of entries and the head hash.
pub fn verify_audit(store: &dyn MetaStore, key: Option<&audit::AuditKey>) -> Result<(i64, String), MetaError> {
    let mut at = (0, audit::GENESIS.to_string());
    loop {
        let run = store.audit_run(at.0, 10_000)?;
        if run.is_empty() {
            break;
        }
        at = audit::verify_run(at, &run, key)?;
    }
    let head = store.audit_head()?;
    if head != at {
        return Err(ChainBreak::Truncated { last: at.0, hash_found: at.1, head_seq: head.0, head_hash: head.1 }.into());
    }
    Ok(at)
}

/// A new random secret: `prefix` and 64 hex digits (256 bits).
pub fn random_secret(prefix: &str) -> Result<String, MetaError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| MetaError::Crypto(format!("no randomness available: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// A new random id: `prefix` and 12 hex digits.
pub fn random_id(prefix: &str) -> Result<String, MetaError> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| MetaError::Crypto(format!("no randomness available: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// A new patient pseudonym: a random (version 4) UUID, which says nothing about the person.
pub fn new_pseudonym() -> Result<String, MetaError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| MetaError::Crypto(format!("no randomness available: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// Hex SHA-256 of a secret (tokens and session cookies are 256-bit random values, so a fast
/// hash is enough: nothing to stretch).
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
