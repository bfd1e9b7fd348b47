//! An append-only log of JSON records in one file (the record format of [`crate::record`]),
//! for the small stores that replay everything at start-up: the event store and the
//! file-drop ledger. A torn last record is dropped; corruption before it fails the open.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fs::{FsFile, FsRef};
use crate::record::{self, Tail};

#[derive(Debug, thiserror::Error)]
pub enum JsonLogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug)]
pub struct JsonLog {
    fs: FsRef,
    path: PathBuf,
    file: FsFile,
    /// The length of the file up to its last complete, durable record.
    good_len: u64,
    /// A repair a failure left to do (cut a failed append off, or sync the directory after
    /// a rewrite): tried again before the next append and when the log is dropped; until it
    /// succeeds the log refuses appends rather than write after a partial record.
    failed: Option<Repair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repair {
    CutTail,
    /// A rewrite renamed the new file over the log: open it (appends must go to it, not to
    /// the unlinked old file) and sync the directory.
    Reopen,
    /// The log was opened on a full disk, where it could not be written again as a fresh
    /// file: write these bytes (header and the records read) as the log before appending.
    /// The file itself is never appended to, since what a read of it shows may be pages
    /// whose sync failed, in the cache but not on the disk: a record after them would sit
    /// behind damage once the power goes.
    Rewrite(Vec<u8>),
}

impl JsonLog {
    /// Opens (or creates) `dir/name`, returning the log and every record in order.
    pub fn open<T: DeserializeOwned>(
        dir: &Path,
        name: &str,
        magic: [u8; 4],
        version: u32,
    ) -> Result<(JsonLog, Vec<T>), JsonLogError> {
        JsonLog::open_in(&crate::fs::real(), dir, name, magic, version)
    }

    /// [`open`](Self::open) on the file system `fs`.
    pub fn open_in<T: DeserializeOwned>(
        fs: &FsRef,
        dir: &Path,
        name: &str,
        magic: [u8; 4],
        version: u32,
    ) -> Result<(JsonLog, Vec<T>), JsonLogError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| JsonLogError::Io { path: p, source }
        };
        crate::fs::create_dir_all_synced(fs.as_ref(), dir).map_err(io(dir))?;
        let path = dir.join(name);
        let mut records = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let scan = record::scan(&bytes, magic, version)
                    .map_err(|e| JsonLogError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                for (offset, payload) in &scan.records {
                    records.push(serde_json::from_slice::<T>(payload).map_err(|e| JsonLogError::Corrupt {
                        path: path.clone(),
                        reason: format!("record at offset {offset}: {e}"),
                    })?);
                }
                let good = match scan.tail {
                    Tail::Clean => bytes.len(),
                    Tail::Torn { offset } => offset as usize,
                    Tail::Corrupt { offset, reason } => {
                        return Err(JsonLogError::Corrupt { path, reason: format!("offset {offset}: {reason}") });
                    }
                };
                // The records read are written again as a fresh file (renamed over the log,
                // directory synced), never appended after: the end of the file may be an
                // append whose sync failed, still in the page cache but never on the disk,
                // and a record written after it would then sit behind damage. This also
                // drops a torn last record. The logs are small; this costs one write of them.
                let mut fresh = record::header(magic, version).to_vec();
                fresh.extend_from_slice(bytes.get(record::HEADER_LEN..good).unwrap_or_default());
                if let Err(e) = crate::fs::replace(fs.as_ref(), &path, &fresh) {
                    // No room for the copy (a full disk): the records are read, and the
                    // fresh file is written before the first append, once there is room.
                    if e.kind() != std::io::ErrorKind::StorageFull {
                        return Err(io(&path)(e));
                    }
                    tracing::warn!(path = %path.display(), "no room to rewrite the log at open: appends wait for room");
                    let file = fs.append(&path).map_err(io(&path))?;
                    let good_len = fresh.len() as u64;
                    let log = JsonLog { fs: fs.clone(), path, file, good_len, failed: Some(Repair::Rewrite(fresh)) };
                    return Ok((log, records));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::fs::create_synced(fs.as_ref(), &path, &record::header(magic, version)).map_err(io(&path))?;
                fs.sync_dir(dir).map_err(io(dir))?;
            }
            Err(e) => return Err(JsonLogError::Io { path, source: e }),
        }
        // What was read is made durable before anything is built on it: a rename (a
        // rewrite) whose directory sync did not happen would otherwise be undone by a power
        // cut, taking the appends made from here with it.
        fs.sync_dir(dir).map_err(io(dir))?;
        let file = fs.append(&path).map_err(io(&path))?;
        let good_len = file.len().map_err(io(&path))?;
        Ok((JsonLog { fs: fs.clone(), path, file, good_len, failed: None }, records))
    }

    /// Appends one record durably (write + fdatasync). If the write or the sync fails (a
    /// full disk, an I/O error), the file is cut back to its last complete record and
    /// synced, so the log stays readable and the next append may succeed; if even that
    /// fails, the log refuses every further append.
    pub fn append<T: Serialize>(&mut self, value: &T) -> Result<(), JsonLogError> {
        self.repair()?;
        let payload = serde_json::to_vec(value)
            .map_err(|e| JsonLogError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        let mut buf = Vec::with_capacity(payload.len() + record::FRAME_LEN);
        record::encode(&mut buf, &payload);
        match self.file.write_all(&buf).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.good_len += buf.len() as u64;
                Ok(())
            }
            Err(source) => {
                self.failed = Some(Repair::CutTail);
                if let Err(e) = self.repair() {
                    tracing::error!(error = %e, "a failed append could not be cut off yet");
                }
                Err(JsonLogError::Io { path: self.path.clone(), source })
            }
        }
    }

    /// Does the repair a failure left, if any.
    fn repair(&mut self) -> Result<(), JsonLogError> {
        let io = |p: &Path, what: &str, e: std::io::Error| JsonLogError::Io {
            path: p.to_owned(),
            source: std::io::Error::new(e.kind(), format!("{what} after an earlier failure: {e}")),
        };
        loop {
            match &self.failed {
                None => return Ok(()),
                Some(Repair::Rewrite(bytes)) => {
                    crate::fs::replace(self.fs.as_ref(), &self.path, bytes)
                        .map_err(|e| io(&self.path, "writing the log afresh", e))?;
                    self.good_len = bytes.len() as u64;
                    // Renamed and the directory synced: appends go to the new file.
                    self.failed = Some(Repair::Reopen);
                }
                Some(Repair::CutTail) => {
                    self.file
                        .set_len(self.good_len)
                        .and_then(|()| self.file.sync_all())
                        .map_err(|e| io(&self.path, "cutting off a failed append", e))?;
                    self.failed = None;
                }
                Some(Repair::Reopen) => {
                    self.file = self.fs.append(&self.path).map_err(|e| io(&self.path, "opening a rewritten log", e))?;
                    if let Some(dir) = self.path.parent() {
                        self.fs.sync_dir(dir).map_err(|e| io(dir, "syncing the directory of a rewrite", e))?;
                    }
                    self.failed = None;
                }
            }
        }
    }
}

