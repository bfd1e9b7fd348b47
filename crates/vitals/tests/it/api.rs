//! The HTTP API through the real router: round trips against a model, every rejection,
//! limits and authentication.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vitals_core::RejectCode;
use vitals_core::time::{MS_PER_DAY, MS_PER_HOUR};

use crate::harness::{ADMIN, DEVICE, NOW, Rng, TestServer};

const PATIENTS: [&str; 3] = ["p-1", "p-2", "0b9f5c2e-6d55-4d4a-9a43-6f1f5d9e2c11"];
const DEVICES: [Option<&str>; 3] = [None, Some("w1"), Some("w2")];

type Model = BTreeMap<(String, String, Option<String>, i64), f64>;

fn gen_sample(rng: &mut Rng) -> (String, String, Option<String>, i64, f64) {
    let p = PATIENTS[rng.below(3) as usize].to_owned();
    let d = DEVICES[rng.below(3) as usize].map(str::to_owned);
    // Three days before "now", at whole seconds so that resends collide.
    let t = NOW - 3 * MS_PER_DAY + (rng.below(3 * 86_400) as i64) * 1000;
    if rng.below(2) == 0 {
        (p, "heart_rate".into(), d, t, 40.0 + rng.below(160) as f64)
    } else {
        (p, "eda".into(), d, t, rng.below(5000) as f64 / 1000.0)
    }
}

fn encode(format: u64, items: &[(String, String, Option<String>, i64, f64)]) -> (&'static str, String) {
    let json_item = |(p, m, d, t, v): &(String, String, Option<String>, i64, f64), rfc: bool| {
        let time = if rfc { json!(vitals_core::time::format_time(*t)) } else { json!(t) };
        let mut o = json!({"patient": p, "metric": m, "time": time, "value": v});
        if let Some(d) = d {
            o["device"] = json!(d);
        }
        o
    };
    match format {
        0 => ("application/json", Value::Array(items.iter().map(|i| json_item(i, false)).collect()).to_string()),
        1 => (
            "application/json",
            json!({"samples": items.iter().map(|i| json_item(i, true)).collect::<Vec<_>>()}).to_string(),
        ),
        2 => (
            "application/x-ndjson",
            items.iter().map(|i| json_item(i, false).to_string()).collect::<Vec<_>>().join("\n"),
        ),
        _ => {
            let mut s = String::from("patient,metric,time,value,unit,device\n");
            for (p, m, d, t, v) in items {
                s.push_str(&format!("{p},{m},{t},{v},,{}\n", d.as_deref().unwrap_or("")));
            }
            ("text/csv", s)
        }
    }
}

