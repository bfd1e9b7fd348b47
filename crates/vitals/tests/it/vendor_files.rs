//! Vendor files through the real server, by upload (`POST /api/v1/ingest/file`) and by the
//! file drop: FIT files written by Garmin's own encoder (`@garmin/fitsdk`) and checked
//! against Garmin's own decoder (`garmin-fit-sdk`, `tests/tools/fit_expect.py`), a
//! Gadgetbridge database made with Gadgetbridge's table layout, a Fitbit Google Takeout
//! and an Apple Health `export.zip`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use vitals_core::DurationMs;

use crate::file_drop::{APPLE_EXPORT, drop_file};
use crate::harness::{ADMIN, TestServer, eventually};

/// The first reading of the FIT fixture (2025-11-21T04:40:00Z), a day before the test clock.
const FIT_START_S: i64 = 1_763_700_000;

/// A FIT file from `e2e/make-fit.mjs` (Garmin's JavaScript SDK encoder).
fn garmin_fit(dir: &Path) -> PathBuf {
    let out = dir.join("monitoring.fit");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/make-fit.mjs");
    let r = Command::new("node").arg(&script).arg(&out).arg(FIT_START_S.to_string()).output().expect("node");
    assert!(r.status.success(), "make-fit.mjs: {}", String::from_utf8_lossy(&r.stderr));
    out
}

/// What Garmin's Python decoder says should be stored.
fn expected(fit: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/fit_expect.py");
    let r = Command::new("python3").arg(&script).arg(fit).output().expect("python3");
    assert!(r.status.success(), "fit_expect.py: {}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&r.stdout).expect("json")
}

fn upload(server: &TestServer, query: &str, body: &[u8]) -> crate::harness::Resp {
    server.post(&format!("/api/v1/ingest/file?{query}"), Some(ADMIN), "application/octet-stream", body)
}

/// (time ms, value, device) of a patient's series.
fn series(server: &TestServer, patient: &str, metric: &str) -> Vec<(i64, f64, Option<String>)> {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}?include=device"), Some(ADMIN));
    if r.status == 404 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            let t = vitals_core::time::parse_time(p["time"].as_str().expect("time")).expect("a time");
            (t, p["value"].as_f64().expect("value"), p["device"].as_str().map(str::to_owned))
        })
        .collect()
}

fn sleep_events(server: &TestServer, patient: &str) -> Vec<(String, i64, i64)> {
    let r = server.get(&format!("/api/v1/patients/{patient}/events"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut out: Vec<(String, i64, i64)> = r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == json!("sleep"))
        .map(|e| {
            let t = |k: &str| vitals_core::time::parse_time(e[k].as_str().expect("time")).expect("a time");
            (e["attributes"]["stage"].as_str().unwrap_or_default().to_owned(), t("start"), t("end"))
        })
        .collect();
    out.sort_by_key(|e| e.1);
    out
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        z.start_file(*name, opts).expect("zip entry");
        z.write_all(bytes).expect("zip write");
    }
    z.finish().expect("zip").into_inner()
}

