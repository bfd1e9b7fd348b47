//! The consumer: one blocking thread in a consumer group that reads a batch, hands it to
//! the [`Handler`] (which returns once the batch is durable), and only then commits the
//! offsets after it. Nothing is committed that is not durable: a handler that fails, a
//! commit that fails, or a crash, and the group reads again from its last commit (writing
//! the same samples twice stores nothing twice). Rebalances happen only inside `poll`,
//! after the previous batch was committed, so a partition changes hands with nothing read
//! and not committed.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::{KafkaConfig, TopicFormat};

/// One message read from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone (a message without a value).
    pub payload: Option<Vec<u8>>,
    pub format: TopicFormat,
}

/// Where what was read goes.
pub trait Handler {
    /// Takes `batch` (in the order read) to durability. `Ok`: every record is durable or
    /// kept as a dead letter, and the offsets after them may be committed. `Err(why)`:
    /// not all are; the consumer leaves the group and reads them again from the last commit.
    fn handle(&mut self, batch: Vec<Record>) -> Result<(), String>;

    /// Offsets were committed after `messages` messages.
    fn committed(&mut self, _messages: usize) {}

    /// Something failed (the cluster unreachable, a commit refused, the handler failing).
    fn failed(&mut self, _why: &str) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka consumer: {0}")]
    Create(#[source] KafkaError),
    #[error("kafka: subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("kafka: committing offsets: {0}")]
    Commit(#[source] KafkaError),
    #[error("kafka: {0}")]
    Handler(String),
}

/// The biggest batch in bytes (besides `batch_messages`).
const BATCH_BYTES: usize = 16 << 20;
/// How long one poll waits for a first message (and how quickly a stop is noticed).
const POLL: Duration = Duration::from_millis(200);
/// Waits between failed sessions: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A configured consumer, ready to run.
pub struct KafkaSource {
    cfg: KafkaConfig,
}

impl KafkaSource {
    /// Checks that the settings make a consumer (unknown librdkafka properties, bad values)
    /// without connecting.
    pub fn new(cfg: KafkaConfig) -> Result<KafkaSource, ConsumerError> {
        let source = KafkaSource { cfg };
        drop(source.consumer()?);
        Ok(source)
    }

    fn consumer(&self) -> Result<BaseConsumer, ConsumerError> {
        let mut c = self.cfg.client_config();
        if !self.cfg.properties.contains_key("queued.max.messages.kbytes") {
            // What librdkafka prefetches per partition: bounded memory beside the batch.
            c.set("queued.max.messages.kbytes", "16384");
        }
        c.create().map_err(ConsumerError::Create)
    }

    /// Consumes until `stop` says so: `stop(d)` waits up to `d` for the signal to stop and
    /// returns whether it came (`stop(Duration::ZERO)` only looks). Failures (an unreachable
    /// cluster, a refused commit, a handler that could not store) end the session: after a
    /// backoff the consumer joins the group again and resumes from the last commit.
    pub fn run(&self, handler: &mut dyn Handler, stop: &dyn Fn(Duration) -> bool) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.session(handler, stop, &mut backoff) {
                Ok(()) => return,
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(error = %why, retry_in_ms = backoff.as_millis(), "kafka session ended; resuming from the last commit");
                    handler.failed(&why);
                }
            }
            if stop(backoff) {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn session(
        &self,
        handler: &mut dyn Handler,
        stop: &dyn Fn(Duration) -> bool,
        backoff: &mut Duration,
    ) -> Result<(), ConsumerError> {
        let consumer = self.consumer()?;
        let topics = self.cfg.all_topics();
        consumer.subscribe(&topics).map_err(|source| ConsumerError::Subscribe {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            source,
        })?;
        tracing::info!(brokers = %self.cfg.brokers, group = %self.cfg.group_id, ?topics, "kafka consumer subscribed");
        loop {
            if stop(Duration::ZERO) {
                return Ok(());
            }
            let batch = self.read_batch(&consumer, handler);
            if batch.is_empty() {
                continue;
            }
            let offsets = next_offsets(&batch)?;
            let n = batch.len();
            handler.handle(batch).map_err(ConsumerError::Handler)?;
            consumer.commit(&offsets, CommitMode::Sync).map_err(ConsumerError::Commit)?;
            handler.committed(n);
            *backoff = BACKOFF_FIRST;
        }
    }

    /// Up to `batch_messages` messages (and [`BATCH_BYTES`]): waits [`POLL`] for the first,
    /// then takes what is already there.
    fn read_batch(&self, consumer: &BaseConsumer, handler: &mut dyn Handler) -> Vec<Record> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut wait = POLL;
        while batch.len() < self.cfg.batch_messages && bytes < BATCH_BYTES {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    let payload = m.payload().map(<[u8]>::to_vec);
                    bytes += payload.as_ref().map_or(0, Vec::len);
                    batch.push(Record {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload,
                        format: self.cfg.format_of(m.topic()),
                    });
                }
                Some(Err(e)) => {
                    // librdkafka reconnects and retries on its own; these are reports.
                    let why = e.to_string();
                    tracing::warn!(error = %why, "kafka");
                    handler.failed(&why);
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        batch
    }
}

/// The offsets to commit after `batch`: per partition, the one after the last read.
fn next_offsets(batch: &[Record]) -> Result<TopicPartitionList, ConsumerError> {
    let mut last: Vec<(&str, i32, i64)> = Vec::new();
    for r in batch {
        match last.iter_mut().find(|(t, p, _)| *t == r.topic && *p == r.partition) {
            Some(entry) => entry.2 = entry.2.max(r.offset),
            None => last.push((&r.topic, r.partition, r.offset)),
        }
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in last {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1)).map_err(ConsumerError::Commit)?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, partition: i32, offset: i64) -> Record {
        Record {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            payload: Some(b"x".to_vec()),
            format: TopicFormat::Native,
        }
    }

    #[test]
    fn commits_the_offset_after_the_last_of_each_partition() {
        let batch = [rec("a", 0, 5), rec("a", 1, 9), rec("a", 0, 6), rec("b", 0, 2)];
        let tpl = next_offsets(&batch).expect("offsets");
        let got: Vec<(String, i32, Offset)> =
            tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition(), e.offset())).collect();
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), 0, Offset::Offset(7)),
                ("a".to_owned(), 1, Offset::Offset(10)),
                ("b".to_owned(), 0, Offset::Offset(3))
            ]
        );
    }

    #[test]
    fn bad_properties_are_refused_before_connecting() {
        let mut cfg = KafkaConfig { enabled: true, topics: vec!["t".into()], ..KafkaConfig::default() };
        cfg.properties.insert("no.such.property".into(), "1".into());
        let err = KafkaSource::new(cfg).err().expect("refused");
        assert!(err.to_string().contains("no.such.property"), "{err}");
    }
}
