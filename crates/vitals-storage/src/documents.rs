//! Documents: events kept whole as their senders wrote them and too many to hold in memory
//! (a CGM uploader's entries and device statuses: one of each every five minutes, a device
//! status of a closed loop a few kilobytes). An event is a document when its kind names a
//! collection, `<api>/<collection>` (e.g. `nightscout/entries`); the event store hands those
//! here. They live in an embedded SQLite database (`documents.sqlite` beside the event
//! log, write-ahead journal, synchronous commits), indexed by (patient, kind, start) and
//! unique by (patient, id): a re-send with the same id replaces the document. A document's
//! `srvModified` attribute (ms, set by the server at each change; else its start) is
//! indexed too, for clients that sync by what changed since. Nothing of them stays in
//! memory. Durable when `put` returns.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use vitals_core::Event;

/// What went wrong with the document database.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document database {path}: {source}")]
    Sql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("document {id} of patient {patient}: {source}")]
    Json {
        patient: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Whether an event of this kind is a document (its kind names a collection).
pub fn is_document(kind: &str) -> bool {
    kind.contains('/')
}

/// Which documents a read wants: one patient's of one kind, newest first.
#[derive(Debug, Clone)]
pub struct DocumentQuery<'a> {
    pub patient: &'a str,
    pub kind: &'a str,
    /// Start times in `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    /// Only documents whose top-level field equals this text or number (as given).
    pub field: Option<(&'a str, &'a str)>,
    /// Oldest first instead.
    pub ascending: bool,
    /// Leave out deleted documents (`isValid: false`, kept so that clients syncing by
    /// change learn of the deletion).
    pub live_only: bool,
}

#[derive(Debug)]
pub struct DocumentStore {
    conn: Mutex<Connection>,
    path: String,
}

impl DocumentStore {
    /// Opens (or creates) `documents.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<DocumentStore, DocumentError> {
        let file = dir.join("documents.sqlite");
        let path = file.display().to_string();
        let sql = |source| DocumentError::Sql { path: path.clone(), source };
        let conn = Connection::open(&file).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS documents (
                 patient TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL,
                 start_ms INTEGER NOT NULL, modified_ms INTEGER NOT NULL, event TEXT NOT NULL,
                 PRIMARY KEY (patient, id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS documents_by_time ON documents (patient, kind, start_ms);
             CREATE INDEX IF NOT EXISTS documents_by_change ON documents (patient, kind, modified_ms);",
        )
        .map_err(sql)?;
        Ok(DocumentStore { conn: Mutex::new(conn), path })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> DocumentError + '_ {
        |source| DocumentError::Sql { path: self.path.clone(), source }
    }

