//! The data directory: every path in it, named in one place. (ARCHITECTURE.md shows the
//! layout; the stores open the files.)

use std::path::{Path, PathBuf};

/// A data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock the running process holds.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// The write-ahead log's files.
    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }

    /// The manifest's logs and `CURRENT`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest")
    }

    /// The Parquet lake (`metric=/year=/month=/day=/patient=/part-*.parquet`).
    pub fn lake(&self) -> PathBuf {
        self.root.join("lake")
    }

    /// Segments fetched from the remote lake (a cache: emptied at every start).
    pub fn lake_cache(&self) -> PathBuf {
        self.root.join("lake-cache")
    }

    /// Refused input.
    pub fn dead_letters(&self) -> PathBuf {
        self.root.join("dead-letters")
    }

    /// Events (workouts, sleep, treatments, alerts).
    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }

    /// Alert rules made through the API.
    pub fn rules(&self) -> PathBuf {
        self.root.join("rules")
    }

    /// Named patient groups.
    pub fn cohorts(&self) -> PathBuf {
        self.root.join("cohorts")
    }

    /// Connections to vendor clouds (credentials sealed by the vault).
    pub fn connections(&self) -> PathBuf {
        self.root.join("connections")
    }

    /// Campaigns, patients' consent to them and what was sent.
    pub fn campaigns(&self) -> PathBuf {
        self.root.join("campaigns")
    }

    /// Alerts and the notice outbox.
    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts")
    }

    /// The metadata database (users, tokens, teams, patients, audit).
    pub fn meta(&self) -> PathBuf {
        self.root.join("meta.sqlite")
    }

    /// The identity vault's database.
    pub fn vault(&self) -> PathBuf {
        self.root.join("vault").join("identity.sqlite")
    }

    /// The vault's key ring when none is configured.
    pub fn vault_key(&self) -> PathBuf {
        self.root.join("keys").join("vault.key")
    }

    /// The audit chain's key when none is configured.
    pub fn audit_key(&self) -> PathBuf {
        self.root.join("keys").join("audit.key")
    }

    /// The token file of earlier versions, imported once.
    pub fn legacy_tokens(&self) -> PathBuf {
        self.root.join("tokens.json")
    }

    /// The file-drop staging directory when none is configured.
    pub fn file_drop(&self) -> PathBuf {
        self.root.join("drop")
    }

    /// `vitals demo`'s own state (cohort, progress, labels).
    pub fn demo(&self) -> PathBuf {
        self.root.join("demo")
    }
}
