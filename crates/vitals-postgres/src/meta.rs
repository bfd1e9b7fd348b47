//! [`MetaStore`] over PostgreSQL: the metadata every node of a cluster shares.
//!
//! The tables mirror the SQLite store's. Every read goes to the database, so a token
//! revoked on one node is refused on every node at its next request. The audit chain is
//! appended under a row lock on its head, so nodes appending at once still form one chain.

use std::sync::Arc;

use postgres::Row;
use postgres::error::SqlState;

use vitals_meta::audit::{self, AuditEntry, AuditEvent, AuditKey};
use vitals_meta::{AuditFilter, DeviceCert, MetaError, MetaStore, Patient, Role, Session, Team, Token, User};

use crate::{PgError, Pool};

const STEPS: &[&str] = &["
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT,
    patient TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms BIGINT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    device TEXT,
    patient TEXT,
    sha256 TEXT NOT NULL UNIQUE,
    api_secret_sha256 TEXT UNIQUE,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    revoked_ms BIGINT
);
CREATE TABLE teams (name TEXT PRIMARY KEY, created_ms BIGINT NOT NULL);
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
CREATE TABLE patients (id TEXT PRIMARY KEY, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE sessions (
    sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE device_certs (
    sha256 TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    device TEXT NOT NULL,
    patient TEXT,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
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
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
"];

const USER_COLS: &str = "id, name, role, password_hash, patient, disabled, failed_logins, locked_until_ms, created_ms";
const TOKEN_COLS: &str =
    "id, name, role, user_id, device, patient, sha256, api_secret_sha256, created_ms, expires_ms, revoked_ms";
const CERT_COLS: &str = "sha256, id, name, device, patient, created_ms, revoked_ms";
const AUDIT_COLS: &str = "seq, ts_ms, actor, action, patient, target, origin, outcome, prev, hash";

/// The PostgreSQL metadata store.
pub struct PgMeta {
    pool: Arc<Pool>,
    audit_key: parking_lot::RwLock<Option<AuditKey>>,
}

impl std::fmt::Debug for PgMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMeta").field("pool", &self.pool).finish()
    }
}

fn backend(e: PgError) -> MetaError {
    let disk_full = e.code() == Some(&SqlState::DISK_FULL);
    MetaError::Backend { disk_full, source: Box::new(e) }
}

/// A column of a row, or the error of a store that holds something this build cannot read.
fn col<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, MetaError> {
    r.try_get(i).map_err(|source| MetaError::Backend { disk_full: false, source: Box::new(source) })
}

fn role(r: &Row, i: usize) -> Result<Role, MetaError> {
    col::<&str>(r, i)?.parse().map_err(MetaError::Invalid)
}

fn user_row(r: &Row) -> Result<User, MetaError> {
    Ok(User {
        id: col(r, 0)?,
        name: col(r, 1)?,
        role: role(r, 2)?,
        password_hash: col(r, 3)?,
        patient: col(r, 4)?,
        disabled: col(r, 5)?,
        failed_logins: u32::try_from(col::<i32>(r, 6)?).unwrap_or(0),
        locked_until_ms: col(r, 7)?,
        created_ms: col(r, 8)?,
    })
}

fn token_row(r: &Row) -> Result<Token, MetaError> {
    Ok(Token {
        id: col(r, 0)?,
        name: col(r, 1)?,
        role: role(r, 2)?,
        user_id: col(r, 3)?,
        device: col(r, 4)?,
        patient: col(r, 5)?,
        sha256: col(r, 6)?,
        api_secret_sha256: col(r, 7)?,
        created_ms: col(r, 8)?,
        expires_ms: col(r, 9)?,
        revoked_ms: col(r, 10)?,
    })
}

fn cert_row(r: &Row) -> Result<DeviceCert, MetaError> {
    Ok(DeviceCert {
        sha256: col(r, 0)?,
        id: col(r, 1)?,
        name: col(r, 2)?,
        device: col(r, 3)?,
        patient: col(r, 4)?,
        created_ms: col(r, 5)?,
        revoked_ms: col(r, 6)?,
    })
}

fn audit_row(r: &Row) -> Result<AuditEntry, MetaError> {
    Ok(AuditEntry {
        seq: col(r, 0)?,
        event: AuditEvent {
            ts_ms: col(r, 1)?,
            actor: col(r, 2)?,
            action: col(r, 3)?,
            patient: col(r, 4)?,
            target: col(r, 5)?,
            origin: col(r, 6)?,
            outcome: col(r, 7)?,
        },
        prev: col(r, 8)?,
        hash: col(r, 9)?,
    })
}

fn patient_row(r: &Row) -> Result<Patient, MetaError> {
    Ok(Patient { id: col(r, 0)?, created_ms: col(r, 1)?, created_by: col(r, 2)? })
}

fn session_row(r: &Row) -> Result<Session, MetaError> {
    Ok(Session {
        sha256: col(r, 0)?,
        user_id: col(r, 1)?,
        csrf: col(r, 2)?,
        created_ms: col(r, 3)?,
        expires_ms: col(r, 4)?,
    })
}

fn all<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T, MetaError>) -> Result<Vec<T>, MetaError> {
    rows.iter().map(f).collect()
}

