//! Every node reads the whole replicated log into its own store, so queries on any node
//! see every acknowledged sample (a bounded delay after the acknowledgement: the time to
//! read it back and fsync it locally), and the alerting thread hears of them as on one node.
//!
//! The position read so far is kept in `cluster/applied` in the data directory (written
//! after each batch is durable in the local store, by rename, without an fsync of its own):
//! after a restart reading resumes there. Should it be older than what the store holds
//! (a crash between the two), samples are written again, which is harmless: the same
//! (patient, metric, device, time) is one sample. A node with an empty data directory
//! reads the log from its start.
//!
//! Events travel on the log too and go to the local event store; so do erasures, which
//! erase what this node holds of the patient (samples, events, dead letters, dropped
//! files) at their place in the log. A message that does not decode is kept as a dead
//! letter and passed (`log_undecodable` in `/healthz`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vitals_core::Clock;
use vitals_jetstream::{JetStreamLog, Message};
use vitals_storage::dead_letter::{DeadLetter, DeadLetters};
use vitals_storage::event_store::EventStore;
use vitals_storage::{Store, StoreError};

use crate::shutdown::Shutdown;

/// Records read at once.
const BATCH: usize = 2_000;
/// How long a read waits for the next record.
const WAIT: Duration = Duration::from_millis(250);

/// How far the tail is.
#[derive(Debug, Default)]
pub struct TailState {
    /// The last position written to the local store.
    pub applied: AtomicU64,
    /// Messages in the log after it, as of the last read.
    pub behind: AtomicU64,
    /// Messages read that did not decode (kept as dead letters, then passed).
    pub undecodable: AtomicU64,
}

/// A message this build cannot read: kept as a dead letter (source `cluster/log`, its
/// position in the context) and logged; the tail reads on, so one bad message never stops
/// a node from seeing the rest.
fn keep_aside(dead_letters: &DeadLetters, now_ms: i64, seq: u64, reason: &str, bytes: &[u8]) {
    tracing::error!(position = seq, reason, "cluster: a message of the log does not decode; kept as a dead letter");
    let meta = DeadLetter {
        id: 0,
        time_ms: now_ms,
        source: "cluster/log".into(),
        format: "application/x-vitals-log".into(),
        reason: format!("log message {seq} does not decode: {reason}"),
        items: Vec::new(),
        context: [("position".to_owned(), seq.to_string())].into(),
        raw_bytes: 0,
    };
    if let Err(e) = dead_letters.add(meta, bytes) {
        tracing::error!(error = %e, position = seq, "cluster: keeping an undecodable message");
    }
}

fn applied_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster").join("applied")
}

/// The position read so far (0: nothing yet).
pub fn load_applied(data_dir: &Path) -> u64 {
    std::fs::read_to_string(applied_path(data_dir)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn save_applied(data_dir: &Path, seq: u64) -> std::io::Result<()> {
    let path = applied_path(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// Where the tail puts what it reads: samples in the store, events in the event store,
/// messages it cannot decode (another build's, damaged) kept as dead letters.
pub struct Targets {
    pub store: Arc<Store>,
    pub events: Arc<EventStore>,
    pub dead_letters: Arc<DeadLetters>,
    pub clock: Arc<dyn Clock>,
    /// A patient's erasure read in the log.
    pub erase: EraseLocal,
    /// Where the devices heard are noted (`devices.rs`).
    pub devices: Arc<crate::devices::DeviceBook>,
}

/// What erases a patient's data held on this node (`rights::erase_local`).
pub type EraseLocal = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// Why the tail stopped short of a batch's end.
enum Stop {
    /// Shutdown was asked for.
    Shutdown,
    /// The local store is gone: the tail ends.
    StoreGone,
}

/// Where the tail writes samples: the local store, and the device book once they are in it.
struct SampleTarget<'a> {
    store: &'a Store,
    devices: &'a crate::devices::DeviceBook,
    clock: &'a dyn vitals_core::Clock,
}

/// Writes samples to the local store, which refuses only when full or failing: waits,
/// never skips.
fn write_samples(to: &SampleTarget<'_>, samples: Vec<vitals_core::Sample>, shutdown: &Shutdown) -> Result<(), Stop> {
    if samples.is_empty() {
        return Ok(());
    }
    loop {
        match to.store.write(samples.clone()) {
            Ok(_) => {
                to.devices.heard(&samples, to.clock.now_ms());
                return Ok(());
            }
            Err(e @ (StoreError::Overloaded { .. } | StoreError::Failed(_) | StoreError::NoSpace(_))) => {
                tracing::warn!(error = %e, "cluster: the local store refused the log's samples; trying again");
                if shutdown.wait_timeout(Duration::from_millis(200)) {
                    return Err(Stop::Shutdown);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cluster: the local store is gone; the tail stops");
                return Err(Stop::StoreGone);
            }
        }
    }
}

/// Does `what` until it succeeds (a store that refuses is failing: it is asked again).
fn until_done(what: &str, shutdown: &Shutdown, mut f: impl FnMut() -> anyhow::Result<()>) -> Result<(), Stop> {
    while let Err(e) = f() {
        tracing::warn!(error = %format!("{e:#}"), "cluster: {what} failed; trying again");
        if shutdown.wait_timeout(Duration::from_millis(200)) {
            return Err(Stop::Shutdown);
        }
    }
    Ok(())
}

/// Starts the tail thread.
pub fn spawn(
    mut log: JetStreamLog,
    targets: Targets,
    data_dir: PathBuf,
    state: Arc<TailState>,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    state.applied.store(load_applied(&data_dir), Ordering::Relaxed);
    let Targets { store, events, dead_letters, clock, erase, devices } = targets;
    std::thread::Builder::new().name("cluster-tail".into()).spawn(move || {
        while !shutdown.is_triggered() {
            let after = state.applied.load(Ordering::Relaxed);
            let records = match log.read_messages(after, BATCH, Some(WAIT)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, after, "cluster: reading the log");
                    shutdown.wait_timeout(Duration::from_secs(1));
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else { continue };
            // Samples are written together, but never across an erasure: what came before
            // it in the log is erased with it, what comes after is new data.
            let mut samples = Vec::new();
            let target = SampleTarget { store: &store, devices: &devices, clock: clock.as_ref() };
            let applied = || -> Result<(), Stop> {
                for r in records {
                    match r.message {
                        Ok(Message::Samples(s)) => samples.extend(s),
                        Ok(Message::Events(list)) => {
                            until_done("storing the log's events", &shutdown, || {
                                events.put(list.clone()).map_err(anyhow::Error::from)
                            })?;
                            devices.described(&list, clock.now_ms());
                        }
                        Ok(Message::Erase { patient }) => {
                            write_samples(&target, std::mem::take(&mut samples), &shutdown)?;
                            tracing::info!(patient = %patient, position = r.seq, "cluster: erasing a patient, as the log says");
                            until_done("erasing a patient", &shutdown, || erase(&patient))?;
                        }
                        Err(reason) => {
                            keep_aside(&dead_letters, clock.now_ms(), r.seq, &reason, &r.bytes);
                            state.undecodable.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                write_samples(&target, std::mem::take(&mut samples), &shutdown)
            };
            match applied() {
                Ok(()) => {}
                Err(Stop::Shutdown | Stop::StoreGone) => return,
            }
            state.applied.store(last, Ordering::Relaxed);
            state.behind.store(log.pending(), Ordering::Relaxed);
            if let Err(e) = save_applied(&data_dir, last) {
                tracing::warn!(error = %e, "cluster: recording the position read");
            }
        }
    })
}
