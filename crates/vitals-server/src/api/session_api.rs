//! Dashboard sign-in: `POST /api/v1/login` (name and password; rate-limited per client
//! address, accounts lock after repeated failures), a session cookie (HttpOnly,
//! SameSite=Strict, Secure over TLS) and a CSRF token that state-changing requests made
//! with the cookie must echo in `X-CSRF-Token`. `DELETE /api/v1/session` signs out.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::auth::credentials::{COOKIE, session_cookie};
use crate::auth::{LockoutPolicy, LoginError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    name: String,
    password: String,
    /// Keep this screen signed in (`[auth] kept_session_ttl` instead of `session_ttl`).
    #[serde(default)]
    keep: bool,
}

fn set_cookie(app: &AppState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if crate::tls::enabled(&app.config) { "; Secure" } else { "" };
    let c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("vitals_session=; Max-Age=0"))
}

/// Signs in: JSON `{"name", "password", "keep"?}` (or a form with the same fields).
pub(crate) async fn login(State(app): State<AppState>, req: axum::extract::Request) -> Result<Response, ApiError> {
    let now = app.clock.now_ms();
    let peer = crate::tls::peer_of(&req).map_or(IpAddr::from([0, 0, 0, 0]), |p| p.addr.ip());
    let headers = req.headers().clone();
    let ip = crate::auth::login_limiter::client_address(peer, &headers, &app.config.auth.trusted_proxies);
    let body = axum::body::to_bytes(req.into_body(), 64 << 10)
        .await
        .map_err(|_| ApiError::new(Code::PayloadTooLarge, "a sign-in is at most 64 KiB"))?;
    if !app.login_limiter.allow(ip, now, app.config.auth.login_attempts_per_minute) {
        return Err(ApiError::new(Code::RateLimited, "too many sign-in attempts from this address; wait a minute"));
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: Login = if is_form {
        serde_urlencoded::from_bytes(&body)
            .map_err(|_| ApiError::new(Code::InvalidBody, "expected the form fields name and password"))?
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(Code::InvalidBody, format!("expected {{\"name\", \"password\"}}: {e}")))?
    };
    let policy = LockoutPolicy {
        max_failed: app.config.auth.max_failed_logins.max(1),
        lockout_ms: app.config.auth.lockout.as_ms(),
    };
    let Ok(_permit) = app.login_permits.clone().try_acquire_owned() else {
        return Err(ApiError::new(Code::Overloaded, "too many sign-ins at once; retry shortly"));
    };
    let directory_result = {
        let app = app.clone();
        let (name, password) = (form.name.clone(), form.password);
        tokio::task::spawn_blocking(move || app.directory.login(&name, &password, now, policy))
            .await
            .map_err(ApiError::internal)?
    };
    let origin = ip.to_string();
    let kept = if form.keep { " (kept signed in)" } else { "" };
    let audit = |outcome: &str, actor: String| vitals_meta::AuditEvent {
        ts_ms: now,
        actor,
        action: if outcome == "ok" { "login.ok" } else { "login.failed" }.to_owned(),
        patient: None,
        target: format!("user {}{kept}", form.name),
        origin: origin.clone(),
        outcome: outcome.to_owned(),
    };
    match directory_result {
        Ok(user) => {
            let ttl = if form.keep { app.config.auth.kept_session_ttl } else { app.config.auth.session_ttl }.as_ms();
            let (cookie, csrf) = app.directory.start_session(&user, now, ttl).map_err(ApiError::internal)?;
            app.auditor.record(audit("ok", format!("user:{}", user.name))).await.map_err(ApiError::internal)?;
            let mut r = Json(json!({"user": user.name, "role": user.role, "csrf": csrf,
                "expires": vitals_core::time::format_time(now + ttl)}))
            .into_response();
            r.headers_mut().insert(header::SET_COOKIE, set_cookie(&app, &cookie, ttl / 1000));
            Ok(r)
        }
        Err(e) => {
            let outcome = if matches!(e, LoginError::Locked { .. }) { "locked" } else { "denied" };
            app.auditor.record(audit(outcome, "anonymous".into())).await.map_err(ApiError::internal)?;
            Err(match e {
                LoginError::Invalid | LoginError::Disabled => ApiError::new(Code::Unauthorized, e.to_string()),
                LoginError::Locked { .. } => ApiError::new(Code::AccountLocked, e.to_string()),
                LoginError::Store(why) => ApiError::internal(why),
            })
        }
    }
}

/// Signs out: the session ends on the server, the cookie is cleared.
pub(crate) async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(c) = session_cookie(&headers) {
        app.directory.end_session(c).map_err(ApiError::internal)?;
    }
    let mut r = axum::http::StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&app, "", 0));
    Ok(r)
}