fn one<T>(row: Option<Row>, f: fn(&Row) -> Result<T, MetaError>) -> Result<Option<T>, MetaError> {
    row.as_ref().map(f).transpose()
}

impl PgMeta {
    /// Opens the store on `pool` (whose connections use `schema`), creating or migrating
    /// its tables.
    pub fn open(pool: Arc<Pool>, schema: &str) -> Result<PgMeta, MetaError> {
        crate::schema::migrate(&pool, schema, "meta", STEPS).map_err(backend)?;
        pool.with(|c| {
            c.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT DO NOTHING",
                &[&audit::GENESIS],
            )
        })
        .map_err(backend)?;
        Ok(PgMeta { pool, audit_key: Default::default() })
    }

    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, MetaError> {
        self.pool.with(f).map_err(backend)
    }

    /// Like [`Self::with`], but a uniqueness violation is a [`MetaError::Conflict`].
    fn insert(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&mut postgres::Client) -> Result<u64, postgres::Error> + Send,
    ) -> Result<(), MetaError> {
        match self.pool.with(f) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(MetaError::Conflict(what())),
            Err(e) => Err(backend(e)),
        }
    }

    fn team_link(&self, team: &str, sql: &str, params: [&str; 2]) -> Result<(), MetaError> {
        let outcome = self.pool.with(|c| {
            if c.query_opt("SELECT 1 FROM teams WHERE name = $1", &[&team])?.is_none() {
                return Ok(false);
            }
            c.execute(sql, &[&params[0], &params[1]]).map(|_| true)
        });
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(MetaError::NotFound(format!("team {team:?}"))),
            // A member that is not a user.
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(MetaError::NotFound("that user".to_string()))
            }
            Err(e) => Err(backend(e)),
        }
    }
}

impl MetaStore for PgMeta {
    fn create_user(&self, u: &User) -> Result<(), MetaError> {
        let failed = i32::try_from(u.failed_logins).unwrap_or(i32::MAX);
        self.insert(
            || format!("user {:?}", u.name),
            |c| {
                c.execute(
                    &format!("INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                    &[
                        &u.id,
                        &u.name,
                        &u.role.as_str(),
                        &u.password_hash,
                        &u.patient,
                        &u.disabled,
                        &failed,
                        &u.locked_until_ms,
                        &u.created_ms,
                    ],
                )
            },
        )
    }

