//! Vault keys: where they come from and which one seals new records.
//!
//! A key file has one key per line, `<id> <base64 of 32 random bytes>`; `#` starts a
//! comment. The first key is the primary key (it seals); the others only open older
//! records until a rotation has re-sealed them. The same list can come from the
//! environment variable [`KEY_ENV`] as `id:base64[,id:base64...]`.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::VaultError;

/// The environment variable that may hold the key ring instead of a file.
pub const KEY_ENV: &str = "VITALS_VAULT_KEY";

/// The keys of the vault, primary first.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

fn check_id(id: &str) -> Result<(), VaultError> {
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(VaultError::Key(format!("key id {id:?}: use 1 to 40 of A-Z a-z 0-9 - _")));
    }
    Ok(())
}

fn decode_key(id: &str, b64: &str) -> Result<[u8; 32], VaultError> {
    let bytes =
        STANDARD.decode(b64.trim()).map_err(|e| VaultError::Key(format!("key {id:?} is not valid base64: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        VaultError::Key(format!("key {id:?} is {} bytes long; AES-256 needs exactly 32", b.len()))
    })
}

fn random_key() -> Result<[u8; 32], VaultError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| VaultError::Key(format!("no randomness available: {e}")))?;
    Ok(k)
}

impl Keyring {
    fn new(keys: Vec<(String, [u8; 32])>, source: &str) -> Result<Keyring, VaultError> {
        if keys.is_empty() {
            return Err(VaultError::Key(format!("{source} holds no key")));
        }
        for (i, (id, _)) in keys.iter().enumerate() {
            check_id(id)?;
            if keys[..i].iter().any(|(other, _)| other == id) {
                return Err(VaultError::Key(format!("{source}: key id {id:?} appears twice")));
            }
        }
        Ok(Keyring { keys })
    }

    /// Parses a key file's content.
    pub fn parse_file(text: &str, source: &str) -> Result<Keyring, VaultError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(VaultError::Key(format!("{source} line {}: expected `<id> <base64 key>`", n + 1)));
            };
            keys.push((id.to_owned(), decode_key(id, b64)?));
        }
        Keyring::new(keys, source)
    }

    /// Parses the environment variable's form `id:base64[,id:base64...]`.
    pub fn parse_env(value: &str) -> Result<Keyring, VaultError> {
        let mut keys = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((id, b64)) = item.split_once(':') else {
                return Err(VaultError::Key(format!("{KEY_ENV}: expected id:base64, got an item without ':'")));
            };
            keys.push((id.to_owned(), decode_key(id, b64)?));
        }
        Keyring::new(keys, KEY_ENV)
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Keyring, VaultError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VaultError::Key(format!("reading key file {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(VaultError::Key(format!(
                    "key file {} is readable by others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        Keyring::parse_file(&text, &path.display().to_string())
    }

    /// Creates a key file with one new random key (mode 0600); fails if it exists.
    pub fn create_file(path: &Path, id: &str) -> Result<Keyring, VaultError> {
        check_id(id)?;
        let ring = Keyring::new(vec![(id.to_owned(), random_key()?)], "a new key")?;
        write_new(path, &ring.to_file_text())?;
        Ok(ring)
    }

    /// Puts a new random key at the top of an existing key file (rotation, step one); the
    /// file is replaced atomically. Returns the new ring.
    pub fn add_primary(path: &Path, id: &str) -> Result<Keyring, VaultError> {
        let mut ring = Keyring::load(path)?;
        check_id(id)?;
        if ring.get(id).is_some() {
            return Err(VaultError::Key(format!("key id {id:?} is already in {}", path.display())));
        }
        ring.keys.insert(0, (id.to_owned(), random_key()?));
        replace(path, &ring.to_file_text())?;
        Ok(ring)
    }

    /// Removes a key from the file (rotation, last step). The caller checks that no record
    /// still needs it.
    pub fn remove_from_file(path: &Path, id: &str) -> Result<Keyring, VaultError> {
        let mut ring = Keyring::load(path)?;
        if ring.primary_id() == id {
            return Err(VaultError::Key(format!("key {id:?} is the primary key; add a new key first")));
        }
        let before = ring.keys.len();
        ring.keys.retain(|(k, _)| k != id);
        if ring.keys.len() == before {
            return Err(VaultError::Key(format!("key id {id:?} is not in {}", path.display())));
        }
        replace(path, &ring.to_file_text())?;
        Ok(ring)
    }

    fn to_file_text(&self) -> String {
        let mut s =
            String::from("# Vitals identity vault keys: the first seals, the others only open older records.\n");
        for (id, key) in &self.keys {
            s.push_str(&format!("{id} {}\n", STANDARD.encode(key)));
        }
        s
    }

    pub fn primary(&self) -> (&str, &[u8; 32]) {
        let (id, key) = &self.keys[0];
        (id, key)
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn get(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn write_new(path: &Path, text: &str) -> Result<(), VaultError> {
    let io = |e: std::io::Error| VaultError::Key(format!("writing key file {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = open_private(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn replace(path: &Path, text: &str) -> Result<(), VaultError> {
    let io = |e: std::io::Error| VaultError::Key(format!("writing key file {}: {e}", path.display()));
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, text)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}
