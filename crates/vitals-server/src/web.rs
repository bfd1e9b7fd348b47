//! The web dashboard's files: static assets compiled into the binary (nothing is
//! downloaded at run time), served with a strict Content-Security-Policy and an ETag each.
//! (The endpoints the dashboard reads are in `crate::api::dashboard_api`.)
//!
//! The app shell (`/`, `/assets/*`) holds no data and needs no credentials; everything it
//! shows comes from the authenticated API with the session cookie.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The assets, by the name they are served under.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../web/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../web/app.css")),
    ("charts.js", "text/javascript; charset=utf-8", include_bytes!("../web/charts.js")),
    ("campaigns.js", "text/javascript; charset=utf-8", include_bytes!("../web/campaigns.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("../web/icon.svg")),
    // Vendored npm packages (pinned in web/package-lock.json; scripts/web-vendor).
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../web/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../web/vendor/uPlot.min.css")),
];
const INDEX: &[u8] = include_bytes!("../web/index.html");

/// Scripts, styles, images and requests from this origin only; no inline code, no frames.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A strong validator of an embedded file: the start of its SHA-256, quoted.
fn etag(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("\"{}\"", hex::encode(&sha2::Sha256::digest(bytes)[..12]))
}

/// The validators of the shell and of every asset, computed once.
fn etags() -> &'static (String, Vec<String>) {
    static ETAGS: std::sync::OnceLock<(String, Vec<String>)> = std::sync::OnceLock::new();
    ETAGS.get_or_init(|| (etag(INDEX), ASSETS.iter().map(|(_, _, b)| etag(b)).collect()))
}

/// An embedded file, or 304 when the browser already holds this version (`no-cache`: it
/// asks every time, and gets the body only after an upgrade changed it).
fn embedded(headers: &HeaderMap, ctype: &'static str, tag: &str, bytes: &'static [u8]) -> Response {
    let tag_value = HeaderValue::from_str(tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(header::ETAG, tag_value);
    secured(r)
}

/// The app shell.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    embedded(&headers, "text/html; charset=utf-8", &etags().0, INDEX)
}

/// One embedded asset.
pub(crate) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|(n, _, _)| *n == name) {
        Some(i) => embedded(&headers, ASSETS[i].1, &etags().1[i], ASSETS[i].2),
        None => secured((StatusCode::NOT_FOUND, "no such asset").into_response()),
    }
}
