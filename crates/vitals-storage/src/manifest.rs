//! The manifest: which segments exist and how far the log has been flushed.
//!
//! An append-only log of edits (record format, magic `VMAN`, JSON payloads) named
//! `manifest/MANIFEST-<n>`, with `manifest/CURRENT` naming the live one. A segment becomes
//! visible to recovery exactly when the edit adding it is fsynced; when the log grows, a
//! snapshot edit is written to a new log and `CURRENT` is switched atomically (write,
//! fsync, rename, fsync directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::fs::{FsFile, FsRef};
use crate::record::{self, Tail};

const MAGIC: [u8; 4] = *b"VMAN";
const VERSION: u32 = 1;
const SNAPSHOT_AFTER_EDITS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io { path: path.to_owned(), source }
}

/// The newest point of one device in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPoint {
    pub device: Option<String>,
    pub time_ms: i64,
    pub value: f64,
}

/// One segment file of the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: u64,
    pub metric: String,
    pub patient: String,
    /// Start of the UTC day of the partition (of an archive segment: its first day).
    pub day_ms: i64,
    /// An archive segment (compacted across days, under `archive/`): the start of the last
    /// UTC day it holds; `None` for a day partition's segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_day_ms: Option<i64>,
    /// Path relative to the lake directory.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_ms: i64,
    pub max_ms: i64,
    /// Precedence on equal (series, time): higher wins. The WAL seq the data was flushed at;
    /// a compacted segment keeps the highest order of its inputs.
    pub order: u64,
    pub last: Vec<LastPoint>,
    /// Uploaded to the remote lake (the object's key is `path`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// Only in the remote lake: the local copy is gone (the day left the hot tier), and
    /// reads fetch the object into the local cache.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
    /// Cluster mode: adopted from the shared lake's catalog (another node wrote it; always
    /// `remote` and `cold`). Its `order` is the writer's, so any segment of this node's own
    /// takes precedence over it; this node never deletes its object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
}

impl SegmentMeta {
    /// The start of the last UTC day the segment may hold rows of.
    pub fn last_day_ms(&self) -> i64 {
        self.until_day_ms.unwrap_or(self.day_ms)
    }

    /// The UTC days (their starts) the segment may hold rows of: one, or an archive's span.
    pub fn days(&self) -> impl Iterator<Item = i64> + use<> {
        let (first, last) = (self.day_ms, self.last_day_ms());
        (0..).map(move |i: i64| first + i * vitals_core::time::MS_PER_DAY).take_while(move |d| *d <= last)
    }

    /// Which of two segments wins on an equal (series, time): the higher. A foreign
    /// segment's order is another node's numbering, below every segment of this node's.
    pub fn precedence(&self) -> (bool, u64) {
        (!self.foreign, self.order)
    }

    /// Compacted across days (under `archive/`).
    pub fn is_archive(&self) -> bool {
        self.until_day_ms.is_some()
    }
}

/// One atomic change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<SegmentMeta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushed_seq: Option<u64>,
    /// Ids below this were handed out (filled in by [`Manifest::commit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_segment_id: Option<u64>,
}

/// The state the edits add up to.
#[derive(Debug, Clone, Default)]
pub struct ManifestState {
    /// Shared with the store's index (one copy of each segment's metadata in memory).
    pub segments: BTreeMap<u64, Arc<SegmentMeta>>,
    /// Every WAL record with a seq at or below this is in segments.
    pub flushed_seq: u64,
    pub next_segment_id: u64,
}

impl ManifestState {
    fn apply(&mut self, e: &Edit) {
        for id in &e.remove {
            self.segments.remove(id);
        }
        for s in &e.add {
            self.next_segment_id = self.next_segment_id.max(s.id + 1);
            self.segments.insert(s.id, Arc::new(s.clone()));
        }
        if let Some(seq) = e.flushed_seq {
            self.flushed_seq = self.flushed_seq.max(seq);
        }
        if let Some(n) = e.next_segment_id {
            self.next_segment_id = self.next_segment_id.max(n);
        }
    }
}

#[derive(Debug)]
pub struct Manifest {
    fs: FsRef,
    dir: PathBuf,
    file: FsFile,
    number: u64,
    edits: usize,
    pub state: ManifestState,
    /// The length of the log up to its last complete, durable edit.
    good_len: u64,
    /// Set when a failed edit could not be cut off again: no further edit is written.
    failed: Option<String>,
    /// Opened on a full disk, with no room for a new log: the next edit first writes one
    /// (a snapshot), never appending after what was only read.
    stale: bool,
}