fn raw_from_model(model: &Model, p: &str, m: &str, from: i64, to: i64) -> Vec<(i64, f64, Option<String>)> {
    let mut v: Vec<(i64, f64, Option<String>)> = model
        .iter()
        .filter(|((pp, mm, _, t), _)| pp == p && mm == m && *t >= from && *t < to)
        .map(|((_, _, d, t), v)| (*t, *v, d.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
    v
}

fn points(resp: &Value) -> Vec<Value> {
    resp["points"].as_array().cloned().unwrap_or_default()
}

#[test]
fn round_trip_through_the_server_matches_a_naive_model() {
    let server = TestServer::start();
    let mut rng = Rng::new(42);
    let mut model = Model::new();
    for batch in 0..16u64 {
        let items: Vec<_> = (0..400).map(|_| gen_sample(&mut rng)).collect();
        // Resend part of an earlier batch with new values: last write wins.
        for (p, m, d, t, v) in &items {
            model.insert((p.clone(), m.clone(), d.clone(), *t), *v);
        }
        let (ct, body) = encode(batch % 4, &items);
        let r = server.post("/api/v1/samples", Some(ADMIN), ct, body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["accepted"], json!(400), "{}", r.body);
        if batch == 7 {
            server.store.flush().expect("flush");
        }
        if batch == 11 {
            server.store.flush().expect("flush");
            server.store.compact().expect("compact");
        }
    }
    for p in PATIENTS {
        for m in ["heart_rate", "eda"] {
            let (from, to) = (NOW - 3 * MS_PER_DAY, NOW);
            let r = server.get(
                &format!("/api/v1/patients/{p}/series/{m}?from={from}&to={to}&include=device&time_format=ms"),
                Some(ADMIN),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let body = r.json();
            assert_eq!((body["patient"].as_str(), body["metric"].as_str()), (Some(p), Some(m)));
            let got: Vec<(i64, f64, Option<String>)> = points(&body)
                .iter()
                .map(|x| {
                    (
                        x["time"].as_i64().expect("t"),
                        x["value"].as_f64().expect("v"),
                        x["device"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            assert_eq!(got, raw_from_model(&model, p, m, from, to), "{p} {m} raw");

            // Buckets: hourly over a ragged range, daily over whole days (rollup path).
            for (every, from, to) in [
                (MS_PER_HOUR, from + 123_456, to - 7_000),
                (MS_PER_DAY, from - from % MS_PER_DAY, to - to % MS_PER_DAY + MS_PER_DAY),
            ] {
                let r = server.get(
                    &format!("/api/v1/patients/{p}/series/{m}?from={from}&to={to}&every={}ms&agg=mean,min,max,count,sum&time_format=ms", every),
                    Some(ADMIN),
                );
                assert_eq!(r.status, 200, "{}", r.body);
                let mut want: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for (t, v, _) in raw_from_model(&model, p, m, from, to) {
                    want.entry(t - t.rem_euclid(every)).or_default().push(v);
                }
                let got = points(&r.json());
                assert_eq!(got.len(), want.len(), "{p} {m} every {every}");
                for (g, (bt, vs)) in got.iter().zip(&want) {
                    let sum: f64 = vs.iter().sum();
                    assert_eq!(g["time"].as_i64(), Some(*bt));
                    assert_eq!(g["count"].as_f64(), Some(vs.len() as f64));
                    assert!((g["sum"].as_f64().expect("sum") - sum).abs() < 1e-6);
                    assert!((g["mean"].as_f64().expect("mean") - sum / vs.len() as f64).abs() < 1e-6);
                    assert_eq!(g["min"].as_f64(), vs.iter().copied().reduce(f64::min));
                    assert_eq!(g["max"].as_f64(), vs.iter().copied().reduce(f64::max));
                }
            }
        }
    }
    // CSV answers carry the same points.
    let r = server.get_accept(
        &format!("/api/v1/patients/p-1/series/heart_rate?from={}&to={NOW}", NOW - 3 * MS_PER_DAY),
        Some(ADMIN),
        "text/csv",
    );
    assert_eq!(r.status, 200);
    assert!(r.content_type.as_deref().unwrap_or("").starts_with("text/csv"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], "time,value");
    assert_eq!(lines.len() - 1, raw_from_model(&model, "p-1", "heart_rate", NOW - 3 * MS_PER_DAY, NOW).len());

    // Patients and latest values.
    let r = server.get("/api/v1/patients", Some(ADMIN)).json();
    let listed: Vec<&str> =
        r["patients"].as_array().expect("list").iter().filter_map(|p| p["patient"].as_str()).collect();
    let mut want: Vec<&str> = PATIENTS.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let latest = server.get("/api/v1/patients/p-2/latest", Some(ADMIN)).json();
    for entry in latest["metrics"].as_array().expect("metrics") {
        let m = entry["metric"].as_str().expect("metric");
        let newest = raw_from_model(&model, "p-2", m, 0, i64::MAX).into_iter().max_by_key(|x| x.0).expect("data");
        assert_eq!(entry["time"].as_str(), Some(vitals_core::time::format_time(newest.0).as_str()));
    }
}

#[test]
fn every_rejection_code_is_reported_per_item_and_good_items_are_kept() {
    let server = TestServer::start();
    let ok = json!({"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 70});
    let with = |k: &str, v: Value| {
        let mut o = ok.clone();
        o[k] = v;
        o
    };
    let without = |k: &str| {
        let mut o = ok.clone();
        o.as_object_mut().expect("object").remove(k);
        o
    };
    let cases: Vec<(Value, RejectCode)> = vec![
        (json!(17), RejectCode::Malformed),
        (without("metric"), RejectCode::MissingField),
        (with("value", json!("70")), RejectCode::InvalidField),
        (with("patient", json!("a/b")), RejectCode::InvalidPatient),
        (with("device", json!("dev ice")), RejectCode::InvalidDevice),
        (with("id", json!("x".repeat(65))), RejectCode::InvalidSampleId),
        (with("metric", json!("heart_beat")), RejectCode::UnknownMetric),
        (with("unit", json!("furlongs")), RejectCode::UnknownUnit),
        (with("time", json!("yesterday")), RejectCode::InvalidTime),
        (with("time", json!(NOW + 2 * MS_PER_HOUR)), RejectCode::TimeInFuture),
        (with("value", json!(400)), RejectCode::ValueOutOfRange),
    ];
    // time_too_old needs a max age and value_not_finite a format that can spell NaN (JSON
    // cannot): both are checked below.
    let mut body: Vec<Value> = vec![ok.clone()];
    body.extend(cases.iter().map(|c| c.0.clone()));
    body.push(with("time", json!(NOW - 1000)));
    let text = Value::Array(body).to_string();
    let r = server.post("/api/v1/samples", Some(ADMIN), "application/json", text.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["accepted"], json!(2), "{}", r.body);
    let rejected = v["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), cases.len(), "{}", r.body);
    for (i, (r, (_, code))) in rejected.iter().zip(&cases).enumerate() {
        assert_eq!(r["index"], json!(i + 1), "{r}");
        assert_eq!(r["code"], json!(code.as_str()), "{r}");
        assert!(!r["message"].as_str().unwrap_or("").is_empty());
    }
    let old = TestServer::with_config(|c| c.ingest.max_age = Some(vitals_core::DurationMs(MS_PER_DAY)));
    let r = old.ingest(&json!([with("time", json!(NOW - 2 * MS_PER_DAY))])).json();
    assert_eq!(r["rejected"][0]["code"], json!("time_too_old"));
    let csv = format!("p-1,heart_rate,{NOW},NaN\np-1,heart_rate,{NOW},inf\n");
    let r = server.post("/api/v1/samples", Some(ADMIN), "text/csv", csv.as_bytes()).json();
    assert_eq!(r["rejected"][0]["code"], json!("value_not_finite"), "{r}");
    assert_eq!(r["rejected"][1]["code"], json!("value_not_finite"), "{r}");
    // A token bound to one patient writes only that patient's samples.
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"w","role":"device","patient":"p-1"}"#,
    );
    let bound = r.json()["token"].as_str().expect("token").to_owned();
    let two = json!([ok.clone(), with("patient", json!("p-2"))]).to_string();
    let r = server.post("/api/v1/samples", Some(&bound), "application/json", two.as_bytes()).json();
    assert_eq!(r["accepted"], json!(1), "{r}");
    assert_eq!(
        (r["rejected"][0]["index"].clone(), r["rejected"][0]["code"].clone()),
        (json!(1), json!("patient_not_allowed"))
    );
    let lp = format!("heart_rate,patient=p-2 value=70 {NOW}");
    let r = server.post("/write?db=x&precision=ms", Some(&bound), "text/plain", lp.as_bytes());
    assert!(r.json()["error"].as_str().unwrap_or("").contains("patient_not_allowed"), "{}", r.body);
    let covered: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.1.as_str()).chain(["time_too_old", "value_not_finite", "patient_not_allowed"]).collect();
    for code in RejectCode::ALL {
        assert!(covered.contains(code.as_str()), "no case for {code}");
    }
    // Rejections are counted in /metrics by code.
    let m = server.get("/metrics", Some(ADMIN)).body;
    assert!(m.contains("vitals_rejected_samples_total{code=\"unknown_metric\"} 1"), "{m}");
    assert!(m.contains("vitals_ingested_samples_total 3"), "{m}");
}

#[test]
fn unparseable_bodies_get_400_that_says_where() {
    let server = TestServer::start();
    let cases: [(&str, &[u8], &str); 3] = [
        ("application/json", b"[{\"patient\": \"p\",\n  \"metric\": }]", "line 2"),
        ("application/json", b"{\"rows\": []}", "\"samples\""),
        ("text/csv", b"p-1,heart_rate,1,\xff\n", "UTF-8"),
    ];
    for (ct, body, want) in cases {
        let body_text = String::from_utf8_lossy(body);
        let r = server.post("/api/v1/samples", Some(ADMIN), ct, body);
        assert_eq!(r.status, 400, "{body_text}: {}", r.body);
        let v = r.json();
        assert_eq!(v["code"], json!("invalid_body"));
        assert!(v["message"].as_str().unwrap_or("").contains(want), "{}", r.body);
    }
}

#[test]
fn oversized_bodies_get_413() {
    let server = TestServer::with_config(|c| c.server.body_limit_bytes = 4096);
    let big = format!("[{}]", vec![r#"{"patient":"p-1","metric":"heart_rate","time":1,"value":70}"#; 100].join(","));
    let r = server.post("/api/v1/samples", Some(ADMIN), "application/json", big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["code"], json!("payload_too_large"));
}

#[test]
fn a_full_write_path_answers_503_with_retry_after() {
    let server = TestServer::with_config(|c| {
        c.storage.flush_max_samples = 5;
        c.storage.max_buffered_samples = 10;
    });
    let batch = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"patient": "p-1", "metric": "heart_rate", "time": NOW - i as i64 * 1000, "value": 70}))
                .collect(),
        )
    };
    assert_eq!(server.ingest(&batch(8)).status, 200);
    let r = server.ingest(&batch(8));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(r.json()["code"], json!("overloaded"));
    // Once the buffer is flushed, writes go through again.
    server.store.flush().expect("flush");
    assert_eq!(server.ingest(&batch(8)).status, 200);
}

#[test]
fn every_route_but_healthz_needs_a_token_and_device_tokens_only_write() {
    let server = TestServer::start();
    let sample = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 70}]).to_string();
    let reads = [
        "/metrics",
        "/api/v1/patients",
        "/api/v1/metrics",
        "/api/v1/patients/p-1/latest",
        "/api/v1/patients/p-1/series/heart_rate",
        "/api/v1/tokens",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/notifications",
        "/api/v1/cohorts",
    ];
    assert_eq!(server.get("/healthz", None).status, 200);
    for path in reads {
        let r = server.get(path, None);
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.json()["code"], json!("unauthorized"));
        assert_eq!(server.get(path, Some("vt_wrong")).status, 401, "{path} with a wrong token");
        assert_eq!(server.get(path, Some(DEVICE)).status, 403, "{path} with a device token");
    }
    let r = server.post("/api/v1/samples", None, "application/json", sample.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.connection.as_deref(), Some("close"), "a refused body is never read: the connection ends");
    assert_eq!(server.post("/api/v1/samples", Some("vt_wrong"), "application/json", sample.as_bytes()).status, 401);
    assert_eq!(server.post("/api/v1/samples", Some(DEVICE), "application/json", sample.as_bytes()).status, 200);
    for path in reads {
        assert_eq!(server.get(path, Some(ADMIN)).status, 200, "{path} as admin");
    }
    // A token created through the API works at once; revoked, it stops at once.
    let r = server.post("/api/v1/tokens", Some(ADMIN), "application/json", br#"{"name":"ci","role":"device"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let secret = created["token"].as_str().expect("token").to_owned();
    assert_eq!(server.post("/api/v1/samples", Some(&secret), "application/json", sample.as_bytes()).status, 200);
    let listing = server.get("/api/v1/tokens", Some(ADMIN)).body;
    assert!(!listing.contains(&secret), "secrets are never listed");
    let id = created["id"].as_str().expect("id");
    let del = crate::harness::agent()
        .delete(&format!("{}/api/v1/tokens/{id}", server.url))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("delete");
    assert_eq!(del.status().as_u16(), 204);
    assert_eq!(server.post("/api/v1/samples", Some(&secret), "application/json", sample.as_bytes()).status, 401);
}

#[test]
fn query_errors_have_stable_codes() {
    let server = TestServer::start();
    assert_eq!(
        server.ingest(&json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 70}])).status,
        200
    );
    let cases = [
        ("/api/v1/patients/p-1/series/heart_beat", 404, "unknown_metric"),
        ("/api/v1/patients/p-9/series/heart_rate", 404, "unknown_patient"),
        ("/api/v1/patients/p%20x/series/heart_rate", 400, "invalid_patient"),
        ("/api/v1/patients/p-1/series/heart_rate?from=tomorrow", 400, "invalid_query"),
        ("/api/v1/patients/p-1/series/heart_rate?from=10&to=5", 400, "invalid_query"),
        ("/api/v1/patients/p-1/series/heart_rate?every=1h&agg=median", 400, "invalid_query"),
        ("/api/v1/patients/p-1/series/heart_rate?agg=mean", 400, "invalid_query"),
        ("/api/v1/patients/p-1/series/heart_rate?every=1ms&from=0", 400, "too_many_points"),
        ("/api/v1/nothing", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = server.get(path, Some(ADMIN));
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.json()["code"], json!(code), "{path}");
    }
}