    /// Stores documents durably in one transaction, replacing those with the same id.
    pub fn put(&self, docs: &[Event]) -> Result<(), DocumentError> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(docs.len());
        for e in docs {
            let text = serde_json::to_string(e).map_err(|source| DocumentError::Json {
                patient: e.patient.clone(),
                id: e.id.clone(),
                source,
            })?;
            rows.push(text);
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(self.sql())?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO documents (patient, id, kind, start_ms, modified_ms, event)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (patient, id) DO UPDATE SET kind = excluded.kind, start_ms = excluded.start_ms,
                         modified_ms = excluded.modified_ms, event = excluded.event",
                )
                .map_err(self.sql())?;
            for (e, text) in docs.iter().zip(&rows) {
                put.execute(params![e.patient, e.id, e.kind, e.start_ms, e.changed_ms(), text]).map_err(self.sql())?;
            }
        }
        tx.commit().map_err(self.sql())
    }

    /// One document by its id.
    pub fn get(&self, patient: &str, id: &str) -> Result<Option<Event>, DocumentError> {
        let conn = self.conn.lock();
        let text: Option<String> = conn
            .query_row("SELECT event FROM documents WHERE patient = ?1 AND id = ?2", params![patient, id], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        text.map(|t| self.decode(patient, id, &t)).transpose()
    }

    /// A patient's documents with these ids (those that exist), in one query.
    pub fn get_many(&self, patient: &str, ids: &[&str]) -> Result<Vec<Event>, DocumentError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(ids).map_err(|source| DocumentError::Json {
            patient: patient.into(),
            id: String::new(),
            source,
        })?;
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, event FROM documents WHERE patient = ?1 AND id IN (SELECT value FROM json_each(?2))",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![patient, list], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sql())?;
        self.collect(patient, rows)
    }

    fn decode(&self, patient: &str, id: &str, text: &str) -> Result<Event, DocumentError> {
        serde_json::from_str(text).map_err(|source| DocumentError::Json {
            patient: patient.into(),
            id: id.into(),
            source,
        })
    }

    /// A patient's documents of one kind starting in `[from, to)`, newest first, at most
    /// `limit`.
    pub fn newest(&self, q: &DocumentQuery<'_>) -> Result<Vec<Event>, DocumentError> {
        let conn = self.conn.lock();
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let (field_path, field_value) = match q.field {
            // A path for json_extract: quoted, so any key is taken literally.
            Some((k, v)) => (Some(format!("$.attributes.\"{}\"", k.replace('"', ""))), Some(v)),
            None => (None, None),
        };
        let order = if q.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT id, event FROM documents
             WHERE patient = ?1 AND kind = ?2 AND start_ms >= ?3 AND start_ms < ?4
               AND (?5 IS NULL OR CAST(json_extract(event, ?5) AS TEXT) = ?6)
               AND (?8 = 0 OR COALESCE(json_extract(event, '$.attributes.isValid'), 1) != 0)
             ORDER BY start_ms {order}, id {order} LIMIT ?7"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(self.sql())?;
        let rows = stmt
            .query_map(params![q.patient, q.kind, q.from, q.to, field_path, field_value, limit, q.live_only], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.sql())?;
        self.collect(q.patient, rows)
    }

    fn collect(
        &self,
        patient: &str,
        rows: impl Iterator<Item = rusqlite::Result<(String, String)>>,
    ) -> Result<Vec<Event>, DocumentError> {
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row.map_err(self.sql())?;
            out.push(self.decode(patient, &id, &text)?);
        }
        Ok(out)
    }

    /// A patient's documents of one kind changed after `since` (ms), oldest change first,
    /// at most `limit`.
    pub fn changed_since(
        &self,
        patient: &str,
        kind: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<Event>, DocumentError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, event FROM documents WHERE patient = ?1 AND kind = ?2 AND modified_ms > ?3
                 ORDER BY modified_ms, id LIMIT ?4",
            )
            .map_err(self.sql())?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![patient, kind, since, limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sql())?;
        self.collect(patient, rows)
    }

    /// When a patient's documents of one kind last changed (ms), if there are any.
    pub fn last_modified(&self, patient: &str, kind: &str) -> Result<Option<i64>, DocumentError> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT MAX(modified_ms) FROM documents WHERE patient = ?1 AND kind = ?2",
            params![patient, kind],
            |r| r.get::<_, Option<i64>>(0),
        )
        .map_err(self.sql())
    }

    /// Removes a document; whether there was one.
    pub fn remove(&self, patient: &str, id: &str) -> Result<bool, DocumentError> {
        let conn = self.conn.lock();
        let n = conn
            .execute("DELETE FROM documents WHERE patient = ?1 AND id = ?2", params![patient, id])
            .map_err(self.sql())?;
        Ok(n > 0)
    }

    /// Removes every document of a patient and reclaims their pages (so no free page of the
    /// file holds them); returns how many were removed.
    pub fn erase_patient(&self, patient: &str) -> Result<usize, DocumentError> {
        let conn = self.conn.lock();
        let n = conn.execute("DELETE FROM documents WHERE patient = ?1", params![patient]).map_err(self.sql())?;
        if n > 0 {
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").map_err(self.sql())?;
        }
        Ok(n)
    }

    /// Hands every document of a patient to `each`, by kind and start (for a patient's
    /// export: one at a time, whatever the history's size); stops at `each`'s first error.
    pub fn each_of_patient<E: From<DocumentError>>(
        &self,
        patient: &str,
        mut each: impl FnMut(Event) -> Result<(), E>,
    ) -> Result<usize, E> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT id, event FROM documents WHERE patient = ?1 ORDER BY kind, start_ms, id")
            .map_err(self.sql())?;
        let mut rows = stmt.query(params![patient]).map_err(self.sql())?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(self.sql())? {
            let (id, text): (String, String) = (row.get(0).map_err(self.sql())?, row.get(1).map_err(self.sql())?);
            each(self.decode(patient, &id, &text)?)?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(patient: &str, id: &str, kind: &str, start: i64, sgv: i64) -> Event {
        Event {
            id: id.into(),
            patient: patient.into(),
            kind: kind.into(),
            start_ms: start,
            end_ms: start,
            source: "nightscout".into(),
            attributes: [("sgv".to_owned(), json!(sgv)), ("direction".to_owned(), json!("SingleUp"))].into(),
        }
    }

    fn q<'a>(patient: &'a str, kind: &'a str, limit: usize) -> DocumentQuery<'a> {
        DocumentQuery {
            patient,
            kind,
            from: i64::MIN,
            to: i64::MAX,
            limit,
            field: None,
            ascending: false,
            live_only: false,
        }
    }

    #[test]
    fn documents_come_back_newest_first_replaced_by_id_and_after_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = DocumentStore::open(dir.path()).expect("open");
            let k = "nightscout/entries";
            s.put(&[doc("p", "a", k, 100, 1), doc("p", "b", k, 200, 2), doc("q", "a", k, 300, 3)]).expect("put");
            s.put(&[doc("p", "a", k, 150, 4), doc("p", "c", "nightscout/devicestatus", 400, 5)]).expect("replace");
        }
        let s = DocumentStore::open(dir.path()).expect("reopen");
        let got = s.newest(&q("p", "nightscout/entries", 10)).expect("read");
        let seen: Vec<(&str, i64, &serde_json::Value)> =
            got.iter().map(|e| (e.id.as_str(), e.start_ms, &e.attributes["sgv"])).collect();
        assert_eq!(seen, vec![("b", 200, &json!(2)), ("a", 150, &json!(4))]);
        assert_eq!(got[0].attributes["direction"], json!("SingleUp"), "kept whole");
        assert_eq!(s.newest(&q("p", "nightscout/entries", 1)).expect("one").len(), 1);
        let window = DocumentQuery { from: 160, to: 201, ..q("p", "nightscout/entries", 10) };
        assert_eq!(s.newest(&window).expect("window").len(), 1);
        let by_field = DocumentQuery { field: Some(("sgv", "4")), ..q("p", "nightscout/entries", 10) };
        assert_eq!(s.newest(&by_field).expect("field")[0].id, "a");
        assert_eq!(s.get("q", "a").expect("get").map(|e| e.start_ms), Some(300), "ids are the patient's own");
        let mut many: Vec<String> =
            s.get_many("p", &["a", "b", "zz"]).expect("many").into_iter().map(|e| e.id).collect();
        many.sort();
        assert_eq!(many, vec!["a", "b"], "those that exist, the patient's own");
        let oldest = DocumentQuery { ascending: true, ..q("p", "nightscout/entries", 1) };
        assert_eq!(s.newest(&oldest).expect("oldest")[0].id, "a");
        // What changed since: by `srvModified`, else the start.
        let mut changed = doc("p", "b", "nightscout/entries", 200, 2);
        changed.attributes.insert("srvModified".into(), json!(5000));
        s.put(&[changed]).expect("change b");
        let since: Vec<String> =
            s.changed_since("p", "nightscout/entries", 160, 10).expect("since").into_iter().map(|e| e.id).collect();
        assert_eq!(since, vec!["b"], "a (150) is older, b changed at 5000");
        assert_eq!(s.last_modified("p", "nightscout/entries").expect("last"), Some(5000));
        assert_eq!(s.last_modified("p", "nightscout/food").expect("none"), None);
        let mut gone = doc("p", "b", "nightscout/entries", 200, 2);
        gone.attributes.insert("isValid".into(), json!(false));
        s.put(&[gone]).expect("delete b");
        let live = DocumentQuery { live_only: true, ..q("p", "nightscout/entries", 10) };
        assert_eq!(s.newest(&live).expect("live").len(), 1, "b is deleted");
        assert_eq!(s.newest(&q("p", "nightscout/entries", 10)).expect("all").len(), 2);
        assert!(s.remove("p", "b").expect("remove"));
        assert_eq!(s.each_of_patient::<DocumentError>("p", |_| Ok(())).expect("all"), 2);
    }

    #[test]
    fn erasing_a_patient_leaves_no_trace_in_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = DocumentStore::open(dir.path()).expect("open");
        let mut gone = doc("gone", "x", "nightscout/devicestatus", 1, 1);
        gone.attributes.insert("device".into(), json!("secret-uploader-of-erased"));
        s.put(&[gone, doc("kept", "y", "nightscout/devicestatus", 1, 1)]).expect("put");
        assert_eq!(s.erase_patient("gone").expect("erase"), 1);
        assert_eq!(s.erase_patient("gone").expect("again"), 0);
        for name in ["documents.sqlite", "documents.sqlite-wal"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
                assert!(!bytes.windows(9).any(|w| w == b"of-erased"), "{name} holds no trace");
            }
        }
        assert_eq!(s.each_of_patient::<DocumentError>("kept", |_| Ok(())).expect("kept"), 1);
    }
}
