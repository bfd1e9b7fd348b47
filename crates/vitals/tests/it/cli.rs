//! The command line: ingest files into a data directory or a server, and query them back.

use std::process::Command;

use crate::crash::spawn_server;
use crate::harness::ADMIN;

/// Runs the `vitals` binary: (success, stdout, stderr).
pub fn vitals(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitals")).args(args).output().expect("run vitals");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ingest_files_then_query_them_from_the_data_dir() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let csv = dir.path().join("g.csv");
    std::fs::write(
        &csv,
        "patient,metric,time,value,unit,device\np-1,blood_glucose,2025-01-01T00:00:00Z,5.5,mmol/L,cgm\np-1,blood_glucose,2025-01-01T00:05:00Z,104\np-1,blood_glucose,2025-01-01T00:10:00Z,high\np-1,blood_glucose,2025-01-01T00:15:00Z,110,mg/dL,cgm\n",
    )
    .expect("write");
    let nd = dir.path().join("hr.ndjson");
    let lines: Vec<String> = (0..120)
        .map(|i| {
            format!(
                r#"{{"patient":"p-1","metric":"heart_rate","time":{},"value":{}}}"#,
                1_735_689_600_000i64 + i * 60_000,
                60 + i % 10
            )
        })
        .chain(std::iter::once("{broken".to_owned()))
        .collect();
    std::fs::write(&nd, lines.join("\n")).expect("write");
    let d = data.to_str().expect("utf8");
    let (ok, out, err) = vitals(&[
        "ingest",
        "--quiet",
        "--batch-lines",
        "50",
        "--data-dir",
        d,
        csv.to_str().expect("p"),
        nd.to_str().expect("p"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("123 accepted, 2 rejected"), "{out}\n{err}");
    // Each rejection names the file and its 1-based line.
    assert!(err.contains("g.csv:4: invalid_field"), "{err}");
    assert!(err.contains("hr.ndjson:121: malformed"), "{err}");
    let (ok, out, err) =
        vitals(&["query", "--data-dir", d, "--patient", "p-1", "--metric", "blood_glucose", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "time,value,device\n2025-01-01T00:00:00.000Z,99.1,cgm\n2025-01-01T00:05:00.000Z,104,\n2025-01-01T00:15:00.000Z,110,cgm\n"
    );
    let (ok, out, err) = vitals(&[
        "query",
        "--data-dir",
        d,
        "--patient",
        "p-1",
        "--metric",
        "heart_rate",
        "--every",
        "1h",
        "--agg",
        "count,min,max",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let counts: Vec<i64> =
        v["points"].as_array().expect("points").iter().map(|p| p["count"].as_i64().expect("count")).collect();
    assert_eq!(counts, vec![60, 60]);
    let (ok, out, _) =
        vitals(&["query", "--data-dir", d, "--patient", "p-1", "--metric", "heart_rate", "--every", "1d"]);
    assert!(ok && out.contains("2025-01-01T00:00:00.000Z") && out.contains("64.5"), "{out}");
}

#[test]
fn ingest_and_query_through_a_running_server_and_tokens_from_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = spawn_server(&dir.path().join("data"), &[]);
    let file = dir.path().join("s.ndjson");
    std::fs::write(&file, "{\"patient\":\"p-7\",\"metric\":\"spo2\",\"time\":\"2025-01-01T00:00:00Z\",\"value\":97}\n{\"patient\":\"p-7\",\"metric\":\"spo2\",\"time\":\"2025-01-01T00:01:00Z\",\"value\":120}\n").expect("write");
    let (ok, out, err) =
        vitals(&["ingest", "--quiet", "--url", &server.url, "--token", ADMIN, file.to_str().expect("p")]);
    assert!(ok, "{err}");
    assert!(out.contains("1 accepted, 1 rejected") && err.contains("s.ndjson:2: value_out_of_range"), "{out}{err}");
    let (ok, out, err) = vitals(&[
        "query",
        "--url",
        &server.url,
        "--token",
        ADMIN,
        "--patient",
        "p-7",
        "--metric",
        "spo2",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "time,value,device\n2025-01-01T00:00:00.000Z,97,\n");
    let (ok, token, err) = vitals(&[
        "admin",
        "token",
        "create",
        "--role",
        "device",
        "--name",
        "watch",
        "--url",
        &server.url,
        "--token",
        ADMIN,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) =
        vitals(&["query", "--url", &server.url, "--token", token.trim(), "--patient", "p-7", "--metric", "spo2"]);
    assert!(!ok && err.contains("403"), "a device token cannot read: {err}");
    // The data dir is locked while the server runs.
    let (ok, _, err) = vitals(&[
        "query",
        "--data-dir",
        dir.path().join("data").to_str().expect("p"),
        "--patient",
        "p-7",
        "--metric",
        "spo2",
    ]);
    assert!(!ok && err.contains("in use"), "{err}");
    let mut server = server;
    let child = &mut server.child;
    child.kill().expect("kill");
    child.wait().expect("reap");
    // Offline token management works on the data dir.
    let d = dir.path().join("data");
    let (ok, out, err) = vitals(&["admin", "token", "list", "--data-dir", d.to_str().expect("p")]);
    assert!(ok && out.contains("watch") && out.contains("initial admin"), "{out}{err}");
}

#[test]
fn a_corrupt_wal_refuses_to_start_unless_repair_is_asked() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let nd = dir.path().join("a.ndjson");
    std::fs::write(
        &nd,
        (0..3)
            .map(|i| {
                format!(
                    "{{\"patient\":\"p\",\"metric\":\"heart_rate\",\"time\":{},\"value\":60}}\n",
                    1_735_689_600_000i64 + i
                )
            })
            .collect::<String>(),
    )
    .expect("write");
    let d = data.to_str().expect("p");
    // Three separate writes make three WAL records; kill -9 would leave them in the WAL, so
    // write with a server and kill it.
    let server = spawn_server(&data, &[]);
    for _ in 0..3 {
        let (ok, _, err) =
            vitals(&["ingest", "--quiet", "--url", &server.url, "--token", ADMIN, nd.to_str().expect("p")]);
        assert!(ok, "{err}");
    }
    let mut server = server;
    let child = &mut server.child;
    child.kill().expect("kill");
    child.wait().expect("reap");
    let wal = std::fs::read_dir(data.join("wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| std::fs::metadata(p).map(|m| m.len() > 100).unwrap_or(false))
        .expect("a WAL file with records");
    let mut bytes = std::fs::read(&wal).expect("read");
    bytes[8 + 8 + 3] ^= 0x55; // inside the first record's payload
    std::fs::write(&wal, &bytes).expect("write");
    let (ok, _, err) = vitals(&["query", "--data-dir", d, "--patient", "p", "--metric", "heart_rate"]);
    assert!(!ok, "must refuse");
    assert!(err.contains("corrupt record at offset 8") && err.contains("--repair-wal"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_vitals"))
        .args(["serve", "--repair-wal", "--listen", "127.0.0.1:0", "--data-dir", d])
        .env("VITALS_ADMIN_TOKEN", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = out;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().expect("stdout")));
    let started = lines.any(|l| l.map(|l| l.starts_with("vitals listening on")).unwrap_or(false));
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(started, "--repair-wal starts the server");
}

#[test]
fn sigterm_finishes_requests_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let server = spawn_server(&data, &[]);
    let file = dir.path().join("s.ndjson");
    std::fs::write(
        &file,
        "{\"patient\":\"p\",\"metric\":\"heart_rate\",\"time\":\"2025-01-01T00:00:00Z\",\"value\":61}\n",
    )
    .expect("write");
    let (ok, _, err) =
        vitals(&["ingest", "--quiet", "--url", &server.url, "--token", ADMIN, file.to_str().expect("p")]);
    assert!(ok, "{err}");
    let mut server = server;
    let child = &mut server.child;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    // Flushed: the sample is in a segment and the WAL holds no records.
    let parts: Vec<_> =
        walk(&data.join("lake")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    for wal in walk(&data.join("wal")) {
        assert!(std::fs::metadata(&wal).expect("meta").len() <= 8, "{} still has records", wal.display());
    }
    let (ok, out, err) = vitals(&[
        "query",
        "--data-dir",
        data.to_str().expect("p"),
        "--patient",
        "p",
        "--metric",
        "heart_rate",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "time,value,device\n2025-01-01T00:00:00.000Z,61,\n");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn ingest_reads_apple_health_exports_and_e4_sessions_for_a_patient() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("data");
    let xml = dir.path().join("export.xml");
    std::fs::write(&xml, crate::file_drop::APPLE_EXPORT).expect("write");
    let session = dir.path().join("session-7");
    std::fs::create_dir_all(&session).expect("mkdir");
    std::fs::write(session.join("HR.csv"), "1763600000\n1\n70\n71\n72\n").expect("write");
    std::fs::write(session.join("IBI.csv"), "1763600000, IBI\n1.0, 0.85\nbad\n").expect("write");
    let d_s = d.to_str().expect("p");
    let (ok, _, err) = vitals(&["ingest", "--quiet", "--data-dir", d_s, xml.to_str().expect("p")]);
    assert!(!ok && err.contains("--patient"), "patient-less formats need --patient: {err}");
    let (ok, out, err) = vitals(&[
        "ingest",
        "--quiet",
        "--data-dir",
        d_s,
        "--patient",
        "cli-9",
        xml.to_str().expect("p"),
        session.to_str().expect("p"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("6 accepted, 1 rejected"), "{out}{err}");
    assert!(err.contains("export.xml: 2 accepted, 0 rejected, 1 events"), "the sleep record is an event: {err}");
    let (ok, out, _) =
        vitals(&["query", "--data-dir", d_s, "--patient", "cli-9", "--metric", "heart_rate", "--format", "csv"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1 + 2 + 3, "{out}");
    let (ok, out, _) =
        vitals(&["query", "--data-dir", d_s, "--patient", "cli-9", "--metric", "rr_interval", "--format", "csv"]);
    assert!(ok && out.contains(",850,e4-session-7"), "{out}");
}
