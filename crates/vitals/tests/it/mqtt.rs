//! MQTT client mode against a real mosquitto broker (installed by scripts/test, started
//! here on 127.0.0.1) with the real `mosquitto_pub` client.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{ADMIN, NOW, TestServer, eventually};

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
        .expect("conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
    }
    Broker { child, port, _dir: dir }
}

fn publish(port: u16, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-m", payload])
        .output()
        .expect("mosquitto_pub runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn points(server: &TestServer, patient: &str, metric: &str) -> usize {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}"), Some(ADMIN));
    if r.status != 200 {
        return 0;
    }
    r.json()["points"].as_array().map(Vec::len).unwrap_or(0)
}

fn server_for(port: u16, client_id: &str) -> TestServer {
    let server = TestServer::with_config(|c| {
        c.mqtt.enabled = true;
        c.mqtt.broker = format!("127.0.0.1:{port}");
        c.mqtt.client_id = client_id.to_owned();
    });
    // Subscribed once a probe published now is ingested.
    let mut n = 0;
    eventually("the subscription", || {
        n += 1;
        let probe = json!([{"patient": "mq-probe", "metric": "heart_rate", "time": NOW - n * 1000, "value": 60}]);
        publish(port, "vitals/mq-probe/samples", &probe.to_string());
        points(&server, "mq-probe", "heart_rate") > 0
    });
    server
}

#[test]
fn devices_publish_samples_through_a_real_broker() {
    let broker = start_broker();
    let server = server_for(broker.port, "vitals-test-a");
    publish(
        broker.port,
        "vitals/mq-1/samples",
        &json!([
            {"patient": "mq-1", "metric": "heart_rate", "time": NOW, "value": 71, "device": "w1"},
            {"patient": "mq-1", "metric": "heart_rate", "time": NOW - 1000, "value": 70, "device": "w1"},
            {"patient": "mq-2", "metric": "heart_rate", "time": NOW, "value": 99}
        ])
        .to_string(),
    );
    publish(
        broker.port,
        "vitals/mq-1/samples",
        &format!("{{\"patient\":\"mq-1\",\"metric\":\"eda\",\"time\":{NOW},\"value\":0.3}}\n"),
    );
    let hae = r#"{"data":{"metrics":[{"name":"step_count","units":"count","data":[{"date":"2025-11-21 07:41:00 -0800","qty":112}]}]}}"#;
    publish(broker.port, "vitals/mq-1/health-auto-export", hae);
    publish(broker.port, "vitals/mq-1/samples", "{not json");
    publish(broker.port, "vitals/not a pseudonym/samples", "[]");
    eventually("all messages", || {
        points(&server, "mq-1", "heart_rate") == 2
            && points(&server, "mq-1", "eda") == 1
            && points(&server, "mq-1", "step_count") == 1
    });
    assert_eq!(points(&server, "mq-2", "heart_rate"), 0, "a topic only carries its own patient");
    eventually("the dead letters", || {
        let dl = server.get("/api/v1/dead-letters", Some(ADMIN)).json();
        dl["dead_letters"].as_array().map(Vec::len) == Some(3)
    });
    let dl = server.get("/api/v1/dead-letters", Some(ADMIN)).json();
    let reasons: Vec<String> = dl["dead_letters"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(reasons[0].contains("patient_not_allowed"), "{reasons:?}");
    assert!(reasons[1].contains("malformed"), "{reasons:?}");
    assert!(reasons[2].contains("not a pseudonym"), "{reasons:?}");
    let m = server.get("/metrics", Some(ADMIN)).body;
    assert!(m.contains("vitals_mqtt_malformed_total 1"), "{m}");
    assert!(m.contains("vitals_rejected_samples_total{code=\"malformed\"} 1"), "{m}");
}

#[test]
fn messages_published_while_vitals_is_down_arrive_when_it_is_back() {
    let broker = start_broker();
    drop(server_for(broker.port, "vitals-test-b"));
    publish(
        broker.port,
        "vitals/mq-3/samples",
        &json!([{"patient": "mq-3", "metric": "spo2", "time": NOW, "value": 97}]).to_string(),
    );
    let server = TestServer::with_config(|c| {
        c.mqtt.enabled = true;
        c.mqtt.broker = format!("127.0.0.1:{}", broker.port);
        c.mqtt.client_id = "vitals-test-b".into();
    });
    eventually("the queued message", || points(&server, "mq-3", "spo2") == 1);
}
