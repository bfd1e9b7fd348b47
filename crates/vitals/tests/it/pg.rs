//! The PostgreSQL wire protocol with real clients: Debian's `psql` (simple query protocol)
//! and psycopg 3 from PyPI (extended protocol, typed values), as an analyst, as a
//! clinician who must never see another team's patient, and with a token as password.

use std::process::Command;

use serde_json::{Value, json};
use vitals_server::auth::{NewToken, Role};

use crate::harness::{ADMIN, NOW, TestServer, eventually};

pub(crate) const OWN: &str = "own-patient-0001";
pub(crate) const OTHER: &str = "other-patient-0002";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) struct World {
    pub(crate) server: TestServer,
    pub(crate) port: u16,
    pub(crate) token: String,
}

pub(crate) fn world() -> World {
    let server = TestServer::with_config(|c| c.sql.pg_listen = "127.0.0.1:0".into());
    let d = &server.app.directory;
    d.create_user("ana", Role::Analyst, Some(PASSWORD), None, NOW).expect("analyst");
    d.create_user("cli", Role::Clinician, Some(PASSWORD), None, NOW).expect("clinician");
    d.create_user("pat", Role::Patient, Some(PASSWORD), Some(OWN), NOW).expect("patient");
    vitals_server::people::set_team(d.meta(), "ward", &["cli".into()], &[OWN.into()], NOW).expect("team");
    let (_, token) =
        d.create_token(&NewToken { name: "cli-token", user: Some("cli"), ..Default::default() }, NOW).expect("token");
    for (p, v) in [(OWN, 60), (OTHER, 90)] {
        let s: Vec<Value> = (0..5)
            .map(|i| json!({"patient": p, "metric": "heart_rate", "time": NOW - 300_000 + i * 60_000, "value": v + i}))
            .collect();
        assert_eq!(server.ingest(&Value::Array(s)).status, 200);
    }
    server.store.flush().expect("flush");
    let s = json!([{"patient": OWN, "metric": "heart_rate", "time": NOW - 1000, "value": 75.5, "device": "w1"}]);
    assert_eq!(server.ingest(&s).status, 200, "one sample stays buffered");
    let mut port = 0;
    eventually("the PostgreSQL listener", || {
        port = server.app.pg_listen_addr.get().map_or(0, |a| a.port());
        port != 0
    });
    World { server, port, token }
}

