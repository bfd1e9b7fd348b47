//! Who owns which patient bucket: leases in PostgreSQL, so that each patient's rules run
//! on exactly one node at a time and a dead node's buckets move to the others.
//!
//! Every node calls [`Leases::heartbeat`] well within the lease's time to live. One
//! transaction then: records the node as alive; renews its leases; takes free or expired
//! buckets up to its fair share (the buckets divided by the live nodes, rounded up); and
//! gives back what it holds beyond that share, so a node that joins gets buckets within a
//! heartbeat or two. Time is the database's clock, never a node's, so skewed clocks cannot
//! make two nodes believe they own a bucket; and every takeover increments the bucket's
//! `epoch`, a fencing token a store can check so that a late write of the previous owner
//! is refused.
//!
//! A node must stop working on a bucket when its lease may have run out: [`Owned::until`]
//! is measured on the node's monotonic clock from before the heartbeat was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE cluster_nodes (id TEXT PRIMARY KEY, address TEXT NOT NULL, seen_ms BIGINT NOT NULL);
CREATE TABLE bucket_leases (
    bucket INTEGER PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_ms BIGINT NOT NULL DEFAULT 0
);
"];

/// The database's clock in milliseconds since the epoch.
pub(crate) const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// A bucket a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub bucket: u16,
    /// Incremented at every change of owner: the fencing token of this tenure.
    pub epoch: i64,
}

/// What one heartbeat found.
#[derive(Debug, Clone)]
pub struct Tenure {
    /// The buckets this node holds, by number.
    pub owned: Vec<Owned>,
    /// Nodes seen alive within the time to live (this one included).
    pub live_nodes: usize,
    /// Until when (this node's monotonic clock) the leases surely hold: the heartbeat's
    /// start plus the time to live, less a margin for clock rate differences.
    pub until: Instant,
}

/// The bucket leases of one cluster.
#[derive(Debug)]
pub struct Leases {
    pool: Arc<Pool>,
    buckets: u16,
    ttl: Duration,
}

impl Leases {
    /// Opens the lease table for `buckets` buckets (creating it and its rows if needed).
    pub fn open(pool: Arc<Pool>, schema: &str, buckets: u16, ttl: Duration) -> Result<Leases, PgError> {
        crate::schema::migrate(&pool, schema, "leases", STEPS)?;
        let n = i32::from(buckets.max(1));
        pool.with(|c| {
            c.execute(
                "INSERT INTO bucket_leases (bucket) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                &[&n],
            )
        })?;
        Ok(Leases { pool, buckets: buckets.max(1), ttl })
    }

    /// Renews this node's leases, takes its fair share, gives back the excess.
    pub fn heartbeat(&self, node: &str, address: &str) -> Result<Tenure, PgError> {
        let started = Instant::now();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let buckets = i64::from(self.buckets);
        let (owned, live) = self.pool.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                &format!(
                    "INSERT INTO cluster_nodes (id, address, seen_ms) VALUES ($1, $2, {NOW_MS})
                     ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_ms = excluded.seen_ms"
                ),
                &[&node, &address],
            )?;
            // Nodes gone for a long time leave the table (they are not counted either way).
            tx.execute(&format!("DELETE FROM cluster_nodes WHERE seen_ms < {NOW_MS} - $1::bigint * 20"), &[&ttl_ms])?;
            let live: i64 = tx
                .query_one(
                    &format!("SELECT count(*) FROM cluster_nodes WHERE seen_ms >= {NOW_MS} - $1::bigint"),
                    &[&ttl_ms],
                )?
                .try_get(0)?;
            let fair = (buckets + live.max(1) - 1) / live.max(1);
            tx.execute(
                &format!("UPDATE bucket_leases SET expires_ms = {NOW_MS} + $2::bigint WHERE owner = $1"),
                &[&node, &ttl_ms],
            )?;
            let mine: i64 =
                tx.query_one("SELECT count(*) FROM bucket_leases WHERE owner = $1", &[&node])?.try_get(0)?;
            if mine > fair {
                // The highest-numbered first, so that a node keeps a stable set.
                tx.execute(
                    "UPDATE bucket_leases SET owner = NULL, expires_ms = 0 WHERE bucket IN
                       (SELECT bucket FROM bucket_leases WHERE owner = $1 ORDER BY bucket DESC LIMIT $2::bigint)",
                    &[&node, &(mine - fair)],
                )?;
            } else if mine < fair {
                tx.execute(
                    &format!(
                        "UPDATE bucket_leases SET owner = $1, epoch = epoch + 1, expires_ms = {NOW_MS} + $2::bigint
                         WHERE bucket IN (SELECT bucket FROM bucket_leases
                                          WHERE owner IS NULL OR expires_ms < {NOW_MS}
                                          ORDER BY bucket LIMIT $3::bigint FOR UPDATE SKIP LOCKED)"
                    ),
                    &[&node, &ttl_ms, &(fair - mine)],
                )?;
            }
            let rows =
                tx.query("SELECT bucket, epoch FROM bucket_leases WHERE owner = $1 ORDER BY bucket", &[&node])?;
            tx.commit()?;
            let owned = rows
                .iter()
                .map(|r| {
                    Ok(Owned { bucket: u16::try_from(r.try_get::<_, i32>(0)?).unwrap_or(0), epoch: r.try_get(1)? })
                })
                .collect::<Result<Vec<Owned>, postgres::Error>>()?;
            Ok((owned, usize::try_from(live).unwrap_or(0)))
        })?;
        // A tenth of the time to live absorbs clock rate differences and the round trip.
        let until = started + self.ttl - self.ttl / 10;
        Ok(Tenure { owned, live_nodes: live, until })
    }

    /// Gives back every bucket of `node` at once (a clean shutdown), so others take them
    /// at their next heartbeat instead of after the time to live.
    pub fn release_all(&self, node: &str) -> Result<(), PgError> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("UPDATE bucket_leases SET owner = NULL, expires_ms = 0 WHERE owner = $1", &[&node])?;
            tx.execute("DELETE FROM cluster_nodes WHERE id = $1", &[&node])?;
            tx.commit()
        })
    }

    /// Every bucket's owner right now (`None`: free or expired), by bucket number.
    pub fn owners(&self) -> Result<Vec<Option<String>>, PgError> {
        let rows = self.pool.with(|c| {
            c.query(
                &format!(
                    "SELECT CASE WHEN expires_ms >= {NOW_MS} THEN owner END FROM bucket_leases
                     WHERE bucket < $1 ORDER BY bucket"
                ),
                &[&i32::from(self.buckets)],
            )
        })?;
        Ok(rows.iter().map(|r| r.try_get(0).ok().flatten()).collect())
    }

    /// Whether `epoch` is still the current tenure of `bucket` (a store's fencing check).
    pub fn is_current(&self, bucket: u16, epoch: i64) -> Result<bool, PgError> {
        let row = self.pool.with(|c| {
            c.query_opt(
                &format!("SELECT 1 FROM bucket_leases WHERE bucket = $1 AND epoch = $2 AND expires_ms >= {NOW_MS}"),
                &[&i32::from(bucket), &epoch],
            )
        })?;
        Ok(row.is_some())
    }
}
