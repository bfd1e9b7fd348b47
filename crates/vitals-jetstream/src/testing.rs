//! A real NATS cluster for tests (feature `testing`): `n` nats-server processes with
//! JetStream on 127.0.0.1, routed to each other, each with its own store directory; any of
//! them can be killed with SIGKILL and started again. Dropping the cluster kills them all.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node's ports.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    route: u16,
    monitor: u16,
}

/// A running test cluster.
#[derive(Debug)]
pub struct NatsCluster {
    dir: PathBuf,
    ports: Vec<Ports>,
    children: Vec<Option<Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// Waits (with a deadline) until `cond` holds, polling with a short pause.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl NatsCluster {
    /// Starts `n` servers under `dir` and waits until JetStream is ready on every one.
    ///
    /// A free port is found by binding port 0 and letting it go, so another test can take
    /// it before nats-server binds it: a server that exits at start because an address is
    /// in use is started again, with the whole cluster, on other ports (a CI run failed so).
    pub fn start(dir: PathBuf, n: usize) -> NatsCluster {
        for attempt in 1.. {
            let run = dir.join(format!("try-{attempt}"));
            std::fs::create_dir_all(&run).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
            let ports: Vec<Ports> =
                (0..n).map(|_| Ports { client: free_port(), route: free_port(), monitor: free_port() }).collect();
            let mut cluster = NatsCluster { dir: run, ports, children: (0..n).map(|_| None).collect() };
            for i in 0..n {
                cluster.start_node(i);
            }
            let collided = (0..n).any(|i| {
                cluster.exited_at_start(i) && cluster.log(i).contains("address already in use") && attempt < 5
            });
            if collided {
                continue;
            }
            for i in 0..n {
                cluster.wait_ready(i);
            }
            return cluster;
        }
        unreachable!("the loop returns or panics")
    }

    /// Whether node `i` exits before it is healthy (its process ended).
    fn exited_at_start(&mut self, i: usize) -> bool {
        let port = self.ports[i].monitor;
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(c) = self.children[i].as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                return true;
            }
            if healthz(port).is_some_and(|body| body.contains("\"ok\"")) {
                return false;
            }
            #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Node `i`'s log so far.
    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default()
    }

    /// The client URLs of every server.
    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("nats://127.0.0.1:{}", p.client)).collect()
    }

    /// Starts node `i` (again) with its configuration and store.
    pub fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("\"nats-route://127.0.0.1:{}\"", p.route))
            .collect();
        let p = self.ports[i];
        let store = self.dir.join(format!("n{i}"));
        let conf = format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             cluster {{ name: vitals, listen: 127.0.0.1:{}, routes: [{}] }}\n",
            p.client,
            p.monitor,
            store.display(),
            p.route,
            routes.join(", ")
        );
        let path = self.dir.join(format!("n{i}.conf"));
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let log = std::fs::File::create(self.dir.join(format!("n{i}.log"))).expect("log file");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server (installed by scripts/test) does not start: {e}"));
        self.children[i] = Some(child);
    }

    /// Waits until node `i` answers its health check (JetStream ready). A node restarted
    /// after a SIGKILL recovers its store and catches up with its peers first, which on a
    /// loaded 2-core machine has taken over 30 s; past 90 s the test fails with the end of
    /// the node's log.
    pub fn wait_ready(&self, i: usize) {
        let port = self.ports[i].monitor;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !healthz(port).is_some_and(|body| body.contains("\"ok\"")) {
            if Instant::now() >= deadline {
                let log = self.log(i);
                let tail: String = log.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("timed out after 90s waiting for nats node n{i} to be healthy; its log ends:\n{tail}");
            }
            #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `i` with SIGKILL (no goodbye to its peers or clients).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The directory of the cluster's files (configurations, logs, stores).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// The body of `GET /healthz` on a monitoring port.
fn healthz(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let ok = out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200");
    ok.then_some(out)
}

/// Publishes `body` as it is on `subject` through JetStream and waits for the
/// acknowledgement: a message another build (or a damaged client) put in the stream.
/// Returns its position.
pub fn publish_raw(servers: &[String], subject: &str, body: &[u8]) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let addrs: Vec<async_nats::ServerAddr> = servers.iter().map(|s| s.parse().expect("a server's URL")).collect();
    let (subject, body) = (subject.to_owned(), bytes::Bytes::copy_from_slice(body));
    rt.block_on(async move {
        let client = async_nats::connect(addrs).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let ack = js.publish(subject, body).await.expect("publish");
        ack.await.expect("acknowledged").sequence
    })
}
