//! `vitals simulate`: synthetic patients (crate `vitals-sim`) written to files or sent to a
//! running server over an ingest path, as a backfill, live (real time or accelerated), or
//! as a sustained load with latency percentiles.

mod targets;

pub(crate) use targets::{FileTarget, HttpTarget, MqttTarget, Sent, Target, Via};

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vitals_core::time::{DurationMs, parse_time};
use vitals_core::time::{MS_PER_DAY as DAY, MS_PER_HOUR as HOUR};
use vitals_core::{Clock, SystemClock};
use vitals_sim::{Encoding, Member, Mix, Options, Patient, Reading, SimEvent, Simulator, Which};

use crate::cli::RemoteArgs;
use crate::client::Client;

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Seed: the same seed gives the same data, byte for byte.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// `demo` (20 people covering every profile) or a profile mix for `--patients` people,
    /// e.g. `diabetic`, `epilepsy`, `diabetic+wearable` (profiles: diabetic, athlete,
    /// party-goer, low-glucose, elderly, wearable, epilepsy, illness).
    #[arg(long, default_value = "demo")]
    pub(crate) cohort: String,
    /// People in a profile-mix cohort (or in the load mode).
    #[arg(long, default_value_t = 5)]
    pub(crate) patients: usize,
    /// Write this much history, ending now (or at --until), as fast as possible.
    #[arg(long)]
    pub(crate) backfill: Option<DurationMs>,
    /// History of the dense streams (the wristband's 4 Hz EDA and 32 Hz motion); default:
    /// the whole backfill.
    #[arg(long)]
    pub(crate) dense_backfill: Option<DurationMs>,
    /// End of the backfill (RFC 3339 or ms since the epoch) instead of now: for files that
    /// are the same whenever they are made.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// After the backfill (if any), stream live until Ctrl-C or --duration.
    #[arg(long)]
    pub(crate) live: bool,
    /// Live speed: 60 = one simulated minute per second. Sent to a server, the simulated
    /// clock never runs ahead of the real one (it catches up, then runs in real time).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    /// Stop live streaming (or the load) after this long.
    #[arg(long)]
    pub(crate) duration: Option<DurationMs>,
    /// Write files here (one per patient, plus cohort.json, labels.ndjson, events.ndjson)
    /// instead of sending to a server.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// File format with --out.
    #[arg(long, value_enum, default_value = "ndjson")]
    pub(crate) format: FileFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Ingest path: `native` (NDJSON to /api/v1/samples), `line` (InfluxDB line protocol
    /// to /write), `health-auto-export` (the app's JSON: hourly sums, heart rate
    /// Min/Avg/Max, sleep, workouts), `nightscout` (an uploader's glucose entries and
    /// battery), or `mqtt` (native NDJSON through --mqtt-broker). Readings a path has no
    /// form for are counted as skipped.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) via: Via,
    /// The MQTT broker (host:port) for --via mqtt.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub(crate) mqtt_broker: String,
    /// Topic prefix for --via mqtt (Vitals' `mqtt.topic_prefix`).
    #[arg(long, default_value = "vitals")]
    pub(crate) mqtt_topic_prefix: String,
    /// Also write the ground-truth labels (seizures, illnesses, low-glucose episodes) here.
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Mean seizures per day of epilepsy patients.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) seizures_per_day: f64,
    /// Load mode: send this many samples per second for --duration (default 30s).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Concurrent connections to the server.
    #[arg(long, default_value_t = 2)]
    pub(crate) connections: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 5000)]
    pub(crate) batch: usize,
    /// Print the final report as one JSON line.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FileFormat {
    Ndjson,
    Csv,
    Line,
}

/// The simulated people and their generator.
pub(crate) struct Cohort {
    pub(crate) sim: Simulator,
    pub(crate) members: Vec<(Member, Patient)>,
}

impl Cohort {
    pub(crate) fn new(seed: u64, members: Vec<Member>, options: Options) -> Cohort {
        let sim = Simulator::new(seed, options);
        let members = members.into_iter().map(|m| (m.clone(), sim.patient(&m.id, m.profiles.clone()))).collect();
        Cohort { sim, members }
    }

    pub(crate) fn from_args(a: &SimulateArgs) -> anyhow::Result<Cohort> {
        let options = Options { seizures_per_day: a.seizures_per_day, ..Options::default() };
        let members = if a.cohort == "demo" {
            vitals_sim::demo_cohort(a.seed)
        } else {
            let mix: Mix = a.cohort.parse().with_context(|| format!("--cohort {:?}", a.cohort))?;
            vitals_sim::uniform_cohort(a.seed, &mix, a.patients)
        };
        Ok(Cohort::new(a.seed, members, options))
    }
}

