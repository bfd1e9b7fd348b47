//! `vitals bench alerts`: the time from a sample's acknowledgement to the notifier's HTTP
//! request, under sustained ingest load.
//!
//! The real server runs in-process on a temporary data directory with two rules: one over
//! heart rate that never fires (so the engine evaluates every load sample) and the glucose
//! rule `blood_glucose > 180` (urgent). A webhook contact points at a local receiver.
//! Load: heart-rate samples of 1000 patients at `--rate` samples/s over `--clients`
//! connections. Probes: every `--probe-every`, one glucose reading of 300 mg/dL for a new
//! patient; its latency is from the moment its `200 OK` is read to the moment the receiver
//! has read the webhook request for that patient.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::{Condvar, Mutex};
use vitals_core::time::DurationMs;
use vitals_core::{Clock, SystemClock};
use vitals_storage::Store;

use vitals_alerts::{Contact, Subscription};
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::runtime;

#[derive(Debug, clap::Args)]
pub(crate) struct AlertLatencyArgs {
    /// Load: samples per second.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) rate: u64,
    /// Load connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) clients: usize,
    /// Samples per load request.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: usize,
    /// How long to measure.
    #[arg(long, default_value = "30s")]
    pub(crate) duration: DurationMs,
    /// Time between probes.
    #[arg(long, default_value = "100ms")]
    pub(crate) probe_every: DurationMs,
}

/// Arrivals at the webhook receiver: patient -> when its request was read.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashMap<String, Instant>>,
    cv: Condvar,
}

fn receiver(arrivals: Arc<Arrivals>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let arrivals = arrivals.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let Ok(clone) = stream.try_clone() else { return };
                let mut r = std::io::BufReader::new(clone);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).map_or(true, |n| n == 0) {
                        return;
                    }
                    loop {
                        line.clear();
                        if r.read_line(&mut line).is_err() || line.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let at = Instant::now();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(p) = v["alert"]["patient"].as_str() {
                        arrivals.seen.lock().insert(p.to_owned(), at);
                        arrivals.cv.notify_all();
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    Ok(url)
}

/// A load generator's pacing: waiting for a time, not for a condition (so no busy loop
/// steals the cores the server under test runs on).
fn pace_until(t: Instant) {
    if let Some(wait) = t.checked_duration_since(Instant::now()) {
        #[allow(clippy::disallowed_methods)] // reason: pacing a benchmark's load is waiting for a time
        std::thread::sleep(wait);
    }
}

/// The nearest-rank percentile of sorted values (NaN when empty).
pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn run(_config: &Config, a: &AlertLatencyArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile_dir()?;
    let arrivals = Arc::new(Arrivals::default());
    let hook = receiver(arrivals.clone())?;
    let mut config = Config::default();
    config.storage.data_dir = dir.clone();
    config.alerting.rules = vec![
        serde_json::from_value(serde_json::json!({"name": "tachycardia", "expr": "heart_rate > 250"}))?,
        serde_json::from_value(
            serde_json::json!({"name": "high", "expr": "blood_glucose > 180", "severity": "urgent"}),
        )?,
    ];
    config.notify.contacts = vec![Contact { name: "bench".into(), webhook: Some(hook), ..Contact::default() }];
    config.notify.subscriptions = vec![Subscription { contacts: vec!["bench".into()], ..Subscription::default() }];
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let clock = SystemClock;
    let store = Arc::new(Store::open(&dir, config.store_config(), Arc::new(SystemClock))?);
    let tokens = Directory::open(&dir)?;
    let (_, token) = tokens.create("bench", Role::Admin, None, None, clock.now_ms())?;
    let app = Arc::new(App::open(store.clone(), tokens, config, Arc::new(SystemClock))?);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/api/v1/samples", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = rt.spawn(runtime::serve(listener, app.clone(), async move {
        let _ = stop_rx.await;
    }));
    let auth = format!("Bearer {token}");
    println!(
        "alert latency: load {} samples/s over {} connections ({} per request), a probe every {}, for {}",
        a.rate, a.clients, a.batch, a.probe_every, a.duration
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut loaders = Vec::new();
    // --rate 0: probes alone, the baseline.
    let clients = if a.rate == 0 { 0 } else { a.clients.max(1) };
    for c in 0..clients {
        let (stop, sent, refused, url, auth) = (stop.clone(), sent.clone(), refused.clone(), url.clone(), auth.clone());
        // Requests per second of this client.
        let per_client = a.rate as f64 / clients as f64 / a.batch.max(1) as f64;
        let batch = a.batch;
        loaders.push(std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let t0 = Instant::now();
            let base_ms = SystemClock.now_ms() - 3_600_000;
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                // Paced: request k goes at k / (requests per second).
                let due = t0 + Duration::from_secs_f64((n / batch as u64) as f64 / per_client);
                pace_until(due);
                let mut body = String::with_capacity(batch * 90);
                for i in 0..batch as u64 {
                    let k = n + i;
                    let patient = (k % 1000) as usize;
                    // Distinct times per patient: one sample per patient per ms slot.
                    let t = base_ms + (k / 1000) as i64 * 10 + c as i64;
                    body.push_str(&format!(
                        "{{\"patient\":\"load-{patient:04}\",\"metric\":\"heart_rate\",\"time\":{t},\"value\":{}}}\n",
                        60 + (k % 40)
                    ));
                }
                match agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/x-ndjson")
                    .send(body)
                {
                    Ok(r) if r.status() == 200 => {
                        sent.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                }
                n += batch as u64;
            }
        }));
    }
    // Warm up for a second, then probe.
    pace_until(Instant::now() + Duration::from_secs(1));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut latencies_ms = Vec::new();
    let mut missed = 0;
    let end = Instant::now() + Duration::from_millis(a.duration.as_ms() as u64);
    let mut i = 0;
    let sent_at_start = sent.load(Ordering::Relaxed);
    let t_start = Instant::now();
    while Instant::now() < end {
        let next = Instant::now() + Duration::from_millis(a.probe_every.as_ms() as u64);
        let patient = format!("probe-{i:05}");
        let body = format!(
            "[{{\"patient\":\"{patient}\",\"metric\":\"blood_glucose\",\"time\":{},\"value\":300}}]",
            SystemClock.now_ms()
        );
        let r = agent.post(&url).header("Authorization", &auth).header("Content-Type", "application/json").send(body);
        let acked = Instant::now();
        if !matches!(r, Ok(ref r) if r.status() == 200) {
            missed += 1;
            continue;
        }
        let deadline = acked + Duration::from_secs(5);
        let mut seen = arrivals.seen.lock();
        loop {
            if let Some(at) = seen.get(&patient) {
                latencies_ms.push(at.saturating_duration_since(acked).as_secs_f64() * 1000.0);
                break;
            }
            if arrivals.cv.wait_until(&mut seen, deadline).timed_out() {
                missed += 1;
                break;
            }
        }
        drop(seen);
        i += 1;
        pace_until(next);
    }
    let achieved = (sent.load(Ordering::Relaxed) - sent_at_start) as f64 / t_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.join();
    }
    let _ = stop_tx.send(());
    rt.block_on(server_task).context("the server task")??;
    store.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "  load achieved {:.0} samples/s ({} refused in all, over {:.1} s)",
        achieved,
        refused.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  ack -> webhook request: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} probes ({} missed)",
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99),
        latencies_ms.last().copied().unwrap_or(f64::NAN),
        latencies_ms.len(),
        missed
    );
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("vitals-bench-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
