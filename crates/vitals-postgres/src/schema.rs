//! Creating and migrating the tables, each component (the metadata store, and the stores
//! that follow) with its own numbered steps.
//!
//! Everything runs in one transaction holding an advisory lock, so several nodes starting
//! at once apply each step exactly once, and a node that finds a newer schema than it knows
//! refuses to start rather than write what it does not understand.

use postgres::Client;

use crate::{PgError, Pool};

/// The advisory lock's key: "vitals" in ASCII, so other users of the database can avoid it.
const LOCK: i64 = 0x7669_7461_6c73;

/// Brings `component`'s tables in `schema` up to `steps.len()`: step `i` (SQL statements)
/// takes the component from version `i` to `i + 1`.
pub fn migrate(pool: &Pool, schema: &str, component: &str, steps: &[&str]) -> Result<(), PgError> {
    crate::check_identifier(schema)?;
    let known = steps.len() as i32;
    let found = pool.with(|c: &mut Client| {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             SET LOCAL search_path TO {schema};
             CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
        ))?;
        let found: i32 = tx
            .query_opt("SELECT version FROM schema_versions WHERE component = $1", &[&component])?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0);
        if found > known {
            return Ok(found);
        }
        for step in &steps[found as usize..] {
            tx.batch_execute(step)?;
        }
        tx.execute(
            "INSERT INTO schema_versions (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            &[&component, &known],
        )?;
        tx.commit()?;
        Ok(found)
    })?;
    if found > known {
        return Err(PgError::NewerSchema { target: pool.target().to_owned(), found, known });
    }
    Ok(())
}
