//! The lake on object storage, against real servers started here on 127.0.0.1: moto's S3
//! server (`moto[server]`, PyPI) and Microsoft's Azurite (npm, pinned in e2e/), both
//! installed by `scripts/test`. What Vitals uploads is checked with each cloud's own SDK
//! (boto3, azure-storage-blob); reads of cold days go through REST and SQL; the real binary
//! is killed with SIGKILL while it uploads.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;

use crate::crash::spawn_server;
use crate::harness::{ADMIN, NOW, TestServer, agent, into_resp};

/// A server process killed when the test ends.
pub(crate) struct Service {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a port, with a deadline
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like `eventually`, with a minute: uploads to a server on a loaded 2-core machine.
fn within_a_minute(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition, with a deadline
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn start_moto() -> Service {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto[server] is installed by scripts/test");
    wait_for_port(port, "moto");
    Service { child, port, _dir: dir }
}

fn start_azurite() -> Service {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/node_modules/.bin/azurite-blob");
    let child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--skipApiVersionCheck"])
        .arg("--location")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite is installed by scripts/test (e2e/package.json)");
    wait_for_port(port, "azurite");
    Service { child, port, _dir: dir }
}

/// Runs Python with the port as `sys.argv[1]`; returns its stdout parsed as JSON.
pub(crate) fn python(code: &str, args: &[&str]) -> Value {
    let out = Command::new("python3").arg("-c").arg(code).args(args).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

pub(crate) const S3: &str = r#"
import json, sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
kms = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
op, bucket = sys.argv[2], sys.argv[3]
if op == "create":
    s3.create_bucket(Bucket=bucket)
    print(json.dumps(kms.create_key()["KeyMetadata"]["KeyId"]))
elif op == "list":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = {"size": o["Size"], "sse": h.get("ServerSideEncryption"), "kms": h.get("SSEKMSKeyId")}
    print(json.dumps(out))
"#;

const AZURE: &str = r#"
import json, sys
from azure.storage.blob import BlobServiceClient
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
url = f"http://127.0.0.1:{sys.argv[1]}/devstoreaccount1"
svc = BlobServiceClient(account_url=url, credential={"account_name": "devstoreaccount1", "account_key": key})
op, container = sys.argv[2], sys.argv[3]
if op == "create":
    svc.create_container(container)
    print("null")
elif op == "list":
    c = svc.get_container_client(container)
    print(json.dumps({b.name: {"size": b.size} for b in c.list_blobs()}))
"#;

/// Azurite's well-known development account.
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub(crate) fn s3_lake(c: &mut vitals_server::config::Config, port: u16, bucket: &str) {
    c.lake.url = format!("s3://{bucket}/vitals/lake");
    c.lake.endpoint = format!("http://127.0.0.1:{port}");
    c.lake.allow_http = true;
    c.lake.region = "us-east-1".into();
    c.lake.options = [("aws_access_key_id", "test"), ("aws_secret_access_key", "test")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
}

fn tiered(c: &mut vitals_server::config::Config) {
    c.lake.upload_after = vitals_core::DurationMs(0);
    c.lake.hot_days = 0;
}

/// Samples of two patients over three past days; returns what each patient's series holds.
fn write_days(server: &TestServer) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut want: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut items = Vec::new();
    for (p, base) in [("p-1", 60.0), ("p-2", 80.0)] {
        for d in 3..6 {
            for i in 0..50 {
                let t = NOW - d * MS_PER_DAY + i * 60_000;
                let v = base + d as f64 * 3.0 + i as f64 * 0.5;
                items.push(json!({"patient": p, "metric": "heart_rate", "time": t, "value": v}));
                want.entry(p.to_owned()).or_default().push((t, v));
            }
        }
    }
    let r = server.ingest(&Value::Array(items));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 300, "{}", r.body);
    for v in want.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    want
}

fn series(server: &TestServer, patient: &str) -> Vec<(i64, f64)> {
    let from = NOW - 10 * MS_PER_DAY;
    let r = server
        .get(&format!("/api/v1/patients/{patient}/series/heart_rate?time_format=ms&from={from}&to={NOW}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p["time"].as_i64().expect("t"), p["value"].as_f64().expect("v")))
        .collect()
}

fn sql_sums(server: &TestServer) -> Value {
    let q = "SELECT patient, count(*) AS n, sum(value) AS s FROM samples GROUP BY patient ORDER BY patient";
    let r = server.post("/api/v1/sql", Some(ADMIN), "application/json", json!({ "sql": q }).to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rows"].clone()
}

/// Uploads and then drops the local copies (upload_after = 0, hot_days = 0).
fn tier_all(server: &TestServer) {
    server.store.flush().expect("flush");
    let first = server.store.tier().expect("upload");
    assert!(first.uploaded > 0, "{first:?}");
    let second = server.store.tier().expect("cold");
    assert_eq!(second.made_cold, first.uploaded, "{second:?}");
    assert!(server.store.segments().iter().all(|s| s.remote && s.cold));
}

fn local_segment_files(lake: &Path) -> usize {
    walk(lake).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn s3_holds_the_cold_lake_encrypted_and_queries_read_it_back() {
    let moto = start_moto();
    let port = moto.port.to_string();
    let kms_key = python(S3, &[&port, "create", "lake-a"]);
    python(S3, &[&port, "create", "lake-b"]);

    // SSE-S3: every object is encrypted with AES256; REST and SQL answer from the bucket.
    let server = TestServer::with_config(|c| {
        s3_lake(c, moto.port, "lake-a");
        tiered(c);
        c.lake.sse = "s3".into();
    });
    let want = write_days(&server);
    let sums_before = sql_sums(&server);
    tier_all(&server);
    assert_eq!(local_segment_files(&server.data_dir().join("lake")), 0, "no local copy is left");
    let objects = python(S3, &[&port, "list", "lake-a"]);
    let objects = objects.as_object().expect("objects");
    assert_eq!(objects.len(), 6, "one object per patient and day: {objects:?}");
    for (key, o) in objects {
        assert!(key.starts_with("vitals/lake/metric=heart_rate/year="), "{key}");
        assert!(key.contains("/patient=p-") && key.ends_with(".parquet"), "{key}");
        assert_eq!(o["sse"], "AES256", "{key}");
    }
    for (p, pts) in &want {
        assert_eq!(&series(&server, p), pts, "{p} read back from S3");
    }
    assert_eq!(sql_sums(&server), sums_before, "SQL over the cold lake");
    assert!(server.store.stats().fetches.load(std::sync::atomic::Ordering::Relaxed) >= 6);

    // Erasure deletes the patient's objects from the bucket at once.
    server.store.erase_patient(&vitals_core::PatientId::new("p-1").expect("id")).expect("erase");
    let left = python(S3, &[&port, "list", "lake-a"]);
    let left = left.as_object().expect("objects");
    assert_eq!(left.len(), 3);
    assert!(left.keys().all(|k| k.contains("/patient=p-2/")), "{left:?}");
    drop(server);

    // SSE-KMS with a key made in moto's KMS.
    let key_id = kms_key.as_str().expect("key id").to_owned();
    let server = TestServer::with_config(|c| {
        s3_lake(c, moto.port, "lake-b");
        tiered(c);
        c.lake.sse = "kms".into();
        c.lake.sse_kms_key_id = key_id.clone();
    });
    write_days(&server);
    tier_all(&server);
    let objects = python(S3, &[&port, "list", "lake-b"]);
    for (key, o) in objects.as_object().expect("objects") {
        assert_eq!(o["sse"], "aws:kms", "{key}");
        assert!(o["kms"].as_str().is_some_and(|k| k.contains(&key_id)), "{key}: {o}");
    }
}

#[test]
fn azure_blob_storage_on_azurite_holds_the_cold_lake() {
    let azurite = start_azurite();
    let port = azurite.port.to_string();
    python(AZURE, &[&port, "create", "vitals"]);
    let server = TestServer::with_config(|c| {
        c.lake.url = "az://vitals/lake".into();
        c.lake.endpoint = format!("http://127.0.0.1:{}/devstoreaccount1", azurite.port);
        c.lake.allow_http = true;
        c.lake.options =
            [("azure_storage_account_name", "devstoreaccount1"), ("azure_storage_account_key", AZURITE_KEY)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        tiered(c);
    });
    let want = write_days(&server);
    let sums_before = sql_sums(&server);
    tier_all(&server);
    let blobs = python(AZURE, &[&port, "list", "vitals"]);
    let blobs = blobs.as_object().expect("blobs");
    assert_eq!(blobs.len(), 6, "{blobs:?}");
    assert!(blobs.keys().all(|k| k.starts_with("lake/metric=heart_rate/")), "{blobs:?}");
    for (p, pts) in &want {
        assert_eq!(&series(&server, p), pts, "{p} read back from Azure");
    }
    assert_eq!(sql_sums(&server), sums_before);
    // Late data for a cold day: merged with the object, which is replaced.
    let t = NOW - 3 * MS_PER_DAY;
    let r = server.ingest(&json!([{"patient": "p-2", "metric": "heart_rate", "time": t, "value": 150.5}]));
    assert_eq!(r.status, 200, "{}", r.body);
    server.store.flush().expect("flush");
    assert_eq!(server.store.compact().expect("compact"), 1);
    server.store.tier().expect("upload the merged segment, delete the old object");
    let blobs = python(AZURE, &[&port, "list", "vitals"]);
    assert_eq!(blobs.as_object().expect("blobs").len(), 6, "{blobs}");
    let got = series(&server, "p-2");
    assert!(got.contains(&(t, 150.5)), "the late value wins");
    assert_eq!(got.len(), want["p-2"].len());
}

fn metric(url: &str, name: &str) -> u64 {
    let r = agent().get(&format!("{url}/metrics")).header("Authorization", &format!("Bearer {ADMIN}")).call();
    let body = into_resp(r.expect("metrics")).body;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

#[test]
fn kill_9_while_uploading_loses_nothing_and_leaves_no_orphan() {
    let moto = start_moto();
    let port = moto.port.to_string();
    python(S3, &[&port, "create", "crash"]);
    let dir = tempfile::tempdir().expect("tmp");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let env: Vec<(&str, &str)> = vec![
        ("VITALS_LAKE_URL", "s3://crash/lake"),
        ("VITALS_LAKE_ENDPOINT", &endpoint),
        ("VITALS_LAKE_ALLOW_HTTP", "true"),
        ("VITALS_LAKE_REGION", "us-east-1"),
        ("VITALS_LAKE_UPLOAD_AFTER", "1ms"),
        ("VITALS_LAKE_HOT_DAYS", "0"),
        ("VITALS_LAKE_ORPHAN_GRACE", "1ms"),
        ("VITALS_STORAGE_FLUSH_MAX_SAMPLES", "2000"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let now = crate::crash::chrono_now_ms();
    let mut want: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for round in 0..3i64 {
        let server = spawn_server(dir.path(), &env);
        let uploads_before = metric(&server.url, "vitals_lake_uploads_total");
        // Many small partitions (patients x past days), so that uploads are under way.
        let mut items = Vec::new();
        for p in 0..20 {
            for d in 2..6 {
                for i in 0..25 {
                    let t = now - d * MS_PER_DAY + (round * 100 + i) * 1000;
                    // Tenths, as the catalog stores heart rate (one decimal).
                    let v = (400 + p * 10 + d * 20 + i * 5 + round) as f64 / 10.0;
                    let patient = format!("k{p}");
                    items.push(json!({"patient": patient, "metric": "heart_rate", "time": t, "value": v}));
                    want.insert((patient, t), v);
                }
            }
        }
        let r = agent()
            .post(&format!("{}/api/v1/samples", server.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(Value::Array(items).to_string().as_bytes())
            .map(into_resp)
            .expect("write");
        assert_eq!(r.status, 200, "{}", r.body);
        // Killed as soon as the first uploads of this round are counted, mid-way.
        within_a_minute("uploads under way", || metric(&server.url, "vitals_lake_uploads_total") > uploads_before);
        let mut server = server;
        server.child.kill().expect("kill -9");
        server.child.wait().expect("reap");
    }
    let server = spawn_server(dir.path(), &env);
    // Everything ends up in the bucket and nothing stays local.
    let lake = dir.path().join("lake");
    within_a_minute("every segment uploaded and cold", || local_segment_files(&lake) == 0);
    let system = into_resp(
        agent()
            .get(&format!("{}/api/v1/system", server.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .expect("system"),
    )
    .json();
    let segments = system["segments"].as_u64().expect("segments");
    // No orphan: the sweep at start (grace 0) deleted objects of uploads cut short.
    within_a_minute("the bucket holds exactly the manifest's segments", || {
        python(S3, &[&port, "list", "crash"]).as_object().expect("objects").len() as u64 == segments
    });
    for p in 0..20 {
        let patient = format!("k{p}");
        let from = now - 7 * MS_PER_DAY;
        let r = into_resp(
            agent()
                .get(&format!(
                    "{}/api/v1/patients/{patient}/series/heart_rate?time_format=ms&from={from}&to={now}",
                    server.url
                ))
                .header("Authorization", &format!("Bearer {ADMIN}"))
                .call()
                .expect("series"),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let got: Vec<(i64, f64)> = r.json()["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|x| (x["time"].as_i64().expect("t"), x["value"].as_f64().expect("v")))
            .collect();
        let expected: Vec<(i64, f64)> =
            want.iter().filter(|((q, _), _)| *q == patient).map(|((_, t), v)| (*t, *v)).collect();
        assert_eq!(got, expected, "{patient}: every acknowledged sample exactly once");
    }
}
