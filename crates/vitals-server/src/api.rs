//! The HTTP API: one table of every route with the action it performs and how its clients
//! present credentials, built together with the router so that no route exists without an
//! entry in the authorization matrix. Handlers live in this folder (`*_api.rs`, by
//! resource) and, for the ways samples come in, in `crate::source`.

pub(crate) mod dashboard_api;
pub mod error;
pub(crate) mod extract;
pub(crate) mod guard;
pub(crate) mod system_api;

pub(crate) mod alerts_api;
pub(crate) mod baselines_api;
pub(crate) mod campaigns_api;
pub(crate) mod cohorts_api;
pub(crate) mod connections_api;
pub(crate) mod dead_letter_api;
pub(crate) mod devices_api;
pub(crate) mod fhir_api;
pub(crate) mod fhir_export_api;
pub mod notifications_api;
pub mod openapi;
pub(crate) mod patients_api;
pub(crate) mod people_api;
pub(crate) mod rules_api;
pub(crate) mod seizure_diary_api;
pub mod series_api;
pub(crate) mod session_api;
pub(crate) mod sql_api;
pub(crate) mod tokens_api;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodFilter, get, post};

use self::error::{ApiError, Code};
use self::guard::{Guard, Load};
use crate::app::AppState;
use crate::auth::credentials::Credentials;
use crate::authz::Action;
use crate::source::{health_auto_export_api, line_protocol_api, nightscout_api, samples_api, upload_api};
use crate::web;

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
struct Routes {
    app: AppState,
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Routes {
    fn add<H, T>(&mut self, method: Method, path: &str, action: Action, credentials: Credentials, limit: Load, h: H)
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(method.clone()) {
            Ok(f) => f,
            Err(_) => unreachable!("routes use standard methods"),
        };
        let mut route = axum::routing::on(filter, h);
        if limit != Load::Light {
            route = route.route_layer(middleware::from_fn_with_state((self.app.clone(), limit), guard::limit));
        }
        let guard = Guard { app: self.app.clone(), action, credentials };
        let route = route.route_layer(middleware::from_fn_with_state(guard, guard::require));
        self.router = std::mem::take(&mut self.router).route(path, route);
        self.specs.push(RouteSpec { method, path: path.to_owned(), action, credentials });
    }

    fn get<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::GET, path, a, Credentials::Bearer, Load::Light, h);
        self
    }
    fn post<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::POST, path, a, Credentials::Bearer, Load::Light, h);
        self
    }
    fn put<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::PUT, path, a, Credentials::Bearer, Load::Light, h);
        self
    }
    fn delete<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, a: Action, h: H) -> &mut Self {
        self.add(Method::DELETE, path, a, Credentials::Bearer, Load::Light, h);
        self
    }
    /// A sample-writing route: concurrency-limited.
    fn write<H: axum::handler::Handler<T, AppState>, T: 'static>(
        &mut self,
        path: &str,
        c: Credentials,
        h: H,
    ) -> &mut Self {
        self.add(Method::POST, path, Action::WriteSamples, c, Load::Write, h);
        self
    }
    /// The live stream of a patient: at most so many open at once.
    fn add_live<H: axum::handler::Handler<T, AppState>, T: 'static>(&mut self, path: &str, h: H) -> &mut Self {
        self.add(Method::GET, path, Action::ReadPatientData, Credentials::Bearer, Load::Live, h);
        self
    }
    /// A route whose work grows with the data it reads: concurrency-limited.
    fn heavy<H: axum::handler::Handler<T, AppState>, T: 'static>(
        &mut self,
        method: Method,
        path: &str,
        a: Action,
        h: H,
    ) -> &mut Self {
        self.add(method, path, a, Credentials::Bearer, Load::Heavy, h);
        self
    }
}

