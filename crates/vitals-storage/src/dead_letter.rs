//! The dead-letter store: input that was refused, kept with its reason so that an admin can
//! inspect it and replay it once the cause is fixed (a unit added to the catalog, a patient
//! id corrected at the source...). Bounded: past `max_bytes` the oldest files are dropped
//! (and counted).
//!
//! Files `dead-letters/dlq-<first id:020>.log` in the record format (magic `VDLQ`,
//! version 1). A record is an entry (`0u8 | header json length u32 | header json |
//! raw bytes`), a removal (`1u8 | id u64`) written when an entry is replayed, or a clear
//! (`2u8`): every entry of the files before it is gone. A purge and an erasure's rewrite
//! begin their new file with a clear, so that old files a power cut brings back (their
//! deletion not yet durable) bring none of their entries back; they are deleted at the
//! next start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fs::{Fs, FsFile, FsRef};
use crate::record::{self, Tail};

const MAGIC: [u8; 4] = *b"VDLQ";
const VERSION: u32 = 1;
/// Start a new file past this size, so the oldest entries can be dropped a file at a time.
const FILE_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no dead letter {0}")]
    NotFound(u64),
}

/// One refused item of an entry, as reported to the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedItem {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// What is known about a dead letter besides its raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: u64,
    /// When it was refused (ms since the epoch).
    pub time_ms: i64,
    /// Which adapter refused it, e.g. `api/samples`, `line_protocol`.
    pub source: String,
    /// The content type or format the raw bytes are in, for replay.
    pub format: String,
    /// A one-line summary.
    pub reason: String,
    /// The refused items (empty when the whole input was refused).
    pub items: Vec<RefusedItem>,
    /// Free-form context for replay (e.g. the precision of line protocol).
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    pub raw_bytes: u64,
}

#[derive(Debug)]
struct Located {
    meta: DeadLetter,
    file: u64,
    raw_offset: u64,
}

#[derive(Debug)]
struct Inner {
    current: FsFile,
    /// The last append failed and could not be cut off: the next one cuts it first.
    torn: bool,
    current_first: u64,
    current_len: u64,
    /// First id of each file -> its size.
    files: BTreeMap<u64, u64>,
    entries: BTreeMap<u64, Located>,
    next_id: u64,
    dropped: u64,
    /// Files no longer listed whose deletion failed: tried again with the next erasure or
    /// purge, so that an acknowledged one leaves none of them behind.
    doomed: Vec<u64>,
    /// A purge or erasure failed after it may have made its file (which begins with a
    /// clear): nothing may be appended before that file, so the next record goes to a new
    /// file named past this one.
    roll_past: Option<u64>,
}

/// The store; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DeadLetters {
    fs: FsRef,
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeadLetterError + '_ {
    move |source| DeadLetterError::Io { path: path.to_owned(), source }
}

fn file_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("dlq-{first:020}.log"))
}

impl DeadLetters {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DeadLetters, DeadLetterError> {
        DeadLetters::open_in(&crate::fs::real(), dir, max_bytes)
    }

