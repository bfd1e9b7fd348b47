//! The HTTP client the connectors share: timeouts, bounded answers, and where each vendor
//! is (its public address, or an override: a regional proxy, or a test's local server).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{CloudError, OAuthApp, Vendor};

/// The biggest answer read from a vendor.
const MAX_ANSWER: u64 = 16 << 20;

/// One answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// `Retry-After` in seconds, as milliseconds.
    pub(crate) retry_after_ms: Option<i64>,
}

impl Reply {
    pub(crate) fn json(&self) -> Result<serde_json::Value, CloudError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CloudError::Protocol(format!("HTTP {}: not JSON ({e}): {}", self.status, self.excerpt())))
    }

    /// The start of the body, for error messages.
    pub(crate) fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(200).collect()
    }
}

/// The connectors' HTTP client.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// Vendor name -> base URL used instead of the vendor's public one.
    bases: BTreeMap<String, String>,
    /// The OAuth applications registered with vendors.
    apps: BTreeMap<Vendor, OAuthApp>,
}

impl Client {
    /// A client with `timeout` per request, `bases` overriding vendors' addresses (vendor
    /// name -> base URL) and the OAuth applications registered with vendors.
    pub fn new(timeout: Duration, bases: BTreeMap<String, String>, apps: BTreeMap<Vendor, OAuthApp>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("vitals/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent, bases, apps }
    }

    /// The OAuth application registered with `vendor`, if any.
    pub fn app(&self, vendor: Vendor) -> Result<&OAuthApp, CloudError> {
        self.apps.get(&vendor).ok_or_else(|| {
            CloudError::Credentials(format!(
                "no OAuth application is configured for {} (connections.{}_client_id)",
                vendor.title(),
                vendor.name()
            ))
        })
    }

    /// The override of `vendor`'s address, if any.
    pub(crate) fn base(&self, vendor: Vendor) -> Option<&str> {
        self.bases.get(vendor.name()).map(|b| b.trim_end_matches('/'))
    }

    pub(crate) fn post(
        &self,
        url: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, CloudError> {
        let mut req = self.agent.post(url).header("Content-Type", "application/json");
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send(body), secrets(query))
    }

    /// A form POST (OAuth token requests); `hide`: values kept out of error messages.
    pub(crate) fn post_form(&self, url: &str, fields: &[(&str, &str)], hide: Vec<&str>) -> Result<Reply, CloudError> {
        self.post_form_with(url, &[], fields, hide)
    }

    /// A form POST with `headers`.
    pub(crate) fn post_form_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
        hide: Vec<&str>,
    ) -> Result<Reply, CloudError> {
        let body = serde_urlencoded::to_string(fields).map_err(|e| CloudError::Protocol(e.to_string()))?;
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send(body), hide)
    }

    pub(crate) fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, CloudError> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.call(), Vec::new())
    }
}

/// Query values that must not appear in error messages (session ids).
fn secrets<'a>(query: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    query.iter().filter(|(k, _)| k.to_ascii_lowercase().contains("session")).map(|(_, v)| *v).collect()
}

fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>, hide: Vec<&str>) -> Result<Reply, CloudError> {
    let mut resp = r.map_err(|e| {
        let mut msg = e.to_string();
        for h in hide.iter().filter(|h| !h.is_empty()) {
            msg = msg.replace(h, "<session>");
        }
        CloudError::Unavailable(msg)
    })?;
    let status = resp.status().as_u16();
    let retry_after_ms = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(|s| s.saturating_mul(1000));
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| CloudError::Unavailable(format!("HTTP {status}: reading the answer: {e}")))?;
    Ok(Reply { status, body, retry_after_ms })
}