/// Set once Ctrl-C or SIGTERM arrives; waits end early then.
#[derive(Clone, Default)]
pub(crate) struct Stop {
    state: Arc<(Mutex<bool>, Condvar)>,
}

impl Stop {
    /// Listens for Ctrl-C and SIGTERM on a small thread of its own.
    pub(crate) fn on_signals() -> anyhow::Result<Stop> {
        let stop = Stop::default();
        let s = stop.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            rt.block_on(vitals_server::shutdown::os_signal());
            s.trigger();
        });
        Ok(stop)
    }

    pub(crate) fn trigger(&self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        cv.notify_all();
    }

    pub(crate) fn stopped(&self) -> bool {
        self.state.0.lock().map_or(true, |s| *s)
    }

    /// Waits up to `d`; true if stopping.
    pub(crate) fn wait(&self, d: Duration) -> bool {
        let (lock, cv) = &*self.state;
        let Ok(guard) = lock.lock() else { return true };
        match cv.wait_timeout_while(guard, d, |stopped| !*stopped) {
            Ok((stopped, _)) => *stopped,
            Err(_) => true,
        }
    }
}

/// Totals of a run, shared by workers.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) skipped: AtomicU64,
}

impl Totals {
    fn add(&self, s: Sent) {
        self.accepted.fetch_add(s.accepted, Ordering::Relaxed);
        self.rejected.fetch_add(s.rejected, Ordering::Relaxed);
        self.skipped.fetch_add(s.skipped, Ordering::Relaxed);
    }

    fn take(&self) -> Sent {
        Sent {
            accepted: self.accepted.swap(0, Ordering::Relaxed),
            rejected: self.rejected.swap(0, Ordering::Relaxed),
            skipped: self.skipped.swap(0, Ordering::Relaxed),
        }
    }
}

/// One patient's stretch of time.
#[derive(Debug, Clone, Copy)]
struct Window {
    patient: usize,
    from: i64,
    to: i64,
    which: Which,
}

/// Generates a window and sends it in batches (whole, with the events that ended in it,
/// to a target that aggregates hours).
fn send_window(cohort: &Cohort, w: Window, target: &dyn Target, totals: &Totals) -> anyhow::Result<()> {
    let Window { patient: i, from, to, which } = w;
    let (_, patient) = &cohort.members[i];
    let hourly = target.hourly();
    let gen_from = if hourly { from.div_euclid(HOUR) * HOUR } else { from };
    let batch = if hourly { usize::MAX } else { target.batch().max(1) };
    let events: Vec<SimEvent> = if hourly {
        let mut ev = cohort.sim.events(patient, from - 2 * DAY, to);
        ev.retain(|e| e.end_ms >= from && e.end_ms < to);
        ev
    } else {
        Vec::new()
    };
    let mut readings = Vec::with_capacity(batch.min(1 << 16));
    let mut failure = None;
    let mut flush = |readings: &mut Vec<Reading>, events: &[SimEvent]| {
        if failure.is_some() || (readings.is_empty() && events.is_empty()) {
            readings.clear();
            return;
        }
        match target.send(patient, readings, events) {
            Ok(s) => totals.add(s),
            Err(e) => failure = Some(e),
        }
        readings.clear();
    };
    cohort.sim.generate(patient, gen_from, to, which, &mut |r| {
        readings.push(r);
        if readings.len() >= batch {
            flush(&mut readings, &[]);
        }
    });
    flush(&mut readings, &events);
    failure.map_or(Ok(()), Err)
}

/// Writes the cohort's labels and events starting in `[from, to)` as NDJSON lines.
fn append_labels(
    cohort: &Cohort,
    from: i64,
    to: i64,
    labels: &mut dyn std::io::Write,
    events: Option<&mut dyn std::io::Write>,
) -> anyhow::Result<()> {
    for (_, p) in &cohort.members {
        for l in cohort.sim.labels(p, from, to) {
            writeln!(labels, "{}", serde_json::to_string(&l)?)?;
        }
    }
    if let Some(ev) = events {
        for (_, p) in &cohort.members {
            for e in cohort.sim.events(p, from, to) {
                writeln!(ev, "{}", serde_json::to_string(&e)?)?;
            }
        }
    }
    Ok(())
}

