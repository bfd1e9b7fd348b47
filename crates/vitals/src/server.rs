//! The HTTP server: state, router, authentication and graceful shutdown.

use std::sync::Arc;

use axum::RequestExt;
use axum::Router;
use axum::extract::RawPathParams;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use vitals_core::{Catalog, Clock};
use vitals_storage::Store;
use vitals_storage::dead_letter::DeadLetters;
use vitals_storage::event_store::EventStore;

use crate::api_error::{ApiError, Code};
use crate::auth::{Directory, Principal};
use crate::authz::{self, Action};
use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::{
    alerts_api, cohorts_api, dead_letter_api, health_auto_export_api, line_protocol_api, nightscout_api,
    notifications_api, patients_api, people_api, rules_api, samples_api, series_api, session_api, tokens_api,
};

/// Everything a handler needs.
pub struct App {
    pub store: Arc<Store>,
    pub directory: Directory,
    /// Patients' identities, sealed (see `vitals-vault`).
    pub vault: Arc<vitals_vault::Vault>,
    /// Appends audit entries (group commit).
    pub auditor: crate::audit::Auditor,
    /// The file-drop ledger, once the watcher runs (the admin view lists it).
    pub file_ledger: std::sync::OnceLock<Arc<vitals_storage::ledger::FileLedger>>,
    /// Where the embedded MQTT listener listens, once started.
    pub mqtt_listener_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Patients erased while this process runs (the live engine forgets them).
    pub erased: crate::rights::ErasedPatients,
    /// Sign-in attempts per client address (rate limit).
    pub login_limiter: crate::session_api::Limiter,
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
    pub fn open(store: Arc<Store>, directory: Directory, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let dead_letters = crate::commands::open_dead_letters(&config)?;
        let events = crate::commands::open_events(&config)?;
        let rules = crate::commands::open_rules(&config)?;
        let alerts = crate::commands::open_alerts(&config)?;
        let cohorts = crate::commands::open_cohorts(&config)?;
        let vault = Arc::new(crate::commands::open_vault(&config)?);
        let auditor = crate::audit::Auditor::start(directory.meta_arc())?;
        let write_permits = Arc::new(Semaphore::new(config.server.max_concurrent_writes));
        Ok(App {
            store,
            directory,
            vault,
            login_limiter: crate::session_api::Limiter::default(),
            erased: crate::rights::ErasedPatients::default(),
            mqtt_listener_addr: std::sync::OnceLock::new(),
            file_ledger: std::sync::OnceLock::new(),
            auditor,
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

/// How a route's clients present credentials (and expect refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>` or a dashboard session cookie; errors as [`ApiError`].
    Bearer,
    /// InfluxDB clients (token, basic auth, `u`/`p` query); errors as InfluxDB's.
    Influx,
    /// Nightscout uploaders (`api-secret`, `token`, `secret`); errors as Nightscout's.
    Nightscout,
}

/// One route of the router and what it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub action: Action,
    pub credentials: Credentials,
}

/// Builds the router and its table of routes together, so no route exists without an
/// [`Action`] (the authorization matrix test walks this table).
pub(crate) struct Routes {
    app: AppState,
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

#[derive(Clone)]
struct Guard {
    app: AppState,
    action: Action,
    credentials: Credentials,
}

impl Routes {
    pub(crate) fn add<H, T>(
        &mut self,
        method: Method,
        path: &str,
        action: Action,
        credentials: Credentials,
        limit: bool,
        h: H,
    ) where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(method.clone()) {
            Ok(f) => f,
            Err(_) => unreachable!("routes use standard methods"),
        };
        let mut route = axum::routing::on(filter, h);
        if limit {
            route = route.route_layer(middleware::from_fn_with_state(self.app.clone(), limit_writes));
        }
        let guard = Guard { app: self.app.clone(), action, credentials };
        let route = route.route_layer(middleware::from_fn_with_state(guard, require));
        self.router = std::mem::take(&mut self.router).route(path, route);
        self.specs.push(RouteSpec { method, path: path.to_owned(), action, credentials });
    }

    fn get<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::GET, path, a, Credentials::Bearer, false, h);
        self
    }
    fn post<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::POST, path, a, Credentials::Bearer, false, h);
        self
    }
    fn put<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::PUT, path, a, Credentials::Bearer, false, h);
        self
    }
    fn delete<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::DELETE, path, a, Credentials::Bearer, false, h);
        self
    }
    /// A sample-writing route: concurrency-limited.
    fn write<H: axum::handler::Handler<T, AppState>, T: 'static>(
        &mut self,
        path: &str,
        c: Credentials,
        h: H,
    ) -> &mut Self {
        self.add(Method::POST, path, Action::WriteSamples, c, true, h);
        self
    }
}

