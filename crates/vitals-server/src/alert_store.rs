//! The alert store: alerts and the notification outbox, durable.
//!
//! What an alert is and what is decided about it lives in `vitals-alerts`; this is where
//! alert and notice versions are kept: `<data_dir>/alerts/alerts.log`, an append-only log
//! whose records are lists of alert versions and notice versions (the last version of an
//! id wins). An alert change and the notices it causes are one record, written and fsynced
//! together: the outbox cannot miss an alert, nor hold a notice of an alert that was never
//! recorded. Past 64 MiB (and twice its last snapshot) the log is rewritten as a snapshot
//! of its meaning: every alert, every pending or dead notice, delivered ones of the last 30
//! days.
//!
//! In cluster mode the log is the one every node shares in PostgreSQL
//! (`vitals_postgres::Records`): a node reads what the others appended before it answers,
//! so an alert raised on the node that owns its patient is seen, acknowledged and
//! delivered from any node.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_alerts::decision::Alerts;
use vitals_alerts::notice::operator_notices;
use vitals_alerts::{Alert, AlertState, Notice, NoticeState, NotifyConfig};
use vitals_storage::json_log::JsonLog;

use crate::store_log::{Applied, StoreLog};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no alert {0:?}")]
    NotFound(String),
    #[error("no notice {0:?}")]
    NoticeNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the alert store: {0}")]
    Io(String),
}

/// One log record holds any number of these, applied together.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record {
    Alert(Box<Alert>),
    Notice(Box<Notice>),
}

#[derive(Debug, Default)]
struct State {
    alerts: BTreeMap<String, Alert>,
    notices: BTreeMap<String, Notice>,
}

impl State {
    /// Applies one record (its versions win); whether it holds a pending notice.
    fn apply(&mut self, record: Vec<Record>) -> bool {
        let mut pending = false;
        for r in record {
            match r {
                Record::Alert(a) => {
                    self.alerts.insert(a.id.clone(), *a);
                }
                Record::Notice(n) => {
                    pending |= n.state == NoticeState::Pending;
                    self.notices.insert(n.id.clone(), *n);
                }
            }
        }
        pending
    }

    fn applied(&mut self, a: Applied<Vec<Record>>) -> bool {
        match a {
            Applied::Reset => {
                *self = State::default();
                false
            }
            Applied::Record(r) => self.apply(r),
        }
    }
}

/// The shared log's name in cluster mode.
const SHARED_LOG: &str = "alerts";

pub struct AlertStore {
    state: RwLock<State>,
    log: Mutex<StoreLog>,
    /// Bumped on every commit that adds pending notices; the notifier waits on it.
    outbox: (Mutex<u64>, Condvar),
    /// The log is rewritten as a snapshot once it is larger than this and than twice its
    /// size after the last snapshot.
    compact_bytes: u64,
    compacted_size: std::sync::atomic::AtomicU64,
}

/// Default for [`AlertStore::open_with`]: 64 MiB.
pub const COMPACT_BYTES: u64 = 64 << 20;
/// Delivered notices are kept (in memory and in snapshots) this long after the newest one.
pub const DELIVERED_KEEP_MS: i64 = 30 * 86_400_000;
/// Items per record of a snapshot.
const SNAPSHOT_CHUNK: usize = 512;

impl AlertStore {
    pub fn open(dir: &Path) -> anyhow::Result<AlertStore> {
        AlertStore::open_with(dir, COMPACT_BYTES)
    }