    /// [`open`](Self::open) on the file system `fs`.
    pub fn open_in(fs: &FsRef, dir: &Path, max_bytes: u64) -> Result<DeadLetters, DeadLetterError> {
        crate::fs::create_dir_all_synced(fs.as_ref(), dir).map_err(io(dir))?;
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("dlq-")?.strip_suffix(".log")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        let mut entries = BTreeMap::new();
        let mut files = BTreeMap::new();
        let mut next_id = 1u64;
        for first in &firsts {
            let path = file_path(dir, *first);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let scan = record::scan(&bytes, MAGIC, VERSION)
                .map_err(|e| DeadLetterError::Corrupt { path: path.clone(), reason: e.to_string() })?;
            next_id = next_id.max(*first);
            for (offset, payload) in &scan.records {
                match payload.first() {
                    Some(0) if payload.len() >= 5 => {
                        let n = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]) as usize;
                        let header = payload.get(5..5 + n).ok_or_else(|| DeadLetterError::Corrupt {
                            path: path.clone(),
                            reason: format!("entry at offset {offset} is cut short"),
                        })?;
                        let meta: DeadLetter =
                            serde_json::from_slice(header).map_err(|e| DeadLetterError::Corrupt {
                                path: path.clone(),
                                reason: format!("entry at offset {offset}: {e}"),
                            })?;
                        next_id = next_id.max(meta.id + 1);
                        let raw_offset = offset + record::FRAME_LEN as u64 + 5 + n as u64;
                        entries.insert(meta.id, Located { meta, file: *first, raw_offset });
                    }
                    Some(1) if payload.len() == 9 => {
                        let mut id = [0u8; 8];
                        id.copy_from_slice(&payload[1..9]);
                        entries.remove(&u64::from_le_bytes(id));
                    }
                    Some(2) if payload.len() == 1 => entries.retain(|_, l| l.file == *first),
                    _ => {
                        return Err(DeadLetterError::Corrupt {
                            path,
                            reason: format!("unknown record at offset {offset}"),
                        });
                    }
                }
            }
            let len = match scan.tail {
                Tail::Clean => bytes.len() as u64,
                Tail::Torn { offset } | Tail::Corrupt { offset, .. } => {
                    // Dead letters are a diagnostic store: keep what is readable, log the rest.
                    tracing::warn!(path = %path.display(), offset, "dead-letter file damaged at the end; truncating");
                    crate::fs::cut_record_file(fs.as_ref(), &path, offset, MAGIC, VERSION).map_err(io(&path))?;
                    offset.max(record::HEADER_LEN as u64)
                }
            };
            files.insert(*first, len);
        }
        // The files read are made durable entries before anything is added after them.
        fs.sync_dir(dir).map_err(io(dir))?;
        // New entries go to a new file, never after what was only read: the end of the last
        // file may be an append whose sync failed, still in the page cache but never on the
        // disk, and an entry written after it would then sit behind damage. Files left
        // without entries are removed.
        // So are the oldest files up to the first that holds a live entry (after a clear,
        // or removals): a later file may hold the removal of an entry in an earlier one, so
        // only a prefix goes, oldest first, never the newest (it may hold a clear).
        let newest = files.keys().next_back().copied();
        let mut prefix = true;
        for (first, len) in files.clone() {
            let holds_live = entries.values().any(|l: &Located| l.file == first);
            prefix &= !holds_live && Some(first) != newest;
            if prefix || (len <= record::HEADER_LEN as u64 && !holds_live) {
                let path = file_path(dir, first);
                fs.remove_file(&path).map_err(io(&path))?;
                files.remove(&first);
            }
        }
        fs.sync_dir(dir).map_err(io(dir))?;
        // A file is named after the next id when it is made, and an erasure's rewrite holds
        // older ids under a newer name: the new file's name is past every file's.
        if let Some(last) = files.keys().next_back() {
            next_id = next_id.max(last + 1);
        }
        let mut roll_past = None;
        let (current, current_first, current_len) = match create(fs.as_ref(), dir, next_id) {
            Ok((f, len)) => {
                files.insert(next_id, len);
                (f, next_id, len)
            }
            // No room for a new file (a full disk): the entries are read, and the next one
            // waits for room for a new file (never appended after what was only read).
            Err(DeadLetterError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull && !files.is_empty() =>
            {
                let (first, len) = files.iter().next_back().map(|(f, l)| (*f, *l)).unwrap_or_default();
                let path = file_path(dir, first);
                roll_past = Some(first);
                (fs.append(&path).map_err(io(&path))?, first, len)
            }
            Err(e) => return Err(e),
        };
        Ok(DeadLetters {
            fs: fs.clone(),
            dir: dir.to_owned(),
            max_bytes,
            inner: Mutex::new(Inner {
                current,
                torn: false,
                current_first,
                current_len,
                files,
                entries,
                next_id,
                dropped: 0,
                doomed: Vec::new(),
                roll_past,
            }),
        })
    }

    /// Keeps refused input; returns its id. Durable (fsynced) when this returns.
    pub fn add(&self, mut meta: DeadLetter, raw: &[u8]) -> Result<u64, DeadLetterError> {
        let mut g = self.inner.lock();
        meta.id = g.next_id;
        meta.raw_bytes = raw.len() as u64;
        let header = serde_json::to_vec(&meta).map_err(|e| DeadLetterError::Corrupt {
            path: self.dir.clone(),
            reason: format!("entry does not serialize: {e}"),
        })?;
        self.roll(&mut g, meta.id)?;
        let mut buf = Vec::with_capacity(header.len() + raw.len() + 16);
        record::encode_with(&mut buf, |out| {
            out.push(0);
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(raw);
        });
        self.append(&mut g, &buf)?;
        let raw_offset = g.current_len + record::FRAME_LEN as u64 + 5 + header.len() as u64;
        g.current_len += buf.len() as u64;
        let (first, len) = (g.current_first, g.current_len);
        g.files.insert(first, len);
        g.next_id += 1;
        let id = meta.id;
        g.entries.insert(id, Located { meta, file: first, raw_offset });
        self.enforce_bound(&mut g)?;
        Ok(id)
    }

    /// Starts a new current file when the current one is full, or when a failed purge or
    /// erasure may have left a newer file: named past every file (an erasure's rewrite is
    /// named after the next id).
    fn roll(&self, g: &mut Inner, id: u64) -> Result<(), DeadLetterError> {
        if g.current_len < FILE_BYTES && g.roll_past.is_none() {
            return Ok(());
        }
        let past = g.files.keys().next_back().copied().max(g.roll_past).map_or(0, |l| l + 1);
        let first = id.max(past);
        let (f, len) = create(self.fs.as_ref(), &self.dir, first)?;
        g.current = f;
        g.torn = false;
        g.current_first = first;
        g.current_len = len;
        g.files.insert(first, len);
        g.roll_past = None;
        Ok(())
    }

    /// Appends records durably to the current file. If the write or the sync fails (a full
    /// disk), the file is cut back to its last complete record, so that the entries
    /// written after it stay readable at the next start.
    fn append(&self, g: &mut Inner, buf: &[u8]) -> Result<(), DeadLetterError> {
        let path = file_path(&self.dir, g.current_first);
        // A failed write whose cut-back failed too: cut it before writing after it.
        if g.torn {
            let good = g.current_len;
            g.current.set_len(good).and_then(|()| g.current.sync_all()).map_err(io(&path))?;
            g.torn = false;
        }
        if let Err(e) = g.current.write_all(buf).and_then(|()| g.current.sync_data()) {
            let good = g.current_len;
            g.torn = true;
            match g.current.set_len(good).and_then(|()| g.current.sync_all()) {
                Ok(()) => g.torn = false,
                Err(u) => {
                    tracing::error!(error = %u, path = %path.display(), "a failed dead-letter write could not be cut off yet")
                }
            }
            return Err(DeadLetterError::Io { path, source: e });
        }
        Ok(())
    }

    fn enforce_bound(&self, g: &mut Inner) -> Result<(), DeadLetterError> {
        while g.files.values().sum::<u64>() > self.max_bytes && g.files.len() > 1 {
            let Some((&first, _)) = g.files.iter().next() else { break };
            if first == g.current_first {
                break;
            }
            let path = file_path(&self.dir, first);
            self.fs.remove_file(&path).map_err(io(&path))?;
            g.files.remove(&first);
            let doomed: Vec<u64> = g.entries.iter().filter(|(_, l)| l.file == first).map(|(id, _)| *id).collect();
            g.dropped += doomed.len() as u64;
            for id in doomed {
                g.entries.remove(&id);
            }
            tracing::warn!(path = %path.display(), "dead-letter store full: dropped its oldest file");
        }
        Ok(())
    }

    /// Entries, oldest first, after `after` (an id), at most `limit`.
    pub fn list(&self, after: u64, limit: usize) -> Vec<DeadLetter> {
        self.inner.lock().entries.range(after + 1..).take(limit).map(|(_, l)| l.meta.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped because the store was full, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }

    /// An entry with its raw bytes.
    pub fn get(&self, id: u64) -> Result<(DeadLetter, Vec<u8>), DeadLetterError> {
        let (meta, file, offset) = {
            let g = self.inner.lock();
            let l = g.entries.get(&id).ok_or(DeadLetterError::NotFound(id))?;
            (l.meta.clone(), l.file, l.raw_offset)
        };
        let path = file_path(&self.dir, file);
        let mut f = File::open(&path).map_err(io(&path))?;
        f.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
        let mut raw = vec![0u8; meta.raw_bytes as usize];
        f.read_exact(&mut raw).map_err(io(&path))?;
        Ok((meta, raw))
    }

    /// Forgets an entry (after a replay, or on purge). Durable when this returns.
    pub fn remove(&self, id: u64) -> Result<(), DeadLetterError> {
        let mut g = self.inner.lock();
        if !g.entries.contains_key(&id) {
            return Err(DeadLetterError::NotFound(id));
        }
        let mut buf = Vec::new();
        record::encode_with(&mut buf, |out| {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
        });
        let next = g.next_id;
        self.roll(&mut g, next)?;
        self.append(&mut g, &buf)?;
        g.current_len += buf.len() as u64;
        let (first, len) = (g.current_first, g.current_len);
        g.files.insert(first, len);
        g.entries.remove(&id);
        Ok(())
    }

    /// Deletes the entries `doomed` picks (given the entry and its raw bytes) and rewrites
    /// the store as one new file of the others, so no byte of a deleted entry (nor of an
    /// entry removed earlier) stays on disk. Returns how many were deleted.
    pub fn erase_matching(&self, doomed: impl Fn(&DeadLetter, &[u8]) -> bool) -> Result<usize, DeadLetterError> {
        let mut g = self.inner.lock();
        let mut keep: Vec<(DeadLetter, Vec<u8>)> = Vec::new();
        let mut erased = 0;
        for l in g.entries.values() {
            let path = file_path(&self.dir, l.file);
            let mut f = File::open(&path).map_err(io(&path))?;
            f.seek(SeekFrom::Start(l.raw_offset)).map_err(io(&path))?;
            let mut raw = vec![0u8; l.meta.raw_bytes as usize];
            f.read_exact(&mut raw).map_err(io(&path))?;
            if doomed(&l.meta, &raw) {
                erased += 1;
            } else {
                keep.push((l.meta.clone(), raw));
            }
        }
        // Named past every file, so that the rename replaces none of them.
        let first = g.next_id.max(g.files.keys().next_back().map_or(0, |l| l + 1));
        g.next_id = first;
        let mut buf = record::header(MAGIC, VERSION).to_vec();
        // Whatever older file a power cut brings back, its entries stay gone.
        record::encode_with(&mut buf, |out| out.push(2));
        let mut entries = BTreeMap::new();
        for (meta, raw) in keep {
            let header = serde_json::to_vec(&meta).map_err(|e| DeadLetterError::Corrupt {
                path: self.dir.clone(),
                reason: format!("entry does not serialize: {e}"),
            })?;
            let raw_offset = buf.len() as u64 + record::FRAME_LEN as u64 + 5 + header.len() as u64;
            record::encode_with(&mut buf, |out| {
                out.push(0);
                out.extend_from_slice(&(header.len() as u32).to_le_bytes());
                out.extend_from_slice(&header);
                out.extend_from_slice(&raw);
            });
            entries.insert(meta.id, Located { meta, file: first, raw_offset });
        }
        let path = file_path(&self.dir, first);
        let tmp = path.with_extension("rewrite");
        let written = (|| {
            let mut f = self.fs.create(&tmp).map_err(io(&tmp))?;
            f.write_all(&buf).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
            drop(f);
            self.fs.rename(&tmp, &path).map_err(io(&path))?;
            // Its name durable before anything is appended to it and acknowledged.
            self.fs.sync_dir(&self.dir).map_err(io(&self.dir))?;
            self.fs.append(&path).map_err(io(&path))
        })();
        // The new file is the store from here, before any old file is deleted: what is
        // added next must never go to a file that is about to be deleted, nor before it.
        let current = match written {
            Ok(f) => f,
            Err(e) => {
                g.roll_past = Some(first);
                return Err(e);
            }
        };
        let old: Vec<u64> = g.files.keys().copied().filter(|f| *f != first).collect();
        g.current = current;
        g.torn = false;
        g.current_first = first;
        g.current_len = buf.len() as u64;
        g.files.clear();
        g.files.insert(first, buf.len() as u64);
        g.entries = entries;
        self.delete_files(&mut g, &old)?;
        Ok(erased)
    }

    /// Deletes old files (no longer listed) and makes that durable.
    fn delete_files(&self, g: &mut Inner, firsts: &[u64]) -> Result<(), DeadLetterError> {
        g.doomed.extend_from_slice(firsts);
        // Oldest first: a removal is recorded in a newer file than the entry it removes, so
        // a crash part-way must never leave the entry without its removal.
        g.doomed.sort_unstable();
        g.doomed.dedup();
        while let Some(first) = g.doomed.first().copied() {
            let p = file_path(&self.dir, first);
            match self.fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
            g.doomed.remove(0);
        }
        self.fs.sync_dir(&self.dir).map_err(io(&self.dir))
    }

    /// Deletes every entry and file; returns how many entries there were.
    pub fn purge(&self) -> Result<usize, DeadLetterError> {
        let mut g = self.inner.lock();
        let n = g.entries.len();
        // Named past every file, so that it replaces none of them (the current one may be
        // named after the next id already).
        let next = g.next_id.max(g.files.keys().next_back().map_or(0, |l| l + 1));
        g.next_id = next;
        // The new file begins with a clear, durable with it: from here the purge holds even
        // if the old files' deletion is lost to a power cut.
        let mut content = record::header(MAGIC, VERSION).to_vec();
        record::encode_with(&mut content, |out| out.push(2));
        let (f, len) = match create_with(self.fs.as_ref(), &self.dir, next, &content) {
            Ok(made) => made,
            Err(e) => {
                g.roll_past = Some(next);
                return Err(e);
            }
        };
        // As in an erasure: the new file first, then the old ones go.
        let old: Vec<u64> = g.files.keys().copied().filter(|f| *f != next).collect();
        g.files.clear();
        g.files.insert(next, len);
        g.current = f;
        g.torn = false;
        g.current_first = next;
        g.current_len = len;
        g.entries.clear();
        self.delete_files(&mut g, &old)?;
        Ok(n)
    }
}