#[test]
fn fit_files_are_stored_as_garmins_own_decoder_reads_them() {
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = DurationMs(20);
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let fit = garmin_fit(tmp.path());
    let want = expected(&fit);
    let bytes = std::fs::read(&fit).expect("fit");

    // Uploaded with no format named: the content tells.
    let r = upload(&server, "patient=gf-1&name=monitoring.fit", &bytes);
    assert_eq!(r.status, 200, "{}", r.body);
    let samples = want["samples"].as_array().expect("samples");
    let v = r.json();
    assert_eq!(v["accepted"], json!(samples.len()), "{v}");
    assert_eq!(
        (v["rejected_total"].clone(), v["events"].clone()),
        (json!(0), json!(4)),
        "3 sleep runs, the watch: {v}"
    );
    let device = want["device"].as_str().expect("device").to_owned();
    let metrics: BTreeSet<&str> = samples.iter().map(|s| s[0].as_str().expect("metric")).collect();
    assert_eq!(
        metrics,
        BTreeSet::from([
            "heart_rate",
            "resting_heart_rate",
            "respiratory_rate",
            "rr_interval",
            "spo2",
            "step_count",
            "stress_level"
        ])
    );
    for m in metrics {
        let mut wanted: Vec<(i64, f64, Option<String>)> = samples
            .iter()
            .filter(|s| s[0] == json!(m))
            .map(|s| (s[1].as_i64().expect("t"), s[2].as_f64().expect("v"), Some(device.clone())))
            .collect();
        wanted.sort_by_key(|s| s.0);
        assert_eq!(series(&server, "gf-1", m), wanted, "{m}");
    }
    let sleep: Vec<(String, i64, i64)> = want["sleep"]
        .as_array()
        .expect("sleep")
        .iter()
        .map(|s| (s[0].as_str().expect("stage").to_owned(), s[1].as_i64().expect("start"), s[2].as_i64().expect("end")))
        .collect();
    assert_eq!(sleep_events(&server, "gf-1"), sleep);
    // The watch's own firmware (not its paired sensor's), in the device telemetry.
    let devices = server.get("/api/v1/patients/gf-1/devices", Some(ADMIN)).json();
    let watch = &devices["devices"][0];
    assert_eq!(
        (watch["device"].clone(), watch["firmware"].clone()),
        (json!(device), want["firmware"].clone()),
        "{devices}"
    );
    assert_eq!((watch["firmware"].clone(), watch["model"].clone()), (json!("12.3"), json!("fr945")));

    // The command line sends it to the same route, streamed.
    let (ok, _, err) = crate::cli::vitals(&[
        "ingest",
        "--quiet",
        "--url",
        &server.url,
        "--token",
        ADMIN,
        "--patient",
        "gf-5",
        fit.to_str().expect("path"),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("{} accepted, 0 rejected, 4 events", samples.len())), "{err}");
    assert_eq!(series(&server, "gf-5", "rr_interval").len(), 3);

    // A Garmin Connect export (the FIT file zipped) through the file drop.
    let inbox = server.data_dir().join("drop/inbox");
    eventually("the inbox", || inbox.exists());
    drop_file(&inbox, "gf-2/activity_123.zip", &zip_of(&[("123_ACTIVITY.fit", &bytes)]));
    eventually("the zipped FIT file stored", || series(&server, "gf-2", "heart_rate").len() == 3);
    assert_eq!(series(&server, "gf-2", "stress_level"), vec![(1_763_700_240_000, 35.0, Some(device.clone()))]);

    // A file cut short keeps what came before the cut; the rest is one refused item, kept.
    let r = upload(&server, "patient=gf-3", &bytes[..bytes.len() - 60]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert!(v["accepted"].as_u64().expect("accepted") >= 3, "{v}");
    assert_eq!(v["rejected_total"], json!(1), "{v}");
    assert!(v["rejected"][0]["message"].as_str().expect("message").contains("byte"), "{v}");
    let dl = v["dead_letter"].as_u64().expect("a dead letter");
    let letter = server.get(&format!("/api/v1/dead-letters/{dl}"), Some(ADMIN)).json();
    assert_eq!((letter["format"].clone(), letter["context"]["patient"].clone()), (json!("fit"), json!("gf-3")));

    // Named FIT but not FIT: refused whole, and the file is kept on the server.
    let r = upload(&server, "patient=gf-4&format=fit&name=notes.txt", b"these are not FIT bytes at all");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not a FIT file") && r.body.contains("uploads/failed/"), "{}", r.body);
    let failed = server.data_dir().join("uploads/failed/gf-4");
    let kept: Vec<String> = std::fs::read_dir(&failed)
        .expect("failed/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept.iter().any(|n| n.ends_with("-notes.txt")) && kept.iter().any(|n| n.ends_with("-notes.txt.error.txt")));
    // Nothing else is left in the spool.
    let spool: Vec<String> = std::fs::read_dir(server.data_dir().join("uploads"))
        .expect("uploads/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(spool, vec!["failed".to_owned()]);
}

/// A Gadgetbridge export as the app writes it: greenDAO tables of a Mi Band and a Xiaomi
/// watch, the device table, the battery log.
fn gadgetbridge_db(path: &Path) {
    let db = rusqlite::Connection::open(path).expect("db");
    db.execute_batch(
        "CREATE TABLE DEVICE (_id INTEGER PRIMARY KEY AUTOINCREMENT, NAME TEXT NOT NULL, MANUFACTURER TEXT NOT NULL,
            IDENTIFIER TEXT NOT NULL UNIQUE, TYPE INTEGER NOT NULL, MODEL TEXT, ALIAS TEXT);
         CREATE TABLE MI_BAND_ACTIVITY_SAMPLE (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, USER_ID INTEGER NOT NULL,
            RAW_INTENSITY INTEGER NOT NULL, STEPS INTEGER NOT NULL, RAW_KIND INTEGER NOT NULL, HEART_RATE INTEGER NOT NULL,
            PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
         CREATE TABLE XIAOMI_ACTIVITY_SAMPLE (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, USER_ID INTEGER NOT NULL,
            RAW_INTENSITY INTEGER NOT NULL, STEPS INTEGER NOT NULL, RAW_KIND INTEGER NOT NULL, HEART_RATE INTEGER NOT NULL,
            STRESS INTEGER, SPO2 INTEGER, PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
         CREATE TABLE HUAMI_HEART_RATE_RESTING_SAMPLE (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL,
            USER_ID INTEGER NOT NULL, HEART_RATE INTEGER NOT NULL, PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
         CREATE TABLE BATTERY_LEVEL (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, LEVEL INTEGER NOT NULL,
            BATTERY_INDEX INTEGER NOT NULL, PRIMARY KEY (TIMESTAMP, DEVICE_ID, BATTERY_INDEX)) WITHOUT ROWID;
         CREATE TABLE NOTIFICATION_FILTER (_id INTEGER PRIMARY KEY, APP_IDENTIFIER TEXT);
         CREATE TABLE DEVICE_ATTRIBUTES (_id INTEGER PRIMARY KEY AUTOINCREMENT, FIRMWARE_VERSION1 TEXT NOT NULL,
            FIRMWARE_VERSION2 TEXT, VALID_FROM_UTC INTEGER, VALID_TO_UTC INTEGER, DEVICE_ID INTEGER NOT NULL,
            VOLATILE_IDENTIFIER TEXT);
         INSERT INTO DEVICE_ATTRIBUTES (FIRMWARE_VERSION1, VALID_FROM_UTC, VALID_TO_UTC, DEVICE_ID)
            VALUES ('V1.0.9.60', 1760000000000, 1762000000000, 1), ('V1.0.9.66', 1762000000000, NULL, 1),
                   ('2.1.0.10', 1761000000000, NULL, 2);
         INSERT INTO DEVICE VALUES (1, 'Mi Band 5', 'Xiaomi', 'C8:0F:10:AA:BB:CC', 12, NULL, NULL),
                                   (2, 'Redmi Watch 4', 'Xiaomi', 'D4:3E:11:00:22:33', 200, NULL, NULL);
         INSERT INTO MI_BAND_ACTIVITY_SAMPLE VALUES
            (1763700000, 1, 1, 20, 0, 1, 61), (1763700060, 1, 1, 90, 112, 1, 255), (1763700120, 1, 1, 10, 0, 1, 64);
         INSERT INTO XIAOMI_ACTIVITY_SAMPLE VALUES
            (1763700000, 2, 1, 20, 35, 1, 70, 41, 97), (1763700060, 2, 1, 20, 0, 1, 0, 255, 0), (1763700120, 2, 1, 20, 0, 1, 72, 38, 12);
         INSERT INTO HUAMI_HEART_RATE_RESTING_SAMPLE VALUES (1763683200000, 1, 1, 55);
         INSERT INTO BATTERY_LEVEL VALUES (1763700000, 1, 81, 0), (1763703600, 1, 79, 0);",
    )
    .expect("schema");
}

#[test]
fn gadgetbridge_takeout_and_apple_health_archives_come_in_by_upload_and_drop() {
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = DurationMs(20);
    });
    let band = Some("xiaomi-c8:0f:10:aa:bb:cc".to_owned());
    let watch = Some("xiaomi-d4:3e:11:00:22:33".to_owned());

    // Gadgetbridge through the file drop (its export has no extension).
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("Gadgetbridge");
    gadgetbridge_db(&db);
    let inbox = server.data_dir().join("drop/inbox");
    eventually("the inbox", || inbox.exists());
    drop_file(&inbox, "gb-1/Gadgetbridge", &std::fs::read(&db).expect("db"));
    eventually("the database stored", || series(&server, "gb-1", "battery_level").len() == 2);
    assert_eq!(
        series(&server, "gb-1", "heart_rate"),
        vec![
            (1_763_700_000_000, 61.0, band.clone()),
            (1_763_700_000_000, 70.0, watch.clone()),
            (1_763_700_120_000, 64.0, band.clone()),
            (1_763_700_120_000, 72.0, watch.clone()),
        ],
        "255 and 0 are \"no reading\""
    );
    assert_eq!(
        series(&server, "gb-1", "step_count"),
        vec![(1_763_700_000_000, 35.0, watch.clone()), (1_763_700_060_000, 112.0, band.clone())]
    );
    assert_eq!(series(&server, "gb-1", "resting_heart_rate"), vec![(1_763_683_200_000, 55.0, band.clone())]);
    assert_eq!(
        series(&server, "gb-1", "stress_level"),
        vec![(1_763_700_000_000, 41.0, watch.clone()), (1_763_700_120_000, 38.0, watch.clone())]
    );
    let devices = server.get("/api/v1/patients/gb-1/devices", Some(ADMIN)).json();
    let described: Vec<(Value, Value, Value)> = devices["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["device"].clone(), d["firmware"].clone(), d["model"].clone()))
        .collect();
    assert_eq!(
        described,
        vec![
            (json!(band), json!("V1.0.9.66"), json!("Mi Band 5")),
            (json!(watch), json!("2.1.0.10"), json!("Redmi Watch 4")),
        ],
        "the newest firmware of each device"
    );
    // SpO2 12 % is a reading the catalog refuses: a dead letter names its table and row.
    assert_eq!(series(&server, "gb-1", "spo2"), vec![(1_763_700_000_000, 97.0, watch.clone())]);
    let letters = server.get("/api/v1/dead-letters", Some(ADMIN)).json();
    let gb = letters["dead_letters"]
        .as_array()
        .expect("letters")
        .iter()
        .find(|l| l["format"] == json!("gadgetbridge"))
        .expect("a gadgetbridge dead letter")
        .clone();
    let one = server.get(&format!("/api/v1/dead-letters/{}", gb["id"]), Some(ADMIN)).json();
    let message = one["items"][0]["message"].as_str().expect("message");
    assert!(message.starts_with("XIAOMI_ACTIVITY_SAMPLE row 3 (SPO2)"), "{one}");
    assert_eq!(one["context"]["file"], json!("Gadgetbridge"), "{one}");

    // A Fitbit Google Takeout by upload: the per-day files Vitals reads, the others left.
    let takeout = zip_of(&[
        (
            "Takeout/Fitbit/Global Export Data/heart_rate-2025-11-20.json",
            br#"[{"dateTime":"11/20/25 07:00:05","value":{"bpm":62,"confidence":2}},
                 {"dateTime":"11/20/25 07:00:10","value":{"bpm":64,"confidence":3}},
                 {"dateTime":"11/20/25 07:00:15","value":{"confidence":3}}]"#,
        ),
        (
            "Takeout/Fitbit/Global Export Data/steps-2025-11-20.json",
            br#"[{"dateTime":"11/20/25 07:00:00","value":"0"},{"dateTime":"11/20/25 07:01:00","value":"31"}]"#,
        ),
        (
            "Takeout/Fitbit/Global Export Data/resting_heart_rate-2025-11-20.json",
            br#"[{"dateTime":"11/20/25 00:00:00","value":{"date":"11/20/25","value":58.7,"error":6.1}}]"#,
        ),
        ("Takeout/Fitbit/Global Export Data/sleep-2025-11-20.json", b"[]"),
        ("Takeout/Fitbit/Profile/Profile.csv", b"id,full_name\n1,Someone\n"),
    ]);
    let r = upload(&server, "patient=fb-1&name=takeout-20251121.zip", &takeout);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["accepted"].clone(), v["rejected_total"].clone()), (json!(4), json!(1)), "{v}");
    assert!(v["rejected"][0]["message"].as_str().expect("message").starts_with("heart_rate-2025-11-20.json[2]"), "{v}");
    let fitbit = Some("fitbit".to_owned());
    assert_eq!(
        series(&server, "fb-1", "heart_rate"),
        vec![(1_763_622_005_000, 62.0, fitbit.clone()), (1_763_622_010_000, 64.0, fitbit.clone())]
    );
    assert_eq!(series(&server, "fb-1", "step_count"), vec![(1_763_622_060_000, 31.0, fitbit.clone())]);
    assert_eq!(series(&server, "fb-1", "resting_heart_rate"), vec![(1_763_596_800_000, 58.7, fitbit.clone())]);

    // An Apple Health export.zip by upload: its export.xml, streamed.
    let apple = zip_of(&[
        ("apple_health_export/export.xml", APPLE_EXPORT.as_bytes()),
        ("apple_health_export/export_cda.xml", b"<ClinicalDocument/>"),
    ]);
    let r = upload(&server, "patient=ah-1&name=export.zip", &apple);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["accepted"].clone(), r.json()["events"].clone()), (json!(2), json!(1)), "{}", r.body);
    assert_eq!(series(&server, "ah-1", "heart_rate").len(), 2);
    // Named formats, and what a caller may not do.
    let r = upload(&server, "patient=ah-2&format=apple_health&name=x.bin", APPLE_EXPORT.as_bytes());
    assert_eq!((r.status, r.json()["accepted"].clone()), (200, json!(2)), "{}", r.body);
    assert_eq!(upload(&server, "patient=ah-2&format=docx", b"x").status, 400);
    assert_eq!(upload(&server, "name=x.fit", b"x").status, 400, "no patient");
    let anon = server.post("/api/v1/ingest/file?patient=ah-2", None, "application/octet-stream", b"x");
    assert_eq!(anon.status, 401);
    let archive = zip_of(&[("readme.txt", b"nothing to read")]);
    let r = upload(&server, "patient=ah-3", &archive);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("holds nothing Vitals reads"), "{}", r.body);
}

#[test]
fn uploads_larger_than_the_limit_are_refused_before_they_fill_the_disk() {
    let server = TestServer::with_config(|c| c.server.upload_limit_bytes = 4096);
    let r = upload(&server, "patient=big-1&name=big.csv", &vec![b'x'; 64 << 10]);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("upload_limit_bytes"), "{}", r.body);
    let left: Vec<_> = std::fs::read_dir(server.data_dir().join("uploads")).expect("uploads/").flatten().collect();
    assert!(left.is_empty(), "the spool is emptied");
    // An empty body, and a compressed one, are refused with the reason.
    let r = upload(&server, "patient=big-1&name=empty.csv", b"");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("the upload is empty"), "{}", r.body);
    let gz = server.request(
        "POST",
        "/api/v1/ingest/file?patient=big-1",
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Encoding", "gzip")],
        Some(b"\x1f\x8b"),
    );
    assert_eq!(gz.status, 400, "{}", gz.body);
    assert!(gz.body.contains("no Content-Encoding"), "{}", gz.body);
}
