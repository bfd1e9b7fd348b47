//! A producer for gateways and the simulator: `send` returns once the cluster acknowledged
//! every message (`acks=all`, idempotent), or says why not.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("kafka: sending to {topic}: {source}")]
    Send {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("kafka: {failed} of {sent} messages to {topic} not delivered: {first}")]
    Delivery { topic: String, sent: usize, failed: usize, first: String },
    #[error("kafka: {topic}: no acknowledgement within {timeout:?}")]
    Timeout { topic: String, timeout: Duration },
}

/// How long `send` waits for the cluster's acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Acknowledgements of one `send`.
#[derive(Default)]
struct Tally {
    state: Mutex<(usize, usize, Option<String>)>,
    changed: Condvar,
}

struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Tally>;

    fn delivery(&self, result: &DeliveryResult<'_>, tally: Arc<Tally>) {
        if let Ok(mut s) = tally.state.lock() {
            match result {
                Ok(_) => s.0 += 1,
                Err((e, _)) => {
                    s.1 += 1;
                    s.2.get_or_insert_with(|| e.to_string());
                }
            }
        }
        tally.changed.notify_all();
    }
}

/// A producer on the cluster of a `[kafka]` section (its brokers, security and properties).
pub struct KafkaProducer {
    inner: ThreadedProducer<Deliveries>,
}

impl KafkaProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<KafkaProducer, ProducerError> {
        let mut c: ClientConfig = cfg.connection_config();
        c.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "5");
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        let inner = c.create_with_context(Deliveries).map_err(ProducerError::Create)?;
        Ok(KafkaProducer { inner })
    }

    /// Sends `(key, value)` messages to `topic` and waits until the cluster acknowledged
    /// each of them.
    pub fn send(&self, topic: &str, messages: &[(Option<&[u8]>, &[u8])]) -> Result<(), ProducerError> {
        let tally = Arc::new(Tally::default());
        for (key, value) in messages {
            let mut record = BaseRecord::<[u8], [u8], Arc<Tally>>::with_opaque_to(topic, tally.clone()).payload(*value);
            if let Some(k) = key {
                record = record.key(*k);
            }
            let mut pending = Some(record);
            while let Some(r) = pending.take() {
                match self.inner.send(r) {
                    Ok(()) => {}
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for deliveries to make room.
                        let s = tally.state.lock().map_err(|_| timeout(topic))?;
                        drop(tally.changed.wait_timeout(s, Duration::from_millis(20)));
                        pending = Some(back);
                    }
                    Err((source, _)) => return Err(ProducerError::Send { topic: topic.to_owned(), source }),
                }
            }
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut s = tally.state.lock().map_err(|_| timeout(topic))?;
        while s.0 + s.1 < messages.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timeout(topic));
            }
            s = tally.changed.wait_timeout(s, left).map_err(|_| timeout(topic))?.0;
        }
        if s.1 > 0 {
            return Err(ProducerError::Delivery {
                topic: topic.to_owned(),
                sent: messages.len(),
                failed: s.1,
                first: s.2.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

fn timeout(topic: &str) -> ProducerError {
    ProducerError::Timeout { topic: topic.to_owned(), timeout: ACK_TIMEOUT }
}
