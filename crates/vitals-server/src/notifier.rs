//! The notifier: delivers the outbox's notices, at least once, with an idempotency key.
//!
//! A dispatcher thread hands due notices to a few sender threads (so one slow endpoint
//! does not hold the others up); each attempt's outcome is recorded in the alert store:
//! delivered, a retry after exponential backoff (`retry_backoff`, doubling, at most
//! `retry_max_backoff`, or the receiver's `Retry-After`), or, after `max_attempts` or a
//! permanent refusal (a 4xx other than 408/429, an SMTP 5xx), dead: listed and replayable
//! through the API and `vitals admin notifications`. Pending notices survive restarts: the
//! outbox is the alert store's log. A crash between a send and its record sends it again,
//! with the same key. The channels are `vitals-notify`'s transports; what follows an
//! attempt is `vitals_alerts::delivery`'s policy.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;

use vitals_alerts::delivery::{after_attempt, given_up};
use vitals_alerts::{Notice, NoticeState, NotifyConfig, Transport};
use vitals_core::Clock;
use vitals_notify::Transports;

use crate::alert_store::AlertStore;
use crate::shutdown::Shutdown;
use crate::telemetry::{NoticeLabel, Telemetry};

/// What the notifier reads and writes: the outbox, not the whole application.
pub(crate) struct Context {
    pub(crate) alerts: Arc<AlertStore>,
    pub(crate) notify: NotifyConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Cluster mode: this node delivers the notices of its buckets' patients (the
    /// operator's, without a patient, with bucket 0); another node's are left to it.
    pub(crate) owns: Option<Arc<crate::cluster::ownership::Ownership>>,
}

impl Context {
    /// Whether this node delivers `n`.
    fn delivers(&self, n: &Notice) -> bool {
        let Some(owns) = &self.owns else { return true };
        match n.alert.as_deref().and_then(|a| self.alerts.get(a)) {
            Some(alert) => owns.owns(&alert.patient),
            None => owns.valid() && owns.owned().first() == Some(&0),
        }
    }
}

/// Senders working at once.
const SENDERS: usize = 4;
/// Notices taken from the outbox per round.
const BATCH: usize = 256;
/// The longest the dispatcher waits before looking at the clock again (it may be a manual
/// clock in tests, moved without notice).
const MAX_WAIT: Duration = Duration::from_millis(100);

/// Starts the dispatcher and the senders; they run until `shutdown`.
pub(crate) fn spawn(app: Context, shutdown: Shutdown) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let transports = Arc::new(Transports::new(&app.notify)?);
    let app = Arc::new(app);
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
    threads.push(std::thread::Builder::new().name("notify".into()).spawn(move || {
        let mut seen = 0;
        while !shutdown.is_triggered() {
            let now = app.clock.now_ms();
            let (due, next) = app.alerts.due(now, BATCH);
            let mut wait = next.map_or(MAX_WAIT, |t| Duration::from_millis((t - now).clamp(1, 100) as u64));
            for n in due.into_iter().filter(|n| app.delivers(n)) {
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
    Ok(threads)
}

fn deliver(app: &Context, transports: &Transports, n: &Notice) {
    // The version in the store is the truth (it may have been replayed or delivered).
    let Some(current) = app.alerts.notice(&n.id) else { return };
    if current.state != NoticeState::Pending || current.next_ms > app.clock.now_ms() {
        return;
    }
    let started = std::time::Instant::now();
    let outcome = transports.send(&current);
    let now = app.clock.now_ms();
    let next = after_attempt(&app.notify, &current, &outcome, now);
    let label =
        |outcome: &str| NoticeLabel { channel: current.channel.as_str().to_owned(), outcome: outcome.to_owned() };
    app.telemetry.notice_send_seconds.observe(started.elapsed().as_secs_f64());
    let mut extra = Vec::new();
    match (&outcome, next.state) {
        (Ok(()), _) => {
            app.telemetry.notices.get_or_create(&label("delivered")).inc();
        }
        (Err(e), NoticeState::Dead) => {
            app.telemetry.notices.get_or_create(&label("dead")).inc();
            tracing::error!(notice = %n.id, channel = current.channel.as_str(), contact = %current.contact, error = %e.message, attempts = next.attempts, "notice given up; it is in the dead-letter list");
            extra = given_up(&app.notify, &next, &e.message, now);
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