/// `psql -q -A -t -c <sql>` as `user`: (success, stdout, stderr).
pub(crate) fn psql(w: &World, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &w.port.to_string(),
            "-U",
            user,
            "-d",
            "vitals",
            "-X",
            "-q",
            "-A",
            "-t",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs (scripts/test installs postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_queries_as_an_analyst_and_a_clinician_and_refuses_others() {
    let w = world();
    let (ok, out, err) = psql(
        &w,
        "ana",
        PASSWORD,
        "SELECT patient, count(*), max(value) FROM samples GROUP BY patient ORDER BY patient",
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("{OTHER}|5|94.0\n{OWN}|6|75.5"), "the buffered sample is seen");
    let (ok, out, err) = psql(&w, "ana", PASSWORD, "SELECT metric, unit FROM metrics WHERE code = 'heart_rate'");
    assert!(!ok && out.is_empty(), "a wrong column is an error: {out}");
    assert!(err.contains("metric"), "{err}");
    // Several statements in one simple query, and the session statements clients send.
    let (ok, out, err) =
        psql(&w, "ana", PASSWORD, "BEGIN; SELECT 1 AS one; SELECT code FROM metrics WHERE code = 'eda'; COMMIT");
    assert!(ok, "{err}");
    assert_eq!(out, "1\neda", "{out}");

    for sql in [
        "SELECT DISTINCT patient FROM samples".to_owned(),
        format!("SELECT patient FROM samples WHERE patient = '{OTHER}' UNION SELECT patient FROM patients"),
        "SELECT s.patient FROM samples s JOIN patients p USING (patient) GROUP BY s.patient".to_owned(),
        format!("SELECT patient FROM rollups_hourly WHERE patient IN (SELECT '{OTHER}') OR patient = '{OWN}'"),
    ] {
        let (ok, out, err) = psql(&w, "cli", PASSWORD, &sql);
        assert!(ok, "{sql}: {err}");
        assert!(!out.contains(OTHER), "{sql}: the clinician saw {out}");
        assert!(out.lines().all(|l| l == OWN), "{sql}: {out}");
    }
    let (ok, out, err) = psql(&w, "whoever", &w.token, "SELECT count(*) FROM samples");
    assert!(ok, "{err}");
    assert_eq!(out, "6", "a token as the password acts as its user (the clinician)");

    let (ok, _, err) = psql(&w, "ana", "wrong", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("assword authentication failed for user \"ana\""), "{err}");
    let (ok, _, err) = psql(&w, "pat", PASSWORD, "SELECT 1");
    assert!(!ok, "a patient gets no SQL");
    assert!(err.contains("may not run SQL"), "{err}");
    let (ok, _, err) = psql(&w, "ana", PASSWORD, "DROP TABLE samples");
    assert!(!ok);
    assert!(err.contains("only queries"), "{err}");

    let audit = w.server.get("/api/v1/audit?action=sql.query", Some(ADMIN)).json();
    let targets: Vec<String> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(targets.iter().any(|t| t == "user:cli ok postgres SELECT DISTINCT patient FROM samples"), "{targets:?}");
    assert!(targets.iter().any(|t| t.starts_with("user:ana failed postgres DROP TABLE")), "{targets:?}");
}

/// Holds `sql.pg_max_connections` connections open, then tries one more.
const CAP: &str = r#"
import json, sys, time
import psycopg
port, password, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(host="127.0.0.1", port=int(port), user="ana", password=password, dbname="vitals", sslmode="disable")
held = [psycopg.connect(**kw) for _ in range(cap)]
out = {"held": len(held)}
try:
    psycopg.connect(**kw)
    out["refused"] = None
except psycopg.OperationalError as e:
    out["refused"] = str(e)
for c in held:
    c.close()
# The server frees a slot once it has seen the close: poll, with a deadline.
deadline = time.monotonic() + 10
while True:
    try:
        with psycopg.connect(**kw) as c:
            out["after"] = c.execute("SELECT 1").fetchone()[0]
        break
    except psycopg.OperationalError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
print(json.dumps(out))
"#;

#[test]
fn connections_over_the_cap_are_refused_as_postgresql_does() {
    let server = TestServer::with_config(|c| {
        c.sql.pg_listen = "127.0.0.1:0".into();
        c.sql.pg_max_connections = 2;
    });
    server.app.directory.create_user("ana", Role::Analyst, Some(PASSWORD), None, NOW).expect("analyst");
    let mut port = 0;
    eventually("the PostgreSQL listener", || {
        port = server.app.pg_listen_addr.get().map_or(0, |a| a.port());
        port != 0
    });
    let out = Command::new("python3").args(["-c", CAP, &port.to_string(), PASSWORD, "2"]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["held"], 2);
    assert!(v["refused"].as_str().is_some_and(|m| m.contains("too many clients")), "{v}");
    assert_eq!(v["after"], 1, "a slot frees when its connection closes");
}

const PSYCOPG: &str = r#"
import json, sys, datetime
import psycopg
port, user, password, own, other = sys.argv[1:6]
out = {}
with psycopg.connect(host="127.0.0.1", port=int(port), user=user, password=password, dbname="vitals", sslmode="disable") as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT patient, time, value, device FROM samples ORDER BY patient, time")
        rows = cur.fetchall()
        out["types"] = [type(v).__name__ for v in rows[-1]]
        out["tz"] = str(rows[-1][1].tzinfo)
        out["rows"] = [[r[0], r[1].isoformat(), r[2], r[3]] for r in rows]
        out["columns"] = [d.name for d in cur.description]
        cur.execute("SELECT count(*) AS n, avg(value) AS mean FROM samples WHERE patient = '" + other + "'")
        out["other"] = list(cur.fetchone())
        cur.execute("SELECT patient, teams, cohorts FROM patients ORDER BY patient")
        out["patients"] = [list(r) for r in cur.fetchall()]
        # Parameters, bound server-side (the extended protocol's Bind), as pandas sends them.
        since = datetime.datetime(2025, 11, 1, tzinfo=datetime.timezone.utc)
        cur.execute("SELECT count(*) AS n, sum(value) AS s FROM samples WHERE patient = %s AND time >= %s AND value > %s",
                    (own, since, 61))
        out["params"] = list(cur.fetchone())
        cur.execute("SELECT count(*) FROM samples WHERE patient = %s", (other,))
        out["params_other"] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM samples WHERE patient = %s OR %s", (other, True))
        out["injection"] = cur.fetchone()[0]
    conn.commit()
    try:
        conn.execute("SELECT nope FROM samples")
        out["error"] = None
    except psycopg.Error as e:
        out["error"] = e.sqlstate
print(json.dumps(out))
"#;

fn psycopg(w: &World, user: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", PSYCOPG, &w.port.to_string(), user, PASSWORD, OWN, OTHER])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "psycopg: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn psycopg_gets_typed_rows_and_a_clinician_stays_within_their_team() {
    let w = world();
    let v = psycopg(&w, "ana");
    assert_eq!(v["columns"], json!(["patient", "time", "value", "device"]));
    assert_eq!(v["types"], json!(["str", "datetime", "float", "str"]));
    assert_eq!(v["tz"], "UTC");
    assert_eq!(v["rows"].as_array().expect("rows").len(), 11);
    assert_eq!(v["rows"][10], json!([OWN, "2025-11-22T02:59:59+00:00", 75.5, "w1"]));
    assert_eq!(v["other"], json!([5, 92.0]));
    assert_eq!(v["error"], "42601", "a planning error carries an SQLSTATE");
    assert_eq!(v["params"], json!([4, 264.5]), "parameters are bound: OWN above 61 since November");
    assert_eq!(v["params_other"], 5);
    assert_eq!(v["injection"], 11);

    let v = psycopg(&w, "cli");
    let patients: Vec<&str> = v["rows"].as_array().expect("rows").iter().map(|r| r[0].as_str().expect("p")).collect();
    assert_eq!(patients.len(), 6);
    assert!(patients.iter().all(|p| *p == OWN), "{patients:?}");
    assert_eq!(v["other"], json!([0, null]), "another team's patient does not exist for a clinician");
    assert_eq!(v["params"], json!([4, 264.5]));
    assert_eq!(v["params_other"], 0, "a parameter does not reach past the row filter either");
    assert_eq!(v["injection"], 6, "OR TRUE as a parameter still sees the clinician's rows only");
    assert_eq!(v["patients"], json!([[OWN, "ward", ""]]));
}
