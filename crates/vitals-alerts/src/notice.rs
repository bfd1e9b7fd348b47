//! Notices: the messages an alert's life produces (opened, reminder, escalated, resolved,
//! retracted) or an operator event, one per contact and channel, with an idempotency key.
//! Contacts and subscriptions decide who hears of what: a subscription maps patients
//! (or cohorts), severities and rules to contacts and channels, like a topic fanned out to
//! per-user queues, with quiet hours for non-urgent alerts and an escalation chain for
//! urgent ones that stay unacknowledged.
//!
//! Notices are written to the outbox in the same log record as the alert change that made
//! them; the server's notifier delivers them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vitals_core::DurationMs;
use vitals_core::time::{format_time, minute_of_day, utc_offset_minutes};
use vitals_rules::Severity;

use crate::alert::Alert;
use crate::config::NotifyConfig;

/// A way to reach someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Webhook,
    Telegram,
    Email,
    Sms,
    Console,
}

impl Channel {
    pub const ALL: [Channel; 5] = [Channel::Webhook, Channel::Telegram, Channel::Email, Channel::Sms, Channel::Console];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Telegram => "telegram",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Console => "console",
        }
    }
}

/// A person or system that can be notified, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    /// A URL that receives signed JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// A Telegram chat id (a user, group or channel the bot may write to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_chat_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A phone number in E.164 form (`+15551234567`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<String>,
    /// Also write notices to the log.
    #[serde(default)]
    pub console: bool,
}

impl Contact {
    /// Where this contact can be reached on `channel`.
    pub fn address(&self, channel: Channel) -> Option<String> {
        match channel {
            Channel::Webhook => self.webhook.clone(),
            Channel::Telegram => self.telegram_chat_id.clone(),
            Channel::Email => self.email.clone(),
            Channel::Sms => self.sms.clone(),
            Channel::Console => self.console.then(|| "log".to_owned()),
        }
    }
}

/// Who hears of which alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Names the subscription in alerts' escalation state; default `subscription-<n>`.
    #[serde(default)]
    pub name: String,
    /// Notified when an alert opens, resolves or is reminded.
    pub contacts: Vec<String>,
    /// Patients (empty with no cohorts: every patient).
    #[serde(default)]
    pub patients: Vec<String>,
    /// Cohorts whose members are included.
    #[serde(default)]
    pub cohorts: Vec<String>,
    /// Severities (empty: all).
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Rule names (empty: all); `pack.*` matches every rule of a pack.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Channels used (empty: every channel a contact has).
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// `22:00-07:00`: non-urgent notices wait until the end of this local time span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    /// The local time of `quiet_hours` as an offset from UTC, e.g. `+01:00`.
    #[serde(default = "utc")]
    pub utc_offset: String,
    /// Urgent alerts still unacknowledged this long after firing go to the next contact of
    /// `escalation`, and so on down the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<DurationMs>,
    #[serde(default)]
    pub escalation: Vec<String>,
    /// Send the all-clear when an alert resolves.
    #[serde(default = "yes")]
    pub all_clear: bool,
    /// Operator events too (a failed dropped file, a notice given up on).
    #[serde(default)]
    pub operator: bool,
}

impl Default for Subscription {
    fn default() -> Self {
        Self {
            name: String::new(),
            contacts: Vec::new(),
            patients: Vec::new(),
            cohorts: Vec::new(),
            severities: Vec::new(),
            rules: Vec::new(),
            channels: Vec::new(),
            quiet_hours: None,
            utc_offset: utc(),
            escalate_after: None,
            escalation: Vec::new(),
            all_clear: true,
            operator: false,
        }
    }
}

fn utc() -> String {
    "+00:00".into()
}

fn yes() -> bool {
    true
}

impl Subscription {
    pub fn name_or(&self, i: usize) -> String {
        if self.name.is_empty() { format!("subscription-{i}") } else { self.name.clone() }
    }

    /// Whether an alert of this rule, patient and severity is for this subscription.
    pub fn matches(&self, a: &Alert, in_cohort: &dyn Fn(&str, &str) -> bool) -> bool {
        let patient_ok = (self.patients.is_empty() && self.cohorts.is_empty())
            || self.patients.contains(&a.patient)
            || self.cohorts.iter().any(|c| in_cohort(c, &a.patient));
        let severity_ok = self.severities.is_empty() || self.severities.contains(&a.severity);
        let rule_ok = self.rules.is_empty()
            || self.rules.iter().any(|r| match r.strip_suffix(".*") {
                Some(pack) => a.rule.strip_prefix(pack).is_some_and(|rest| rest.starts_with('.')),
                None => *r == a.rule,
            });
        patient_ok && severity_ok && rule_ok
    }

    pub(crate) fn quiet(&self) -> Option<(i64, i64, i64)> {
        let q = self.quiet_hours.as_deref()?;
        let (a, b) = q.split_once('-')?;
        Some((minute_of_day(a)?, minute_of_day(b)?, utc_offset_minutes(&self.utc_offset)?))
    }

