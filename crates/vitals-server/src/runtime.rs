//! The running server: one [`Runtime`] starts every task of an [`App`](crate::app::App) (the
//! HTTP API, the MQTT client and listener, the file drop, alerting, the notifier) and stops
//! them all through one [`Shutdown`] signal: the HTTP server stops accepting and lets
//! requests in flight finish, sources stop taking input, the alerting thread finishes its
//! round, the notifier its attempts in progress; then the store flushes its buffer.

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::{App, AppState};
use crate::shutdown::Shutdown;
use crate::source::{file_drop, mqtt, mqtt_listener};
use crate::{alerting, api, notifier, tls};

/// One running task, by kind.
enum Task {
    Async(&'static str, JoinHandle<anyhow::Result<()>>),
    Thread(&'static str, std::thread::JoinHandle<()>),
}

/// Every task of a running server.
pub struct Runtime {
    app: AppState,
    shutdown: Shutdown,
    /// In the order they are waited for at shutdown.
    tasks: Vec<Task>,
}

impl Runtime {
    /// Starts the HTTP API on `listener` and every enabled task. Fails at once on what
    /// cannot work (certificates, an MQTT broker address, a listener address in use).
    pub async fn start(app: AppState, listener: TcpListener) -> anyhow::Result<Runtime> {
        let mut runtime = Runtime { app: app.clone(), shutdown: Shutdown::new(), tasks: Vec::new() };
        match runtime.spawn_all(app, listener).await {
            Ok(()) => Ok(runtime),
            Err(e) => {
                // What started stops again.
                let _ = runtime.stop().await;
                Err(e)
            }
        }
    }

    /// Consumers first (the notifier, then alerting, which subscribes to durable samples
    /// before anything can be written), then the ways in, the HTTP API last. They are
    /// waited for at shutdown in the opposite order: input stops before what consumes it.
    async fn spawn_all(&mut self, app: AppState, listener: TcpListener) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let mut started = Vec::new();
        for t in notifier::spawn(notifier_context(&app), shutdown.clone())? {
            started.push(Task::Thread("notifier", t));
        }
        if let Some(t) = alerting::spawn(alerting_context(&app), shutdown.clone())? {
            started.push(Task::Thread("alerting", t));
        }
        started.push(Task::Thread("campaigns", crate::campaigns::spawn(app.clone(), shutdown.clone())?));
        if let Some(t) = crate::connections::spawn(app.clone(), shutdown.clone())? {
            started.push(Task::Thread("connections", t));
        }
        started.push(Task::Thread("devices", crate::devices::spawn_saver(app.devices.clone(), shutdown.clone())?));
        // Cluster mode: the log into the local store (after alerting subscribed to it), and
        // the bucket leases.
        if let Some(cluster) = &app.cluster {
            let data_dir = app.config.storage.data_dir.clone();
            let targets = crate::cluster::tail::Targets {
                store: app.store.clone(),
                events: app.events.clone(),
                dead_letters: app.dead_letters.clone(),
                clock: app.clock.clone(),
                devices: app.devices.clone(),
                erase: {
                    let app = app.clone();
                    std::sync::Arc::new(move |patient: &str| {
                        let p =
                            vitals_core::PatientId::new(patient).map_err(|why| anyhow::anyhow!("{patient:?} {why}"))?;
                        crate::rights::erase_local(&app, &p).map(drop)
                    })
                },
            };
            for t in cluster.start(targets, data_dir, &shutdown)? {
                started.push(Task::Thread("cluster", t));
            }
        }
        // Kept even if a later step fails, so that the caller's shutdown waits for them.
        let result = self.spawn_inputs(&app, listener, &shutdown, &mut started).await;
        started.reverse();
        self.tasks = started;
        result
    }

    async fn spawn_inputs(
        &self,
        app: &AppState,
        listener: TcpListener,
        shutdown: &Shutdown,
        started: &mut Vec<Task>,
    ) -> anyhow::Result<()> {
        if let Some(t) = file_drop::spawn(app.clone(), shutdown.clone())? {
            started.push(Task::Thread("file-drop", t));
        }
        if let Some((addr, t)) = mqtt_listener::spawn(app.clone(), shutdown.clone()).await? {
            let _ = app.mqtt_listener_addr.set(addr);
            started.push(Task::Async("mqtt-listener", t));
        }
        if let Some(t) = mqtt::spawn(app.clone(), shutdown.clone())? {
            started.push(Task::Async("mqtt", t));
        }
        if let Some(t) = crate::source::kafka::spawn(app.clone(), shutdown.clone())? {
            started.push(Task::Thread("kafka", t));
        }
        if let Some((addr, t)) = crate::pg::spawn(app.clone(), shutdown.clone()).await? {
            let _ = app.pg_listen_addr.set(addr);
            started.push(Task::Async("postgres", t));
        }
        let tls = tls::http_config(&app.config)?;
        let service = api::router(app.clone()).into_make_service_with_connect_info::<tls::Peer>();
        let stop = shutdown.clone();
        let http = match tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config)?;
                tokio::spawn(async move {
                    axum::serve(listener, service)
                        .with_graceful_shutdown(async move { stop.triggered().await })
                        .await?;
                    Ok(())
                })
            }
            None => tokio::spawn(async move {
                axum::serve(listener, service).with_graceful_shutdown(async move { stop.triggered().await }).await?;
                Ok(())
            }),
        };
        started.push(Task::Async("http", http));
        Ok(())
    }

    /// The signal every task listens to.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Signals shutdown, waits for every task, then flushes the buffer into segments; the
    /// first failure is returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let mut first_error = None;
        for task in self.tasks {
            let result = match task {
                Task::Async(name, t) => t.await.with_context(|| format!("the {name} task")).and_then(|r| r),
                Task::Thread(name, t) => tokio::task::spawn_blocking(move || t.join())
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map_err(|_| anyhow::anyhow!("the {name} thread panicked"))),
            };
            if let Err(e) = result {
                tracing::error!(error = %format!("{e:#}"), "stopping");
                first_error.get_or_insert(e);
            }
        }
        if let Some(cluster) = self.app.cluster.clone() {
            // The ways in are stopped: what they queued is published before the end.
            let _ = tokio::task::spawn_blocking(move || cluster.publisher.stop()).await;
        }
        let store = self.app.store.clone();
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r.context("flushing the store at shutdown"));
        if let Err(e) = closed {
            tracing::error!(error = %format!("{e:#}"), "stopping");
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Serves until `signal` completes, then stops every task (see [`Runtime::stop`]).
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    signal: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let runtime = Runtime::start(app, listener).await?;
    let stopped = runtime.shutdown();
    tokio::select! {
        () = signal => {},
        // A task may trigger it too (none does today).
        () = stopped.triggered() => {},
    }
    runtime.stop().await
}

/// What the alerting thread works with: the stores, not the whole application.
fn alerting_context(app: &App) -> alerting::Context {
    alerting::Context {
        store: app.store.clone(),
        rules: app.rules.clone(),
        cohorts: app.cohorts.clone(),
        alerts: app.alerts.clone(),
        events: app.events.clone(),
        erased: app.erased.clone(),
        alerting: app.config.alerting.clone(),
        notify: app.config.notify.clone(),
        clock: app.clock.clone(),
        telemetry: app.telemetry.clone(),
        owns: app.cluster.as_ref().map(|c| c.ownership.clone()),
        devices: app.devices.clone(),
    }
}

/// What the notifier works with: the outbox.
fn notifier_context(app: &App) -> notifier::Context {
    notifier::Context {
        alerts: app.alerts.clone(),
        notify: app.config.notify.clone(),
        clock: app.clock.clone(),
        telemetry: app.telemetry.clone(),
        owns: app.cluster.as_ref().map(|c| c.ownership.clone()),
    }
}
