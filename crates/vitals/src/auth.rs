//! API tokens: random secrets shown once, stored only as SHA-256 hashes, with a role.
//!
//! Tokens are 256-bit random values, so a fast hash is enough (no password stretching is
//! needed for secrets nobody chose). The token file is re-read when another process (the
//! `vitals admin token` command) changed it, so new and revoked tokens take effect at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vitals_core::PatientId;
use vitals_storage::meta_file;

const TOKENS_FILE: &str = "tokens.json";
const TOKEN_PREFIX: &str = "vt_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Write samples only.
    Device,
}

/// Permissions that routes declare; roles grant them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    WriteSamples,
    ReadData,
    Admin,
}

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Device => p == Permission::WriteSamples,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Device => "device",
        }
    }
}

/// A stored token (never the secret itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_ms: i64,
    /// A token bound to one patient may only write that patient's samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Hex SHA-1 of the token: Nightscout uploaders send `api-secret: sha1(secret)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    /// Set for tokens bound to one patient.
    pub patient: Option<PatientId>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

#[derive(Debug)]
struct Loaded {
    by_hash: HashMap<String, TokenRecord>,
    /// SHA-1 hex -> SHA-256 hex, for Nightscout's `api-secret`.
    by_sha1: HashMap<String, String>,
    version: Option<(u64, i64, i64, u64)>,
}

/// The token store of a data directory.
#[derive(Debug)]
pub struct TokenStore {
    dir: PathBuf,
    loaded: Mutex<Loaded>,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

impl TokenStore {
    pub fn open(dir: &Path) -> anyhow::Result<TokenStore> {
        let store = TokenStore {
            dir: dir.to_owned(),
            loaded: Mutex::new(Loaded { by_hash: HashMap::new(), by_sha1: HashMap::new(), version: None }),
        };
        store.reload()?;
        Ok(store)
    }

    fn reload(&self) -> anyhow::Result<()> {
        let version = meta_file::version(&self.dir, TOKENS_FILE);
        let file: TokenFile = meta_file::read(&self.dir, TOKENS_FILE)?.unwrap_or_default();
        let mut l = self.loaded.lock();
        l.by_sha1 = file.tokens.iter().filter_map(|t| Some((t.sha1.clone()?, t.hash.clone()))).collect();
        l.by_hash = file.tokens.into_iter().map(|t| (t.hash.clone(), t)).collect();
        l.version = version;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.lock().by_hash.is_empty()
    }

    /// Checks a presented token.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        self.authenticate_hash(&hash_token(token))
    }

    /// Checks the hex SHA-1 of a token (Nightscout's `api-secret`).
    pub fn authenticate_sha1(&self, sha1_hex: &str) -> Option<Principal> {
        let key = sha1_hex.trim().to_ascii_lowercase();
        let found = self.loaded.lock().by_sha1.get(&key).cloned();
        match found {
            Some(h) => self.authenticate_hash(&h),
            None => {
                // The token file may have changed since it was loaded.
                self.authenticate_hash("");
                let h = self.loaded.lock().by_sha1.get(&key).cloned()?;
                self.authenticate_hash(&h)
            }
        }
    }

    fn authenticate_hash(&self, h: &str) -> Option<Principal> {
        let found = |l: &Loaded| {
            l.by_hash.get(h).map(|t| Principal {
                token_id: t.id.clone(),
                name: t.name.clone(),
                role: t.role,
                patient: t.patient.as_deref().and_then(|p| PatientId::new(p).ok()),
            })
        };
        {
            let l = self.loaded.lock();
            let changed = meta_file::version(&self.dir, TOKENS_FILE) != l.version;
            if !changed {
                return found(&l);
            }
        }
        if let Err(e) = self.reload() {
            tracing::error!(error = %format!("{e:#}"), "re-reading the token file");
        }
        found(&self.loaded.lock())
    }

    /// Adds a token (the given secret, or a new random one) and returns the secret.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        secret: Option<&str>,
        patient: Option<&str>,
        now_ms: i64,
    ) -> anyhow::Result<(TokenRecord, String)> {
        if let Some(p) = patient {
            PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}"))?;
        }
        if name.trim().is_empty() || name.len() > 100 {
            bail!("a token name must be 1 to 100 characters");
        }
        let secret = match secret {
            Some(s) if s.len() < 16 => bail!("a token must be at least 16 characters long"),
            Some(s) => s.to_owned(),
            None => generate_token()?,
        };
        let mut file: TokenFile = meta_file::read(&self.dir, TOKENS_FILE)?.unwrap_or_default();
        let hash = hash_token(&secret);
        if file.tokens.iter().any(|t| t.hash == hash) {
            bail!("that token already exists");
        }
        let id = format!("tok-{}", &generate_token()?[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + 12]);
        let sha1 = Some(hex::encode(<sha1::Sha1 as sha1::Digest>::digest(secret.as_bytes())));
        let rec = TokenRecord {
            id,
            name: name.to_owned(),
            role,
            hash,
            created_ms: now_ms,
            patient: patient.map(str::to_owned),
            sha1,
        };
        file.tokens.push(rec.clone());
        meta_file::write(&self.dir, TOKENS_FILE, &file).context("saving tokens")?;
        self.reload()?;
        Ok((rec, secret))
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        let mut v: Vec<TokenRecord> = self.loaded.lock().by_hash.values().cloned().collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Removes a token by id; it stops working at once.
    pub fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        let mut file: TokenFile = meta_file::read(&self.dir, TOKENS_FILE)?.unwrap_or_default();
        let before = file.tokens.len();
        file.tokens.retain(|t| t.id != id);
        let removed = file.tokens.len() != before;
        if removed {
            meta_file::write(&self.dir, TOKENS_FILE, &file)?;
            self.reload()?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_roles_limit_permissions() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::open(dir.path()).expect("open");
        assert!(store.is_empty());
        let (rec, secret) = store.create("ops", Role::Admin, None, None, 1).expect("create");
        let (_, dev) =
            store.create("watch", Role::Device, Some("device-secret-0123456789"), Some("p-1"), 2).expect("create");
        let on_disk = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).expect("file");
        assert!(!on_disk.contains(&secret) && !on_disk.contains(&dev), "secrets never stored");
        assert_eq!(store.authenticate(&secret).map(|p| p.role), Some(Role::Admin));
        assert_eq!(store.authenticate(&dev).map(|p| p.role), Some(Role::Device));
        assert_eq!(store.authenticate(&dev).and_then(|p| p.patient).map(|p| p.to_string()), Some("p-1".into()));
        assert!(store.authenticate("vt_nope").is_none());
        let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(dev.as_bytes()));
        assert_eq!(store.authenticate_sha1(&sha1.to_uppercase()).map(|p| p.role), Some(Role::Device));
        assert!(store.authenticate_sha1("0000000000000000000000000000000000000000").is_none());
        assert!(Role::Device.allows(Permission::WriteSamples));
        assert!(!Role::Device.allows(Permission::ReadData));
        assert!(!Role::Device.allows(Permission::Admin));
        // Another process (the admin command) revokes: the open store notices.
        let other = TokenStore::open(dir.path()).expect("open");
        assert!(other.revoke(&rec.id).expect("revoke"));
        assert!(store.authenticate(&secret).is_none());
        assert!(store.create("x", Role::Admin, Some("short"), None, 3).is_err());
    }
}