/// A file as a response body, read 64 KiB at a time (an export of any size streams in
/// bounded memory). A read error breaks the answer off: the client sees a short body.
pub(crate) fn file_body(file: tokio::fs::File) -> axum::body::Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures_util::stream::unfold(Some(file), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    axum::body::Body::from_stream(chunks)
}

/// Every route with the action it performs. `/healthz` is the only public route.
pub fn router(app: AppState) -> Router {
    routes(app).0
}

/// The router and the table of its routes.
pub fn routes(app: AppState) -> (Router, Vec<RouteSpec>) {
    use Action as A;
    let mut r = Routes { app: app.clone(), router: Router::new(), specs: Vec::new() };
    r.get("/metrics", A::Operate, system_api::metrics);
    r.get("/api/v1/system", A::Operate, system_api::system);
    r.get("/api/v1/file-drop", A::Operate, system_api::file_drop_ledger);
    r.get("/api/v1/devices", A::ManagePeople, system_api::devices);
    r.delete("/api/v1/devices/{id}", A::ManagePeople, system_api::revoke_device);
    r.write("/api/v1/samples", Credentials::Bearer, samples_api::post_samples)
        .write("/api/v1/ingest/health-auto-export", Credentials::Bearer, health_auto_export_api::post_export)
        .write("/write", Credentials::Influx, line_protocol_api::write_v1)
        .write("/api/v2/write", Credentials::Influx, line_protocol_api::write_v2);
    r.add(
        Method::POST,
        "/api/v1/ingest/file",
        A::WriteSamples,
        Credentials::Bearer,
        Load::Upload,
        upload_api::post_file,
    );
    nightscout(&mut r);
    r.get("/api/v1/metrics", A::ReadRules, series_api::list_metrics)
        .get("/api/v1/patients", A::ListPatients, patients_api::list)
        .post("/api/v1/patients", A::CreatePatient, patients_api::create)
        .get("/api/v1/patients/{patient}/identity", A::ReadIdentity, patients_api::get_identity)
        .put("/api/v1/patients/{patient}/identity", A::WriteIdentity, patients_api::put_identity)
        .heavy(Method::GET, "/api/v1/patients/{patient}/export", A::ExportPatient, patients_api::export)
        .delete("/api/v1/patients/{patient}", A::ErasePatient, patients_api::erase)
        .get("/api/v1/patients/{patient}/events", A::ReadPatientData, series_api::events)
        .get("/api/v1/patients/{patient}/latest", A::ReadPatientData, series_api::latest)
        .get("/api/v1/patients/{patient}/devices", A::ReadPatientData, devices_api::patient_devices)
        .get("/api/v1/patients/{patient}/connections", A::ReadPatientData, connections_api::list)
        .put("/api/v1/patients/{patient}/connections/{vendor}", A::ManageConnections, connections_api::connect)
        .delete("/api/v1/patients/{patient}/connections/{vendor}", A::ManageConnections, connections_api::disconnect)
        .post("/api/v1/patients/{patient}/connections/{vendor}/sync", A::ManageConnections, connections_api::sync_now)
        .post(
            "/api/v1/patients/{patient}/connections/{vendor}/authorize",
            A::ManageConnections,
            connections_api::authorize,
        )
        .post("/api/v1/connections/oauth", A::ManageConnections, connections_api::finish)
        .heavy(Method::GET, "/api/v1/patients/{patient}/chart", A::ReadPatientData, dashboard_api::chart)
        .heavy(Method::GET, "/api/v1/patients/{patient}/glucose", A::ReadPatientData, dashboard_api::glucose)
        .heavy(Method::GET, "/api/v1/patients/{patient}/baselines", A::ReadPatientData, baselines_api::baselines)
        .heavy(Method::GET, "/api/v1/patients/{patient}/profile", A::ReadPatientData, baselines_api::profile)
        .get("/api/v1/patients/{patient}/seizures", A::ReadPatientData, seizure_diary_api::diary)
        .add_live("/api/v1/patients/{patient}/live", dashboard_api::live)
        .get("/api/v1/patients/{patient}/series/{metric}", A::ReadPatientData, series_api::series)
        .heavy(Method::GET, "/api/v1/patients/{patient}/fhir", A::ReadPatientData, fhir_api::bundle)
        .get("/api/v1/overview", A::ListPatients, dashboard_api::overview)
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
        .get("/api/v1/campaigns", A::ManageCampaigns, campaigns_api::list)
        .post("/api/v1/campaigns", A::ManageCampaigns, campaigns_api::create)
        .get("/api/v1/campaigns/{id}", A::ManageCampaigns, campaigns_api::get_one)
        .post("/api/v1/campaigns/{id}/cancel", A::ManageCampaigns, campaigns_api::cancel)
        .get("/api/v1/patients/{patient}/campaigns", A::ReadIdentity, campaigns_api::patient_get)
        .put("/api/v1/patients/{patient}/campaigns", A::WriteIdentity, campaigns_api::patient_put)
        .get("/api/v1/cohorts", A::ReadCohorts, cohorts_api::list)
        .get("/api/v1/cohorts/{name}", A::ReadCohorts, cohorts_api::get_one)
        .put("/api/v1/cohorts/{name}", A::ManageCohorts, cohorts_api::put)
        .delete("/api/v1/cohorts/{name}", A::ManageCohorts, cohorts_api::delete)
        .get("/api/v1/rules", A::ReadRules, rules_api::list)
        .post("/api/v1/rules", A::ManageRules, rules_api::create)
        .heavy(Method::POST, "/api/v1/rules/backtest", A::Backtest, rules_api::backtest)
        .get("/api/v1/rules/{name}", A::ReadRules, rules_api::get_one)
        .put("/api/v1/rules/{name}", A::ManageRules, rules_api::replace)
        .delete("/api/v1/rules/{name}", A::ManageRules, rules_api::delete)
        .post("/api/v1/sql", A::QuerySql, sql_api::query)
        .get("/api/v1/fhir/$export", A::ExportBulk, fhir_export_api::kick_off)
        .get("/api/v1/fhir/Patient/$export", A::ExportBulk, fhir_export_api::kick_off)
        .get("/api/v1/fhir/Group/{name}/$export", A::ExportBulk, fhir_export_api::kick_off_group)
        .get("/api/v1/fhir/$export-status/{id}", A::ExportBulk, fhir_export_api::status)
        .delete("/api/v1/fhir/$export-status/{id}", A::ExportBulk, fhir_export_api::cancel)
        .get("/api/v1/fhir/$export-file/{id}/{file}", A::ExportBulk, fhir_export_api::file);
    // The document describes every route, itself included: it is built once the table is.
    let document = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let served = document.clone();
    r.get("/api/v1/openapi.json", A::Me, move || {
        let served = served.clone();
        async move {
            use axum::response::IntoResponse;
            match served.get() {
                Some(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
                None => ApiError::new(Code::Internal, "the API document did not build").into_response(),
            }
        }
    });
    let Routes { router, specs, .. } = r;
    match openapi::document(&specs).and_then(|d| serde_json::to_string(&d)) {
        Ok(json) => {
            let _ = document.set(json);
        }
        Err(e) => tracing::error!(error = %e, "the OpenAPI document did not build"),
    }
    // Besides /healthz, sign-in (it checks a password, rate-limited), the unsubscribe
    // page of campaign messages (its signed token is the credential) and the dashboard's
    // static shell are the only routes without credentials.
    let router = router
        .route("/healthz", get(system_api::healthz))
        .route("/api/v1/login", post(session_api::login))
        .route("/unsubscribe", get(campaigns_api::unsubscribe_page).post(campaigns_api::unsubscribe))
        // The dashboard's shell and assets: no data, so no credentials (see `web`).
        .route("/", get(web::index))
        .route("/assets/{name}", get(web::asset))
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(app.config.server.body_limit_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_millis(
            app.config.server.body_idle_timeout.as_ms().max(1) as u64,
        )))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app);
    (router, specs)
}

