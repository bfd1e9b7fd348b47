//! The notifier: delivers the outbox's notices, at least once, with an idempotency key.
//!
//! A dispatcher thread hands due notices to a few sender threads (so one slow endpoint
//! does not hold the others up); each attempt's outcome is recorded in the alert store:
//! delivered, a retry after exponential backoff (`retry_backoff`, doubling, at most
//! `retry_max_backoff`, or the receiver's `Retry-After`), or, after `max_attempts` or a
//! permanent refusal (a 4xx other than 408/429, an SMTP 5xx), dead: listed and replayable
//! through the API and `vitals admin notifications`. Pending notices survive restarts: the
//! outbox is the alert store's log. A crash between a send and its record sends it again,
//! with the same key.

mod email;
mod http;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::NotifyConfig;
use crate::notice::{Channel, Notice, NoticeKind, NoticeState, operator_notices};
use crate::server::AppState;

/// Senders working at once.
const SENDERS: usize = 4;
/// Notices taken from the outbox per round.
const BATCH: usize = 256;
/// The longest the dispatcher waits before looking at the clock again (it may be a manual
/// clock in tests, moved without notice).
const MAX_WAIT: Duration = Duration::from_millis(100);

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

/// The channels, configured once.
pub struct Transports {
    config: NotifyConfig,
    http: ureq::Agent,
    email: Option<email::Email>,
}

impl Transports {
    pub fn new(config: &NotifyConfig) -> anyhow::Result<Transports> {
        let timeout = Duration::from_millis(config.timeout.as_ms() as u64);
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("vitals/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let email = if config.smtp_host.is_empty() { None } else { Some(email::Email::new(config, timeout)?) };
        Ok(Transports { config: config.clone(), http, email })
    }

    /// One attempt to deliver a notice.
    pub fn send(&self, n: &Notice) -> Result<(), SendError> {
        match n.channel {
            Channel::Webhook => http::webhook(&self.http, &self.config, n),
            Channel::Telegram => http::telegram(&self.http, &self.config, n),
            Channel::Sms => http::sms(&self.http, &self.config, n),
            Channel::Email => match &self.email {
                Some(e) => e.send(n),
                None => Err(SendError::permanent("no SMTP server is configured (notify.smtp_host)")),
            },
            Channel::Console => {
                tracing::warn!(target: "vitals::notify", notice = %n.id, contact = %n.contact, "{}", n.text);
                Ok(())
            }
        }
    }
}

/// The running notifier; stops when asked.
pub struct Notifier {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Notifier {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
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

pub fn spawn(app: AppState) -> anyhow::Result<Notifier> {
    let transports = Arc::new(Transports::new(&app.config.notify)?);
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<Notice>();
    let rx = Arc::new(Mutex::new(rx));
    let mut threads = Vec::new();
    for i in 0..SENDERS {
        let (app, transports, rx, in_flight) = (app.clone(), transports.clone(), rx.clone(), in_flight.clone());
        threads.push(std::thread::Builder::new().name(format!("notify-{i}")).spawn(move || {
            loop {
                let next = rx.lock().recv();
                let Ok(n) = next else { return };
                deliver(&app, &transports, &n);
                in_flight.lock().remove(&n.id);
                // The dispatcher may be waiting for this one's retry time.
                app.alerts.poke();
            }
        })?);
    }
    let s = stop.clone();
    threads.push(std::thread::Builder::new().name("notify".into()).spawn(move || {
        let mut seen = 0;
        while !s.load(Ordering::SeqCst) {
            let now = app.clock.now_ms();
            let (due, next) = app.alerts.due(now, BATCH);
            let mut wait = next.map_or(MAX_WAIT, |t| Duration::from_millis((t - now).clamp(1, 100) as u64));
            for n in due {
                if in_flight.lock().insert(n.id.clone()) && tx.send(n).is_err() {
                    return;
                }
            }
            if in_flight.lock().len() >= BATCH {
                wait = Duration::from_millis(5);
            }
            seen = app.alerts.wait_outbox(seen, wait.min(MAX_WAIT));
        }
        // Dropping `tx` stops the senders.
    })?);
    Ok(Notifier { stop, threads })
}

fn deliver(app: &AppState, transports: &Transports, n: &Notice) {
    // The version in the store is the truth (it may have been replayed or delivered).
    let Some(current) = app.alerts.notice(&n.id) else { return };
    if current.state != NoticeState::Pending || current.next_ms > app.clock.now_ms() {
        return;
    }
    let started = std::time::Instant::now();
    let outcome = transports.send(&current);
    let now = app.clock.now_ms();
    let next = after_attempt(&app.config.notify, &current, &outcome, now);
    let label = |outcome: &str| crate::telemetry::NoticeLabel {
        channel: current.channel.as_str().to_owned(),
        outcome: outcome.to_owned(),
    };
    app.telemetry.notice_send_seconds.observe(started.elapsed().as_secs_f64());
    let mut extra = Vec::new();
    match (&outcome, next.state) {
        (Ok(()), _) => {
            app.telemetry.notices.get_or_create(&label("delivered")).inc();
        }
        (Err(e), NoticeState::Dead) => {
            app.telemetry.notices.get_or_create(&label("dead")).inc();
            tracing::error!(notice = %n.id, channel = current.channel.as_str(), contact = %current.contact, error = %e.message, attempts = next.attempts, "notice given up; it is in the dead-letter list");
            if current.kind != NoticeKind::Operator {
                extra = operator_notices(
                    &app.config.notify,
                    &format!("dead:{}", n.id),
                    "a notice could not be delivered",
                    &format!(
                        "Notice {} ({} to {} by {}) failed {} times: {}. Replay it with `vitals admin notifications replay {}` once fixed.",
                        n.id,
                        current.subject,
                        current.contact,
                        current.channel.as_str(),
                        next.attempts,
                        e.message,
                        n.id
                    ),
                    now,
                );
            }
        }
        (Err(e), _) => {
            app.telemetry.notices.get_or_create(&label("retry")).inc();
            tracing::warn!(notice = %n.id, channel = current.channel.as_str(), error = %e.message, attempts = next.attempts, "notice not delivered; will retry");
        }
    }
    let mut notices = vec![next];
    notices.extend(extra);
    if let Err(e) = app.alerts.commit(Vec::new(), notices) {
        tracing::error!(error = %e, notice = %n.id, "recording a delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let n = crate::notice::Notice {
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
}
