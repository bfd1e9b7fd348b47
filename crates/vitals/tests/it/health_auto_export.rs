//! Health Auto Export through the real router: the patient from the token or the URL,
//! idempotent re-sends, and unsupported parts kept as dead letters.

use serde_json::json;

use crate::harness::{ADMIN, DEVICE, TestServer};

const EXPORT: &str = r#"{"data":{"metrics":[
  {"name":"heart_rate","units":"count/min","data":[
     {"date":"2025-11-21 07:41:00 -0800","Min":58,"Avg":63.5,"Max":71,"source":"Alex’s Apple Watch"},
     {"date":"2025-11-21 7:42:00 AM -0800","Min":60,"Avg":64,"Max":70,"source":"Alex’s Apple Watch"},
     {"date":"2025-11-21 6:43:00 PM -0800","Min":61,"Avg":65,"Max":72,"source":"Alex’s Apple Watch"}]},
  {"name":"step_count","units":"count","data":[{"date":"2025-11-21 07:41:00 -0800","qty":112}]},
  {"name":"walking_running_distance","units":"km","data":[{"date":"2025-11-21 07:41:00 -0800","qty":0.08}]}
],"workouts":[{"id":"9d2b5c8e","name":"Outdoor Walk","start":"2025-11-21 07:02:43 -0800","end":"2025-11-21 07:31:53 -0800",
   "heartRateData":[{"date":"2025-11-21 07:03:00 -0800","Min":96,"Avg":101,"Max":108}]}],
 "symptoms":[{"name":"Headache","start":"2025-11-21 08:00:00 -0800"}]}}"#;

fn points(server: &TestServer, patient: &str, metric: &str) -> Vec<serde_json::Value> {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}?include=device"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["points"].as_array().expect("points").clone()
}

#[test]
fn exports_are_stored_once_however_often_they_are_resent() {
    let server = TestServer::start();
    let path = "/api/v1/ingest/health-auto-export?patient=alias-42";
    for _ in 0..3 {
        let r = server.post(path, Some(ADMIN), "application/json", EXPORT.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["accepted"], json!(14), "{v}");
        assert_eq!(v["events"], json!(1));
        assert_eq!(v["rejected"], json!([]));
        assert_eq!(v["unsupported"], json!([{"section": "symptoms", "count": 1}]));
    }
    let hr = points(&server, "alias-42", "heart_rate");
    assert_eq!(hr.len(), 4, "re-sends are not duplicated (3 points + 1 from the workout)");
    assert_eq!(hr[0]["time"], json!("2025-11-21T15:03:00.000Z"), "the workout's heart-rate series");
    assert_eq!(hr[1], json!({"time": "2025-11-21T15:41:00.000Z", "value": 63.5, "device": "alex-s-apple-watch"}));
    assert_eq!(hr[3]["time"], json!("2025-11-22T02:43:00.000Z"), "6:43 PM -0800");
    assert_eq!(points(&server, "alias-42", "heart_rate_max").len(), 4);
    assert_eq!(points(&server, "alias-42", "walking_running_distance")[0]["value"], json!(80));
    // The workout is one event however often it is re-sent.
    let ev = server.get("/api/v1/patients/alias-42/events", Some(ADMIN)).json();
    let events = ev["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["kind"].clone(), events[0]["attributes"]["name"].clone()),
        (json!("workout"), json!("Outdoor Walk"))
    );
    assert_eq!(events[0]["start"], json!("2025-11-21T15:02:43.000Z"));
    // What cannot be stored yet (symptoms) is not lost: each export is kept for a replay.
    let dl = server.get("/api/v1/dead-letters", Some(ADMIN)).json();
    let entries = dl["dead_letters"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["reason"], json!("not stored yet: symptoms (1)"));
    assert_eq!(entries[0]["context"]["patient"], json!("alias-42"));
    let id = entries[0]["id"].as_u64().expect("id");
    let r = server.post(&format!("/api/v1/dead-letters/{id}/replay"), Some(ADMIN), "application/json", b"").json();
    assert_eq!((r["accepted"].clone(), r["removed"].clone()), (json!(14), json!(false)), "{r}");
}

#[test]
fn the_patient_comes_from_a_bound_token_or_the_url() {
    let server = TestServer::start();
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"phone","role":"device","patient":"alias-7"}"#,
    );
    let phone = r.json()["token"].as_str().expect("token").to_owned();
    let path = "/api/v1/ingest/health-auto-export";
    assert_eq!(server.post(path, Some(&phone), "application/json", EXPORT.as_bytes()).status, 200);
    assert_eq!(points(&server, "alias-7", "step_count").len(), 1);
    assert_eq!(
        server.post(&format!("{path}?patient=alias-7"), Some(&phone), "application/json", EXPORT.as_bytes()).status,
        200
    );
    let r = server.post(&format!("{path}?patient=alias-8"), Some(&phone), "application/json", EXPORT.as_bytes());
    assert_eq!((r.status, r.json()["code"].clone()), (403, json!("forbidden")));
    let r = server.post(path, Some(DEVICE), "application/json", EXPORT.as_bytes());
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("invalid_query")),
        "an unbound token must name the patient"
    );
    let r = server.post(&format!("{path}?patient=a/b"), Some(ADMIN), "application/json", EXPORT.as_bytes());
    assert_eq!(r.status, 400);
    let r = server.post(&format!("{path}?patient=alias-7"), Some(ADMIN), "application/json", b"{\"metrics\": []}");
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_body")));
    assert_eq!(server.post(path, None, "application/json", EXPORT.as_bytes()).status, 401);
}
