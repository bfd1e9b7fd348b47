//! Cluster mode's durable log: accepted samples on a replicated NATS JetStream stream.
//!
//! [`JetStreamLog`] implements `vitals_storage::log::SampleLog`, the contract the embedded
//! write-ahead log keeps, and passes the same conformance checks. Each record is split by
//! patient bucket ([`bucket_of`]): the samples of bucket `b` go to subject
//! `<prefix>.<b>`, so a node can consume the buckets it owns and every patient's samples
//! stay in order on one subject. A message carries at most `max_message_bytes` (larger
//! records are cut into several); its body is the write-ahead log's record encoding behind
//! a four-byte header (`VLG` and a version byte). Events (workouts, sleep, treatments)
//! travel on the same subjects as JSON behind `VLE` ([`JetStreamLog::append_events`]), so
//! every node's event store sees them too.
//!
//! A write is acknowledged only once JetStream acknowledged every message of it, which for
//! a stream of three replicas means a quorum (two) stored it. A publish whose
//! acknowledgement is lost is sent again with the same `Nats-Msg-Id`, and the stream's
//! duplicate window drops the copy, so a retry never stores a record twice.
//!
//! This is the only crate that links a NATS client (async-nats). It runs on a small tokio
//! runtime of its own, so the synchronous callers (the store's writer thread) can use it.

mod record;
#[cfg(feature = "testing")]
pub mod testing;

pub use record::{Message, decode as decode_message, decode_any, encode_erasure, encode_events, encode_message};

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use vitals_core::{Catalog, Event, PatientId, Sample};
use vitals_storage::log::{LogError, SampleLog};
use vitals_storage::wal::Replayed;

/// How to reach the stream.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// `nats://host:port` of one or more servers of the NATS cluster.
    pub servers: Vec<String>,
    /// The stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.<bucket>`.
    pub subject_prefix: String,
    /// Copies of every message (3 for a cluster that survives the loss of a server).
    pub replicas: usize,
    /// Patient buckets: the unit of ownership between nodes. Fixed for a stream's life.
    pub buckets: u16,
    /// The largest message (NATS servers refuse more than their `max_payload`, 1 MiB
    /// unless configured).
    pub max_message_bytes: usize,
    /// How long an acknowledgement may take before the publish is sent again.
    pub ack_timeout: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "VITALS_SAMPLES".into(),
            subject_prefix: "vitals.samples".into(),
            replicas: 3,
            buckets: 64,
            max_message_bytes: 900 * 1024,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// The bucket of a patient: FNV-1a of the pseudonym, modulo the number of buckets. Stable
/// across builds and machines (it decides which node evaluates whose rules).
pub fn bucket_of(patient: &PatientId, buckets: u16) -> u16 {
    bucket_of_name(patient.as_str(), buckets)
}

/// [`bucket_of`] of a pseudonym as a string (an event's patient).
pub fn bucket_of_name(patient: &str, buckets: u16) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in patient.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u16
}

/// One message read from the log.
#[derive(Debug)]
pub struct Read {
    pub seq: u64,
    /// What it carries, or why it does not decode.
    pub message: Result<Message, String>,
    /// Its body as stored (kept aside when it does not decode).
    pub bytes: bytes::Bytes,
}

/// The replicated log.
pub struct JetStreamLog {
    config: JetStreamConfig,
    catalog: &'static Catalog,
    /// Always `Some` but while dropping (a runtime dropped on a tokio worker must be shut
    /// down in the background).
    rt: Option<tokio::runtime::Runtime>,
    js: jetstream::Context,
    /// Where the log is, for errors: the stream's name and the servers.
    name: String,
    /// Message ids: this handle's random prefix and a counter.
    id_prefix: String,
    next_id: u64,
    /// The consumer of the last read and the position it delivers next.
    reader: Option<(u64, consumer::PullConsumer)>,
    /// Messages after the last one read (the reader's lag).
    pending: u64,
    /// Reads in a row that found nothing.
    empty_reads: u32,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog").field("name", &self.name).finish()
    }
}

