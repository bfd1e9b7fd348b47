//! Kafka client mode against a real Kafka-protocol broker (tansu, installed by scripts/test
//! and started here on 127.0.0.1), with a real producer (librdkafka, `acks=all`): the
//! glucose monitor's readings and device telemetry on separate topics, Telegraf's line
//! protocol on a third; refused messages become dead letters that say where they were read;
//! a restarted server resumes after its last commit.

use serde_json::json;
use vitals_kafka::testing::Broker;

use crate::harness::{ADMIN, NOW, TestServer, eventually};

const MIN: i64 = 60_000;

fn points(server: &TestServer, patient: &str, metric: &str) -> usize {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}"), Some(ADMIN));
    if r.status != 200 {
        return 0;
    }
    r.json()["points"].as_array().map(Vec::len).unwrap_or(0)
}

fn metric(server: &TestServer, name: &str) -> u64 {
    let m = server.get("/metrics", Some(ADMIN)).body;
    m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

fn server(broker: &Broker, data: &std::path::Path) -> TestServer {
    TestServer::in_dir(tempfile::tempdir().expect("tmp"), data, |c| {
        c.kafka.enabled = true;
        c.kafka.brokers = broker.address();
        c.kafka.group_id = "vitals-it".into();
        c.kafka.topics = vec!["glucose-readings".into(), "device-telemetry".into()];
        c.kafka.line_protocol_topics = vec!["telegraf".into()];
    })
}

/// One message per reading, keyed by patient (what keeps a patient's readings in order).
fn readings(patients: &[&str], per_patient: i64, from_min: i64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for p in patients {
        for i in 0..per_patient {
            let s = json!({"patient": p, "metric": "blood_glucose", "time": NOW - (from_min + i) * MIN,
                "value": 100 + i % 40, "device": format!("cgm-{p}")});
            out.push(((*p).to_owned(), s.to_string().into_bytes()));
        }
    }
    out
}

fn produce(broker: &Broker, topic: &str, msgs: &[(String, Vec<u8>)]) {
    let refs: Vec<(Option<&str>, &[u8])> = msgs.iter().map(|(k, v)| (Some(k.as_str()), v.as_slice())).collect();
    broker.produce(topic, &refs);
}

#[test]
fn readings_telemetry_and_line_protocol_topics_are_stored_and_a_restart_resumes_after_the_commit() {
    let broker = Broker::start();
    broker.create_topic("glucose-readings", 3);
    broker.create_topic("device-telemetry", 1);
    broker.create_topic("telegraf", 1);
    let patients = ["kf-1", "kf-2", "kf-3", "kf-4"];
    produce(&broker, "glucose-readings", &readings(&patients, 50, 0));
    let telemetry: Vec<(String, Vec<u8>)> = patients
        .iter()
        .map(|p| {
            let body = json!([
                {"patient": p, "metric": "battery_level", "time": NOW - 5 * MIN, "value": 81, "device": format!("cgm-{p}")},
                {"patient": p, "metric": "signal_strength", "time": NOW - 5 * MIN, "value": -70, "device": format!("cgm-{p}")}
            ]);
            ((*p).to_owned(), body.to_string().into_bytes())
        })
        .collect();
    produce(&broker, "device-telemetry", &telemetry);
    // One message that is not JSON, one with a good and an impossible reading.
    let bad = vec![
        ("kf-1".to_owned(), b"{not json".to_vec()),
        (
            "kf-1".to_owned(),
            json!([{"patient": "kf-1", "metric": "spo2", "time": NOW, "value": 97},
                   {"patient": "kf-1", "metric": "spo2", "time": NOW - MIN, "value": 400}])
            .to_string()
            .into_bytes(),
        ),
    ];
    produce(&broker, "device-telemetry", &bad);
    let line = format!("heart_rate,patient=kf-2,device=strap value=64 {}\n", NOW * 1_000_000);
    broker.produce("telegraf", &[(None, line.as_bytes())]);
    let messages = 200 + 4 + 2 + 1;

    let data = tempfile::tempdir().expect("data");
    let s = server(&broker, data.path());
    eventually("every message committed", || metric(&s, "vitals_kafka_committed_total") == messages);
    for p in patients {
        assert_eq!(points(&s, p, "blood_glucose"), 50, "{p}");
        assert_eq!(points(&s, p, "battery_level"), 1, "{p}");
    }
    assert_eq!(points(&s, "kf-1", "spo2"), 1, "the good reading of a message with a bad one");
    assert_eq!(points(&s, "kf-2", "heart_rate"), 1, "line protocol from the telegraf topic");
    // Telemetry per device: the devices view knows each CGM's battery and signal.
    let devices = s.get("/api/v1/patients/kf-3/devices", Some(ADMIN)).json();
    let cgm = &devices["devices"][0];
    assert_eq!(cgm["device"], "cgm-kf-3", "{devices}");
    assert_eq!(cgm["battery"]["value"], 81.0, "{devices}");
    assert_eq!(cgm["signal"]["value"], -70.0, "{devices}");
    assert_eq!(metric(&s, "vitals_kafka_messages_total"), messages);
    let m = s.get("/metrics", Some(ADMIN)).body;
    assert!(m.contains("vitals_rejected_samples_total{code=\"malformed\"} 1"), "{m}");
    assert!(m.contains("vitals_rejected_samples_total{code=\"value_out_of_range\"} 1"), "{m}");
    // Both refusals are dead letters that say where in the topic they were.
    let dl = s.get("/api/v1/dead-letters", Some(ADMIN)).json();
    let letters = dl["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 2, "{dl}");
    for d in letters {
        assert_eq!(d["source"], "kafka", "{d}");
        assert_eq!(d["context"]["topic"], "device-telemetry", "{d}");
        assert_eq!(d["context"]["partition"], "0", "{d}");
    }
    let offsets: Vec<&str> = letters.iter().map(|d| d["context"]["offset"].as_str().unwrap_or("")).collect();
    assert!(offsets.contains(&"4") && offsets.contains(&"5"), "the 5th and 6th message of the topic: {offsets:?}");

    // Vitals stops; readings keep coming; back on the same data directory, it reads what
    // came after its last commit: nothing is missing, nothing is counted twice.
    drop(s);
    produce(&broker, "glucose-readings", &readings(&patients, 10, 50));
    let s = server(&broker, data.path());
    eventually("the readings sent while it was down", || metric(&s, "vitals_kafka_committed_total") == 40);
    for p in patients {
        assert_eq!(points(&s, p, "blood_glucose"), 60, "{p}");
    }
    assert_eq!(metric(&s, "vitals_kafka_messages_total"), 40, "only what came after the commit is read again");
}
