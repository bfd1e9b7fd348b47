//! The staging directory: files processed once, in order, moved with reports; duplicates
//! recognised by content; failures set aside with an error and counted.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vitals_core::DurationMs;

use crate::harness::{ADMIN, TestServer, eventually};

pub const APPLE_EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>
]>
<HealthData locale="en_US">
 <ExportDate value="2025-11-21 10:00:00 -0800"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Watch" unit="count/min" startDate="2025-11-21 07:41:00 -0800" endDate="2025-11-21 07:41:00 -0800" value="63"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Watch" unit="count/min" startDate="2025-11-21 07:42:00 -0800" endDate="2025-11-21 07:42:00 -0800" value="64"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Watch" startDate="2025-11-20 23:00:00 -0800" endDate="2025-11-21 06:00:00 -0800" value="HKCategoryValueSleepAnalysisAsleepCore"/>
</HealthData>
"#;

/// An E4 session zipped the way the E4 connect site exports it (files under a folder).
fn e4_zip() -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, text) in [
        ("A01/EDA.csv", "1763690000\n4\n0.1\n0.2\n0.3\n"),
        ("A01/tags.csv", "1763690001\n1763690002.5\n"),
        ("A01/info.txt", "x"),
    ] {
        z.start_file(name, opts).expect("zip entry");
        z.write_all(text.as_bytes()).expect("zip write");
    }
    z.finish().expect("zip").into_inner()
}

pub fn drop_file(inbox: &Path, rel: &str, content: &[u8]) {
    let target = inbox.join(rel);
    let parent = target.parent().expect("parent");
    std::fs::create_dir_all(parent).expect("mkdir");
    let tmp = parent.join(format!(".{}.tmp", target.file_name().expect("name").to_string_lossy()));
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, &target).expect("rename");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).expect("ls").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn count(server: &TestServer, patient: &str, metric: &str) -> usize {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}"), Some(ADMIN));
    if r.status != 200 {
        return 0;
    }
    r.json()["points"].as_array().map(Vec::len).unwrap_or(0)
}

fn find(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    names(dir).into_iter().filter(|n| n.ends_with(suffix)).map(|n| dir.join(n)).collect()
}

