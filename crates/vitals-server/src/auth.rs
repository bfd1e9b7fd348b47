//! Authentication: who is calling. API tokens (of users and of devices) and dashboard
//! sessions are checked against the metadata store; passwords against Argon2id hashes.
//!
//! Tokens are 256-bit random values shown once and stored as SHA-256 (and SHA-1, for
//! Nightscout's `api-secret`) hashes. Every request reads the store, so a revoked token, a
//! disabled user or a changed care team takes effect at the very next request, including
//! changes made by another process (`vitals admin ...`). What a principal may do is
//! decided in [`crate::authz`].

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use vitals_core::PatientId;
use vitals_meta::{MetaError, MetaStore, SqliteMeta, Token, User, password, random_id, random_secret, sha256_hex};
use vitals_storage::data_dir::DataDir;

pub use vitals_meta::Role;

pub mod credentials;
pub mod login_limiter;

const TOKEN_PREFIX: &str = "vt_";
const SESSION_PREFIX: &str = "vs_";

/// The patients a principal reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Patients(BTreeSet<String>),
}

impl Scope {
    pub fn includes(&self, patient: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patients(p) => p.contains(patient),
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// How the audit log names them: `user:<name>`, `token:<id>`.
    pub actor: String,
    /// A display name (the user's or the token's).
    pub name: String,
    pub role: Role,
    pub user_id: Option<String>,
    /// A device token bound to one patient, or a patient account's own pseudonym.
    pub patient: Option<PatientId>,
    /// The patients this principal may reach (for roles whose reach is their own patients).
    pub scope: Scope,
    /// Set when authenticated by a dashboard session: the CSRF token state changes must echo.
    pub csrf: Option<String>,
}

/// Why a sign-in failed (the message is what the person sees).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Invalid,
    #[error("too many failed sign-ins: this account is locked until {until}; try again then or ask an administrator")]
    Locked { until: String },
    #[error("this account is disabled")]
    Disabled,
    #[error("{0}")]
    Store(String),
}

/// Sign-in policy (from `[auth]`).
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_failed: u32,
    pub lockout_ms: i64,
}

/// What a new token is for.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub name: &'a str,
    /// Ignored for a user's token (the user's role applies).
    pub role: Option<Role>,
    pub user: Option<&'a str>,
    pub device: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub expires_ms: Option<i64>,
    /// A chosen secret (tests, `VITALS_ADMIN_TOKEN`); otherwise a random one.
    pub secret: Option<&'a str>,
}

/// People, tokens and sessions of a data directory.
pub struct Directory {
    meta: Arc<dyn MetaStore>,
    /// The audit chain's key (outside the database; see `vitals_meta::audit`).
    audit_key: vitals_meta::audit::AuditKey,
    /// Failed sign-ins of names that are no account, counted like accounts' so that a
    /// lockout answer does not tell which names exist.
    ghosts: parking_lot::Mutex<std::collections::HashMap<String, (u32, Option<i64>)>>,
}

/// Names of no account whose failures are remembered at most (the oldest lockouts go first).
const MAX_GHOSTS: usize = 10_000;

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory")
    }
}

/// A stand-in hash so that unknown user names cost as much time as wrong passwords.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| password::hash("not a password of anyone").unwrap_or_default())
}

/// A principal without a user (a device, or an admin token): it reaches its bound patient
/// only, or every patient. A binding that does not parse (a damaged or hand-edited row)
/// authenticates nobody: it never widens into no binding at all.
fn bound(actor: String, name: String, role: Role, patient: Option<&str>) -> Option<Principal> {
    let patient = match patient {
        Some(p) => match PatientId::new(p) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(actor = %actor, error = %e, "a credential's patient binding is invalid; refused");
                return None;
            }
        },
        None => None,
    };
    let scope = match &patient {
        Some(p) => Scope::Patients([p.to_string()].into()),
        None => Scope::All,
    };
    Some(Principal { actor, name, role, user_id: None, patient, scope, csrf: None })
}

fn sha1_hex(secret: &str) -> String {
    hex::encode(<sha1::Sha1 as sha1::Digest>::digest(secret.as_bytes()))
}

