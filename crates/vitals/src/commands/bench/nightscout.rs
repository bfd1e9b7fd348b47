//! `vitals bench nightscout`: what the Nightscout way in costs next to the native one, in
//! one run on one in-process server. The same glucose readings (5-minute CGM values of
//! `patients` patients over `days` days) are uploaded twice, to two sets of patients: as
//! Nightscout entries the way xDrip+ sends them (every field kept as a document, plus the
//! reading) and as native NDJSON samples, in batches of `batch` readings (288: a day's
//! backfill; 1: a live uploader), from `clients` threads, in two alternating rounds of
//! which the second is reported. Then a follower's read of the newest day
//! (`entries.json?count=288`) next to the native series read of that day.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use vitals_core::time::{MS_PER_DAY, format_time};
use vitals_core::{Clock, SystemClock};
use vitals_storage::Store;

use super::alert_latency::percentile;
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::runtime;

#[derive(Debug, clap::Args)]
pub(crate) struct NightscoutArgs {
    /// Patients per way in.
    #[arg(long, default_value_t = 20)]
    pub(crate) patients: usize,
    /// Days of 5-minute readings per patient.
    #[arg(long, default_value_t = 14)]
    pub(crate) days: usize,
    /// Readings per request.
    #[arg(long, default_value_t = 288)]
    pub(crate) batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub(crate) clients: usize,
    /// Repetitions of each read (the median is reported).
    #[arg(long, default_value_t = 50)]
    pub(crate) repeat: usize,
}

/// One request's body: a batch of a patient's readings in one of the two forms.
struct Request {
    path: String,
    content_type: &'static str,
    body: String,
    readings: usize,
}

fn glucose(p: usize, i: usize) -> f64 {
    let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
    (120.0 + 40.0 * (phase * 3.0 + p as f64).sin()).round()
}

fn requests(a: &NightscoutArgs, start_ms: i64, nightscout: bool) -> Vec<Request> {
    let per_patient = a.days * 288;
    let mut out = Vec::new();
    for p in 0..a.patients {
        let patient = if nightscout { format!("ns-bench-{p}") } else { format!("native-bench-{p}") };
        for chunk in (0..per_patient).collect::<Vec<_>>().chunks(a.batch.max(1)) {
            let mut body = String::with_capacity(chunk.len() * 220);
            if nightscout {
                body.push('[');
            }
            for (k, &i) in chunk.iter().enumerate() {
                let t = start_ms + i as i64 * 300_000;
                let v = glucose(p, i);
                let delta = v - glucose(p, i.saturating_sub(1));
                if nightscout {
                    if k > 0 {
                        body.push(',');
                    }
                    let _ = write!(
                        body,
                        r#"{{"device":"xDrip-DexcomG6","date":{t},"dateString":"{}","sysTime":"{}","sgv":{v},"delta":{delta},"direction":"Flat","type":"sgv","filtered":{},"unfiltered":{},"rssi":100,"noise":1}}"#,
                        format_time(t),
                        format_time(t),
                        v * 1000.0,
                        v * 1000.0 + 500.0
                    );
                } else {
                    let _ = writeln!(
                        body,
                        r#"{{"patient":"{patient}","metric":"blood_glucose","time":{t},"value":{v},"device":"xdrip-dexcomg6"}}"#
                    );
                }
            }
            if nightscout {
                body.push(']');
            }
            let (path, content_type) = if nightscout {
                (format!("/nightscout/{patient}/api/v1/entries"), "application/json")
            } else {
                ("/api/v1/samples".to_owned(), "application/x-ndjson")
            };
            out.push(Request { path, content_type, body, readings: chunk.len() });
        }
    }
    out
}

