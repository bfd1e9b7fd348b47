//! The `[notify]` section: channels, contacts and who hears of what, and its checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vitals_core::DurationMs;

use crate::notice::{Channel, Contact, Subscription};

/// Notifications: channels, contacts and who hears of what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Delivery attempts of a notice before it goes to the dead-letter list.
    pub max_attempts: u32,
    /// The first retry waits this long; each next one twice as long, up to `retry_max_backoff`.
    pub retry_backoff: DurationMs,
    pub retry_max_backoff: DurationMs,
    /// Time limit of one delivery attempt.
    pub timeout: DurationMs,
    /// Contacts that hear of operator events (a dropped file that failed, a notice that
    /// went to the dead-letter list).
    pub operator_contacts: Vec<String>,
    /// A link to the dashboard put in messages; empty: none.
    pub public_url: String,
    /// Webhooks are signed with HMAC-SHA256 of this key (header `X-Vitals-Signature`).
    pub webhook_secret: String,
    /// Telegram Bot API: the bot's token and the API's base URL.
    pub telegram_bot_token: String,
    pub telegram_api_base: String,
    /// SMTP: server, port, `starttls` | `tls` | `none`, credentials, sender, and a PEM file
    /// of extra CA certificates (for a private mail server); empty: the system's roots.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: String,
    pub smtp_username: String,
    pub smtp_password: String,
    pub smtp_from: String,
    pub smtp_ca_file: PathBuf,
    /// SMS through a Twilio-compatible gateway: the Messages URL (e.g.
    /// `https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json`), the account's
    /// credentials (HTTP Basic) and the sending number.
    pub sms_url: String,
    pub sms_account_sid: String,
    pub sms_auth_token: String,
    pub sms_from: String,
    pub contacts: Vec<Contact>,
    pub subscriptions: Vec<Subscription>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_backoff: DurationMs(5_000),
            retry_max_backoff: DurationMs(10 * 60_000),
            timeout: DurationMs(10_000),
            operator_contacts: Vec::new(),
            public_url: String::new(),
            webhook_secret: String::new(),
            telegram_bot_token: String::new(),
            telegram_api_base: "https://api.telegram.org".into(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_from: "vitals@localhost".into(),
            smtp_ca_file: PathBuf::new(),
            sms_url: String::new(),
            sms_account_sid: String::new(),
            sms_auth_token: String::new(),
            sms_from: String::new(),
            contacts: Vec::new(),
            subscriptions: Vec::new(),
        }
    }
}

/// Problems of the `[notify]` section, each naming the option. (The syntax of email
/// addresses is checked by the server's email transport, which parses them.)
pub fn check_config(n: &NotifyConfig) -> Vec<String> {
    let mut v = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for c in &n.contacts {
        if c.name.is_empty() || !names.insert(c.name.as_str()) {
            v.push(format!("notify.contacts: {:?} is empty or defined twice", c.name));
        }
        if Channel::ALL.iter().all(|ch| c.address(*ch).is_none()) {
            v.push(format!(
                "notify.contacts {:?}: no way to reach it (webhook, telegram_chat_id, email, sms, console)",
                c.name
            ));
        }
        if c.webhook.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            v.push(format!("notify.contacts {:?}: webhook must be an http(s) URL", c.name));
        }
        if c.sms
            .as_deref()
            .is_some_and(|s| !(s.starts_with('+') && s.len() > 4 && s[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            v.push(format!("notify.contacts {:?}: sms must be a number like +15551234567", c.name));
        }
        if c.telegram_chat_id.is_some() && n.telegram_bot_token.is_empty() {
            v.push(format!("notify.contacts {:?}: telegram needs notify.telegram_bot_token", c.name));
        }
        if c.email.is_some() && n.smtp_host.is_empty() {
            v.push(format!("notify.contacts {:?}: email needs notify.smtp_host", c.name));
        }
        if c.sms.is_some() && n.sms_url.is_empty() {
            v.push(format!("notify.contacts {:?}: sms needs notify.sms_url", c.name));
        }
    }
    let known = |c: &String| names.contains(c.as_str());
    for (i, s) in n.subscriptions.iter().enumerate() {
        let name = s.name_or(i);
        for c in s.contacts.iter().chain(&s.escalation) {
            if !known(c) {
                v.push(format!("notify.subscriptions {name:?}: no contact {c:?}"));
            }
        }
        if s.quiet_hours.is_some() && s.quiet().is_none() {
            v.push(format!(
                "notify.subscriptions {name:?}: quiet_hours like \"22:00-07:00\" and utc_offset like \"+01:00\""
            ));
        }
        if !s.escalation.is_empty() && s.escalate_after.is_none() {
            v.push(format!("notify.subscriptions {name:?}: escalation needs escalate_after"));
        }
    }
    for c in &n.operator_contacts {
        if !known(c) {
            v.push(format!("notify.operator_contacts: no contact {c:?}"));
        }
    }
    if !matches!(n.smtp_security.as_str(), "starttls" | "tls" | "none") {
        v.push("notify.smtp_security: starttls, tls or none".into());
    }
    if n.max_attempts == 0 {
        v.push("notify.max_attempts must be positive".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_config_problems_name_the_option() {
        let c = |name: &str| Contact { name: name.into(), ..Contact::default() };
        let cfg = NotifyConfig {
            contacts: vec![
                Contact { telegram_chat_id: Some("1".into()), ..c("tg") },
                Contact { email: Some("ann@example.org".into()), ..c("mail") },
                Contact { sms: Some("555-1234".into()), ..c("phone") },
                Contact { webhook: Some("ftp://x".into()), ..c("hook") },
                c("nowhere"),
                Contact { console: true, ..c("tg") },
            ],
            subscriptions: vec![Subscription {
                contacts: vec!["ghost".into()],
                escalation: vec!["tg".into()],
                quiet_hours: Some("late".into()),
                ..Subscription::default()
            }],
            operator_contacts: vec!["nobody".into()],
            smtp_security: "ssl".into(),
            max_attempts: 0,
            ..NotifyConfig::default()
        };
        let all = check_config(&cfg).join("\n");
        for want in [
            "\"tg\": telegram needs notify.telegram_bot_token",
            "\"tg\" is empty or defined twice",
            "\"mail\": email needs notify.smtp_host",
            "\"phone\": sms must be a number like +15551234567",
            "\"hook\": webhook must be an http(s) URL",
            "\"nowhere\": no way to reach it",
            "\"subscription-0\": no contact \"ghost\"",
            "\"subscription-0\": quiet_hours like",
            "\"subscription-0\": escalation needs escalate_after",
            "notify.operator_contacts: no contact \"nobody\"",
            "notify.smtp_security: starttls, tls or none",
            "notify.max_attempts must be positive",
        ] {
            assert!(all.contains(want), "{want:?} not in\n{all}");
        }
        assert!(check_config(&NotifyConfig::default()).is_empty());
    }
}
