//! The InfluxDB-compatible write endpoints: responses as InfluxDB gives them, every way of
//! passing credentials, gzip, and the real influxdb-python client end to end.

use std::io::Write;
use std::process::Command;

use base64::Engine as _;
use serde_json::json;

use crate::harness::{ADMIN, DEVICE, NOW, TestServer, into_resp};

fn write(server: &TestServer, path: &str, headers: &[(&str, String)], body: &[u8]) -> crate::harness::Resp {
    let mut req = crate::harness::agent().post(&format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    into_resp(req.send(body).expect("request"))
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {t}"))]
}

fn series(server: &TestServer, patient: &str, metric: &str) -> Vec<(i64, f64)> {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/{metric}?time_format=ms"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p["time"].as_i64().expect("t"), p["value"].as_f64().expect("v")))
        .collect()
}

#[test]
fn writes_answer_like_influxdb() {
    let server = TestServer::start();
    let good =
        format!("heart_rate,patient=lp-1,device=w1 value=72 {NOW}\nheart_rate,patient=lp-1 value=73 {}\n", NOW - 1000);
    let r = write(&server, "/write?db=health&precision=ms", &bearer(ADMIN), good.as_bytes());
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(series(&server, "lp-1", "heart_rate"), vec![(NOW - 1000, 73.0), (NOW, 72.0)]);

    let partial = format!(
        "heart_rate,patient=lp-1 value=74 {}\nheart_rate,patient=lp-1 value=900 {NOW}\nbroken line\n",
        NOW - 2000
    );
    let r = write(&server, "/write?db=health&precision=ms", &bearer(ADMIN), partial.as_bytes());
    assert_eq!(r.status, 400);
    let err = r.json()["error"].as_str().expect("error").to_owned();
    assert!(err.starts_with("partial write:") && err.ends_with("dropped=2"), "{err}");
    assert!(err.contains("value_out_of_range"), "{err}");
    assert_eq!(series(&server, "lp-1", "heart_rate").len(), 3, "the good line of a partial write is stored");

    let r = write(&server, "/write?db=health", &bearer(ADMIN), b"garbage\nmore garbage");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap_or("").starts_with("unable to parse"), "{}", r.body);

    let r = write(&server, "/write", &bearer(ADMIN), good.as_bytes());
    assert_eq!((r.status, r.json()["error"].clone()), (400, json!("database is required")));
    let r = write(&server, "/write?db=x&precision=fortnight", &bearer(ADMIN), good.as_bytes());
    assert_eq!(r.status, 400);

    // InfluxDB 2.x path with its Token header.
    let v2 = format!("blood_glucose,patient=lp-2 value=5.5 {}\n", NOW / 1000);
    let mut h = vec![("Authorization", format!("Token {ADMIN}"))];
    // Without a unit tag glucose is in mg/dL, where 5.5 is implausible: refused with why.
    let r = write(&server, "/api/v2/write?org=o&bucket=b&precision=s", &h, v2.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap_or("").contains("value_out_of_range"), "{}", r.body);
    h.push(("Content-Type", "text/plain".into()));
    let v2 = format!("blood_glucose,patient=lp-2,unit=mmol/L value=5.5 {}\n", NOW / 1000 + 60);
    assert_eq!(write(&server, "/api/v2/write?bucket=b&precision=s", &h, v2.as_bytes()).status, 204);
    assert_eq!(series(&server, "lp-2", "blood_glucose"), vec![(NOW + 60_000, 99.1)]);
}

