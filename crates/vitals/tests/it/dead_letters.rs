//! Refused input is kept, listed, shown, replayed once the cause is gone, and purged.

use serde_json::json;
use vitals_core::time::MS_PER_HOUR;

use crate::harness::{ADMIN, DEVICE, NOW, TestServer};

fn list(server: &TestServer) -> Vec<serde_json::Value> {
    let r = server.get("/api/v1/dead-letters", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["dead_letters"].as_array().expect("list").clone()
}

fn count(server: &TestServer, patient: &str) -> usize {
    let r =
        server.get(&format!("/api/v1/patients/{patient}/series/heart_rate?to={}", NOW + 3 * MS_PER_HOUR), Some(ADMIN));
    if r.status == 404 {
        return 0;
    }
    r.json()["points"].as_array().expect("points").len()
}

#[test]
fn refused_lines_are_kept_and_replayed_once_their_cause_is_gone() {
    let server = TestServer::start();
    let later = NOW + 2 * MS_PER_HOUR;
    let body = format!(
        "{{\"patient\":\"d-1\",\"metric\":\"heart_rate\",\"time\":{NOW},\"value\":60}}\n\
         {{\"patient\":\"d-1\",\"metric\":\"heart_rate\",\"time\":{later},\"value\":61}}\n\
         {{\"patient\":\"d-1\",\"metric\":\"heart_rate\",\"time\":{},\"value\":62}}\n\
         {{\"patient\":\"d-1\",\"metric\":\"heart_rate\",\"time\":{later},\"value\":999}}\n",
        NOW - 1000
    );
    let r = server.post("/api/v1/samples", Some(DEVICE), "application/x-ndjson", body.as_bytes());
    assert_eq!(r.json()["accepted"], json!(2));
    let entries = list(&server);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e["source"].as_str(), e["format"].as_str()), (Some("api/samples"), Some("ndjson")));
    assert_eq!(e["items"].as_array().map(Vec::len), Some(2));
    let id = e["id"].as_u64().expect("id");
    let shown = server.get(&format!("/api/v1/dead-letters/{id}"), Some(ADMIN)).json();
    let raw = shown["raw"].as_str().expect("raw text");
    assert_eq!(raw.lines().count(), 2, "only the refused lines are kept: {raw}");
    assert!(raw.contains("\"value\":61") && raw.contains("\"value\":999"));

    // Replayed too early: still refused, kept.
    let r = server.post(&format!("/api/v1/dead-letters/{id}/replay"), Some(ADMIN), "application/json", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["accepted"].clone(), r.json()["removed"].clone()), (json!(0), json!(false)));
    // Two hours later the "future" sample is valid: it is stored; the implausible one stays refused.
    server.clock.advance(2 * MS_PER_HOUR);
    let r = server.post(&format!("/api/v1/dead-letters/{id}/replay"), Some(ADMIN), "application/json", b"").json();
    assert_eq!(r["accepted"], json!(1));
    assert_eq!(r["rejected"][0]["code"], json!("value_out_of_range"));
    assert_eq!(count(&server, "d-1"), 3);
    assert_eq!(list(&server).len(), 1, "kept while something is still refused");
    let del = crate::harness::agent()
        .delete(&format!("{}/api/v1/dead-letters/{id}", server.url))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("delete");
    assert_eq!(del.status().as_u16(), 204);
    assert!(list(&server).is_empty());
}

#[test]
fn unparseable_bodies_and_line_protocol_are_kept_too_and_purge_empties_the_store() {
    let server = TestServer::start();
    let r = server.post("/api/v1/samples", Some(ADMIN), "application/json", b"[{\"patient\": ");
    assert_eq!(r.status, 400);
    let lp = format!(
        "heart_rate,patient=d-2 value=70 {}\nheart_rate,patient=d-2 value=71 {}\n",
        NOW / 1000,
        (NOW + 2 * MS_PER_HOUR) / 1000
    );
    let r = server.post("/write?db=x&precision=s", Some(ADMIN), "text/plain", lp.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    let entries = list(&server);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["source"], json!("api/samples"));
    assert!(entries[0]["reason"].as_str().unwrap_or("").contains("invalid JSON"), "{}", entries[0]);
    assert_eq!(entries[0]["items"], json!([]));
    assert_eq!(
        (entries[1]["source"].clone(), entries[1]["context"]["precision"].clone()),
        (json!("line_protocol"), json!("s"))
    );
    let whole = entries[0]["id"].as_u64().expect("id");
    let r = server.post(&format!("/api/v1/dead-letters/{whole}/replay"), Some(ADMIN), "application/json", b"");
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_body")), "still not decodable");
    server.clock.advance(2 * MS_PER_HOUR);
    let lp_id = entries[1]["id"].as_u64().expect("id");
    let r = server.post(&format!("/api/v1/dead-letters/{lp_id}/replay"), Some(ADMIN), "application/json", b"").json();
    assert_eq!((r["accepted"].clone(), r["removed"].clone()), (json!(1), json!(true)), "{r}");
    assert_eq!(count(&server, "d-2"), 2);
    assert!(server.get("/metrics", Some(ADMIN)).body.contains("vitals_dead_letters 1"));
    let purge = crate::harness::agent()
        .delete(&format!("{}/api/v1/dead-letters", server.url))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("purge");
    assert_eq!(purge.status().as_u16(), 200);
    assert!(list(&server).is_empty());
    assert_eq!(server.get("/api/v1/dead-letters", Some(DEVICE)).status, 403, "admins only");
}

#[test]
fn a_replay_keeps_the_patient_binding_of_the_sender() {
    let server = TestServer::start();
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"w","role":"device","patient":"d-3"}"#,
    );
    let bound = r.json()["token"].as_str().expect("token").to_owned();
    let other = json!([{"patient": "d-4", "metric": "heart_rate", "time": NOW - 1000, "value": 60}]);
    let r = server.post("/api/v1/samples", Some(&bound), "application/json", other.to_string().as_bytes());
    assert_eq!(r.json()["rejected"][0]["code"], json!("patient_not_allowed"), "{}", r.body);
    let id = list(&server)[0]["id"].as_u64().expect("id");
    let r = server.post(&format!("/api/v1/dead-letters/{id}/replay"), Some(ADMIN), "application/json", b"").json();
    assert_eq!((r["accepted"].clone(), r["rejected"][0]["code"].clone()), (json!(0), json!("patient_not_allowed")));
    assert_eq!(count(&server, "d-4"), 0, "an administrator's replay does not widen what the device could write");
}
