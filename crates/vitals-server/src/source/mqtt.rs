//! MQTT client mode: Vitals subscribes to an external broker (mosquitto, a NATS server
//! with MQTT enabled, a cloud IoT hub) and ingests what devices publish there.
//!
//! Topics (QoS 1): `<prefix>/<patient>/samples` carries native samples (a JSON array,
//! `{"samples": [...]}` or NDJSON; every sample must be for `<patient>`), and
//! `<prefix>/<patient>/health-auto-export` carries Health Auto Export's JSON. Which
//! devices may publish to which patient's topics is the broker's ACL (device identity from
//! its credentials or client certificates). A message is acknowledged (PUBACK) only after
//! its samples are durable, in the order received; the session is persistent, so messages
//! published while Vitals is down are delivered when it is back, and a message that could
//! not be stored makes the client reconnect so that the broker delivers it again. Refused
//! payloads and items become dead letters (source `mqtt`) and are counted in `/metrics`.
//!
//! With `tls = true` the connection is TLS 1.2+ (rustls, ring provider): the broker is
//! verified against `ca_file` or the system's roots, and Vitals presents its own client
//! certificate when `cert_file`/`key_file` are set.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use vitals_core::PatientId;
use vitals_ingest::Format;

use super::pipeline::Submission;
use super::wire_format::WireFormat;
use crate::app::AppState;
use crate::config::MqttConfig;
use crate::shutdown::Shutdown;
use crate::tls::read_certs;

/// The dead-letter source name of MQTT messages.
const SOURCE: &str = "mqtt";

/// Starts the subscriber if `[mqtt] enabled`; it runs until `shutdown`. Fails at once on
/// what cannot work (an address that is not `host:port`, unreadable certificates).
pub fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<Option<JoinHandle<anyhow::Result<()>>>> {
    if !app.config.mqtt.enabled {
        return Ok(None);
    }
    let opts = options(&app.config.mqtt, app.config.server.body_limit_bytes)?;
    Ok(Some(tokio::spawn(async move {
        tokio::select! {
            () = run(app, opts) => {},
            () = shutdown.triggered() => {},
        }
        Ok(())
    })))
}

/// The connection options: a persistent session, manual acknowledgements, TLS if asked.
fn options(cfg: &MqttConfig, max_packet: usize) -> anyhow::Result<MqttOptions> {
    let (host, port) = cfg
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("mqtt.broker {:?} must be host:port", cfg.broker))?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(max_packet, max_packet);
    if !cfg.username.is_empty() {
        opts.set_credentials(cfg.username.clone(), cfg.password.clone());
    }
    if cfg.tls {
        let tls = tls_config(cfg)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
    }
    Ok(opts)
}

/// A rustls client config (ring provider, TLS 1.2 and 1.3) trusting `ca_file` or the
/// system's roots, presenting `cert_file`/`key_file` if given.
pub fn tls_config(cfg: &MqttConfig) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if cfg.ca_file.as_os_str().is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "mqtt: a system CA certificate could not be read");
        }
        roots.add_parsable_certificates(found.certs);
    } else {
        for cert in read_certs(&cfg.ca_file)? {
            roots
                .add(cert)
                .with_context(|| format!("mqtt.ca_file {}: a certificate is invalid", cfg.ca_file.display()))?;
        }
    }
    anyhow::ensure!(!roots.is_empty(), "mqtt: no CA certificate to verify the broker with");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("mqtt: TLS protocol versions")?
        .with_root_certificates(roots);
    if cfg.cert_file.as_os_str().is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let chain = read_certs(&cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .with_context(|| format!("mqtt.key_file {}: no PEM private key", cfg.key_file.display()))?;
    builder.with_client_auth_cert(chain, key).context("mqtt: the client certificate does not match its key")
}

/// What one message turned into, for the acknowledging task.
type Durable = tokio::sync::oneshot::Receiver<bool>;

