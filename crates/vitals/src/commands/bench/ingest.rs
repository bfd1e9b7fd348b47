//! The ingest benchmark (`vitals bench`): a deterministic wearable dataset pushed through
//! the real HTTP write path, then bytes on disk and the latency of three reference queries;
//! optionally the same data and queries against InfluxDB 1.x in the same run, with ratios.
//!
//! Dataset per patient-day: heart rate 1 Hz (integer bpm), EDA 4 Hz (0.001 µS), skin
//! temperature 4 Hz (0.01 °C), glucose every 5 min (integer mg/dL) = 777,888 samples.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use vitals_core::time::{MS_PER_DAY, MS_PER_MINUTE};
use vitals_core::{Clock, SystemClock};
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::runtime;
use vitals_storage::Store;

use super::{BenchArgs, Protocol};
use crate::commands::url_escape;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    HeartRate,
    Eda,
    SkinTemp,
    Glucose,
}

const SIGNALS: [Signal; 4] = [Signal::HeartRate, Signal::Eda, Signal::SkinTemp, Signal::Glucose];

impl Signal {
    fn code(self) -> &'static str {
        match self {
            Signal::HeartRate => "heart_rate",
            Signal::Eda => "eda",
            Signal::SkinTemp => "skin_temperature",
            Signal::Glucose => "blood_glucose",
        }
    }
    fn period_ms(self) -> i64 {
        match self {
            Signal::HeartRate => 1000,
            Signal::Eda | Signal::SkinTemp => 250,
            Signal::Glucose => 5 * MS_PER_MINUTE,
        }
    }
}

/// One unit of generation work: a patient's signal over one day.
#[derive(Clone, Copy, Debug)]
struct Unit {
    patient: usize,
    day: usize,
    signal: Signal,
}

struct Dataset {
    start_ms: i64,
    units: Vec<Unit>,
}

impl Dataset {
    fn new(patients: usize, days: usize, today_ms: i64) -> Dataset {
        let start_ms = today_ms - today_ms.rem_euclid(MS_PER_DAY) - days as i64 * MS_PER_DAY;
        let mut units = Vec::new();
        for day in 0..days {
            for patient in 0..patients {
                for signal in SIGNALS {
                    units.push(Unit { patient, day, signal });
                }
            }
        }
        Dataset { start_ms, units }
    }

    fn samples(&self) -> u64 {
        self.units.iter().map(|u| (MS_PER_DAY / u.signal.period_ms()) as u64).sum()
    }

    /// Calls `f(time_ms, value)` for every sample of a unit, deterministically.
    fn generate(&self, u: Unit, mut f: impl FnMut(i64, f64)) {
        let mut seed = (u.patient as u64 + 1) * 1_000_003 + (u.day as u64 + 1) * 7919 + u.signal as u64 * 31 + 17;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 10_000) as f64 / 10_000.0 - 0.5
        };
        let t0 = self.start_ms + u.day as i64 * MS_PER_DAY;
        let n = MS_PER_DAY / u.signal.period_ms();
        let mut walk: f64 = 0.0;
        for i in 0..n {
            let t = t0 + i * u.signal.period_ms();
            let phase = (t % MS_PER_DAY) as f64 / MS_PER_DAY as f64 * std::f64::consts::TAU;
            let v = match u.signal {
                Signal::HeartRate => {
                    walk = (walk + rnd() * 2.0).clamp(-15.0, 25.0);
                    (68.0 + 8.0 * phase.sin() + walk).round()
                }
                Signal::Eda => {
                    walk = (walk + rnd() * 0.01).clamp(-1.0, 3.0);
                    ((1.5 + walk + 0.3 * phase.cos()) * 1000.0).round() / 1000.0
                }
                Signal::SkinTemp => {
                    walk = (walk + rnd() * 0.02).clamp(-1.5, 1.5);
                    ((33.0 + walk + 0.5 * phase.sin()) * 100.0).round() / 100.0
                }
                Signal::Glucose => {
                    walk = (walk + rnd() * 8.0).clamp(-40.0, 80.0);
                    (110.0 + 20.0 * (phase * 3.0).sin() + walk).round()
                }
            };
            f(t, v);
        }
    }
}

fn patient_name(p: usize) -> String {
    format!("bench-p{p}")
}

/// Encodes samples into a request body of one wire format.
trait Encoder: Send + Sync {
    fn content_type(&self) -> &'static str;
    fn push(&self, out: &mut String, patient: &str, metric: &str, t: i64, v: f64);
}