/// Every route with the action it performs. `/healthz` is the only public route.
pub fn router(app: AppState) -> Router {
    routes(app).0
}

/// The router and the table of its routes.
pub fn routes(app: AppState) -> (Router, Vec<RouteSpec>) {
    use Action as A;
    let mut r = Routes { app: app.clone(), router: Router::new(), specs: Vec::new() };
    r.get("/metrics", A::Operate, metrics);
    r.get("/api/v1/system", A::Operate, crate::web::system);
    r.get("/api/v1/file-drop", A::Operate, crate::web::file_drop_ledger);
    r.get("/api/v1/devices", A::ManagePeople, crate::web::devices);
    r.delete("/api/v1/devices/{id}", A::ManagePeople, crate::web::revoke_device);
    r.write("/api/v1/samples", Credentials::Bearer, samples_api::post_samples)
        .write("/api/v1/ingest/health-auto-export", Credentials::Bearer, health_auto_export_api::post_export)
        .write("/write", Credentials::Influx, line_protocol_api::write_v1)
        .write("/api/v2/write", Credentials::Influx, line_protocol_api::write_v2);
    nightscout_api::routes(&mut r);
    r.get("/api/v1/metrics", A::ReadRules, series_api::list_metrics)
        .get("/api/v1/patients", A::ListPatients, patients_api::list)
        .post("/api/v1/patients", A::CreatePatient, patients_api::create)
        .get("/api/v1/patients/{patient}/identity", A::ReadIdentity, patients_api::get_identity)
        .put("/api/v1/patients/{patient}/identity", A::WriteIdentity, patients_api::put_identity)
        .get("/api/v1/patients/{patient}/export", A::ExportPatient, patients_api::export)
        .delete("/api/v1/patients/{patient}", A::ErasePatient, patients_api::erase)
        .get("/api/v1/patients/{patient}/events", A::ReadPatientData, series_api::events)
        .get("/api/v1/patients/{patient}/latest", A::ReadPatientData, series_api::latest)
        .get("/api/v1/patients/{patient}/chart", A::ReadPatientData, crate::web::chart)
        .get("/api/v1/patients/{patient}/glucose", A::ReadPatientData, crate::web::glucose)
        .get("/api/v1/patients/{patient}/live", A::ReadPatientData, crate::web::live)
        .get("/api/v1/patients/{patient}/series/{metric}", A::ReadPatientData, series_api::series)
        .get("/api/v1/overview", A::ListPatients, crate::web::overview)
        .get("/api/v1/me", A::Me, people_api::me)
        .delete("/api/v1/session", A::Me, session_api::logout)
        .get("/api/v1/users", A::ManagePeople, people_api::list_users)
        .post("/api/v1/users", A::ManagePeople, people_api::create_user)
        .get("/api/v1/users/{user}", A::ManagePeople, people_api::get_user)
        .put("/api/v1/users/{user}", A::ManagePeople, people_api::update_user)
        .delete("/api/v1/users/{user}", A::ManagePeople, people_api::delete_user)
        .get("/api/v1/teams", A::ManagePeople, people_api::list_teams)
        .put("/api/v1/teams/{team}", A::ManagePeople, people_api::put_team)
        .delete("/api/v1/teams/{team}", A::ManagePeople, people_api::delete_team)
        .get("/api/v1/audit", A::ReadAudit, people_api::audit)
        .get("/api/v1/tokens", A::ManagePeople, tokens_api::list_tokens)
        .post("/api/v1/tokens", A::ManagePeople, tokens_api::create_token)
        .delete("/api/v1/tokens/{id}", A::ManagePeople, tokens_api::revoke_token)
        .get("/api/v1/dead-letters", A::Operate, dead_letter_api::list)
        .delete("/api/v1/dead-letters", A::Operate, dead_letter_api::purge)
        .get("/api/v1/dead-letters/{id}", A::Operate, dead_letter_api::show)
        .delete("/api/v1/dead-letters/{id}", A::Operate, dead_letter_api::remove_one)
        .post("/api/v1/dead-letters/{id}/replay", A::Operate, dead_letter_api::replay_one)
        .get("/api/v1/alerts", A::ReadAlerts, alerts_api::list)
        .get("/api/v1/alerts/{id}", A::ReadAlerts, alerts_api::get_one)
        .post("/api/v1/alerts/{id}/ack", A::ActOnAlerts, alerts_api::ack)
        .post("/api/v1/alerts/{id}/snooze", A::ActOnAlerts, alerts_api::snooze)
        .get("/api/v1/notifications", A::ManageNotifications, notifications_api::list)
        .post("/api/v1/notifications/test", A::ManageNotifications, notifications_api::test)
        .get("/api/v1/notifications/{id}", A::ManageNotifications, notifications_api::get_one)
        .post("/api/v1/notifications/{id}/replay", A::ManageNotifications, notifications_api::replay)
        .get("/api/v1/cohorts", A::ReadCohorts, cohorts_api::list)
        .get("/api/v1/cohorts/{name}", A::ReadCohorts, cohorts_api::get_one)
        .put("/api/v1/cohorts/{name}", A::ManageCohorts, cohorts_api::put)
        .delete("/api/v1/cohorts/{name}", A::ManageCohorts, cohorts_api::delete)
        .get("/api/v1/rules", A::ReadRules, rules_api::list)
        .post("/api/v1/rules", A::ManageRules, rules_api::create)
        .post("/api/v1/rules/backtest", A::Backtest, rules_api::backtest)
        .get("/api/v1/rules/{name}", A::ReadRules, rules_api::get_one)
        .put("/api/v1/rules/{name}", A::ManageRules, rules_api::replace)
        .delete("/api/v1/rules/{name}", A::ManageRules, rules_api::delete);
    let Routes { router, specs, .. } = r;
    // Besides /healthz, sign-in (it checks a password, rate-limited) and the dashboard's
    // static shell are the only routes without credentials.
    let router = router
        .route("/healthz", get(healthz))
        .route("/api/v1/login", post(session_api::login))
        // The dashboard's shell and assets: no data, so no credentials (see `web`).
        .route("/", get(crate::web::index))
        .route("/assets/{name}", get(crate::web::asset))
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(app.config.server.body_limit_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app);
    (router, specs)
}

