//! The HTTP server: state, router, authentication and graceful shutdown.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use vitals_core::{Catalog, Clock};
use vitals_storage::Store;
use vitals_storage::dead_letter::DeadLetters;
use vitals_storage::event_store::EventStore;

use crate::api_error::{ApiError, Code};
use crate::auth::{Permission, Principal, TokenStore};
use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::{
    alerts_api, cohorts_api, dead_letter_api, health_auto_export_api, line_protocol_api, nightscout_api,
    notifications_api, rules_api, samples_api, series_api, tokens_api,
};

/// Everything a handler needs.
pub struct App {
    pub store: Arc<Store>,
    pub tokens: TokenStore,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    pub catalog: &'static Catalog,
    /// Permits for write requests in progress (see `server.max_concurrent_writes`).
    pub write_permits: Arc<Semaphore>,
    pub dead_letters: Arc<DeadLetters>,
    pub events: Arc<EventStore>,
    pub rules: Arc<crate::rules::RuleStore>,
    pub alerts: Arc<crate::alerts::AlertStore>,
    pub cohorts: Arc<crate::cohorts::CohortStore>,
}

impl App {
    /// The application over an open store: the other stores of the data directory (dead
    /// letters, events, rules, alerts and their outbox, cohorts) are opened here.
    pub fn open(store: Arc<Store>, tokens: TokenStore, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let dead_letters = crate::commands::open_dead_letters(&config)?;
        let events = crate::commands::open_events(&config)?;
        let rules = crate::commands::open_rules(&config)?;
        let alerts = crate::commands::open_alerts(&config)?;
        let cohorts = crate::commands::open_cohorts(&config)?;
        let write_permits = Arc::new(Semaphore::new(config.server.max_concurrent_writes));
        Ok(App {
            store,
            tokens,
            config,
            clock,
            telemetry: Telemetry::new(),
            catalog: Catalog::standard(),
            write_permits,
            dead_letters,
            events,
            rules,
            alerts,
            cohorts,
        })
    }

    /// Keeps refused input of a request (see [`crate::dead_letter_api::keep`]).
    pub fn keep_refused(
        &self,
        source: &str,
        format: crate::dead_letter_api::WireFormat,
        body: &[u8],
        refused: &crate::dead_letter_api::Refused<'_>,
    ) -> Option<u64> {
        crate::dead_letter_api::keep(&self.dead_letters, self.clock.now_ms(), source, format, body, refused)
    }
}

pub type AppState = Arc<App>;

