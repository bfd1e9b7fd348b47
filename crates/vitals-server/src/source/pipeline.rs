//! The one ingest pipeline every way in goes through: HTTP (native, line protocol,
//! Nightscout, Health Auto Export), MQTT (client and listener), the file drop, `vitals
//! ingest` and the replay of dead letters.
//!
//! It takes `(source, wire format, body, patient)`, builds the validator (catalog, units,
//! plausible ranges, time limits against the clock, the caller's patient binding), decodes,
//! keeps what was refused as a dead letter, counts refusals and acceptances in `/metrics`,
//! stores events, submits the samples and resolves once they are durable. It answers with a
//! [`Report`]: the accepted count and the first [`MAX_REPORTED`] refusals with their total.
//! A way in only translates its request into a [`Submission`] and the report into its
//! protocol's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use vitals_core::{Catalog, Clock, Event, PatientId, RejectCode, Rejection, Sample, Validator};
use vitals_ingest::Batch;
use vitals_ingest::health_auto_export::Unsupported;
use vitals_ingest::line_protocol::Mapping;
use vitals_storage::StoreError;
use vitals_storage::dead_letter::{DeadLetterError, DeadLetters};

use super::dead_letter::{self, Refused};
use super::sink::{EventSink, SampleSink};
use super::wire_format::WireFormat;
use crate::config::IngestConfig;
use crate::telemetry::{CodeLabel, SourceLabel, Telemetry};

/// Refusals listed in a report (all are counted).
pub const MAX_REPORTED: usize = 1000;

/// The dead-letter context key of the patient the sender was bound to.
const ONLY_PATIENT: &str = "only_patient";

/// One body to take in, as it came.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The way in, as dead letters name it (`api/samples`, `mqtt`, `file-drop`...).
    pub source: String,
    pub format: WireFormat,
    pub body: Bytes,
    /// The patient of formats without patient ids (Health Auto Export, Nightscout): from
    /// the URL, the topic, the folder or the token.
    pub patient: Option<PatientId>,
    /// A caller bound to one patient: other patients' samples are refused.
    pub only: Option<PatientId>,
}

impl Submission {
    pub fn new(source: impl Into<String>, format: WireFormat, body: impl Into<Bytes>) -> Submission {
        Submission { source: source.into(), format, body: body.into(), patient: None, only: None }
    }

    pub fn patient(mut self, patient: Option<PatientId>) -> Submission {
        self.patient = patient;
        self
    }

    pub fn only(mut self, only: Option<PatientId>) -> Submission {
        self.only = only;
        self
    }
}

/// What a body gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub accepted: usize,
    /// Events stored (workouts, sleep, treatments, tags).
    pub events: usize,
    /// The first [`MAX_REPORTED`] refusals.
    pub rejected: Vec<Rejection>,
    /// Every refusal.
    pub refused: usize,
    /// Parts that cannot be stored yet.
    pub unsupported: Vec<Unsupported>,
    /// Where the refused input was kept.
    pub dead_letter: Option<u64>,
}

impl Report {
    /// Adds `refused` refusals, of which `rejections` are the first ones.
    fn refuse(&mut self, rejections: Vec<Rejection>, refused: usize) {
        self.refused += refused;
        let room = MAX_REPORTED.saturating_sub(self.rejected.len());
        self.rejected.extend(rejections.into_iter().take(room));
    }

    /// Adds another part's report (a file's chunks, a session's files).
    pub fn absorb(&mut self, other: Report) {
        self.accepted += other.accepted;
        self.events += other.events;
        self.refused += other.refused;
        let room = MAX_REPORTED.saturating_sub(self.rejected.len());
        self.rejected.extend(other.rejected.into_iter().take(room));
        self.unsupported.extend(other.unsupported);
        self.dead_letter = self.dead_letter.or(other.dead_letter);
    }
}

