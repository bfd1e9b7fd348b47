//! The lake's remote tier: the interface to an object store (S3, Azure Blob, Google Cloud
//! Storage, a directory). The store uploads settled segments through it, fetches cold ones
//! back, and deletes what compaction, retention and erasure remove. It is implemented
//! outside this crate (`vitals-bucket`), so storage itself does no network I/O.
//!
//! Object keys are segment paths relative to the lake
//! (`metric=/year=/month=/day=/patient=/part-*.parquet`): the bucket holds the same
//! Hive-partitioned layout as the local lake, readable by DuckDB, Athena or Spark.

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
