//! Delivering notices: the [`Transport`] every channel implements, and the outbox's policy
//! after each attempt (delivered, retried after a backoff, or dead and reported to the
//! operators).

use crate::config::NotifyConfig;
use crate::notice::{Notice, NoticeKind, NoticeState, operator_notices};

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    /// Trying again will not help (the receiver refused the request itself).
    pub permanent: bool,
    /// The receiver asked to wait this long.
    pub retry_after_ms: Option<i64>,
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { permanent: false, retry_after_ms: None, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { permanent: true, retry_after_ms: None, message: message.into() }
    }
}

/// A way to deliver notices (webhook, Telegram, email, SMS, the log). One call is one
/// attempt; the outbox decides what happens after it ([`after_attempt`]).
pub trait Transport: Send + Sync {
    fn send(&self, notice: &Notice) -> Result<(), SendError>;
}

/// The wait before attempt `attempts + 1` (after `attempts` failures).
pub fn backoff_ms(cfg: &NotifyConfig, attempts: u32) -> i64 {
    let base = cfg.retry_backoff.as_ms().max(1);
    let shift = attempts.saturating_sub(1).min(30);
    base.saturating_mul(1i64 << shift).min(cfg.retry_max_backoff.as_ms().max(base))
}

/// The notice after an attempt's outcome.
pub fn after_attempt(cfg: &NotifyConfig, n: &Notice, outcome: &Result<(), SendError>, now: i64) -> Notice {
    let attempts = n.attempts + 1;
    match outcome {
        Ok(()) => {
            Notice { state: NoticeState::Delivered, attempts, delivered_ms: Some(now), last_error: None, ..n.clone() }
        }
        Err(e) if e.permanent || attempts >= cfg.max_attempts => {
            Notice { state: NoticeState::Dead, attempts, last_error: Some(e.message.clone()), ..n.clone() }
        }
        Err(e) => {
            let wait = backoff_ms(cfg, attempts).max(e.retry_after_ms.unwrap_or(0));
            Notice { attempts, next_ms: now + wait, last_error: Some(e.message.clone()), ..n.clone() }
        }
    }
}

/// The operator notices about a notice given up on (`dead`, the version after its last
/// attempt); none about an operator notice itself, so failures cannot feed each other.
pub fn given_up(cfg: &NotifyConfig, dead: &Notice, error: &str, now: i64) -> Vec<Notice> {
    if dead.kind == NoticeKind::Operator {
        return Vec::new();
    }
    let id = &dead.id;
    operator_notices(
        cfg,
        &format!("dead:{id}"),
        "a notice could not be delivered",
        &format!(
            "Notice {id} ({} to {} by {}) failed {} times: {error}. Replay it with `vitals admin notifications replay {id}` once fixed.",
            dead.subject,
            dead.contact,
            dead.channel.as_str(),
            dead.attempts,
        ),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::Channel;
    use vitals_core::DurationMs;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_the_last_attempt_is_dead() {
        let cfg = NotifyConfig {
            retry_backoff: DurationMs(1_000),
            retry_max_backoff: DurationMs(5_000),
            max_attempts: 4,
            ..NotifyConfig::default()
        };
        let waits: Vec<i64> = (1..=5).map(|a| backoff_ms(&cfg, a)).collect();
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 5_000, 5_000]);
        let n = Notice {
            id: "nt-1".into(),
            kind: NoticeKind::Opened,
            alert: None,
            contact: "c".into(),
            channel: Channel::Webhook,
            address: "http://x".into(),
            severity: vitals_rules::Severity::Urgent,
            subject: String::new(),
            text: String::new(),
            payload: serde_json::Value::Null,
            created_ms: 0,
            state: NoticeState::Pending,
            attempts: 0,
            next_ms: 0,
            last_error: None,
            delivered_ms: None,
        };
        let fail = Err(SendError::transient("503"));
        let n1 = after_attempt(&cfg, &n, &fail, 100);
        assert_eq!((n1.state, n1.attempts, n1.next_ms), (NoticeState::Pending, 1, 1_100));
        let slow = Err(SendError { retry_after_ms: Some(30_000), ..SendError::transient("429") });
        assert_eq!(after_attempt(&cfg, &n1, &slow, 200).next_ms, 30_200, "Retry-After wins when longer");
        let n3 = Notice { attempts: 3, ..n.clone() };
        assert_eq!(after_attempt(&cfg, &n3, &fail, 0).state, NoticeState::Dead);
        assert_eq!(after_attempt(&cfg, &n, &Err(SendError::permanent("400")), 0).state, NoticeState::Dead);
        let ok = after_attempt(&cfg, &n1, &Ok(()), 500);
        assert_eq!((ok.state, ok.delivered_ms, ok.last_error), (NoticeState::Delivered, Some(500), None));
    }

    #[test]
    fn a_dead_notice_is_reported_to_the_operators_but_a_dead_operator_notice_is_not() {
        use crate::notice::Contact;
        let cfg = NotifyConfig {
            contacts: vec![Contact { name: "ops".into(), console: true, ..Contact::default() }],
            operator_contacts: vec!["ops".into()],
            ..NotifyConfig::default()
        };
        let dead = Notice {
            id: "nt-9".into(),
            kind: NoticeKind::Opened,
            alert: Some("al-1".into()),
            contact: "ann".into(),
            channel: Channel::Sms,
            address: "+15550001".into(),
            severity: vitals_rules::Severity::Urgent,
            subject: "[URGENT] low for p-1".into(),
            text: String::new(),
            payload: serde_json::Value::Null,
            created_ms: 0,
            state: NoticeState::Dead,
            attempts: 8,
            next_ms: 0,
            last_error: None,
            delivered_ms: None,
        };
        let out = given_up(&cfg, &dead, "HTTP 500", 7);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].contact.as_str(), out[0].kind, out[0].created_ms), ("ops", NoticeKind::Operator, 7));
        assert!(out[0].text.contains("nt-9") && out[0].text.contains("failed 8 times: HTTP 500"), "{}", out[0].text);
        let op = Notice { kind: NoticeKind::Operator, ..dead };
        assert!(given_up(&cfg, &op, "HTTP 500", 7).is_empty());
    }
}