struct NativeJson;
impl Encoder for NativeJson {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }
    fn push(&self, out: &mut String, patient: &str, metric: &str, t: i64, v: f64) {
        let _ = writeln!(out, "{{\"patient\":\"{patient}\",\"metric\":\"{metric}\",\"time\":{t},\"value\":{v}}}");
    }
}

struct LineProtocol;
impl Encoder for LineProtocol {
    fn content_type(&self) -> &'static str {
        "text/plain"
    }
    fn push(&self, out: &mut String, patient: &str, metric: &str, t: i64, v: f64) {
        let _ = writeln!(out, "{metric},patient={patient} value={v} {t}");
    }
}

struct IngestReport {
    samples: u64,
    elapsed: Duration,
    requests: usize,
}

/// Sends the dataset with `clients` threads; each request is sent only after the previous
/// one of that client was acknowledged.
fn ingest(
    ds: &Arc<Dataset>,
    clients: usize,
    batch: usize,
    encoder: Arc<dyn Encoder>,
    url: &str,
    auth: Option<String>,
    bar: &ProgressBar,
) -> anyhow::Result<IngestReport> {
    let next = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (ds, next, requests, encoder, url, auth, bar) =
            (ds.clone(), next.clone(), requests.clone(), encoder.clone(), url.to_owned(), auth.clone(), bar.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(600)))
                .build()
                .into();
            let mut body = String::with_capacity(batch * 80);
            let mut n = 0usize;
            let send = |body: &mut String, n: &mut usize| -> anyhow::Result<()> {
                if *n == 0 {
                    return Ok(());
                }
                let mut req = agent.post(&url).header("Content-Type", encoder.content_type());
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                let mut resp = req.send(body.as_bytes()).context("sending a batch")?;
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    bail!("{url}: {status}: {}", text.chars().take(300).collect::<String>());
                }
                let _ = resp.body_mut().read_to_string();
                requests.fetch_add(1, Ordering::Relaxed);
                bar.inc(*n as u64);
                body.clear();
                *n = 0;
                Ok(())
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(u) = ds.units.get(i).copied() else { break };
                let patient = patient_name(u.patient);
                let metric = u.signal.code();
                let mut err = None;
                ds.generate(u, |t, v| {
                    if err.is_some() {
                        return;
                    }
                    encoder.push(&mut body, &patient, metric, t, v);
                    n += 1;
                    if n >= batch
                        && let Err(e) = send(&mut body, &mut n)
                    {
                        err = Some(e);
                    }
                });
                if let Some(e) = err {
                    return Err(e);
                }
            }
            send(&mut body, &mut n)
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(IngestReport { samples: ds.samples(), elapsed: started.elapsed(), requests: requests.load(Ordering::Relaxed) })
}

fn median_ms(mut f: impl FnMut() -> anyhow::Result<()>, repeat: usize) -> anyhow::Result<(f64, f64)> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[(times.len() * 9 / 10).min(times.len() - 1)]))
}

fn http_get(agent: &ureq::Agent, url: &str, auth: Option<&str>) -> anyhow::Result<String> {
    let mut req = agent.get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(1 << 30).read_to_string()?;
    if status != 200 {
        bail!("GET {url}: {status}: {}", body.chars().take(300).collect::<String>());
    }
    Ok(body)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Latencies of the three reference queries, in ms (median, p90).
struct QueryTimes {
    q1: (f64, f64),
    q2: (f64, f64),
    q3: (f64, f64),
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem} GiB RAM")
}

