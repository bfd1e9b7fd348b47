//! The log under a small store (alerts and their outbox, rules, cohorts): an append-only
//! file in the data directory on one node, the table every node shares in cluster mode.
//!
//! A store keeps its state in memory and changes it only through [`StoreLog::write`] and
//! [`StoreLog::refresh`], which hand it the records to apply in the log's order: on one
//! node, the record just written; in cluster mode, every record appended since the last
//! look, this node's and the others', so every node applies the same records in the same
//! order. [`StoreLog::rewrite`] replaces the whole log (compaction, a patient's erasure):
//! in cluster mode it starts with a reset that makes every node drop its state first.

use serde::Serialize;
use serde::de::DeserializeOwned;
use vitals_postgres::Records;
use vitals_postgres::records::Entry;
use vitals_storage::json_log::JsonLog;

/// What a store applies.
#[derive(Debug)]
pub enum Applied<T> {
    /// Forget the state: the records that follow are the whole log.
    Reset,
    Record(T),
}

/// A small store's log.
pub enum StoreLog {
    Local(JsonLog),
    /// Cluster mode: the log `name` of the shared table, and the last position applied.
    Shared {
        records: Records,
        name: &'static str,
        applied: u64,
    },
}

impl StoreLog {
    /// Writes `record` durably and applies what comes with it, in order.
    pub fn write<T: Serialize + DeserializeOwned>(
        &mut self,
        record: T,
        apply: impl FnMut(Applied<T>),
    ) -> Result<(), String> {
        match self {
            StoreLog::Local(log) => {
                log.append(&record).map_err(|e| e.to_string())?;
                let mut apply = apply;
                apply(Applied::Record(record));
                Ok(())
            }
            StoreLog::Shared { records, name, .. } => {
                let body = serde_json::to_string(&record).map_err(|e| e.to_string())?;
                records.append(name, &[body]).map_err(|e| e.to_string())?;
                self.refresh(apply)
            }
        }
    }

    /// Cluster mode: applies what was appended since the last look (nothing on one node).
    pub fn refresh<T: DeserializeOwned>(&mut self, mut apply: impl FnMut(Applied<T>)) -> Result<(), String> {
        let StoreLog::Shared { records, name, applied } = self else { return Ok(()) };
        loop {
            let batch = records.since(name, *applied, 1000).map_err(|e| e.to_string())?;
            let Some(&(last, _)) = batch.last() else { return Ok(()) };
            for (seq, entry) in batch {
                match entry {
                    Entry::Reset => apply(Applied::Reset),
                    Entry::Record(body) => apply(Applied::Record(
                        serde_json::from_str(&body).map_err(|e| format!("shared log {name} record {seq}: {e}"))?,
                    )),
                }
            }
            *applied = last;
        }
    }

    /// Replaces the log by `records` (the caller's state is already what they say).
    pub fn rewrite<T: Serialize>(&mut self, records: &[T]) -> Result<(), String> {
        match self {
            StoreLog::Local(log) => log.rewrite(records).map_err(|e| e.to_string()),
            StoreLog::Shared { records: shared, name, applied } => {
                let bodies = records.iter().map(serde_json::to_string).collect::<Result<Vec<String>, _>>();
                let bodies = bodies.map_err(|e| e.to_string())?;
                *applied = shared.reset(name, &bodies).map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }

    /// Bytes of the local file (0 for the shared log, which PostgreSQL keeps).
    pub fn len_bytes(&self) -> u64 {
        match self {
            StoreLog::Local(log) => log.len_bytes(),
            StoreLog::Shared { .. } => 0,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLog::Shared { .. })
    }
}