/// Sends every request from `clients` threads; readings/s and request latency p50, p99 (ms).
fn send(base: &str, token: &str, reqs: &Arc<Vec<Request>>, clients: usize) -> anyhow::Result<(f64, f64, f64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (reqs, next, base, auth) = (reqs.clone(), next.clone(), base.to_owned(), format!("Bearer {token}"));
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = reqs.get(i) else { return Ok(lat) };
                    let t = Instant::now();
                    let mut resp = agent
                        .post(&format!("{base}{}", r.path))
                        .header("Authorization", &auth)
                        .header("Content-Type", r.content_type)
                        .send(r.body.as_bytes())
                        .context("sending")?;
                    let status = resp.status().as_u16();
                    let _ = resp.body_mut().read_to_vec();
                    if status != 200 {
                        bail!("{}: {status}", r.path);
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("a client thread failed"))??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let readings: usize = reqs.iter().map(|r| r.readings).sum();
    Ok((readings as f64 / secs, percentile(&all, 0.5), percentile(&all, 0.99)))
}

/// The median time (ms) of `repeat` GETs of `path`, each checked to answer 200.
fn read_ms(base: &str, token: &str, path: &str, repeat: usize) -> anyhow::Result<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let mut r = agent.get(&format!("{base}{path}")).header("Authorization", &format!("Bearer {token}")).call()?;
        let _ = r.body_mut().read_to_vec();
        anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

pub(crate) fn run(base_config: &Config, a: &NightscoutArgs) -> anyhow::Result<ExitCode> {
    let dir = super::ingest::tempfile_dir(None).context("temporary directory")?;
    let mut config = base_config.clone();
    config.storage.data_dir = dir.path.clone();
    config.alerting.enabled = false;
    let clock = SystemClock;
    let now = clock.now_ms();
    let start = now - now.rem_euclid(MS_PER_DAY) - a.days as i64 * MS_PER_DAY;
    let store = Arc::new(Store::open(dir.path.as_path(), config.store_config(), Arc::new(SystemClock))?);
    let directory = Directory::open(dir.path.as_path())?;
    let (_, token) = directory.create("bench", Role::Admin, None, None, now)?;
    let app = Arc::new(App::open(store.clone(), directory, config, Arc::new(SystemClock))?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(runtime::serve(listener, app, async {
        let _ = stop_rx.await;
    }));

    let ns = Arc::new(requests(a, start, true));
    let native = Arc::new(requests(a, start, false));
    // Two rounds, alternating, so that neither gets the warmer server or the emptier disk;
    // the second round (re-sends of the same readings: stored again, nothing twice) counts.
    send(&base, &token, &native, a.clients)?;
    send(&base, &token, &ns, a.clients)?;
    let native_1 = send(&base, &token, &native, a.clients)?;
    let ns_1 = send(&base, &token, &ns, a.clients)?;
    let last_day =
        format!("from={}&to={}", start + (a.days as i64 - 1) * MS_PER_DAY, start + a.days as i64 * MS_PER_DAY);
    let follower = read_ms(&base, &token, "/nightscout/ns-bench-0/api/v1/entries.json?count=288", a.repeat)?;
    let series =
        read_ms(&base, &token, &format!("/api/v1/patients/native-bench-0/series/blood_glucose?{last_day}"), a.repeat)?;
    let _ = stop_tx.send(());
    rt.block_on(serving)??;
    store.close()?;
    let docs_bytes: u64 = ["documents.sqlite", "documents.sqlite-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.path.join("events").join(f)).map_or(0, |m| m.len()))
        .sum();

    let readings = a.patients * a.days * 288;
    println!(
        "nightscout vs native ({} patients x {} days = {readings} readings each, {} per request, {} clients)",
        a.patients, a.days, a.batch, a.clients
    );
    println!(
        "  native NDJSON        {:>10.0} readings/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        native_1.0, native_1.1, native_1.2
    );
    println!(
        "  Nightscout entries   {:>10.0} readings/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({:.2}x of native)",
        ns_1.0,
        ns_1.1,
        ns_1.2,
        ns_1.0 / native_1.0
    );
    println!("  documents on disk    {:>10.1} bytes/entry", docs_bytes as f64 / readings as f64);
    println!("  follower: entries.json?count=288  median {follower:.2} ms");
    println!("  native series of the same day     median {series:.2} ms  ({:.2}x)", follower / series);
    Ok(ExitCode::SUCCESS)
}
