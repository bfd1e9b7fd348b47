//! The paced load mode: a target rate over several connections for a duration, with the
//! latency percentiles of durable acknowledgements.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vitals_core::{Clock, SystemClock};
use vitals_sim::{Encoding, Mix, Options, Patient, Simulator, Which};

use super::{SimulateArgs, Stop, progress};
use crate::client::Client;

/// Latency percentiles of a run, in milliseconds.
pub(super) fn percentiles(lat_us: &mut [u64]) -> (f64, f64, f64) {
    if lat_us.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    lat_us.sort_unstable();
    let at = |q: f64| lat_us[((lat_us.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

/// The load mode: `rate` samples/s over `connections` connections, paced request by
/// request; reports achieved rate, rejections and latency percentiles every 5 s and at
/// the end, and says so when the requested rate was not reached.
pub(super) fn load(a: &SimulateArgs, client: &Client, rate: u64, stop: &Stop) -> anyhow::Result<ExitCode> {
    let duration = a.duration.map_or(Duration::from_secs(30), |d| Duration::from_millis(d.as_ms() as u64));
    let conns = a.connections.max(1);
    let batch = a.batch.clamp(1, (rate as usize).max(1));
    let patients = a.patients.max(conns);
    let total_samples = (rate as f64 * duration.as_secs_f64()) as u64;
    // Each patient gets a watch's heart-rate timeline (every 5 s, with a daily charging
    // break) in the recent past, long enough for its share of the run.
    let requests_per_worker = total_samples / batch as u64 / conns as u64 + 2;
    let fewest_patients_per_worker = (patients / conns).max(1) as u64;
    let per_patient = requests_per_worker.div_ceil(fewest_patients_per_worker) * batch as u64;
    let history = (per_patient as i64).saturating_mul(5_000 * 11 / 10);
    if let Some(span) = a.span
        && span.as_ms() < 60_000
    {
        anyhow::bail!("--span must be at least 1m (the timeline is generated a minute at a time)");
    }
    let window = a.span.map_or(history, |s| s.as_ms().min(history));
    let now = SystemClock.now_ms();
    let start_ms = now - window - 3_600_000;
    let sim = Simulator::new(a.seed, Options::default());
    let mix: Mix = "wearable".parse()?;
    let people: Vec<Patient> = (0..patients).map(|i| sim.patient(&format!("load-{i:05}"), mix.clone())).collect();
    let sent = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let rejected = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let latencies: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let deadline = started + duration;
    let bar = progress(duration.as_secs(), a.quiet || a.json, "{elapsed_precise} [{bar:30}] {msg}");
    let report = |final_: bool| -> serde_json::Value {
        let elapsed = started.elapsed().as_secs_f64();
        let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        let (p50, p99, max) = percentiles(&mut lat);
        let acc = accepted.load(Ordering::Relaxed);
        let achieved = acc as f64 / elapsed.max(1e-9);
        serde_json::json!({
            "final": final_,
            "elapsed_s": (elapsed * 100.0).round() / 100.0,
            "requested_per_s": rate,
            "achieved_per_s": achieved.round(),
            "reached": achieved >= 0.95 * rate as f64,
            "accepted": acc,
            "rejected": rejected.load(Ordering::Relaxed),
            "failed_requests": errors.load(Ordering::Relaxed),
            "requests": lat.len(),
            "latency_ms": {"p50": p50, "p99": p99, "max": max},
        })
    };
    std::thread::scope(|s| {
        for w in 0..conns {
            let (people, sent, accepted, rejected, errors, latencies, bar, sim) =
                (&people, &sent, &accepted, &rejected, &errors, &latencies, &bar, &sim);
            s.spawn(move || {
                let enc = Encoding::Ndjson;
                let mine: Vec<&Patient> = people.iter().skip(w).step_by(conns).collect();
                let mut cursor: Vec<i64> = vec![start_ms; mine.len()];
                let mut k = 0u64;
                loop {
                    // Request k of this worker is due when the whole run has sent its share.
                    let due = started
                        + Duration::from_secs_f64(((k * conns as u64 + w as u64) * batch as u64) as f64 / rate as f64);
                    if due >= deadline || stop.stopped() {
                        return;
                    }
                    let now = Instant::now();
                    if due > now && stop.wait(due - now) {
                        return;
                    }
                    let j = (k as usize) % mine.len();
                    let p = mine[j];
                    let mut body = String::with_capacity(batch * 110);
                    let mut n = 0u64;
                    let device = p.device_id(vitals_sim::Device::Watch);
                    while (n as usize) < batch {
                        if cursor[j] + 60_000 > start_ms + window {
                            // --span used up: the same timeline again.
                            cursor[j] = start_ms;
                        }
                        let from = cursor[j];
                        let to = from + 60_000;
                        sim.generate(p, from, to, Which::Sparse, &mut |r| {
                            if r.metric == "heart_rate" && (n as usize) < batch {
                                enc.push(&mut body, &p.id, &device, &r);
                                n += 1;
                            }
                        });
                        cursor[j] = to;
                    }
                    let t0 = Instant::now();
                    match client.post("/api/v1/samples", "application/x-ndjson", body.as_bytes()) {
                        Ok(text) => {
                            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                            accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                            rejected
                                .fetch_add(v["rejected"].as_array().map_or(0, |r| r.len() as u64), Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "load request failed");
                        }
                    }
                    if let Ok(mut l) = latencies.lock() {
                        l.push(t0.elapsed().as_micros() as u64);
                    }
                    sent.fetch_add(n, Ordering::Relaxed);
                    bar.set_position(started.elapsed().as_secs());
                    k += 1;
                }
            });
        }
        // Periodic reports until the workers are done.
        s.spawn(|| {
            let mut next = started + Duration::from_secs(5);
            while Instant::now() + Duration::from_millis(10) < deadline && !stop.stopped() {
                let now = Instant::now();
                if next > now && stop.wait((next - now).min(deadline.saturating_duration_since(now))) {
                    return;
                }
                if Instant::now() >= next && Instant::now() < deadline {
                    let r = report(false);
                    bar.set_message(format!(
                        "{} samples/s, p50 {} ms, p99 {} ms",
                        r["achieved_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p99"]
                    ));
                    if !a.quiet && !a.json {
                        bar.suspend(|| eprintln!("{r}"));
                    }
                    next += Duration::from_secs(5);
                }
            }
        });
    });
    bar.finish_and_clear();
    let r = report(true);
    if a.json {
        println!("{r}");
    } else {
        println!(
            "load: requested {rate}/s, achieved {}/s over {} s; {} accepted, {} rejected, {} failed requests; latency p50 {} ms, p99 {} ms, max {} ms",
            r["achieved_per_s"],
            r["elapsed_s"],
            r["accepted"],
            r["rejected"],
            r["failed_requests"],
            r["latency_ms"]["p50"],
            r["latency_ms"]["p99"],
            r["latency_ms"]["max"]
        );
        if r["reached"] != serde_json::Value::Bool(true) {
            println!(
                "the requested rate was NOT reached (under 95%): the client, the server or the machine is the limit; try more --connections or a larger --batch"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