#[test]
fn write_requests_beyond_the_concurrency_limit_are_shed_before_their_body_is_read() {
    use std::io::{Read, Write};
    let server = TestServer::with_config(|c| c.server.max_concurrent_writes = 1);
    let body = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 70}]).to_string();
    // A slow client: headers sent, body withheld, so its request holds the only permit.
    let addr = server.url.trim_start_matches("http://").to_owned();
    let slow_client = || {
        let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            slow,
            "POST /api/v1/samples HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("headers");
        slow
    };
    // Did the slow request get an answer already (it lost the race for the permit to one of
    // ours and was shed itself)?
    let answered = |s: &std::net::TcpStream| {
        s.set_nonblocking(true).expect("nonblocking");
        let got = matches!(s.peek(&mut [0u8; 1]), Ok(n) if n > 0);
        s.set_nonblocking(false).expect("blocking");
        got
    };
    let mut slow = slow_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = server.ingest(&json!([]));
        if r.status == 503 {
            assert_eq!(r.json()["code"], json!("overloaded"));
            assert_eq!(r.retry_after.as_deref(), Some("1"));
            break;
        }
        if answered(&slow) {
            slow = slow_client();
        }
        assert!(std::time::Instant::now() < deadline, "the second write was never shed");
    }
    slow.write_all(body.as_bytes()).expect("body");
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).expect("answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    drop(slow);
    assert_eq!(server.ingest(&json!([])).status, 200, "the permit is released");
}

