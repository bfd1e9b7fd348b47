//! `vitals demo`: the server on the embedded default with a synthetic cohort (20 people,
//! every profile), a 7-day backfill and then live data, in one command, with every rule
//! pack and the seizure detector on and live alerts written to the log. Stopped with
//! Ctrl-C, it resumes where it left off when run again.
//!
//! The demo keeps its own state in `<data_dir>/demo/`: `cohort.json` (seed, pseudonyms,
//! profiles and made-up display names), `progress.json` (how far the data goes) and
//! `labels.ndjson` (ground truth: seizures, illnesses, low-glucose episodes).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use vitals_core::time::DurationMs;
use vitals_core::{Clock, SystemClock};
use vitals_sim::{Member, Options};

use crate::client::Client;
use crate::commands::simulate::{Cohort, HttpTarget, LiveOptions, Stop, Via, backfill, live};
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::runtime;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// History written on first start (and at most this much to catch up on a resume).
    #[arg(long, default_value = "7d")]
    pub(crate) backfill: DurationMs,
    /// History of the dense wristband streams (4 Hz EDA, 32 Hz motion).
    #[arg(long, default_value = "1d")]
    pub(crate) dense_backfill: DurationMs,
    /// Seed of a new cohort (a resumed demo keeps its own).
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Mean seizures per day of the epilepsy patients.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) seizures_per_day: f64,
    /// Stop after streaming live this long (default: until Ctrl-C).
    #[arg(long)]
    pub(crate) duration: Option<DurationMs>,
}

/// `<data_dir>/demo/cohort.json`.
#[derive(Debug, Serialize, Deserialize)]
struct SavedCohort {
    seed: u64,
    seizures_per_day: f64,
    patients: Vec<Member>,
}

