//! The storage engine: write-ahead log, in-memory buffer, Parquet segments in a
//! Hive-partitioned lake, a manifest, compaction and retention.
//!
//! Only this crate opens files under the data directory.

pub mod buffer;
#[cfg(any(test, feature = "conformance"))]
pub mod checks;
pub mod data_dir;
pub mod dead_letter;
pub mod documents;
pub mod event_store;
pub mod fs;
pub mod json_log;
pub mod lake_ddl;
pub mod ledger;
pub mod log;
pub mod manifest;
pub mod record;
pub mod remote;
pub mod segment;
pub mod store;
pub mod wal;

pub use store::{
    DurableBatch, Erased, FEED_BATCH_SAMPLES, Latest, RawSeries, ReadRequest, SeriesRead, Store, StoreConfig,
    StoreError, StoreSizes, TierReport,
};
