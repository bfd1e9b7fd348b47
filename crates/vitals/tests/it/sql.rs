//! SQL for analysts through the real server and binary: `POST /api/v1/sql` in every answer
//! format (Arrow IPC and Parquet read back by pyarrow and DuckDB), row scopes per role,
//! the audit entry with the query text, clear errors, agreement with the REST API over
//! buffered and flushed data, and `vitals sql` on a data directory and through a server.

use std::process::Command;

use serde_json::{Value, json};
use vitals_server::auth::{NewToken, Role};

use crate::cli::vitals;
use crate::harness::{ADMIN, NOW, Resp, Rng, TestServer};

const OWN: &str = "own-patient-0001";
const OTHER: &str = "other-patient-0002";

fn sql(server: &TestServer, token: &str, query: &str, format: &str) -> Resp {
    server.post(
        &format!("/api/v1/sql?format={format}"),
        Some(token),
        "application/json",
        json!({ "sql": query }).to_string().as_bytes(),
    )
}

/// A server with data of OWN and OTHER (some flushed, some buffered) and a token per role:
/// the clinician's team has OWN only.
fn world() -> (TestServer, String, String, String) {
    let server = TestServer::start();
    let d = &server.app.directory;
    for (name, role) in [("cli", Role::Clinician), ("ana", Role::Analyst), ("pat", Role::Patient)] {
        let patient = (role == Role::Patient).then_some(OWN);
        d.create_user(name, role, None, patient, NOW).expect("user");
    }
    vitals_server::people::set_team(d.meta(), "ward", &["cli".into()], &[OWN.into()], NOW).expect("team");
    let token =
        |name: &str| d.create_token(&NewToken { name, user: Some(name), ..Default::default() }, NOW).expect("t").1;
    let (cli, ana, pat) = (token("cli"), token("ana"), token("pat"));
    for (p, v) in [(OWN, 60), (OTHER, 90)] {
        let s: Vec<Value> =
            (0..10).map(|i| json!({"patient": p, "metric": "heart_rate", "time": NOW - 600_000 + i * 60_000, "value": v + i, "device": "w1"})).collect();
        assert_eq!(server.ingest(&Value::Array(s)).status, 200);
    }
    server.store.flush().expect("flush");
    // Buffered, and one of them overwrites a flushed reading.
    let s = json!([
        {"patient": OWN, "metric": "heart_rate", "time": NOW - 600_000, "value": 100, "device": "w1"},
        {"patient": OWN, "metric": "heart_rate", "time": NOW - 1_000, "value": 72}
    ]);
    assert_eq!(server.ingest(&s).status, 200);
    (server, cli, ana, pat)
}

#[test]
fn answers_come_in_json_csv_arrow_and_parquet_and_see_buffered_data() {
    let (server, _, ana, _) = world();
    let q = format!(
        "SELECT patient, metric, time, value, unit, device FROM samples WHERE patient = '{OWN}' ORDER BY time, device"
    );
    let r = sql(&server, &ana, &q, "json");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["row_count"], 11);
    assert_eq!(v["columns"][2], json!({"name": "time", "type": "Timestamp(ms, \"UTC\")"}));
    assert_eq!(v["rows"][0], json!([OWN, "heart_rate", "2025-11-22T02:50:00Z", 100.0, "bpm", "w1"]), "last write wins");
    assert_eq!(v["rows"][10], json!([OWN, "heart_rate", "2025-11-22T02:59:59Z", 72.0, "bpm", null]), "buffered");

    let r = sql(&server, &ana, &q, "csv");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], "patient,metric,time,value,unit,device");
    assert_eq!(lines[1], format!("{OWN},heart_rate,2025-11-22T02:50:00Z,100.0,bpm,w1"));
    assert_eq!(lines.len(), 12);

    // Accept picks the format when none is named.
    let dir = tempfile::tempdir().expect("tmp");
    for (accept, file) in
        [("application/vnd.apache.arrow.stream", "a.arrow"), ("application/vnd.apache.parquet", "a.parquet")]
    {
        let r = server.request(
            "POST",
            "/api/v1/sql",
            &[("Authorization", &format!("Bearer {ana}")), ("Content-Type", "application/sql"), ("Accept", accept)],
            Some(q.as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.content_type.as_deref(), Some(accept));
        std::fs::write(dir.path().join(file), &r.bytes).expect("write");
    }
    let script = r#"
import json, sys
import duckdb, pyarrow.ipc as ipc, pyarrow.parquet as pq
d = sys.argv[1]
a = ipc.open_stream(open(f"{d}/a.arrow", "rb")).read_all()
p = pq.read_table(f"{d}/a.parquet")
rows = duckdb.sql(f"SELECT count(*), sum(value), min(epoch_ms(time)) FROM read_parquet('{d}/a.parquet')").fetchall()[0]
print(json.dumps({"arrow": a.num_rows, "arrow_values": a.column("value").to_pylist(), "parquet": p.num_rows,
                  "schema": [f.name for f in p.schema], "duckdb": list(rows)}))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(dir.path()).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["arrow"], 11);
    assert_eq!(v["arrow_values"][0], 100.0);
    assert_eq!(v["parquet"], 11);
    assert_eq!(v["schema"], json!(["patient", "metric", "time", "value", "unit", "device"]));
    let sum: f64 = 100.0 + (61..70).sum::<i64>() as f64 + 72.0;
    assert_eq!(v["duckdb"], json!([11, sum, NOW - 600_000]));
}

