//! The consumer against a real Kafka-protocol broker (tansu, from scripts/test): offsets are
//! committed only after the handler said the batch is durable, so a failing handler or a
//! restart reads again from the last commit and loses nothing.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vitals_kafka::testing::Broker;
use vitals_kafka::{Handler, KafkaConfig, KafkaSource, Record, TopicFormat};

/// What a handler saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// (topic, partition, offset) -> payload, for every batch the handler said is durable.
    durable: BTreeMap<(String, i32, i64), Vec<u8>>,
    /// Batches handed over, durable or not.
    batches: usize,
    committed: usize,
    failures: Vec<String>,
}

struct Recorder {
    seen: Arc<Mutex<Seen>>,
    /// Fail this many batches before taking any.
    fail_first: usize,
}

impl Handler for Recorder {
    fn handle(&mut self, batch: Vec<Record>) -> Result<(), String> {
        let mut seen = self.seen.lock().expect("lock");
        seen.batches += 1;
        if self.fail_first > 0 {
            self.fail_first -= 1;
            return Err("the disk is full".into());
        }
        for r in batch {
            assert_eq!(r.format, if r.topic == "telegraf" { TopicFormat::LineProtocol } else { TopicFormat::Native });
            seen.durable.insert((r.topic, r.partition, r.offset), r.payload.unwrap_or_default());
        }
        Ok(())
    }

    fn committed(&mut self, messages: usize) {
        self.seen.lock().expect("lock").committed += messages;
    }

    fn failed(&mut self, why: &str) {
        self.seen.lock().expect("lock").failures.push(why.to_owned());
    }
}

struct Running {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start(cfg: &KafkaConfig, seen: &Arc<Mutex<Seen>>, fail_first: usize) -> Running {
    let source = KafkaSource::new(cfg.clone()).expect("valid settings");
    let (stop, stopped) = mpsc::channel();
    let mut handler = Recorder { seen: seen.clone(), fail_first };
    let thread = std::thread::spawn(move || {
        let stop = |d: Duration| !matches!(stopped.recv_timeout(d), Err(mpsc::RecvTimeoutError::Timeout));
        source.run(&mut handler, &stop)
    });
    Running { stop, thread }
}

impl Running {
    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("consumer thread");
    }
}

fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn config(broker: &Broker, group: &str) -> KafkaConfig {
    KafkaConfig {
        enabled: true,
        brokers: broker.address(),
        group_id: group.into(),
        topics: vec!["readings".into()],
        line_protocol_topics: vec!["telegraf".into()],
        batch_messages: 50,
        ..KafkaConfig::default()
    }
}

fn payloads(n: usize, from: usize) -> Vec<Vec<u8>> {
    (from..from + n).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect()
}

#[test]
fn a_restarted_consumer_resumes_after_its_last_commit_and_a_failed_batch_is_read_again() {
    let broker = Broker::start();
    broker.create_topic("readings", 3);
    broker.create_topic("telegraf", 1);
    let first = payloads(300, 0);
    let msgs: Vec<(Option<&str>, &[u8])> =
        first.iter().enumerate().map(|(i, p)| (Some(["p-1", "p-2", "p-3", "p-4"][i % 4]), p.as_slice())).collect();
    broker.produce("readings", &msgs);
    broker.produce("telegraf", &[(None, b"heart_rate,patient=p-1 value=61 1700000000000000000".as_slice())]);

    // The first batches fail (the store refuses them): nothing may be committed for them,
    // and the consumer must read them again.
    let cfg = config(&broker, "vitals-a");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = start(&cfg, &seen, 2);
    until("all 301 messages durable", || seen.lock().expect("lock").durable.len() == 301);
    until("all of them committed", || seen.lock().expect("lock").committed >= 301);
    running.stop();
    {
        let s = seen.lock().expect("lock");
        assert!(s.failures.iter().any(|f| f.contains("the disk is full")), "{:?}", s.failures);
        let mut got: Vec<&Vec<u8>> = s.durable.iter().filter(|(k, _)| k.0 == "readings").map(|(_, v)| v).collect();
        got.sort();
        let mut want: Vec<&Vec<u8>> = first.iter().collect();
        want.sort();
        assert_eq!(got, want, "every message of readings, each once");
        assert_eq!(s.durable.iter().filter(|(k, _)| k.0 == "telegraf").count(), 1);
    }

    // Restarted in the same group: only what came after the commit is read.
    let later = payloads(40, 300);
    let msgs: Vec<(Option<&str>, &[u8])> = later.iter().map(|p| (Some("p-9"), p.as_slice())).collect();
    broker.produce("readings", &msgs);
    let again = Arc::new(Mutex::new(Seen::default()));
    let running = start(&cfg, &again, 0);
    until("the 40 new messages", || again.lock().expect("lock").durable.len() >= 40);
    until("their commit", || again.lock().expect("lock").committed >= 40);
    running.stop();
    let s = again.lock().expect("lock");
    let mut got: Vec<&Vec<u8>> = s.durable.values().collect();
    got.sort();
    let mut want: Vec<&Vec<u8>> = later.iter().collect();
    want.sort();
    assert_eq!(got, want, "after a restart: the new messages only, none lost, none of the committed read again");
}

#[test]
fn a_new_group_starting_from_latest_reads_only_what_comes_after_it_joined() {
    let broker = Broker::start();
    broker.create_topic("readings", 1);
    broker.produce("readings", &[(None, b"old".as_slice())]);
    let mut cfg = config(&broker, "vitals-latest");
    cfg.line_protocol_topics.clear();
    cfg.start_from = vitals_kafka::StartFrom::Latest;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = start(&cfg, &seen, 0);
    // Joined once messages produced now keep arriving.
    let mut n = 0;
    until("the consumer to join", || {
        n += 1;
        broker.produce("readings", &[(None, format!("probe-{n}").as_bytes())]);
        !seen.lock().expect("lock").durable.is_empty()
    });
    running.stop();
    let s = seen.lock().expect("lock");
    assert!(s.durable.values().all(|v| v.starts_with(b"probe-")), "the message from before is not read");
}
