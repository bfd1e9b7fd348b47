//! The web dashboard: static assets compiled into the binary (nothing is downloaded at run
//! time), served with a strict Content-Security-Policy, and the overview endpoint the
//! patients view reads.
//!
//! The app shell (`/`, `/assets/*`) holds no data and needs no credentials; everything it
//! shows comes from the authenticated API with the session cookie.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vitals_core::time::format_time;

use crate::auth::Principal;
use crate::authz::{self, Action};
use crate::server::AppState;

/// The assets, by the name they are served under.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../web/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../web/app.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("../web/icon.svg")),
];
const INDEX: &[u8] = include_bytes!("../web/index.html");

/// Scripts, styles, images and requests from this origin only; no inline code, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The app shell.
pub async fn index() -> Response {
    secured(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX)
            .into_response(),
    )
}

/// One embedded asset.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, bytes)) => {
            secured(([(header::CONTENT_TYPE, *ctype), (header::CACHE_CONTROL, "no-cache")], *bytes).into_response())
        }
        None => secured((StatusCode::NOT_FOUND, "no such asset").into_response()),
    }
}

/// A patient is stale when nothing arrived for this long.
const STALE_MS: i64 = 3_600_000;

/// `GET /api/v1/overview`: every patient the caller reaches with their latest value of
/// each metric, open alerts, device battery and whether they went quiet.
pub async fn overview(State(app): State<AppState>, Extension(who): Extension<Principal>) -> Json<Value> {
    let now = app.clock.now_ms();
    let mut rows: BTreeMap<String, Option<i64>> = BTreeMap::new();
    if let Ok(registered) = app.directory.meta().patients() {
        for p in registered {
            rows.entry(p.id).or_default();
        }
    }
    for (p, seen) in app.store.patients() {
        rows.insert(p.to_string(), Some(seen));
    }
    let open: Vec<_> =
        app.alerts.list(None, None, i64::MIN, i64::MAX).into_iter().filter(|a| a.state.active()).collect();
    let out: Vec<Value> = rows
        .into_iter()
        .filter(|(p, _)| authz::visible(&who, Action::ListPatients, p))
        .map(|(p, seen)| {
            let latest: serde_json::Map<String, Value> = vitals_core::PatientId::new(&p)
                .map(|id| app.store.latest(&id))
                .unwrap_or_default()
                .into_iter()
                .map(|l| {
                    let m = app.catalog.get(l.metric);
                    (m.code.to_owned(), json!({"value": l.value, "unit": m.unit, "time": format_time(l.time_ms)}))
                })
                .collect();
            let battery = latest.get("battery_level").and_then(|b| b.get("value")).cloned();
            let alerts = open.iter().filter(|a| a.patient == p).count();
            json!({
                "patient": p, "last_seen": seen.map(format_time),
                "stale": seen.is_none_or(|t| now - t > STALE_MS),
                "open_alerts": alerts, "battery": battery, "latest": latest,
            })
        })
        .collect();
    Json(json!({ "patients": out, "now": format_time(now) }))
}