/// The patient named in a request's response, for the audit log of routes that find the
/// patient from an id (an alert) or a body.
#[derive(Debug, Clone)]
pub struct AuditPatient(pub String);

/// The client's address, if the server was started with connection info.
pub fn origin_of(req: &Request) -> String {
    peer_of(req).map_or_else(|| "unknown".to_string(), |p| p.addr.ip().to_string())
}

/// The connection's peer (address, client certificate).
pub fn peer_of(req: &Request) -> Option<&crate::tls::Peer> {
    req.extensions().get::<axum::extract::ConnectInfo<crate::tls::Peer>>().map(|c| &c.0)
}

fn refuse(credentials: Credentials, status: axum::http::StatusCode, message: &str) -> Response {
    match credentials {
        Credentials::Bearer => {
            let code = match status.as_u16() {
                401 => Code::Unauthorized,
                403 => Code::Forbidden,
                _ => Code::Internal,
            };
            ApiError::new(code, message.to_owned()).into_response()
        }
        Credentials::Influx => line_protocol_api::refuse(status, message),
        Credentials::Nightscout => nightscout_api::refuse(status, message),
    }
}

/// Whether the audit log records requests of this action (every one but sample writes,
/// which the write-ahead log records, and one's own account).
fn audited(action: Action) -> bool {
    !matches!(action, Action::WriteSamples | Action::Me)
}

