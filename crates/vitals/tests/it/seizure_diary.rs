//! The seizure diary over the API: detector alerts and recorded seizures matched into
//! confirmed, detected and recorded entries, with acknowledgements, as JSON and CSV.

use serde_json::{Value, json};
use vitals_alerts::{Alert, AlertState};

use crate::harness::{ADMIN, NOW, TestServer};

const MIN: i64 = 60_000;

fn record(server: &TestServer, id: &str, start: i64, end: i64, note: &str) {
    let e = vitals_core::Event {
        id: id.into(),
        patient: "s-1".into(),
        kind: "seizure".into(),
        start_ms: start,
        end_ms: end,
        source: "carer-app".into(),
        attributes: [("note".to_owned(), json!(note))].into_iter().collect(),
    };
    server.app.events.put(vec![e]).expect("event");
}

fn detected(server: &TestServer, id: &str, start: i64, end: i64) {
    let a = Alert {
        id: id.into(),
        rule: "seizure-detector".into(),
        patient: "s-1".into(),
        severity: vitals_rules::Severity::Urgent,
        state: AlertState::Resolved,
        start_ms: start,
        fired_ms: start + 15_000,
        end_ms: end,
        cleared_ms: Some(end),
        created_ms: start + 15_000,
        updated_ms: end,
        ..Alert::default()
    };
    server.app.alerts.commit(vec![a], Vec::new()).expect("alert");
}

#[test]
fn the_diary_matches_detections_with_records_and_exports_csv() {
    // No alerting thread: at its start it resolves the seizure detector's open alerts (its
    // state does not survive a restart), which would race with the alerts made here.
    let server = TestServer::with_config(|c| c.alerting.enabled = false);
    // Detected and recorded (confirmed), detected only (acknowledged), recorded only.
    detected(&server, "al-1", NOW - 300 * MIN, NOW - 298 * MIN);
    record(&server, "ev-1", NOW - 299 * MIN, NOW - 297 * MIN, "tonic-clonic, 2 min");
    detected(&server, "al-2", NOW - 200 * MIN, NOW - 199 * MIN);
    let mut open = server.app.alerts.get("al-2").expect("al-2");
    open.state = AlertState::Open;
    open.cleared_ms = None;
    server.app.alerts.commit(vec![open], Vec::new()).expect("reopen");
    assert_eq!(server.post("/api/v1/alerts/al-2/ack", Some(ADMIN), "application/json", b"").status, 200);
    record(&server, "ev-2", NOW - 100 * MIN, NOW - 99 * MIN, "=1+1 absence");
    let range = format!("from={}&to={NOW}", NOW - 400 * MIN);
    let r = server.get(&format!("/api/v1/patients/s-1/seizures?{range}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["counts"], json!({"confirmed": 1, "detected": 1, "recorded": 1}), "{v}");
    let e = v["entries"].as_array().expect("entries");
    let status: Vec<&str> = e.iter().filter_map(|x| x["status"].as_str()).collect();
    assert_eq!(status, ["confirmed", "detected", "recorded"]);
    assert_eq!((e[0]["alert"].clone(), e[0]["record"].clone()), (json!("al-1"), json!("ev-1")));
    assert_eq!(e[0]["duration_s"], json!(180), "from the alert's start to the record's end");
    assert_eq!(e[0]["note"], json!("tonic-clonic, 2 min"));
    assert_eq!(e[1]["acknowledged_by"], json!("admin"), "{}", e[1]);
    assert_eq!(e[2]["recorded_by"], json!("carer-app"));
    // CSV: a header, one line per seizure, fields quoted, no formula.
    let csv = server.get(&format!("/api/v1/patients/s-1/seizures?{range}&format=csv"), Some(ADMIN));
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{}", csv.body);
    assert_eq!(
        lines[0],
        "start,end,duration_s,status,alert,detected_at,alert_state,acknowledged_by,acknowledged_at,record,recorded_by,note"
    );
    assert!(lines[1].ends_with(",ev-1,carer-app,\"tonic-clonic, 2 min\""), "{}", lines[1]);
    assert!(lines[3].ends_with(",ev-2,carer-app,'=1+1 absence"), "{}", lines[3]);
    // Bad parameters.
    for q in ["from=5&to=1", &format!("{range}&format=xml")] {
        assert_eq!(server.get(&format!("/api/v1/patients/s-1/seizures?{q}"), Some(ADMIN)).status, 400, "{q}");
    }
    let empty = server.get(&format!("/api/v1/patients/s-2/seizures?{range}&format=csv"), Some(ADMIN));
    assert_eq!(empty.body.split("\r\n").filter(|l| !l.is_empty()).count(), 1, "a header only");
    let _: Value = v;
}
