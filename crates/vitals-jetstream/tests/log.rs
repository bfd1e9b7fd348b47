//! The log's contract (`vitals_storage::log::conformance`) against a real three-node NATS
//! JetStream cluster on 127.0.0.1 (nats-server installed by scripts/test), and what a
//! cluster adds: acknowledged writes survive a server killed with SIGKILL.

use std::sync::Arc;

use vitals_core::{Catalog, Sample};
use vitals_jetstream::testing::NatsCluster;
use vitals_jetstream::{JetStreamConfig, JetStreamLog, Message};
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

#[test]
fn events_and_foreign_messages_keep_their_place_in_the_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = NatsCluster::start(dir.path().to_owned(), 3);
    let config = config(&cluster, "MIXED");
    let mut log = JetStreamLog::open(config.clone(), Catalog::standard()).expect("open");
    let first = log.append(&[&[sample(1)]]).expect("samples")[0];
    let event = vitals_core::Event {
        id: "w-1".into(),
        patient: sample(2).patient.as_str().into(),
        kind: "workout".into(),
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_000_600_000,
        source: "test".into(),
        attributes: [("name".to_owned(), serde_json::json!("run"))].into(),
    };
    let at_events = log.append_events(std::slice::from_ref(&event)).expect("events");
    let foreign = vitals_jetstream::testing::publish_raw(&cluster.urls(), "t.MIXED.3", b"not ours");
    let last = log.append(&[&[sample(3)]]).expect("samples")[0];
    assert_eq!((first + 1, first + 2, first + 3), (at_events, foreign, last), "positions follow each other");

    let mut reader = JetStreamLog::open(config, Catalog::standard()).expect("open again");
    let read = reader.read_messages(0, 10, None).expect("read");
    let seqs: Vec<u64> = read.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![first, at_events, foreign, last]);
    assert_eq!(read[0].message, Ok(Message::Samples(vec![sample(1)])));
    assert_eq!(read[1].message, Ok(Message::Events(vec![event])));
    let reason = read[2].message.as_ref().expect_err("a foreign body does not decode");
    assert!(reason.contains("no VLG or VLE header"), "{reason}");
    assert_eq!(&read[2].bytes[..], b"not ours", "its bytes are there to keep aside");
    assert_eq!(read[3].message, Ok(Message::Samples(vec![sample(3)])));
    // The samples' contract names the position that does not decode.
    match reader.read_after(first, 10) {
        Err(vitals_storage::log::LogError::BadRecord { position, .. }) => assert_eq!(position, foreign),
        other => panic!("expected the bad record at {foreign}: {other:?}"),
    }
}
