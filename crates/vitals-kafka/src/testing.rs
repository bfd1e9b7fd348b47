//! For tests: a real Kafka-protocol broker (tansu, installed by `scripts/test`, started here
//! on 127.0.0.1 with in-memory storage) and a producer that checks every delivery.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// A running broker; stopped when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `VITALS_TEST_TANSU`, else `tansu` on the PATH.
fn tansu() -> String {
    std::env::var("VITALS_TEST_TANSU").unwrap_or_else(|_| "tansu".to_owned())
}

impl Broker {
    /// Starts a broker on a free port of 127.0.0.1. Panics (failing the test) when tansu is
    /// not installed: `scripts/test` installs it.
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is installed (scripts/test installs it; or set VITALS_TEST_TANSU)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening on {port}");
        }
        Broker { child, port }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .expect("tansu topic create runs");
        assert!(out.status.success(), "tansu topic create: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Produces `messages` (key, value) to `topic` and waits until every one is acknowledged
    /// by the broker (`acks=all`); panics on any delivery failure.
    pub fn produce(&self, topic: &str, messages: &[(Option<&str>, &[u8])]) {
        let producer: BaseProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())
            .expect("producer");
        for (key, value) in messages {
            let mut record = BaseRecord::<str, [u8]>::to(topic).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((e, back)) = producer.send(r) {
                    // The local queue is full: serve deliveries, then try again.
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send: {e}"
                    );
                    producer.poll(Duration::from_millis(50));
                    record = Some(back);
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("every message delivered in time");
        let ctx = producer.context();
        let failed = ctx.failed.lock().expect("lock");
        assert!(failed.is_empty(), "deliveries failed: {failed:?}");
        assert_eq!(*ctx.delivered.lock().expect("lock"), messages.len(), "every message acknowledged");
    }
}

#[derive(Default)]
struct Deliveries {
    delivered: Mutex<usize>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => *self.delivered.lock().expect("lock") += 1,
            Err((e, _)) => self.failed.lock().expect("lock").push(e.to_string()),
        }
    }
}
