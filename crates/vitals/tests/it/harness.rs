//! Test harness: the real router on port 0 in a temp dir with a manual clock, and helpers
//! to run the real binary.

use std::sync::Arc;
use std::thread::JoinHandle;

use vitals_core::ManualClock;
use vitals_server::app::App;
use vitals_server::auth::{Directory, Role};
use vitals_server::config::Config;
use vitals_server::runtime;
use vitals_storage::Store;

/// "Now" for in-process servers: 2025-11-22T03:00:00Z.
pub const NOW: i64 = 1_763_780_400_000;
pub const ADMIN: &str = "test-admin-token-0123456789";
pub const DEVICE: &str = "test-device-token-0123456789";

pub struct TestServer {
    pub url: String,
    pub store: Arc<Store>,
    /// The application the server runs (its stores, directory, vault).
    pub app: Arc<App>,
    #[allow(dead_code)] // reason: some tests move time
    pub clock: ManualClock,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    agent: ureq::Agent,
}

/// A response: status, headers we look at, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub connection: Option<String>,
    pub set_cookie: Option<String>,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with_config(|_| {})
    }

    pub fn with_config(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().to_owned();
        TestServer::in_dir(dir, &data, f)
    }

    /// A server whose data directory is `data` (a file system of the test's choosing).
    pub fn in_dir(dir: tempfile::TempDir, data: &std::path::Path, f: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::default();
        config.storage.data_dir = data.to_owned();
        // Vendor clouds are not reachable here: tests that pull point them at local servers.
        config.connections.enabled = false;
        f(&mut config);
        let clock = ManualClock::new(NOW);
        let mut sc = vitals_server::stores::store_config(&config).expect("store config");
        sc.background = false;
        let store = Arc::new(Store::open(data, sc, Arc::new(clock.clone())).expect("store"));
        let tokens = Directory::open(data).expect("tokens");
        // A data directory reopened after a restart has them already.
        for (name, role, token) in [("admin", Role::Admin, ADMIN), ("watch", Role::Device, DEVICE)] {
            if let Err(e) = tokens.create(name, role, Some(token), None, 0) {
                assert!(e.to_string().contains("already exists"), "{name} token: {e:#}");
            }
        }
        let app = Arc::new(App::open(store.clone(), tokens, config, Arc::new(clock.clone())).expect("app"));
        let served = app.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                runtime::serve(l, served, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
            });
        });
        TestServer {
            url,
            store,
            app,
            clock,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
            data: data.to_owned(),
            agent: agent(),
        }
    }

    pub fn post(&self, path: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> Resp {
        let mut req = self.agent.post(&format!("{}{path}", self.url)).header("Content-Type", content_type);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        into_resp(req.send(body).expect("request"))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.get_accept(path, token, "application/json")
    }

    pub fn get_accept(&self, path: &str, token: Option<&str>, accept: &str) -> Resp {
        let mut req = self.agent.get(&format!("{}{path}", self.url)).header("Accept", accept);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        into_resp(req.call().expect("request"))
    }

    /// PUT of a JSON body with the admin token.
    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        let req = self
            .agent
            .put(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {ADMIN}"));
        into_resp(req.send(body.to_string()).expect("request"))
    }

    /// Any request: method, path, extra headers, optional body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let uri = format!("{}{path}", self.url);
        let mut b = ureq::http::Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = match body {
            Some(bytes) => self.agent.run(b.body(bytes.to_vec()).expect("request")),
            None => self.agent.run(b.body(()).expect("request")),
        };
        into_resp(r.expect("request"))
    }

    /// The router's table of routes.
    pub fn app_routes(&self) -> Vec<vitals_server::api::RouteSpec> {
        vitals_server::api::routes(self.app.clone()).1
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    /// Posts a JSON value as samples with the admin token.
    pub fn ingest(&self, body: &serde_json::Value) -> Resp {
        self.post("/api/v1/samples", Some(ADMIN), "application/json", body.to_string().as_bytes())
    }
}

pub fn into_resp(mut r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header("retry-after");
    let content_type = header("content-type");
    let connection = header("connection");
    let set_cookie = header("set-cookie");
    let bytes = r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap_or_default();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Resp { status, body, retry_after, content_type, connection, set_cookie, bytes }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.store.close();
    }
}

/// A small deterministic generator (xorshift64*), so tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits (with a deadline) until `cond` holds; `what` names it in the failure. It polls
/// with a short pause, so a waiting test leaves the cores to the server it waits for.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
        std::thread::sleep(POLL);
    }
}

/// The pause between two looks at a condition [`eventually`] waits for.
const POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// A request a [`Capture`] server received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Replies = std::collections::VecDeque<(u16, String)>;

/// A local HTTP server standing in for a third-party API (a webhook receiver, Telegram, an
/// SMS gateway): it records every request and answers with queued replies, then a default.
pub struct Capture {
    pub url: String,
    requests: Arc<std::sync::Mutex<Vec<Captured>>>,
    replies: Arc<std::sync::Mutex<(Replies, (u16, String))>>,
}

impl Capture {
    pub fn start() -> Capture {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests: Arc<std::sync::Mutex<Vec<Captured>>> = Arc::default();
        let replies = Arc::new(std::sync::Mutex::new((Replies::new(), (200, "{\"ok\":true}".to_owned()))));
        let (reqs, reps) = (requests.clone(), replies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (reqs, reps) = (reqs.clone(), reps.clone());
                std::thread::spawn(move || serve_one(stream, &reqs, &reps));
            }
        });
        Capture { url, requests, replies }
    }

    /// Answers the next request with this (before the default).
    pub fn queue(&self, status: u16, body: &str) {
        self.replies.lock().expect("lock").0.push_back((status, body.to_owned()));
    }

    /// Answers every later request with this.
    pub fn respond(&self, status: u16, body: &str) {
        self.replies.lock().expect("lock").1 = (status, body.to_owned());
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve_one(
    mut stream: std::net::TcpStream,
    reqs: &std::sync::Mutex<Vec<Captured>>,
    reps: &std::sync::Mutex<(Replies, (u16, String))>,
) {
    use std::io::{BufRead, Read, Write};
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, reply) = {
        let mut r = reps.lock().expect("lock");
        r.0.pop_front().unwrap_or_else(|| r.1.clone())
    };
    // Recorded before answering, so a test that saw the answer's effect sees the request.
    reqs.lock().expect("lock").push(Captured { method, path, headers, body });
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded, in order.
pub fn form_fields(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).expect("hex"));
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            (k.to_owned(), String::from_utf8(out).expect("utf8"))
        })
        .collect()
}