/// Every route with the permission it requires. `/healthz` is the only public route.
pub fn router(app: AppState) -> Router {
    let guarded = |perm: Permission, route: MethodRouter<AppState>| {
        route.route_layer(middleware::from_fn_with_state((app.clone(), perm), require))
    };
    // InfluxDB clients send credentials their own way and expect InfluxDB's error bodies.
    let influx_guarded = |perm: Permission, route: MethodRouter<AppState>| {
        route.route_layer(middleware::from_fn_with_state((app.clone(), perm), line_protocol_api::require_influx))
    };
    let write_limit = || middleware::from_fn_with_state(app.clone(), limit_writes);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", guarded(Permission::Admin, get(metrics)))
        .route(
            "/api/v1/samples",
            guarded(
                Permission::WriteSamples,
                post(samples_api::post_samples).route_layer(middleware::from_fn_with_state(app.clone(), limit_writes)),
            ),
        )
        .route(
            "/api/v1/ingest/health-auto-export",
            guarded(Permission::WriteSamples, post(health_auto_export_api::post_export).route_layer(write_limit())),
        )
        .route(
            "/write",
            influx_guarded(Permission::WriteSamples, post(line_protocol_api::write_v1).route_layer(write_limit())),
        )
        .route(
            "/api/v2/write",
            influx_guarded(Permission::WriteSamples, post(line_protocol_api::write_v2).route_layer(write_limit())),
        )
        .merge(nightscout_routes(app.clone()))
        .route("/api/v1/metrics", guarded(Permission::ReadData, get(series_api::list_metrics)))
        .route("/api/v1/patients", guarded(Permission::ReadData, get(series_api::list_patients)))
        .route("/api/v1/patients/{patient}/events", guarded(Permission::ReadData, get(series_api::events)))
        .route("/api/v1/patients/{patient}/latest", guarded(Permission::ReadData, get(series_api::latest)))
        .route("/api/v1/patients/{patient}/series/{metric}", guarded(Permission::ReadData, get(series_api::series)))
        .route(
            "/api/v1/tokens",
            guarded(Permission::Admin, get(tokens_api::list_tokens).post(tokens_api::create_token)),
        )
        .route(
            "/api/v1/dead-letters",
            guarded(Permission::Admin, get(dead_letter_api::list).delete(dead_letter_api::purge)),
        )
        .route(
            "/api/v1/dead-letters/{id}",
            guarded(Permission::Admin, get(dead_letter_api::show).delete(dead_letter_api::remove_one)),
        )
        .route("/api/v1/dead-letters/{id}/replay", guarded(Permission::Admin, post(dead_letter_api::replay_one)))
        .route("/api/v1/tokens/{id}", guarded(Permission::Admin, axum::routing::delete(tokens_api::revoke_token)))
        .route("/api/v1/alerts", guarded(Permission::ReadData, get(alerts_api::list)))
        .route("/api/v1/alerts/{id}", guarded(Permission::ReadData, get(alerts_api::get_one)))
        .route("/api/v1/alerts/{id}/ack", guarded(Permission::ReadData, post(alerts_api::ack)))
        .route("/api/v1/alerts/{id}/snooze", guarded(Permission::ReadData, post(alerts_api::snooze)))
        .route("/api/v1/notifications", guarded(Permission::Admin, get(notifications_api::list)))
        .route("/api/v1/notifications/test", guarded(Permission::Admin, post(notifications_api::test)))
        .route("/api/v1/notifications/{id}", guarded(Permission::Admin, get(notifications_api::get_one)))
        .route("/api/v1/notifications/{id}/replay", guarded(Permission::Admin, post(notifications_api::replay)))
        .route("/api/v1/cohorts", guarded(Permission::ReadData, get(cohorts_api::list)))
        .route(
            "/api/v1/cohorts/{name}",
            guarded(Permission::ReadData, get(cohorts_api::get_one))
                .merge(guarded(Permission::Admin, axum::routing::put(cohorts_api::put).delete(cohorts_api::delete))),
        )
        .route("/api/v1/rules", guarded(Permission::ReadData, get(rules_api::list)))
        .route("/api/v1/rules", guarded(Permission::Admin, post(rules_api::create)))
        .route("/api/v1/rules/backtest", guarded(Permission::ReadData, post(rules_api::backtest)))
        .route("/api/v1/rules/{name}", guarded(Permission::ReadData, get(rules_api::get_one)))
        .route(
            "/api/v1/rules/{name}",
            guarded(Permission::Admin, axum::routing::put(rules_api::replace).delete(rules_api::delete)),
        )
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(app.config.server.body_limit_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// The Nightscout-compatible API of each patient (its own authentication: reads need
/// `ReadData`, writes `WriteSamples`, see `nightscout_api::require_nightscout`).
fn nightscout_routes(app: AppState) -> Router<AppState> {
    let base = "/nightscout/{patient}/api/v1";
    let r = Router::new()
        .route(&format!("{base}/entries"), post(nightscout_api::post_entries).get(nightscout_api::get_entries))
        .route(&format!("{base}/entries.json"), post(nightscout_api::post_entries).get(nightscout_api::get_entries))
        .route(&format!("{base}/entries/sgv.json"), get(nightscout_api::get_sgv))
        .route(&format!("{base}/entries/sgv"), get(nightscout_api::get_sgv))
        .route(&format!("{base}/entries/mbg.json"), get(nightscout_api::get_mbg))
        .route(&format!("{base}/entries/current.json"), get(nightscout_api::get_current))
        .route(&format!("{base}/devicestatus"), post(nightscout_api::post_devicestatus))
        .route(&format!("{base}/devicestatus.json"), post(nightscout_api::post_devicestatus))
        .route(
            &format!("{base}/treatments"),
            post(nightscout_api::post_treatments).put(nightscout_api::post_treatments),
        )
        .route(
            &format!("{base}/treatments.json"),
            post(nightscout_api::post_treatments).put(nightscout_api::post_treatments),
        )
        .route(&format!("{base}/status.json"), get(nightscout_api::status))
        .route(&format!("{base}/status"), get(nightscout_api::status));
    r.route_layer(middleware::from_fn_with_state(app, nightscout_api::require_nightscout))
}

/// Authenticates the bearer token and checks the route's permission.
async fn require(State((app, perm)): State<(AppState, Permission)>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::new(Code::Unauthorized, "missing Authorization: Bearer <token>").into_response();
    };
    let Some(principal) = app.tokens.authenticate(token) else {
        return ApiError::new(Code::Unauthorized, "invalid or revoked token").into_response();
    };
    if !principal.role.allows(perm) {
        return ApiError::new(Code::Forbidden, format!("a {} token may not do this", principal.role.as_str()))
            .into_response();
    }
    req.extensions_mut().insert::<Principal>(principal);
    next.run(req).await
}

/// Sheds write requests beyond `server.max_concurrent_writes` before their body is read.
async fn limit_writes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = app.write_permits.clone().try_acquire_owned() else {
        return ApiError::new(Code::Overloaded, "too many write requests at once; retry shortly").into_response();
    };
    next.run(req).await
}

async fn healthz(State(app): State<AppState>) -> Response {
    match app.store.failure() {
        None => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Some(why) => {
            tracing::error!(error = %why, "health check: storage failed");
            ApiError::new(Code::Unavailable, "storage failed").into_response()
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.telemetry.render(&app.store, &app.dead_letters),
    )
        .into_response()
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let notifier = crate::notifier::spawn(app.clone())?;
    let alerting = crate::alerting::spawn(app.clone());
    let mqtt = crate::mqtt::spawn(app.clone())?;
    let file_drop = crate::file_drop::spawn(app.clone())?;
    let served = axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await;
    if let Some(m) = mqtt {
        m.abort();
    }
    if let Some(f) = file_drop {
        // Stopping waits for the file being processed; do it off the async workers.
        tokio::task::spawn_blocking(move || drop(f)).await?;
    }
    if let Some(a) = alerting {
        tokio::task::spawn_blocking(move || a.stop()).await?;
    }
    tokio::task::spawn_blocking(move || notifier.stop()).await?;
    served?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing requests and flushing");
}