#[test]
fn extreme_times_are_refused_or_clamped_and_never_overflow() {
    let server = TestServer::start();
    assert_eq!(
        server.ingest(&json!([{"patient": "x-1", "metric": "heart_rate", "time": NOW, "value": 60}])).status,
        200
    );
    let (min, max) = (i64::MIN.to_string(), i64::MAX.to_string());
    // (path, status)
    let cases = [
        (format!("/api/v1/patients/x-1/series/heart_rate?from={min}&to={max}"), 400),
        (format!("/api/v1/patients/x-1/series/heart_rate?to={max}"), 400),
        ("/api/v1/patients/x-1/series/heart_rate?from=0&to=253402300799999&every=1ms".to_owned(), 400),
        (format!("/api/v1/patients/x-1/chart?metrics=heart_rate&from={min}&to={max}"), 400),
        (format!("/api/v1/patients/x-1/chart?metrics=heart_rate&from=0&to={max}"), 400),
        (format!("/api/v1/alerts?from={min}&to={max}"), 400),
        ("/nightscout/x-1/api/v1/entries.json?find[date][$lte]=1e300&find[date][$gt]=-1e300".to_owned(), 200),
        ("/api/v1/patients/x-1/series/heart_rate?from=0&to=253402300799999".to_owned(), 200),
    ];
    for (path, status) in cases {
        let r = server.get(&path, Some(ADMIN));
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    assert_eq!(server.get("/healthz", None).status, 200, "still serving");
}

/// Every schema object of a document (the values of its `schema` keys and what they nest).
fn schemas<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "schema" {
                    out.push(x);
                }
                schemas(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| schemas(x, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_describes_every_route_of_the_router() {
    let server = TestServer::start();
    assert_eq!(server.get("/api/v1/openapi.json", None).status, 401, "credentials needed");
    let r = server.get("/api/v1/openapi.json", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let routes = server.app_routes();
    assert_eq!(vitals_server::api::openapi::undescribed(&routes), Vec::<String>::new());
    for route in &routes {
        let method = route.method.as_str().to_lowercase();
        let op = &doc["paths"][&route.path][&method];
        assert!(op.is_object(), "{} {} is not in the document", route.method, route.path);
        assert!(!op["security"].as_array().expect("security").is_empty(), "{} {}", route.method, route.path);
        for (code, _) in [("401", ()), ("403", ()), ("503", ()), ("507", ())] {
            assert!(op["responses"][code].is_object(), "{} {} does not document {code}", route.method, route.path);
        }
        // Path parameters are declared, one for each `{name}`.
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let in_path: Vec<&str> =
            route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, in_path, "{} {}", route.method, route.path);
    }
    let n: usize = doc["paths"].as_object().expect("paths").values().map(|p| p.as_object().expect("item").len()).sum();
    assert_eq!(n, routes.len(), "the document has exactly the router's operations");
    // No schema was lost on the way (a literal that did not parse would be an empty one).
    let mut all = Vec::new();
    schemas(&doc, &mut all);
    assert!(all.len() > 100, "{} schemas", all.len());
    assert!(all.iter().all(|s| s.as_object().is_some_and(|o| !o.is_empty())), "an empty schema");
    assert!(doc["components"]["schemas"]["Error"]["required"].is_array());
}