/// Accepted samples and events of a body, not yet stored.
#[derive(Debug)]
pub struct Accepted {
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
    pub report: Report,
    /// When decoding began (the write latency runs from here to durable).
    started: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Nothing of the body could be read; it was kept as a dead letter.
    #[error("{message}")]
    Undecodable { message: String, dead_letter: Option<u64> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storing events: {0}")]
    Events(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Hears when queued samples are durable.
type Durable = tokio::sync::oneshot::Receiver<Result<u64, StoreError>>;

/// A report and its start, while its samples wait to be queued.
struct Unqueued {
    report: Report,
    started: Instant,
}

/// The samples of a body are queued; [`Pending::durable`] resolves once they are durable.
#[must_use = "a submission is acknowledged only once durable"]
pub struct Pending {
    rx: Durable,
    report: Report,
    started: Instant,
    telemetry: Arc<Telemetry>,
}

impl Pending {
    /// Waits until the samples are durable (async).
    pub async fn durable(self) -> Result<Report, IngestError> {
        let Pending { rx, report, started, telemetry } = self;
        finish(rx.await, report, started, &telemetry)
    }

    /// Waits until the samples are durable (blocking: threads, the command line).
    pub fn wait(self) -> Result<Report, IngestError> {
        let Pending { rx, report, started, telemetry } = self;
        finish(rx.blocking_recv(), report, started, &telemetry)
    }
}

fn finish(
    done: Result<Result<u64, StoreError>, tokio::sync::oneshot::error::RecvError>,
    report: Report,
    started: Instant,
    telemetry: &Telemetry,
) -> Result<Report, IngestError> {
    match done {
        Ok(Ok(_)) => {
            if report.accepted > 0 {
                telemetry.ingested.inc_by(report.accepted as u64);
                telemetry.write_latency.observe(started.elapsed().as_secs_f64());
            }
            Ok(report)
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(IngestError::ShuttingDown),
    }
}

/// The result of replaying a dead letter.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub id: u64,
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub unsupported: Vec<Unsupported>,
    /// The entry is removed when nothing was refused this time.
    pub removed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("unknown format {0:?}")]
    Format(String),
    #[error("still not decodable: {0}")]
    Decode(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// The pipeline and what it writes to.
pub struct Pipeline {
    /// The durable write path: the store's WAL, or the cluster's log.
    sink: Arc<dyn SampleSink>,
    /// Where events go: the event store, or the cluster's log.
    events: Arc<dyn EventSink>,
    dead_letters: Arc<DeadLetters>,
    telemetry: Arc<Telemetry>,
    ingest: IngestConfig,
    mapping: Mapping,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipeline")
    }
}

impl Pipeline {
    pub fn new(
        sink: Arc<dyn SampleSink>,
        events: Arc<dyn EventSink>,
        dead_letters: Arc<DeadLetters>,
        telemetry: Arc<Telemetry>,
        ingest: IngestConfig,
        mapping: Mapping,
        clock: Arc<dyn Clock>,
    ) -> Pipeline {
        Pipeline { sink, events, dead_letters, telemetry, ingest, mapping, clock }
    }

    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// The validator of the server's rules at this moment, for a caller bound to `only`,
    /// marking samples as decoded from `format`.
    pub fn validator(&self, only: Option<PatientId>, format: WireFormat) -> Validator<'static> {
        let cfg = &self.ingest;
        Validator::new(Catalog::standard(), self.clock.now_ms(), cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()))
            .only_patient(only)
            .source(format.source())
    }

    /// Decodes a body, keeps what it refused as a dead letter and counts every refusal.
    pub fn decode(&self, sub: &Submission) -> Result<Accepted, IngestError> {
        self.decode_with(sub, &[])
    }

    /// [`decode`](Self::decode), recording `context` with a dead letter (where in a file
    /// the part began, ...).
    pub fn decode_with(&self, sub: &Submission, context: &[(&str, String)]) -> Result<Accepted, IngestError> {
        let started = Instant::now();
        let mut v = self.validator(sub.only.clone(), sub.format);
        let now = self.clock.now_ms();
        let patient = sub.patient.as_ref().map(PatientId::as_str);
        match sub.format.decode(&sub.body, patient, &self.mapping, &mut v, now) {
            Ok(d) => Ok(Accepted { started, ..self.accept(sub, &sub.body, d.batch, d.events, d.unsupported, context) }),
            Err(message) => {
                let dead_letter = self.refuse(sub, &message);
                Err(IngestError::Undecodable { message, dead_letter })
            }
        }
    }

    /// Refuses a whole body without reading it (a topic that names no patient, ...): keeps
    /// it as a dead letter with `why` and counts it as one malformed item.
    pub fn refuse(&self, sub: &Submission, why: &str) -> Option<u64> {
        let patient = sub.patient.as_ref().map(PatientId::as_str);
        let refused = Refused { whole_failure: Some(why), patient, ..Refused::default() };
        let dead_letter = self.keep(sub, &sub.body, &refused);
        self.count_refused(sub, 1);
        dead_letter
    }

    /// What a decoder of a file source gave (the file drop streams large files in parts):
    /// keeps what was refused as a dead letter (`raw`: the part's bytes, or an excerpt),
    /// with `context`, and counts every refusal.
    pub fn accept(
        &self,
        sub: &Submission,
        raw: &[u8],
        batch: Batch,
        events: Vec<Event>,
        unsupported: Vec<Unsupported>,
        context: &[(&str, String)],
    ) -> Accepted {
        let patient = sub.patient.as_ref().map(PatientId::as_str);
        let refused = Refused {
            rejections: &batch.rejections,
            truncated: batch.truncated(),
            unsupported: &unsupported,
            patient,
            context,
            ..Refused::default()
        };
        let dead_letter = self.keep(sub, raw, &refused);
        self.count_refused(sub, batch.refused);
        for (code, n) in RejectCode::ALL.iter().zip(batch.refused_by_code) {
            if n > 0 {
                self.telemetry.rejected.get_or_create(&CodeLabel { code: code.as_str().to_owned() }).inc_by(n as u64);
            }
        }
        let mut report = Report {
            accepted: batch.samples.len(),
            events: events.len(),
            unsupported,
            dead_letter,
            ..Report::default()
        };
        report.refuse(batch.rejections, batch.refused);
        Accepted { samples: batch.samples, events, report, started: Instant::now() }
    }

    fn keep(&self, sub: &Submission, raw: &[u8], refused: &Refused<'_>) -> Option<u64> {
        // A sender bound to one patient stays bound when its input is replayed.
        let mut context: Vec<(&str, String)> = refused.context.to_vec();
        if let Some(only) = &sub.only {
            context.push((ONLY_PATIENT, only.to_string()));
        }
        let refused = Refused { context: &context, ..*refused };
        dead_letter::keep(&self.dead_letters, self.clock.now_ms(), &sub.source, sub.format, raw, &refused)
    }

    fn count_refused(&self, sub: &Submission, n: usize) {
        if n > 0 {
            self.telemetry.refused.get_or_create(&SourceLabel { source: sub.source.clone() }).inc_by(n as u64);
        }
    }

    /// Stores changed events durably (blocking I/O): a deleted document's tombstone, which
    /// carries no samples.
    pub fn put_events(&self, events: Vec<Event>) -> Result<(), IngestError> {
        self.events.put_events(events).map_err(IngestError::Events)
    }

    /// Stores the events (blocking I/O) and queues the samples for the writer.
    pub fn submit(&self, accepted: Accepted) -> Result<Pending, IngestError> {
        let (samples, u) = self.store_events(accepted)?;
        let rx = self.queue(samples)?;
        Ok(self.pending(rx, u))
    }

    /// [`submit`](Self::submit) for async callers that may wait out an overload for up to
    /// `overload_retry` (MQTT: the broker's message stays unacknowledged meanwhile).
    pub async fn submit_retrying(
        self: &Arc<Self>,
        accepted: Accepted,
        overload_retry: Duration,
    ) -> Result<Pending, IngestError> {
        let deadline = Instant::now() + overload_retry;
        let p = self.clone();
        // Storing events syncs a file: off the async workers.
        let (samples, u) = tokio::task::spawn_blocking(move || p.store_events(accepted))
            .await
            .map_err(|_| IngestError::ShuttingDown)??;
        loop {
            // A copy for each try before the deadline, the samples themselves for the last.
            if Instant::now() >= deadline {
                return Ok(self.pending(self.queue(samples)?, u));
            }
            match self.queue(samples.clone()) {
                Ok(rx) => return Ok(self.pending(rx, u)),
                Err(StoreError::Overloaded { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await; // overload back-off
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stores the events; the samples are left to queue, with what will answer for them.
    fn store_events(&self, accepted: Accepted) -> Result<(Vec<Sample>, Unqueued), IngestError> {
        let Accepted { samples, events, report, started } = accepted;
        if !events.is_empty() {
            self.events.put_events(events).map_err(IngestError::Events)?;
        }
        Ok((samples, Unqueued { report, started }))
    }

    /// Queues samples for the writer; the receiver hears when they are durable.
    fn queue(&self, samples: Vec<Sample>) -> Result<Durable, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sink.submit(
            samples,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        Ok(rx)
    }

    fn pending(&self, rx: Durable, u: Unqueued) -> Pending {
        Pending { rx, report: u.report, started: u.started, telemetry: self.telemetry.clone() }
    }

    /// Takes a body in: decodes and submits on a blocking thread, and resolves once durable.
    pub async fn ingest(self: &Arc<Self>, sub: Submission) -> Result<Report, IngestError> {
        // Decoding may keep a dead letter and storing events syncs a file: never on the
        // async workers.
        let p = self.clone();
        let pending = tokio::task::spawn_blocking(move || p.submit(p.decode(&sub)?))
            .await
            .map_err(|_| IngestError::ShuttingDown)??;
        pending.durable().await
    }

    /// Takes a body in from a thread (the file drop, the command line): blocks until durable.
    pub fn ingest_blocking(&self, sub: &Submission) -> Result<Report, IngestError> {
        self.submit(self.decode(sub)?)?.wait()
    }

    /// Decodes a dead letter again with today's rules and writes what now passes (blocking).
    /// Samples that were accepted the first time are written again, which is harmless: the
    /// same (patient, metric, device, time) is one sample. Nothing is kept again: the entry
    /// stays until nothing of it is refused, then it is removed.
    pub fn replay(&self, id: u64) -> Result<Replayed, ReplayError> {
        let (letter, raw) = self.dead_letters.get(id)?;
        let precision = letter.context.get("precision").map(String::as_str);
        let format =
            WireFormat::parse(&letter.format, precision).ok_or_else(|| ReplayError::Format(letter.format.clone()))?;
        let patient = letter.context.get("patient").map(String::as_str);
        let only = match letter.context.get(ONLY_PATIENT) {
            Some(p) => Some(PatientId::new(p).map_err(|e| ReplayError::Decode(format!("{ONLY_PATIENT} {p:?} {e}")))?),
            None => None,
        };
        let mut v = self.validator(only, format);
        let d =
            format.decode(&raw, patient, &self.mapping, &mut v, self.clock.now_ms()).map_err(ReplayError::Decode)?;
        let accepted = d.batch.samples.len();
        let removed = d.batch.rejections.is_empty() && d.unsupported.is_empty();
        let report = Report { accepted, events: d.events.len(), ..Report::default() };
        let pending =
            self.submit(Accepted { samples: d.batch.samples, events: d.events, report, started: Instant::now() })?;
        pending.wait()?;
        if removed {
            self.dead_letters.remove(id)?;
        }
        Ok(Replayed { id, accepted, rejected: d.batch.rejections, unsupported: d.unsupported, removed })
    }
}

#[cfg(test)]
mod tests {
    use vitals_core::{ManualClock, RejectCode};
    use vitals_ingest::Format;
    use vitals_storage::Store;
    use vitals_storage::StoreConfig;

    use super::*;
    use vitals_storage::event_store::EventStore;

    const NOW: i64 = 1_763_780_400_000;

    fn pipeline(dir: &std::path::Path) -> (Arc<Store>, Pipeline) {
        let clock = Arc::new(ManualClock::new(NOW));
        let config = StoreConfig { background: false, ..StoreConfig::default() };
        let store = Arc::new(Store::open(dir, config, clock.clone()).expect("store"));
        let events = Arc::new(EventStore::open(&dir.join("events")).expect("events"));
        let dead = Arc::new(DeadLetters::open(&dir.join("dead-letters"), 1 << 30).expect("dead letters"));
        let p = Pipeline::new(
            store.clone(),
            events,
            dead,
            Arc::new(Telemetry::new()),
            IngestConfig::default(),
            Mapping::default(),
            clock,
        );
        (store, p)
    }

    #[test]
    fn refusals_are_reported_as_the_first_ones_and_a_count_and_kept_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let (store, p) = pipeline(dir.path());
        let mut body = String::new();
        for i in 0..1500 {
            body.push_str(&format!(
                "{{\"patient\":\"p-1\",\"metric\":\"heart_rate\",\"time\":{},\"value\":999}}\n",
                NOW - i
            ));
        }
        body.push_str(&format!("{{\"patient\":\"p-1\",\"metric\":\"heart_rate\",\"time\":{NOW},\"value\":60}}\n"));
        let sub = Submission::new("test", WireFormat::Native(Format::Ndjson), body);
        let r = p.ingest_blocking(&sub).expect("ingest");
        assert_eq!((r.accepted, r.refused, r.rejected.len()), (1, 1500, MAX_REPORTED));
        assert!(r.rejected.iter().all(|x| x.code == RejectCode::ValueOutOfRange));
        let id = r.dead_letter.expect("kept");
        let (letter, raw) = p.dead_letters().get(id).expect("letter");
        assert_eq!(letter.items.len(), super::super::dead_letter::MAX_ITEMS, "items described: capped");
        assert!(letter.reason.starts_with("more than 1000 item(s) refused"), "{}", letter.reason);
        assert_eq!(raw, sub.body.to_vec(), "the body is kept once, whole, when not every refusal is listed");
        assert_eq!(p.telemetry.rejected.get_or_create(&CodeLabel { code: "value_out_of_range".into() }).get(), 1500);
        assert_eq!(p.telemetry.refused.get_or_create(&SourceLabel { source: "test".into() }).get(), 1500);
        assert_eq!(p.telemetry.ingested.get(), 1);
        store.close().expect("close");
    }

    #[test]
    fn an_undecodable_body_is_kept_whole_and_counted_as_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let (store, p) = pipeline(dir.path());
        let sub = Submission::new("test", WireFormat::Native(Format::Json), &b"[{\"patient\": "[..]);
        let Err(IngestError::Undecodable { message, dead_letter }) = p.ingest_blocking(&sub) else {
            panic!("a body that is not JSON is refused whole")
        };
        assert!(message.contains("invalid JSON"), "{message}");
        let (letter, raw) = p.dead_letters().get(dead_letter.expect("kept")).expect("letter");
        assert_eq!((letter.reason, raw), (message, b"[{\"patient\": ".to_vec()));
        assert_eq!(p.telemetry.refused.get_or_create(&SourceLabel { source: "test".into() }).get(), 1);
        store.close().expect("close");
    }

    #[test]
    fn reports_of_parts_add_up_and_keep_the_first_refusals() {
        let rej = |i| Rejection::new(i, RejectCode::Malformed, "x");
        let part = |n: usize, at: usize| Report {
            accepted: 2,
            events: 1,
            rejected: (at..at + n.min(MAX_REPORTED)).map(rej).collect(),
            refused: n,
            ..Report::default()
        };
        let mut all = Report::default();
        all.absorb(part(900, 0));
        all.absorb(part(300, 900));
        assert_eq!((all.accepted, all.events, all.refused, all.rejected.len()), (4, 2, 1200, MAX_REPORTED));
        assert_eq!(all.rejected.last().map(|r| r.index), Some(MAX_REPORTED - 1));
    }
}