fn create(fs: &dyn Fs, dir: &Path, first: u64) -> Result<(FsFile, u64), DeadLetterError> {
    create_with(fs, dir, first, &record::header(MAGIC, VERSION))
}

/// A new file holding `content` (a header and records), synced with its directory entry.
fn create_with(fs: &dyn Fs, dir: &Path, first: u64, content: &[u8]) -> Result<(FsFile, u64), DeadLetterError> {
    let path = file_path(dir, first);
    let f = crate::fs::create_synced(fs, &path, content).map_err(io(&path))?;
    fs.sync_dir(dir).map_err(io(dir))?;
    Ok((f, content.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Found by the power-loss simulation: the file an erasure rewrites is named after the
    /// next id, which the next file made (at open) must not reuse.
    #[test]
    fn entries_kept_by_an_erasure_survive_two_restarts() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("open");
        d.add(letter("a"), b"erased").expect("add");
        let kept = d.add(letter("b"), b"kept").expect("add");
        d.erase_matching(|_, raw| raw == b"erased").expect("erase");
        drop(d);
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("reopen");
        let later = d.add(letter("c"), b"later").expect("add");
        drop(d);
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("reopen again");
        assert_eq!(d.get(kept).expect("kept").1, b"kept");
        assert_eq!(d.get(later).expect("later").1, b"later");
    }

    #[test]
    fn erasing_entries_leaves_no_byte_of_them_and_keeps_the_others_readable() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("open");
        let gone = d.add(letter("a"), b"secret-of-erased-patient").expect("add");
        let kept = d.add(letter("b"), b"other patient").expect("add");
        let replayed = d.add(letter("c"), b"removed-earlier-bytes").expect("add");
        d.remove(replayed).expect("remove");
        assert_eq!(d.erase_matching(|_, raw| raw.starts_with(b"secret")).expect("erase"), 1);
        let mut all = Vec::new();
        for e in fs::read_dir(dir.path()).expect("dir") {
            all.extend(fs::read(e.expect("entry").path()).expect("read"));
        }
        for needle in [&b"secret-of-erased"[..], b"removed-earlier"] {
            assert!(
                !all.windows(needle.len()).any(|w| w == needle),
                "{:?} left on disk",
                String::from_utf8_lossy(needle)
            );
        }
        assert!(matches!(d.get(gone), Err(DeadLetterError::NotFound(_))));
        assert_eq!(d.get(kept).expect("kept").1, b"other patient");
        let next = d.add(letter("d"), b"later").expect("add after");
        assert!(next > replayed);
        drop(d);
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(d.list(0, 10).iter().map(|l| l.id).collect::<Vec<_>>(), vec![kept, next]);
    }

    fn letter(source: &str) -> DeadLetter {
        DeadLetter {
            id: 0,
            time_ms: 1,
            source: source.into(),
            format: "application/x-ndjson".into(),
            reason: "1 of 2 items refused".into(),
            items: vec![RefusedItem { index: 1, code: "unknown_unit".into(), message: "unit \"x\"".into() }],
            context: BTreeMap::new(),
            raw_bytes: 0,
        }
    }

    #[test]
    fn entries_survive_reopen_and_removal_is_durable() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, b) = {
            let d = DeadLetters::open(dir.path(), 1 << 30).expect("open");
            let a = d.add(letter("api/samples"), b"{\"bad\": 1}").expect("add");
            let b = d.add(letter("line_protocol"), b"m v=x").expect("add");
            d.remove(a).expect("remove");
            (a, b)
        };
        let d = DeadLetters::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(d.list(0, 10).iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
        let (meta, raw) = d.get(b).expect("get");
        assert_eq!((meta.source.as_str(), raw.as_slice()), ("line_protocol", b"m v=x".as_slice()));
        assert!(matches!(d.get(a), Err(DeadLetterError::NotFound(_))));
        let c = d.add(letter("x"), b"y").expect("add");
        assert!(c > b, "ids never repeat");
        assert_eq!(d.purge().expect("purge"), 2);
        drop(d);
        assert!(DeadLetters::open(dir.path(), 1 << 30).expect("reopen").is_empty());
    }

    #[test]
    fn the_store_is_bounded_by_dropping_its_oldest_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = DeadLetters::open(dir.path(), 3 * FILE_BYTES).expect("open");
        let raw = vec![b'x'; 1 << 20];
        for _ in 0..40 {
            d.add(letter("api/samples"), &raw).expect("add");
        }
        let on_disk: u64 =
            fs::read_dir(dir.path()).expect("ls").flatten().map(|e| e.metadata().expect("m").len()).sum();
        assert!(on_disk <= 3 * FILE_BYTES + (2 << 20), "bounded: {on_disk}");
        assert!(d.dropped() > 0);
        assert_eq!(d.len() as u64 + d.dropped(), 40, "every entry is kept or counted as dropped");
        let newest = d.list(0, 100).last().map(|e| e.id).expect("entries");
        assert_eq!(d.get(newest).expect("get").1, raw);
    }
}
