//! Kafka and Azure Event Hubs client mode (`[kafka]`): Vitals is a member of a consumer
//! group and takes what producers write to the configured topics. `topics` carry Vitals'
//! own samples (JSON, NDJSON or CSV, sniffed per message; each sample names its patient:
//! readings and device telemetry alike); `line_protocol_topics` carry InfluxDB line
//! protocol (Telegraf's Kafka output). Who may write to a topic is the cluster's ACL, as
//! with an MQTT broker. The offsets after a batch are committed only once all of its
//! samples are durable (the write-ahead log, or the replicated log in cluster mode, where
//! the nodes of one group share the partitions); refused messages and items become dead
//! letters (source `kafka`, with topic, partition and offset) and are committed too: the
//! dead letter keeps them.

use std::time::Duration;

use tokio::runtime::Handle;
use vitals_ingest::Format;
use vitals_ingest::line_protocol::Precision;
use vitals_kafka::{Handler, KafkaSource, Record, TopicFormat};

use super::pipeline::{IngestError, Pending, Submission};
use super::wire_format::WireFormat;
use crate::app::AppState;
use crate::shutdown::Shutdown;

/// The dead-letter source name of Kafka messages.
const SOURCE: &str = "kafka";

/// How long a message waits out an overload before its batch is read again.
const OVERLOAD_RETRY: Duration = Duration::from_secs(2);

/// Starts the consumer if `[kafka] enabled`; it runs until `shutdown`. Fails at once on
/// settings librdkafka refuses.
pub(crate) fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !app.config.kafka.enabled {
        return Ok(None);
    }
    let source = KafkaSource::new(app.config.kafka.clone())?;
    let runtime = Handle::current();
    let thread = std::thread::Builder::new().name("vitals-kafka".into()).spawn(move || {
        let mut handler = ToPipeline { app, runtime };
        source.run(&mut handler, &|d| shutdown.wait_timeout(d));
    })?;
    Ok(Some(thread))
}

/// Takes batches through the pipeline.
struct ToPipeline {
    app: AppState,
    runtime: Handle,
}

impl Handler for ToPipeline {
    fn handle(&mut self, batch: Vec<Record>) -> Result<(), String> {
        let mut pending = Vec::with_capacity(batch.len());
        for record in batch {
            self.app.telemetry.kafka_messages.inc();
            if let Some(p) = self.submit(record).map_err(|e| e.to_string())? {
                pending.push(p);
            }
        }
        for p in pending {
            p.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn committed(&mut self, messages: usize) {
        self.app.telemetry.kafka_committed.inc_by(messages as u64);
    }

    fn failed(&mut self, _why: &str) {
        self.app.telemetry.kafka_errors.inc();
    }
}

impl ToPipeline {
    /// Decodes one message and queues its samples; `None` when there is nothing to wait
    /// for (a tombstone, or a message refused whole and kept as a dead letter).
    fn submit(&self, record: Record) -> Result<Option<Pending>, IngestError> {
        let Some(payload) = record.payload else {
            // A message without a value (compaction's tombstone) carries no readings.
            return Ok(None);
        };
        let format = match record.format {
            TopicFormat::Native => WireFormat::Native(Format::sniff(&payload)),
            TopicFormat::LineProtocol => WireFormat::LineProtocol(Precision::Nanoseconds),
        };
        let sub = Submission::new(SOURCE, format, payload);
        let context = [
            ("topic", record.topic.clone()),
            ("partition", record.partition.to_string()),
            ("offset", record.offset.to_string()),
        ];
        let pipeline = &self.app.pipeline;
        let accepted = match pipeline.decode_with(&sub, &context) {
            Ok(a) => a,
            Err(IngestError::Undecodable { message, .. }) => {
                self.app.telemetry.kafka_malformed.inc();
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, reason = %message, "kafka message refused");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.runtime.block_on(pipeline.submit_retrying(accepted, OVERLOAD_RETRY)).map(Some)
    }
}
