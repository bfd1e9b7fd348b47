//! Device telemetry through the real server: each device's last contact, battery and
//! signal, the stale-device alarm timed by when the server last heard from the device (not
//! by its readings' own times), resolved when it is heard again, and erasure.

use serde_json::{Value, json};
use vitals_core::DurationMs;

use crate::harness::{ADMIN, NOW, TestServer, eventually};

const MIN: i64 = 60_000;

fn devices(server: &TestServer, patient: &str) -> Value {
    let r = server.get(&format!("/api/v1/patients/{patient}/devices"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn stale_alerts(server: &TestServer, patient: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/alerts?patient={patient}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["rule"] == "device-stale")
        .collect()
}

#[test]
fn devices_report_their_last_contact_and_a_quiet_one_raises_the_stale_alarm_until_heard_again() {
    let server = TestServer::with_config(|c| {
        c.alerting.devices.enabled = true;
        c.alerting.devices.stale_after = DurationMs(60 * MIN);
    });
    // A band's readings, its battery and radio; a CGM of the same patient; a reading with
    // no device (not a device's).
    let body = json!([
        {"patient": "dv-1", "metric": "heart_rate", "time": NOW - 10 * MIN, "value": 61, "device": "band-1"},
        {"patient": "dv-1", "metric": "battery_level", "time": NOW - 10 * MIN, "value": 77, "device": "band-1"},
        {"patient": "dv-1", "metric": "battery_level", "time": NOW - 20 * MIN, "value": 79, "device": "band-1"},
        {"patient": "dv-1", "metric": "signal_strength", "time": NOW - 10 * MIN, "value": -71, "device": "band-1"},
        {"patient": "dv-1", "metric": "blood_glucose", "time": NOW - 5 * MIN, "value": 104, "device": "cgm-7"},
        {"patient": "dv-1", "metric": "heart_rate", "time": NOW - 5 * MIN, "value": 62}
    ]);
    assert_eq!(server.ingest(&body).status, 200);
    let v = devices(&server, "dv-1");
    let list = v["devices"].as_array().expect("devices");
    assert_eq!(list.len(), 2, "{v}");
    let band = &list[0];
    assert_eq!(band["device"], json!("band-1"));
    assert_eq!(band["last_heard"], json!("2025-11-22T03:00:00.000Z"), "when the server heard it: now");
    assert_eq!(band["last_reading"], json!("2025-11-22T02:50:00.000Z"));
    assert_eq!(band["readings"], json!(4));
    assert_eq!(
        band["battery"],
        json!({"time": "2025-11-22T02:50:00.000Z", "value": 77.0}),
        "the newest, not the last sent"
    );
    assert_eq!(band["signal"]["value"], json!(-71.0));
    assert_eq!((band["sources"].clone(), band["stale"].clone()), (json!(["native"]), json!(false)));
    assert_eq!(list[1]["device"], json!("cgm-7"));

    // The CGM keeps sending (a backfill of old readings still counts as hearing from it);
    // the band goes quiet for over an hour.
    server.clock.set(NOW + 50 * MIN);
    let old =
        json!([{"patient": "dv-1", "metric": "blood_glucose", "time": NOW - 60 * MIN, "value": 99, "device": "cgm-7"}]);
    assert_eq!(server.ingest(&old).status, 200);
    server.clock.set(NOW + 61 * MIN);
    eventually("the band's stale alarm", || stale_alerts(&server, "dv-1").len() == 1);
    let alert = &stale_alerts(&server, "dv-1")[0];
    assert_eq!(alert["state"], json!("open"), "{alert}");
    assert!(alert["description"].as_str().expect("description").contains("band-1"), "{alert}");
    let v = devices(&server, "dv-1");
    assert_eq!(
        (v["devices"][0]["stale"].clone(), v["devices"][1]["stale"].clone()),
        (json!(true), json!(false)),
        "{v}"
    );
    assert_eq!(v["devices"][0]["stale_since"], json!("2025-11-22T04:00:00.000Z"));

    // Heard again: the alarm resolves, and is not raised twice meanwhile.
    let back =
        json!([{"patient": "dv-1", "metric": "heart_rate", "time": NOW + 61 * MIN, "value": 64, "device": "band-1"}]);
    assert_eq!(server.ingest(&back).status, 200);
    server.clock.set(NOW + 62 * MIN);
    eventually("the alarm resolved", || stale_alerts(&server, "dv-1").iter().all(|a| a["state"] == "resolved"));
    assert_eq!(stale_alerts(&server, "dv-1").len(), 1);
    assert_eq!(devices(&server, "dv-1")["devices"][0]["stale"], json!(false));

    // Erasure forgets the patient's devices, on disk too.
    let auth = format!("Bearer {ADMIN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = server.request("DELETE", "/api/v1/patients/dv-1", &headers, Some(b"{}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(devices(&server, "dv-1")["devices"], json!([]));
    let saved = std::fs::read_to_string(server.data_dir().join("devices/telemetry.json")).expect("telemetry.json");
    assert!(!saved.contains("dv-1"), "{saved}");
}