    /// When a notice of `severity` made at `now` may go: now, or the end of quiet hours.
    pub fn due(&self, severity: Severity, now: i64) -> i64 {
        if severity == Severity::Urgent {
            return now;
        }
        let Some((from, to, offset)) = self.quiet() else { return now };
        const DAY: i64 = 86_400_000;
        let local = now + offset * 60_000;
        let day_start = local.div_euclid(DAY) * DAY;
        let m = (local - day_start) / 60_000;
        let inside = if from <= to { m >= from && m < to } else { m >= from || m < to };
        if !inside {
            return now;
        }
        // The next `to` after now (local), back to UTC.
        let mut end = day_start + to * 60_000;
        if end <= local {
            end += DAY;
        }
        end - offset * 60_000
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Opened,
    Reminder,
    Escalated,
    Resolved,
    Retracted,
    Operator,
    /// A campaign's message to a patient (`campaign`).
    Campaign,
}

impl NoticeKind {
    fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Opened => "opened",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Escalated => "escalated",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Retracted => "retracted",
            NoticeKind::Operator => "operator",
            NoticeKind::Campaign => "campaign",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeState {
    /// In the outbox, to be delivered at `next_ms`.
    Pending,
    Delivered,
    /// Given up on after the last attempt (or a permanent refusal): listable, replayable.
    Dead,
    /// Not to be sent any more: its recipient withdrew their consent (a campaign's message
    /// still in the outbox). The reason is in `last_error`.
    Withdrawn,
}

impl NoticeState {
    pub fn parse(s: &str) -> Option<NoticeState> {
        Some(match s {
            "pending" => NoticeState::Pending,
            "delivered" => NoticeState::Delivered,
            "dead" => NoticeState::Dead,
            "withdrawn" => NoticeState::Withdrawn,
            _ => return None,
        })
    }
}

/// One message to one contact on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Also the idempotency key receivers see.
    pub id: String,
    pub kind: NoticeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub contact: String,
    pub channel: Channel,
    /// The address at the time the notice was made.
    pub address: String,
    pub severity: Severity,
    pub subject: String,
    pub text: String,
    /// The webhook's JSON body (the alert and the message).
    pub payload: serde_json::Value,
    pub created_ms: i64,
    pub state: NoticeState,
    pub attempts: u32,
    /// Not before this (quiet hours, retry backoff).
    pub next_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<i64>,
}

/// The notice id: a hash of what makes it unique, so a notice made twice (after a crash
/// between deciding and recording) has the same key.
pub fn notice_id(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("nt-{}", &hex::encode(h.finalize())[..16])
}

/// The words of a message about an alert.
pub fn render(a: &Alert, kind: NoticeKind, public_url: &str) -> (String, String) {
    let sev = match a.severity {
        Severity::Urgent => "URGENT",
        Severity::Warning => "Warning",
        Severity::Info => "Info",
    };
    let what = a.description.clone().unwrap_or_else(|| a.expr.clone());
    let values = if a.values.is_empty() {
        String::new()
    } else {
        let v: Vec<String> = a.values.iter().map(|(m, (v, unit))| format!("{m} {v} {unit}")).collect();
        format!(" ({})", v.join(", "))
    };
    let head = match kind {
        NoticeKind::Opened => format!("[{sev}] {} for {}", a.rule, a.patient),
        NoticeKind::Reminder => format!("[{sev}] still open: {} for {}", a.rule, a.patient),
        NoticeKind::Escalated => format!("[{sev}] unacknowledged: {} for {}", a.rule, a.patient),
        NoticeKind::Resolved => format!("[resolved] {} for {}", a.rule, a.patient),
        NoticeKind::Retracted => format!("[withdrawn] {} for {}", a.rule, a.patient),
        NoticeKind::Operator | NoticeKind::Campaign => format!("[operator] {}", a.rule),
    };
    let mut text = match kind {
        NoticeKind::Resolved => format!(
            "{head}: all clear at {} (fired {}).",
            format_time(a.cleared_ms.unwrap_or(a.end_ms)),
            format_time(a.fired_ms)
        ),
        NoticeKind::Retracted => {
            format!("{head}: late readings show the alert of {} did not happen.", format_time(a.fired_ms))
        }
        _ => format!("{head}: {what}{values}, since {}.", format_time(a.start_ms)),
    };
    if !public_url.is_empty() && kind != NoticeKind::Operator {
        text.push_str(&format!(" {}/alerts/{}", public_url.trim_end_matches('/'), a.id));
    }
    (head, text)
}

/// The recipients of a subscription at an escalation level: its contacts, then (for an
/// urgent alert unacknowledged `k * escalate_after`) the first `k` of its chain.
pub fn recipients(s: &Subscription, level: usize) -> Vec<&str> {
    let mut v: Vec<&str> = s.contacts.iter().map(String::as_str).collect();
    v.extend(s.escalation.iter().take(level).map(String::as_str));
    v
}

/// Makes the notices of `kind` for `contacts` (deduplicated by contact and channel).
#[allow(clippy::too_many_arguments)] // reason: a notice needs all of these, named at the call
pub fn make(
    cfg: &NotifyConfig,
    a: &Alert,
    kind: NoticeKind,
    seq: &str,
    sub: &Subscription,
    contacts: &[&str],
    now: i64,
    out: &mut BTreeMap<String, Notice>,
) {
    let (subject, text) = render(a, kind, &cfg.public_url);
    let due = sub.due(a.severity, now);
    for name in contacts {
        let Some(c) = cfg.contacts.iter().find(|c| c.name == *name) else { continue };
        for ch in Channel::ALL {
            if !sub.channels.is_empty() && !sub.channels.contains(&ch) {
                continue;
            }
            let Some(address) = c.address(ch) else { continue };
            let id = notice_id(&[&a.id, kind.as_str(), seq, &c.name, ch.as_str()]);
            if out.contains_key(&id) {
                continue;
            }
            let payload = serde_json::json!({
                "id": id, "kind": kind, "text": text,
                "alert": a.render(),
            });
            out.insert(
                id.clone(),
                Notice {
                    id,
                    kind,
                    alert: Some(a.id.clone()),
                    contact: c.name.clone(),
                    channel: ch,
                    address,
                    severity: a.severity,
                    subject: subject.clone(),
                    text: text.clone(),
                    payload,
                    created_ms: now,
                    state: NoticeState::Pending,
                    attempts: 0,
                    next_ms: due,
                    last_error: None,
                    delivered_ms: None,
                },
            );
        }
    }
}

/// Notices of an operator event to the operator contacts and operator subscriptions.
pub fn operator_notices(cfg: &NotifyConfig, key: &str, subject: &str, text: &str, now: i64) -> Vec<Notice> {
    let mut names: Vec<&str> = cfg.operator_contacts.iter().map(String::as_str).collect();
    for s in cfg.subscriptions.iter().filter(|s| s.operator) {
        names.extend(s.contacts.iter().map(String::as_str));
    }
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let Some(c) = cfg.contacts.iter().find(|c| c.name == name) else { continue };
        for ch in Channel::ALL {
            let Some(address) = c.address(ch) else { continue };
            let id = notice_id(&["operator", key, &c.name, ch.as_str()]);
            out.push(Notice {
                id: id.clone(),
                kind: NoticeKind::Operator,
                alert: None,
                contact: c.name.clone(),
                channel: ch,
                address,
                severity: Severity::Warning,
                subject: format!("[operator] {subject}"),
                text: text.to_owned(),
                payload: serde_json::json!({"id": id, "kind": "operator", "subject": subject, "text": text}),
                created_ms: now,
                state: NoticeState::Pending,
                attempts: 0,
                next_ms: now,
                last_error: None,
                delivered_ms: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(quiet: &str, offset: &str) -> Subscription {
        Subscription { quiet_hours: Some(quiet.into()), utc_offset: offset.into(), ..Default::default() }
    }

    #[test]
    fn quiet_hours_defer_non_urgent_notices_to_their_end_in_local_time() {
        // 2025-11-22T23:30:00Z.
        let t = 1_763_854_200_000;
        let s = sub("22:00-07:00", "+00:00");
        assert_eq!(s.due(Severity::Warning, t), t + 7 * 3_600_000 + 30 * 60_000);
        assert_eq!(s.due(Severity::Urgent, t), t, "urgent notices never wait");
        // In UTC+01:00 it is 00:30, also quiet, until 07:00 local = 06:00Z.
        assert_eq!(sub("22:00-07:00", "+01:00").due(Severity::Info, t), t + 6 * 3_600_000 + 30 * 60_000);
        // A daytime span that does not contain the time.
        assert_eq!(sub("12:00-13:00", "+00:00").due(Severity::Info, t), t);
        assert!(sub("25:00-07:00", "+00:00").quiet().is_none());
        assert!(sub("22:00-07:00", "01:00").quiet().is_none());
    }

    #[test]
    fn subscriptions_match_patients_cohorts_severities_and_rule_packs() {
        let a = Alert {
            rule: "nightscout.low".into(),
            patient: "p-1".into(),
            severity: Severity::Warning,
            ..Alert::default()
        };
        let none = |_: &str, _: &str| false;
        let ward = |c: &str, p: &str| c == "ward" && p == "p-1";
        assert!(Subscription::default().matches(&a, &none));
        let s = Subscription { rules: vec!["nightscout.*".into()], ..Default::default() };
        assert!(s.matches(&a, &none));
        let s = Subscription { rules: vec!["nightscout".into()], ..Default::default() };
        assert!(!s.matches(&a, &none));
        let s = Subscription { severities: vec![Severity::Urgent], ..Default::default() };
        assert!(!s.matches(&a, &none));
        let s = Subscription { cohorts: vec!["ward".into()], ..Default::default() };
        assert!(s.matches(&a, &ward) && !s.matches(&a, &none));
        let s = Subscription { patients: vec!["p-2".into()], ..Default::default() };
        assert!(!s.matches(&a, &none));
    }
}
