//! The embedded MQTT listener: devices connect to Vitals itself (MQTT 3.1.1 over TLS) and
//! publish their samples, with no broker in between.
//!
//! A device authenticates by its client certificate (mTLS, verified against
//! `mqtt_listener.client_ca` and registered with `vitals admin device add`), or, when
//! `require_client_cert = false`, by a device token as the CONNECT password. The
//! principal's reach decides which patients' topics it may publish to (the same
//! authorization matrix as HTTP): a device bound to one patient publishing to another
//! patient's topic is disconnected. Topics and payloads are those of client mode
//! (`<prefix>/<patient>/samples`, `<prefix>/<patient>/health-auto-export`). QoS 1
//! messages are acknowledged (PUBACK, in order) only once durable; QoS 0 are stored
//! without acknowledgement; QoS 2 and subscriptions are not offered (SUBACK failure).
//! Packets are encoded and decoded by `rumqttc`'s MQTT codec.

use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use rumqttc::mqttbytes::Error as MqttError;
use rumqttc::{ConnAck, ConnectReturnCode, Packet, PubAck, QoS, SubAck, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::auth::Principal;
use crate::authz::{self, Action};
use crate::shutdown::Shutdown;

/// The largest packet read before the client has authenticated (a CONNECT is small).
const MAX_CONNECT_BYTES: usize = 64 << 10;

/// The listener's address and its task.
type Listening = (std::net::SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>);

/// Starts the listener if `[mqtt_listener] enabled`; it and its connections run until
/// `shutdown`. Fails at once on what cannot work (unreadable certificates, an address in use).
pub(crate) async fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<Option<Listening>> {
    let cfg = &app.config.mqtt_listener;
    if !cfg.enabled {
        return Ok(None);
    }
    let s = &app.config.server;
    let pick = |own: &std::path::Path, server: &std::path::Path| {
        if own.as_os_str().is_empty() { server.to_owned() } else { own.to_owned() }
    };
    let (cert, key, ca) =
        (pick(&cfg.tls_cert, &s.tls_cert), pick(&cfg.tls_key, &s.tls_key), pick(&cfg.client_ca, &s.tls_client_ca));
    anyhow::ensure!(
        !cert.as_os_str().is_empty(),
        "mqtt_listener: a TLS certificate is needed (mqtt_listener.tls_cert or server.tls_cert)"
    );
    let tls = crate::tls::server_config(&cert, &key, &ca, cfg.require_client_cert).context("mqtt_listener TLS")?;
    let listener =
        TcpListener::bind(&cfg.listen).await.with_context(|| format!("mqtt_listener.listen {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "mqtt listener (TLS) ready");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = shutdown.triggered() => return Ok(()),
            };
            let Ok((tcp, peer)) = accepted else { continue };
            // At most `mqtt_listener.max_connections` at once; more are closed at once.
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(client = %peer, "mqtt: too many connections; closed");
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(client = %peer, error = %e, "mqtt: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let cert = crate::tls::peer_cert_sha256(&tls);
                tokio::select! {
                    r = connection(&app, tls, cert, peer) => if let Err(e) = r {
                        tracing::info!(client = %peer, error = %format!("{e:#}"), "mqtt connection closed");
                    },
                    () = shutdown.triggered() => {},
                }
            });
        }
    });
    Ok(Some((addr, task)))
}

/// Reads the next packet, waiting at most `idle` (None: forever).
async fn next_packet<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
    idle: Option<Duration>,
) -> anyhow::Result<Option<Packet>> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(Some(p)),
            Err(MqttError::InsufficientBytes(_)) => {}
            Err(e) => anyhow::bail!("malformed packet: {e:?}"),
        }
        let read = r.read_buf(buf);
        let n = match idle {
            Some(d) => tokio::time::timeout(d, read).await.context("keep-alive expired")??,
            None => read.await?,
        };
        if n == 0 {
            return Ok(None);
        }
    }
}

