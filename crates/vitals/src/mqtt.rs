//! MQTT client mode: Vitals subscribes to an external broker (mosquitto, a NATS server
//! with MQTT enabled, a cloud IoT hub) and ingests what devices publish there.
//!
//! Topics (QoS 1): `<prefix>/<patient>/samples` carries native samples (a JSON array,
//! `{"samples": [...]}` or NDJSON; every sample must be for `<patient>`), and
//! `<prefix>/<patient>/health-auto-export` carries Health Auto Export's JSON. Which
//! devices may publish to which patient's topics is the broker's ACL (device identity from
//! its credentials or client certificates). A message is acknowledged (PUBACK) only after
//! its samples are durable, in the order received; the session is persistent, so messages
//! published while Vitals is down or not acknowledged are delivered again. Refused payloads
//! and items become dead letters (source `mqtt`) and are counted in `/metrics`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use vitals_core::{PatientId, Validator};
use vitals_ingest::{Format, health_auto_export, native};
use vitals_storage::StoreError;

use crate::dead_letter_api::{Refused, WireFormat};
use crate::server::AppState;
use crate::telemetry::CodeLabel;

/// Starts the subscriber if `[mqtt] enabled`; it runs until the task is aborted.
pub fn spawn(app: AppState) -> Option<tokio::task::JoinHandle<()>> {
    if !app.config.mqtt.enabled {
        return None;
    }
    Some(tokio::spawn(run(app)))
}

/// What one message turned into, for the acknowledging task.
type Durable = tokio::sync::oneshot::Receiver<bool>;

async fn run(app: AppState) {
    let cfg = app.config.mqtt.clone();
    let (host, port) = match cfg.broker.rsplit_once(':').and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
    {
        Some(x) => x,
        None => {
            tracing::error!(broker = %cfg.broker, "mqtt.broker must be host:port; MQTT is off");
            return;
        }
    };
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    let limit = app.config.server.body_limit_bytes;
    opts.set_max_packet_size(limit, limit);
    if !cfg.username.is_empty() {
        opts.set_credentials(cfg.username.clone(), cfg.password.clone());
    }
    let (client, mut events) = AsyncClient::new(opts, 256);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(Publish, Durable)>(1024);
    let acker = client.clone();
    // Acknowledges in arrival order, each once its samples are durable.
    tokio::spawn(async move {
        while let Some((publish, durable)) = ack_rx.recv().await {
            if durable.await.unwrap_or(false)
                && let Err(e) = acker.ack(&publish).await
            {
                tracing::warn!(error = %e, "mqtt ack");
            }
        }
    });
    let topics = [format!("{}/+/samples", cfg.topic_prefix), format!("{}/+/health-auto-export", cfg.topic_prefix)];
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = %cfg.broker, "mqtt connected");
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
                tracing::warn!(error = %e, broker = %cfg.broker, "mqtt connection lost; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await; // reconnect back-off
            }
        }
    }
}

/// Decodes one message, keeps what is refused, submits what is accepted.
async fn handle(app: &AppState, p: &Publish) -> Durable {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let prefix = format!("{}/", app.config.mqtt.topic_prefix);
    let rest = p.topic.strip_prefix(&prefix).unwrap_or("");
    let (patient_raw, kind) = rest.split_once('/').unwrap_or(("", ""));
    let now = app.clock.now_ms();
    let cfg = &app.config.ingest;
    let keep = |format: WireFormat, refused: &Refused<'_>| {
        app.keep_refused("mqtt", format, &p.payload, refused);
    };
    let malformed = |why: String, format: WireFormat| {
        app.telemetry.mqtt_malformed.inc();
        tracing::warn!(topic = %p.topic, reason = %why, "mqtt payload refused");
        keep(format, &Refused { whole_failure: Some(&format!("topic {}: {why}", p.topic)), ..Refused::default() });
    };
    let patient = match PatientId::new(patient_raw) {
        Ok(pid) => pid,
        Err(e) => {
            malformed(format!("patient {patient_raw:?} {e}"), WireFormat::Native(Format::Json));
            let _ = tx.send(true);
            return rx;
        }
    };
    let mut v = Validator::new(app.catalog, now, cfg.max_future.as_ms(), cfg.max_age.map(|d| d.as_ms()))
        .only_patient(Some(patient.clone()));
    let batch = match kind {
        "samples" => {
            let format = Format::sniff(&p.payload);
            match native::decode(&p.payload, format, &mut v) {
                Ok(b) => {
                    keep(WireFormat::Native(format), &Refused { rejections: &b.rejections, ..Refused::default() });
                    b
                }
                Err(e) => {
                    malformed(e.to_string(), WireFormat::Native(format));
                    let _ = tx.send(true);
                    return rx;
                }
            }
        }
        "health-auto-export" => match health_auto_export::decode(&p.payload, patient.as_str(), &mut v) {
            Ok(d) => {
                let refused = Refused {
                    rejections: &d.batch.rejections,
                    unsupported: &d.unsupported,
                    patient: Some(patient.as_str()),
                    ..Refused::default()
                };
                keep(WireFormat::HealthAutoExport, &refused);
                if let Err(e) = app.events.put(d.events) {
                    tracing::error!(error = %e, "mqtt: events not stored; the message will be delivered again");
                    let _ = tx.send(false);
                    return rx;
                }
                d.batch
            }
            Err(e) => {
                let refused = Refused {
                    whole_failure: Some(&e.to_string()),
                    patient: Some(patient.as_str()),
                    ..Refused::default()
                };
                app.telemetry.mqtt_malformed.inc();
                keep(WireFormat::HealthAutoExport, &refused);
                let _ = tx.send(true);
                return rx;
            }
        },
        other => {
            malformed(
                format!("unknown topic kind {other:?} (use samples or health-auto-export)"),
                WireFormat::Native(Format::Json),
            );
            let _ = tx.send(true);
            return rx;
        }
    };
    for r in &batch.rejections {
        app.telemetry.rejected.get_or_create(&CodeLabel { code: r.code.as_str().to_owned() }).inc();
    }
    let accepted = batch.samples.len() as u64;
    // Overload is temporary: retry for up to ~5 s (the event loop keeps the connection
    // alive meanwhile only between messages, so the wait is short). A message that is
    // never acknowledged is delivered again by the broker after a reconnect.
    for _ in 0..50 {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<u64, StoreError>>();
        match app.store.submit(batch.samples.clone(), move |r| {
            let _ = done_tx.send(r);
        }) {
            Ok(()) => {
                let app = app.clone();
                tokio::spawn(async move {
                    let ok = matches!(done_rx.await, Ok(Ok(_)));
                    if ok {
                        app.telemetry.ingested.inc_by(accepted);
                    }
                    let _ = tx.send(ok);
                });
                return rx;
            }
            Err(StoreError::Overloaded { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                tracing::error!(error = %e, "mqtt message not stored; it will be delivered again");
                break;
            }
        }
    }
    let _ = tx.send(false);
    rx
}
