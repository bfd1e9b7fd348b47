//! Cluster mode: several `vitals serve` nodes on NATS JetStream (the durable log) and
//! PostgreSQL (metadata, and who owns which patient bucket). See docs/cluster.md.
//!
//! - Writes: the pipeline hands accepted samples to [`publisher::Publisher`] instead of the
//!   local store; a write is acknowledged once the replicated log has it.
//! - Reads: every node reads the whole log into its own store ([`tail`]), so any node
//!   answers queries over every acknowledged sample.
//! - Rules: the heartbeat thread keeps this node's bucket leases ([`ownership`]); the
//!   alerting thread evaluates only the patients of the buckets it owns, so each patient's
//!   rules run on one node at a time, and a dead node's buckets move to the others.

pub mod ownership;
pub mod publisher;
pub mod tail;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use vitals_core::Catalog;
use vitals_jetstream::{JetStreamConfig, JetStreamLog};
use vitals_postgres::{Leases, Pool, Records};

use crate::config::{ClusterConfig, Config};
use crate::shutdown::Shutdown;

use ownership::Ownership;
use publisher::Publisher;
use tail::TailState;

/// Connections to PostgreSQL a node keeps at most.
const POOL_SIZE: usize = 8;

/// A node's part of the cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub pool: Arc<Pool>,
    pub ownership: Arc<Ownership>,
    pub tail: Arc<TailState>,
    pub publisher: Arc<Publisher>,
    /// The small stores' shared logs (alerts and their outbox).
    pub records: Records,
    leases: Arc<Leases>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.config.node).finish()
    }
}

impl Cluster {
    /// Connects to PostgreSQL and to the log (creating the stream and the tables if this is
    /// the first node), and starts publishing.
    pub fn open(config: &Config) -> anyhow::Result<Cluster> {
        let c = config.cluster.clone();
        let pool = Pool::connect(&c.postgres, &c.schema, POOL_SIZE).context("cluster: PostgreSQL")?;
        let ttl = Duration::from_millis(c.lease_ttl.as_ms().max(1000) as u64);
        let leases = Arc::new(Leases::open(Arc::clone(&pool), &c.schema, c.buckets, ttl).context("cluster: leases")?);
        let records = Records::open(Arc::clone(&pool), &c.schema).context("cluster: shared logs")?;
        let js = jetstream_config(&c);
        let publisher = Publisher::start(
            || JetStreamLog::open(js.clone(), Catalog::standard()),
            config.storage.max_inflight_samples,
        )
        .context("cluster: the log")?;
        Ok(Cluster {
            ownership: Arc::new(Ownership::new(c.buckets, &c.node)),
            tail: Arc::default(),
            publisher: Arc::new(publisher),
            records,
            leases,
            pool,
            config: c,
        })
    }

    /// Starts the tail (the log into the local store) and the heartbeat (bucket leases).
    pub fn start(
        &self,
        targets: tail::Targets,
        data_dir: std::path::PathBuf,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
        let log =
            JetStreamLog::open(jetstream_config(&self.config), Catalog::standard()).context("cluster: the log")?;
        let tail = tail::spawn(log, targets, data_dir, Arc::clone(&self.tail), shutdown.clone())?;
        let heartbeat = self.spawn_heartbeat(shutdown.clone())?;
        Ok(vec![tail, heartbeat])
    }

    fn spawn_heartbeat(&self, shutdown: Shutdown) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (leases, ownership) = (Arc::clone(&self.leases), Arc::clone(&self.ownership));
        let (node, advertise) = (self.config.node.clone(), self.config.advertise.clone());
        let every = Duration::from_millis((self.config.lease_ttl.as_ms().max(1000) / 3) as u64);
        std::thread::Builder::new().name("cluster-heartbeat".into()).spawn(move || {
            loop {
                match leases.heartbeat(&node, &advertise) {
                    Ok(tenure) => {
                        let before = ownership.owned().len();
                        ownership.update(&tenure);
                        let now = tenure.owned.len();
                        if now != before {
                            tracing::info!(node = %node, owned = now, live_nodes = tenure.live_nodes, "cluster: buckets owned");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cluster: heartbeat failed");
                        if !ownership.valid() {
                            ownership.clear();
                        }
                    }
                }
                if shutdown.wait_timeout(every) {
                    break;
                }
            }
            // A clean stop hands the buckets over at once.
            ownership.clear();
            if let Err(e) = leases.release_all(&node) {
                tracing::warn!(error = %e, "cluster: releasing buckets at shutdown");
            }
        })
    }

    /// The cluster's file-drop ledger.
    pub fn ledger(&self) -> anyhow::Result<vitals_postgres::PgLedger> {
        vitals_postgres::PgLedger::open(Arc::clone(&self.pool), &self.config.schema)
            .context("cluster: the file-drop ledger")
    }

    /// This node's part, for `/healthz` and the admin view.
    pub fn status(&self) -> Value {
        json!({
            "node": self.config.node,
            "buckets": self.ownership.buckets(),
            "owned_buckets": self.ownership.owned(),
            "leases_valid": self.ownership.valid(),
            "live_nodes": self.ownership.live_nodes(),
            "log_applied": self.tail.applied.load(Ordering::Relaxed),
            "log_behind": self.tail.behind.load(Ordering::Relaxed),
            "log_undecodable": self.tail.undecodable.load(Ordering::Relaxed),
        })
    }
}

/// A small pool of connections to the cluster's PostgreSQL, for the command line (the
/// server's [`Cluster`] keeps its own).
pub fn connect(c: &ClusterConfig) -> anyhow::Result<Arc<Pool>> {
    Pool::connect(&c.postgres, &c.schema, 2).context("cluster: PostgreSQL")
}

/// The log's settings from `[cluster]`.
pub fn jetstream_config(c: &ClusterConfig) -> JetStreamConfig {
    JetStreamConfig {
        servers: c.nats.clone(),
        stream: c.stream.clone(),
        replicas: c.replicas,
        buckets: c.buckets,
        ..JetStreamConfig::default()
    }
}