    fn user(&self, id_or_name: &str) -> Result<Option<User>, MetaError> {
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {USER_COLS} FROM users WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"),
                &[&id_or_name],
            )
        })?;
        one(row, user_row)
    }

    fn users(&self) -> Result<Vec<User>, MetaError> {
        all(self.with(|c| c.query(&format!("SELECT {USER_COLS} FROM users ORDER BY name"), &[]))?, user_row)
    }

    fn update_user(&self, u: &User) -> Result<(), MetaError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE users SET role = $2, password_hash = $3, patient = $4, disabled = $5 WHERE id = $1",
                &[&u.id, &u.role.as_str(), &u.password_hash, &u.patient, &u.disabled],
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
        let max_failed = i32::try_from(max_failed).unwrap_or(i32::MAX);
        // One statement: concurrent failures each count, on every node.
        let found = self.with(|c| {
            c.query_opt(
                "UPDATE users SET
                   failed_logins = CASE WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= $2::bigint
                                        THEN 1 ELSE failed_logins + 1 END,
                   locked_until_ms = CASE
                     WHEN (CASE WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= $2::bigint
                                THEN 1 ELSE failed_logins + 1 END) >= $3::integer THEN $2::bigint + $4::bigint
                     WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= $2::bigint THEN NULL
                     ELSE locked_until_ms END
                 WHERE id = $1
                 RETURNING locked_until_ms",
                &[&id, &now_ms, &max_failed, &lockout_ms],
            )
        })?;
        match found {
            None => Err(MetaError::NotFound(format!("user {id:?}"))),
            Some(row) => Ok(col::<Option<i64>>(&row, 0)?.filter(|u| *u > now_ms)),
        }
    }

    fn unlock_user(&self, id: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = $1", &[&id]))
            .map(drop)
    }

    fn delete_user(&self, id: &str) -> Result<bool, MetaError> {
        self.with(|c| c.execute("DELETE FROM users WHERE id = $1", &[&id])).map(|n| n > 0)
    }

    fn create_token(&self, t: &Token) -> Result<(), MetaError> {
        self.insert(
            || "that token".to_string(),
            |c| {
                c.execute(
                    &format!("INSERT INTO tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                    &[
                        &t.id,
                        &t.name,
                        &t.role.as_str(),
                        &t.user_id,
                        &t.device,
                        &t.patient,
                        &t.sha256,
                        &t.api_secret_sha256,
                        &t.created_ms,
                        &t.expires_ms,
                        &t.revoked_ms,
                    ],
                )
            },
        )
    }

    fn token(&self, id: &str) -> Result<Option<Token>, MetaError> {
        one(self.with(|c| c.query_opt(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"), &[&id]))?, token_row)
    }

    fn token_by_sha256(&self, h: &str) -> Result<Option<Token>, MetaError> {
        let row = self.with(|c| c.query_opt(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE sha256 = $1"), &[&h]))?;
        one(row, token_row)
    }

    fn token_by_api_secret(&self, h: &str) -> Result<Option<Token>, MetaError> {
        let row = self
            .with(|c| c.query_opt(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE api_secret_sha256 = $1"), &[&h]))?;
        one(row, token_row)
    }

    fn tokens(&self) -> Result<Vec<Token>, MetaError> {
        all(
            self.with(|c| c.query(&format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY created_ms, id"), &[]))?,
            token_row,
        )
    }

    fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, MetaError> {
        self.with(|c| {
            c.execute("UPDATE tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL", &[&id, &at_ms])
        })
        .map(|n| n > 0)
    }

    fn create_team(&self, name: &str, now_ms: i64) -> Result<(), MetaError> {
        self.insert(
            || format!("team {name:?}"),
            |c| c.execute("INSERT INTO teams (name, created_ms) VALUES ($1, $2)", &[&name, &now_ms]),
        )
    }

    fn delete_team(&self, name: &str) -> Result<bool, MetaError> {
        self.with(|c| c.execute("DELETE FROM teams WHERE name = $1", &[&name])).map(|n| n > 0)
    }

    fn teams(&self) -> Result<Vec<Team>, MetaError> {
        let (teams, members, patients) = self.with(|c| {
            let mut tx = c.build_transaction().read_only(true).start()?;
            let teams = tx.query("SELECT name, created_ms FROM teams ORDER BY name", &[])?;
            let members = tx.query("SELECT team, user_id FROM team_members ORDER BY user_id", &[])?;
            let patients = tx.query("SELECT team, patient FROM team_patients ORDER BY patient", &[])?;
            tx.commit()?;
            Ok((teams, members, patients))
        })?;
        let mut out = teams
            .iter()
            .map(|r| Ok(Team { name: col(r, 0)?, created_ms: col(r, 1)?, members: Vec::new(), patients: Vec::new() }))
            .collect::<Result<Vec<Team>, MetaError>>()?;
        for (rows, members) in [(members, true), (patients, false)] {
            for r in &rows {
                let (team, value): (&str, String) = (col(r, 0)?, col(r, 1)?);
                if let Some(t) = out.iter_mut().find(|t| t.name == team) {
                    if members { t.members.push(value) } else { t.patients.push(value) }
                }
            }
        }
        Ok(out)
    }

    fn set_member(&self, team: &str, user_id: &str, member: bool) -> Result<(), MetaError> {
        let sql = if member {
            "INSERT INTO team_members (team, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM team_members WHERE team = $1 AND user_id = $2"
        };
        self.team_link(team, sql, [team, user_id])
    }

    fn set_team_patient(&self, team: &str, patient: &str, linked: bool) -> Result<(), MetaError> {
        let sql = if linked {
            "INSERT INTO team_patients (team, patient) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM team_patients WHERE team = $1 AND patient = $2"
        };
        self.team_link(team, sql, [team, patient])
    }

    fn patients_of_member(&self, user_id: &str) -> Result<Vec<String>, MetaError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT DISTINCT p.patient FROM team_patients p JOIN team_members m ON m.team = p.team
                 WHERE m.user_id = $1 ORDER BY p.patient",
                &[&user_id],
            )
        })?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    fn create_patient(&self, p: &Patient) -> Result<(), MetaError> {
        self.insert(
            || format!("patient {:?}", p.id),
            |c| {
                c.execute(
                    "INSERT INTO patients (id, created_ms, created_by) VALUES ($1, $2, $3)",
                    &[&p.id, &p.created_ms, &p.created_by],
                )
            },
        )
    }

    fn patient(&self, id: &str) -> Result<Option<Patient>, MetaError> {
        let row =
            self.with(|c| c.query_opt("SELECT id, created_ms, created_by FROM patients WHERE id = $1", &[&id]))?;
        one(row, patient_row)
    }

    fn patients(&self) -> Result<Vec<Patient>, MetaError> {
        all(self.with(|c| c.query("SELECT id, created_ms, created_by FROM patients ORDER BY id", &[]))?, patient_row)
    }

    fn delete_patient(&self, id: &str) -> Result<bool, MetaError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut n = tx.execute("DELETE FROM patients WHERE id = $1", &[&id])?;
            n += tx.execute("DELETE FROM team_patients WHERE patient = $1", &[&id])?;
            n += tx.execute("DELETE FROM tokens WHERE patient = $1", &[&id])?;
            n += tx.execute("UPDATE users SET patient = NULL, disabled = TRUE WHERE patient = $1", &[&id])?;
            n += tx.execute("DELETE FROM device_certs WHERE patient = $1", &[&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn create_device_cert(&self, d: &DeviceCert) -> Result<(), MetaError> {
        self.insert(
            || "a device with that certificate".to_string(),
            |c| {
                c.execute(
                    &format!("INSERT INTO device_certs ({CERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                    &[&d.sha256, &d.id, &d.name, &d.device, &d.patient, &d.created_ms, &d.revoked_ms],
                )
            },
        )
    }

    fn device_cert(&self, sha256_hex: &str) -> Result<Option<DeviceCert>, MetaError> {
        let row = self.with(|c| {
            c.query_opt(&format!("SELECT {CERT_COLS} FROM device_certs WHERE sha256 = $1"), &[&sha256_hex])
        })?;
        one(row, cert_row)
    }

    fn device_certs(&self) -> Result<Vec<DeviceCert>, MetaError> {
        let rows =
            self.with(|c| c.query(&format!("SELECT {CERT_COLS} FROM device_certs ORDER BY created_ms, id"), &[]))?;
        all(rows, cert_row)
    }

    fn revoke_device_cert(&self, id: &str, at_ms: i64) -> Result<bool, MetaError> {
        self.with(|c| {
            c.execute("UPDATE device_certs SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL", &[&id, &at_ms])
        })
        .map(|n| n > 0)
    }

    fn create_session(&self, s: &Session) -> Result<(), MetaError> {
        self.insert(
            || "that session".to_string(),
            |c| {
                c.execute(
                    "INSERT INTO sessions (sha256, user_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
                    &[&s.sha256, &s.user_id, &s.csrf, &s.created_ms, &s.expires_ms],
                )
            },
        )
    }

    fn session(&self, h: &str) -> Result<Option<Session>, MetaError> {
        let row = self.with(|c| {
            c.query_opt("SELECT sha256, user_id, csrf, created_ms, expires_ms FROM sessions WHERE sha256 = $1", &[&h])
        })?;
        one(row, session_row)
    }

    fn delete_session(&self, h: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE sha256 = $1", &[&h])).map(drop)
    }

    fn delete_sessions_of(&self, user_id: &str) -> Result<(), MetaError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])).map(drop)
    }

    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>, MetaError> {
        let key = self.audit_key.read().clone();
        self.with(|c| {
            let mut tx = c.transaction()?;
            // The head's row lock orders appends from every node into one chain.
            let head = tx.query_one("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE", &[])?;
            let (mut last, mut prev): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
            let insert = tx.prepare(&format!(
                "INSERT INTO audit ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))?;
            let mut out = Vec::with_capacity(events.len());
            for e in events {
                let seq = last + 1;
                let hash = audit::entry_hash(key.as_ref(), &prev, seq, e);
                tx.execute(
                    &insert,
                    &[&seq, &e.ts_ms, &e.actor, &e.action, &e.patient, &e.target, &e.origin, &e.outcome, &prev, &hash],
                )?;
                out.push(AuditEntry { seq, event: e.clone(), prev: prev.clone(), hash: hash.clone() });
                (last, prev) = (seq, hash);
            }
            tx.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[&last, &prev])?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, MetaError> {
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE TRUE");
        let mut text: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Text parameters first ($1..), then integers, numbered as they are added.
        let mut clauses: Vec<(String, bool)> = Vec::new();
        if let Some(p) = &f.patient {
            text.push(p.clone());
            clauses.push(("patient = ?".into(), true));
        }
        if let Some(a) = &f.actor {
            text.push(a.clone());
            clauses.push(("actor = ?".into(), true));
        }
        match &f.action {
            Some(a) if a.ends_with('.') => {
                text.push(format!("{}%", a.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
                clauses.push(("action LIKE ? ESCAPE '\\'".into(), true));
            }
            Some(a) => {
                text.push(a.clone());
                clauses.push(("action = ?".into(), true));
            }
            None => {}
        }
        for (bound, clause) in [(f.from_ms, "ts_ms >= ?"), (f.to_ms, "ts_ms < ?"), (f.before_seq, "seq < ?")] {
            if let Some(v) = bound {
                ints.push(v);
                clauses.push((clause.into(), false));
            }
        }
        let (mut t, mut i) = (0, text.len());
        for (clause, is_text) in clauses {
            let n = if is_text {
                t += 1;
                t
            } else {
                i += 1;
                i
            };
            sql.push_str(&format!(" AND {}", clause.replace('?', &format!("${n}"))));
        }
        let limit = f.limit.clamp(1, 10_000);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
        params.extend(text.iter().map(|s| s as &(dyn postgres::types::ToSql + Sync)));
        params.extend(ints.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)));
        all(self.with(|c| c.query(&sql, &params))?, audit_row)
    }

    fn audit_run(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, MetaError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with(|c| {
            c.query(&format!("SELECT {AUDIT_COLS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"), &[&after, &limit])
        })?;
        all(rows, audit_row)
    }

    fn audit_head(&self) -> Result<(i64, String), MetaError> {
        let row = self.with(|c| c.query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[]))?;
        Ok((col(&row, 0)?, col(&row, 1)?))
    }

    fn set_audit_key(&self, key: AuditKey) {
        *self.audit_key.write() = Some(key);
    }
}