#[test]
fn a_clinician_sees_only_their_patients_by_any_sql_and_devices_and_patients_get_none() {
    let (server, cli, ana, pat) = world();
    for q in [
        "SELECT DISTINCT patient FROM samples".to_owned(),
        format!("SELECT patient FROM samples WHERE patient = '{OTHER}' UNION SELECT patient FROM patients"),
        "SELECT p.patient FROM patients p LEFT JOIN samples s ON s.patient = p.patient".to_owned(),
        format!("SELECT patient FROM (SELECT * FROM rollups_hourly) r WHERE patient IN ('{OTHER}', '{OWN}')"),
        "SELECT patient FROM alerts UNION ALL SELECT patient FROM events UNION ALL SELECT patient FROM cohorts"
            .to_owned(),
        format!("SELECT (SELECT max(patient) FROM samples WHERE patient <> '{OWN}') AS patient"),
    ] {
        let r = sql(&server, &cli, &q, "json");
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        for row in r.json()["rows"].as_array().expect("rows") {
            assert!(row[0].is_null() || row[0] == OWN, "{q}: a clinician saw {row}");
        }
        assert!(!r.body.contains(OTHER), "{q}: {}", r.body);
    }
    let r = sql(&server, &ana, "SELECT count(DISTINCT patient) FROM samples", "json");
    assert_eq!(r.json()["rows"], json!([[2]]), "an analyst sees every pseudonym");
    let r = sql(&server, &pat, "SELECT 1", "json");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = sql(&server, crate::harness::DEVICE, "SELECT 1", "json");
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn every_query_is_audited_with_its_text_and_errors_are_clear() {
    let (server, cli, _, _) = world();
    let q = "SELECT count(*) AS n FROM samples /* audit me */";
    assert_eq!(sql(&server, &cli, q, "json").status, 200);
    let bad = sql(&server, &cli, "SELEC patient FROM samples", "json");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], "invalid_sql");
    let ddl = sql(&server, &cli, "COPY (SELECT * FROM samples) TO '/tmp/x.csv'", "json");
    assert_eq!(ddl.status, 400, "{}", ddl.body);
    assert_eq!(ddl.json()["code"], "invalid_sql");
    let fmt = sql(&server, &cli, "SELECT 1", "xml");
    assert_eq!(fmt.status, 400);
    // A query over 64 KiB is refused; 50 MB of junk is refused before it is all read (the
    // client may see the connection end while it still sends); the server lives on.
    let r = server.post("/api/v1/sql", Some(&cli), "application/sql", &vec![b'x'; (64 << 10) + 1]);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["code"], "payload_too_large");
    let sent = crate::harness::agent()
        .post(&format!("{}/api/v1/sql", server.url))
        .header("Authorization", &format!("Bearer {cli}"))
        .header("Content-Type", "application/sql")
        .send(&vec![b'x'; 50 << 20][..]);
    if let Ok(r) = sent {
        assert_eq!(crate::harness::into_resp(r).status, 413);
    }
    assert_eq!(sql(&server, &cli, "SELECT 1 AS one", "json").status, 200);
    let audit = server.get("/api/v1/audit?action=sql.query", Some(ADMIN)).json();
    let entries = audit["entries"].as_array().expect("entries");
    let with = |text: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["actor"] == "user:cli"
                && e["outcome"] == outcome
                && e["target"].as_str().is_some_and(|t| t.starts_with("POST /api/v1/sql") && t.contains(text))
        })
    };
    assert!(with("/* audit me */", "ok"), "{entries:?}");
    assert!(with("SELEC patient", "failed"), "{entries:?}");
    assert!(with("COPY (SELECT", "failed"), "{entries:?}");

    let limited = TestServer::with_config(|c| c.sql.max_rows = 5);
    let r = sql(&limited, ADMIN, "SELECT * FROM range(6)", "json");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("too_many_rows")), "{}", r.body);
    assert!(r.body.contains("more than 5 rows"), "{}", r.body);
}

