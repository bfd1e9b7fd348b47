//! The lake's remote tier: the interface to an object store (S3, Azure Blob, Google Cloud
//! Storage, a directory). The store uploads settled segments through it, fetches cold ones
//! back, and deletes what compaction, retention and erasure remove. It is implemented
//! outside this crate (`vitals-bucket`), so storage itself does no network I/O.
//!
//! Object keys are segment paths relative to the lake
//! (`metric=/year=/month=/day=/patient=/part-*.parquet`): the bucket holds the same
//! Hive-partitioned layout as the local lake, readable by DuckDB, Athena or Spark.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;

/// One object of the remote lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// Relative to the lake's prefix.
    pub key: String,
    pub bytes: u64,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
}

/// Why an object-store operation failed (after the implementation's own retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {key} at {location}: {reason}")]
pub struct RemoteError {
    pub op: &'static str,
    pub key: String,
    /// The lake's URL (never credentials).
    pub location: String,
    pub reason: String,
    /// The object does not exist.
    pub not_found: bool,
}

/// A remote lake. Every call blocks until done; each may be called from any thread,
/// including a thread of an async runtime.
pub trait Remote: Send + Sync + Debug {
    /// The lake's URL, for logs and errors.
    fn location(&self) -> String;
    /// Uploads a file as object `key`. An object is visible whole or not at all.
    fn put(&self, key: &str, file: &Path) -> Result<(), RemoteError>;
    /// Downloads object `key` into the file `dest` (created or replaced; not fsynced: the
    /// caller's cache can always fetch it again).
    fn get(&self, key: &str, dest: &Path) -> Result<(), RemoteError>;
    /// Deletes object `key`; deleting an object that is not there succeeds.
    fn delete(&self, key: &str) -> Result<(), RemoteError>;
    /// Every object under the lake's prefix.
    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError>;
}

/// Of one series-day's content after last write wins: how many rows, and a sum of a hash
/// of each (device, time, value). Two nodes that hold the same data compute the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub rows: u64,
    pub hash: u64,
}

/// A settled day of one series as the shared lake's catalog lists it (cluster mode).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LakeDay {
    pub patient: String,
    /// The metric's code.
    pub metric: String,
    pub day_ms: i64,
    /// The segments holding the day, as their writer's manifest has them (`path` is the
    /// object's key; an archive segment holds other days too).
    pub segments: Vec<crate::manifest::SegmentMeta>,
    pub fingerprint: Fingerprint,
}

impl LakeDay {
    /// The objects it lists.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.segments.iter().map(|s| s.path.as_str()).collect()
    }
}

/// Cluster mode's shared lake: which node writes whose part of it, and the catalog of
/// settled days that every node reads (kept in PostgreSQL by `vitals-server`).
///
/// The writer of a patient (the owner of the patient's bucket) uploads the settled days
/// and publishes them here; every other node adopts a published day once its own copy of
/// the day holds exactly the same content (same [`Fingerprint`]), dropping its local
/// files, and reads the day from the bucket. No node deletes an object the catalog lists:
/// an object no day lists any more is deleted after a grace period, so a node still
/// reading it has time to see the new list.
pub trait SharedLake: Send + Sync + Debug {
    /// Whether this node writes `patient`'s part of the lake now.
    fn writes(&self, patient: &str) -> bool;
    /// Records days, each replacing what the catalog said of it.
    fn publish(&self, days: &[LakeDay]) -> Result<(), RemoteError>;
    /// The catalog's entries of these (patient, metric code, day) it has.
    fn lookup(&self, days: &[(String, String, i64)]) -> Result<Vec<LakeDay>, RemoteError>;
    /// Forgets every day of a patient (erasure): their objects are deleted after the grace.
    fn remove_patient(&self, patient: &str) -> Result<(), RemoteError>;
    /// Forgets the days of a metric before `before_day_ms` (retention).
    fn expire(&self, metric: &str, before_day_ms: i64) -> Result<(), RemoteError>;
    /// Objects no day lists any more whose grace has passed (this node deletes them, then
    /// calls [`forget`](Self::forget)); empty unless this node is the one that deletes.
    fn due(&self, limit: usize) -> Result<Vec<String>, RemoteError>;
    fn forget(&self, keys: &[String]) -> Result<(), RemoteError>;
    /// Every key the catalog lists or has yet to delete, if this node runs the sweep of
    /// orphaned objects (one node does); `None` on the others.
    fn known(&self) -> Result<Option<BTreeSet<String>>, RemoteError>;
}
