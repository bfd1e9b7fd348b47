//! `vitals simulate`: synthetic patients (crate `vitals-sim`) written to files or sent to a
//! running server over an ingest path, as a backfill, live (real time or accelerated), or
//! as a sustained load with latency percentiles.

mod load;
mod stream;
mod targets;

pub(crate) use stream::{LiveOptions, backfill, live};

pub(crate) use targets::{FileTarget, HttpTarget, KafkaTarget, MqttTarget, Sent, Target, Via};

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vitals_core::time::{DurationMs, parse_time};
use vitals_core::{Clock, SystemClock};
use vitals_sim::{Encoding, Member, Mix, Options, Patient, Simulator};

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
    /// battery), `mqtt` (native NDJSON through --mqtt-broker), or `kafka` (native NDJSON to
    /// --kafka-topic on --kafka-brokers). Readings a path has no
    /// form for are counted as skipped.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) via: Via,
    /// The MQTT broker (host:port) for --via mqtt.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub(crate) mqtt_broker: String,
    /// Topic prefix for --via mqtt (Vitals' `mqtt.topic_prefix`).
    #[arg(long, default_value = "vitals")]
    pub(crate) mqtt_topic_prefix: String,
    /// The Kafka cluster (host:port[,host:port]) for --via kafka.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub(crate) kafka_brokers: String,
    /// The topic for --via kafka (one of Vitals' `kafka.topics`).
    #[arg(long, default_value = "vitals-readings")]
    pub(crate) kafka_topic: String,
    /// Also write the ground-truth labels (seizures, illnesses, low-glucose episodes) here.
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Mean seizures per day of epilepsy patients.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) seizures_per_day: f64,
    /// Load mode: send this many samples per second for --duration (default 30s).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Load mode: each patient's timeline covers at most this much history (ending an hour
    /// ago) and starts again from its beginning when used up, sending the same readings
    /// again. The lake then stops growing, so a long run (a soak) measures the server, not
    /// its data; without it, the run writes as much new history as it needs.
    #[arg(long)]
    pub(crate) span: Option<DurationMs>,
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

fn progress(len: u64, quiet: bool, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    }
    bar
}

pub(crate) fn run(a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let stop = Stop::on_signals()?;
    if let Some(rate) = a.rate {
        let client = remote_client(a)?.context("the load mode needs --url and --token")?;
        return load::load(a, &client, rate, &stop);
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
        (None, _) if a.via == Via::Kafka => {
            (Arc::new(KafkaTarget::connect(&a.kafka_brokers, &a.kafka_topic, a.batch)?), None)
        }
        (None, Some(_)) => {
            let client = remote_client(a)?.context("--url needs --token")?;
            let token = a.remote.token.clone().unwrap_or_default();
            (Arc::new(HttpTarget::new(client, &token, a.via, a.batch)), None)
        }
        (None, None) => bail!(
            "where to? --out DIR, --url URL --token TOKEN, --via mqtt --mqtt-broker HOST:PORT, or --via kafka --kafka-brokers HOST:PORT"
        ),
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
            stream::append_labels(&cohort, from, now, l, events.as_mut().map(|e| e as &mut dyn std::io::Write))?;
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
                    stream::append_labels(&cohort, last, t, l, events.as_mut().map(|e| e as &mut dyn std::io::Write))
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
