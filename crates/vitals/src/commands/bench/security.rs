//! `vitals bench security`: what authentication and auditing cost, side by side in one run.
//!
//! On a temporary data directory with the real server in-process: token lookups per second
//! (a SQLite read per request), audit appends one per transaction versus group-committed by
//! the auditor under concurrent requests, HTTP reads of patient data (audited) versus
//! `/api/v1/me` (authenticated, not audited) over the same connections, and the time of
//! one sign-in (Argon2id).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use vitals_core::time::DurationMs;
use vitals_core::{Clock, SystemClock};
use vitals_meta::AuditEvent;
use vitals_storage::Store;

use super::alert_latency::percentile;
use vitals_server::app::App;
use vitals_server::auth::{Directory, LockoutPolicy, Role};
use vitals_server::config::Config;
use vitals_server::runtime;

#[derive(Debug, clap::Args)]
pub(crate) struct SecurityArgs {
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// How long each HTTP measurement runs.
    #[arg(long, default_value = "5s")]
    pub(crate) duration: DurationMs,
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        ts_ms: i as i64,
        actor: "user:bench".into(),
        action: "patient.read".into(),
        patient: Some("p-bench".into()),
        target: "GET /api/v1/patients/p-bench/latest".into(),
        origin: "127.0.0.1".into(),
        outcome: "ok".into(),
    }
}

/// Requests/s and latency percentiles (ms) of GETs of `path` from `clients` threads.
fn http_load(base: &str, token: &str, path: &str, clients: usize, duration: Duration) -> (f64, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (url, auth, stop) = (format!("{base}{path}"), format!("Bearer {token}"), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match agent.get(&url).header("Authorization", &auth).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_vec();
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        _ => break,
                    }
                }
                lat
            })
        })
        .collect();
    while started.elapsed() < duration {
        std::thread::park_timeout(duration.saturating_sub(started.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / secs, percentile(&all, 0.5), percentile(&all, 0.99))
}

pub(crate) fn run(base_config: &Config, args: &SecurityArgs) -> anyhow::Result<ExitCode> {
    let dir = super::ingest::tempfile_dir(None).context("temporary directory")?;
    let mut config = base_config.clone();
    config.storage.data_dir = dir.path.clone();
    config.server.listen = "127.0.0.1:0".into();
    config.alerting.enabled = false;
    config.auth.login_attempts_per_minute = u32::MAX;
    let clock = SystemClock;
    let store = Arc::new(Store::open(dir.path.as_path(), config.store_config(), Arc::new(SystemClock))?);
    let directory = Directory::open(dir.path.as_path())?;
    let (_, token) = directory.create("bench", Role::Admin, None, None, clock.now_ms())?;
    directory.create_user("bench-user", Role::Clinician, Some("a bench password"), None, clock.now_ms())?;

    // 1. Token lookups.
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        anyhow::ensure!(directory.authenticate(&token, clock.now_ms()).is_some(), "token refused");
    }
    let lookup_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

    // 2. Audit appends: one per transaction, then group-committed under concurrency.
    let single_n = 300;
    let t = Instant::now();
    for i in 0..single_n {
        directory.meta().append_audit(&event(i))?;
    }
    let single_rate = single_n as f64 / t.elapsed().as_secs_f64();
    let auditor = Arc::new(vitals_server::audit::Auditor::start(directory.meta_arc())?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let grouped_n = 20_000;
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let a = auditor.clone();
                tokio::spawn(async move {
                    for i in 0..grouped_n / 64 {
                        a.record(event(w * 1000 + i)).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })?;
    let grouped_rate = (grouped_n / 64 * 64) as f64 / t.elapsed().as_secs_f64();
    anyhow::ensure!(
        vitals_meta::verify_audit(directory.meta(), Some(directory.audit_key())).is_ok(),
        "the chain must verify"
    );

    // 4. Sign-in cost.
    let policy = LockoutPolicy { max_failed: 1000, lockout_ms: 1 };
    let t = Instant::now();
    for _ in 0..5 {
        directory
            .login("bench-user", "a bench password", clock.now_ms(), policy)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let login_ms = t.elapsed().as_secs_f64() * 1e3 / 5.0;

    // 3. HTTP: audited reads vs unaudited authenticated requests, same connections count.
    let samples: Vec<vitals_core::Sample> = (0..100)
        .map(|i| vitals_core::Sample {
            patient: vitals_core::PatientId::new("p-bench").expect("valid id"),
            metric: vitals_core::Catalog::standard().id("heart_rate").expect("metric"),
            time_ms: clock.now_ms() - 100_000 + i * 1000,
            value: 60.0 + (i % 10) as f64,
            device: None,
            id: None,
            source: vitals_core::Source::Native,
        })
        .collect();
    store.write(samples)?;
    let app = Arc::new(App::open(store.clone(), directory, config, Arc::new(SystemClock))?);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(runtime::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    let d = Duration::from_millis(args.duration.as_ms() as u64);
    let me = http_load(&base, &token, "/api/v1/me", args.clients, d);
    let read = http_load(&base, &token, "/api/v1/patients/p-bench/latest", args.clients, d);
    let _ = stop_tx.send(());
    rt.block_on(serving)??;
    store.close()?;

    println!("security costs ({} HTTP clients, {} per HTTP run)", args.clients, args.duration);
    println!("  token lookup (SQLite, per request)      {lookup_us:>10.1} us");
    println!("  audit append, 1 entry per transaction   {single_rate:>10.0} entries/s");
    println!(
        "  audit append, group commit (64 tasks)   {grouped_rate:>10.0} entries/s  ({:.1}x)",
        grouped_rate / single_rate
    );
    println!("  sign-in (Argon2id verify)               {login_ms:>10.1} ms");
    println!("  GET /api/v1/me (not audited)            {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms", me.0, me.1, me.2);
    println!(
        "  GET .../latest (audited)                {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  ({:.2}x of /me)",
        read.0,
        read.1,
        read.2,
        read.0 / me.0
    );
    Ok(ExitCode::SUCCESS)
}
