//! Transport security: HTTPS (and the MQTT listener's TLS) with rustls, TLS 1.2 and 1.3,
//! ring provider; optional client certificates (mTLS) that authenticate devices.
//!
//! The handshake runs in its own task per connection, so a slow or hostile client cannot
//! hold up others; established streams are handed to the HTTP server through
//! [`TlsListener`]. Every connection's [`Peer`] (address, and the SHA-256 of a client
//! certificate that verified against `server.tls_client_ca`) travels with each request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::Config;

/// Whether the server speaks HTTPS (session cookies are then marked `Secure`).
pub fn enabled(config: &Config) -> bool {
    !config.server.tls_cert.as_os_str().is_empty()
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Hex SHA-256 of the client certificate's DER, when one was presented and verified.
    pub cert_sha256: Option<String>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer { addr: *stream.remote_addr(), cert_sha256: None }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        Peer { addr: *stream.remote_addr(), cert_sha256: peer_cert_sha256(stream.io()) }
    }
}

/// The hex SHA-256 of the verified client certificate of a TLS stream, if any.
pub fn peer_cert_sha256(s: &TlsStream<TcpStream>) -> Option<String> {
    let (_, conn) = s.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    Some(cert_sha256(leaf.as_ref()))
}

/// Hex SHA-256 of a DER certificate (how device certificates are registered).
pub fn cert_sha256(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a readable PEM certificate file", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate in it", path.display());
    Ok(certs)
}

/// A rustls server config from certificate, key and (optional) client CA files. With a
/// client CA, clients may present a certificate (verified against it); they need not, so
/// browsers and token-carrying clients still connect, unless `require_client_cert`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    require_client_cert: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}: no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if client_ca.as_os_str().is_empty() {
        anyhow::ensure!(!require_client_cert, "client certificates are required but no client CA is configured");
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(client_ca)? {
            roots.add(c).with_context(|| format!("{}: a CA certificate is invalid", client_ca.display()))?;
        }
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let v = if require_client_cert { v } else { v.allow_unauthenticated() };
        builder.with_client_cert_verifier(v.build().context("the client certificate verifier")?)
    };
    let mut config = builder.with_single_cert(chain, key).context("the server certificate does not match its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS server's TLS config, if `server.tls_cert` is set.
pub fn http_config(config: &Config) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if !enabled(config) {
        return Ok(None);
    }
    let s = &config.server;
    anyhow::ensure!(!s.tls_key.as_os_str().is_empty(), "server.tls_key is needed with server.tls_cert");
    server_config(&s.tls_cert, &s.tls_key, &s.tls_client_ca, false).map(Some).context("server TLS")
}

/// A TCP listener whose connections are TLS streams, handshakes done concurrently.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        // Out of file descriptors and the like: give it a moment.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::info!(client = %addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accepting task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The client's address, if the server was started with connection info.
pub fn origin_of(req: &axum::extract::Request) -> String {
    peer_of(req).map_or_else(|| "unknown".to_string(), |p| p.addr.ip().to_string())
}

/// The connection's peer (address, client certificate).
pub fn peer_of(req: &axum::extract::Request) -> Option<&Peer> {
    req.extensions().get::<axum::extract::ConnectInfo<Peer>>().map(|c| &c.0)
}
