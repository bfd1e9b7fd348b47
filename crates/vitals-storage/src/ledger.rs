//! The file-drop ledger: every file processed from the staging directory, by content hash,
//! so that the same file dropped twice is recognised and not ingested again.
//!
//! [`Ledger`] is the contract; [`FileLedger`] keeps it on one node in one record file
//! `ledger.log` (record format, magic `VLDG`, version 1) of JSON entries; cluster mode keeps
//! it in PostgreSQL (`vitals_postgres::PgLedger`), where nodes that watch one shared
//! directory also claim a file before processing it. `conformance` (feature) checks both.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::json_log::JsonLog;

const MAGIC: [u8; 4] = *b"VLDG";
const VERSION: u32 = 1;

use crate::json_log::JsonLogError;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Log(#[from] JsonLogError),
    /// The ledger's database failed.
    #[error("the file ledger at {location}: {reason}")]
    Backend { location: String, reason: String },
}

/// What a node may do with a dropped file's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// Processed before (the entry that did): the file is a duplicate.
    Processed(LedgerEntry),
    /// This node processes it (and records an entry when done).
    Claimed,
    /// Another node is processing the same content now: leave the file for later.
    Busy,
}

/// The ledger's contract.
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Before processing content `sha256`: whether it was processed, and if not, claims it
    /// for this node (a claim lapses after an hour if no entry is recorded).
    fn begin(&self, sha256: &str) -> Result<Begin, LedgerError>;
    /// Appends an entry durably (and lets go of the content's claim).
    fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError>;
    /// Lets go of a claim without recording anything (the file is left for a later try).
    fn release(&self, sha256: &str) -> Result<(), LedgerError>;
    /// Removes the entries `doomed` picks, leaving no copy of them; returns how many went.
    fn erase_matching(&self, doomed: &dyn Fn(&LedgerEntry) -> bool) -> Result<usize, LedgerError>;
    /// The newest entries, newest first.
    fn recent(&self, limit: usize) -> Result<Vec<LedgerEntry>, LedgerError>;
}

/// What happened to one dropped file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Hex SHA-256 of the content (of a folder: of its files' names and contents).
    pub sha256: String,
    pub name: String,
    pub time_ms: i64,
    /// `processed`, `duplicate` or `failed`.
    pub status: String,
    pub accepted: u64,
    pub rejected: u64,
    /// Where the file was moved.
    pub moved_to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug)]
struct Inner {
    log: JsonLog,
    entries: Vec<LedgerEntry>,
    processed: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct FileLedger {
    inner: Mutex<Inner>,
}

impl FileLedger {
    pub fn open(dir: &Path) -> Result<FileLedger, LedgerError> {
        let (log, entries) = JsonLog::open::<LedgerEntry>(dir, "ledger.log", MAGIC, VERSION)?;
        let processed = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status == "processed")
            .map(|(i, e)| (e.sha256.clone(), i))
            .collect();
        Ok(FileLedger { inner: Mutex::new(Inner { log, entries, processed }) })
    }

    /// The processed entry with this content hash, if any.
    pub fn processed(&self, sha256: &str) -> Option<LedgerEntry> {
        let g = self.inner.lock();
        g.processed.get(sha256).map(|i| g.entries[*i].clone())
    }
}

impl Ledger for FileLedger {
    /// One node, one watcher: never busy.
    fn begin(&self, sha256: &str) -> Result<Begin, LedgerError> {
        Ok(self.processed(sha256).map_or(Begin::Claimed, Begin::Processed))
    }

    fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let mut g = self.inner.lock();
        g.log.append(&entry)?;
        if entry.status == "processed" {
            let i = g.entries.len();
            g.processed.insert(entry.sha256.clone(), i);
        }
        g.entries.push(entry);
        Ok(())
    }

    fn release(&self, _sha256: &str) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Rewrites the log without them (so no earlier record holds them).
    fn erase_matching(&self, doomed: &dyn Fn(&LedgerEntry) -> bool) -> Result<usize, LedgerError> {
        let mut g = self.inner.lock();
        let before = g.entries.len();
        let kept: Vec<LedgerEntry> = g.entries.iter().filter(|e| !doomed(e)).cloned().collect();
        if kept.len() == before {
            return Ok(0);
        }
        // One record per entry, as `open` reads them.
        g.log.rewrite(&kept)?;
        g.processed = kept
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status == "processed")
            .map(|(i, e)| (e.sha256.clone(), i))
            .collect();
        g.entries = kept;
        Ok(before - g.entries.len())
    }

    fn recent(&self, limit: usize) -> Result<Vec<LedgerEntry>, LedgerError> {
        Ok(self.inner.lock().entries.iter().rev().take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneNode(tempfile::TempDir);

    impl conformance::Fixture for OneNode {
        fn open(&self) -> Box<dyn Ledger> {
            Box::new(FileLedger::open(self.0.path()).expect("open"))
        }
        fn shared(&self) -> bool {
            false
        }
    }

    #[test]
    fn the_file_ledger_keeps_the_contract() {
        conformance::run_all(&|| Box::new(OneNode(tempfile::tempdir().expect("tmp"))));
    }
}
