//! The shared lake's catalog (cluster mode): which settled days of which series are in the
//! bucket, as their writers published them, and which objects no day lists any more and
//! wait for deletion (`vitals_storage::remote::SharedLake`).
//!
//! A day is one row (its segments and fingerprint as JSON, their keys as an array with a
//! GIN index); publishing a day replaces its row, and a key the new list drops is recorded
//! for deletion after the grace period unless another day still lists it (an archive
//! segment holds many days). Times are the database's clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use vitals_storage::remote::{LakeDay, RemoteError, SharedLake};

use crate::leases::NOW_MS;
use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE lake_days (
    patient TEXT NOT NULL,
    metric TEXT NOT NULL,
    day_ms BIGINT NOT NULL,
    keys TEXT[] NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (patient, metric, day_ms)
);
CREATE INDEX lake_days_keys ON lake_days USING GIN (keys);
CREATE TABLE lake_doomed (key TEXT PRIMARY KEY, due_ms BIGINT NOT NULL);
"];

/// Whether this node writes a patient's part of the lake; whether it is the one that
/// deletes and sweeps.
pub type Writes = Arc<dyn Fn(&str) -> bool + Send + Sync>;
pub type Deletes = Arc<dyn Fn() -> bool + Send + Sync>;

/// The catalog of one schema, as one node sees it.
pub struct PgLake {
    pool: Arc<Pool>,
    grace_ms: i64,
    writes: Writes,
    deletes: Deletes,
}

impl std::fmt::Debug for PgLake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLake").field("target", &self.pool.target()).finish()
    }
}

/// Keys `dropped` that no day lists any more go to `lake_doomed`, due after the grace.
fn doom(tx: &mut postgres::Transaction<'_>, dropped: &[String], grace_ms: i64) -> Result<(), postgres::Error> {
    if dropped.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT INTO lake_doomed (key, due_ms)
             SELECT k, {NOW_MS} + $2::bigint FROM unnest($1::text[]) AS k
             WHERE NOT EXISTS (SELECT 1 FROM lake_days WHERE keys @> ARRAY[k])
             ON CONFLICT (key) DO NOTHING"
        ),
        &[&dropped, &grace_ms],
    )?;
    Ok(())
}

impl PgLake {
    pub fn open(
        pool: Arc<Pool>,
        schema: &str,
        grace: Duration,
        writes: Writes,
        deletes: Deletes,
    ) -> Result<PgLake, PgError> {
        crate::schema::migrate(&pool, schema, "lake", STEPS)?;
        Ok(PgLake { pool, grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX), writes, deletes })
    }

    fn call<T: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, RemoteError> {
        self.pool.with(f).map_err(|e| RemoteError {
            op,
            key: String::new(),
            location: format!("{} (the shared lake's catalog)", self.pool.target()),
            reason: e.to_string(),
            not_found: false,
        })
    }

    /// Removes the days `filter` selects (a WHERE clause on `lake_days` over `params`);
    /// their keys go to deletion.
    fn remove(
        &self,
        op: &'static str,
        filter: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<(), RemoteError> {
        let grace = self.grace_ms;
        let sql = format!("DELETE FROM lake_days WHERE {filter} RETURNING keys");
        self.call(op, |c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(&sql, params)?;
            let mut dropped = Vec::new();
            for r in rows {
                dropped.extend(r.try_get::<_, Vec<String>>(0)?);
            }
            doom(&mut tx, &dropped, grace)?;
            tx.commit()
        })
    }
}

impl SharedLake for PgLake {
    fn writes(&self, patient: &str) -> bool {
        (self.writes)(patient)
    }

    fn publish(&self, days: &[LakeDay]) -> Result<(), RemoteError> {
        let grace = self.grace_ms;
        let mut rows = Vec::with_capacity(days.len());
        for d in days {
            let body = serde_json::to_string(d).map_err(|e| RemoteError {
                op: "publish",
                key: String::new(),
                location: "the shared lake's catalog".into(),
                reason: e.to_string(),
                not_found: false,
            })?;
            let keys: Vec<String> = d.keys().into_iter().map(str::to_owned).collect();
            rows.push((d.patient.clone(), d.metric.clone(), d.day_ms, keys, body));
        }
        self.call("publish", |c| {
            let mut tx = c.transaction()?;
            let mut dropped = Vec::new();
            for (patient, metric, day, keys, body) in &rows {
                let old = tx.query_opt(
                    "SELECT keys FROM lake_days WHERE patient = $1 AND metric = $2 AND day_ms = $3 FOR UPDATE",
                    &[patient, metric, day],
                )?;
                tx.execute(
                    "INSERT INTO lake_days (patient, metric, day_ms, keys, body) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (patient, metric, day_ms) DO UPDATE SET keys = excluded.keys, body = excluded.body",
                    &[patient, metric, day, keys, body],
                )?;
                tx.execute("DELETE FROM lake_doomed WHERE key = ANY($1)", &[keys])?;
                if let Some(old) = old {
                    let old: Vec<String> = old.try_get(0)?;
                    dropped.extend(old.into_iter().filter(|k| !keys.contains(k)));
                }
            }
            doom(&mut tx, &dropped, grace)?;
            tx.commit()
        })
    }

    fn lookup(&self, days: &[(String, String, i64)]) -> Result<Vec<LakeDay>, RemoteError> {
        let patients: Vec<&str> = days.iter().map(|d| d.0.as_str()).collect();
        let metrics: Vec<&str> = days.iter().map(|d| d.1.as_str()).collect();
        let day_ms: Vec<i64> = days.iter().map(|d| d.2).collect();
        let bodies: Vec<String> = self.call("lookup", |c| {
            c.query(
                "SELECT body FROM lake_days WHERE (patient, metric, day_ms) IN
                   (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))",
                &[&patients, &metrics, &day_ms],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
        })?;
        // A row this build cannot read is left out (its day stays local here).
        Ok(bodies.iter().filter_map(|b| serde_json::from_str(b).ok()).collect())
    }

    fn remove_patient(&self, patient: &str) -> Result<(), RemoteError> {
        self.remove("remove_patient", "patient = $1", &[&patient])
    }

    fn expire(&self, metric: &str, before_day_ms: i64) -> Result<(), RemoteError> {
        self.remove("expire", "metric = $1 AND day_ms < $2", &[&metric, &before_day_ms])
    }

    fn due(&self, limit: usize) -> Result<Vec<String>, RemoteError> {
        if !(self.deletes)() {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call("due", |c| {
            c.query(
                &format!("SELECT key FROM lake_doomed WHERE due_ms <= {NOW_MS} ORDER BY due_ms LIMIT $1"),
                &[&limit],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
        })
    }

    fn forget(&self, keys: &[String]) -> Result<(), RemoteError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.call("forget", |c| c.execute("DELETE FROM lake_doomed WHERE key = ANY($1)", &[&keys]).map(drop))
    }

    fn known(&self) -> Result<Option<BTreeSet<String>>, RemoteError> {
        if !(self.deletes)() {
            return Ok(None);
        }
        let keys: Vec<String> = self.call("known", |c| {
            c.query("SELECT unnest(keys) FROM lake_days UNION SELECT key FROM lake_doomed", &[])?
                .iter()
                .map(|r| r.try_get(0))
                .collect()
        })?;
        Ok(Some(keys.into_iter().collect()))
    }
}
