//! [`MetaStore`] over an embedded SQLite database (`meta.sqlite` in the data directory).
//!
//! WAL journal with `synchronous = FULL`: a committed change survives a crash. The server
//! and the `vitals admin` commands open the same file; SQLite's locking serializes them and
//! every read goes to the database, so a revoked token or a disabled user is refused at
//! their next request.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sha256_hex;

use crate::audit::{self, AuditEntry, AuditEvent};
use crate::model::{DeviceCert, Patient, Role, Session, Team, Token, User};
use crate::{AuditFilter, MetaError, MetaStore};

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT,
    patient TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    device TEXT,
    patient TEXT,
    sha256 TEXT NOT NULL UNIQUE,
    sha1 TEXT UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);
CREATE TABLE teams (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE TABLE team_members (
    team TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team, user_id)
);
CREATE TABLE team_patients (
    team TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    patient TEXT NOT NULL,
    PRIMARY KEY (team, patient)
);
CREATE INDEX team_patients_by_patient ON team_patients(patient);
CREATE TABLE patients (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE sessions (
    sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE device_certs (
    sha256 TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    device TEXT NOT NULL,
    patient TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    patient TEXT,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_patient ON audit(patient, seq);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
";

/// The SQLite metadata store.
pub struct SqliteMeta {
    path: String,
    /// Changes (one writer at a time, as SQLite has it).
    conn: Mutex<Connection>,
    /// Lookups on every request (tokens, users, teams): a second connection, so they do not
    /// wait behind a write's disk sync (WAL readers do not block on the writer).
    reader: Mutex<Connection>,
    /// The audit chain's key, once set (entries from its first on are HMACs under it).
    audit_key: parking_lot::RwLock<Option<audit::AuditKey>>,
}

impl std::fmt::Debug for SqliteMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMeta").field("path", &self.path).finish()
    }
}

fn role_of(s: &str) -> rusqlite::Result<Role> {
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(&r.get::<_, String>(2)?)?,
        password_hash: r.get(3)?,
        patient: r.get(4)?,
        disabled: r.get(5)?,
        failed_logins: r.get(6)?,
        locked_until_ms: r.get(7)?,
        created_ms: r.get(8)?,
    })
}
const USER_COLS: &str = "id, name, role, password_hash, patient, disabled, failed_logins, locked_until_ms, created_ms";

fn token_row(r: &Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(&r.get::<_, String>(2)?)?,
        user_id: r.get(3)?,
        device: r.get(4)?,
        patient: r.get(5)?,
        sha256: r.get(6)?,
        api_secret_sha256: r.get(7)?,
        created_ms: r.get(8)?,
        expires_ms: r.get(9)?,
        revoked_ms: r.get(10)?,
    })
}
const TOKEN_COLS: &str = "id, name, role, user_id, device, patient, sha256, sha1, created_ms, expires_ms, revoked_ms";

fn cert_row(r: &Row<'_>) -> rusqlite::Result<DeviceCert> {
    Ok(DeviceCert {
        sha256: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        device: r.get(3)?,
        patient: r.get(4)?,
        created_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
    })
}
const CERT_COLS: &str = "sha256, id, name, device, patient, created_ms, revoked_ms";

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        event: AuditEvent {
            ts_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            patient: r.get(4)?,
            target: r.get(5)?,
            origin: r.get(6)?,
            outcome: r.get(7)?,
        },
        prev: r.get(8)?,
        hash: r.get(9)?,
    })
}
const AUDIT_COLS: &str = "seq, ts_ms, actor, action, patient, target, origin, outcome, prev, hash";

