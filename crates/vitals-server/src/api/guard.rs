//! The guard every route passes through: authenticate (in the route's credential style),
//! check CSRF for cookie-authenticated changes, authorize the route's action on the path's
//! `{patient}`, and audit; and the shedding of write requests beyond
//! `server.max_concurrent_writes` before their body is read.

use axum::RequestExt;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::audit::{AuditPatient, AuditTarget, audit_action};
use crate::auth::Principal;
use crate::auth::credentials::{self, Credentials};
use crate::authz::{self, Action};
use crate::source::{line_protocol_api, nightscout_api};
use crate::tls::{origin_of, peer_of};

/// What a route requires: its action and how its clients present credentials.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) app: AppState,
    pub(crate) action: Action,
    pub(crate) credentials: Credentials,
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
pub(crate) async fn require(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let now = g.app.clock.now_ms();
    let cert = peer_of(&req).and_then(|p| p.cert_sha256.as_deref());
    let principal = credentials::authenticate(&g.app.directory, g.credentials, req.headers(), req.uri(), cert, now);
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
        let _ = g.app.auditor.record(event("denied", patient.clone())).await;
        return refuse(g.credentials, axum::http::StatusCode::FORBIDDEN, &denied.to_string());
    }
    req.extensions_mut().insert::<Principal>(principal.clone());
    // Changes that cannot be undone or that touch identity are recorded before they are
    // made: no erasure or identity change happens without its entry being durable first.
    if matches!(g.action, Action::ErasePatient | Action::WriteIdentity)
        && let Err(e) = g.app.auditor.record(event("requested", patient.clone())).await
    {
        return ApiError::from(e).into_response();
    }
    let response = next.run(req).await;
    let patient = response.extensions().get::<AuditPatient>().map(|p| p.0.clone()).or(patient);
    let outcome = if response.status().is_success() { "ok" } else { "failed" };
    let mut entry = event(outcome, patient);
    if let Some(t) = response.extensions().get::<AuditTarget>() {
        entry.target = format!("{target} {}", t.0);
    }
    match g.app.auditor.record(entry).await {
        Ok(()) => response,
        // Patient data is not handed out unrecorded.
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// What a route costs, for the limits on how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// Bounded work: no limit beyond the server's.
    Light,
    /// Writes samples: `server.max_concurrent_writes` at once, each within
    /// [`WRITE_REQUEST_TIMEOUT`] (so a slow upload cannot hold a permit for ever).
    Write,
    /// A file upload: a write permit, but no overall timeout (a file of gigabytes takes
    /// minutes to send and to store; the body's idle timeout still applies).
    Upload,
    /// Work that grows with the data read (charts, glucose, backtests, exports).
    Heavy,
    /// A live stream (server-sent events), open for long.
    Live,
}

/// The longest a write request may take, body upload and durability included.
pub(crate) const WRITE_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sheds requests beyond their class's limit (503 with `Retry-After`) before their body is
/// read; write requests also end with 408 past [`WRITE_REQUEST_TIMEOUT`].
pub(crate) async fn limit(State((app, load)): State<(AppState, Load)>, req: Request, next: Next) -> Response {
    let (permits, what) = match load {
        Load::Light => return next.run(req).await,
        Load::Write | Load::Upload => (&app.write_permits, "write requests"),
        Load::Heavy => (&app.heavy_permits, "heavy reads (charts, backtests, exports)"),
        Load::Live => (&app.live_permits, "live streams"),
    };
    let Ok(_permit) = permits.clone().try_acquire_owned() else {
        return ApiError::new(Code::Overloaded, format!("too many {what} at once; retry shortly")).into_response();
    };
    if load == Load::Live {
        // A stream's slot is held as long as its body is sent, not just until it starts.
        use futures_util::StreamExt as _;
        let (parts, body) = next.run(req).await.into_parts();
        let held = body.into_data_stream().map(move |chunk| {
            let _ = &_permit;
            chunk
        });
        return Response::from_parts(parts, axum::body::Body::from_stream(held));
    }
    if load != Load::Write {
        return next.run(req).await;
    }
    match tokio::time::timeout(WRITE_REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r =
                ApiError::new(Code::RequestTimeout, "the request took too long (a slow upload?)").into_response();
            crate::api::error::closing(&mut r);
            r
        }
    }
}