    /// Opens the store, compacting the log past `compact_bytes`.
    pub fn open_with(dir: &Path, compact_bytes: u64) -> anyhow::Result<AlertStore> {
        std::fs::create_dir_all(dir)?;
        let (log, records) = JsonLog::open::<Vec<Record>>(dir, "alerts.log", *b"VALR", 1)?;
        let mut st = State::default();
        for r in records {
            st.apply(r);
        }
        Ok(AlertStore {
            state: RwLock::new(st),
            log: Mutex::new(StoreLog::Local(log)),
            outbox: (Mutex::new(0), Condvar::new()),
            compact_bytes,
            // A log already past the limit is compacted at the first commit.
            compacted_size: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Cluster mode: the store over the log every node shares.
    pub fn open_shared(records: vitals_postgres::Records) -> anyhow::Result<AlertStore> {
        let store = AlertStore {
            state: RwLock::new(State::default()),
            log: Mutex::new(StoreLog::Shared { records, name: SHARED_LOG, applied: 0 }),
            outbox: (Mutex::new(0), Condvar::new()),
            compact_bytes: COMPACT_BYTES,
            compacted_size: std::sync::atomic::AtomicU64::new(0),
        };
        store.refresh(&mut store.log.lock()).map_err(|e| anyhow::anyhow!(e))?;
        Ok(store)
    }

    /// Cluster mode: applies what other nodes appended since the last look (nothing to do
    /// on one node). A failure is logged and the state answers as it is.
    fn sync(&self) {
        let mut pending = false;
        self.log.lock().sync("alert store", |r| pending |= self.state.write().applied(r));
        if pending {
            self.poke();
        }
    }

    /// Applies the shared log's new records; wakes the notifier if they hold pending notices.
    fn refresh(&self, log: &mut StoreLog) -> Result<(), AlertError> {
        let mut pending = false;
        log.refresh(|r| pending |= self.state.write().applied(r)).map_err(AlertError::Io)?;
        if pending {
            self.poke();
        }
        Ok(())
    }

    /// Rewrites the log as a snapshot of the state when it has grown enough: every alert,
    /// every pending or dead notice, delivered ones of the last [`DELIVERED_KEEP_MS`].
    fn maybe_compact(&self, log: &mut StoreLog, st: &mut State) {
        use std::sync::atomic::Ordering;
        // The shared log is a table: PostgreSQL keeps it; it is rewritten only to erase.
        if log.is_shared() {
            return;
        }
        let size = log.len_bytes();
        if size < self.compact_bytes || size < 2 * self.compacted_size.load(Ordering::Relaxed) {
            return;
        }
        let newest = st.notices.values().map(|n| n.created_ms).max().unwrap_or(0);
        let finished = |s: NoticeState| matches!(s, NoticeState::Delivered | NoticeState::Withdrawn);
        st.notices.retain(|_, n| !finished(n.state) || n.created_ms >= newest - DELIVERED_KEEP_MS);
        match Self::snapshot(log, st) {
            Ok(()) => {
                let after = log.len_bytes();
                self.compacted_size.store(after, Ordering::Relaxed);
                tracing::info!(before = size, after, "alert log compacted");
            }
            Err(e) => tracing::error!(error = %e, "compacting the alert log (it keeps growing)"),
        }
    }

    /// Rewrites the log as the state: every alert and notice, in chunks of records.
    fn snapshot(log: &mut StoreLog, st: &State) -> Result<(), String> {
        let items: Vec<Record> = st
            .alerts
            .values()
            .map(|a| Record::Alert(Box::new(a.clone())))
            .chain(st.notices.values().map(|n| Record::Notice(Box::new(n.clone()))))
            .collect();
        let chunks: Vec<&[Record]> = items.chunks(SNAPSHOT_CHUNK).collect();
        log.rewrite(&chunks)
    }

    /// Removes a patient's alerts and their notices, and the notices `also` (the campaign
    /// messages sent to them, which name no patient), and rewrites the log as a snapshot
    /// without them (no earlier record keeps them); returns (alerts, notices) removed.
    pub fn erase_patient(&self, patient: &str, also: &[String]) -> Result<(usize, usize), AlertError> {
        let mut log = self.log.lock();
        self.refresh(&mut log)?;
        let mut st = self.state.write();
        let ids: std::collections::BTreeSet<String> =
            st.alerts.values().filter(|a| a.patient == patient).map(|a| a.id.clone()).collect();
        st.alerts.retain(|id, _| !ids.contains(id));
        let before = st.notices.len();
        st.notices.retain(|id, n| !n.alert.as_ref().is_some_and(|a| ids.contains(a)) && !also.contains(id));
        let notices = before - st.notices.len();
        // In cluster mode, every node forgets them at its next look (the rewrite's reset).
        Self::snapshot(&mut log, &st).map_err(AlertError::Io)?;
        self.compacted_size.store(log.len_bytes(), std::sync::atomic::Ordering::Relaxed);
        Ok((ids.len(), notices))
    }

    /// Writes alert and notice versions as one durable record, then makes them visible.
    pub fn commit(&self, alerts: Vec<Alert>, notices: Vec<Notice>) -> Result<(), AlertError> {
        self.commit_fenced(alerts, notices, None)
    }

    /// [`commit`](Self::commit) of the owner of the patients' buckets: in cluster mode
    /// refused, with nothing recorded, if the fence's leases moved to another node.
    pub fn commit_fenced(
        &self,
        alerts: Vec<Alert>,
        notices: Vec<Notice>,
        fence: Option<&vitals_postgres::Fence>,
    ) -> Result<(), AlertError> {
        if alerts.is_empty() && notices.is_empty() {
            return Ok(());
        }
        let pending = notices.iter().any(|n| n.state == NoticeState::Pending);
        let records: Vec<Record> = alerts
            .into_iter()
            .map(|a| Record::Alert(Box::new(a)))
            .chain(notices.into_iter().map(|n| Record::Notice(Box::new(n))))
            .collect();
        let mut log = self.log.lock();
        log.write_fenced(records, fence, |r| {
            self.state.write().applied(r);
        })
        .map_err(AlertError::Io)?;
        let mut st = self.state.write();
        self.maybe_compact(&mut log, &mut st);
        drop(st);
        drop(log);
        if pending {
            self.poke();
        }
        Ok(())
    }

    /// Wakes the notifier.
    pub fn poke(&self) {
        let (m, cv) = &self.outbox;
        *m.lock() += 1;
        cv.notify_all();
    }

    /// Waits until a commit added pending notices after `seen` (or `timeout`); returns the
    /// new counter.
    pub fn wait_outbox(&self, seen: u64, timeout: Duration) -> u64 {
        let (m, cv) = &self.outbox;
        let mut g = m.lock();
        if *g == seen {
            cv.wait_for(&mut g, timeout);
        }
        *g
    }

    pub fn get(&self, id: &str) -> Option<Alert> {
        self.sync();
        self.state.read().alerts.get(id).cloned()
    }

    /// Alerts matching the filters, newest first.
    pub fn list(&self, patient: Option<&str>, state: Option<AlertState>, from: i64, to: i64) -> Vec<Alert> {
        self.sync();
        let mut v: Vec<Alert> = self
            .state
            .read()
            .alerts
            .values()
            .filter(|a| patient.is_none_or(|p| a.patient == p))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .filter(|a| a.fired_ms >= from && a.fired_ms < to)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.fired_ms.cmp(&a.fired_ms).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Alerts still going on (open or acknowledged).
    pub fn active(&self) -> Vec<Alert> {
        self.sync();
        self.state.read().alerts.values().filter(|a| a.state.active()).cloned().collect()
    }

    /// Acknowledges an open alert (by whom, when): reminders and escalation stop.
    pub fn ack(&self, id: &str, who: &str, now: i64) -> Result<Alert, AlertError> {
        let a = self.get(id).ok_or_else(|| AlertError::NotFound(id.to_owned()))?;
        match a.state {
            AlertState::Open => {
                let a = Alert {
                    state: AlertState::Acknowledged,
                    acked_by: Some(who.to_owned()),
                    acked_ms: Some(now),
                    updated_ms: now,
                    ..a
                };
                self.commit(vec![a.clone()], Vec::new())?;
                Ok(a)
            }
            AlertState::Acknowledged => Ok(a),
            s => Err(AlertError::Invalid(
                format!("the alert is {s:?}; only open alerts are acknowledged").to_lowercase(),
            )),
        }
    }

    /// Silences reminders and escalation of an open alert for `for_ms` (at most `max_ms`).
    pub fn snooze(&self, id: &str, for_ms: i64, max_ms: i64, now: i64) -> Result<Alert, AlertError> {
        let a = self.get(id).ok_or_else(|| AlertError::NotFound(id.to_owned()))?;
        if !a.state.active() {
            return Err(AlertError::Invalid("only open alerts can be snoozed".into()));
        }
        if for_ms <= 0 || for_ms > max_ms {
            return Err(AlertError::Invalid(format!(
                "snooze for 1 ms to {} at most",
                vitals_core::time::DurationMs(max_ms)
            )));
        }
        let a = Alert { snoozed_until_ms: Some(now + for_ms), updated_ms: now, ..a };
        self.commit(vec![a.clone()], Vec::new())?;
        Ok(a)
    }

    pub fn notice(&self, id: &str) -> Option<Notice> {
        self.sync();
        self.state.read().notices.get(id).cloned()
    }

    /// Notices matching the filters, newest first, at most `limit`.
    pub fn notices(&self, state: Option<NoticeState>, alert: Option<&str>, limit: usize) -> Vec<Notice> {
        self.sync();
        let mut v: Vec<Notice> = self
            .state
            .read()
            .notices
            .values()
            .filter(|n| state.is_none_or(|s| n.state == s))
            .filter(|n| alert.is_none_or(|a| n.alert.as_deref() == Some(a)))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| a.id.cmp(&b.id)));
        v.truncate(limit);
        v
    }

    /// Pending notices due by `now`, oldest first, and the time the next later one is due.
    pub fn due(&self, now: i64, limit: usize) -> (Vec<Notice>, Option<i64>) {
        self.sync();
        let st = self.state.read();
        let mut due: Vec<Notice> = Vec::new();
        let mut next: Option<i64> = None;
        for n in st.notices.values().filter(|n| n.state == NoticeState::Pending) {
            if n.next_ms <= now {
                due.push(n.clone());
            } else {
                next = Some(next.map_or(n.next_ms, |x| x.min(n.next_ms)));
            }
        }
        due.sort_by(|a, b| a.next_ms.cmp(&b.next_ms).then_with(|| a.id.cmp(&b.id)));
        due.truncate(limit);
        (due, next)
    }

    /// Puts a dead notice back in the outbox for a fresh round of attempts.
    pub fn replay_notice(&self, id: &str, now: i64) -> Result<Notice, AlertError> {
        let n = self.notice(id).ok_or_else(|| AlertError::NoticeNotFound(id.to_owned()))?;
        if n.state != NoticeState::Dead {
            return Err(AlertError::Invalid(format!("notice {id} is not dead (it is {:?})", n.state).to_lowercase()));
        }
        let n = Notice { state: NoticeState::Pending, attempts: 0, next_ms: now, ..n };
        self.commit(Vec::new(), vec![n.clone()])?;
        Ok(n)
    }
    /// Records an operator event (a failed dropped file, ...): notices to the operator
    /// contacts, through the same outbox; an event already recorded (same key) is not
    /// recorded again.
    pub fn operator_event(&self, cfg: &NotifyConfig, key: &str, subject: &str, text: &str, now: i64) {
        let notices: Vec<Notice> = operator_notices(cfg, key, subject, text, now)
            .into_iter()
            .filter(|n| self.notice(&n.id).is_none())
            .collect();
        if let Err(e) = self.commit(Vec::new(), notices) {
            tracing::error!(error = %e, "recording an operator notice");
        }
    }
}

impl Alerts for AlertStore {
    fn get(&self, id: &str) -> Option<Alert> {
        AlertStore::get(self, id)
    }

    fn active(&self) -> Vec<Alert> {
        AlertStore::active(self)
    }

    fn has_notice(&self, id: &str) -> bool {
        self.sync();
        self.state.read().notices.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_alerts::{Channel, NoticeKind};
    use vitals_rules::Severity;

    fn notice(id: &str, state: NoticeState, next_ms: i64) -> Notice {
        Notice {
            id: id.into(),
            kind: NoticeKind::Opened,
            alert: Some("al-1".into()),
            contact: "ann".into(),
            channel: Channel::Console,
            address: "log".into(),
            severity: Severity::Urgent,
            subject: "s".into(),
            text: "t".into(),
            payload: serde_json::Value::Null,
            created_ms: 0,
            state,
            attempts: 0,
            next_ms,
            last_error: None,
            delivered_ms: None,
        }
    }

    #[test]
    fn an_alert_and_its_notices_come_back_together_after_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = AlertStore::open(dir.path()).expect("open");
        let a = Alert { id: "al-1".into(), rule: "r".into(), patient: "p".into(), ..Alert::default() };
        s.commit(
            vec![a.clone()],
            vec![notice("nt-1", NoticeState::Pending, 10), notice("nt-2", NoticeState::Pending, 50)],
        )
        .expect("commit");
        s.commit(Vec::new(), vec![notice("nt-2", NoticeState::Dead, 50)]).expect("update");
        drop(s);
        let s = AlertStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get("al-1"), Some(a));
        let (due, next) = s.due(20, 10);
        assert_eq!((due.len(), due[0].id.as_str(), next), (1, "nt-1", None));
        assert_eq!(s.notices(Some(NoticeState::Dead), None, 10).len(), 1);
        let n = s.replay_notice("nt-2", 30).expect("replay");
        assert_eq!((n.state, n.attempts, n.next_ms), (NoticeState::Pending, 0, 30));
        assert!(matches!(s.replay_notice("nt-1", 30), Err(AlertError::Invalid(_))));
        // A withdrawn notice is never due again, and is not replayable.
        s.commit(Vec::new(), vec![notice("nt-1", NoticeState::Withdrawn, 10)]).expect("withdraw");
        assert_eq!(s.due(i64::MAX, 10).0.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["nt-2"]);
        assert!(matches!(s.replay_notice("nt-1", 30), Err(AlertError::Invalid(_))));
    }

    #[test]
    fn the_log_is_compacted_to_what_it_means_and_old_deliveries_are_forgotten() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = AlertStore::open_with(dir.path(), 20_000).expect("open");
        let day = 86_400_000;
        // An old delivered notice, then many versions of one alert.
        s.commit(Vec::new(), vec![Notice { created_ms: 0, ..notice("nt-old", NoticeState::Delivered, 0) }])
            .expect("old");
        s.commit(Vec::new(), vec![Notice { created_ms: 40 * day, ..notice("nt-dead", NoticeState::Dead, 0) }])
            .expect("dead");
        for i in 0..200 {
            let a = Alert { id: "al-1".into(), updated_ms: i, ..Alert::default() };
            s.commit(vec![a], Vec::new()).expect("commit");
        }
        let size = std::fs::metadata(dir.path().join("alerts.log")).expect("meta").len();
        assert!(size < 20_000, "compacted: {size} bytes");
        assert!(s.notice("nt-old").is_none(), "delivered 40 days before the newest: forgotten");
        drop(s);
        let s = AlertStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get("al-1").map(|a| a.updated_ms), Some(199));
        assert_eq!(s.notice("nt-dead").map(|n| n.state), Some(NoticeState::Dead));
        assert!(s.notice("nt-old").is_none());
    }
}