#[test]
fn sql_agrees_with_the_rest_api_over_buffered_and_flushed_data() {
    let server = TestServer::start();
    let mut rng = Rng::new(16);
    for round in 0..6 {
        let batch: Vec<Value> = (0..200)
            .map(|_| {
                let p = ["p-a", "p-b"][rng.below(2) as usize];
                let d = [None, Some("w1"), Some("w2")][rng.below(3) as usize];
                let t = NOW - 2 * 86_400_000 + rng.below(2 * 86_400) as i64 * 1000;
                json!({"patient": p, "metric": "heart_rate", "time": t, "value": 40 + rng.below(100), "device": d})
            })
            .collect();
        assert_eq!(server.ingest(&Value::Array(batch)).status, 200);
        if round % 2 == 0 {
            server.store.flush().expect("flush");
        }
        if round == 3 {
            server.store.compact().expect("compact");
        }
    }
    for p in ["p-a", "p-b"] {
        let rest = server.get(
            &format!("/api/v1/patients/{p}/series/heart_rate?from={}&to={}&include=device", NOW - 3 * 86_400_000, NOW),
            Some(ADMIN),
        );
        assert_eq!(rest.status, 200, "{}", rest.body);
        let mut want: Vec<(String, f64, String)> = rest.json()["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|x| {
                (x["time"].as_str().expect("t").to_owned(), x["value"].as_f64().expect("v"), x["device"].to_string())
            })
            .collect();
        want.sort_by(|a, b| a.partial_cmp(b).expect("cmp"));
        let r = sql(
            &server,
            ADMIN,
            &format!("SELECT time, value, device FROM samples WHERE patient = '{p}' AND metric = 'heart_rate'"),
            "json",
        );
        let mut got: Vec<(String, f64, String)> = r.json()["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|x| (x[0].as_str().expect("t").replace("Z", ".000Z"), x[1].as_f64().expect("v"), x[2].to_string()))
            .collect();
        got.sort_by(|a, b| a.partial_cmp(b).expect("cmp"));
        assert_eq!(got.len(), want.len(), "{p}");
        assert_eq!(got, want, "{p}");
        let hourly = server.get(
            &format!(
                "/api/v1/patients/{p}/series/heart_rate?from={}&to={}&every=1h&agg=count,mean",
                NOW - 3 * 86_400_000,
                NOW
            ),
            Some(ADMIN),
        );
        let buckets = hourly.json()["points"].as_array().expect("points").len();
        let r = sql(&server, ADMIN, &format!("SELECT count(*) FROM rollups_hourly WHERE patient = '{p}'"), "json");
        assert_eq!(r.json()["rows"][0][0].as_u64(), Some(buckets as u64), "{p}");
    }
}

