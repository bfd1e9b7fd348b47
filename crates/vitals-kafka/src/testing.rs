//! For tests: a real Kafka-protocol broker (tansu, installed by `scripts/test`, started here
//! on 127.0.0.1 with in-memory storage) and a producer that checks every delivery.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{KafkaConfig, KafkaProducer};

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
        let cfg = KafkaConfig { brokers: self.address(), ..KafkaConfig::default() };
        let producer = KafkaProducer::new(&cfg).expect("producer");
        let messages: Vec<(Option<&[u8]>, &[u8])> = messages.iter().map(|(k, v)| (k.map(str::as_bytes), *v)).collect();
        producer.send(topic, &messages).expect("every message delivered");
    }
}