/// `<data_dir>/demo/progress.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    until_ms: i64,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub(crate) fn run(config: Config, a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let stop = Stop::on_signals()?;
    let clock = SystemClock;
    let dir = config.storage.data_dir.clone();
    let state = config.data_dir().demo();
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let cohort_path = state.join("cohort.json");
    let progress_path = state.join("progress.json");
    let saved: SavedCohort = match std::fs::read(&cohort_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", cohort_path.display()))?,
        Err(_) => {
            let c = SavedCohort {
                seed: a.seed,
                seizures_per_day: a.seizures_per_day,
                patients: vitals_sim::demo_cohort(a.seed),
            };
            write_atomically(&cohort_path, &serde_json::to_vec_pretty(&c)?)?;
            c
        }
    };
    let progress: Option<Progress> = std::fs::read(&progress_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let options = Options { seizures_per_day: saved.seizures_per_day, ..Options::default() };
    let cohort = Cohort::new(saved.seed, saved.patients, options);

    let config = with_demo_alerting(config);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let store = vitals_server::stores::open_store(&config)?;
    let tokens = Directory::open(&dir)?;
    // A fresh admin token per run; the previous run's one stops working.
    for t in tokens.list()? {
        if t.name == "demo" && t.revoked_ms.is_none() {
            tokens.revoke(&t.id, clock.now_ms())?;
        }
    }
    let (_, secret) = tokens.create("demo", Role::Admin, None, None, clock.now_ms())?;
    // A dashboard account with a fresh password per run, too.
    let password = vitals_meta::random_secret("")?[..20].to_owned();
    if tokens.meta().user("demo")?.is_none() {
        tokens.create_user("demo", Role::Admin, Some(&password), None, clock.now_ms())?;
    } else {
        let change = vitals_server::people::UserChange {
            password: Some(password.clone()),
            unlock: Some(true),
            ..Default::default()
        };
        vitals_server::people::change_user(tokens.meta(), "demo", change)?;
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(config.listen_addr()))
        .with_context(|| format!("listening on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let packs = config.alerting.packs.clone();
    let app = Arc::new(App::open(store.clone(), tokens, config, Arc::new(SystemClock))?);
    let app_rules = app.rules.list().len();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(runtime::serve(listener, app, async move {
        let _ = shutdown_rx.await;
    }));

    let url = format!("http://{addr}");
    println!("vitals listening on {url}");
    println!("demo: {} synthetic patients, data in {}", cohort.members.len(), dir.display());
    println!("admin token for this run: {secret}");
    println!("dashboard: {url}/ (sign in as demo, password {password})");
    println!("try: curl -H 'Authorization: Bearer {secret}' {url}/api/v1/patients");
    println!(
        "alerting: {} rules (packs {}) and the seizure detector; live alerts are written to this log, \
         history is recorded without paging: curl -H 'Authorization: Bearer {secret}' {url}/api/v1/alerts",
        app_rules,
        packs.join(", ")
    );
    let _ = std::io::stdout().flush();

    let now = clock.now_ms();
    let from = match &progress {
        Some(p) => p.until_ms.max(now - a.backfill.as_ms()),
        None => now - a.backfill.as_ms(),
    };
    let dense_from = from.max(now - a.dense_backfill.as_ms());
    let labels_path = state.join("labels.ndjson");
    let mut labels = std::fs::OpenOptions::new().create(true).append(true).open(&labels_path)?;
    let target = HttpTarget::new(Client::new(&url, Some(&secret))?, &secret, Via::Native, 20_000);
    let result = (|| -> anyhow::Result<()> {
        if progress.is_some() {
            println!("resuming: catching up {} of data", DurationMs(((now - from) / 1000).max(1) * 1000));
        }
        let t0 = Instant::now();
        let sent = backfill(&cohort, &target, (from, dense_from, now), 2, &stop, false)?;
        if stop.stopped() {
            return Ok(());
        }
        write_labels(&cohort, from, now, &mut labels)?;
        write_atomically(&progress_path, &serde_json::to_vec(&Progress { until_ms: now })?)?;
        println!(
            "backfill done: {} samples in {:.1}s; streaming live (Ctrl-C stops, run again to resume)",
            sent.accepted,
            t0.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        let until_wall = a.duration.map(|d| Instant::now() + Duration::from_millis(d.as_ms() as u64));
        let mut last = now;
        let mut failure = None;
        let o = LiveOptions { start_ms: now, speed: 1.0, clamp_to_now: true, until_wall };
        live(&cohort, &target, o, &stop, |t, _| {
            let r = write_labels(&cohort, last, t, &mut labels)
                .and_then(|()| write_atomically(&progress_path, &serde_json::to_vec(&Progress { until_ms: t })?));
            if let Err(e) = r {
                failure.get_or_insert(e);
            }
            last = t;
        })?;
        failure.map_or(Ok(()), Err)
    })();
    let _ = shutdown_tx.send(());
    rt.block_on(server).context("the server task")??;
    store.close().context("flushing the store at shutdown")?;
    result?;
    println!("demo stopped cleanly; run it again to resume");
    Ok(ExitCode::SUCCESS)
}

/// The demo's alerting: every built-in rule pack (unless the config names packs), the
/// seizure detector, and a console contact that hears of warnings and urgent alerts (unless
/// the config has contacts of its own).
fn with_demo_alerting(mut config: Config) -> Config {
    if config.alerting.packs.is_empty() {
        config.alerting.packs = vitals_rules::pack::PACK_NAMES.iter().map(|p| (*p).to_owned()).collect();
    }
    config.alerting.seizure.enabled = true;
    if config.notify.contacts.is_empty() {
        config.notify.contacts =
            vec![vitals_alerts::Contact { name: "demo-console".into(), console: true, ..Default::default() }];
        config.notify.subscriptions = vec![vitals_alerts::Subscription {
            name: "demo".into(),
            contacts: vec!["demo-console".into()],
            severities: vec![vitals_rules::Severity::Warning, vitals_rules::Severity::Urgent],
            operator: true,
            ..Default::default()
        }];
    }
    config
}

fn write_labels(cohort: &Cohort, from: i64, to: i64, out: &mut std::fs::File) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    for (_, p) in &cohort.members {
        for l in cohort.sim.labels(p, from, to) {
            serde_json::to_writer(&mut buf, &l)?;
            buf.push(b'\n');
        }
    }
    out.write_all(&buf)?;
    Ok(())
}

/// The demo's data directory when none is given: apart from a real `vitals-data`.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("vitals-demo")
}