impl Manifest {
    pub fn open(fs: &FsRef, dir: &Path) -> Result<Manifest, ManifestError> {
        crate::fs::create_dir_all_synced(fs.as_ref(), dir).map_err(io(dir))?;
        let current = dir.join("CURRENT");
        let number = match std::fs::read_to_string(&current) {
            Ok(s) => s.trim().strip_prefix("MANIFEST-").and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| {
                ManifestError::Corrupt { path: current.clone(), reason: format!("bad content {s:?}") }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Logs without the file that names the live one: a first start cut off
                // before CURRENT was written leaves a log of the empty state, which is
                // safe to start over from; anything else is refused rather than guessed.
                let logs: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(io(dir))?
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
                    .map(|e| e.path())
                    .collect();
                for log in &logs {
                    if !holds_only_the_empty_state(log)? {
                        return Err(ManifestError::Corrupt {
                            path: current,
                            reason: format!(
                                "missing beside {} manifest log(s); restore it (it names the live MANIFEST-n)",
                                logs.len()
                            ),
                        });
                    }
                }
                for log in &logs {
                    tracing::warn!(path = %log.display(), "removing the log of a first start that did not complete");
                    fs.remove_file(log).map_err(io(log))?;
                }
                let mut m = Manifest::create(fs, dir, 1, &ManifestState { next_segment_id: 1, ..Default::default() })?;
                m.edits = 0;
                return Ok(m);
            }
            Err(e) => return Err(ManifestError::Io { path: current, source: e }),
        };
        let path = log_path(dir, number);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let scan = record::scan(&bytes, MAGIC, VERSION)
            .map_err(|e| ManifestError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let mut state = ManifestState { next_segment_id: 1, ..Default::default() };
        for (offset, payload) in &scan.records {
            let edit: Edit = serde_json::from_slice(payload).map_err(|e| ManifestError::Corrupt {
                path: path.clone(),
                reason: format!("edit at offset {offset}: {e}"),
            })?;
            state.apply(&edit);
        }
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { offset } => {
                tracing::warn!(path = %path.display(), offset, "dropping torn last manifest edit (never committed)");
                crate::fs::cut_record_file(fs.as_ref(), &path, offset, MAGIC, VERSION).map_err(io(&path))?;
            }
            Tail::Corrupt { offset, reason } => {
                return Err(ManifestError::Corrupt {
                    path,
                    reason: format!("corrupt edit at offset {offset}: {reason}"),
                });
            }
        }
        // Edits go to a new log holding the state as read, never after what was only read:
        // the end of the log may be an edit whose sync failed, still in the page cache but
        // never on the disk, and an edit written after it would then sit behind damage.
        // On a full disk there may be no room for it: the state is read, and the first edit
        // writes the new log first (it waits for room).
        match Manifest::create(fs, dir, number + 1, &state) {
            Ok(mut m) => {
                if let Err(e) = fs.remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing the previous manifest log");
                }
                m.edits = 1;
                Ok(m)
            }
            Err(ManifestError::Io { source, .. }) if source.kind() == std::io::ErrorKind::StorageFull => {
                tracing::warn!("no room for a new manifest log: the first edit waits for room");
                let named = std::fs::read_to_string(&current).ok();
                let live = if named.as_deref().map(str::trim) == Some(&format!("MANIFEST-{:06}", number + 1)) {
                    number + 1
                } else {
                    number
                };
                let path = log_path(dir, live);
                fs.sync_dir(dir).map_err(io(dir))?;
                let file = fs.append(&path).map_err(io(&path))?;
                let good_len = file.len().map_err(io(&path))?;
                let edits = if live == number { scan.records.len() } else { 1 };
                Ok(Manifest {
                    fs: fs.clone(),
                    dir: dir.to_owned(),
                    file,
                    number: live,
                    edits,
                    state,
                    good_len,
                    failed: None,
                    stale: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a new log holding `state` as one edit and points CURRENT at it.
    fn create(fs: &FsRef, dir: &Path, number: u64, state: &ManifestState) -> Result<Manifest, ManifestError> {
        let path = log_path(dir, number);
        let mut bytes = record::header(MAGIC, VERSION).to_vec();
        let snapshot = Edit {
            add: state.segments.values().map(|s| SegmentMeta::clone(s)).collect(),
            remove: Vec::new(),
            flushed_seq: Some(state.flushed_seq),
            next_segment_id: Some(state.next_segment_id),
        };
        let payload = serde_json::to_vec(&snapshot)
            .map_err(|e| ManifestError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        record::encode(&mut bytes, &payload);
        let f = crate::fs::create_synced(fs.as_ref(), &path, &bytes).map_err(io(&path))?;
        let good_len = f.len().map_err(io(&path))?;
        // CURRENT names the live log; replacing it is atomic (and syncs the directory,
        // which makes the new log's entry durable too).
        let current = dir.join("CURRENT");
        crate::fs::replace(fs.as_ref(), &current, format!("MANIFEST-{number:06}\n").as_bytes())
            .map_err(io(&current))?;
        Ok(Manifest {
            fs: fs.clone(),
            dir: dir.to_owned(),
            file: f,
            number,
            edits: 1,
            state: state.clone(),
            good_len,
            failed: None,
            stale: false,
        })
    }

    /// Makes an edit durable, then applies it.
    pub fn commit(&mut self, mut edit: Edit) -> Result<(), ManifestError> {
        edit.next_segment_id = Some(self.state.next_segment_id);
        let path = log_path(&self.dir, self.number);
        let payload = serde_json::to_vec(&edit)
            .map_err(|e| ManifestError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let mut bytes = Vec::with_capacity(payload.len() + record::FRAME_LEN);
        record::encode(&mut bytes, &payload);
        if let Some(why) = &self.failed {
            return Err(ManifestError::Io { path, source: std::io::Error::other(why.clone()) });
        }
        if self.stale {
            self.snapshot()?;
            return self.commit(edit);
        }
        if let Err(e) = self.file.write_all(&bytes).and_then(|()| self.file.sync_data()) {
            // Cut back to the last complete edit, so the log stays readable; if that fails,
            // refuse every further edit.
            let good = self.good_len;
            let undone = self.file.set_len(good).and_then(|()| self.file.sync_all());
            if let Err(u) = undone {
                self.failed = Some(format!("a failed edit could not be undone ({u}); restart to recover"));
            }
            return Err(ManifestError::Io { path, source: e });
        }
        self.good_len += bytes.len() as u64;
        self.state.apply(&edit);
        self.edits += 1;
        if self.edits >= SNAPSHOT_AFTER_EDITS {
            self.snapshot()?;
        }
        Ok(())
    }

    /// Rewrites the state as a snapshot in a new log and deletes the old log, so that no
    /// earlier edit (naming removed segments) remains on disk.
    pub fn snapshot(&mut self) -> Result<(), ManifestError> {
        let next = Manifest::create(&self.fs, &self.dir, self.number + 1, &self.state)?;
        let old = log_path(&self.dir, self.number);
        *self = next;
        self.fs.remove_file(&old).map_err(io(&old))
    }

    /// Reserves `n` segment ids (made durable by the edit that adds the segments).
    pub fn allocate_ids(&mut self, n: u64) -> u64 {
        let first = self.state.next_segment_id;
        self.state.next_segment_id += n;
        first
    }
}

/// Whether a manifest log (torn or not) holds nothing but a fresh store's state.
fn holds_only_the_empty_state(path: &Path) -> Result<bool, ManifestError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let Ok(scan) = record::scan(&bytes, MAGIC, VERSION) else { return Ok(false) };
    if matches!(scan.tail, Tail::Corrupt { .. }) {
        return Ok(false);
    }
    let mut state = ManifestState::default();
    for (_, payload) in &scan.records {
        let Ok(edit) = serde_json::from_slice::<Edit>(payload) else { return Ok(false) };
        state.apply(&edit);
    }
    Ok(state.segments.is_empty() && state.flushed_seq == 0)
}

fn log_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("MANIFEST-{number:06}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    #[test]
    fn manifest_logs_without_current_are_refused_not_restarted() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut m = Manifest::open(&crate::fs::real(), dir.path()).expect("fresh");
        m.commit(Edit { add: vec![seg(1)], ..Edit::default() }).expect("commit");
        drop(m);
        std::fs::remove_file(dir.path().join("CURRENT")).expect("lose CURRENT");
        let err = Manifest::open(&crate::fs::real(), dir.path()).expect_err("refused");
        assert!(err.to_string().contains("missing beside 1 manifest log(s)"), "{err}");
        assert!(!dir.path().join("CURRENT").exists(), "nothing was started over");
    }

    #[test]
    fn a_first_start_cut_off_before_current_starts_over() {
        let dir = tempfile::tempdir().expect("tmp");
        drop(Manifest::open(&crate::fs::real(), dir.path()).expect("fresh"));
        std::fs::remove_file(dir.path().join("CURRENT")).expect("cut before CURRENT");
        let m = Manifest::open(&crate::fs::real(), dir.path()).expect("starts over");
        assert!(m.state.segments.is_empty());
        assert!(dir.path().join("CURRENT").exists());
    }

    use super::*;

    fn seg(id: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            metric: "heart_rate".into(),
            patient: "p".into(),
            day_ms: 0,
            until_day_ms: None,
            path: format!("x/part-{id}.parquet"),
            rows: 1,
            bytes: 1,
            min_ms: 0,
            max_ms: 0,
            order: id,
            last: vec![],
            remote: false,
            cold: false,
            foreign: false,
        }
    }

    #[test]
    fn edits_survive_reopen_and_snapshots() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut m = Manifest::open(&crate::fs::real(), dir.path()).expect("open");
            for i in 1..=(SNAPSHOT_AFTER_EDITS as u64 + 10) {
                let id = m.allocate_ids(1);
                assert_eq!(id, i);
                let remove = if i > 2 { vec![i - 2] } else { vec![] };
                m.commit(Edit { add: vec![seg(id)], remove, flushed_seq: Some(i * 10), next_segment_id: None })
                    .expect("commit");
            }
            assert!(m.number > 1, "a snapshot was taken");
        }
        let m = Manifest::open(&crate::fs::real(), dir.path()).expect("reopen");
        let n = SNAPSHOT_AFTER_EDITS as u64 + 10;
        assert_eq!(m.state.segments.keys().copied().collect::<Vec<_>>(), vec![n - 1, n]);
        assert_eq!(m.state.flushed_seq, n * 10);
        assert_eq!(m.state.next_segment_id, n + 1);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 2, "old logs are deleted");
    }
}