#[test]
fn dropped_files_are_ingested_once_and_set_aside_with_reports() {
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = DurationMs(20);
    });
    let drop = server.data_dir().join("drop");
    let inbox = drop.join("inbox");
    eventually("the inbox", || inbox.exists());
    let csv = b"patient,metric,time,value,unit,device\nfd-1,blood_glucose,2025-11-21T00:00:00Z,101,mg/dL,cgm\nfd-1,blood_glucose,2025-11-21T00:05:00Z,high,mg/dL,cgm\nfd-1,blood_glucose,2025-11-21T00:10:00Z,103,mg/dL,cgm\n";
    drop_file(&inbox, "g.csv", csv);
    let hae = br#"{"data":{"metrics":[{"name":"step_count","units":"count","data":[{"date":"2025-11-21 07:41:00 -0800","qty":112}]}]}}"#;
    drop_file(&inbox, "fd-2/export.json", hae);
    drop_file(&inbox, "fd-3/session-1/EDA.csv", b"1763690000\n4\n0.1\n0.2\n0.3\n0.4\n");
    drop_file(&inbox, "fd-3/session-1/TEMP.csv", b"1763690000\n4\n33.1\n33.2\n");
    drop_file(&inbox, "fd-4/export.xml", APPLE_EXPORT.as_bytes());
    drop_file(&inbox, "fd-5/A01-session.zip", &e4_zip());
    drop_file(&inbox, "fd-6/HealthMetrics.csv", b"Date/Time,Step Count (count),Resting Heart Rate (count/min)\n2025-11-20 00:00:00,10234,58\n2025-11-21 00:00:00,8000,\n");
    drop_file(&inbox, "garbage.bin", &[0xff, 0xfe, 0x00, 0x01]);
    let orphan = String::from_utf8_lossy(hae).replace("112", "113");
    drop_file(&inbox, "orphan-export.json", orphan.as_bytes());
    eventually("every item processed", || {
        names(&inbox).iter().all(|n| n.starts_with("fd-"))
            && std::fs::read_dir(inbox.join("fd-3")).map(|d| d.count() == 0).unwrap_or(true)
            && names(&inbox.join("fd-2")).is_empty()
    });
    assert_eq!(count(&server, "fd-1", "blood_glucose"), 2, "the good lines of a partly bad file");
    assert_eq!(count(&server, "fd-2", "step_count"), 1);
    assert_eq!(count(&server, "fd-3", "eda"), 4);
    assert_eq!(count(&server, "fd-3", "skin_temperature"), 2);
    assert_eq!(count(&server, "fd-4", "heart_rate"), 2, "Apple Health export.xml");
    assert_eq!(count(&server, "fd-5", "eda"), 3, "a zipped E4 session");
    assert_eq!(count(&server, "fd-6", "step_count"), 2, "a Health Auto Export CSV");
    assert_eq!(count(&server, "fd-6", "resting_heart_rate"), 1);
    let tags = server.get("/api/v1/patients/fd-5/events?kind=tag", Some(ADMIN)).json();
    assert_eq!(tags["events"].as_array().map(Vec::len), Some(2), "{tags}");
    assert_eq!(tags["events"][0]["attributes"]["device"], serde_json::json!("e4-a01-session"));
    let xml_report: Value =
        serde_json::from_slice(&std::fs::read(&find(&drop.join("processed"), "export.xml.report.json")[0]).expect("r"))
            .expect("json");
    assert_eq!(xml_report["not_stored_yet"], serde_json::json!([]));
    let ev = server.get("/api/v1/patients/fd-4/events?kind=sleep", Some(ADMIN)).json();
    assert_eq!(ev["events"][0]["attributes"]["stage"], serde_json::json!("AsleepCore"), "{ev}");
    let processed = drop.join("processed");
    let reports = find(&processed, "g.csv.report.json");
    let report: Value = serde_json::from_slice(&std::fs::read(&reports[0]).expect("report")).expect("json");
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(2), Some(1)));
    assert_eq!(report["refused"][0]["line"].as_u64(), Some(3), "the report names the bad line");
    let failed = drop.join("failed");
    let errors: Vec<String> =
        find(&failed, ".error.txt").iter().map(|p| std::fs::read_to_string(p).expect("read")).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("garbage.bin") && e.contains("UTF-8")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("orphan-export.json") && e.contains("no patient ids")), "{errors:?}");
    assert!(find(&failed, "garbage.bin").len() == 1, "the failed file itself is kept");
    assert!(server.get("/metrics", Some(ADMIN)).body.contains("vitals_file_drop_failed_total 2"));

    // The same content under another name is recognised and not ingested again.
    drop_file(&inbox, "again.csv", csv);
    eventually("the duplicate", || !find(&processed, "again.csv.report.json").is_empty());
    assert_eq!(count(&server, "fd-1", "blood_glucose"), 2);
    let dup: Value = serde_json::from_slice(&std::fs::read(&find(&processed, "again.csv.report.json")[0]).expect("r"))
        .expect("json");
    assert_eq!(dup["duplicate_of"], Value::String("g.csv".into()));
    assert!(names(&drop).contains(&"ledger.log".to_owned()));
    // The ledger as the admin view reads it, newest first.
    let ledger = server.get("/api/v1/file-drop?limit=100", Some(ADMIN)).json();
    assert_eq!(ledger["enabled"], Value::Bool(true));
    let entries = ledger["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["name"], Value::String("again.csv".into()), "{ledger}");
    assert_eq!(entries[0]["status"], Value::String("duplicate".into()));
    assert!(entries.iter().any(|e| e["status"] == "failed" && e["name"] == "garbage.bin"), "{ledger}");
}

#[test]
fn a_zip_bomb_and_an_endless_line_fail_with_the_limit_named_instead_of_filling_memory() {
    use std::io::Write;
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = DurationMs(20);
    });
    let drop = server.data_dir().join("drop");
    let inbox = drop.join("inbox");
    eventually("the inbox", || inbox.exists());
    // 300 MiB of one EDA value inflate from well under a MiB.
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("S1/EDA.csv", zip::write::SimpleFileOptions::default()).expect("entry");
    z.write_all(b"1763690000\n4\n").expect("header");
    let block = "0.1\n".repeat(1 << 18);
    for _ in 0..300 {
        z.write_all(block.as_bytes()).expect("inflates");
    }
    let bomb = z.finish().expect("zip").into_inner();
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    drop_file(&inbox, "fd-9/bomb.zip", &bomb);
    let long = format!(
        "{{\"patient\":\"fd-9\",\"metric\":\"heart_rate\",\"time\":0,\"value\":60,\"x\":\"{}\"}}\n",
        "y".repeat(2 << 20)
    );
    drop_file(&inbox, "long.ndjson", long.as_bytes());
    eventually("both failed", || find(&drop.join("failed"), ".error.txt").len() == 2);
    let errors: Vec<String> =
        find(&drop.join("failed"), ".error.txt").iter().map(|p| std::fs::read_to_string(p).expect("error")).collect();
    assert!(errors.iter().any(|e| e.contains("EDA.csv in the zip is larger than 256 MiB")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("line 1 is longer than 1048576 bytes")), "{errors:?}");
    assert!(names(&inbox).iter().all(|n| n.starts_with("fd-")), "not retried: {:?}", names(&inbox));
}
