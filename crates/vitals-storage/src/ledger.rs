//! The file-drop ledger: every file processed from the staging directory, by content hash,
//! so that the same file dropped twice is recognised and not ingested again.
//!
//! One record file `ledger.log` (record format, magic `VLDG`, version 1) of JSON entries.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::json_log::JsonLog;

const MAGIC: [u8; 4] = *b"VLDG";
const VERSION: u32 = 1;

pub use crate::json_log::JsonLogError as LedgerError;

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

    /// Appends an entry durably.
    pub fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let mut g = self.inner.lock();
        g.log.append(&entry)?;
        if entry.status == "processed" {
            let i = g.entries.len();
            g.processed.insert(entry.sha256.clone(), i);
        }
        g.entries.push(entry);
        Ok(())
    }

    /// Removes the entries `doomed` picks and rewrites the log without them (so no earlier
    /// record holds them); returns how many went.
    pub fn erase_matching(&self, doomed: impl Fn(&LedgerEntry) -> bool) -> Result<usize, LedgerError> {
        let mut g = self.inner.lock();
        let before = g.entries.len();
        let kept: Vec<LedgerEntry> = g.entries.iter().filter(|e| !doomed(e)).cloned().collect();
        if kept.len() == before {
            return Ok(0);
        }
        let chunks: Vec<&[LedgerEntry]> = kept.chunks(1000).collect();
        g.log.rewrite(&chunks)?;
        g.processed = kept
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status == "processed")
            .map(|(i, e)| (e.sha256.clone(), i))
            .collect();
        g.entries = kept;
        Ok(before - g.entries.len())
    }

    /// The newest entries, newest first.
    pub fn recent(&self, limit: usize) -> Vec<LedgerEntry> {
        self.inner.lock().entries.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hash: &str, status: &str) -> LedgerEntry {
        LedgerEntry {
            sha256: hash.into(),
            name: "a.csv".into(),
            time_ms: 1,
            status: status.into(),
            accepted: 1,
            rejected: 0,
            moved_to: "processed/a.csv".into(),
            error: String::new(),
        }
    }

    #[test]
    fn processed_hashes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let l = FileLedger::open(dir.path()).expect("open");
            l.record(entry("aa", "processed")).expect("record");
            l.record(entry("bb", "failed")).expect("record");
        }
        let l = FileLedger::open(dir.path()).expect("reopen");
        assert!(l.processed("aa").is_some());
        assert!(l.processed("bb").is_none(), "a failed file may be dropped again");
        assert_eq!(l.recent(10).len(), 2);
    }
}