/// The backfill of `[from, to)` (dense streams from `dense_from`), over `workers` threads.
pub(crate) fn backfill(
    cohort: &Cohort,
    target: &dyn Target,
    (from, dense_from, to): (i64, i64, i64),
    workers: usize,
    stop: &Stop,
    quiet: bool,
) -> anyhow::Result<Sent> {
    const CHUNK: i64 = 3_600_000;
    let mut units = Vec::new();
    for i in 0..cohort.members.len() {
        let mut t = from;
        while t < to {
            let end = (t + CHUNK).min(to);
            units.push(Window { patient: i, from: t, to: end, which: Which::Sparse });
            if end > dense_from && target.carries_dense() {
                units.push(Window { patient: i, from: t.max(dense_from), to: end, which: Which::Dense });
            }
            t = end;
        }
    }
    let bar = progress(units.len() as u64, quiet, "{elapsed_precise} [{bar:30}] {pos}/{len} hours {msg}");
    let totals = Totals::default();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= units.len() || stop.stopped() {
                        return;
                    }
                    if let Err(e) = send_window(cohort, units[k], target, &totals) {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        next.store(units.len(), Ordering::Relaxed);
                        return;
                    }
                    bar.inc(1);
                    let n = totals.accepted.load(Ordering::Relaxed);
                    bar.set_message(format!("{n} samples, {:.0}/s", n as f64 / started.elapsed().as_secs_f64()));
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(totals.take())
}

fn progress(len: u64, quiet: bool, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    }
    bar
}

/// How live streaming runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveOptions {
    /// Simulated time to start from.
    pub(crate) start_ms: i64,
    /// Simulated seconds per wall-clock second.
    pub(crate) speed: f64,
    /// Never run ahead of the real clock (a server refuses the future).
    pub(crate) clamp_to_now: bool,
    /// Stop at this instant.
    pub(crate) until_wall: Option<Instant>,
}

/// Streams live: each second, what the simulated clock passed since the last tick. Returns
/// the simulated time reached.
pub(crate) fn live(
    cohort: &Cohort,
    target: &dyn Target,
    o: LiveOptions,
    stop: &Stop,
    mut on_tick: impl FnMut(i64, Sent),
) -> anyhow::Result<i64> {
    let LiveOptions { start_ms, speed, clamp_to_now, until_wall } = o;
    let clock = SystemClock;
    let wall0 = Instant::now();
    let mut sim_at = start_ms;
    let totals = Totals::default();
    loop {
        if stop.wait(Duration::from_secs(1)) || until_wall.is_some_and(|u| Instant::now() >= u) {
            return Ok(sim_at);
        }
        let mut next = start_ms + (wall0.elapsed().as_secs_f64() * speed * 1000.0) as i64;
        if clamp_to_now {
            next = next.min(clock.now_ms());
        }
        if next <= sim_at {
            continue;
        }
        for i in 0..cohort.members.len() {
            let which = if target.carries_dense() { Which::All } else { Which::Sparse };
            let w = Window { patient: i, from: sim_at, to: next, which };
            send_window(cohort, w, target, &totals)?;
        }
        on_tick(next, totals.take());
        sim_at = next;
    }
}

