//! The vault's records in their own SQLite file (one node): WAL journal, full sync, and
//! `secure_delete`, so an erased record's pages are overwritten with zeros.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Backend, KeyCheck, SealedRecord, VaultError};

/// The SQLite file of a vault.
pub struct SqliteBackend {
    path: String,
    pub(crate) conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the file at `path`.
    pub fn open(path: &Path) -> Result<SqliteBackend, VaultError> {
        let p = path.display().to_string();
        let db = |source| VaultError::Db { path: p.clone(), source };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        // Deleted records are overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", true).map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, nonce BLOB NOT NULL, check_value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS identities (
                 patient TEXT PRIMARY KEY, key_id TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL,
                 updated_ms INTEGER NOT NULL);",
        )
        .map_err(db)?;
        Ok(SqliteBackend { path: p, conn: Mutex::new(conn) })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> VaultError + '_ {
        |source| VaultError::Db { path: self.path.clone(), source }
    }
}

impl Backend for SqliteBackend {
    fn location(&self) -> String {
        self.path.clone()
    }

    fn key_checks(&self) -> Result<Vec<KeyCheck>, VaultError> {
        let c = self.conn.lock();
        let mut s = c.prepare("SELECT id, nonce, check_value FROM keys").map_err(self.db())?;
        s.query_map([], |r| Ok(KeyCheck { id: r.get(0)?, nonce: r.get(1)?, check: r.get(2)? }))
            .map_err(self.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.db())
    }

    fn put(&self, check: &KeyCheck, r: &SealedRecord) -> Result<(), VaultError> {
        let mut c = self.conn.lock();
        let tx = c.transaction().map_err(self.db())?;
        tx.execute(
            "INSERT INTO keys (id, nonce, check_value) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
            params![check.id, check.nonce, check.check],
        )
        .map_err(self.db())?;
        tx.execute(
            "INSERT INTO identities (patient, key_id, nonce, sealed, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (patient) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             sealed = excluded.sealed, updated_ms = excluded.updated_ms",
            params![r.patient, r.key_id, r.nonce, r.sealed, r.updated_ms],
        )
        .map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn get(&self, patient: &str) -> Result<Option<SealedRecord>, VaultError> {
        let c = self.conn.lock();
        c.query_row("SELECT key_id, nonce, sealed, updated_ms FROM identities WHERE patient = ?1", [patient], |r| {
            Ok(SealedRecord {
                patient: patient.to_owned(),
                key_id: r.get(0)?,
                nonce: r.get(1)?,
                sealed: r.get(2)?,
                updated_ms: r.get(3)?,
            })
        })
        .optional()
        .map_err(self.db())
    }

    fn delete(&self, patient: &str) -> Result<bool, VaultError> {
        let c = self.conn.lock();
        let n = c.execute("DELETE FROM identities WHERE patient = ?1", [patient]).map_err(self.db())?;
        // Move the deleted content out of the write-ahead log into the (zeroed) main file.
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(self.db())?;
        Ok(n > 0)
    }

    fn key_usage(&self) -> Result<BTreeMap<String, usize>, VaultError> {
        let c = self.conn.lock();
        let mut s = c.prepare("SELECT key_id, count(*) FROM identities GROUP BY key_id").map_err(self.db())?;
        s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
            .map_err(self.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.db())
    }

    fn patients_not_under(&self, key_id: &str) -> Result<Vec<String>, VaultError> {
        let c = self.conn.lock();
        let mut s = c.prepare("SELECT patient FROM identities WHERE key_id <> ?1").map_err(self.db())?;
        s.query_map([key_id], |r| r.get(0)).map_err(self.db())?.collect::<rusqlite::Result<_>>().map_err(self.db())
    }

    fn drop_unused_key_checks(&self, keep: &str) -> Result<(), VaultError> {
        let c = self.conn.lock();
        c.execute("DELETE FROM keys WHERE id <> ?1 AND id NOT IN (SELECT key_id FROM identities)", [keep])
            .map_err(self.db())?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(self.db())?;
        Ok(())
    }
}
