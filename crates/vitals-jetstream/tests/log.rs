//! The log's contract (`vitals_storage::log::conformance`) against a real three-node NATS
//! JetStream cluster on 127.0.0.1 (nats-server installed by scripts/test), and what a
//! cluster adds: acknowledged writes survive a server killed with SIGKILL.

use std::sync::Arc;

use vitals_core::{Catalog, Sample};
use vitals_jetstream::testing::NatsCluster;
use vitals_jetstream::{JetStreamConfig, JetStreamLog};
use vitals_storage::log::SampleLog;
use vitals_storage::log::conformance::{self, Fixture, sample};

struct Js {
    config: JetStreamConfig,
}

impl Fixture for Js {
    fn open(&self) -> Box<dyn SampleLog> {
        Box::new(JetStreamLog::open(self.config.clone(), Catalog::standard()).expect("open the stream"))
    }
}

fn config(cluster: &NatsCluster, stream: &str) -> JetStreamConfig {
    JetStreamConfig {
        servers: cluster.urls(),
        stream: stream.into(),
        subject_prefix: format!("t.{stream}"),
        ..Default::default()
    }
}

#[test]
fn the_jetstream_log_keeps_the_log_contract() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = Arc::new(NatsCluster::start(dir.path().to_owned(), 3));
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::run_all(&|| {
        let stream = format!("S{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Box::new(Js { config: config(&cluster, &stream) })
    });
}

#[test]
fn acknowledged_writes_survive_a_server_killed_mid_stream() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cluster = NatsCluster::start(dir.path().to_owned(), 3);
    let config = config(&cluster, "KILL");
    let mut log = JetStreamLog::open(config.clone(), Catalog::standard()).expect("open");
    let mut acked: Vec<Sample> = Vec::new();
    for round in 0..40 {
        if round == 15 {
            cluster.kill(0);
        }
        let batch: Vec<Sample> = (round * 50..round * 50 + 50).map(sample).collect();
        // A write either is acknowledged (and must be kept) or fails (and the client retries).
        if log.append(&[&batch]).is_ok() {
            acked.extend(batch);
        }
    }
    assert!(acked.len() >= 35 * 50, "two of three servers keep accepting writes: {} acked", acked.len());
    cluster.start_node(0);
    cluster.wait_ready(0);
    let mut reader = JetStreamLog::open(config, Catalog::standard()).expect("open again");
    let mut got = Vec::new();
    let mut at = 0;
    loop {
        let records = reader.read_after(at, 500).expect("read");
        let Some(last) = records.last() else { break };
        at = last.seq;
        got.extend(records.into_iter().flat_map(|r| r.samples));
    }
    let mut count: std::collections::HashMap<(String, i64), usize> = Default::default();
    for s in &got {
        *count.entry((s.patient.as_str().to_owned(), s.time_ms)).or_default() += 1;
    }
    for s in &acked {
        let n = count.get(&(s.patient.as_str().to_owned(), s.time_ms)).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged sample {} at {} is there exactly once", s.patient.as_str(), s.time_ms);
    }
    // A write that failed may have been stored in part (its client sends it again), but
    // never twice.
    assert!(count.values().all(|n| *n == 1), "no sample stored twice");
}