pub(crate) fn run(a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let stop = Stop::on_signals()?;
    if let Some(rate) = a.rate {
        let client = remote_client(a)?.context("the load mode needs --url and --token")?;
        return load(a, &client, rate, &stop);
    }
    let cohort = Cohort::from_args(a)?;
    let now = match &a.until {
        Some(t) => parse_time(t).with_context(|| format!("--until {t:?}"))?,
        None => SystemClock.now_ms(),
    };
    if a.backfill.is_none() && !a.live {
        bail!("nothing to do: give --backfill DURATION, --live, or --rate");
    }
    let (target, files): (Arc<dyn Target>, Option<Arc<FileTarget>>) = match (&a.out, &a.remote.url) {
        (Some(_), Some(_)) => bail!("--out and --url exclude each other"),
        (Some(dir), None) => {
            let encoding = match a.format {
                FileFormat::Ndjson => Encoding::Ndjson,
                FileFormat::Csv => Encoding::Csv,
                FileFormat::Line => Encoding::Line,
            };
            let f = Arc::new(FileTarget::new(dir, encoding, a.batch)?);
            std::fs::write(dir.join("cohort.json"), serde_json::to_vec_pretty(&cohort_json(&cohort, a.seed))?)?;
            (f.clone(), Some(f))
        }
        (None, _) if a.via == Via::Mqtt => {
            let id = format!("vitals-simulate-{}", std::process::id());
            (Arc::new(MqttTarget::connect(&a.mqtt_broker, &a.mqtt_topic_prefix, &id, a.batch)?), None)
        }
        (None, Some(_)) => {
            let client = remote_client(a)?.context("--url needs --token")?;
            let token = a.remote.token.clone().unwrap_or_default();
            (Arc::new(HttpTarget::new(client, &token, a.via, a.batch)), None)
        }
        (None, None) => bail!("where to? --out DIR, --url URL --token TOKEN, or --via mqtt --mqtt-broker HOST:PORT"),
    };
    let mut labels: Option<BufWriter<File>> = match (&a.labels, &a.out) {
        (Some(p), _) => Some(BufWriter::new(File::create(p).with_context(|| format!("creating {}", p.display()))?)),
        (None, Some(dir)) => Some(BufWriter::new(File::create(dir.join("labels.ndjson"))?)),
        _ => None,
    };
    let mut events = match &a.out {
        Some(dir) => Some(BufWriter::new(File::create(dir.join("events.ndjson"))?)),
        None => None,
    };
    let workers = if files.is_some() { 1 } else { a.connections };
    let mut total = Sent::default();
    let mut sim_at = now;
    if let Some(b) = a.backfill {
        let from = now - b.as_ms();
        let dense_from = now - a.dense_backfill.map_or(b.as_ms(), |d| d.as_ms().min(b.as_ms()));
        let t0 = Instant::now();
        total = backfill(&cohort, target.as_ref(), (from, dense_from, now), workers, &stop, a.quiet)?;
        if let Some(l) = labels.as_mut() {
            append_labels(&cohort, from, now, l, events.as_mut().map(|e| e as &mut dyn std::io::Write))?;
        }
        if !a.json {
            eprintln!(
                "backfill: {} patients, {} accepted, {} rejected, {} skipped in {:.1}s",
                cohort.members.len(),
                total.accepted,
                total.rejected,
                total.skipped,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if a.live && !stop.stopped() {
        if !a.json {
            eprintln!("streaming live at {}x (Ctrl-C stops)", a.speed);
        }
        let until_wall = a.duration.map(|d| Instant::now() + Duration::from_millis(d.as_ms() as u64));
        let mut last = sim_at;
        let mut failure = None;
        let o = LiveOptions { start_ms: sim_at, speed: a.speed, clamp_to_now: files.is_none(), until_wall };
        sim_at = live(&cohort, target.as_ref(), o, &stop, |t, s| {
            total.accepted += s.accepted;
            total.rejected += s.rejected;
            total.skipped += s.skipped;
            if let Some(l) = labels.as_mut()
                && let Err(e) =
                    append_labels(&cohort, last, t, l, events.as_mut().map(|e| e as &mut dyn std::io::Write))
            {
                failure = Some(e);
            }
            last = t;
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    if let Some(f) = files {
        f.finish()?;
    }
    for w in [labels.as_mut(), events.as_mut()].into_iter().flatten() {
        w.flush()?;
    }
    let report = serde_json::json!({
        "patients": cohort.members.len(),
        "accepted": total.accepted,
        "rejected": total.rejected,
        "skipped": total.skipped,
        "until_ms": sim_at,
    });
    if a.json {
        println!("{report}");
    } else {
        let verb = if a.out.is_some() { "written" } else { "accepted" };
        println!("{} samples {verb}, {} rejected, {} skipped", total.accepted, total.rejected, total.skipped);
    }
    Ok(if total.rejected > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn remote_client(a: &SimulateArgs) -> anyhow::Result<Option<Client>> {
    a.remote.url.as_deref().map(|u| Client::new(u, a.remote.token.as_deref())).transpose()
}

/// The cohort as written beside the data: pseudonyms, profiles and display names.
pub(crate) fn cohort_json(c: &Cohort, seed: u64) -> serde_json::Value {
    let members: Vec<&Member> = c.members.iter().map(|(m, _)| m).collect();
    serde_json::json!({"seed": seed, "patients": members})
}

/// Latency percentiles of a run, in milliseconds.
fn percentiles(lat_us: &mut [u64]) -> (f64, f64, f64) {
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
fn load(a: &SimulateArgs, client: &Client, rate: u64, stop: &Stop) -> anyhow::Result<ExitCode> {
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
    let now = SystemClock.now_ms();
    let start_ms = now - (per_patient as i64) * 5_000 * 11 / 10 - 3_600_000;
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