impl JetStreamLog {
    /// Connects and creates the stream if it does not exist (an existing stream is used as
    /// it is configured).
    pub fn open(config: JetStreamConfig, catalog: &'static Catalog) -> Result<JetStreamLog, LogError> {
        let name = format!("JetStream stream {} on {}", config.stream, config.servers.join(","));
        let remote = |reason: String| LogError::Remote { log: name.clone(), reason };
        let id_prefix = record::random_hex()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vitals-jetstream")
            .enable_all()
            .build()
            .map_err(|e| remote(format!("cannot start its runtime: {e}")))?;
        // The runtime may not be dropped on a tokio worker (the server opens the log from
        // one): every way out of here shuts it down in the background.
        let opened = (|| {
            let mut addrs = Vec::new();
            for s in &config.servers {
                addrs.push(s.parse::<async_nats::ServerAddr>().map_err(|e| format!("server {s:?}: {e}"))?);
            }
            let stream_config = stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", config.subject_prefix)],
                storage: stream::StorageType::File,
                num_replicas: config.replicas.max(1),
                duplicate_window: Duration::from_secs(120),
                retention: stream::RetentionPolicy::Limits,
                ..Default::default()
            };
            let js = run_on(&rt, async move {
                let client = async_nats::ConnectOptions::new()
                    .name("vitals")
                    .connection_timeout(Duration::from_secs(10))
                    .retry_on_initial_connect()
                    .connect(addrs)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                let js = jetstream::new(client);
                // Right after a server died, JetStream may be electing leaders for a while:
                // asked again for up to 30 s.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    match bounded(ANSWER_WITHIN, async {
                        js.get_or_create_stream(stream_config.clone()).await.map_err(|e| e.to_string())
                    })
                    .await
                    {
                        Ok(_) => break,
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            return Err(format!("cannot create the stream: {e}"));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                    }
                }
                Ok::<_, String>(js)
            })
            .and_then(|r| r)?;
            Ok::<_, String>(js)
        })();
        let js = match opened {
            Ok(js) => js,
            Err(reason) => {
                rt.shutdown_background();
                return Err(remote(reason));
            }
        };
        Ok(JetStreamLog {
            config,
            catalog,
            rt: Some(rt),
            js,
            name,
            id_prefix,
            next_id: 0,
            reader: None,
            pending: 0,
            empty_reads: 0,
        })
    }

    /// Records after `after`, at most `max`; with `wait`, waits up to that long for the
    /// first one when there is none yet (a tail that keeps up without polling).
    ///
    /// The consumer is kept from one read to the next, and dropped (made again at the next
    /// read) when a read fails, takes longer than `wait` and [`ANSWER_WITHIN`], or finds
    /// nothing four times in a row while the stream holds more: a consumer whose server
    /// died answers nothing, or times out.
    pub fn read(&mut self, after: u64, max: usize, wait: Option<Duration>) -> Result<Vec<Replayed>, LogError> {
        let mut out = Vec::new();
        for r in self.read_messages(after, max, wait)? {
            match r.message {
                Ok(Message::Samples(samples)) => out.push(Replayed { seq: r.seq, samples }),
                // A position without samples: kept, so positions stay contiguous.
                Ok(Message::Events(_) | Message::Erase { .. }) => {
                    out.push(Replayed { seq: r.seq, samples: Vec::new() })
                }
                Err(reason) => return Err(LogError::BadRecord { log: self.name.clone(), position: r.seq, reason }),
            }
        }
        Ok(out)
    }

    /// [`read`](Self::read), every message as it is: samples, events, or why it does not
    /// decode (the caller keeps it aside and reads on).
    pub fn read_messages(&mut self, after: u64, max: usize, wait: Option<Duration>) -> Result<Vec<Read>, LogError> {
        let consumer = match self.reader.take() {
            Some((next, c)) if next == after + 1 => c,
            _ => {
                let js = self.js.clone();
                let stream_name = self.config.stream.clone();
                self.run(bounded(ANSWER_WITHIN, async move {
                    let stream = js.get_stream(&stream_name).await.map_err(|e| e.to_string())?;
                    stream
                        .create_consumer(consumer::pull::Config {
                            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
                            ack_policy: consumer::AckPolicy::None,
                            inactive_threshold: Duration::from_secs(300),
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| e.to_string())
                }))?
            }
        };
        let reading = consumer.clone();
        let max = max.clamp(1, 10_000);
        let within = wait.unwrap_or_default() + ANSWER_WITHIN;
        let raw: (Vec<(u64, bytes::Bytes)>, Option<u64>) = self.run(bounded(within, async move {
            // What is there now, without waiting; if nothing is, wait (up to `wait`) for the
            // first message only, then take what came with it: a message is read as soon
            // as it is stored, not when a batch is full or the wait is over.
            let mut out = Vec::new();
            let mut pending = None;
            let now = reading.fetch().max_messages(max).messages().await.map_err(|e| e.to_string())?;
            take(now, &mut out, &mut pending).await?;
            if let (true, Some(w)) = (out.is_empty(), wait) {
                let first = reading.batch().max_messages(1).expires(w).messages().await.map_err(|e| e.to_string())?;
                take(first, &mut out, &mut pending).await?;
                if !out.is_empty() && max > 1 {
                    let rest = reading.fetch().max_messages(max - 1).messages().await.map_err(|e| e.to_string())?;
                    take(rest, &mut out, &mut pending).await?;
                }
            }
            Ok((out, pending))
        }))?;
        let (raw, pending) = raw;
        if let Some(p) = pending {
            self.pending = p;
        }
        let mut records = Vec::with_capacity(raw.len());
        let mut expected = after + 1;
        for (seq, body) in raw {
            // Nothing is ever deleted inside the stream (trims cut its start only), so a
            // position skipped is a message the consumer passed over (seen once a server
            // died under it): keep what came before, and read again from there with a new
            // consumer.
            if seq != expected && !(records.is_empty() && self.first()? >= seq) {
                tracing::warn!(log = %self.name, expected, got = seq, "the log's consumer skipped messages; reading again");
                return Ok(records);
            }
            expected = seq + 1;
            records.push(Read { seq, message: record::decode_any(&body, self.catalog), bytes: body });
        }
        if records.is_empty() {
            self.empty_reads += 1;
            if self.empty_reads.is_multiple_of(4) && self.last()? > after {
                tracing::warn!(log = %self.name, after, "the log's consumer stopped delivering; making a new one");
                return Ok(records);
            }
        } else {
            self.empty_reads = 0;
        }
        let next = records.last().map(|r| r.seq + 1).unwrap_or(after + 1);
        self.reader = Some((next, consumer));
        Ok(records)
    }

    /// Publishes a write's events (by their patients' buckets, as samples are) and returns
    /// the position of the last message once JetStream acknowledged every one.
    pub fn append_events(&mut self, events: &[Event]) -> Result<u64, LogError> {
        let messages: Vec<(usize, u16, bytes::Bytes)> =
            record::encode_events_by_bucket(events, &self.config).into_iter().map(|(b, body)| (0, b, body)).collect();
        Ok(self.publish_all(messages)?.into_iter().map(|(_, seq)| seq).max().unwrap_or(0))
    }

    /// Publishes a patient's erasure on their bucket's subject; its position once
    /// acknowledged. Every node's tail erases what it holds of the patient when it reads it.
    pub fn append_erasure(&mut self, patient: &PatientId) -> Result<u64, LogError> {
        let body = bytes::Bytes::from(record::encode_erasure(patient.as_str()));
        let bucket = bucket_of(patient, self.config.buckets);
        Ok(self.publish_all(vec![(0, bucket, body)])?.into_iter().map(|(_, seq)| seq).max().unwrap_or(0))
    }

    /// Publishes messages `(batch, bucket, body)` at once; answers each one's `(batch,
    /// position)` once every one is acknowledged.
    fn publish_all(&mut self, messages: Vec<(usize, u16, bytes::Bytes)>) -> Result<Vec<(usize, u64)>, LogError> {
        let js = self.js.clone();
        let timeout = self.config.ack_timeout;
        let mut sent = Vec::with_capacity(messages.len());
        for (i, bucket, body) in messages {
            self.next_id += 1;
            let id = format!("{}-{}", self.id_prefix, self.next_id);
            let (js, subject) = (js.clone(), format!("{}.{bucket}", self.config.subject_prefix));
            sent.push(async move { publish(js, subject, id, body, timeout).await.map(|seq| (i, seq)) });
        }
        self.run(async move {
            let all = futures_util::future::join_all(sent).await;
            all.into_iter().collect::<Result<Vec<(usize, u64)>, String>>()
        })
    }

    /// Position of the first record the stream still holds (after trims).
    fn first(&self) -> Result<u64, LogError> {
        let js = self.js.clone();
        let stream_name = self.config.stream.clone();
        self.run(bounded(ANSWER_WITHIN, async move {
            let mut stream = js.get_stream(&stream_name).await.map_err(|e| e.to_string())?;
            Ok(stream.info().await.map_err(|e| e.to_string())?.state.first_sequence)
        }))
    }

    /// Messages after the last one read, as the stream said with it.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    fn remote(&self, reason: impl std::fmt::Display) -> LogError {
        LogError::Remote { log: self.name.clone(), reason: reason.to_string() }
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, LogError> {
        let Some(rt) = &self.rt else { return Err(self.remote("closed")) };
        run_on(rt, fut).and_then(|r| r).map_err(|e| self.remote(e))
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// How long a server may take to answer a request about the stream or its consumer (a
/// consumer on a server that died never answers; the read fails and the next one makes a
/// new consumer).
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// `fut`, or an error once `limit` passed.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

/// Runs a future on the log's runtime and waits for it (from any thread, a tokio worker too).
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| "the log's runtime stopped".to_string())
}

