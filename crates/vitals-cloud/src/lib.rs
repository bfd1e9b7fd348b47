//! Vendor clouds as ways in: Vitals signs in to a patient's account at a vendor with the
//! credentials the patient (or their clinic) gave, and pulls what the vendor holds.
//!
//! One file per connector holds both halves of it: the requests (the vendor's sign-in,
//! session renewal, the reads, and what each of its error answers means) and the decoder
//! of what it answers (vendor JSON -> samples through the [`Validator`], like every other
//! way in, so refused items get positions and reasons and the raw answer can be kept as a
//! dead letter). The caller keeps the [`Credentials`] sealed, stores what [`decode`] gives,
//! and only then advances the connection's cursor; [`next_attempt`] says when to try again
//! (backoff on failures, a pause when the vendor refuses the credentials).

mod dexcom_share;
mod http;
mod librelinkup;
mod oauth;
mod oura;
mod withings;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vitals_core::{DurationMs, RawSample, RawTime, Source, Validator};
use vitals_ingest::Batch;

pub use http::Client;
pub use oauth::{OAuthApp, authorize_url, exchange, revoke};

/// The `[connections]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Pull the connected vendor accounts (off: connections are kept but not read).
    pub enabled: bool,
    /// How long one request to a vendor may take.
    pub timeout: DurationMs,
    /// Where users reach Vitals (`https://vitals.example.org`): OAuth vendors send them back
    /// to `<public_url>/`, the address registered with the vendor as the redirect URI.
    pub public_url: String,
    /// The OAuth application registered with Oura (cloud.ouraring.com/oauth/applications).
    pub oura_client_id: String,
    /// Prefer `VITALS_CONNECTIONS_OURA_CLIENT_SECRET` over writing it here.
    pub oura_client_secret: String,
    /// The OAuth application registered with Withings (developer.withings.com).
    pub withings_client_id: String,
    /// Prefer `VITALS_CONNECTIONS_WITHINGS_CLIENT_SECRET` over writing it here.
    pub withings_client_secret: String,
    /// Vendor name -> base URL used instead of the vendor's public address (a proxy, a
    /// test's local server).
    pub endpoints: BTreeMap<String, String>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            enabled: true,
            timeout: DurationMs(30_000),
            public_url: String::new(),
            oura_client_id: String::new(),
            oura_client_secret: String::new(),
            withings_client_id: String::new(),
            withings_client_secret: String::new(),
            endpoints: BTreeMap::new(),
        }
    }
}

impl ConnectionsConfig {
    /// The client these settings make.
    pub fn client(&self) -> Client {
        let timeout = std::time::Duration::from_millis(u64::try_from(self.timeout.0).unwrap_or(30_000));
        let mut apps = BTreeMap::new();
        for (vendor, id, secret) in [
            (Vendor::Oura, &self.oura_client_id, &self.oura_client_secret),
            (Vendor::Withings, &self.withings_client_id, &self.withings_client_secret),
        ] {
            if !id.is_empty() {
                let redirect_uri = format!("{}/", self.public_url.trim_end_matches('/'));
                apps.insert(vendor, OAuthApp { client_id: id.clone(), client_secret: secret.clone(), redirect_uri });
            }
        }
        Client::new(timeout, self.endpoints.clone(), apps)
    }

    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, url) in &self.endpoints {
            if Vendor::parse(name).is_none() {
                p.push(format!("connections.endpoints: no vendor {name:?}"));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push(format!("connections.endpoints.{name}: {url:?} is not an http(s) URL"));
            }
        }
        for (name, id, secret) in [
            ("oura", &self.oura_client_id, &self.oura_client_secret),
            ("withings", &self.withings_client_id, &self.withings_client_secret),
        ] {
            if !id.is_empty() && (secret.is_empty() || self.public_url.is_empty()) {
                p.push(format!("connections.{name}_client_id needs {name}_client_secret and public_url"));
            }
        }
        if !self.public_url.is_empty()
            && !self.public_url.starts_with("https://")
            && !self.public_url.starts_with("http://")
        {
            p.push(format!("connections.public_url {:?} is not an http(s) URL", self.public_url));
        }
        if self.timeout.0 < 1000 {
            p.push("connections.timeout must be at least 1s".into());
        }
        p
    }
}

