//! Prometheus metrics of the server (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use vitals_storage::Store;
use vitals_storage::dead_letter::DeadLetters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The way in, as dead letters name it (`api/samples`, `mqtt`, `file-drop`...).
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoadLabel {
    pub load: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabel {
    pub channel: String,
    /// delivered, retry or dead
    pub outcome: String,
}

pub struct Telemetry {
    registry: Registry,
    pub ingested: Counter,
    pub rejected: Family<CodeLabel, Counter>,
    /// Refused items and whole bodies, by the way in.
    pub refused: Family<SourceLabel, Counter>,
    /// Alert state changes, by kind (opened, resolved, reopened, retracted).
    pub alert_transitions: Family<CodeLabel, Counter>,
    /// Delivery attempts of notices, by channel and outcome.
    pub notices: Family<NoticeLabel, Counter>,
    /// Time of one delivery attempt.
    pub notice_send_seconds: Histogram,
    /// Time from a batch of samples being durable to its alert changes being committed
    /// (with their notices).
    pub alert_eval_seconds: Histogram,
    /// Readings that arrived too late to change alerts (older than the horizon).
    pub alert_late_readings: Counter,
    pub write_latency: Histogram,
    pub query_latency: Histogram,
    pub mqtt_messages: Counter,
    pub mqtt_malformed: Counter,
    /// 1 while the MQTT client is connected to its broker.
    pub mqtt_connected: Gauge,
    pub mqtt_connection_errors: Counter,
    /// Kafka messages read, messages whose offsets were committed (durable), refused
    /// as a whole, and failures (cluster unreachable, commits refused, stores failing).
    pub kafka_messages: Counter,
    pub kafka_committed: Counter,
    pub kafka_malformed: Counter,
    pub kafka_errors: Counter,
    /// Pulls of vendor clouds, and those that failed.
    pub connection_pulls: Counter,
    pub connection_pull_failures: Counter,
    pub file_drop_failed: Counter,
    /// Requests holding a slot of a limited class (`write`, `heavy`, `live`, `login`).
    pub slots_in_use: Family<LoadLabel, Gauge>,
    wal_bytes: Gauge<u64, AtomicU64>,
    /// Cluster mode: buckets this node owns, nodes alive, how far its tail of the log is.
    pub cluster_owned_buckets: Gauge,
    pub cluster_live_nodes: Gauge,
    pub cluster_log_behind: Gauge,
    pub cluster_log_applied: Gauge<u64, AtomicU64>,
    pub cluster_log_undecodable: Gauge<u64, AtomicU64>,
    segments: Gauge,
    segment_bytes: Gauge<u64, AtomicU64>,
    buffered: Gauge,
    flushes: Counter,
    compactions: Counter,
    archived: Counter,
    maintenance_errors: Counter,
    lake_uploads: Counter,
    lake_upload_bytes: Counter,
    lake_fetches: Counter,
    lake_remote_deletes: Counter,
    lake_remote_errors: Counter,
    lake_adopted: Counter,
    lake_published: Counter,
    dead_letters: Gauge,
    dead_letters_dropped: Counter,
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vitals");
        let ingested = Counter::default();
        let rejected = Family::<CodeLabel, Counter>::default();
        let write_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let query_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let t = Telemetry {
            ingested,
            rejected,
            refused: Family::default(),
            alert_transitions: Family::default(),
            notices: Family::default(),
            notice_send_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            alert_eval_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            alert_late_readings: Counter::default(),
            write_latency,
            query_latency,
            mqtt_messages: Counter::default(),
            mqtt_malformed: Counter::default(),
            mqtt_connected: Gauge::default(),
            mqtt_connection_errors: Counter::default(),
            kafka_messages: Counter::default(),
            kafka_committed: Counter::default(),
            kafka_malformed: Counter::default(),
            kafka_errors: Counter::default(),
            connection_pulls: Counter::default(),
            connection_pull_failures: Counter::default(),
            file_drop_failed: Counter::default(),
            slots_in_use: Family::default(),
            wal_bytes: Gauge::default(),
            cluster_owned_buckets: Gauge::default(),
            cluster_live_nodes: Gauge::default(),
            cluster_log_behind: Gauge::default(),
            cluster_log_applied: Gauge::default(),
            cluster_log_undecodable: Gauge::default(),
            segments: Gauge::default(),
            segment_bytes: Gauge::default(),
            buffered: Gauge::default(),
            flushes: Counter::default(),
            compactions: Counter::default(),
            archived: Counter::default(),
            maintenance_errors: Counter::default(),
            lake_uploads: Counter::default(),
            lake_upload_bytes: Counter::default(),
            lake_fetches: Counter::default(),
            lake_remote_deletes: Counter::default(),
            lake_remote_errors: Counter::default(),
            lake_adopted: Counter::default(),
            lake_published: Counter::default(),
            dead_letters: Gauge::default(),
            dead_letters_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("ingested_samples", "Samples accepted and durable", t.ingested.clone());
        registry.register("rejected_samples", "Samples rejected, by code", t.rejected.clone());
        registry.register(
            "refused",
            "Items and whole bodies refused (and kept as dead letters), by the way in",
            t.refused.clone(),
        );
        registry.register("alert_transitions", "Alert state changes, by kind", t.alert_transitions.clone());
        registry.register("notices", "Notice delivery attempts, by channel and outcome", t.notices.clone());
        registry.register("notice_send_seconds", "Time of one notice delivery attempt", t.notice_send_seconds.clone());
        registry.register(
            "alert_eval_seconds",
            "Time from samples being durable to their alert changes being recorded",
            t.alert_eval_seconds.clone(),
        );
        registry.register(
            "alert_late_readings",
            "Readings too late (beyond alerting.horizon) to change alerts",
            t.alert_late_readings.clone(),
        );
        registry.register(
            "write_latency_seconds",
            "Time from request to durable acknowledgement",
            t.write_latency.clone(),
        );
        registry.register("query_latency_seconds", "Time to answer a series query", t.query_latency.clone());
        registry.register("wal_bytes", "Bytes in write-ahead log files", t.wal_bytes.clone());
        registry.register("segments", "Parquet segments in the lake", t.segments.clone());
        registry.register(
            "cluster_owned_buckets",
            "Cluster mode: patient buckets this node owns (evaluates the rules of)",
            t.cluster_owned_buckets.clone(),
        );
        registry.register(
            "cluster_live_nodes",
            "Cluster mode: nodes that renewed their leases",
            t.cluster_live_nodes.clone(),
        );
        registry.register(
            "cluster_log_behind",
            "Cluster mode: messages of the log not yet in this node's store",
            t.cluster_log_behind.clone(),
        );
        registry.register(
            "cluster_log_applied",
            "Cluster mode: the log's position this node's store holds",
            t.cluster_log_applied.clone(),
        );
        registry.register(
            "cluster_log_undecodable",
            "Cluster mode: messages of the log this node could not decode (kept as dead letters)",
            t.cluster_log_undecodable.clone(),
        );
        registry.register("segment_bytes", "Bytes of Parquet segments in the lake", t.segment_bytes.clone());
        registry.register("buffered_samples", "Samples in memory not yet in segments", t.buffered.clone());
        registry.register("flushes", "Buffer flushes to segments", t.flushes.clone());
        registry.register("compactions", "Partition compactions", t.compactions.clone());
        registry.register("lake_archived", "Merges across days into archive segments", t.archived.clone());
        registry.register(
            "maintenance_errors",
            "Failed flush, compaction or retention runs",
            t.maintenance_errors.clone(),
        );
        registry.register("lake_uploads", "Segments uploaded to the remote lake", t.lake_uploads.clone());
        registry.register("lake_upload_bytes", "Bytes uploaded to the remote lake", t.lake_upload_bytes.clone());
        registry.register("lake_fetches", "Cold segments fetched from the remote lake", t.lake_fetches.clone());
        registry.register("lake_remote_deletes", "Objects deleted from the remote lake", t.lake_remote_deletes.clone());
        registry.register(
            "lake_adopted",
            "Cluster mode: series-days taken from the shared lake's catalog instead of a local copy",
            t.lake_adopted.clone(),
        );
        registry.register(
            "lake_published",
            "Cluster mode: series-days this node published to the shared lake's catalog",
            t.lake_published.clone(),
        );
        registry.register(
            "lake_remote_errors",
            "Failed rounds of the remote lake (uploads, deletions, sweeps)",
            t.lake_remote_errors.clone(),
        );
        registry.register("mqtt_messages", "MQTT messages received", t.mqtt_messages.clone());
        registry.register(
            "file_drop_failed",
            "Dropped files that failed and moved to failed/",
            t.file_drop_failed.clone(),
        );
        registry.register(
            "slots_in_use",
            "Requests holding a slot of a limited class (write, heavy, live, login)",
            t.slots_in_use.clone(),
        );
        registry.register("mqtt_malformed", "MQTT payloads refused as a whole", t.mqtt_malformed.clone());
        registry.register("mqtt_connected", "1 while connected to the MQTT broker", t.mqtt_connected.clone());
        registry.register(
            "mqtt_connection_errors",
            "Failed or lost connections to the MQTT broker (TLS errors included)",
            t.mqtt_connection_errors.clone(),
        );
        registry.register("kafka_messages", "Kafka messages read", t.kafka_messages.clone());
        registry.register(
            "kafka_committed",
            "Kafka messages durable here whose offsets were committed",
            t.kafka_committed.clone(),
        );
        registry.register("kafka_malformed", "Kafka messages refused as a whole", t.kafka_malformed.clone());
        registry.register(
            "kafka_errors",
            "Kafka failures: cluster unreachable, commits refused, batches not stored (read again)",
            t.kafka_errors.clone(),
        );
        registry.register("connection_pulls", "Pulls of connected vendor clouds", t.connection_pulls.clone());
        registry.register(
            "connection_pull_failures",
            "Pulls of vendor clouds that failed (vendor unreachable, credentials refused, not stored)",
            t.connection_pull_failures.clone(),
        );
        registry.register("dead_letters", "Refused inputs kept for inspection and replay", t.dead_letters.clone());
        registry.register(
            "dead_letters_dropped",
            "Dead letters dropped because the store was full",
            t.dead_letters_dropped.clone(),
        );
        Telemetry { registry, ..t }
    }

    /// Refreshes the storage gauges and renders everything in the Prometheus text format.
    pub fn render(&self, store: &Store, dead: &DeadLetters) -> String {
        self.dead_letters.set(dead.len() as i64);
        catch_up(&self.dead_letters_dropped, dead.dropped());
        let sizes = store.sizes();
        let stats = store.stats();
        self.wal_bytes.set(stats.wal_bytes.load(Ordering::Relaxed));
        self.segments.set(sizes.segments as i64);
        self.segment_bytes.set(sizes.segment_bytes);
        self.buffered.set(sizes.buffered_samples as i64);
        catch_up(&self.flushes, stats.flushes.load(Ordering::Relaxed));
        catch_up(&self.compactions, stats.compactions.load(Ordering::Relaxed));
        catch_up(&self.archived, stats.archived.load(Ordering::Relaxed));
        catch_up(&self.maintenance_errors, stats.maintenance_errors.load(Ordering::Relaxed));
        catch_up(&self.lake_uploads, stats.uploads.load(Ordering::Relaxed));
        catch_up(&self.lake_upload_bytes, stats.upload_bytes.load(Ordering::Relaxed));
        catch_up(&self.lake_fetches, stats.fetches.load(Ordering::Relaxed));
        catch_up(&self.lake_remote_deletes, stats.remote_deletes.load(Ordering::Relaxed));
        catch_up(&self.lake_remote_errors, stats.remote_errors.load(Ordering::Relaxed));
        catch_up(&self.lake_adopted, stats.adopted.load(Ordering::Relaxed));
        catch_up(&self.lake_published, stats.published.load(Ordering::Relaxed));
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Brings a counter up to a total kept elsewhere (counters only go up).
fn catch_up(c: &Counter, total: u64) {
    let cur = c.get();
    if total > cur {
        c.inc_by(total - cur);
    }
}
