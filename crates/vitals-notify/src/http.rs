//! The HTTP channels: webhooks (signed JSON), the Telegram Bot API (`sendMessage`) and SMS
//! through a Twilio-compatible gateway (a form POST with HTTP Basic credentials).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use vitals_alerts::{Notice, NotifyConfig, SendError, Transport};

type Response = ureq::http::Response<ureq::Body>;

/// Seconds a `Retry-After` header asks for.
fn retry_after_ms(r: &Response) -> Option<i64> {
    r.headers().get("retry-after")?.to_str().ok()?.trim().parse::<i64>().ok().map(|s| s.max(0) * 1000)
}

/// 2xx: done; 408, 429 and 5xx: try again; other statuses: the request itself is refused.
fn outcome(what: &str, r: Result<Response, ureq::Error>) -> Result<String, SendError> {
    let mut r = r.map_err(|e| SendError::transient(format!("{what}: {e}")))?;
    let status = r.status().as_u16();
    let retry = retry_after_ms(&r);
    let body = r.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
    let short: String = body.chars().take(300).collect();
    match status {
        200..=299 => Ok(body),
        408 | 429 | 500..=599 => Err(SendError {
            permanent: false,
            retry_after_ms: retry,
            message: format!("{what}: HTTP {status}: {short}"),
        }),
        _ => Err(SendError::permanent(format!("{what}: HTTP {status}: {short}"))),
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub(crate) fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("invariant: HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Webhooks: the notice's JSON, signed when `notify.webhook_secret` is set.
pub(crate) struct Webhook {
    http: ureq::Agent,
    secret: String,
}

impl Webhook {
    pub(crate) fn new(http: ureq::Agent, cfg: &NotifyConfig) -> Webhook {
        Webhook { http, secret: cfg.webhook_secret.clone() }
    }
}

impl Transport for Webhook {
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        webhook(&self.http, &self.secret, n)
    }
}

fn webhook(http: &ureq::Agent, secret: &str, n: &Notice) -> Result<(), SendError> {
    let body = serde_json::to_vec(&n.payload).map_err(|e| SendError::permanent(e.to_string()))?;
    let ts = n.created_ms.div_euclid(1000);
    let mut req = http
        .post(&n.address)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &n.id)
        .header(
            "X-Vitals-Event",
            serde_json::to_value(n.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        )
        .header("X-Vitals-Timestamp", ts.to_string());
    if !secret.is_empty() {
        req = req.header("X-Vitals-Signature", signature(secret, ts, &body));
    }
    outcome("webhook", req.send(&body[..])).map(|_| ())
}

/// The Telegram Bot API's `sendMessage`.
pub(crate) struct Telegram {
    http: ureq::Agent,
    config: NotifyConfig,
}

impl Telegram {
    pub(crate) fn new(http: ureq::Agent, cfg: &NotifyConfig) -> Telegram {
        Telegram { http, config: cfg.clone() }
    }
}

impl Transport for Telegram {
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        telegram(&self.http, &self.config, n)
    }
}

fn telegram(http: &ureq::Agent, cfg: &NotifyConfig, n: &Notice) -> Result<(), SendError> {
    let url = format!("{}/bot{}/sendMessage", cfg.telegram_api_base.trim_end_matches('/'), cfg.telegram_bot_token);
    let body = serde_json::json!({
        "chat_id": n.address,
        "text": n.text,
        // Informational notices arrive silently.
        "disable_notification": n.severity == vitals_rules::Severity::Info,
    });
    let r = http.post(&url).header("Content-Type", "application/json").send(body.to_string());
    // The token is part of the URL: never put it in an error message.
    let r = r
        .map_err(|e| ureq::Error::Io(std::io::Error::other(e.to_string().replace(&cfg.telegram_bot_token, "<token>"))));
    match outcome("telegram", r) {
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["ok"] == true { Ok(()) } else { Err(SendError::transient(format!("telegram: not ok: {body}"))) }
        }
        Err(mut e) => {
            // Telegram says how long to wait in the body of a 429.
            if e.retry_after_ms.is_none()
                && let Some(s) = e.message.split("\"retry_after\":").nth(1)
            {
                e.retry_after_ms = s
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|d| d.parse::<i64>().ok())
                    .map(|s| s * 1000);
            }
            Err(e)
        }
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// SMS through a Twilio-compatible gateway.
pub(crate) struct Sms {
    http: ureq::Agent,
    config: NotifyConfig,
}

impl Sms {
    pub(crate) fn new(http: ureq::Agent, cfg: &NotifyConfig) -> Sms {
        Sms { http, config: cfg.clone() }
    }
}

impl Transport for Sms {
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        sms(&self.http, &self.config, n)
    }
}

fn sms(http: &ureq::Agent, cfg: &NotifyConfig, n: &Notice) -> Result<(), SendError> {
    // SMS is short: the first line of the message (1600 characters at most, Twilio's limit).
    let text: String = n.text.chars().take(1600).collect();
    let body = form_encode(&[("To", &n.address), ("From", &cfg.sms_from), ("Body", &text)]);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cfg.sms_account_sid, cfg.sms_auth_token));
    let r = http
        .post(&cfg.sms_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", format!("Basic {basic}"))
        .header("I-Twilio-Idempotency-Token", &n.id)
        .send(body);
    outcome("sms", r).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_are_hmac_sha256_of_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature("key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(form_encode(&[("To", "+1555"), ("Body", "a b&c=é")]), "To=%2B1555&Body=a+b%26c%3D%C3%A9");
    }
}
