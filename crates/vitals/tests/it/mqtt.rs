//! MQTT client mode against a real mosquitto broker (installed by scripts/test, started
//! here on 127.0.0.1) with the real `mosquitto_pub` client; certificates for the TLS test
//! come from the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{ADMIN, NOW, TestServer, eventually};

pub struct Broker {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_broker() -> Broker {
    start_broker_with(tempfile::tempdir().expect("tmp"), |port| {
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    })
}

fn start_broker_with(dir: tempfile::TempDir, conf_text: impl FnOnce(u16) -> String) -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, conf_text(port)).expect("conf");
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

pub fn publish(port: u16, topic: &str, payload: &str) {
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
    server_with(port, client_id, |_| {})
}

pub fn server_with(port: u16, client_id: &str, f: impl FnOnce(&mut vitals_server::config::Config)) -> TestServer {
    let server = TestServer::with_config(|c| {
        c.mqtt.enabled = true;
        c.mqtt.broker = format!("127.0.0.1:{port}");
        c.mqtt.client_id = client_id.to_owned();
        f(c);
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

#[test]
fn a_message_that_could_not_be_stored_is_delivered_again() {
    let broker = start_broker();
    let server = server_with(broker.port, "vitals-test-c", |c| {
        c.storage.flush_max_samples = 5;
        c.storage.max_buffered_samples = 10;
    });
    server.store.flush().expect("flush");
    // Fill the write buffer (nothing flushes it in tests until asked).
    let full: Vec<_> =
        (0..10).map(|i| json!({"patient": "mq-4", "metric": "eda", "time": NOW - i * 1000, "value": 1})).collect();
    assert_eq!(server.ingest(&json!(full)).status, 200);
    publish(
        broker.port,
        "vitals/mq-4/samples",
        &json!([{"patient": "mq-4", "metric": "spo2", "time": NOW, "value": 96}]).to_string(),
    );
    // Overloaded past its retries, the message stays unacknowledged and Vitals reconnects.
    eventually("a reconnect", || metric(&server, "vitals_mqtt_connection_errors_total").unwrap_or(0) > 0);
    assert_eq!(points(&server, "mq-4", "spo2"), 0);
    server.store.flush().expect("flush");
    eventually("the redelivered message", || points(&server, "mq-4", "spo2") == 1);
}

/// Runs `openssl` with `args` in `dir`, failing the test with its message.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`<ca>.pem`/`.key`) with P-256 keys.
fn make_ca(dir: &Path, ca: &str) {
    let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=Vitals test {ca}"));
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
    openssl(dir, &["req", "-x509", "-new", "-key", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
}

/// A leaf certificate `<name>.pem`/`.key` with common name `name`, signed by `ca`.
fn make_cert(dir: &Path, ca: &str, name: &str, server: bool) -> (PathBuf, PathBuf) {
    let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
    openssl(dir, &["req", "-new", "-key", &key, "-out", &csr, "-subj", &format!("/CN={name}")]);
    let ext = format!("{name}.ext");
    let usage = if server { "serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost" } else { "clientAuth" };
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={usage}\n"),
    )
    .expect("ext");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(pem), dir.join(key))
}

/// Publishes over TLS with a device certificate; returns whether mosquitto_pub succeeded.
fn publish_tls(dir: &Path, port: u16, device: &str, topic: &str, payload: &str) -> bool {
    let ca = dir.join("ca.pem");
    let (cert, key) = (dir.join(format!("{device}.pem")), dir.join(format!("{device}.key")));
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-m", payload]);
    cmd.arg("--cafile").arg(ca).arg("--cert").arg(cert).arg("--key").arg(key);
    cmd.stderr(Stdio::null()).status().expect("mosquitto_pub runs").success()
}

fn metric(server: &TestServer, name: &str) -> Option<u64> {
    let m = server.get("/metrics", Some(ADMIN)).body;
    m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn tls_with_client_certificates_and_the_broker_acl_decide_who_writes_for_whom() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_owned();
    make_ca(&d, "ca");
    make_ca(&d, "rogue-ca");
    make_cert(&d, "ca", "broker", true);
    let (vitals_cert, vitals_key) = make_cert(&d, "ca", "vitals", false);
    make_cert(&d, "ca", "w1", false);
    make_cert(&d, "rogue-ca", "intruder", false);
    // Device identity is the certificate's common name; the ACL binds device w1 to
    // patient mq-tls-1 and lets Vitals read every patient's topics.
    // mosquitto started as root reads its TLS files as the `mosquitto` user.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(&d).expect("dir") {
        let path = entry.expect("entry").path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(d.join("acl"), "user vitals\ntopic read vitals/#\n\nuser w1\ntopic write vitals/mq-tls-1/#\n")
        .expect("acl");
    let conf_dir = d.clone();
    let broker = start_broker_with(dir, move |port| {
        let p = |f: &str| conf_dir.join(f).display().to_string();
        format!(
            "per_listener_settings false\nallow_anonymous false\npersistence false\nacl_file {}\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n",
            p("acl"),
            p("ca.pem"),
            p("broker.pem"),
            p("broker.key")
        )
    });
    let port = broker.port;
    let tls = |c: &mut vitals_server::config::Config, ca: &str| {
        c.mqtt.enabled = true;
        c.mqtt.broker = format!("127.0.0.1:{port}");
        c.mqtt.client_id = format!("vitals-tls-{ca}");
        c.mqtt.tls = true;
        c.mqtt.ca_file = d.join(format!("{ca}.pem"));
        c.mqtt.cert_file = vitals_cert.clone();
        c.mqtt.key_file = vitals_key.clone();
    };

    // Vitals verifies the broker: trusting another CA, it never connects.
    let wary = TestServer::with_config(|c| tls(c, "rogue-ca"));
    eventually("a refused handshake", || metric(&wary, "vitals_mqtt_connection_errors_total").unwrap_or(0) > 0);
    assert_eq!(metric(&wary, "vitals_mqtt_connected"), Some(0));
    drop(wary);

    let server = TestServer::with_config(|c| tls(c, "ca"));
    let mut n = 0;
    eventually("the TLS subscription", || {
        n += 1;
        let probe = json!([{"patient": "mq-tls-1", "metric": "battery_level", "time": NOW - n * 1000, "value": 80}]);
        assert!(publish_tls(&d, port, "w1", "vitals/mq-tls-1/samples", &probe.to_string()), "w1 may publish");
        points(&server, "mq-tls-1", "battery_level") > 0
    });
    assert_eq!(metric(&server, "vitals_mqtt_connected"), Some(1));

    // The broker drops w1's write for another patient before it answers, so once the
    // allowed message that follows is ingested, the refused one can never arrive.
    let sample = |p: &str| json!([{"patient": p, "metric": "heart_rate", "time": NOW, "value": 64}]).to_string();
    publish_tls(&d, port, "w1", "vitals/mq-tls-2/samples", &sample("mq-tls-2"));
    assert!(publish_tls(&d, port, "w1", "vitals/mq-tls-1/samples", &sample("mq-tls-1")));
    eventually("w1's own patient", || points(&server, "mq-tls-1", "heart_rate") == 1);
    assert_eq!(points(&server, "mq-tls-2", "heart_rate"), 0, "the ACL keeps w1 to its patient");

    // A certificate from another CA does not even connect.
    assert!(!publish_tls(&d, port, "intruder", "vitals/mq-tls-1/samples", &sample("mq-tls-1")));
}

#[test]
fn unusable_tls_files_are_reported_with_the_file_at_startup() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    make_ca(d, "ca");
    let (cert, _) = make_cert(d, "ca", "a", false);
    let (_, other_key) = make_cert(d, "ca", "b", false);
    let mut cfg = vitals_server::config::MqttConfig { tls: true, ca_file: d.join("ca.pem"), ..Default::default() };
    assert!(vitals_server::source::mqtt::tls_config(&cfg).is_ok(), "a CA alone is enough");
    cfg.cert_file = cert;
    cfg.key_file = other_key;
    let e = format!("{:#}", vitals_server::source::mqtt::tls_config(&cfg).expect_err("mismatched key"));
    assert!(e.contains("does not match its key"), "{e}");
    cfg.ca_file = d.join("missing.pem");
    let e = format!("{:#}", vitals_server::source::mqtt::tls_config(&cfg).expect_err("missing CA file"));
    assert!(e.contains("missing.pem"), "{e}");
    cfg.ca_file = d.join("a.key");
    let e = format!("{:#}", vitals_server::source::mqtt::tls_config(&cfg).expect_err("a key is not a certificate"));
    assert!(e.contains("no certificate"), "{e}");
}