#[test]
fn every_influxdb_way_of_sending_credentials_carries_a_vitals_token() {
    let server = TestServer::start();
    let line = |i: i64| format!("heart_rate,patient=lp-a value=70 {}\n", NOW - i * 1000);
    let basic =
        |u: &str, p: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
    let ok: Vec<(String, Vec<(&str, String)>)> = vec![
        ("/write?db=h&precision=ms".into(), vec![("Authorization", basic("root", ADMIN))]),
        (format!("/write?db=h&precision=ms&u=root&p={ADMIN}"), vec![]),
        ("/write?db=h&precision=ms".into(), vec![("Authorization", format!("Token root:{ADMIN}"))]),
        ("/write?db=h&precision=ms".into(), vec![("Authorization", format!("Token {DEVICE}"))]),
        ("/write?db=h&precision=ms".into(), bearer(DEVICE)),
    ];
    for (i, (path, headers)) in ok.iter().enumerate() {
        let r = write(&server, path, headers, line(i as i64).as_bytes());
        assert_eq!(r.status, 204, "case {i}: {}", r.body);
    }
    let bad: Vec<(String, Vec<(&str, String)>)> = vec![
        ("/write?db=h".into(), vec![]),
        ("/write?db=h".into(), vec![("Authorization", basic("root", "root"))]),
        ("/write?db=h&u=root&p=wrong".into(), vec![]),
        ("/api/v2/write?bucket=b".into(), vec![("Authorization", "Token nope".into())]),
    ];
    for (path, headers) in bad {
        let r = write(&server, &path, &headers, line(9).as_bytes());
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"], json!("authorization failed"));
    }
    assert_eq!(series(&server, "lp-a", "heart_rate").len(), 5);
}

#[test]
fn gzip_bodies_are_accepted_and_bounded() {
    let server = TestServer::with_config(|c| c.server.body_limit_bytes = 64 * 1024);
    let gz = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gzip");
        e.finish().expect("gzip")
    };
    let mut h = bearer(ADMIN);
    h.push(("Content-Encoding", "gzip".into()));
    let body = gz(&format!("eda,patient=lp-g value=0.25 {NOW}\n"));
    assert_eq!(write(&server, "/write?db=h&precision=ms", &h, &body).status, 204);
    assert_eq!(series(&server, "lp-g", "eda"), vec![(NOW, 0.25)]);
    // A small gzip body that inflates past the body limit is refused, not inflated.
    let bomb = gz(&format!("eda,patient=lp-g value=0.25 {NOW}\n").repeat(5000));
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(write(&server, "/write?db=h&precision=ms", &h, &bomb).status, 413);
    assert_eq!(write(&server, "/write?db=h&precision=ms", &h, b"not gzip").status, 400);
}

const PYTHON_CLIENT: &str = r#"
import sys
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

host, port, token, now = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
plain = InfluxDBClient(host, port, username="vitals", password=token, database="health")
plain.write_points(
    [{"measurement": "heart_rate", "tags": {"patient": "py-1", "device": "w1"}, "time": now - i * 1000, "fields": {"value": 60 + i}}
     for i in range(100)],
    time_precision="ms", batch_size=40)
zipped = InfluxDBClient(host, port, username="vitals", password=token, database="epi", gzip=True)
zipped.write_points(
    [{"measurement": "electro_dermal_activity",
      "tags": {"uuid": "s-%d" % i, "user": "py-2", "type": "eda", "device_adress": "AA:BB:CC"},
      "time": now - i * 250, "fields": {"value": 0.5 + i / 1000}} for i in range(8)],
    time_precision="ms")
try:
    plain.write_points([{"measurement": "heart_rate", "tags": {"patient": "py-1"}, "time": now, "fields": {"value": 999}}], time_precision="ms")
    print("no error")
except InfluxDBClientError as e:
    print("client error", e.code)
"#;

#[test]
fn the_influxdb_python_client_writes_unchanged() {
    let server = TestServer::start();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let (host, port) = addr.split_once(':').expect("host:port");
    let out = Command::new("python3")
        .args(["-c", PYTHON_CLIENT, host, port, ADMIN, &NOW.to_string()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "influxdb-python failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "client error 400", "a refused point is a client error");
    let hr = series(&server, "py-1", "heart_rate");
    assert_eq!(hr.len(), 100);
    assert_eq!(hr.last(), Some(&(NOW, 60.0)));
    let eda = series(&server, "py-2", "eda");
    assert_eq!(eda.len(), 8);
    assert_eq!(eda[0], (NOW - 7 * 250, 0.507));
}
