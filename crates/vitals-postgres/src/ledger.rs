//! The file-drop ledger in PostgreSQL (cluster mode): a file dropped on any node is a
//! duplicate on every other, and nodes that watch one shared directory claim a content
//! before processing it (`vitals_storage::ledger::Ledger`).
//!
//! Entries are rows in the order recorded; a claim is a row of `file_claims` that lapses
//! an hour after it was taken (a node that died mid-file leaves its claim, and the file is
//! processed again by another node then: ingest is idempotent). Times are the database's.

use std::sync::Arc;

use vitals_storage::ledger::{Begin, Ledger, LedgerEntry, LedgerError};

use crate::leases::NOW_MS;
use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE file_ledger (
    seq BIGSERIAL PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    accepted BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    moved_to TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX file_ledger_processed ON file_ledger (sha256) WHERE status = 'processed';
CREATE TABLE file_claims (sha256 TEXT PRIMARY KEY, until_ms BIGINT NOT NULL);
"];

/// How long a claim holds without an entry recorded.
const CLAIM_MS: i64 = 3_600_000;

/// The ledger's tables of one schema.
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: Arc<Pool>,
}

const COLUMNS: &str = "sha256, name, time_ms, status, accepted, rejected, moved_to, error";

fn entry(r: &postgres::Row) -> Result<LedgerEntry, postgres::Error> {
    let count = |i: usize| r.try_get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(LedgerEntry {
        sha256: r.try_get(0)?,
        name: r.try_get(1)?,
        time_ms: r.try_get(2)?,
        status: r.try_get(3)?,
        accepted: count(4)?,
        rejected: count(5)?,
        moved_to: r.try_get(6)?,
        error: r.try_get(7)?,
    })
}

impl PgLedger {
    pub fn open(pool: Arc<Pool>, schema: &str) -> Result<PgLedger, PgError> {
        crate::schema::migrate(&pool, schema, "file_ledger", STEPS)?;
        Ok(PgLedger { pool })
    }

    fn call<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, LedgerError> {
        self.pool.with(f).map_err(|e| LedgerError::Backend {
            location: format!("{} (file ledger tables)", self.pool.target()),
            reason: e.to_string(),
        })
    }
}

impl Ledger for PgLedger {
    fn begin(&self, sha256: &str) -> Result<Begin, LedgerError> {
        self.call(|c| {
            let mut tx = c.transaction()?;
            let done = tx.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM file_ledger WHERE sha256 = $1 AND status = 'processed' ORDER BY seq LIMIT 1"
                ),
                &[&sha256],
            )?;
            if let Some(r) = done {
                return Ok(Begin::Processed(entry(&r)?));
            }
            let claimed = tx.query_opt(
                &format!(
                    "INSERT INTO file_claims (sha256, until_ms) VALUES ($1, {NOW_MS} + $2::bigint)
                     ON CONFLICT (sha256) DO UPDATE SET until_ms = EXCLUDED.until_ms
                     WHERE file_claims.until_ms < {NOW_MS}
                     RETURNING sha256"
                ),
                &[&sha256, &CLAIM_MS],
            )?;
            tx.commit()?;
            Ok(if claimed.is_some() { Begin::Claimed } else { Begin::Busy })
        })
    }

    fn record(&self, e: LedgerEntry) -> Result<(), LedgerError> {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.call(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                &format!("INSERT INTO file_ledger ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                &[
                    &e.sha256,
                    &e.name,
                    &e.time_ms,
                    &e.status,
                    &signed(e.accepted),
                    &signed(e.rejected),
                    &e.moved_to,
                    &e.error,
                ],
            )?;
            tx.execute("DELETE FROM file_claims WHERE sha256 = $1", &[&e.sha256])?;
            tx.commit()
        })
    }

    fn release(&self, sha256: &str) -> Result<(), LedgerError> {
        self.call(|c| c.execute("DELETE FROM file_claims WHERE sha256 = $1", &[&sha256]).map(drop))
    }

    /// Reads every entry (the ledger holds one row per dropped file) and deletes those
    /// `doomed` picks.
    fn erase_matching(&self, doomed: &dyn Fn(&LedgerEntry) -> bool) -> Result<usize, LedgerError> {
        let rows: Vec<(i64, LedgerEntry)> = self.call(|c| {
            c.query(&format!("SELECT {COLUMNS}, seq FROM file_ledger"), &[])?
                .iter()
                .map(|r| Ok((r.try_get(8)?, entry(r)?)))
                .collect()
        })?;
        let gone: Vec<i64> = rows.iter().filter(|(_, e)| doomed(e)).map(|(seq, _)| *seq).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let n = self.call(|c| c.execute("DELETE FROM file_ledger WHERE seq = ANY($1)", &[&gone]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn recent(&self, limit: usize) -> Result<Vec<LedgerEntry>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(|c| {
            c.query(&format!("SELECT {COLUMNS} FROM file_ledger ORDER BY seq DESC LIMIT $1"), &[&limit])?
                .iter()
                .map(entry)
                .collect()
        })
    }
}