/// What the writer task sends, in order.
enum Out {
    Now(Packet),
    /// A PUBACK once the message is durable; not durable: close (the device resends).
    WhenDurable(u16, tokio::sync::oneshot::Receiver<bool>),
}

async fn connection<S>(
    app: &AppState,
    stream: S,
    cert: Option<String>,
    peer: std::net::SocketAddr,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let max = app.config.server.body_limit_bytes;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    // Before it is known who is connecting, a packet may only be a small CONNECT.
    let first = next_packet(&mut rd, &mut buf, max.min(MAX_CONNECT_BYTES), Some(Duration::from_secs(10))).await?;
    let Some(Packet::Connect(connect)) = first else { anyhow::bail!("the first packet was not CONNECT") };
    let now = app.clock.now_ms();
    let by_cert = cert.as_deref().and_then(|fp| app.directory.authenticate_cert(fp, now));
    let principal: Option<Principal> = by_cert.or_else(|| {
        if app.config.mqtt_listener.require_client_cert {
            return None;
        }
        connect.login.as_ref().and_then(|l| app.directory.authenticate(&l.password, now))
    });
    let mut out = BytesMut::new();
    let refuse = |code| Packet::ConnAck(ConnAck::new(code, false));
    let Some(who) = principal else {
        refuse(ConnectReturnCode::BadUserNamePassword).write(&mut out, max)?;
        wr.write_all(&out).await?;
        anyhow::bail!("unknown client (certificate or token)");
    };
    if authz::reach(who.role, Action::WriteSamples) == authz::Reach::None {
        refuse(ConnectReturnCode::NotAuthorized).write(&mut out, max)?;
        wr.write_all(&out).await?;
        anyhow::bail!("{} may not write samples", who.actor);
    }
    tracing::info!(client = %peer, actor = %who.actor, "mqtt device connected");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(256);
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::new();
        while let Some(o) = rx.recv().await {
            let packet = match o {
                Out::Now(p) => p,
                Out::WhenDurable(pkid, durable) => {
                    if !durable.await.unwrap_or(false) {
                        break;
                    }
                    Packet::PubAck(PubAck::new(pkid))
                }
            };
            out.clear();
            if packet.write(&mut out, usize::MAX).is_err() || wr.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let send = |o: Out| {
        let tx = tx.clone();
        async move { tx.send(o).await.is_ok() }
    };
    send(Out::Now(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))).await;
    let idle = (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let prefix = format!("{}/", app.config.mqtt_listener.topic_prefix);
    let result = loop {
        let packet = match next_packet(&mut rd, &mut buf, max, idle).await {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match packet {
            Packet::Publish(p) => {
                app.telemetry.mqtt_messages.inc();
                let patient = p.topic.strip_prefix(&prefix).and_then(|r| r.split('/').next()).unwrap_or("");
                if let Err(denied) = authz::check(&who, Action::WriteSamples, Some(patient)) {
                    break Err(anyhow::anyhow!("publish to {:?} refused: {denied}", p.topic));
                }
                if p.qos == QoS::ExactlyOnce {
                    break Err(anyhow::anyhow!("QoS 2 is not offered; publish with QoS 1"));
                }
                let durable = super::mqtt::handle_with_prefix(app, &p, &app.config.mqtt_listener.topic_prefix).await;
                if p.qos == QoS::AtLeastOnce && !send(Out::WhenDurable(p.pkid, durable)).await {
                    break Ok(());
                }
            }
            Packet::PingReq => {
                send(Out::Now(Packet::PingResp)).await;
            }
            Packet::Subscribe(s) => {
                let codes = vec![SubscribeReasonCode::Failure; s.filters.len()];
                send(Out::Now(Packet::SubAck(SubAck::new(s.pkid, codes)))).await;
            }
            Packet::Disconnect => break Ok(()),
            _ => {}
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}
