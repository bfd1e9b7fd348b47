//! The file-drop ledger: every file processed from the staging directory, by content hash,
//! so that the same file dropped twice is recognised and not ingested again.
//!
//! One record file `ledger.log` (record format, magic `VLDG`, version 1) of JSON entries.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::record::{self, Tail};
use crate::wal::sync_dir;

const MAGIC: [u8; 4] = *b"VLDG";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
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
    file: File,
    entries: Vec<LedgerEntry>,
    processed: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl FileLedger {
    pub fn open(dir: &Path) -> Result<FileLedger, LedgerError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LedgerError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("ledger.log");
        let mut entries = Vec::new();
        match fs::read(&path) {
            Ok(bytes) => {
                let scan = record::scan(&bytes, MAGIC, VERSION)
                    .map_err(|e| LedgerError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                for (offset, payload) in &scan.records {
                    entries.push(serde_json::from_slice::<LedgerEntry>(payload).map_err(|e| LedgerError::Corrupt {
                        path: path.clone(),
                        reason: format!("entry at offset {offset}: {e}"),
                    })?);
                }
                match scan.tail {
                    Tail::Clean => {}
                    Tail::Torn { offset } => {
                        let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                        f.set_len(offset.max(record::HEADER_LEN as u64)).map_err(io(&path))?;
                    }
                    Tail::Corrupt { offset, reason } => {
                        return Err(LedgerError::Corrupt { path, reason: format!("offset {offset}: {reason}") });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut f = File::create(&path).map_err(io(&path))?;
                f.write_all(&record::header(MAGIC, VERSION)).and_then(|()| f.sync_all()).map_err(io(&path))?;
                sync_dir(dir).map_err(io(dir))?;
            }
            Err(e) => return Err(LedgerError::Io { path, source: e }),
        }
        let processed = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status == "processed")
            .map(|(i, e)| (e.sha256.clone(), i))
            .collect();
        let file = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        Ok(FileLedger { path, inner: Mutex::new(Inner { file, entries, processed }) })
    }

    /// The processed entry with this content hash, if any.
    pub fn processed(&self, sha256: &str) -> Option<LedgerEntry> {
        let g = self.inner.lock();
        g.processed.get(sha256).map(|i| g.entries[*i].clone())
    }

    /// Appends an entry durably.
    pub fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let payload = serde_json::to_vec(&entry)
            .map_err(|e| LedgerError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        let mut buf = Vec::new();
        record::encode(&mut buf, &payload);
        let mut g = self.inner.lock();
        g.file
            .write_all(&buf)
            .and_then(|()| g.file.sync_data())
            .map_err(|source| LedgerError::Io { path: self.path.clone(), source })?;
        if entry.status == "processed" {
            let i = g.entries.len();
            g.processed.insert(entry.sha256.clone(), i);
        }
        g.entries.push(entry);
        Ok(())
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