pub(super) fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let clock = SystemClock;
    let ds = Arc::new(Dataset::new(a.patients, a.days, clock.now_ms()));
    let total = ds.samples();
    let tmp = tempfile_dir(a.keep_data.as_deref())?;
    let data_dir = tmp.path.clone();
    println!("# vitals bench");
    println!("machine: {}", machine());
    println!(
        "dataset: {} patients x {} days = {} samples (HR 1 Hz, EDA 4 Hz, skin temperature 4 Hz, glucose 5 min)",
        a.patients, a.days, total
    );
    println!(
        "clients: {}, batch: {} samples/request, protocol: {:?}, data dir: {}",
        a.clients,
        a.batch,
        a.protocol,
        data_dir.display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut config = Config::default();
    config.storage.data_dir = data_dir.clone();
    let store = Arc::new(Store::open(&data_dir, config.store_config(), Arc::new(SystemClock))?);
    let tokens = Directory::open(&data_dir)?;
    let (_, token) = tokens.create("bench", Role::Admin, None, None, clock.now_ms())?;
    let auth = format!("Bearer {token}");
    let app = Arc::new(App::open(store.clone(), tokens, config, Arc::new(SystemClock))?);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = rt.spawn(runtime::serve(listener, app, async move {
        let _ = stop_rx.await;
    }));

    let bar = progress(total);
    let (encoder, path): (Arc<dyn Encoder>, &str) = match a.protocol {
        Protocol::Native => (Arc::new(NativeJson), "/api/v1/samples"),
        Protocol::Line => (Arc::new(LineProtocol), "/write?db=bench&precision=ms"),
    };
    let r = ingest(&ds, a.clients, a.batch, encoder, &format!("{base}{path}"), Some(auth.clone()), &bar)?;
    bar.finish_and_clear();
    let vitals_rate = r.samples as f64 / r.elapsed.as_secs_f64();
    println!(
        "\nvitals ingest: {} samples in {:.1} s = {:.2} M samples/s durable over HTTP ({} requests)",
        r.samples,
        r.elapsed.as_secs_f64(),
        vitals_rate / 1e6,
        r.requests
    );
    let t = Instant::now();
    store.flush()?;
    while store.compact()? > 0 {}
    println!("flush + compaction: {:.1} s", t.elapsed().as_secs_f64());
    // The same data in day partitions only, then with the months that ended compacted
    // across days (lake.archive; both in this one run).
    let (day_bytes, day_segments) = (store.sizes().segment_bytes, store.sizes().segments);
    println!(
        "vitals storage in day partitions: {} bytes in {} segments = {:.3} bytes/sample",
        day_bytes,
        day_segments,
        day_bytes as f64 / total as f64
    );
    let t = Instant::now();
    let merges = store.compact_all()?;
    println!("compaction across days: {merges} merges in {:.1} s", t.elapsed().as_secs_f64());
    let lake_bytes = store.sizes().segment_bytes;
    let vitals_bps = lake_bytes as f64 / total as f64;
    println!(
        "vitals storage: {} bytes in {} segments = {:.3} bytes/sample (whole data dir {:.3})",
        lake_bytes,
        store.sizes().segments,
        vitals_bps,
        dir_bytes(&data_dir) as f64 / total as f64
    );

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let end = ds.start_ms + a.days as i64 * MS_PER_DAY;
    let p0 = patient_name(0);
    let q1_days = a.days.min(30) as i64;
    let vt = QueryTimes {
        q1: median_ms(
            || {
                http_get(
                    &agent,
                    &format!(
                        "{base}/api/v1/patients/{p0}/series/heart_rate?from={}&to={end}&every=1h&agg=mean,min,max",
                        end - q1_days * MS_PER_DAY
                    ),
                    Some(&auth),
                )
                .map(drop)
            },
            a.repeat,
        )?,
        q2: median_ms(
            || {
                for s in SIGNALS {
                    http_get(
                        &agent,
                        &format!(
                            "{base}/api/v1/patients/{p0}/series/{}?from={}&to={end}",
                            s.code(),
                            end - 10 * MS_PER_MINUTE
                        ),
                        Some(&auth),
                    )?;
                }
                Ok(())
            },
            a.repeat,
        )?,
        q3: median_ms(
            || {
                for p in 0..a.patients {
                    http_get(
                        &agent,
                        &format!(
                            "{base}/api/v1/patients/{}/series/blood_glucose?from={}&to={end}&every=1d&agg=mean",
                            patient_name(p),
                            ds.start_ms
                        ),
                        Some(&auth),
                    )?;
                }
                Ok(())
            },
            a.repeat,
        )?,
    };
    print_queries("vitals", &vt);
    // The same three questions in SQL (raw samples: DuckDB below has no rollups to use).
    let codes = SIGNALS.iter().map(|s| format!("'{}'", s.code())).collect::<Vec<_>>().join(", ");
    let sql = [
        format!(
            "SELECT date_trunc('hour', time) AS h, avg(value), min(value), max(value) FROM samples \
             WHERE patient = '{p0}' AND metric = 'heart_rate' AND time >= to_timestamp_millis({}) \
             AND time < to_timestamp_millis({end}) GROUP BY h ORDER BY h",
            end - q1_days * MS_PER_DAY
        ),
        format!(
            "SELECT metric, time, value FROM samples WHERE patient = '{p0}' AND metric IN ({codes}) \
             AND time >= to_timestamp_millis({}) AND time < to_timestamp_millis({end})",
            end - 10 * MS_PER_MINUTE
        ),
        format!(
            "SELECT patient, date_trunc('day', time) AS d, avg(value) FROM samples WHERE metric = 'blood_glucose' \
             AND time >= to_timestamp_millis({}) AND time < to_timestamp_millis({end}) GROUP BY patient, d",
            ds.start_ms
        ),
    ];
    let run_sql = |q: &str| sql_post(&agent, &format!("{base}/api/v1/sql?format=arrow"), &auth, q);
    let st = QueryTimes {
        q1: median_ms(|| run_sql(&sql[0]), a.repeat)?,
        q2: median_ms(|| run_sql(&sql[1]), a.repeat)?,
        q3: median_ms(|| run_sql(&sql[2]), a.repeat)?,
    };
    print_queries("vitals SQL", &st);
    // q1 as the REST API answers it: from the hourly rollups, not the raw samples.
    let q1r = format!(
        "SELECT hour, mean, min, max FROM rollups_hourly WHERE patient = '{p0}' AND metric = 'heart_rate' \
         AND hour >= to_timestamp_millis({}) AND hour < to_timestamp_millis({end}) ORDER BY hour",
        end - q1_days * MS_PER_DAY
    );
    let (m, p90) = median_ms(|| run_sql(&q1r), a.repeat)?;
    println!("vitals SQL q1 from rollups_hourly: median {m:.2} ms, p90 {p90:.2} ms");
    let _ = stop_tx.send(());
    let _ = rt.block_on(server_task);
    store.close()?;
    duckdb_queries(&data_dir.join("lake"), &sql, a.repeat);

    if let Some(influx) = &a.influx_url {
        println!("\n## InfluxDB at {influx}, same data, same clients and batch size");
        http_post(&agent, &format!("{influx}/query?q={}", url_escape("DROP DATABASE bench")))?;
        http_post(&agent, &format!("{influx}/query?q={}", url_escape("CREATE DATABASE bench")))?;
        let bar = progress(total);
        let ir = ingest(
            &ds,
            a.clients,
            a.batch,
            Arc::new(LineProtocol),
            &format!("{influx}/write?db=bench&precision=ms"),
            None,
            &bar,
        )?;
        bar.finish_and_clear();
        let influx_rate = ir.samples as f64 / ir.elapsed.as_secs_f64();
        println!("influx ingest: {:.2} M samples/s", influx_rate / 1e6);
        let q = |s: &str| format!("{influx}/query?db=bench&epoch=ms&q={}", url_escape(s));
        let it = QueryTimes {
            q1: median_ms(
                || {
                    http_get(&agent, &q(&format!("SELECT mean(value),min(value),max(value) FROM heart_rate WHERE patient='{p0}' AND time >= {}ms AND time < {end}ms GROUP BY time(1h)", end - q1_days * MS_PER_DAY)), None).map(drop)
                },
                a.repeat,
            )?,
            q2: median_ms(
                || {
                    http_get(&agent, &q(&format!("SELECT * FROM heart_rate,eda,skin_temperature,blood_glucose WHERE patient='{p0}' AND time >= {}ms AND time < {end}ms", end - 10 * MS_PER_MINUTE)), None).map(drop)
                },
                a.repeat,
            )?,
            q3: median_ms(
                || {
                    http_get(&agent, &q(&format!("SELECT mean(value) FROM blood_glucose WHERE time >= {}ms AND time < {end}ms GROUP BY time(1d), patient", ds.start_ms)), None).map(drop)
                },
                a.repeat,
            )?,
        };
        print_queries("influx", &it);
        let influx_bytes = a.influx_dir.as_deref().map(dir_bytes);
        println!("\n## ratios (InfluxDB / Vitals; above 1 means Vitals is better)");
        println!("| measure | vitals | influxdb | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| ingest M samples/s | {:.2} | {:.2} | {:.1}x |",
            vitals_rate / 1e6,
            influx_rate / 1e6,
            vitals_rate / influx_rate
        );
        if let Some(b) = influx_bytes {
            let ibps = b as f64 / total as f64;
            println!("| bytes/sample | {vitals_bps:.3} | {ibps:.3} | {:.1}x |", ibps / vitals_bps);
        }
        for (name, v, i) in [("q1 ms", vt.q1.0, it.q1.0), ("q2 ms", vt.q2.0, it.q2.0), ("q3 ms", vt.q3.0, it.q3.0)] {
            println!("| {name} (median) | {v:.2} | {i:.2} | {:.1}x |", i / v);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn sql_post(agent: &ureq::Agent, url: &str, auth: &str, sql: &str) -> anyhow::Result<()> {
    let mut resp = agent
        .post(url)
        .header("Authorization", auth)
        .header("Content-Type", "application/sql")
        .send(sql)
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
    if status != 200 {
        bail!("POST {url}: {status}: {}", String::from_utf8_lossy(&body).chars().take(300).collect::<String>());
    }
    Ok(())
}

/// DuckDB (PyPI, when installed) over the same lake, the same SQL with `samples` as the
/// view `vitals lake ddl --for duckdb` creates (hive partitions prune by metric and
/// patient); prints its medians.
fn duckdb_queries(lake: &Path, sql: &[String; 3], repeat: usize) {
    const SCRIPT: &str = r#"
import json, sys, time
import duckdb
lake, repeat, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("CREATE MACRO to_timestamp_millis(x) AS epoch_ms(x)")
# `samples` as `vitals lake ddl --for duckdb` prints it (day partitions and archived months).
con.execute(sys.argv[4])
out = []
for q in queries:
    con.execute(q).fetchall()
    ts = []
    for _ in range(max(repeat, 1)):
        t = time.perf_counter(); con.execute(q).fetchall(); ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    out.append([ts[len(ts) // 2], ts[min(len(ts) * 9 // 10, len(ts) - 1)]])
print(json.dumps(out))
"#;
    let queries = serde_json::to_string(sql).unwrap_or_default();
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(lake)
        .args([repeat.to_string(), queries])
        .arg(vitals_storage::lake_ddl::ddl(
            vitals_storage::lake_ddl::Engine::DuckDb,
            &lake.to_string_lossy(),
            &vitals_storage::lake_ddl::metrics_in(lake),
            &vitals_storage::lake_ddl::metrics_in(&lake.join("archive")),
        ))
        .output();
    let parsed = match out {
        Ok(o) if o.status.success() => serde_json::from_slice::<Vec<(f64, f64)>>(&o.stdout).map_err(|e| e.to_string()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).chars().take(500).collect()),
        Err(e) => Err(e.to_string()),
    };
    match parsed.as_deref() {
        Ok([q1, q2, q3]) => print_queries("duckdb (same lake, same SQL)", &QueryTimes { q1: *q1, q2: *q2, q3: *q3 }),
        Ok(_) => println!("duckdb: not measured (unexpected answer)"),
        Err(e) => println!("duckdb: not measured (python3 with duckdb is needed): {e}"),
    }
}

fn print_queries(who: &str, t: &QueryTimes) {
    println!(
        "{who} q1 (1 patient, heart rate, 30 days, hourly mean/min/max): median {:.2} ms, p90 {:.2} ms",
        t.q1.0, t.q1.1
    );
    println!("{who} q2 (1 patient, last 10 min of all 4 metrics, raw): median {:.2} ms, p90 {:.2} ms", t.q2.0, t.q2.1);
    println!("{who} q3 (daily mean glucose of every patient): median {:.2} ms, p90 {:.2} ms", t.q3.0, t.q3.1);
}

fn http_post(agent: &ureq::Agent, url: &str) -> anyhow::Result<()> {
    let mut resp = agent.post(url).send(&[] as &[u8]).with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        bail!("POST {url}: {status}: {}", resp.body_mut().read_to_string().unwrap_or_default());
    }
    Ok(())
}

/// A data directory: the given one, or a temporary one removed afterwards.
pub(super) struct DataDir {
    pub(super) path: PathBuf,
    remove: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) fn tempfile_dir(keep: Option<&Path>) -> anyhow::Result<DataDir> {
    if let Some(k) = keep {
        std::fs::create_dir_all(k)?;
        return Ok(DataDir { path: k.to_owned(), remove: false });
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = std::env::temp_dir().join(format!("vitals-bench-{}", hex::encode(bytes)));
    std::fs::create_dir_all(&path)?;
    Ok(DataDir { path, remove: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    #[test]
    fn dataset_is_deterministic_quantized_and_plausible() {
        let ds = Dataset::new(2, 1, 1_763_780_400_000);
        assert_eq!(ds.samples(), 2 * 777_888);
        for u in ds.units.clone() {
            let mut a = Vec::new();
            ds.generate(u, |t, v| a.push((t, v)));
            let mut b = Vec::new();
            ds.generate(u, |t, v| b.push((t, v)));
            assert_eq!(a, b, "deterministic");
            let m = Catalog::standard().by_code(u.signal.code()).expect("metric");
            for (_, v) in &a {
                assert!((m.min..=m.max).contains(v), "{} {v}", m.code);
                assert_eq!(m.quantize(*v), *v, "quantized like a device");
            }
        }
    }
}
