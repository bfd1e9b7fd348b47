//! The small stores' logs shared by every node: what one node keeps in an append-only file
//! (`vitals_storage::json_log`), a cluster keeps in one table, a log per name.
//!
//! Each node holds the store's state in memory, as on one node, and reads the records
//! other nodes appended since its last look ([`Records::since`]) before it answers. Appends
//! to one log are serialized by an advisory lock held until commit, so positions grow in
//! commit order and a reader that saw position `n` never misses a record below it. A
//! [`Records::reset`] (compaction, a patient's erasure) replaces the whole log in one
//! transaction, beginning with a reset marker that tells the other nodes to forget their
//! state before they apply what follows.

use std::sync::Arc;

use crate::leases::NOW_MS;
use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE records (
    seq BIGSERIAL PRIMARY KEY,
    log TEXT NOT NULL,
    reset BOOLEAN NOT NULL DEFAULT FALSE,
    body TEXT NOT NULL
);
CREATE INDEX records_by_log ON records (log, seq);
"];

/// The first key of the advisory locks of logs (the second is the log's name hashed).
const LOCK_SPACE: i32 = 0x7673_6c67;

/// Inserts `bodies` into `log`; the position of the last (`last` if there is none).
fn insert(
    tx: &mut postgres::Transaction<'_>,
    log: &str,
    bodies: &[String],
    mut last: i64,
) -> Result<i64, postgres::Error> {
    for body in bodies {
        last =
            tx.query_one("INSERT INTO records (log, body) VALUES ($1, $2) RETURNING seq", &[&log, body])?.try_get(0)?;
    }
    Ok(last)
}

/// The bucket leases a write depends on (see [`Records::append_fenced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node: String,
    /// (bucket, the epoch of the node's tenure).
    pub leases: Vec<(u16, i64)>,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Forget everything before: the records after are the whole log.
    Reset,
    Record(String),
}

/// Every shared log of one schema.
#[derive(Debug, Clone)]
pub struct Records {
    pool: Arc<Pool>,
}

impl Records {
    pub fn open(pool: Arc<Pool>, schema: &str) -> Result<Records, PgError> {
        crate::schema::migrate(&pool, schema, "records", STEPS)?;
        Ok(Records { pool })
    }

    /// Appends records to `log` in one transaction; returns the position of the last.
    pub fn append(&self, log: &str, bodies: &[String]) -> Result<u64, PgError> {
        self.append_fenced(log, bodies, None)
    }

    /// [`append`](Self::append), refused ([`PgError::Fenced`], nothing written) unless the
    /// fence's node still holds each of its buckets at its epoch, unexpired on the
    /// database's clock. The lease rows stay locked until the append commits, so a
    /// takeover cannot slip in between the check and the write: a late write of a node
    /// that lost its buckets never lands after the new owner's.
    pub fn append_fenced(&self, log: &str, bodies: &[String], fence: Option<&Fence>) -> Result<u64, PgError> {
        let held = self.pool.with(|c| {
            let mut tx = c.transaction()?;
            if let Some(f) = fence
                && !f.leases.is_empty()
            {
                let buckets: Vec<i32> = f.leases.iter().map(|(b, _)| i32::from(*b)).collect();
                let epochs: Vec<i64> = f.leases.iter().map(|(_, e)| *e).collect();
                let rows = tx.query(
                    &format!(
                        "SELECT bucket FROM bucket_leases
                         WHERE owner = $1 AND expires_ms > {NOW_MS}
                           AND (bucket, epoch) IN (SELECT * FROM unnest($2::int[], $3::bigint[]))
                         FOR SHARE"
                    ),
                    &[&f.node, &buckets, &epochs],
                )?;
                let held: Vec<u16> = rows
                    .iter()
                    .filter_map(|r| r.try_get::<_, i32>(0).ok())
                    .filter_map(|b| u16::try_from(b).ok())
                    .collect();
                let lost: Vec<u16> = f.leases.iter().map(|(b, _)| *b).filter(|b| !held.contains(b)).collect();
                if !lost.is_empty() {
                    tx.rollback()?;
                    return Ok(Err(lost));
                }
            }
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&LOCK_SPACE, &log])?;
            let last = insert(&mut tx, log, bodies, 0)?;
            tx.commit()?;
            Ok(Ok(u64::try_from(last).unwrap_or(0)))
        })?;
        held.map_err(|lost| PgError::Fenced {
            target: self.pool.target().to_owned(),
            node: fence.map(|f| f.node.clone()).unwrap_or_default(),
            buckets: lost,
        })
    }

    /// Replaces the whole of `log` by a reset marker and `bodies`; returns the last position.
    pub fn reset(&self, log: &str, bodies: &[String]) -> Result<u64, PgError> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&LOCK_SPACE, &log])?;
            tx.execute("DELETE FROM records WHERE log = $1", &[&log])?;
            let reset: i64 = tx
                .query_one("INSERT INTO records (log, reset, body) VALUES ($1, TRUE, '') RETURNING seq", &[&log])?
                .try_get(0)?;
            let last = insert(&mut tx, log, bodies, reset)?;
            tx.commit()?;
            Ok(u64::try_from(last).unwrap_or(0))
        })
    }

    /// Records of `log` after position `after`, in order, at most `limit`.
    pub fn since(&self, log: &str, after: u64, limit: usize) -> Result<Vec<(u64, Entry)>, PgError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.pool.with(|c| {
            c.query(
                "SELECT seq, reset, body FROM records WHERE log = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&log, &after, &limit],
            )
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let seq: i64 = r.try_get(0).map_err(|e| PgError::db(self.pool.target(), e))?;
            let reset: bool = r.try_get(1).map_err(|e| PgError::db(self.pool.target(), e))?;
            let body: String = r.try_get(2).map_err(|e| PgError::db(self.pool.target(), e))?;
            out.push((u64::try_from(seq).unwrap_or(0), if reset { Entry::Reset } else { Entry::Record(body) }));
        }
        Ok(out)
    }
}
