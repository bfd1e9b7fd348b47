//! Cluster mode with real engines on 127.0.0.1: a three-node NATS JetStream cluster (started
//! here), PostgreSQL (started by scripts/test, `VITALS_TEST_POSTGRES`) and two `vitals serve`
//! processes. Clients write to both nodes; a Vitals node and a NATS server are killed with
//! SIGKILL mid-stream; then every acknowledged sample must be in the survivor's queries
//! exactly once, the survivor must own every bucket, and a node started afresh (an empty
//! data directory) must catch up to the same answer. A patient of the killed node's buckets
//! is in an alert episode across the kill: the episode is one alert on every node, and its
//! notice reaches the webhook (at least once, one idempotency key). Events travel on the
//! log to every node, identities are the cluster's (one vault in PostgreSQL), an erasure
//! asked of one node reaches every node through the log, and a stray message in the
//! stream is kept aside as a dead letter. The lake is shared on object storage (moto's S3
//! server): the settled days are uploaded by their patients' writers, the other nodes
//! adopt them and keep no copy of their own, and every node answers from the bucket.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use vitals_jetstream::testing::NatsCluster;

use crate::bucket::{S3, python, start_moto};
use crate::crash::{Running, chrono_now_ms, spawn_server};
use crate::harness::{ADMIN, Capture, agent, eventually, into_resp};

const CLIENTS: u64 = 4;
const BATCH: u64 = 200;
const TTL: &str = "2s";

fn postgres_url() -> String {
    std::env::var("VITALS_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("VITALS_TEST_POSTGRES is not set: run the tests with ./scripts/test, which starts PostgreSQL")
    })
}

/// `vitals serve` as node `name` of the cluster (`config`: the same file for every node).
fn node(name: &str, data: &Path, nats: &NatsCluster, schema: &str, key: &Path, config: &Path) -> Running {
    let urls = nats.urls().iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(",");
    let pg = postgres_url();
    let key = key.display().to_string();
    let config = config.display().to_string();
    spawn_server(
        data,
        &[
            ("VITALS_CLUSTER_ENABLED", "true"),
            ("VITALS_CLUSTER_NODE", name),
            ("VITALS_CLUSTER_NATS", &format!("[{urls}]")),
            ("VITALS_CLUSTER_POSTGRES", &pg),
            ("VITALS_CLUSTER_SCHEMA", schema),
            ("VITALS_CLUSTER_STREAM", &schema.to_uppercase()),
            ("VITALS_CLUSTER_LEASE_TTL", TTL),
            ("VITALS_AUTH_AUDIT_KEY_FILE", &key),
            ("VITALS_VAULT_KEY", "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            ("VITALS_CONFIG", &config),
        ],
    )
}

/// Parquet files of the loaded patients (`c0`, `c1`...) in a node's local lake.
fn local_files_of_clients(data: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![data.join("lake")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && p.to_string_lossy().contains("/patient=c") {
                n += 1;
            }
        }
    }
    n
}

/// A webhook notice's kind and patient.
fn notice_of(r: &crate::harness::Captured) -> (String, String) {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    (body["kind"].as_str().unwrap_or("").to_owned(), body["alert"]["patient"].as_str().unwrap_or("").to_owned())
}