/// Authenticates, authorizes (the route's action, on the path's patient), checks CSRF for
/// session-authenticated changes, and audits.
async fn require(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let now = g.app.clock.now_ms();
    let principal = match g.credentials {
        Credentials::Bearer => session_api::principal(&g.app, req.headers(), now),
        Credentials::Influx => line_protocol_api::principal(&g.app, &req, now),
        Credentials::Nightscout => nightscout_api::principal(&g.app, &req, now),
    }
    // A device's client certificate (mTLS) when no other credentials were given.
    .or_else(|| {
        let fp = peer_of(&req)?.cert_sha256.as_deref()?;
        g.app.directory.authenticate_cert(fp, now)
    });
    let Some(principal) = principal else {
        let message = match g.credentials {
            Credentials::Bearer => "missing or invalid credentials: Authorization: Bearer <token> or a session",
            Credentials::Influx => "authorization failed",
            Credentials::Nightscout => "Unauthorized",
        };
        let mut r = refuse(g.credentials, axum::http::StatusCode::UNAUTHORIZED, message);
        if g.credentials == Credentials::Influx {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"InfluxDB\""));
        }
        return r;
    };
    if let Some(csrf) = &principal.csrf
        && !req.method().is_safe()
        && req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) != Some(csrf.as_str())
    {
        return ApiError::new(Code::Forbidden, "missing or wrong X-CSRF-Token for this session").into_response();
    }
    let patient = match req.extract_parts::<RawPathParams>().await {
        Ok(params) => params.iter().find(|(k, _)| *k == "patient").map(|(_, v)| v.to_owned()),
        Err(_) => None,
    };
    if !audited(g.action) {
        // Sample writes and one's own account: no audit entry, so nothing to prepare.
        if let Err(denied) = authz::check(&principal, g.action, patient.as_deref()) {
            return refuse(g.credentials, axum::http::StatusCode::FORBIDDEN, &denied.to_string());
        }
        req.extensions_mut().insert::<Principal>(principal);
        return next.run(req).await;
    }
    let origin = origin_of(&req);
    let target = format!("{} {}", req.method(), req.uri().path());
    let event = |outcome: &str, patient: Option<String>| vitals_meta::AuditEvent {
        ts_ms: now,
        actor: principal.actor.clone(),
        action: audit_action(g.action).to_owned(),
        patient,
        target: target.clone(),
        origin: origin.clone(),
        outcome: outcome.to_owned(),
    };
    if let Err(denied) = authz::check(&principal, g.action, patient.as_deref()) {
        // A refusal is worth recording; a failure to record it does not change the answer.
        let _ = crate::audit::record(&g.app, event("denied", patient.clone())).await;
        return refuse(g.credentials, axum::http::StatusCode::FORBIDDEN, &denied.to_string());
    }
    req.extensions_mut().insert::<Principal>(principal.clone());
    let response = next.run(req).await;
    let patient = response.extensions().get::<AuditPatient>().map(|p| p.0.clone()).or(patient);
    let outcome = if response.status().is_success() { "ok" } else { "failed" };
    match crate::audit::record(&g.app, event(outcome, patient)).await {
        Ok(()) => response,
        // Patient data is not handed out unrecorded.
        Err(e) => ApiError::internal(format!("recording the audit entry: {e:#}")).into_response(),
    }
}

/// The audit log's name of an action.
pub fn audit_action(a: Action) -> &'static str {
    match a {
        Action::WriteSamples => "samples.write",
        Action::ListPatients => "patients.list",
        Action::ReadPatientData => "patient.read",
        Action::CreatePatient => "patient.create",
        Action::ReadIdentity => "identity.read",
        Action::WriteIdentity => "identity.update",
        Action::ExportPatient => "patient.export",
        Action::ErasePatient => "patient.erase",
        Action::ReadAlerts => "alerts.read",
        Action::ActOnAlerts => "alerts.act",
        Action::ReadRules => "rules.read",
        Action::Backtest => "rules.backtest",
        Action::ManageRules => "rules.change",
        Action::ReadCohorts => "cohorts.read",
        Action::ManageCohorts => "cohorts.change",
        Action::ManageNotifications => "notifications.manage",
        Action::ManagePeople => "people.manage",
        Action::ReadAudit => "audit.read",
        Action::Operate => "operate",
        Action::Me => "me",
    }
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
    let mqtt_listener = match crate::mqtt_listener::spawn(app.clone()).await? {
        Some((addr, task)) => {
            let _ = app.mqtt_listener_addr.set(addr);
            Some(task)
        }
        None => None,
    };
    let file_drop = crate::file_drop::spawn(app.clone())?;
    let tls = crate::tls::http_config(&app.config)?;
    let service = router(app).into_make_service_with_connect_info::<crate::tls::Peer>();
    let served = match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config)?;
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, service).with_graceful_shutdown(shutdown).await,
    };
    if let Some(m) = mqtt {
        m.abort();
    }
    if let Some(m) = mqtt_listener {
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
