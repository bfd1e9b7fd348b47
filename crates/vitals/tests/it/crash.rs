//! Durability: the real binary is killed with SIGKILL while concurrent clients write; every
//! acknowledged sample must be there exactly once after a restart.
//!
//! Five rounds in every test run; `scripts/kill9 <rounds>` runs the same test for as many
//! rounds as asked (in release, `VITALS_KILL9_ROUNDS`), killing at a different point of the
//! load each round.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{ADMIN, agent, into_resp};

pub struct Running {
    pub child: Child,
    pub url: String,
}

/// A server left running by a failed test would hold the test's output open: kill it.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vitals serve` on a free port and waits for its "listening" line.
pub fn spawn_server(dir: &Path, extra_env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitals"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("VITALS_ADMIN_TOKEN", ADMIN)
        .env("VITALS_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn vitals");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("server exited before listening").expect("read stdout");
        if let Some(rest) = line.strip_prefix("vitals listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, url }
}

const CLIENTS: u64 = 4;
const BATCH: u64 = 250;

#[test]
fn acknowledged_samples_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    // Times from a month back, 100 ms apart, unique across rounds and clients (1,000
    // rounds write about 16 M samples: 19 days).
    let base = chrono_now_ms() - 30 * 86_400_000;
    let next_time = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<BTreeMap<(String, i64), f64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let rounds: u64 = std::env::var("VITALS_KILL9_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    for round in 0..rounds {
        // Where in the load this round's kill falls: from 10 to 119 acknowledged batches.
        let kill_after = 10 + (round * 37 + 50) % 110;
        // A small flush threshold makes flushes (segments + WAL truncation) happen mid-run.
        let server = spawn_server(dir.path(), &[("VITALS_STORAGE_FLUSH_MAX_SAMPLES", "4000")]);
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new((Mutex::new(0u64), Condvar::new()));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (url, stop, acked, next_time, progress) =
                (server.url.clone(), stop.clone(), acked.clone(), next_time.clone(), progress.clone());
            clients.push(std::thread::spawn(move || {
                let agent = agent();
                let patient = format!("c{c}");
                while !stop.load(Ordering::SeqCst) {
                    let first = next_time.fetch_add(BATCH, Ordering::SeqCst);
                    let items: Vec<(i64, f64)> =
                        (first..first + BATCH).map(|k| (base + k as i64 * 100, 40.0 + (k % 150) as f64)).collect();
                    let body = Value::Array(
                        items.iter().map(|(t, v)| json!({"patient": patient, "metric": "heart_rate", "time": t, "value": v, "device": "w"})).collect(),
                    );
                    let sent = agent
                        .post(&format!("{url}/api/v1/samples"))
                        .header("Authorization", &format!("Bearer {ADMIN}"))
                        .header("Content-Type", "application/json")
                        .send(body.to_string().as_bytes());
                    match sent.map(into_resp) {
                        Ok(r) if r.status == 200 => {
                            // Acknowledged means every sample of it (none was refused).
                            assert_eq!(r.json()["accepted"], BATCH, "{}", r.body);
                            let mut a = acked.lock().expect("lock");
                            for (t, v) in items {
                                a.insert((patient.clone(), t), v);
                            }
                            drop(a);
                            let (m, cv) = &*progress;
                            *m.lock().expect("lock") += 1;
                            cv.notify_all();
                        }
                        // Not acknowledged (the server died mid-request): promises nothing.
                        _ => break,
                    }
                }
            }));
        }
        // Kill once enough batches were acknowledged in this round, while writes continue.
        {
            let (m, cv) = &*progress;
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = m.lock().expect("lock");
            while *n < kill_after {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "round {round}: clients made no progress");
                n = cv.wait_timeout(n, left).expect("wait").0;
            }
        }
        let mut server = server;
        let child = &mut server.child;
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("client");
        }
    }
    let server = spawn_server(dir.path(), &[]);
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() as u64 >= rounds * 10 * BATCH, "enough acknowledged samples to mean something");
    let end = base + next_time.load(Ordering::SeqCst) as i64 * 100 + 1;
    for c in 0..CLIENTS {
        let patient = format!("c{c}");
        // A day at a time: a query answers at most 2 M points.
        let mut stored: Vec<(i64, f64)> = Vec::new();
        for from in (base..end).step_by(86_400_000) {
            let to = (from + 86_400_000).min(end);
            let r = into_resp(
                agent()
                    .get(&format!(
                        "{}/api/v1/patients/{patient}/series/heart_rate?time_format=ms&from={from}&to={to}",
                        server.url
                    ))
                    .header("Authorization", &format!("Bearer {ADMIN}"))
                    .call()
                    .expect("query"),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            stored.extend(
                r.json()["points"]
                    .as_array()
                    .expect("points")
                    .iter()
                    .map(|p| (p["time"].as_i64().expect("t"), p["value"].as_f64().expect("v"))),
            );
        }
        let mut seen = BTreeMap::new();
        for (t, v) in &stored {
            assert!(seen.insert(*t, *v).is_none(), "{patient}: time {t} stored twice");
        }
        for ((p, t), v) in acked.iter().filter(|((p, _), _)| *p == patient) {
            assert_eq!(seen.get(t), Some(v), "{p}: acknowledged sample at {t} lost");
        }
    }
    eprintln!("kill -9: {rounds} rounds, {} acknowledged samples, all found exactly once", acked.len());
    let mut server = server;
    let child = &mut server.child;
    child.kill().expect("kill");
    child.wait().expect("reap");
}

pub fn chrono_now_ms() -> i64 {
    use vitals_core::Clock;
    vitals_core::SystemClock.now_ms()
}