fn get(url: &str, path: &str) -> (u16, Value) {
    let r = into_resp(
        agent()
            .get(&format!("{url}{path}"))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .expect("request"),
    );
    let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn owned(url: &str) -> usize {
    let (_, h) = get(url, "/healthz");
    h["cluster"]["owned_buckets"].as_array().map_or(0, Vec::len)
}

/// Every point of `patient` in [from, to) on node `url`, a day at a time.
fn stored(url: &str, patient: &str, from: i64, to: i64) -> Result<Vec<(i64, f64)>, String> {
    let mut out = Vec::new();
    for start in (from..to).step_by(86_400_000) {
        let end = (start + 86_400_000).min(to);
        let (status, body) =
            get(url, &format!("/api/v1/patients/{patient}/series/heart_rate?time_format=ms&from={start}&to={end}"));
        if status != 200 {
            return Err(format!("{patient}: {status} {body}"));
        }
        out.extend(
            body["points"]
                .as_array()
                .expect("points")
                .iter()
                .map(|p| (p["time"].as_i64().expect("t"), p["value"].as_f64().expect("v"))),
        );
    }
    Ok(out)
}

fn post_readings(url: &str, patient: &str, readings: &[(i64, f64)]) {
    let body: Vec<Value> = readings
        .iter()
        .map(|(t, v)| json!({"patient": patient, "metric": "heart_rate", "time": t, "value": v}))
        .collect();
    let r = into_resp(
        agent()
            .post(&format!("{url}/api/v1/samples"))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(Value::Array(body).to_string().as_bytes())
            .expect("post"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Whether node `url` holds every acknowledged sample exactly once (and says what is wrong).
fn check(url: &str, acked: &BTreeMap<(String, i64), f64>, from: i64, to: i64) -> Result<(), String> {
    for c in 0..CLIENTS {
        let patient = format!("c{c}");
        let mut seen = BTreeMap::new();
        for (t, v) in stored(url, &patient, from, to)? {
            if seen.insert(t, v).is_some() {
                return Err(format!("{patient}: time {t} stored twice"));
            }
        }
        for ((p, t), v) in acked.iter().filter(|((p, _), _)| *p == patient) {
            if seen.get(t) != Some(v) {
                return Err(format!("{p}: acknowledged sample at {t} missing"));
            }
        }
    }
    Ok(())
}

/// Waits (with a deadline) until `cond` holds; on failure says why, and the node's health.
fn settles(what: &str, url: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match cond() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}; {}", get(url, "/healthz").1),
            Err(_) => {
                #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn acknowledged_samples_survive_a_vitals_node_and_a_nats_server_killed_and_buckets_move() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nats = NatsCluster::start(dir.path().join("nats"), 3);
    let schema = format!("cl{}", std::process::id());
    let key = dir.path().join("audit.key");
    let hook = Capture::start();
    let moto = start_moto();
    python(S3, &[&moto.port.to_string(), "create", "cluster-lake"]);
    let config = dir.path().join("vitals.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\n[[alerting.rules]]\nname = \"tachycardia\"\nexpr = \"heart_rate > 185\"\nseverity = \"urgent\"\nrenotify = \"1s\"\n\
             [notify]\nretry_backoff = \"1s\"\nretry_max_backoff = \"1s\"\nmax_attempts = 1000\n\
             [[notify.contacts]]\nname = \"ward\"\nwebhook = \"{}/h\"\n\
             [[notify.subscriptions]]\ncontacts = [\"ward\"]\n\
             [storage]\nflush_interval = \"1s\"\n\
             [file_drop]\nenabled = true\npoll_interval = \"100ms\"\n\
             [lake]\nurl = \"s3://cluster-lake/vitals\"\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = true\n\
             region = \"us-east-1\"\nhot_days = 0\nupload_after = \"1ms\"\ntier_interval = \"300ms\"\n\
             [lake.options]\naws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\n",
            hook.url, moto.port
        ),
    )
    .expect("config");
    let a = node("a", &dir.path().join("a"), &nats, &schema, &key, &config);
    let b = node("b", &dir.path().join("b"), &nats, &schema, &key, &config);
    eventually("the two nodes to share the 64 buckets", || owned(&a.url) + owned(&b.url) == 64 && owned(&b.url) > 0);
    // A patient whose bucket a owns goes into an alert episode before a dies.
    let of_a: Vec<u64> = get(&a.url, "/healthz").1["cluster"]["owned_buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let alerted = (0..)
        .map(|i| format!("pa-{i}"))
        .find(|p| {
            let id = vitals_core::PatientId::new(p).expect("id");
            of_a.contains(&u64::from(vitals_jetstream::bucket_of(&id, 64)))
        })
        .expect("a patient of a's buckets");
    let now = chrono_now_ms();
    post_readings(&b.url, &alerted, &[(now - 30_000, 200.0), (now - 20_000, 205.0)]);
    eventually("the alert's notice at the webhook", || !hook.requests().is_empty());

    let base = chrono_now_ms() - 10 * 86_400_000;
    let next_time = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<BTreeMap<(String, i64), f64>>> = Arc::default();
    let a_alive = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (urls, a_alive, stop, acked, next_time, batches) = (
            [a.url.clone(), b.url.clone()],
            a_alive.clone(),
            stop.clone(),
            acked.clone(),
            next_time.clone(),
            batches.clone(),
        );
        clients.push(std::thread::spawn(move || {
            let agent = agent();
            let patient = format!("c{c}");
            let mut turn = c as usize;
            while !stop.load(Ordering::SeqCst) {
                // Each client alternates between the nodes, and uses only b once a is gone.
                turn += 1;
                let url = if a_alive.load(Ordering::SeqCst) { &urls[turn % 2] } else { &urls[1] };
                let first = next_time.fetch_add(BATCH, Ordering::SeqCst);
                let items: Vec<(i64, f64)> =
                    (first..first + BATCH).map(|k| (base + k as i64 * 100, 40.0 + (k % 100) as f64)).collect();
                let body = Value::Array(
                    items
                        .iter()
                        .map(|(t, v)| json!({"patient": patient, "metric": "heart_rate", "time": t, "value": v}))
                        .collect(),
                );
                let sent = agent
                    .post(&format!("{url}/api/v1/samples"))
                    .header("Authorization", &format!("Bearer {ADMIN}"))
                    .header("Content-Type", "application/json")
                    .send(body.to_string().as_bytes());
                if let Ok(r) = sent.map(into_resp)
                    && r.status == 200
                {
                    assert_eq!(r.json()["accepted"], BATCH, "{}", r.body);
                    let mut acked = acked.lock().expect("lock");
                    acked.extend(items.iter().map(|(t, v)| ((patient.clone(), *t), *v)));
                    batches.fetch_add(1, Ordering::SeqCst);
                }
                // Anything else promises nothing: the client goes on with the next batch.
            }
        }));
    }
    eventually("writes acknowledged by both nodes", || batches.load(Ordering::SeqCst) >= 40);
    // SIGKILL a Vitals node and a NATS server while the clients write.
    let mut a = a;
    a_alive.store(false, Ordering::SeqCst);
    a.child.kill().expect("kill -9 a");
    a.child.wait().expect("reap a");
    let killed = Instant::now();
    nats.kill(0);
    let before = batches.load(Ordering::SeqCst);
    eventually("writes acknowledged after the kills", || batches.load(Ordering::SeqCst) >= before + 40);
    // The episode goes on, now evaluated by the survivor.
    post_readings(&b.url, &alerted, &[(now - 10_000, 210.0), (now, 208.0)]);
    // b owns a's buckets once their leases run out.
    eventually("the survivor to own every bucket", || owned(&b.url) == 64);
    let moved = killed.elapsed();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    let end = base + next_time.load(Ordering::SeqCst) as i64 * 100 + 1;
    settles("every acknowledged sample on the survivor, exactly once", &b.url, || check(&b.url, &acked, base, end));
    // Another way in (the InfluxDB line protocol) goes through the same log.
    let lp = into_resp(
        agent()
            .post(&format!("{}/write?db=health&precision=ms", b.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .send(format!("heart_rate,patient=lp-1,device=w1 value=72 {}\n", now - 5_000).as_bytes())
            .expect("line protocol"),
    );
    assert_eq!(lp.status, 204, "{}", lp.body);
    // Events (a Nightscout treatment) go through the log too, to every node's event store.
    let treatment = json!([{"eventType": "Meal Bolus", "date": now - 60_000, "carbs": 45}]);
    let ns = into_resp(
        agent()
            .post(&format!("{}/nightscout/ev-1/api/v1/treatments", b.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(treatment.to_string().as_bytes())
            .expect("treatments"),
    );
    assert_eq!(ns.status, 200, "{}", ns.body);
    // So do documents (a loop's device status, kept whole on every node's disk).
    let status = json!({"device": "loop://iPhone", "date": now - 30_000, "loop": {"iob": {"iob": 1.35}}});
    let ds = into_resp(
        agent()
            .post(&format!("{}/nightscout/ev-1/api/v1/devicestatus", b.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(status.to_string().as_bytes())
            .expect("devicestatus"),
    );
    assert_eq!(ds.status, 200, "{}", ds.body);
    // The identity vault is the cluster's: written on one node, read on another.
    let put = into_resp(
        agent()
            .put(&format!("{}/api/v1/patients/ev-1/identity", b.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(json!({"name": "Annika Lindqvist", "date_of_birth": "1984-03-09"}).to_string().as_bytes())
            .expect("identity"),
    );
    assert!(put.status == 200 || put.status == 204, "{} {}", put.status, put.body);
    // A message this build cannot read (another build's, a stray client's) is kept aside as
    // a dead letter on each node, and does not stop it reading on.
    let live: Vec<String> = nats.urls()[1..].to_vec();
    let stray = vitals_jetstream::testing::publish_raw(&live, "vitals.samples.7", b"{\"not\": \"a vitals message\"}");
    // A new node with an empty data directory catches up from the log.
    let c = node("c", &dir.path().join("c"), &nats, &schema, &key, &config);
    settles("every acknowledged sample on a new node, exactly once", &c.url, || check(&c.url, &acked, base, end));
    // The shared lake: the loaded days are settled (ten days old), uploaded once by their
    // patients' writers and adopted by the other nodes, which keep no copy of their own;
    // then every node answers from the bucket, still exactly once.
    let lake_stat = |url: &str, what: &str| get(url, "/api/v1/system").1[what].as_u64().unwrap_or(0);
    settles("the loaded days adopted, and only in the bucket", &c.url, || {
        let adopted = lake_stat(&b.url, "lake_adopted") + lake_stat(&c.url, "lake_adopted");
        let published = lake_stat(&b.url, "lake_published") + lake_stat(&c.url, "lake_published");
        let local = ["b", "c"].map(|n| local_files_of_clients(&dir.path().join(n)));
        if adopted > 0 && published > 0 && local == [0, 0] {
            Ok(())
        } else {
            Err(format!(
                "adopted {adopted}, published {published}, loaded patients' files on b and c's disks {local:?}"
            ))
        }
    });
    for url in [&b.url, &c.url] {
        check(url, &acked, base, end).expect("every acknowledged sample, read from the bucket");
    }
    let objects = python(S3, &[&moto.port.to_string(), "list", "cluster-lake"]);
    let keys: Vec<&String> = objects.as_object().expect("objects").keys().collect();
    for client in 0..CLIENTS {
        assert!(
            keys.iter().any(|k| k.contains(&format!("/patient=c{client}/")) && k.contains("/part-")),
            "c{client}'s days in the bucket: {keys:?}"
        );
    }
    settles("the line protocol's sample on the new node", &c.url, || {
        let points = stored(&c.url, "lp-1", now - 60_000, now + 1)?;
        if points == [(now - 5_000, 72.0)] { Ok(()) } else { Err(format!("{points:?}")) }
    });
    for url in [&b.url, &c.url] {
        let (status, identity) = get(url, "/api/v1/patients/ev-1/identity");
        assert_eq!((status, &identity["identity"]["name"]), (200, &json!("Annika Lindqvist")), "{identity}");
        settles("the treatment, and the stray message kept aside, on every node", url, || {
            let (_, ev) = get(url, "/api/v1/patients/ev-1/events?kind=treatment");
            if ev["events"][0]["attributes"]["carbs"] != json!(45) {
                return Err(ev.to_string());
            }
            let (_, ds) = get(url, "/nightscout/ev-1/api/v1/devicestatus.json");
            if ds[0]["loop"]["iob"]["iob"] != json!(1.35) {
                return Err(ds.to_string());
            }
            let (_, dead) = get(url, "/api/v1/dead-letters");
            let kept = dead["dead_letters"].as_array().cloned().unwrap_or_default();
            if kept.iter().any(|d| d["source"] == "cluster/log" && d["context"]["position"] == json!(stray.to_string()))
            {
                Ok(())
            } else {
                Err(dead.to_string())
            }
        });
    }
    // A file dropped on one node goes through the log to every node; the same content
    // dropped on another node is a duplicate there (the ledger is the cluster's).
    let csv = format!(
        "patient,metric,time,value,unit,device\nfd-1,blood_glucose,{},101,mg/dL,cgm\nfd-1,blood_glucose,{},103,mg/dL,cgm\n",
        vitals_core::time::format_time(now - 600_000),
        vitals_core::time::format_time(now - 300_000)
    );
    crate::file_drop::drop_file(&dir.path().join("b/drop/inbox"), "readings.csv", csv.as_bytes());
    settles("the dropped file's readings on the other node", &c.url, || {
        let series =
            format!("/api/v1/patients/fd-1/series/blood_glucose?time_format=ms&from={}&to={}", now - 3_600_000, now);
        let n = get(&c.url, &series).1["points"].as_array().map_or(0, Vec::len);
        if n == 2 { Ok(()) } else { Err(format!("{n} readings")) }
    });
    // Every node's device telemetry hears the file's device through the log (the node it
    // was dropped on too: its pipeline writes to the log, its tail to its store).
    for url in [&b.url, &c.url] {
        settles("the device heard on every node", url, || {
            let (_, d) = get(url, "/api/v1/patients/fd-1/devices");
            let devices: Vec<(String, Value)> = d["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| (x["device"].as_str().unwrap_or("").to_owned(), x["readings"].clone()))
                .collect();
            if devices == [("cgm".to_owned(), json!(2))] { Ok(()) } else { Err(d.to_string()) }
        });
    }
    crate::file_drop::drop_file(&dir.path().join("c/drop/inbox"), "again.csv", csv.as_bytes());
    settles("the same content dropped on another node, a duplicate", &c.url, || {
        let (_, ledger) = get(&c.url, "/api/v1/file-drop");
        let statuses: Vec<(String, String)> = ledger["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["name"].as_str().unwrap_or("").to_owned(), e["status"].as_str().unwrap_or("").to_owned()))
            .collect();
        let want =
            [("again.csv".to_owned(), "duplicate".to_owned()), ("readings.csv".to_owned(), "processed".to_owned())];
        if statuses == want { Ok(()) } else { Err(format!("{statuses:?}")) }
    });
    // An erasure asked of one node reaches every node's data, through the log.
    for patient in ["ev-1", "lp-1"] {
        let erased = into_resp(
            agent()
                .delete(&format!("{}/api/v1/patients/{patient}", c.url))
                .header("Authorization", &format!("Bearer {ADMIN}"))
                .call()
                .expect("erase"),
        );
        assert_eq!(erased.status, 200, "{}", erased.body);
    }
    for url in [&b.url, &c.url] {
        settles("the erased patients gone from every node", url, || {
            let (_, ev) = get(url, "/api/v1/patients/ev-1/events?kind=treatment");
            let series =
                format!("/api/v1/patients/lp-1/series/heart_rate?time_format=ms&from={}&to={}", now - 60_000, now + 1);
            let (_, points) = get(url, &series);
            let (_, ds) = get(url, "/nightscout/ev-1/api/v1/devicestatus.json");
            let events = ev["events"].as_array().map_or(0, Vec::len) + ds.as_array().map_or(1, Vec::len);
            let points_left = points["points"].as_array().map_or(0, Vec::len);
            if events == 0 && points_left == 0 { Ok(()) } else { Err(format!("{ev} {ds} {points}")) }
        });
        assert_eq!(get(url, "/api/v1/patients/ev-1/identity").0, 404, "the shared vault forgot them");
    }
    eventually("the new node to take its share", || owned(&c.url) > 0 && owned(&b.url) + owned(&c.url) == 64);
    let metrics = into_resp(
        agent()
            .get(&format!("{}/metrics", c.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .expect("metrics"),
    );
    assert!(metrics.body.contains("vitals_cluster_owned_buckets"), "{}", metrics.body);
    // One episode, one alert, on every node; its notice delivered, with one key.
    for url in [&b.url, &c.url] {
        let (status, body) = get(url, &format!("/api/v1/alerts?patient={alerted}"));
        assert_eq!(status, 200, "{body}");
        let alerts = body["alerts"].as_array().expect("alerts");
        assert_eq!(alerts.len(), 1, "one alert for the episode on {url}: {body}");
        assert_eq!(alerts[0]["state"], "open", "{body}");
    }
    eventually("the notice delivered", || {
        let (_, n) = get(&b.url, "/api/v1/notifications?state=delivered");
        n["notifications"].as_array().is_some_and(|v| !v.is_empty())
    });
    let opened: std::collections::BTreeSet<String> = hook
        .requests()
        .iter()
        .filter(|r| notice_of(r) == ("opened".to_owned(), alerted.clone()))
        .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(opened.len(), 1, "one opening notice, however many deliveries: {opened:?}");
    // Each node reminds of the alerts of its own patients (renotify), while the other node's
    // patients have alerts too.
    let buckets_of = |url: &str| -> Vec<u64> {
        get(url, "/healthz").1["cluster"]["owned_buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .filter_map(Value::as_u64)
            .collect()
    };
    let patient_of = |buckets: &[u64], prefix: &str| {
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|p| {
                buckets
                    .contains(&u64::from(vitals_jetstream::bucket_of(&vitals_core::PatientId::new(p).expect("id"), 64)))
            })
            .expect("a patient of the node's buckets")
    };
    let (of_b, of_c) = (patient_of(&buckets_of(&b.url), "rb"), patient_of(&buckets_of(&c.url), "rc"));
    let later = chrono_now_ms();
    post_readings(&c.url, &of_b, &[(later - 2_000, 201.0), (later - 1_000, 202.0)]);
    post_readings(&b.url, &of_c, &[(later - 2_000, 203.0), (later - 1_000, 204.0)]);
    eventually("reminders of both nodes' alerts", || {
        let seen: Vec<(String, String)> = hook.requests().iter().map(notice_of).collect();
        [&of_b, &of_c].iter().all(|p| seen.contains(&("reminder".to_owned(), p.to_string())))
    });
    eprintln!(
        "cluster failover: {} acknowledged samples on both nodes exactly once; buckets owned again {:?} after the kill",
        acked.len(),
        moved
    );
}

/// The Kafka metric `name` of node `url`.
fn kafka_metric(url: &str, name: &str) -> u64 {
    let m = into_resp(
        agent()
            .get(&format!("{url}/metrics"))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .expect("metrics"),
    );
    m.body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn the_nodes_of_one_kafka_group_share_the_partitions_and_every_node_answers_every_reading() {
    let dir = tempfile::tempdir().expect("tmp");
    let nats = NatsCluster::start(dir.path().join("nats"), 3);
    let schema = format!("kf{}", std::process::id());
    let key = dir.path().join("audit.key");
    let broker = vitals_kafka::testing::Broker::start();
    broker.create_topic("readings", 4);
    let config = dir.path().join("vitals.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nflush_interval = \"1s\"\n\
             [kafka]\nenabled = true\nbrokers = \"{}\"\ngroup_id = \"vitals-cluster\"\ntopics = [\"readings\"]\n",
            broker.address()
        ),
    )
    .expect("config");
    let a = node("a", &dir.path().join("a"), &nats, &schema, &key, &config);
    let b = node("b", &dir.path().join("b"), &nats, &schema, &key, &config);
    eventually("the two nodes to share the 64 buckets", || owned(&a.url) + owned(&b.url) == 64 && owned(&b.url) > 0);
    // Probes on every partition until both nodes read some: both are in the group.
    let base = chrono_now_ms() - 3_600_000;
    let mut probes = 0i64;
    eventually("both nodes in the group", || {
        let msgs: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| {
                probes += 1;
                let s = json!({"patient": format!("probe-{i}"), "metric": "heart_rate", "time": base + probes, "value": 60});
                (format!("probe-{i}"), s.to_string().into_bytes())
            })
            .collect();
        let refs: Vec<(Option<&str>, &[u8])> = msgs.iter().map(|(k, v)| (Some(k.as_str()), v.as_slice())).collect();
        broker.produce("readings", &refs);
        kafka_metric(&a.url, "vitals_kafka_committed_total") > 0
            && kafka_metric(&b.url, "vitals_kafka_committed_total") > 0
    });
    // 400 readings of 8 patients, keyed by patient (spread over the 4 partitions).
    let mut acked = BTreeMap::new();
    let mut msgs = Vec::new();
    for c in 0..CLIENTS * 2 {
        let patient = format!("c{c}");
        for k in 0..50i64 {
            let (t, v) = (base + k * 1000, 50.0 + k as f64);
            acked.insert((patient.clone(), t), v);
            let s = json!({"patient": patient, "metric": "heart_rate", "time": t, "value": v});
            msgs.push((patient.clone(), s.to_string().into_bytes()));
        }
    }
    let refs: Vec<(Option<&str>, &[u8])> = msgs.iter().map(|(k, v)| (Some(k.as_str()), v.as_slice())).collect();
    broker.produce("readings", &refs);
    let total = |url: &str| kafka_metric(url, "vitals_kafka_committed_total");
    eventually("every reading committed", || total(&a.url) + total(&b.url) >= 400 + probes as u64);
    for url in [&a.url, &b.url] {
        settles("every reading on every node, once", url, || {
            for c in 0..CLIENTS * 2 {
                let patient = format!("c{c}");
                let got = stored(url, &patient, base, base + 86_400_000)?;
                let want: Vec<(i64, f64)> =
                    acked.iter().filter(|((p, _), _)| *p == patient).map(|((_, t), v)| (*t, *v)).collect();
                if got != want {
                    return Err(format!("{patient}: {} of {} readings", got.len(), want.len()));
                }
            }
            Ok(())
        });
    }
}