/// The Nightscout-compatible API of each patient: reads are `SyncNightscout` (the patient's
/// readers, and its bound uploader), writes `WriteSamples`, both on the path's patient;
/// the site's status is for every client.
fn nightscout(r: &mut Routes) {
    use Action::{SyncNightscout as Read, WriteSamples as Write};
    use Credentials::Nightscout as Ns;
    use nightscout_api as ns;
    let base = "/nightscout/{patient}/api/v1";
    for path in ["entries", "entries.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_entries);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_entries);
    }
    for path in ["entries/sgv.json", "entries/sgv"] {
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_sgv);
    }
    r.add(Method::GET, &format!("{base}/entries/mbg.json"), Read, Ns, Load::Light, ns::get_mbg);
    r.add(Method::GET, &format!("{base}/entries/current.json"), Read, Ns, Load::Light, ns::get_current);
    for path in ["devicestatus", "devicestatus.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_devicestatus);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_devicestatus);
    }
    for path in ["treatments", "treatments.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_treatments);
        r.add(Method::PUT, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_treatments);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_treatments);
    }
    for path in ["profile", "profile.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_profile);
        r.add(Method::PUT, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_profile);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_profile);
    }
    for path in ["activity", "activity.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_activity);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_activity);
    }
    for path in ["food", "food.json"] {
        r.add(Method::POST, &format!("{base}/{path}"), Write, Ns, Load::Write, ns::post_food);
        r.add(Method::GET, &format!("{base}/{path}"), Read, Ns, Load::Light, ns::get_food);
    }
    r.add(Method::DELETE, &format!("{base}/{{collection}}/{{id}}"), Write, Ns, Load::Write, ns::delete_document);
    // API v3 (AndroidAPS' NSClient v3, Trio) over the same documents.
    use crate::source::nightscout_v3 as v3;
    let v3_base = "/nightscout/{patient}/api/v3";
    r.add(
        Method::GET,
        "/nightscout/{patient}/api/v2/authorization/request/{token}",
        Action::Me,
        Ns,
        Load::Light,
        v3::authorization_request,
    );
    r.add(Method::GET, &format!("{v3_base}/version"), Action::Me, Ns, Load::Light, v3::version);
    r.add(Method::GET, &format!("{v3_base}/status"), Action::Me, Ns, Load::Light, v3::status);
    r.add(Method::GET, &format!("{v3_base}/lastModified"), Read, Ns, Load::Light, v3::last_modified);
    r.add(Method::GET, &format!("{v3_base}/{{collection}}"), Read, Ns, Load::Light, v3::search);
    r.add(Method::POST, &format!("{v3_base}/{{collection}}"), Write, Ns, Load::Write, v3::create);
    r.add(Method::GET, &format!("{v3_base}/{{collection}}/history"), Read, Ns, Load::Light, v3::history);
    r.add(Method::GET, &format!("{v3_base}/{{collection}}/history/{{since}}"), Read, Ns, Load::Light, v3::history);
    r.add(Method::GET, &format!("{v3_base}/{{collection}}/{{identifier}}"), Read, Ns, Load::Light, v3::read);
    r.add(Method::PUT, &format!("{v3_base}/{{collection}}/{{identifier}}"), Write, Ns, Load::Write, v3::replace);
    r.add(Method::PATCH, &format!("{v3_base}/{{collection}}/{{identifier}}"), Write, Ns, Load::Write, v3::patch);
    r.add(Method::DELETE, &format!("{v3_base}/{{collection}}/{{identifier}}"), Write, Ns, Load::Write, v3::delete);
    // The site's settings hold no patient data: every signed-in client reads them (xDrip+
    // polls them with its uploader secret).
    for path in ["status.json", "status"] {
        r.add(Method::GET, &format!("{base}/{path}"), Action::Me, Ns, Load::Light, ns::status);
    }
}