/// The vendor clouds Vitals connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Vendor {
    /// Dexcom Share: the CGM owner's (publisher's) account, as follower apps read it.
    #[serde(rename = "dexcom-share")]
    DexcomShare,
    /// Abbott's LibreLinkUp: a follower account that a FreeStyle Libre user shares with.
    #[serde(rename = "librelinkup")]
    LibreLinkUp,
    /// The Oura ring (API v2): connected with OAuth 2.0 by the ring's owner.
    #[serde(rename = "oura")]
    Oura,
    /// Withings (scales, blood-pressure monitors, thermometers): OAuth 2.0.
    #[serde(rename = "withings")]
    Withings,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [Vendor::DexcomShare, Vendor::LibreLinkUp, Vendor::Oura, Vendor::Withings];

    /// The stable name (URLs, the connection store, dead letters).
    pub fn name(self) -> &'static str {
        match self {
            Vendor::DexcomShare => "dexcom-share",
            Vendor::LibreLinkUp => "librelinkup",
            Vendor::Oura => "oura",
            Vendor::Withings => "withings",
        }
    }

    pub fn parse(name: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.name() == name)
    }

    /// What people call it.
    pub fn title(self) -> &'static str {
        match self {
            Vendor::DexcomShare => "Dexcom Share",
            Vendor::LibreLinkUp => "LibreLinkUp",
            Vendor::Oura => "Oura",
            Vendor::Withings => "Withings",
        }
    }

    /// The adapter its samples are recorded as having come through.
    pub fn source(self) -> Source {
        match self {
            Vendor::DexcomShare => Source::DexcomShare,
            Vendor::LibreLinkUp => Source::LibreLinkUp,
            Vendor::Oura => Source::Oura,
            Vendor::Withings => Source::Withings,
        }
    }

    /// How often a healthy connection is read: as often as the vendor's own follower
    /// apps do (a Dexcom reading every 5 minutes; Libre 3 every minute).
    pub fn poll_interval_ms(self) -> i64 {
        match self {
            Vendor::DexcomShare => 150_000,
            Vendor::LibreLinkUp => 60_000,
            // The ring syncs when its app opens; Oura asks clients not to poll hard.
            Vendor::Oura => 30 * 60_000,
            // Measurements arrive a few times a day.
            Vendor::Withings => 30 * 60_000,
        }
    }

    /// The regions a connection may name (empty: the vendor's default).
    pub fn regions(self) -> &'static [&'static str] {
        match self {
            Vendor::DexcomShare => dexcom_share::REGIONS,
            Vendor::LibreLinkUp => librelinkup::REGIONS,
            Vendor::Oura | Vendor::Withings => &[],
        }
    }

    /// Whether the user connects it through the vendor's OAuth 2.0 sign-in (no password
    /// reaches Vitals) rather than by giving credentials.
    pub fn oauth(self) -> bool {
        matches!(self, Vendor::Oura | Vendor::Withings)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What signs in to a vendor: given by the user, kept sealed by the caller. The
/// connector also keeps here what it learns between pulls (a session, the account's id),
/// so that it does not sign in again on every pull: vendors lock accounts that do.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Dexcom Share: `us` (default), `ous` (outside the US) or `jp`. LibreLinkUp: empty (the
    /// service redirects to the account's region), or `eu`, `us`, `de`, `fr`, `jp`, `ap`,
    /// `au`, `ae`, `ca`, `la`, `eu2`.
    #[serde(default)]
    pub region: String,
    /// LibreLinkUp: the patient id of the followed person among the account's
    /// connections; empty: the first (learned at the first pull).
    #[serde(default)]
    pub follow: String,
    /// The vendor's session id or token, while it lasts.
    #[serde(default)]
    pub session: String,
    /// The vendor's id of the account (Dexcom's account id, LibreLinkUp's user id).
    #[serde(default)]
    pub account: String,
    /// OAuth vendors: the tokens the vendor granted, and when the access token expires.
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: String,
    #[serde(default)]
    pub expires_at_ms: i64,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("region", &self.region)
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// What is wrong with them for `vendor`, before anything is sent.
    pub fn problems(&self, vendor: Vendor) -> Option<String> {
        if vendor.oauth() {
            return Some(format!(
                "{} is connected through its own sign-in: POST .../connections/{vendor}/authorize",
                vendor.title()
            ));
        }
        if self.username.trim().is_empty() || self.password.is_empty() {
            return Some("username and password are required".into());
        }
        if !self.region.is_empty() && !vendor.regions().contains(&self.region.as_str()) {
            return Some(format!("region {:?}: one of {}", self.region, vendor.regions().join(", ")));
        }
        if !self.follow.is_empty() && !self.follow.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some("follow must be a LibreLinkUp patient id (letters, digits, -)".into());
        }
        None
    }
}

