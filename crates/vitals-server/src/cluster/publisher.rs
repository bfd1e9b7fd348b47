//! The write path of cluster mode: accepted samples go to the replicated log, and a write
//! is acknowledged once JetStream acknowledged every message of it.
//!
//! Like the embedded writer, each publisher thread takes every write queued at that moment
//! and publishes them together (their messages in flight at once), then completes each:
//! under load one round trip covers many requests. Two threads, each with its own
//! connection, keep the stream busy while the other waits for acknowledgements. Memory is
//! bounded: past `max_inflight` samples queued or in flight a write is refused at once
//! (503 and `Retry-After`), as on one node. Events go the same way, published at once in
//! the round that takes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;
use vitals_core::{Event, PatientId, Sample};
use vitals_jetstream::JetStreamLog;
use vitals_storage::StoreError;
use vitals_storage::log::SampleLog;

use crate::source::sink::{Done, EventSink, SampleSink};

/// Threads publishing at once.
const THREADS: usize = 2;
/// Samples one publish round takes at most.
const MAX_ROUND_SAMPLES: usize = 200_000;

enum Job {
    Samples(Vec<Sample>, Done),
    /// Events, and where to say how their publish went.
    Events(Vec<Event>, SyncSender<Result<u64, String>>),
    /// A patient's erasure, likewise.
    Erase(PatientId, SyncSender<Result<u64, String>>),
}

/// The cluster's sample sink.
pub struct Publisher {
    tx: Mutex<Option<SyncSender<Job>>>,
    inflight: Arc<AtomicUsize>,
    max_inflight: usize,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

impl Publisher {
    /// Starts the publisher threads, each on a log handle `open` gives.
    pub fn start(
        mut open: impl FnMut() -> Result<JetStreamLog, vitals_storage::log::LogError>,
        max_inflight: usize,
    ) -> anyhow::Result<Publisher> {
        let (tx, rx) = sync_channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let inflight = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..THREADS {
            let mut log = open()?;
            let (rx, inflight) = (Arc::clone(&rx), Arc::clone(&inflight));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("cluster-publish-{i}"))
                    .spawn(move || publish_loop(&mut log, &rx, &inflight))?,
            );
        }
        Ok(Publisher { tx: Mutex::new(Some(tx)), inflight, max_inflight, threads: Mutex::new(threads) })
    }

    /// Stops taking writes and waits for the ones queued to be published.
    pub fn stop(&self) {
        self.tx.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl SampleSink for Publisher {
    fn submit(&self, samples: Vec<Sample>, done: Done) -> Result<(), StoreError> {
        if samples.is_empty() {
            done(Ok(0));
            return Ok(());
        }
        let n = samples.len();
        let before = self.inflight.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max_inflight && before > 0 {
            self.inflight.fetch_sub(n, Ordering::AcqRel);
            return Err(StoreError::Overloaded {
                what: "samples waiting for the cluster's log",
                limit: self.max_inflight,
            });
        }
        let tx = self.tx.lock().clone();
        let Some(tx) = tx else {
            self.inflight.fetch_sub(n, Ordering::AcqRel);
            return Err(StoreError::Closed);
        };
        match tx.try_send(Job::Samples(samples, done)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inflight.fetch_sub(n, Ordering::AcqRel);
                match e {
                    TrySendError::Full(_) => Err(StoreError::Overloaded { what: "queued write requests", limit: 4096 }),
                    TrySendError::Disconnected(_) => Err(StoreError::Closed),
                }
            }
        }
    }
}

impl Publisher {
    /// Publishes a patient's erasure and waits until the log has it (every node's tail
    /// then erases what it holds of them); its position.
    pub fn erase(&self, patient: &PatientId) -> Result<u64, String> {
        let p = patient.clone();
        self.ask(move |reply| Job::Erase(p, reply))
    }

    /// Queues a job that answers on a channel, and waits for the answer.
    fn ask(&self, job: impl FnOnce(SyncSender<Result<u64, String>>) -> Job) -> Result<u64, String> {
        let tx = self.tx.lock().clone();
        let Some(tx) = tx else { return Err(StoreError::Closed.to_string()) };
        let (reply, answer) = sync_channel(1);
        match tx.try_send(job(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Overloaded { what: "queued write requests", limit: 4096 }.to_string());
            }
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed.to_string()),
        }
        match answer.recv() {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(format!("the cluster's log: {e}")),
            Err(_) => Err(StoreError::Closed.to_string()),
        }
    }
}

impl EventSink for Publisher {
    fn put_events(&self, events: Vec<Event>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        self.ask(move |reply| Job::Events(events, reply)).map(drop)
    }
}

/// What a round publishes besides samples, in the order it was asked.
enum Control {
    Events(Vec<Event>),
    Erase(PatientId),
}

fn publish_loop(log: &mut JetStreamLog, rx: &Mutex<Receiver<Job>>, inflight: &AtomicUsize) {
    loop {
        let mut round: Vec<(Vec<Sample>, Done)> = Vec::new();
        let mut events = Vec::new();
        {
            let rx = rx.lock();
            let Ok(first) = rx.recv() else { return };
            let mut total = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Samples(s, done) => {
                        total += s.len();
                        round.push((s, done));
                    }
                    Job::Events(e, reply) => events.push((Control::Events(e), reply)),
                    Job::Erase(p, reply) => events.push((Control::Erase(p), reply)),
                }
                if total < MAX_ROUND_SAMPLES {
                    next = rx.try_recv().ok();
                }
            }
        }
        for (control, reply) in events {
            let sent = match control {
                Control::Events(list) => log.append_events(&list),
                Control::Erase(p) => log.append_erasure(&p),
            };
            let _ = reply.send(sent.map_err(|e| e.to_string()));
        }
        if round.is_empty() {
            continue;
        }
        let batches: Vec<&[Sample]> = round.iter().map(|(s, _)| s.as_slice()).collect();
        let outcome = log.append(&batches);
        let n: usize = round.iter().map(|(s, _)| s.len()).sum();
        inflight.fetch_sub(n, Ordering::AcqRel);
        match outcome {
            Ok(positions) => {
                for ((_, done), pos) in round.into_iter().zip(positions) {
                    done(Ok(pos));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = round.len(), "cluster: publishing to the log failed; writes refused");
                for (_, done) in round {
                    done(Err(StoreError::Failed(format!("the cluster's log: {e}"))));
                }
            }
        }
    }
}