/// The audit chain's key from `path`; a new one if there is no file, covering the entries
/// from the next one on (written 0600 and synced before any entry uses it).
fn load_audit_key(meta: &dyn MetaStore, path: &Path) -> anyhow::Result<vitals_meta::audit::AuditKey> {
    use std::io::Write;
    use vitals_meta::audit::AuditKey;
    let read = |path: &Path| -> anyhow::Result<AuditKey> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the audit key {}", path.display()))?;
        AuditKey::parse(&text).map_err(|e| anyhow::anyhow!("the audit key {}: {e}", path.display()))
    };
    if path.exists() {
        return read(path);
    }
    let key = AuditKey::generate(meta.audit_head()?.0 + 1)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(f) => f,
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read(path),
        Err(e) => return Err(e).with_context(|| format!("creating the audit key {}", path.display())),
    };
    file.write_all(key.render().as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .with_context(|| format!("writing the audit key {}", path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "created a new audit-chain key next to the data; move it off the data disk (auth.audit_key_file) and back it up"
    );
    Ok(key)
}

impl Directory {
    /// Opens the metadata store of a data directory, importing a `tokens.json` of earlier
    /// versions once (it is renamed to `tokens.json.imported`).
    pub fn open(data_dir: &Path) -> anyhow::Result<Directory> {
        Directory::open_keyed(data_dir, &DataDir::new(data_dir).audit_key())
    }

    /// The directory of `config`'s data directory (in cluster mode, the cluster's, in
    /// PostgreSQL), its audit chain keyed by `auth.audit_key_file` (or the default key file
    /// in the data directory).
    pub fn open_for(config: &crate::config::Config) -> anyhow::Result<Directory> {
        if config.cluster.enabled {
            let pool = crate::cluster::connect(&config.cluster)?;
            let meta = vitals_postgres::PgMeta::open(pool, &config.cluster.schema)?;
            return Directory::open_shared(Arc::new(meta), &Directory::key_file(config));
        }
        Directory::open_keyed(&config.storage.data_dir, &Directory::key_file(config))
    }

    /// The audit key's file: `auth.audit_key_file`, or the default in the data directory.
    pub fn key_file(config: &crate::config::Config) -> std::path::PathBuf {
        if config.auth.audit_key_file.as_os_str().is_empty() {
            config.data_dir().audit_key()
        } else {
            config.auth.audit_key_file.clone()
        }
    }

    /// Opens the directory with its audit chain keyed by the key in `key_file`, created
    /// (covering the entries from the next one on) if there is none.
    pub fn open_keyed(data_dir: &Path, key_file: &Path) -> anyhow::Result<Directory> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let paths = DataDir::new(data_dir);
        let meta = SqliteMeta::open(&paths.meta())?;
        let audit_key = load_audit_key(&meta, key_file)?;
        meta.set_audit_key(audit_key.clone());
        let dir = Directory { meta: Arc::new(meta), audit_key, ghosts: Default::default() };
        dir.import_legacy(&paths)?;
        Ok(dir)
    }

    /// Cluster mode: the metadata store every node shares (PostgreSQL). The audit key must
    /// be the same on every node: the first node creates it, the others need a copy (a
    /// node without one refuses to start once the chain has entries).
    pub fn open_shared(meta: Arc<dyn MetaStore>, key_file: &Path) -> anyhow::Result<Directory> {
        if !key_file.exists() && meta.audit_head()?.0 > 0 {
            anyhow::bail!(
                "the audit key {} is missing, and the cluster's audit chain has entries: copy the key file of the node that created it (auth.audit_key_file)",
                key_file.display()
            );
        }
        let audit_key = load_audit_key(&*meta, key_file)?;
        meta.set_audit_key(audit_key.clone());
        Ok(Directory { meta, audit_key, ghosts: Default::default() })
    }

    /// The audit chain's key, for verification.
    pub fn audit_key(&self) -> &vitals_meta::audit::AuditKey {
        &self.audit_key
    }

    pub fn meta(&self) -> &dyn MetaStore {
        &*self.meta
    }

    pub fn meta_arc(&self) -> Arc<dyn MetaStore> {
        self.meta.clone()
    }

    fn import_legacy(&self, data_dir: &DataDir) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Legacy {
            tokens: Vec<LegacyToken>,
        }
        #[derive(Deserialize)]
        struct LegacyToken {
            id: String,
            name: String,
            role: Role,
            hash: String,
            created_ms: i64,
            patient: Option<String>,
            sha1: Option<String>,
        }
        let path = data_dir.legacy_tokens();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let legacy: Legacy = serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        for t in legacy.tokens {
            let token = Token {
                id: t.id,
                name: t.name,
                role: t.role,
                user_id: None,
                device: None,
                patient: t.patient,
                sha256: t.hash,
                api_secret_sha256: (t.role == Role::Device)
                    .then_some(t.sha1)
                    .flatten()
                    .map(|s| sha256_hex(&s.to_ascii_lowercase())),
                created_ms: t.created_ms,
                expires_ms: None,
                revoked_ms: None,
            };
            match self.meta.create_token(&token) {
                Ok(()) | Err(MetaError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        std::fs::rename(&path, path.with_extension("json.imported"))?;
        tracing::info!(file = %path.display(), "imported the tokens of an earlier version into the metadata store");
        Ok(())
    }

    /// Whether nobody can sign in or call the API yet (first start).
    pub fn is_empty(&self) -> anyhow::Result<bool> {
        Ok(self.meta.tokens()?.iter().all(|t| t.revoked_ms.is_some()) && self.meta.users()?.is_empty())
    }

    /// Checks a presented token.
    pub fn authenticate(&self, token: &str, now_ms: i64) -> Option<Principal> {
        let found = self.meta.token_by_sha256(&sha256_hex(token.trim()));
        self.principal_of_token(found, now_ms)
    }

    /// Checks the hex SHA-1 of a device token (Nightscout's `api-secret`): only device
    /// tokens have one, kept as its SHA-256.
    pub fn authenticate_sha1(&self, sha1_hex: &str, now_ms: i64) -> Option<Principal> {
        let found = self.meta.token_by_api_secret(&sha256_hex(&sha1_hex.trim().to_ascii_lowercase()));
        self.principal_of_token(found, now_ms)
    }

    fn principal_of_token(&self, found: Result<Option<Token>, MetaError>, now_ms: i64) -> Option<Principal> {
        let t = match found {
            Ok(t) => t?,
            Err(e) => {
                tracing::error!(error = %e, "reading tokens");
                return None;
            }
        };
        if !t.is_live(now_ms) {
            return None;
        }
        match &t.user_id {
            Some(uid) => {
                let user = self.meta.user(uid).ok()??;
                self.principal_of_user(&user)
            }
            None => bound(format!("token:{}", t.id), t.name.clone(), t.role, t.patient.as_deref()),
        }
    }

    /// The principal of an enabled user (their care teams' patients read now).
    pub fn principal_of_user(&self, user: &User) -> Option<Principal> {
        if user.disabled {
            return None;
        }
        let patient = match user.patient.as_deref().map(PatientId::new) {
            Some(Ok(p)) => Some(p),
            // A patient account bound to nothing valid reaches nothing: refused.
            Some(Err(_)) => return None,
            None => None,
        };
        let scope = match user.role {
            Role::Admin | Role::Analyst => Scope::All,
            Role::Patient => Scope::Patients(patient.iter().map(|p| p.to_string()).collect()),
            Role::Clinician | Role::Caregiver | Role::Device => match self.meta.patients_of_member(&user.id) {
                Ok(p) => Scope::Patients(p.into_iter().collect()),
                Err(e) => {
                    tracing::error!(error = %e, "reading care teams");
                    return None;
                }
            },
        };
        Some(Principal {
            actor: format!("user:{}", user.name),
            name: user.name.clone(),
            role: user.role,
            user_id: Some(user.id.clone()),
            patient,
            scope,
            csrf: None,
        })
    }

    /// The principal of a verified client certificate registered to a device.
    pub fn authenticate_cert(&self, sha256_hex: &str, now_ms: i64) -> Option<Principal> {
        let c = match self.meta.device_cert(sha256_hex) {
            Ok(c) => c?,
            Err(e) => {
                tracing::error!(error = %e, "reading device certificates");
                return None;
            }
        };
        if c.revoked_ms.is_some_and(|r| r <= now_ms) {
            return None;
        }
        bound(format!("cert:{}", c.id), c.name, Role::Device, c.patient.as_deref())
    }

    /// Registers a device's client certificate (PEM or DER), bound to a patient if given.
    pub fn register_cert(
        &self,
        name: &str,
        device: &str,
        patient: Option<&str>,
        der: &[u8],
        now_ms: i64,
    ) -> anyhow::Result<vitals_meta::DeviceCert> {
        vitals_core::DeviceId::new(device).map_err(|e| anyhow::anyhow!("device {device:?} {e}"))?;
        if let Some(p) = patient {
            PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}"))?;
        }
        let cert = vitals_meta::DeviceCert {
            sha256: crate::tls::cert_sha256(der),
            id: random_id("crt-")?,
            name: name.to_owned(),
            device: device.to_owned(),
            patient: patient.map(str::to_owned),
            created_ms: now_ms,
            revoked_ms: None,
        };
        self.meta.create_device_cert(&cert)?;
        Ok(cert)
    }

    /// Adds a token and returns it with its secret (shown once, stored nowhere).
    pub fn create_token(&self, req: &NewToken<'_>, now_ms: i64) -> anyhow::Result<(Token, String)> {
        if req.name.trim().is_empty() || req.name.len() > 100 {
            bail!("a token name must be 1 to 100 characters");
        }
        if let Some(p) = req.patient {
            PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}"))?;
        }
        if let Some(d) = req.device {
            vitals_core::DeviceId::new(d).map_err(|e| anyhow::anyhow!("device {d:?} {e}"))?;
        }
        if req.expires_ms.is_some_and(|e| e <= now_ms) {
            bail!("the expiry must be in the future");
        }
        let (role, user_id) = match req.user {
            Some(u) => {
                let user = self.meta.user(u)?.ok_or_else(|| anyhow::anyhow!("no user {u:?}"))?;
                if req.patient.is_some() || req.device.is_some() {
                    bail!("a user's token acts as the user: it takes no patient or device");
                }
                (user.role, Some(user.id))
            }
            None => {
                let role = req.role.ok_or_else(|| anyhow::anyhow!("a token without a user needs a role"))?;
                if !matches!(role, Role::Admin | Role::Device) {
                    bail!("a {role} token must belong to a user (--user): people have accounts, devices have tokens");
                }
                if role != Role::Device && (req.patient.is_some() || req.device.is_some()) {
                    bail!("only device tokens are bound to a patient or a device");
                }
                (role, None)
            }
        };
        let secret = match req.secret {
            Some(s) if s.len() < 16 => bail!("a token must be at least 16 characters long"),
            Some(s) => s.to_owned(),
            None => random_secret(TOKEN_PREFIX)?,
        };
        let token = Token {
            id: random_id("tok-")?,
            name: req.name.to_owned(),
            role,
            user_id,
            device: req.device.map(str::to_owned),
            patient: req.patient.map(str::to_owned),
            sha256: sha256_hex(&secret),
            // Nightscout uploaders are devices; people use their token as such.
            api_secret_sha256: (role == Role::Device).then(|| sha256_hex(&sha1_hex(&secret))),
            created_ms: now_ms,
            expires_ms: req.expires_ms,
            revoked_ms: None,
        };
        self.meta.create_token(&token)?;
        Ok((token, secret))
    }

    /// Shorthand for an admin or device token.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        secret: Option<&str>,
        patient: Option<&str>,
        now_ms: i64,
    ) -> anyhow::Result<(Token, String)> {
        self.create_token(&NewToken { name, role: Some(role), patient, secret, ..Default::default() }, now_ms)
    }

    pub fn list(&self) -> anyhow::Result<Vec<Token>> {
        Ok(self.meta.tokens()?)
    }

    /// Revokes a token; it stops working at once.
    pub fn revoke(&self, id: &str, now_ms: i64) -> anyhow::Result<bool> {
        Ok(self.meta.revoke_token(id, now_ms)?)
    }

    /// Creates a user (password optional: token-only accounts).
    pub fn create_user(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
        patient: Option<&str>,
        now_ms: i64,
    ) -> anyhow::Result<User> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.contains(char::is_whitespace) {
            bail!("a user name must be 1 to 64 characters without spaces");
        }
        if role == Role::Device {
            bail!("devices have tokens, not accounts: create a device token instead");
        }
        if role == Role::Patient && patient.is_none() {
            bail!("a patient account needs the patient's pseudonym (--patient)");
        }
        if role != Role::Patient && patient.is_some() {
            bail!("only patient accounts are bound to a patient; link others through care teams");
        }
        if let Some(p) = patient {
            PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}"))?;
        }
        let user = User {
            id: random_id("usr-")?,
            name: name.to_owned(),
            role,
            password_hash: password.map(password::hash).transpose()?,
            patient: patient.map(str::to_owned),
            disabled: false,
            failed_logins: 0,
            locked_until_ms: None,
            created_ms: now_ms,
        };
        self.meta.create_user(&user)?;
        Ok(user)
    }

    /// Checks a sign-in, counting failures and locking the account after too many.
    pub fn login(&self, name: &str, password: &str, now_ms: i64, policy: LockoutPolicy) -> Result<User, LoginError> {
        let store = |e: MetaError| LoginError::Store(e.to_string());
        let Some(user) = self.meta.user(name).map_err(store)? else {
            password::verify(password, dummy_hash());
            return Err(self.ghost_failure(name, now_ms, policy));
        };
        if let Some(until) = user.locked_until_ms.filter(|u| now_ms < *u) {
            return Err(LoginError::Locked { until: vitals_core::time::format_time(until) });
        }
        let ok = match &user.password_hash {
            Some(h) => password::verify(password, h),
            None => {
                password::verify(password, dummy_hash());
                false
            }
        };
        if !ok {
            // Counted in the store atomically, never by writing back this (stale) copy.
            let locked =
                self.meta.record_failed_login(&user.id, now_ms, policy.max_failed, policy.lockout_ms).map_err(store)?;
            return Err(match locked {
                Some(until) => LoginError::Locked { until: vitals_core::time::format_time(until) },
                None => LoginError::Invalid,
            });
        }
        // The account as it is now (an administrator may have changed it meanwhile).
        let user = self.meta.user(&user.id).map_err(store)?.ok_or(LoginError::Invalid)?;
        if user.disabled {
            return Err(LoginError::Disabled);
        }
        if let Some(until) = user.locked_until_ms.filter(|u| now_ms < *u) {
            return Err(LoginError::Locked { until: vitals_core::time::format_time(until) });
        }
        if user.failed_logins > 0 || user.locked_until_ms.is_some() {
            self.meta.unlock_user(&user.id).map_err(store)?;
        }
        Ok(User { failed_logins: 0, locked_until_ms: None, ..user })
    }

    /// A failed sign-in under a name that is no account: answered as an account's would be,
    /// lockout included.
    fn ghost_failure(&self, name: &str, now_ms: i64, policy: LockoutPolicy) -> LoginError {
        let mut g = self.ghosts.lock();
        if g.len() >= MAX_GHOSTS {
            g.retain(|_, (_, until)| until.is_some_and(|u| u > now_ms));
            if g.len() >= MAX_GHOSTS {
                g.clear();
            }
        }
        let e = g.entry(name.to_owned()).or_insert((0, None));
        if let Some(until) = e.1 {
            if now_ms < until {
                return LoginError::Locked { until: vitals_core::time::format_time(until) };
            }
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= policy.max_failed {
            let until = now_ms + policy.lockout_ms;
            e.1 = Some(until);
            return LoginError::Locked { until: vitals_core::time::format_time(until) };
        }
        LoginError::Invalid
    }

    /// Starts a dashboard session: returns the cookie secret and the CSRF token.
    pub fn start_session(&self, user: &User, now_ms: i64, ttl_ms: i64) -> anyhow::Result<(String, String)> {
        let secret = random_secret(SESSION_PREFIX)?;
        let csrf = random_secret("")?;
        self.meta.create_session(&vitals_meta::Session {
            sha256: sha256_hex(&secret),
            user_id: user.id.clone(),
            csrf: csrf.clone(),
            created_ms: now_ms,
            expires_ms: now_ms + ttl_ms,
        })?;
        Ok((secret, csrf))
    }

    /// The principal of a session cookie, if it is live.
    pub fn authenticate_session(&self, secret: &str, now_ms: i64) -> Option<Principal> {
        let s = self.meta.session(&sha256_hex(secret)).ok()??;
        if now_ms >= s.expires_ms {
            let _ = self.meta.delete_session(&s.sha256);
            return None;
        }
        let user = self.meta.user(&s.user_id).ok()??;
        let mut p = self.principal_of_user(&user)?;
        p.csrf = Some(s.csrf);
        Some(p)
    }

    pub fn end_session(&self, secret: &str) -> anyhow::Result<()> {
        Ok(self.meta.delete_session(&sha256_hex(secret))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy { max_failed: 3, lockout_ms: 60_000 };

    #[test]
    fn tokens_are_stored_hashed_expire_and_revocation_is_seen_by_other_handles() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Directory::open(dir.path()).expect("open");
        assert!(d.is_empty().expect("empty"));
        let (rec, secret) = d.create("ops", Role::Admin, None, None, 1).expect("create");
        let (_, dev) = d.create("watch", Role::Device, Some("device-secret-0123456789"), Some("p-1"), 2).expect("dev");
        let on_disk = std::fs::read(DataDir::new(dir.path()).meta()).expect("file");
        let s = String::from_utf8_lossy(&on_disk);
        assert!(!s.contains(&secret) && !s.contains(&dev), "secrets never stored");
        assert_eq!(d.authenticate(&secret, 3).map(|p| p.role), Some(Role::Admin));
        let p = d.authenticate(&dev, 3).expect("device");
        assert_eq!((p.role, p.patient.map(|p| p.to_string())), (Role::Device, Some("p-1".into())));
        assert!(d.authenticate("vt_nope", 3).is_none());
        assert_eq!(d.authenticate_sha1(&sha1_hex(&dev).to_uppercase(), 3).map(|p| p.role), Some(Role::Device));
        // Only device tokens have a Nightscout secret, and what is stored does not open it.
        assert!(d.authenticate_sha1(&sha1_hex(&secret), 3).is_none(), "an admin token has no SHA-1 form");
        let stored: Vec<String> = d.list().expect("list").into_iter().filter_map(|t| t.api_secret_sha256).collect();
        assert_eq!(stored.len(), 1, "the device's only");
        assert!(!s.contains(&sha1_hex(&dev)), "not the value a client sends");
        assert!(d.authenticate_sha1(&stored[0], 3).is_none(), "a copy of the database opens nothing");
        let other = Directory::open(dir.path()).expect("open again");
        assert!(other.revoke(&rec.id, 4).expect("revoke"));
        assert!(d.authenticate(&secret, 5).is_none(), "revoked at once");
        let (_, short) = d
            .create_token(
                &NewToken { name: "day", role: Some(Role::Admin), expires_ms: Some(100), ..Default::default() },
                5,
            )
            .expect("expiring");
        assert!(d.authenticate(&short, 99).is_some());
        assert!(d.authenticate(&short, 100).is_none(), "expired");
        assert!(d.create("x", Role::Admin, Some("short"), None, 3).is_err());
        assert!(d.create("x", Role::Clinician, None, None, 3).is_err(), "people have accounts");
    }

    #[test]
    fn user_tokens_act_with_the_users_current_role_and_care_teams() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Directory::open(dir.path()).expect("open");
        let ann = d.create_user("ann", Role::Clinician, None, None, 1).expect("user");
        let (_, t) =
            d.create_token(&NewToken { name: "ann's", user: Some("ann"), ..Default::default() }, 1).expect("t");
        let p = d.authenticate(&t, 2).expect("ann");
        assert_eq!(
            (p.role, p.actor.as_str(), p.scope.clone()),
            (Role::Clinician, "user:ann", Scope::Patients([].into()))
        );
        d.meta().create_team("ward", 1).expect("team");
        d.meta().set_member("ward", &ann.id, true).expect("member");
        d.meta().set_team_patient("ward", "p-7", true).expect("link");
        assert!(d.authenticate(&t, 2).expect("ann").scope.includes("p-7"), "new team patient reached at once");
        let mut disabled = ann.clone();
        disabled.disabled = true;
        d.meta().update_user(&disabled).expect("disable");
        assert!(d.authenticate(&t, 3).is_none(), "disabled user's tokens stop working");
    }

    #[test]
    fn sign_in_locks_after_repeated_failures_and_says_until_when() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Directory::open(dir.path()).expect("open");
        d.create_user("bo", Role::Caregiver, Some("a long enough secret"), None, 1).expect("user");
        assert_eq!(d.login("nobody", "x", 1, POLICY).expect_err("unknown"), LoginError::Invalid);
        assert_eq!(d.login("bo", "wrong", 1, POLICY).expect_err("1"), LoginError::Invalid);
        assert!(d.login("bo", "a long enough secret", 2, POLICY).is_ok(), "success resets the count");
        assert_eq!(d.login("bo", "wrong", 3, POLICY).expect_err("1"), LoginError::Invalid);
        assert_eq!(d.login("bo", "wrong", 4, POLICY).expect_err("2"), LoginError::Invalid);
        let locked = d.login("bo", "wrong", 5, POLICY).expect_err("3");
        assert!(matches!(locked, LoginError::Locked { .. }), "{locked}");
        assert!(locked.to_string().contains("locked until"));
        let still = d.login("bo", "a long enough secret", 6, POLICY).expect_err("right password, still locked");
        assert!(matches!(still, LoginError::Locked { .. }));
        assert!(d.login("bo", "a long enough secret", 5 + 60_000, POLICY).is_ok(), "the lock expires");
        let user = d.meta().user("bo").expect("read").expect("bo");
        let (cookie, csrf) = d.start_session(&user, 10, 1000).expect("session");
        assert_eq!(d.authenticate_session(&cookie, 11).and_then(|p| p.csrf), Some(csrf));
        assert!(d.authenticate_session(&cookie, 1010).is_none(), "expired");
    }

    #[test]
    fn a_name_that_is_no_account_locks_like_one_so_answers_do_not_tell_which_exist() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Directory::open(dir.path()).expect("open");
        d.create_user("bo", Role::Caregiver, Some("a long enough secret"), None, 1).expect("user");
        for name in ["bo", "nobody"] {
            let answers: Vec<LoginError> =
                (0..4).map(|i| d.login(name, "wrong", 10 + i, POLICY).expect_err(name)).collect();
            assert_eq!(answers[..2], [LoginError::Invalid, LoginError::Invalid], "{name}");
            assert!(answers[2..].iter().all(|a| matches!(a, LoginError::Locked { .. })), "{name}: {answers:?}");
        }
    }

    #[test]
    fn a_binding_that_does_not_parse_authenticates_nobody() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Directory::open(dir.path()).expect("open");
        let (t, secret) =
            d.create("watch", Role::Device, Some("device-secret-0123456789"), Some("p-1"), 1).expect("dev");
        assert!(d.authenticate(&secret, 2).is_some());
        // The row damaged or edited by hand: the binding is no pseudonym any more.
        let broken = Token {
            patient: Some("not a pseudonym!".into()),
            id: "tok-broken".into(),
            sha256: sha256_hex("broken-secret-0123456789"),
            api_secret_sha256: None,
            ..t
        };
        d.meta().create_token(&broken).expect("insert");
        assert!(d.authenticate("broken-secret-0123456789", 2).is_none(), "not widened to every patient");
    }

    #[test]
    fn concurrent_wrong_guesses_all_count_and_never_undo_an_administrators_change() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = std::sync::Arc::new(Directory::open(dir.path()).expect("open"));
        d.create_user("cy", Role::Clinician, Some("a long enough secret"), None, 1).expect("user");
        let policy = LockoutPolicy { max_failed: 1_000, lockout_ms: 60_000 };
        // Four clients guess at once, ten times each, while an administrator disables the
        // account: every guess counts, and the account stays disabled.
        let guessers: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        assert_eq!(d.login("cy", "wrong", 2, policy), Err(LoginError::Invalid));
                    }
                })
            })
            .collect();
        let mut u = d.meta().user("cy").expect("read").expect("cy");
        u.disabled = true;
        d.meta().update_user(&u).expect("disable");
        for g in guessers {
            g.join().expect("guesser");
        }
        let u = d.meta().user("cy").expect("read").expect("cy");
        assert_eq!((u.failed_logins, u.disabled), (40, true));
        // At the limit the account locks, whoever's guess reached it.
        let strict = LockoutPolicy { max_failed: 41, lockout_ms: 60_000 };
        assert!(matches!(d.login("cy", "wrong", 3, strict), Err(LoginError::Locked { .. })));
    }

    #[test]
    fn a_token_file_of_an_earlier_version_is_imported_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = "legacy-admin-token-0123456789";
        let json = serde_json::json!({"tokens": [{"id": "tok-old", "name": "old", "role": "admin",
            "hash": sha256_hex(secret), "created_ms": 1}]});
        std::fs::write(DataDir::new(dir.path()).legacy_tokens(), json.to_string()).expect("write");
        let d = Directory::open(dir.path()).expect("open");
        assert_eq!(d.authenticate(secret, 2).map(|p| p.actor), Some("token:tok-old".into()));
        assert!(!DataDir::new(dir.path()).legacy_tokens().exists());
        drop(d);
        assert_eq!(Directory::open(dir.path()).expect("reopen").list().expect("list").len(), 1);
    }
}