/// Publishes one message and waits for JetStream's acknowledgement; sends it again with the
/// same id when the acknowledgement does not come or the publish is refused (the duplicate
/// window drops a copy), for up to twice `timeout`.
async fn publish(
    js: jetstream::Context,
    subject: String,
    id: String,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<u64, String> {
    let mut last_error = String::new();
    // A refusal comes at once while JetStream elects a new leader (a server died): the
    // next attempt waits a little longer, 50 ms doubling up to 1 s, about 10 s in all.
    let mut pause = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + timeout * 2;
    for attempt in 0..16 {
        if attempt > 0 {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let publish = jetstream::message::PublishMessage::build().payload(body.clone()).message_id(id.as_str());
        let attempt = async {
            let ack = js.send_publish(subject.clone(), publish).await.map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(ack)) => return Ok(ack.sequence),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = format!("no acknowledgement within {timeout:?}"),
        }
    }
    Err(format!("publish to {subject} not acknowledged: {last_error}"))
}

impl SampleLog for JetStreamLog {
    fn append(&mut self, batches: &[&[Sample]]) -> Result<Vec<u64>, LogError> {
        // Every message of every batch is published at once; each batch's position is its
        // last message's sequence.
        let mut messages = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            for (bucket, body) in record::encode_by_bucket(batch, &self.config, self.catalog) {
                messages.push((i, bucket, body));
            }
        }
        let acks = self.publish_all(messages)?;
        let mut positions = vec![0u64; batches.len()];
        for (i, seq) in acks {
            positions[i] = positions[i].max(seq);
        }
        Ok(positions)
    }

    fn read_after(&mut self, after: u64, max: usize) -> Result<Vec<Replayed>, LogError> {
        // A consumer on a server that is catching up (it just came back) delivers what that
        // server holds so far: read on, up to the stream's last position as its leader
        // says it now (or `max`), so that an answer short of `max` means the end.
        let target = self.last()?;
        let mut out = self.read(after, max, None)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let at = out.last().map_or(after, |r| r.seq);
            if out.len() >= max || at >= target {
                return Ok(out);
            }
            if std::time::Instant::now() >= deadline {
                return Err(self.remote(format!("the stream holds up to {target}, but reads stop at {at}")));
            }
            let more = self.read(at, max - out.len(), Some(Duration::from_millis(250)))?;
            out.extend(more);
        }
    }

    fn trim_through(&mut self, through: u64) -> Result<(), LogError> {
        let js = self.js.clone();
        let stream_name = self.config.stream.clone();
        self.run(async move {
            let stream = js.get_stream(&stream_name).await.map_err(|e| e.to_string())?;
            stream.purge().sequence(through + 1).await.map(drop).map_err(|e| e.to_string())
        })
    }

    fn last(&mut self) -> Result<u64, LogError> {
        let js = self.js.clone();
        let stream_name = self.config.stream.clone();
        self.run(bounded(ANSWER_WITHIN, async move {
            let mut stream = js.get_stream(&stream_name).await.map_err(|e| e.to_string())?;
            Ok(stream.info().await.map_err(|e| e.to_string())?.state.last_sequence)
        }))
    }
}

/// Drains one pull request's messages into `out` (stream position, body), noting how many
/// are left after the last.
async fn take(
    mut batch: consumer::pull::Batch,
    out: &mut Vec<(u64, bytes::Bytes)>,
    pending: &mut Option<u64>,
) -> Result<(), String> {
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| e.to_string())?;
        let info = m.info().map_err(|e| e.to_string())?;
        *pending = Some(info.pending);
        out.push((info.stream_sequence, m.payload.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        let p = |s: &str| PatientId::new(s).expect("id");
        // Fixed values: changing the function would move every patient to another node.
        assert_eq!(bucket_of(&p("p-1"), 64), 21);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let b = bucket_of(&p(&format!("patient-{i}")), 64);
            assert!(b < 64);
            seen.insert(b);
        }
        assert_eq!(seen.len(), 64, "a thousand patients fill every bucket");
        assert_eq!(bucket_of(&p("x"), 0), 0, "no buckets is one bucket");
    }
}
