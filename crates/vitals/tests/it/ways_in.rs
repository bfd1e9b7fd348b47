//! Every way in goes through the one ingest pipeline: each keeps a refused item as a dead
//! letter named after it and counts it in `/metrics` (`vitals_refused_total{source}`), and
//! what it accepts is counted as ingested.

use serde_json::{Value, json};
use vitals_core::DurationMs;
use vitals_core::time::MS_PER_HOUR;

use crate::harness::{ADMIN, DEVICE, NOW, TestServer, eventually};

fn dead_letters(server: &TestServer) -> Vec<Value> {
    let r = server.get("/api/v1/dead-letters", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["dead_letters"].as_array().expect("list").clone()
}

/// The value of a counter line of `/metrics` (0 when absent).
fn counter(server: &TestServer, line: &str) -> u64 {
    let m = server.get("/metrics", Some(ADMIN)).body;
    m.lines().find_map(|l| l.strip_prefix(line)?.trim().parse().ok()).unwrap_or(0)
}

fn refused(server: &TestServer, source: &str) -> u64 {
    counter(server, &format!("vitals_refused_total{{source=\"{source}\"}}"))
}

/// The one dead letter of `source`, once there.
fn letter_of(server: &TestServer, source: &str) -> Value {
    let mut found = None;
    eventually(&format!("a dead letter from {source}"), || {
        found = dead_letters(server).into_iter().find(|d| d["source"] == source);
        found.is_some()
    });
    found.expect("found")
}

#[test]
fn every_http_way_in_keeps_a_refused_item_and_counts_it() {
    let server = TestServer::start();
    let heart = |v: u32| json!({"patient": "w-1", "metric": "heart_rate", "time": NOW - 1000, "value": v});
    let hae = json!({"data": {"metrics": [{"name": "heart_rate", "units": "count/min",
        "data": [{"date": "2025-11-21 07:41:00 -0800", "Min": 60, "Avg": 65, "Max": 70},
                 {"date": "2025-11-21 07:42:00 -0800", "Min": 900, "Avg": 950, "Max": 999}]}]}});
    // (path, content type, body, the dead letters' source name, accepted items)
    let cases: [(&str, &str, String, &str, u64); 4] = [
        ("/api/v1/samples", "application/json", json!([heart(61), heart(999)]).to_string(), "api/samples", 1),
        (
            "/write?db=vitals&precision=ms",
            "text/plain",
            format!("heart_rate,patient=w-1 value=62 {}\nheart_rate,patient=w-1 value=998 {}\n", NOW - 900, NOW - 800),
            "line_protocol",
            1,
        ),
        (
            "/nightscout/w-1/api/v1/entries",
            "application/json",
            json!([{"type": "sgv", "sgv": 120, "date": NOW - 700}, {"type": "sgv", "sgv": 5000, "date": NOW - 600}])
                .to_string(),
            "nightscout/entries",
            1,
        ),
        ("/api/v1/ingest/health-auto-export?patient=w-1", "application/json", hae.to_string(), "health_auto_export", 3),
    ];
    for (path, ctype, body, source, accepted) in cases {
        let before = counter(&server, "vitals_ingested_samples_total");
        let r = server.post(path, Some(ADMIN), ctype, body.as_bytes());
        assert!(r.status < 500, "{path}: {} {}", r.status, r.body);
        let letter = letter_of(&server, source);
        assert!(!letter["items"].as_array().expect("items").is_empty(), "{source}: {letter}");
        assert!(refused(&server, source) >= 1, "{source} not counted");
        assert_eq!(counter(&server, "vitals_ingested_samples_total") - before, accepted, "{source}");
    }
}

#[test]
fn the_mqtt_client_keeps_a_refused_item_and_counts_it() {
    let broker = crate::mqtt::start_broker();
    let server = crate::mqtt::server_with(broker.port, "vitals-ways-in", |_| {});
    let body = json!([{"patient": "w-2", "metric": "heart_rate", "time": NOW - 1000, "value": 999}]);
    crate::mqtt::publish(broker.port, "vitals/w-2/samples", &body.to_string());
    let letter = letter_of(&server, "mqtt");
    assert_eq!(letter["items"][0]["code"], json!("value_out_of_range"), "{letter}");
    assert_eq!(refused(&server, "mqtt"), 1);
}

#[test]
fn the_mqtt_listener_keeps_a_refused_item_and_counts_it() {
    use rumqttc::QoS;
    let pki = crate::tls::pki();
    let (cert, key) = (pki.server.cert.clone(), pki.server.key.clone());
    let server = TestServer::with_config(move |c| {
        // Certificates of the listener only: the HTTP API stays plain for the checks below.
        c.mqtt_listener.tls_cert = cert;
        c.mqtt_listener.tls_key = key;
        c.mqtt_listener.enabled = true;
        c.mqtt_listener.listen = "127.0.0.1:0".into();
        c.mqtt_listener.require_client_cert = false;
    });
    eventually("the MQTT listener is up", || server.app.mqtt_listener_addr.get().is_some());
    let addr = *server.app.mqtt_listener_addr.get().expect("listener address");
    let body = json!([{"patient": "w-3", "metric": "heart_rate", "time": NOW - 1000, "value": 999},
                      {"patient": "w-3", "metric": "heart_rate", "time": NOW - 900, "value": 64}]);
    let session = crate::tls::mqtt_token_session(
        addr,
        &pki.ca,
        DEVICE,
        vec![("vitals/w-3/samples".into(), QoS::AtLeastOnce, body.to_string())],
        false,
    );
    assert_eq!(session.pubacks, 1, "{:?}", session.closed);
    let letter = letter_of(&server, "mqtt");
    assert_eq!(letter["items"][0]["code"], json!("value_out_of_range"), "{letter}");
    assert_eq!(refused(&server, "mqtt"), 1);
    assert_eq!(counter(&server, "vitals_ingested_samples_total"), 1);
}

#[test]
fn the_file_drop_keeps_refused_lines_as_dead_letters_and_counts_them() {
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = DurationMs(20);
    });
    let inbox = server.data_dir().join("drop").join("inbox");
    eventually("the inbox", || inbox.exists());
    let nd = format!(
        "{}\n{}\n",
        json!({"patient": "w-4", "metric": "heart_rate", "time": NOW - 1000, "value": 66}),
        json!({"patient": "w-4", "metric": "heart_rate", "time": NOW - 900, "value": 999})
    );
    crate::file_drop::drop_file(&inbox, "hr.ndjson", nd.as_bytes());
    let letter = letter_of(&server, "file-drop");
    assert_eq!((letter["format"].clone(), letter["items"].as_array().map(Vec::len)), (json!("ndjson"), Some(1)));
    let shown = server.get(&format!("/api/v1/dead-letters/{}", letter["id"]), Some(ADMIN)).json();
    assert!(shown["raw"].as_str().unwrap_or("").contains("999"), "the refused line is kept: {shown}");
    eventually("counted", || refused(&server, "file-drop") == 1);
    eventually("ingested", || counter(&server, "vitals_ingested_samples_total") == 1);
}

