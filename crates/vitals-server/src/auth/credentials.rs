//! How clients present credentials, and finding the principal behind them: a bearer token
//! or a dashboard session cookie, InfluxDB clients' forms, Nightscout uploaders' forms, and
//! a device's client certificate (mTLS) when nothing else was presented.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderMap, Uri, header};
use base64::Engine as _;

use super::{Directory, Principal};

/// The session cookie's name.
pub const COOKIE: &str = "vitals_session";

/// How a route's clients present credentials (and expect refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>` or a dashboard session cookie.
    Bearer,
    /// InfluxDB clients (token, basic auth, `u`/`p` query).
    Influx,
    /// Nightscout uploaders (`api-secret`, `token`, `secret`).
    Nightscout,
}

/// The principal of a request's credentials in `style`; a device's verified client
/// certificate (its SHA-256, hex) when no other credentials were presented.
pub fn authenticate(
    directory: &Directory,
    style: Credentials,
    headers: &HeaderMap,
    uri: &Uri,
    client_cert_sha256: Option<&str>,
    now: i64,
) -> Option<Principal> {
    let presented = match style {
        Credentials::Bearer => bearer_or_session(directory, headers, now),
        Credentials::Influx => influx_token(headers, uri).and_then(|t| directory.authenticate(&t, now)),
        Credentials::Nightscout => nightscout(directory, headers, uri, now),
    };
    presented.or_else(|| directory.authenticate_cert(client_cert_sha256?, now))
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The principal of a bearer token or, failing that, of a session cookie.
fn bearer_or_session(directory: &Directory, headers: &HeaderMap, now: i64) -> Option<Principal> {
    if let Some(t) = bearer(headers) {
        return directory.authenticate(t, now);
    }
    session_cookie(headers).and_then(|c| directory.authenticate_session(c, now))
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    q.get(key).cloned()
}

/// The Vitals token in any of the ways InfluxDB clients send credentials: the password of
/// HTTP Basic, of `u`/`p`, or of `Authorization: Token user:password`; `Token <token>` and
/// `Bearer <token>` too.
pub fn influx_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let auth = auth.trim();
        if let Some(t) = auth.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
        if let Some(t) = auth.strip_prefix("Token ") {
            let t = t.trim();
            return Some(t.split_once(':').map(|(_, p)| p).unwrap_or(t).to_owned());
        }
        if let Some(b) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text.split_once(':').map(|(_, p)| p.to_owned());
        }
    }
    query_param(uri, "p")
}

/// As Nightscout clients authenticate: `api-secret` (the token or its SHA-1), a bearer
/// token, `token`/`secret` query parameters, or the access token of the token exchange
/// (`.../api/v2/authorization/request/<token>`).
fn nightscout(d: &Directory, headers: &HeaderMap, uri: &Uri, now: i64) -> Option<Principal> {
    if let Some((_, token)) = uri.path().rsplit_once("/api/v2/authorization/request/")
        && !token.contains('/')
        && let Some(p) = d.authenticate(token, now)
    {
        return Some(p);
    }
    if let Some(secret) = headers.get("api-secret").and_then(|v| v.to_str().ok()) {
        let s = secret.trim();
        let p = if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            d.authenticate_sha1(s, now)
        } else {
            d.authenticate(s, now)
        };
        if p.is_some() {
            return p;
        }
    }
    if let Some(b) = bearer(headers)
        && let Some(p) = d.authenticate(b, now)
    {
        return Some(p);
    }
    if let Some(p) = query_param(uri, "token").and_then(|t| d.authenticate(&t, now)) {
        return Some(p);
    }
    query_param(uri, "secret").and_then(|t| d.authenticate_sha1(&t, now))
}