/// Why a pull failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The vendor refused the account or needs the user (wrong password, terms to
    /// accept): nothing is tried again until the credentials change.
    #[error("{0}")]
    Credentials(String),
    /// Too many requests: try again after `retry_after_ms` (the vendor's, or a default).
    #[error("the vendor asks to slow down{}", retry_after_ms.map(|ms| format!(" (retry after {} s)", ms / 1000)).unwrap_or_default())]
    RateLimited { retry_after_ms: Option<i64> },
    /// The vendor could not be reached or failed: tried again with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// The vendor answered something this connector does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// Reads what the vendor holds for the account: the raw answers that carry readings, to
/// be decoded with [`decode`]. `since_ms` is the newest reading already stored (the
/// cursor); a connector reads from a little before it, never less than it needs. May
/// change `creds` (a new session): the caller seals and keeps them again if so.
pub fn pull(
    client: &Client,
    vendor: Vendor,
    creds: &mut Credentials,
    since_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Vec<u8>>, CloudError> {
    match vendor {
        Vendor::DexcomShare => dexcom_share::pull(client, creds, since_ms, now_ms),
        Vendor::LibreLinkUp => librelinkup::pull(client, creds),
        Vendor::Oura => oura::pull(client, creds, since_ms, now_ms),
        Vendor::Withings => withings::pull(client, creds, since_ms, now_ms),
    }
}

/// Decodes one answer of [`pull`] into samples of `patient`. `Err`: nothing of it could
/// be read (the whole answer is refused).
pub fn decode(vendor: Vendor, body: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Batch, String> {
    match vendor {
        Vendor::DexcomShare => dexcom_share::decode(body, patient, v),
        Vendor::LibreLinkUp => librelinkup::decode(body, patient, v),
        Vendor::Oura => oura::decode(body, patient, v),
        Vendor::Withings => withings::decode(body, patient, v),
    }
}

/// Validates one reading of `patient` from `device` (`metric` in `unit`) into `batch`.
pub(crate) fn push_reading(
    batch: &mut Batch,
    v: &mut Validator<'_>,
    index: usize,
    (patient, device): (&str, &str),
    (metric, unit): (&str, &str),
    time: RawTime<'_>,
    value: f64,
) {
    let raw = RawSample {
        patient: patient.into(),
        metric: metric.into(),
        time,
        value,
        unit: Some(unit.into()),
        device: Some(device.into()),
        id: None,
    };
    batch.push(v, index, &raw);
}

/// How long a connection waits after the vendor asked to slow down without saying.
const RATE_LIMIT_WAIT_MS: i64 = 15 * 60_000;
/// The longest wait between failed pulls.
const MAX_BACKOFF_MS: i64 = 60 * 60_000;

/// When to pull again after an attempt that ended with `outcome`, `failures` failures in a
/// row now (0 after a success); `None`: paused until the user acts (credentials refused).
pub fn next_attempt(vendor: Vendor, now_ms: i64, outcome: Result<(), &CloudError>, failures: u32) -> Option<i64> {
    let poll = vendor.poll_interval_ms();
    match outcome {
        Ok(()) => Some(now_ms + poll),
        Err(CloudError::Credentials(_)) => None,
        Err(CloudError::RateLimited { retry_after_ms }) => {
            Some(now_ms + retry_after_ms.unwrap_or(RATE_LIMIT_WAIT_MS).clamp(poll, 24 * MAX_BACKOFF_MS))
        }
        Err(CloudError::Unavailable(_) | CloudError::Protocol(_)) => {
            let factor = 1i64 << failures.saturating_sub(1).min(20);
            Some(now_ms + poll.saturating_mul(factor).min(MAX_BACKOFF_MS))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_names_read_back_and_match_their_serde_names() {
        for v in Vendor::ALL {
            assert_eq!(Vendor::parse(v.name()), Some(v));
            assert_eq!(serde_json::to_value(v).expect("json"), serde_json::json!(v.name()));
            assert!(v.source().name().is_some());
        }
        assert_eq!(Vendor::parse("polar"), None);
    }

    #[test]
    fn failures_back_off_doubling_to_an_hour_and_refused_credentials_pause() {
        let v = Vendor::DexcomShare;
        let unavailable = CloudError::Unavailable("HTTP 503".into());
        assert_eq!(next_attempt(v, 0, Ok(()), 0), Some(150_000));
        assert_eq!(next_attempt(v, 0, Err(&unavailable), 1), Some(150_000));
        assert_eq!(next_attempt(v, 0, Err(&unavailable), 2), Some(300_000));
        assert_eq!(next_attempt(v, 0, Err(&unavailable), 3), Some(600_000));
        assert_eq!(next_attempt(v, 0, Err(&unavailable), 60), Some(MAX_BACKOFF_MS));
        assert_eq!(next_attempt(v, 0, Err(&CloudError::Credentials("no".into())), 1), None);
        let limited = CloudError::RateLimited { retry_after_ms: Some(1_000) };
        assert_eq!(next_attempt(v, 0, Err(&limited), 1), Some(150_000), "never sooner than the poll interval");
        let limited = CloudError::RateLimited { retry_after_ms: None };
        assert_eq!(next_attempt(v, 0, Err(&limited), 1), Some(RATE_LIMIT_WAIT_MS));
    }

    #[test]
    fn connection_settings_name_what_is_wrong() {
        let mut cfg = ConnectionsConfig::default();
        assert!(cfg.problems().is_empty());
        cfg.endpoints.insert("polar".into(), "ftp://x".into());
        cfg.oura_client_id = "id".into();
        cfg.public_url = "vitals.example.org".into();
        cfg.timeout = DurationMs(10);
        let p = cfg.problems().join("\n");
        for want in ["no vendor \"polar\"", "not an http(s) URL", "oura_client_id needs", "public_url", "at least 1s"] {
            assert!(p.contains(want), "{want:?} in {p}");
        }
        cfg.oura_client_secret = "s".into();
        cfg.public_url = "https://vitals.example.org/".into();
        let client = ConnectionsConfig { endpoints: BTreeMap::new(), timeout: DurationMs(1000), ..cfg }.client();
        assert_eq!(client.app(Vendor::Oura).expect("app").redirect_uri, "https://vitals.example.org/");
        assert!(matches!(client.app(Vendor::Withings), Err(CloudError::Credentials(_))));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c =
            Credentials { username: "ann@example.org".into(), password: "hunter2".into(), ..Credentials::default() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("ann@") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(c.problems(Vendor::DexcomShare), None);
        let bad = Credentials { region: "mars".into(), ..c.clone() };
        assert!(bad.problems(Vendor::DexcomShare).expect("refused").contains("us, ous, jp"));
        let bad = Credentials { follow: "../x".into(), ..c };
        assert!(bad.problems(Vendor::LibreLinkUp).is_some());
    }
}