/// Version 2 keeps Nightscout secrets of device tokens only, and as a hash: the `sha1`
/// column held the hex SHA-1 a client sends, for every token; it now holds the SHA-256 of
/// that, for device tokens, and nothing for the others.
fn migrate_1_to_2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now != 1 {
            return Ok(()); // another process migrated it meanwhile
        }
        let rows: Vec<(String, String)> = {
            let mut s = conn.prepare("SELECT id, sha1 FROM tokens WHERE role = 'device' AND sha1 IS NOT NULL")?;
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?
        };
        conn.execute("UPDATE tokens SET sha1 = NULL", [])?;
        for (id, sha1) in rows {
            conn.execute("UPDATE tokens SET sha1 = ?2 WHERE id = ?1", params![id, sha256_hex(&sha1)])?;
        }
        conn.pragma_update(None, "user_version", 2)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl SqliteMeta {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteMeta, MetaError> {
        let p = path.display().to_string();
        let db = |source| MetaError::Db { path: p.clone(), source };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(db)?;
        // Deleted rows (an erased patient's) are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", true).map_err(db)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        if version == 0 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .or_else(|e| {
                    // Another process created the schema at the same moment.
                    let _ = conn.execute_batch("ROLLBACK");
                    let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                    if now == SCHEMA_VERSION { Ok(()) } else { Err(e) }
                })
                .map_err(db)?;
        } else if version == 1 {
            migrate_1_to_2(&conn).map_err(db)?;
        } else if version != SCHEMA_VERSION {
            return Err(MetaError::Invalid(format!(
                "{p}: schema version {version}, this build knows {SCHEMA_VERSION} (a newer Vitals wrote it?)"
            )));
        }
        let reader = Connection::open(path).map_err(db)?;
        reader.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        reader.pragma_update(None, "foreign_keys", true).map_err(db)?;
        Ok(SqliteMeta { path: p, conn: Mutex::new(conn), reader: Mutex::new(reader), audit_key: Default::default() })
    }

    /// A lookup on the reading connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, MetaError> {
        let c = self.reader.lock();
        f(&c).map_err(|source| MetaError::Db { path: self.path.clone(), source })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, MetaError> {
        let mut c = self.conn.lock();
        f(&mut c).map_err(|source| MetaError::Db { path: self.path.clone(), source })
    }

    /// Like [`Self::with`], but a uniqueness violation is a [`MetaError::Conflict`].
    fn insert(
        &self,
        what: String,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<usize>,
    ) -> Result<(), MetaError> {
        let mut c = self.conn.lock();
        match f(&mut c) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(MetaError::Conflict(what)),
            Err(source) => Err(MetaError::Db { path: self.path.clone(), source }),
        }
    }
}

impl MetaStore for SqliteMeta {
    fn create_user(&self, u: &User) -> Result<(), MetaError> {
        self.insert(format!("user {:?}", u.name), |c| {
            c.execute(
                &format!("INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    u.id,
                    u.name,
                    u.role.as_str(),
                    u.password_hash,
                    u.patient,
                    u.disabled,
                    u.failed_logins,
                    u.locked_until_ms,
                    u.created_ms
                ],
            )
        })
    }