async fn run(app: AppState, opts: MqttOptions) {
    let cfg = app.config.mqtt.clone();
    let (client, mut events) = AsyncClient::new(opts, 256);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(Publish, Durable)>(1024);
    let acker = client.clone();
    // Acknowledges in arrival order, each once its samples are durable.
    tokio::spawn(async move {
        while let Some((publish, durable)) = ack_rx.recv().await {
            if durable.await.unwrap_or(false) {
                if let Err(e) = acker.ack(&publish).await {
                    tracing::warn!(error = %e, "mqtt ack");
                }
            } else {
                // Not stored (overload that outlasted the retries, a failing disk): leave
                // it unacknowledged and reconnect, so that the broker delivers it (and
                // every later unacknowledged message) again; rewriting samples is idempotent.
                tracing::warn!(topic = %publish.topic, "mqtt message not stored; reconnecting for redelivery");
                if let Err(e) = acker.disconnect().await {
                    tracing::warn!(error = %e, "mqtt disconnect");
                }
            }
        }
    });
    let topics = [format!("{}/+/samples", cfg.topic_prefix), format!("{}/+/health-auto-export", cfg.topic_prefix)];
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = %cfg.broker, "mqtt connected");
                app.telemetry.mqtt_connected.set(1);
                for t in &topics {
                    if let Err(e) = client.subscribe(t.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, topic = %t, "mqtt subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                app.telemetry.mqtt_messages.inc();
                let durable = handle(&app, &p).await;
                if ack_tx.send((p, durable)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                app.telemetry.mqtt_connected.set(0);
                app.telemetry.mqtt_connection_errors.inc();
                tracing::warn!(error = %e, broker = %cfg.broker, "mqtt connection lost; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await; // reconnect back-off
            }
        }
    }
}

/// Takes one message through the pipeline; the receiver says whether it is durable (or
/// refused for good, which is acknowledged too: the dead letter keeps it).
async fn handle(app: &AppState, p: &Publish) -> Durable {
    handle_with_prefix(app, p, &app.config.mqtt.topic_prefix).await
}

/// How long a message waits out an overload before the connection is dropped for redelivery.
const OVERLOAD_RETRY: Duration = Duration::from_secs(2);

/// [`handle`] for topics under `prefix` (the embedded listener has its own).
pub(crate) async fn handle_with_prefix(app: &AppState, p: &Publish, prefix: &str) -> Durable {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let prefix = format!("{prefix}/");
    let rest = p.topic.strip_prefix(&prefix).unwrap_or("");
    let (patient_raw, kind) = rest.split_once('/').unwrap_or(("", ""));
    let format = match kind {
        "health-auto-export" => WireFormat::HealthAutoExport,
        _ => WireFormat::Native(Format::sniff(&p.payload)),
    };
    let mut sub = Submission::new(SOURCE, format, p.payload.clone());
    let malformed = |sub: &Submission, why: String| {
        app.telemetry.mqtt_malformed.inc();
        tracing::warn!(topic = %p.topic, reason = %why, "mqtt payload refused");
        // Keeping the dead letter syncs a file: off the async workers.
        let (pipeline, sub, why) = (app.pipeline.clone(), sub.clone(), format!("topic {}: {why}", p.topic));
        tokio::task::spawn_blocking(move || pipeline.refuse(&sub, &why))
    };
    let patient = match PatientId::new(patient_raw) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = malformed(&sub, format!("patient {patient_raw:?} {e}")).await;
            let _ = tx.send(true);
            return rx;
        }
    };
    if !matches!(kind, "samples" | "health-auto-export") {
        let _ = malformed(&sub, format!("unknown topic kind {kind:?} (use samples or health-auto-export)")).await;
        let _ = tx.send(true);
        return rx;
    }
    sub = match format {
        WireFormat::HealthAutoExport => sub.patient(Some(patient)),
        _ => sub.only(Some(patient)),
    };
    // Decoding may keep a dead letter (a synced file): off the async workers.
    let pipeline = app.pipeline.clone();
    let decoded = tokio::task::spawn_blocking(move || pipeline.decode(&sub)).await;
    let accepted = match decoded {
        Ok(Ok(a)) => a,
        Err(_) => {
            let _ = tx.send(false);
            return rx;
        }
        Ok(Err(e)) => {
            // Kept as a dead letter by the pipeline.
            app.telemetry.mqtt_malformed.inc();
            tracing::warn!(topic = %p.topic, reason = %e, "mqtt payload refused");
            let _ = tx.send(true);
            return rx;
        }
    };
    // Overload is temporary: wait it out briefly. A message still not stored then makes the
    // acknowledging task reconnect, and the broker delivers it again.
    match app.pipeline.submit_retrying(accepted, OVERLOAD_RETRY).await {
        Ok(pending) => {
            tokio::spawn(async move {
                let _ = tx.send(pending.durable().await.is_ok());
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "mqtt message not stored; it will be delivered again");
            let _ = tx.send(false);
        }
    }
    rx
}
