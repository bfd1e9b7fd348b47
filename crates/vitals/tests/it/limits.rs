//! Load limits: each class of request (writes on every way in, live streams) is capped, and
//! a slow upload cannot hold a write slot for ever.

use std::io::Write;
use std::net::TcpStream;

use serde_json::json;
use vitals_core::DurationMs;

use crate::harness::{ADMIN, NOW, TestServer, eventually};

/// Starts a request whose body never comes: it holds whatever slot its route takes.
fn stalled_upload(server: &TestServer, path: &str) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\napi-secret: {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    )
    .expect("headers");
    s
}

#[test]
fn every_way_in_shares_the_write_limit_and_a_stalled_upload_lets_go() {
    let server = TestServer::with_config(|c| {
        c.server.max_concurrent_writes = 1;
        c.server.body_idle_timeout = DurationMs(3_000);
    });
    let write = |path: &str| {
        let body = json!([{"patient": "l-1", "metric": "heart_rate", "time": NOW, "value": 60, "type": "sgv", "sgv": 100, "date": NOW}]);
        server.request(
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {ADMIN}")),
                ("api-secret", ADMIN),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        )
    };
    let slots = |server: &TestServer, load: &str| {
        let m = server.get("/metrics", Some(ADMIN)).body;
        let line = format!("vitals_slots_in_use{{load=\"{load}\"}} ");
        m.lines().find_map(|l| l.strip_prefix(&line)?.parse::<i64>().ok()).unwrap_or(-1)
    };
    let _held = stalled_upload(&server, "/api/v1/samples");
    eventually("the stalled upload holds the write slot", || slots(&server, "write") == 1);
    // While the stalled upload holds the one write slot, every way in is shed, Nightscout too.
    for path in ["/api/v1/samples", "/nightscout/l-1/api/v1/entries", "/write?db=x&precision=ms"] {
        assert_eq!(write(path).status, 503, "{path} shed");
    }
    // The stalled body times out and frees the slot.
    eventually("the slot is free again", || write("/api/v1/samples").status == 200);
}

#[test]
fn live_streams_are_capped() {
    let server = TestServer::with_config(|c| c.server.max_live_streams = 1);
    assert_eq!(
        server.ingest(&json!([{"patient": "l-2", "metric": "heart_rate", "time": NOW, "value": 60}])).status,
        200
    );
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut open = TcpStream::connect(&addr).expect("connect");
    write!(open, "GET /api/v1/patients/l-2/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n")
        .expect("request");
    eventually("the first stream holds its slot", || {
        server.get("/metrics", Some(ADMIN)).body.contains("vitals_slots_in_use{load=\"live\"} 1")
    });
    assert_eq!(server.get("/api/v1/patients/l-2/live?events=1", Some(ADMIN)).status, 503, "the second is refused");
    drop(open);
    eventually("a stream again once the first closed", || {
        server.get("/api/v1/patients/l-2/live?events=1", Some(ADMIN)).status == 200
    });
}
