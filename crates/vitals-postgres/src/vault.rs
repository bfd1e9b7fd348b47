//! The identity vault's records in PostgreSQL (cluster mode): every node reads and writes
//! the same sealed identities. PostgreSQL sees ciphertext only; the key ring stays with
//! each node (`vitals_vault::Vault` seals and opens).
//!
//! An erased record's row is deleted and the table vacuumed at once; PostgreSQL does not
//! zero freed space as SQLite's `secure_delete` does, so the erased ciphertext may stay
//! in free pages (and in the server's write-ahead log and backups) until overwritten:
//! sealed, useless without the key, and stated in docs/cluster.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use vitals_vault::{Backend, KeyCheck, SealedRecord, VaultError};

use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE vault_keys (id TEXT PRIMARY KEY, nonce BYTEA NOT NULL, check_value BYTEA NOT NULL);
CREATE TABLE vault_identities (
    patient TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL
);
"];

/// The vault's tables of one schema.
#[derive(Debug, Clone)]
pub struct PgVault {
    pool: Arc<Pool>,
}

impl PgVault {
    pub fn open(pool: Arc<Pool>, schema: &str) -> Result<PgVault, PgError> {
        crate::schema::migrate(&pool, schema, "vault", STEPS)?;
        Ok(PgVault { pool })
    }

    fn call<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, VaultError> {
        self.pool.with(f).map_err(|e| VaultError::Backend { location: self.location(), reason: e.to_string() })
    }
}

fn record(patient: &str, r: &postgres::Row) -> Result<SealedRecord, postgres::Error> {
    Ok(SealedRecord {
        patient: patient.to_owned(),
        key_id: r.try_get(0)?,
        nonce: r.try_get(1)?,
        sealed: r.try_get(2)?,
        updated_ms: r.try_get(3)?,
    })
}

impl Backend for PgVault {
    fn location(&self) -> String {
        format!("{} (vault tables)", self.pool.target())
    }

    fn key_checks(&self) -> Result<Vec<KeyCheck>, VaultError> {
        self.call(|c| {
            c.query("SELECT id, nonce, check_value FROM vault_keys ORDER BY id", &[])?
                .iter()
                .map(|r| Ok(KeyCheck { id: r.try_get(0)?, nonce: r.try_get(1)?, check: r.try_get(2)? }))
                .collect()
        })
    }

    fn put(&self, check: &KeyCheck, r: &SealedRecord) -> Result<(), VaultError> {
        self.call(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO vault_keys (id, nonce, check_value) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&check.id, &check.nonce, &check.check],
            )?;
            tx.execute(
                "INSERT INTO vault_identities (patient, key_id, nonce, sealed, updated_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (patient) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
                 sealed = excluded.sealed, updated_ms = excluded.updated_ms",
                &[&r.patient, &r.key_id, &r.nonce, &r.sealed, &r.updated_ms],
            )?;
            tx.commit()
        })
    }

    fn get(&self, patient: &str) -> Result<Option<SealedRecord>, VaultError> {
        self.call(|c| {
            c.query_opt(
                "SELECT key_id, nonce, sealed, updated_ms FROM vault_identities WHERE patient = $1",
                &[&patient],
            )?
            .map(|r| record(patient, &r))
            .transpose()
        })
    }

    fn delete(&self, patient: &str) -> Result<bool, VaultError> {
        self.call(|c| {
            let n = c.execute("DELETE FROM vault_identities WHERE patient = $1", &[&patient])?;
            // Outside a transaction: frees the dead row's space now rather than at autovacuum.
            c.batch_execute("VACUUM vault_identities")?;
            Ok(n > 0)
        })
    }

    fn key_usage(&self) -> Result<BTreeMap<String, usize>, VaultError> {
        self.call(|c| {
            c.query("SELECT key_id, count(*) FROM vault_identities GROUP BY key_id", &[])?
                .iter()
                .map(|r| Ok((r.try_get::<_, String>(0)?, usize::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0))))
                .collect()
        })
    }

    fn patients_not_under(&self, key_id: &str) -> Result<Vec<String>, VaultError> {
        self.call(|c| {
            c.query("SELECT patient FROM vault_identities WHERE key_id <> $1 ORDER BY patient", &[&key_id])?
                .iter()
                .map(|r| r.try_get(0))
                .collect()
        })
    }

    fn drop_unused_key_checks(&self, keep: &str) -> Result<(), VaultError> {
        self.call(|c| {
            c.execute(
                "DELETE FROM vault_keys WHERE id <> $1 AND id NOT IN (SELECT key_id FROM vault_identities)",
                &[&keep],
            )
            .map(drop)
        })
    }
}