#[test]
fn a_replayed_dead_letter_goes_through_the_pipeline_once_its_cause_is_gone() {
    let server = TestServer::start();
    let later = json!({"patient": "w-5", "metric": "heart_rate", "time": NOW + 2 * MS_PER_HOUR, "value": 70});
    let r = server.post("/api/v1/samples", Some(DEVICE), "application/x-ndjson", format!("{later}\n").as_bytes());
    assert_eq!(r.json()["rejected"][0]["code"], json!("time_in_future"), "{}", r.body);
    let letter = letter_of(&server, "api/samples");
    server.clock.advance(2 * MS_PER_HOUR);
    let before = counter(&server, "vitals_ingested_samples_total");
    let id = letter["id"].as_u64().expect("id");
    let r = server.post(&format!("/api/v1/dead-letters/{id}/replay"), Some(ADMIN), "application/json", b"").json();
    assert_eq!((r["accepted"].clone(), r["removed"].clone()), (json!(1), json!(true)), "{r}");
    assert_eq!(counter(&server, "vitals_ingested_samples_total") - before, 1, "a replay is ingested like any write");
    assert!(dead_letters(&server).is_empty(), "nothing is kept again");
}

#[test]
fn vitals_ingest_keeps_refused_lines_of_a_data_directory_as_dead_letters() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let file = dir.path().join("hr.ndjson");
    std::fs::write(
        &file,
        "{\"patient\":\"w-6\",\"metric\":\"heart_rate\",\"time\":\"2025-01-01T00:00:00Z\",\"value\":60}\n\
         {\"patient\":\"w-6\",\"metric\":\"heart_rate\",\"time\":\"2025-01-01T00:01:00Z\",\"value\":999}\n",
    )
    .expect("write");
    let data_dir = data.to_string_lossy().into_owned();
    let file_arg = file.to_string_lossy().into_owned();
    let (ok, out, err) = crate::cli::vitals(&["--data-dir", &data_dir, "ingest", "--quiet", &file_arg]);
    assert!(ok, "{err}");
    assert!(out.contains("1 accepted, 1 rejected"), "{out}");
    let (ok, out, err) = crate::cli::vitals(&["--data-dir", &data_dir, "admin", "dead-letters", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("cli/ingest") && out.contains("ndjson"), "{out}");
}