    fn user(&self, id_or_name: &str) -> Result<Option<User>, MetaError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1"),
                [id_or_name],
                user_row,
            )
            .optional()
        })
    }

    fn users(&self) -> Result<Vec<User>, MetaError> {
        self.with(|c| {
            let mut s = c.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
            s.query_map([], user_row)?.collect()
        })
    }

    fn update_user(&self, u: &User) -> Result<(), MetaError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE users SET role = ?2, password_hash = ?3, patient = ?4, disabled = ?5 WHERE id = ?1",
                params![u.id, u.role.as_str(), u.password_hash, u.patient, u.disabled],
            )
        })?;
        if n == 0 { Err(MetaError::NotFound(format!("user {:?}", u.name))) } else { Ok(()) }
    }

    fn record_failed_login(
        &self,
        id: &str,
        now_ms: i64,
        max_failed: u32,
        lockout_ms: i64,
    ) -> Result<Option<i64>, MetaError> {
        // One statement: concurrent failures each count, and nothing else of the row is
        // written (an administrator's change made meanwhile stays).
        let found = self.with(|c| {
            c.query_row(
                "UPDATE users SET
                   failed_logins = CASE WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= ?2
                                        THEN 1 ELSE failed_logins + 1 END,
                   locked_until_ms = CASE
                     WHEN (CASE WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= ?2
                                THEN 1 ELSE failed_logins + 1 END) >= ?3 THEN ?2 + ?4
                     WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= ?2 THEN NULL
                     ELSE locked_until_ms END
                 WHERE id = ?1
                 RETURNING locked_until_ms",
                params![id, now_ms, max_failed, lockout_ms],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
        })?;
        match found {
            None => Err(MetaError::NotFound(format!("user {id:?}"))),
            Some(until) => Ok(until.filter(|u| *u > now_ms)),
        }
    }

    fn unlock_user(&self, id: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = ?1", [id]))
            .map(drop)
    }

    fn delete_user(&self, id: &str) -> Result<bool, MetaError> {
        self.with(|c| c.execute("DELETE FROM users WHERE id = ?1", [id]).map(|n| n > 0))
    }

    fn create_token(&self, t: &Token) -> Result<(), MetaError> {
        self.insert("that token".to_string(), |c| {
            c.execute(
                &format!("INSERT INTO tokens ({TOKEN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.user_id,
                    t.device,
                    t.patient,
                    t.sha256,
                    t.api_secret_sha256,
                    t.created_ms,
                    t.expires_ms,
                    t.revoked_ms
                ],
            )
        })
    }

    fn token(&self, id: &str) -> Result<Option<Token>, MetaError> {
        self.read(|c| {
            c.query_row(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = ?1"), [id], token_row).optional()
        })
    }

    fn token_by_sha256(&self, h: &str) -> Result<Option<Token>, MetaError> {
        self.read(|c| {
            c.query_row(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE sha256 = ?1"), [h], token_row).optional()
        })
    }

    fn token_by_api_secret(&self, h: &str) -> Result<Option<Token>, MetaError> {
        self.read(|c| {
            c.query_row(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE sha1 = ?1"), [h], token_row).optional()
        })
    }

    fn tokens(&self) -> Result<Vec<Token>, MetaError> {
        self.with(|c| {
            let mut s = c.prepare(&format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY created_ms, id"))?;
            s.query_map([], token_row)?.collect()
        })
    }

    fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, MetaError> {
        self.with(|c| {
            c.execute("UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, at_ms])
                .map(|n| n > 0)
        })
    }

    fn create_team(&self, name: &str, now_ms: i64) -> Result<(), MetaError> {
        self.insert(format!("team {name:?}"), |c| {
            c.execute("INSERT INTO teams (name, created_ms) VALUES (?1, ?2)", params![name, now_ms])
        })
    }

    fn delete_team(&self, name: &str) -> Result<bool, MetaError> {
        self.with(|c| c.execute("DELETE FROM teams WHERE name = ?1", [name]).map(|n| n > 0))
    }

    fn teams(&self) -> Result<Vec<Team>, MetaError> {
        self.with(|c| {
            let mut teams: Vec<Team> = {
                let mut s = c.prepare("SELECT name, created_ms FROM teams ORDER BY name")?;
                s.query_map([], |r| {
                    Ok(Team { name: r.get(0)?, created_ms: r.get(1)?, members: Vec::new(), patients: Vec::new() })
                })?
                .collect::<rusqlite::Result<_>>()?
            };
            let mut members = c.prepare("SELECT user_id FROM team_members WHERE team = ?1 ORDER BY user_id")?;
            let mut patients = c.prepare("SELECT patient FROM team_patients WHERE team = ?1 ORDER BY patient")?;
            for t in &mut teams {
                t.members = members.query_map([&t.name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                t.patients = patients.query_map([&t.name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            }
            Ok(teams)
        })
    }

    fn set_member(&self, team: &str, user_id: &str, member: bool) -> Result<(), MetaError> {
        self.team_link(team, member, |c| {
            if member {
                c.execute("INSERT OR IGNORE INTO team_members (team, user_id) VALUES (?1, ?2)", [team, user_id])
            } else {
                c.execute("DELETE FROM team_members WHERE team = ?1 AND user_id = ?2", [team, user_id])
            }
        })
    }

    fn set_team_patient(&self, team: &str, patient: &str, linked: bool) -> Result<(), MetaError> {
        self.team_link(team, linked, |c| {
            if linked {
                c.execute("INSERT OR IGNORE INTO team_patients (team, patient) VALUES (?1, ?2)", [team, patient])
            } else {
                c.execute("DELETE FROM team_patients WHERE team = ?1 AND patient = ?2", [team, patient])
            }
        })
    }

    fn patients_of_member(&self, user_id: &str) -> Result<Vec<String>, MetaError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT DISTINCT p.patient FROM team_patients p JOIN team_members m ON m.team = p.team
                 WHERE m.user_id = ?1 ORDER BY p.patient",
            )?;
            s.query_map([user_id], |r| r.get(0))?.collect()
        })
    }

    fn create_patient(&self, p: &Patient) -> Result<(), MetaError> {
        self.insert(format!("patient {:?}", p.id), |c| {
            c.execute(
                "INSERT INTO patients (id, created_ms, created_by) VALUES (?1, ?2, ?3)",
                params![p.id, p.created_ms, p.created_by],
            )
        })
    }

    fn patient(&self, id: &str) -> Result<Option<Patient>, MetaError> {
        self.with(|c| {
            c.query_row("SELECT id, created_ms, created_by FROM patients WHERE id = ?1", [id], |r| {
                Ok(Patient { id: r.get(0)?, created_ms: r.get(1)?, created_by: r.get(2)? })
            })
            .optional()
        })
    }

    fn patients(&self) -> Result<Vec<Patient>, MetaError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT id, created_ms, created_by FROM patients ORDER BY id")?;
            s.query_map([], |r| Ok(Patient { id: r.get(0)?, created_ms: r.get(1)?, created_by: r.get(2)? }))?.collect()
        })
    }

    fn delete_patient(&self, id: &str) -> Result<bool, MetaError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM patients WHERE id = ?1", [id])?;
            let links = tx.execute("DELETE FROM team_patients WHERE patient = ?1", [id])?;
            let tokens = tx.execute("DELETE FROM tokens WHERE patient = ?1", [id])?;
            let users = tx.execute("UPDATE users SET patient = NULL, disabled = 1 WHERE patient = ?1", [id])?;
            let certs = tx.execute("DELETE FROM device_certs WHERE patient = ?1", [id])?;
            tx.commit()?;
            Ok(n + links + tokens + users + certs > 0)
        })
    }

    fn create_device_cert(&self, c: &DeviceCert) -> Result<(), MetaError> {
        self.insert("a device with that certificate".to_string(), |conn| {
            conn.execute(
                &format!("INSERT INTO device_certs ({CERT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![c.sha256, c.id, c.name, c.device, c.patient, c.created_ms, c.revoked_ms],
            )
        })
    }

    fn device_cert(&self, sha256_hex: &str) -> Result<Option<DeviceCert>, MetaError> {
        self.read(|c| {
            c.query_row(&format!("SELECT {CERT_COLS} FROM device_certs WHERE sha256 = ?1"), [sha256_hex], cert_row)
                .optional()
        })
    }

    fn device_certs(&self) -> Result<Vec<DeviceCert>, MetaError> {
        self.with(|c| {
            let mut s = c.prepare(&format!("SELECT {CERT_COLS} FROM device_certs ORDER BY created_ms, id"))?;
            s.query_map([], cert_row)?.collect()
        })
    }

    fn revoke_device_cert(&self, id: &str, at_ms: i64) -> Result<bool, MetaError> {
        self.with(|c| {
            c.execute(
                "UPDATE device_certs SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, at_ms],
            )
            .map(|n| n > 0)
        })
    }

    fn create_session(&self, s: &Session) -> Result<(), MetaError> {
        self.insert("that session".to_string(), |c| {
            c.execute(
                "INSERT INTO sessions (sha256, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.sha256, s.user_id, s.csrf, s.created_ms, s.expires_ms],
            )
        })
    }

    fn session(&self, h: &str) -> Result<Option<Session>, MetaError> {
        self.read(|c| {
            c.query_row(
                "SELECT sha256, user_id, csrf, created_ms, expires_ms FROM sessions WHERE sha256 = ?1",
                [h],
                |r| {
                    Ok(Session {
                        sha256: r.get(0)?,
                        user_id: r.get(1)?,
                        csrf: r.get(2)?,
                        created_ms: r.get(3)?,
                        expires_ms: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    fn delete_session(&self, h: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE sha256 = ?1", [h]).map(drop))
    }

    fn delete_sessions_of(&self, user_id: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id]).map(drop))
    }

    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>, MetaError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (mut last, mut prev): (i64, String) = tx
                .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, audit::GENESIS.to_string()));
            let mut out = Vec::with_capacity(events.len());
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO audit ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?;
                for e in events {
                    let seq = last + 1;
                    let hash = audit::entry_hash(self.audit_key.read().as_ref(), &prev, seq, e);
                    insert.execute(params![
                        seq, e.ts_ms, e.actor, e.action, e.patient, e.target, e.origin, e.outcome, prev, hash
                    ])?;
                    out.push(AuditEntry { seq, event: e.clone(), prev: prev.clone(), hash: hash.clone() });
                    (last, prev) = (seq, hash);
                }
            }
            tx.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                params![last, prev],
            )?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, MetaError> {
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(p) = &f.patient {
            arg(&mut sql, " AND patient = ?", p.clone().into());
        }
        if let Some(a) = &f.actor {
            arg(&mut sql, " AND actor = ?", a.clone().into());
        }
        match &f.action {
            Some(a) if a.ends_with('.') => {
                let like = format!("{}%", a.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                arg(&mut sql, " AND action LIKE ? ESCAPE '\\'", like.into());
            }
            Some(a) => arg(&mut sql, " AND action = ?", a.clone().into()),
            None => {}
        }
        if let Some(t) = f.from_ms {
            arg(&mut sql, " AND ts_ms >= ?", t.into());
        }
        if let Some(t) = f.to_ms {
            arg(&mut sql, " AND ts_ms < ?", t.into());
        }
        if let Some(s) = f.before_seq {
            arg(&mut sql, " AND seq < ?", s.into());
        }
        let limit = f.limit.clamp(1, 10_000);
        let sql = format!("{sql} ORDER BY seq DESC LIMIT {limit}");
        self.with(|c| {
            let mut s = c.prepare(&sql)?;
            s.query_map(rusqlite::params_from_iter(args), audit_row)?.collect()
        })
    }

    fn audit_run(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, MetaError> {
        self.with(|c| {
            let mut s = c.prepare(&format!("SELECT {AUDIT_COLS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
            s.query_map(params![after, limit as i64], audit_row)?.collect()
        })
    }

    fn audit_head(&self) -> Result<(i64, String), MetaError> {
        self.with(|c| {
            c.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map(|h| h.unwrap_or((0, audit::GENESIS.to_string())))
        })
    }

    fn set_audit_key(&self, key: audit::AuditKey) {
        *self.audit_key.write() = Some(key);
    }
}

impl SqliteMeta {
    fn team_link(
        &self,
        team: &str,
        adding: bool,
        f: impl FnOnce(&Connection) -> rusqlite::Result<usize>,
    ) -> Result<(), MetaError> {
        let mut c = self.conn.lock();
        let exists: bool = c
            .query_row("SELECT 1 FROM teams WHERE name = ?1", [team], |_| Ok(()))
            .optional()
            .map_err(|source| MetaError::Db { path: self.path.clone(), source })?
            .is_some();
        if !exists {
            return Err(MetaError::NotFound(format!("team {team:?}")));
        }
        match f(&mut c) {
            Ok(_) => Ok(()),
            // A member that is not a user.
            Err(rusqlite::Error::SqliteFailure(f, _))
                if adding && f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(MetaError::NotFound("that user".to_string()))
            }
            Err(source) => Err(MetaError::Db { path: self.path.clone(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_1_keeps_only_device_tokens_nightscout_secrets_and_hashes_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("meta.sqlite");
        {
            // A version-1 database: the SHA-1 a client sends, stored for every token.
            let c = Connection::open(&path).expect("open");
            c.execute_batch(&format!("{SCHEMA} PRAGMA user_version = 1;")).expect("schema");
            for (id, role, sha1) in [("tok-a", "admin", "aaaa"), ("tok-d", "device", "dddd")] {
                c.execute(
                    "INSERT INTO tokens (id, name, role, sha256, sha1, created_ms) VALUES (?1, ?1, ?2, ?1, ?3, 0)",
                    params![id, role, sha1],
                )
                .expect("token");
            }
        }
        let m = SqliteMeta::open(&path).expect("migrates");
        assert!(m.token_by_api_secret("aaaa").expect("lookup").is_none());
        assert!(m.token_by_api_secret("dddd").expect("lookup").is_none(), "the stored value no longer opens");
        assert_eq!(m.token_by_api_secret(&sha256_hex("dddd")).expect("lookup").map(|t| t.id), Some("tok-d".into()));
        assert_eq!(m.token("tok-a").expect("read").and_then(|t| t.api_secret_sha256), None);
        drop(m);
        assert!(SqliteMeta::open(&path).is_ok(), "and opens again at version 2");
    }

    use super::*;

    /// One SQLite database in a directory of its own.
    struct Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    impl crate::conformance::Fixture for Sqlite {
        fn open(&self) -> std::sync::Arc<dyn MetaStore> {
            std::sync::Arc::new(SqliteMeta::open(&self.path).expect("open"))
        }
        fn raw(&self, sql: &str) {
            Connection::open(&self.path).and_then(|c| c.execute_batch(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn the_sqlite_store_keeps_the_metadata_contract() {
        crate::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("meta.sqlite");
            Box::new(Sqlite { _dir: dir, path })
        });
    }
}