impl Drop for JsonLog {
    fn drop(&mut self) {
        if let Err(e) = self.repair() {
            tracing::error!(error = %e, "closing a log");
        }
    }
}

impl JsonLog {
    /// Bytes in the file.
    pub fn len_bytes(&self) -> u64 {
        self.file.len().unwrap_or(0)
    }

    /// Replaces the whole log by `records` (a snapshot of what the log means): written to a
    /// temporary file, fsynced, renamed over the log and the directory fsynced, so a crash
    /// leaves either the old log or the new one.
    pub fn rewrite<T: Serialize>(&mut self, records: &[T]) -> Result<(), JsonLogError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| JsonLogError::Io { path: p, source }
        };
        let tmp = self.path.with_extension("compacting");
        let header = self.header()?;
        let mut buf = header.to_vec();
        for r in records {
            let payload = serde_json::to_vec(r)
                .map_err(|e| JsonLogError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
            record::encode(&mut buf, &payload);
        }
        let mut f = self.fs.create(&tmp).map_err(io(&tmp))?;
        f.write_all(&buf).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
        drop(f);
        self.fs.rename(&tmp, &self.path).map_err(io(&self.path))?;
        // From here the old file is gone: appends must go to the new one, and only once its
        // directory entry is durable (else a power cut could bring the old one back without
        // them).
        self.failed = Some(Repair::Reopen);
        self.good_len = buf.len() as u64;
        self.repair()
    }

    /// The file's header (magic and version), read back from the file itself.
    fn header(&self) -> Result<[u8; record::HEADER_LEN], JsonLogError> {
        use std::io::Read;
        let mut h = [0u8; record::HEADER_LEN];
        File::open(&self.path)
            .and_then(|mut f| f.read_exact(&mut h))
            .map_err(|source| JsonLogError::Io { path: self.path.clone(), source })?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (mut log, old) = JsonLog::open::<Vec<u32>>(dir.path(), "x.log", *b"TEST", 1).expect("open");
            assert!(old.is_empty());
            log.append(&vec![1u32, 2]).expect("append");
            log.append(&vec![3u32]).expect("append");
        }
        let path = dir.path().join("x.log");
        let len = fs::metadata(&path).expect("meta").len();
        OpenOptions::new().write(true).open(&path).expect("open").set_len(len - 2).expect("cut");
        let (_, records) = JsonLog::open::<Vec<u32>>(dir.path(), "x.log", *b"TEST", 1).expect("reopen");
        assert_eq!(records, vec![vec![1, 2]]);
        assert!(JsonLog::open::<Vec<u32>>(dir.path(), "x.log", *b"NOPE", 1).is_err());
    }

    #[test]
    fn a_rewrite_replaces_the_log_and_appends_go_on_after_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut log, _) = JsonLog::open::<u32>(dir.path(), "x.log", *b"TEST", 1).expect("open");
        for i in 0..100u32 {
            log.append(&i).expect("append");
        }
        let before = log.len_bytes();
        log.rewrite(&[7u32, 8]).expect("rewrite");
        assert!(log.len_bytes() < before);
        log.append(&9u32).expect("append");
        drop(log);
        let (_, records) = JsonLog::open::<u32>(dir.path(), "x.log", *b"TEST", 1).expect("reopen");
        assert_eq!(records, vec![7, 8, 9]);
        assert!(!dir.path().join("x.compacting").exists());
    }
}