#[test]
fn vitals_sql_reads_a_data_directory_and_a_running_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("utf8");
    let nd = dir.path().join("hr.ndjson");
    let lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"patient":"p-1","metric":"heart_rate","time":{},"value":{}}}"#,
                1_735_689_600_000i64 + i * 60_000,
                60 + i
            )
        })
        .collect();
    std::fs::write(&nd, lines.join("\n")).expect("write");
    let (ok, _, err) = vitals(&["--data-dir", d, "ingest", nd.to_str().expect("utf8"), "--quiet"]);
    assert!(ok, "{err}");
    let (ok, out, err) = vitals(&[
        "--data-dir",
        d,
        "sql",
        "SELECT patient, count(*) AS n, max(value) AS hi FROM samples GROUP BY patient",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| p-1     | 30 | 89.0 |"), "{out}");
    assert!(out.contains("(1 row)"), "{out}");
    let (ok, out, err) = vitals(&[
        "--data-dir",
        d,
        "sql",
        "--format",
        "csv",
        "SELECT metric, count(*) AS n FROM samples GROUP BY metric",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "metric,n\nheart_rate,30\n");
    let parquet = dir.path().join("out.parquet");
    let (ok, _, err) = vitals(&[
        "--data-dir",
        d,
        "sql",
        "--format",
        "parquet",
        "-o",
        parquet.to_str().expect("utf8"),
        "SELECT * FROM samples",
    ]);
    assert!(ok, "{err}");
    assert_eq!(&std::fs::read(&parquet).expect("parquet")[..4], b"PAR1");
    let (ok, _, err) = vitals(&["--data-dir", d, "sql", "DROP TABLE samples"]);
    assert!(!ok);
    assert!(err.contains("only queries"), "{err}");

    let server = TestServer::start();
    let s: Vec<Value> = (0..3)
        .map(|i| json!({"patient": "p-9", "metric": "heart_rate", "time": NOW - i * 1000, "value": 70}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(s)).status, 200);
    for (format, want) in [("json", "\"row_count\":1"), ("csv", "n\n3\n"), ("table", "| 3 |")] {
        let (ok, out, err) = vitals(&[
            "sql",
            "--url",
            &server.url,
            "--token",
            ADMIN,
            "--format",
            format,
            "SELECT count(*) AS n FROM samples",
        ]);
        assert!(ok, "{err}");
        assert!(out.contains(want), "{format}: {out}");
    }
}

#[test]
fn the_duckdb_ddl_reads_the_lake_as_vitals_sql_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("utf8");
    let nd = dir.path().join("s.ndjson");
    let mut lines = Vec::new();
    for (p, metric, v) in
        [("0042", "heart_rate", 61.5), ("p-7", "skin_temperature", 33.25), ("p-7", "heart_rate", 70.0)]
    {
        for i in 0..50i64 {
            lines.push(format!(
                r#"{{"patient":"{p}","metric":"{metric}","time":{},"value":{}}}"#,
                1_735_689_600_000i64 + i * 3_600_000,
                v + (i % 3) as f64
            ));
        }
    }
    // One reading of this month: its day partition stays while January 2025 is archived.
    let now_ms = vitals_core::Clock::now_ms(&vitals_core::SystemClock);
    lines.push(format!(r#"{{"patient":"p-7","metric":"heart_rate","time":{},"value":70}}"#, now_ms - 60_000));
    std::fs::write(&nd, lines.join("\n")).expect("write");
    let (ok, _, err) = vitals(&["--data-dir", d, "ingest", nd.to_str().expect("utf8"), "--quiet"]);
    assert!(ok, "{err}");
    // Compaction across days, now: the January days of each series become one archive segment.
    let (ok, out, err) = vitals(&["--data-dir", d, "lake", "compact"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("3 merges"), "{out}");
    let archive = data.join("lake/archive/metric=heart_rate/year=2025/month=01/patient=0042");
    assert_eq!(std::fs::read_dir(&archive).expect("archive dir").count(), 1, "one file for three days");
    assert!(data.join("lake/metric=heart_rate").exists(), "this month stays in day partitions");
    let (ok, ddl, err) = vitals(&["--data-dir", d, "lake", "ddl", "--for", "duckdb"]);
    assert!(ok, "{err}");
    assert!(ddl.contains("UNION ALL BY NAME"), "both layouts: {ddl}");
    let query = "SELECT patient, metric, source, count(*) AS n, sum(value) AS s FROM samples GROUP BY patient, metric, source ORDER BY patient, metric";
    let (ok, ours, err) = vitals(&["--data-dir", d, "sql", "--format", "csv", query]);
    assert!(ok, "{err}");
    let script = r#"
import sys, duckdb
con = duckdb.connect()
con.execute(sys.argv[1])
for r in con.execute(sys.argv[2]).fetchall():
    print(f"{r[0]},{r[1]},{r[2]},{r[3]},{float(r[4])}")
"#;
    let out = Command::new("python3").args(["-c", script, &ddl, query]).output().expect("python3");
    assert!(out.status.success(), "{}\n{ddl}", String::from_utf8_lossy(&out.stderr));
    let theirs = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = ours.lines().skip(1).collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(theirs.lines().collect::<Vec<_>>(), ours, "DuckDB over the DDL agrees with Vitals' SQL");
    assert!(ours[0].starts_with("0042,heart_rate,native,50,"), "a numeric-looking patient id stays text: {ours:?}");
    assert!(ours[2].starts_with("p-7,skin_temperature,native,50,"), "{ours:?}");
    assert!(ours[1].starts_with("p-7,heart_rate,native,51,"), "archived and day partitions: {ours:?}");
    let (ok, athena, _) =
        vitals(&["--data-dir", d, "lake", "ddl", "--for", "athena", "--location", "s3://bucket/vitals/lake"]);
    assert!(ok);
    assert!(athena.contains("LOCATION 's3://bucket/vitals/lake/archive/metric=skin_temperature/';"), "{athena}");
    assert!(athena.contains("LOCATION 's3://bucket/vitals/lake/metric=heart_rate/';"), "{athena}");
    assert!(!athena.contains("metric=eda"), "only metrics the lake holds: {athena}");
}

/// Every sample records the adapter it came in through, in SQL's `source` column, whether
/// buffered, flushed or compacted; an overwrite takes the overwriting sample's source.
#[test]
fn every_sample_records_the_adapter_it_came_in_through() {
    let server = TestServer::start();
    let p = "src-patient-01";
    // One Health Auto Export record of heart rate is 3 samples (min, average, max).
    let hae = json!({"data": {"metrics": [{"name": "heart_rate", "units": "count/min",
        "data": [{"date": "2025-11-21 07:41:00 -0800", "Min": 60, "Avg": 65, "Max": 70}]}]}});
    let posts: [(String, &str, String); 4] = [
        (
            "/api/v1/samples".into(),
            "application/json",
            json!([{"patient": p, "metric": "heart_rate", "time": NOW - 60_000, "value": 61},
                   {"patient": p, "metric": "heart_rate", "time": NOW - 50_000, "value": 62}])
            .to_string(),
        ),
        (
            "/write?db=vitals&precision=ms".into(),
            "text/plain",
            // The second line overwrites the native reading at NOW - 50 s.
            format!(
                "heart_rate,patient={p} value=63 {}\nheart_rate,patient={p} value=64 {}\n",
                NOW - 40_000,
                NOW - 50_000
            ),
        ),
        (
            format!("/nightscout/{p}/api/v1/entries"),
            "application/json",
            json!([{"type": "sgv", "sgv": 120, "date": NOW - 30_000}]).to_string(),
        ),
        (format!("/api/v1/ingest/health-auto-export?patient={p}"), "application/json", hae.to_string()),
    ];
    for (path, ctype, body) in &posts {
        let r = server.post(path, Some(ADMIN), ctype, body.as_bytes());
        // InfluxDB's /write answers 204 No Content.
        assert!(r.status == 200 || r.status == 204, "{path}: {} {}", r.status, r.body);
    }
    let by_source =
        format!("SELECT source, count(*) AS n FROM samples WHERE patient = '{p}' GROUP BY source ORDER BY source");
    let heart = format!(
        "SELECT value, source FROM samples WHERE patient = '{p}' AND time >= TIMESTAMP '2025-11-22T02:58:00Z' AND metric = 'heart_rate' ORDER BY time"
    );
    let want = (
        json!([["health_auto_export", 3], ["line_protocol", 2], ["native", 1], ["nightscout", 1]]),
        json!([[61.0, "native"], [64.0, "line_protocol"], [63.0, "line_protocol"]]),
    );
    let rows = |server: &TestServer| {
        let answer = |q: &str| {
            let r = sql(server, ADMIN, q, "json");
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["rows"].clone()
        };
        (answer(&by_source), answer(&heart))
    };
    assert_eq!(rows(&server), want, "buffered");
    server.store.flush().expect("flush");
    assert_eq!(rows(&server), want, "flushed");
    // A query that does not name `source` still counts the same rows.
    let r = sql(&server, ADMIN, &format!("SELECT count(*) AS n FROM samples WHERE patient = '{p}'"), "json");
    assert_eq!(r.json()["rows"], json!([[7]]), "{}", r.body);
}
