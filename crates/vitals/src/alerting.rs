//! The live rule engine wired to the store and the outbox. It hears of samples right after
//! they are durable (the store's subscription), evaluates the rules in force (config, packs,
//! API; cohort scopes resolved) and the seizure detector per patient, turns their changes
//! into alert versions, and writes each batch's alert changes together with the notices
//! they cause (routing by subscription, suppression, all-clears) as one durable record.
//! Once a second it also sends reminders and escalations of alerts still unacknowledged.
//!
//! After a restart, or when the rules change, it re-reads the last `horizon` of stored
//! data, so episodes under way are found again and matched to the alerts already raised
//! (by id): none is lost, none raised twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use vitals_core::{Catalog, Event, MetricId};
use vitals_query::{QueryResult, SeriesQuery};
use vitals_rules::live::{Change, Engine};
use vitals_rules::seizure::{DETECTOR_RULE, SeizureDetector};
use vitals_rules::{Rule, Scope, Severity};
use vitals_storage::DurableBatch;

use crate::alerts::{Alert, AlertState, RuleInfo, Transition, alert_id};
use crate::notice::{self, Notice, NoticeKind};
use crate::server::AppState;

/// How often reminders, escalations and stale-data windows are looked at.
const TICK_MS: i64 = 1_000;
/// At most this many queued samples are evaluated together.
const MAX_DRAIN_SAMPLES: usize = 1 << 20;

/// The running engine; stops when asked.
pub struct Alerting {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Alerting {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Alerting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The rules in force, enabled, with cohort scopes turned into their members.
fn rules_in_force(app: &AppState) -> Vec<Rule> {
    app.rules
        .list()
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.spec.enabled)
        .map(|mut r| {
            if let Scope::Cohort(c) = &r.spec.scope {
                let members = app.cohorts.members(c).unwrap_or_default();
                r.spec.scope = Scope::Patients(members.into_iter().collect());
            }
            r
        })
        .collect()
}

fn metric_ids(rules: &[Rule], detector: bool) -> Vec<MetricId> {
    let c = Catalog::standard();
    let mut v: Vec<MetricId> = rules.iter().flat_map(Rule::metric_list).filter_map(|(m, _)| c.id(m)).collect();
    if detector {
        v.extend(vitals_rules::seizure::METRICS.iter().filter_map(|m| c.id(m)));
    }
    v.sort_unstable_by_key(|m| m.0);
    v.dedup();
    v
}

/// What alert versions need of a rule.
fn rule_info(rules: &[Rule]) -> HashMap<String, RuleInfo> {
    let mut m: HashMap<String, RuleInfo> = rules
        .iter()
        .map(|r| {
            let info = RuleInfo {
                severity: r.spec.severity,
                expr: r.spec.expr.clone(),
                description: r.spec.description.clone(),
                metrics: r.metric_list().iter().map(|x| x.0.clone()).collect(),
            };
            (r.spec.name.clone(), info)
        })
        .collect();
    m.insert(
        DETECTOR_RULE.to_owned(),
        RuleInfo {
            severity: Severity::Urgent,
            expr: "seizure detector: rhythmic 3-8 Hz wrist motion with tachycardia or an electrodermal surge".into(),
            description: Some("Possible seizure (wrist motion, heart rate, electrodermal activity)".into()),
            metrics: vitals_rules::seizure::METRICS.iter().map(|m| (*m).to_owned()).collect(),
        },
    );
    m
}

/// Starts the engine if `[alerting] enabled`.
pub fn spawn(app: AppState) -> Option<Alerting> {
    if !app.config.alerting.enabled {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let detector = app.config.alerting.seizure.enabled;
    let rx = app.store.subscribe_durable(&metric_ids(&rules_in_force(&app), detector), 1024);
    let thread = std::thread::Builder::new()
        .name("alerting".into())
        .spawn(move || Live::new(app).run(&rx, &s))
        .map_err(|e| tracing::error!(error = %e, "alerting thread"))
        .ok()?;
    Some(Alerting { stop, thread: Some(thread) })
}

struct Live {
    app: AppState,
    engine: Engine,
    detector: Option<SeizureDetector>,
    rules: Vec<Rule>,
    info: HashMap<String, RuleInfo>,
    /// Versions of the rule and cohort stores the rules were resolved at.
    versions: (u64, u64),
    late_seen: u64,
    /// Version of the erased-patients set last applied.
    erased_seen: u64,
}

impl Live {
    fn new(app: AppState) -> Live {
        let cfg = &app.config.alerting;
        let engine = Engine::new(cfg.horizon.as_ms());
        let detector = cfg.seizure.enabled.then(|| SeizureDetector::new(cfg.seizure.clone()));
        Live {
            engine,
            detector,
            rules: Vec::new(),
            info: HashMap::new(),
            versions: (u64::MAX, u64::MAX),
            late_seen: 0,
            erased_seen: 0,
            app,
        }
    }

    fn run(mut self, rx: &std::sync::mpsc::Receiver<DurableBatch>, stop: &AtomicBool) {
        self.refresh_rules(true);
        let mut last_tick = i64::MIN;
        while !stop.load(Ordering::SeqCst) {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Everything already queued is evaluated together and committed in one record:
            // under load, one fsync covers many group commits, and a patient's readings of
            // several commits are evaluated at once.
            let mut batches: Vec<DurableBatch> = first.into_iter().collect();
            let mut queued: usize = batches.iter().map(|b| b.samples.len()).sum();
            while queued < MAX_DRAIN_SAMPLES {
                let Ok(b) = rx.try_recv() else { break };
                queued += b.samples.len();
                batches.push(b);
            }
            let now = self.app.clock.now_ms();
            self.forget_erased();
            self.refresh_rules(false);
            let mut changes = Vec::new();
            if !batches.is_empty() {
                let samples: Vec<&vitals_core::Sample> = batches.iter().flat_map(|b| b.samples.iter()).collect();
                changes.extend(self.ingest(&samples, now));
            }
            let tick = now.saturating_sub(last_tick) >= TICK_MS || batches.is_empty();
            if tick {
                changes.extend(self.engine.advance(&self.rules, now));
            }
            self.handle(&changes, now);
            if tick {
                self.remind(now);
                last_tick = now;
            }
            for b in &batches {
                self.app.telemetry.alert_eval_seconds.observe(b.at.elapsed().as_secs_f64());
            }
            let late = self.engine.late() + self.detector.as_ref().map_or(0, SeizureDetector::late);
            if late > self.late_seen {
                self.app.telemetry.alert_late_readings.inc_by(late - self.late_seen);
                self.late_seen = late;
            }
        }
    }

    /// Drops the state of patients erased since the last look.
    fn forget_erased(&mut self) {
        let v = self.app.erased.version();
        if v == self.erased_seen {
            return;
        }
        self.erased_seen = v;
        for p in self.app.erased.all() {
            self.engine.forget_patient(&p);
            if let Some(d) = &mut self.detector {
                d.forget_patient(&p);
            }
        }
    }

    /// Picks up rule and cohort changes: the new metrics are subscribed to first, then the
    /// recent data re-read, so no sample falls between the two.
    fn refresh_rules(&mut self, first: bool) {
        let versions = (self.app.rules.version(), self.app.cohorts.version());
        if !first && versions == self.versions {
            return;
        }
        self.versions = versions;
        let current = rules_in_force(&self.app);
        let before = metric_ids(&self.rules, self.detector.is_some());
        self.rules = current;
        self.info = rule_info(&self.rules);
        let ids = metric_ids(&self.rules, self.detector.is_some());
        if first || ids != before {
            self.app.store.set_durable_metrics(&ids);
        }
        self.prime();
        self.reconcile(first);
        self.engine.retain_rules(&self.rules);
    }

    /// Feeds the engine the last horizon of stored data of every recent patient.
    fn prime(&mut self) {
        let now = self.app.clock.now_ms();
        let horizon = self.app.config.alerting.horizon.as_ms();
        let lookback = self.rules.iter().map(Rule::lookback_ms).max().unwrap_or(0);
        let c = Catalog::standard();
        let mut metrics: Vec<&str> = self.rules.iter().flat_map(Rule::metric_list).map(|(m, _)| m.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        // Episodes of alerts still open are re-derived from their start, however old, so
        // that they are found again rather than raised twice.
        let mut oldest: HashMap<String, i64> = HashMap::new();
        for a in self.app.alerts.active().into_iter().filter(|a| a.rule != DETECTOR_RULE) {
            let e = oldest.entry(a.patient.clone()).or_insert(a.start_ms);
            *e = (*e).min(a.start_ms);
        }
        let mut changes = Vec::new();
        for (patient, last) in self.app.store.patients() {
            // Settling follows each patient's data, not the clock: a patient whose newest
            // reading is older than the horizon still has its last horizon evaluated (up to
            // a day back; older history changes no alert that is not still open).
            let open_since = oldest.get(patient.as_str()).copied();
            if last < now - horizon.max(vitals_core::time::MS_PER_DAY) && open_since.is_none() {
                continue;
            }
            let mut readings: Vec<(&str, i64, f64)> = Vec::new();
            for &code in &metrics {
                let Some(metric) = c.id(code) else { continue };
                let q = SeriesQuery {
                    patient: patient.clone(),
                    metric,
                    device: None,
                    from: open_since.map_or(last - horizon, |o| o.min(last - horizon)) - lookback,
                    to: now + 1,
                    every_ms: None,
                    aggs: Vec::new(),
                };
                match vitals_query::run(&self.app.store, &q) {
                    Ok(QueryResult::Raw(points)) => {
                        readings.extend(points.into_iter().map(|p| (code, p.time_ms, p.value)));
                    }
                    Ok(QueryResult::Buckets(_)) => {}
                    Err(e) => tracing::error!(error = %e, patient = %patient, "alerting: reading recent data"),
                }
            }
            changes.extend(self.engine.ingest(&self.rules, patient.as_str(), &readings, now));
        }
        self.handle(&changes, now);
    }

    /// Open alerts the engine no longer holds (their rule was removed or changed, their
    /// data is gone) are resolved now. So are the seizure detector's at start-up: its state
    /// does not survive a restart (re-reading dense motion would cost more than the minutes
    /// it could recover), and a seizure still going on raises a new alert.
    fn reconcile(&mut self, startup: bool) {
        let now = self.app.clock.now_ms();
        let mut changed = BTreeMap::new();
        for a in self.app.alerts.active() {
            let orphan = if a.rule == DETECTOR_RULE {
                startup
            } else {
                let in_force = self.rules.iter().any(|r| r.spec.name == a.rule && r.spec.scope.includes(&a.patient));
                !in_force
                    || !self
                        .engine
                        .episodes(&a.rule, &a.patient)
                        .iter()
                        .any(|e| e.start == a.start_ms && e.cleared.is_none())
            };
            if orphan {
                tracing::info!(alert = %a.id, rule = %a.rule, patient = %a.patient, "alert closed: its rule or data no longer holds it");
                let a = Alert { state: AlertState::Resolved, cleared_ms: Some(now), updated_ms: now, ..a };
                changed.insert(a.id.clone(), a);
            }
        }
        self.commit(changed, BTreeMap::new());
    }

    fn ingest(&mut self, samples: &[&vitals_core::Sample], now: i64) -> Vec<Change> {
        let c = Catalog::standard();
        let mut by_patient: BTreeMap<&str, Vec<(&str, i64, f64)>> = BTreeMap::new();
        for s in samples {
            by_patient.entry(s.patient.as_str()).or_default().push((c.get(s.metric).code, s.time_ms, s.value));
        }
        let mut changes = Vec::new();
        for (patient, readings) in by_patient {
            if self.app.erased.contains(patient) {
                continue;
            }
            changes.extend(self.engine.ingest(&self.rules, patient, &readings, now));
            if let Some(d) = &mut self.detector {
                let motion: Vec<(&str, i64, f64)> =
                    readings.iter().copied().filter(|r| SeizureDetector::reads(r.0)).collect();
                if !motion.is_empty() {
                    changes.extend(d.ingest(patient, &motion));
                }
            }
        }
        changes
    }

    fn in_cohort(&self) -> impl Fn(&str, &str) -> bool + '_ {
        move |c: &str, p: &str| self.app.cohorts.contains(c, p)
    }

    /// Notices of `kind` about `a` to every matching subscription's recipients at their
    /// escalation level.
    fn route(&self, a: &Alert, kind: NoticeKind, seq: &str, out: &mut BTreeMap<String, Notice>) {
        let cfg = &self.app.config.notify;
        let in_cohort = self.in_cohort();
        for (i, s) in cfg.subscriptions.iter().enumerate() {
            if !s.matches(a, &in_cohort) || (kind == NoticeKind::Resolved && !s.all_clear) {
                continue;
            }
            let level = a.escalations.get(&s.name_or(i)).copied().unwrap_or(0) as usize;
            notice::make(cfg, a, kind, seq, s, &notice::recipients(s, level), self.app.clock.now_ms(), out);
        }
    }

    /// Turns engine changes into alert versions and notices, committed as one record.
    fn handle(&mut self, changes: &[Change], now: i64) {
        if changes.is_empty() {
            return;
        }
        let fresh = self.app.config.alerting.fresh.as_ms();
        // Higher severities first, so that within one batch they suppress lower ones.
        let mut order: Vec<&Change> = changes.iter().collect();
        order.sort_by_key(|c| std::cmp::Reverse(self.info.get(c.parts().0).map(|i| i.severity)));
        let mut changed: BTreeMap<String, Alert> = BTreeMap::new();
        let mut notices: BTreeMap<String, Notice> = BTreeMap::new();
        let mut transitions: Vec<Transition> = Vec::new();
        for c in order {
            let (rule, patient, ep) = c.parts();
            if self.app.erased.contains(patient) {
                continue;
            }
            let info = self.info.get(rule).cloned().unwrap_or_default();
            let id = alert_id(rule, patient, ep.start);
            let existing = changed.get(&id).cloned().or_else(|| self.app.alerts.get(&id));
            let Some(t) = crate::alerts::plan(c, existing, &info, now, fresh) else { continue };
            let mut a = t.alert().clone();
            match &t {
                Transition::Opened(_) => {
                    for m in &a.metrics {
                        if let Some(v) = self.engine.latest(&a.patient, m, a.fired_ms) {
                            let unit = Catalog::standard().by_code(m).map_or("", |x| x.unit);
                            a.values.insert(m.clone(), (v, unit.to_owned()));
                        }
                    }
                    self.suppress(&mut a, &mut changed);
                    if a.page && a.suppressed_by.is_none() {
                        self.route(&a, NoticeKind::Opened, "0", &mut notices);
                        a.notified = true;
                        a.last_notified_ms = Some(now);
                    }
                }
                Transition::Resolved(_) | Transition::Retracted(_) => {
                    let kind =
                        if matches!(t, Transition::Resolved(_)) { NoticeKind::Resolved } else { NoticeKind::Retracted };
                    if a.notified {
                        self.route(&a, kind, &a.cleared_ms.unwrap_or(a.end_ms).to_string(), &mut notices);
                    }
                    self.release(&a, now, &mut changed, &mut notices);
                }
                Transition::Reopened(_) => {
                    if a.page && a.suppressed_by.is_none() && a.notified {
                        self.route(&a, NoticeKind::Reminder, &format!("reopened-{now}"), &mut notices);
                    }
                }
            }
            changed.insert(a.id.clone(), a.clone());
            transitions.push(t.with_alert(a));
        }
        self.commit(changed, notices);
        for t in &transitions {
            log_transition(&self.app, t);
        }
    }

    /// A higher-severity alert of the patient on a shared metric suppresses this one; this
    /// one suppresses lower ones.
    fn suppress(&self, a: &mut Alert, changed: &mut BTreeMap<String, Alert>) {
        let mut active: BTreeMap<String, Alert> = self
            .app
            .alerts
            .active()
            .into_iter()
            .filter(|x| x.patient == a.patient)
            .map(|x| (x.id.clone(), x))
            .collect();
        for (id, x) in changed.iter().filter(|(_, x)| x.patient == a.patient) {
            active.insert(id.clone(), x.clone());
        }
        let shares = |x: &Alert| {
            x.id != a.id
                && x.patient == a.patient
                && x.state.active()
                && x.metrics.iter().any(|m| a.metrics.contains(m))
        };
        if let Some(top) = active.values().filter(|x| shares(x) && x.severity > a.severity).max_by_key(|x| x.severity) {
            a.suppressed_by = Some(top.id.clone());
            return;
        }
        for x in active.values().filter(|x| shares(x) && x.severity < a.severity && x.suppressed_by.is_none()) {
            changed.insert(
                x.id.clone(),
                Alert { suppressed_by: Some(a.id.clone()), updated_ms: a.updated_ms, ..x.clone() },
            );
        }
    }

    /// Alerts that `a` suppressed stand on their own again; those never announced are now.
    fn release(
        &self,
        a: &Alert,
        now: i64,
        changed: &mut BTreeMap<String, Alert>,
        notices: &mut BTreeMap<String, Notice>,
    ) {
        let mut held: Vec<Alert> =
            self.app.alerts.active().into_iter().filter(|x| x.suppressed_by.as_deref() == Some(&a.id)).collect();
        for x in changed.values().filter(|x| x.patient == a.patient) {
            if x.suppressed_by.as_deref() == Some(&a.id) && x.state.active() && !held.iter().any(|h| h.id == x.id) {
                held.push(x.clone());
            }
        }
        for x in held {
            let x = changed.get(&x.id).cloned().unwrap_or(x);
            let mut x = Alert { suppressed_by: None, updated_ms: now, ..x };
            if x.page && !x.notified && x.state == AlertState::Open {
                self.route(&x, NoticeKind::Opened, "0", notices);
                x.notified = true;
                x.last_notified_ms = Some(now);
            }
            changed.insert(x.id.clone(), x);
        }
    }

    fn commit(&self, changed: BTreeMap<String, Alert>, notices: BTreeMap<String, Notice>) {
        let alerts: Vec<Alert> = changed.into_values().collect();
        let events: Vec<Event> = alerts.iter().map(alert_event).collect();
        // Notices already made (same id) are not made twice.
        let fresh: Vec<Notice> = notices.into_values().filter(|n| self.app.alerts.notice(&n.id).is_none()).collect();
        if let Err(e) = self.app.alerts.commit(alerts, fresh) {
            tracing::error!(error = %e, "alerting: saving alerts");
            return;
        }
        // Alerts are also events, so they can be charted with the data.
        if !events.is_empty()
            && let Err(e) = self.app.events.put(events)
        {
            tracing::error!(error = %e, "alerting: recording alerts as events");
        }
    }

    /// Reminders (`renotify`) and escalations of open, unacknowledged, unsnoozed alerts.
    fn remind(&mut self, now: i64) {
        let cfg = &self.app.config.notify;
        let renotify: HashMap<&str, i64> =
            self.rules.iter().filter_map(|r| Some((r.spec.name.as_str(), r.renotify_ms?))).collect();
        let mut changed = BTreeMap::new();
        let mut notices = BTreeMap::new();
        let in_cohort = self.in_cohort();
        for a in self.app.alerts.active() {
            if !a.wants_attention(now) {
                continue;
            }
            let mut a2 = a.clone();
            for (i, s) in cfg.subscriptions.iter().enumerate() {
                let (Some(after), true) = (s.escalate_after, a.severity == Severity::Urgent) else { continue };
                if !s.matches(&a, &in_cohort) || s.escalation.is_empty() {
                    continue;
                }
                let reached = (((now - a.fired_ms) / after.as_ms().max(1)) as usize).min(s.escalation.len());
                let name = s.name_or(i);
                let before = a.escalations.get(&name).copied().unwrap_or(0) as usize;
                if reached > before {
                    let next: Vec<&str> = s.escalation[before..reached].iter().map(String::as_str).collect();
                    notice::make(cfg, &a, NoticeKind::Escalated, &reached.to_string(), s, &next, now, &mut notices);
                    a2.escalations.insert(name, reached as u32);
                    a2.last_notified_ms = Some(now);
                }
            }
            if let Some(&every) = renotify.get(a.rule.as_str())
                && now - a.last_notified_ms.unwrap_or(a.fired_ms) >= every
            {
                a2.reminders += 1;
                a2.last_notified_ms = Some(now);
                // To those told so far: a contact escalated to this tick just heard.
                self.route(&a, NoticeKind::Reminder, &a2.reminders.to_string(), &mut notices);
            }
            if a2 != a {
                a2.updated_ms = now;
                changed.insert(a2.id.clone(), a2);
            }
        }
        drop(in_cohort);
        self.commit(changed, notices);
    }
}

/// An alert as an event (`kind` `alert`, same id), drawn on charts with the data.
pub fn alert_event(a: &Alert) -> Event {
    let mut attributes = BTreeMap::new();
    attributes.insert("rule".to_owned(), serde_json::json!(a.rule));
    attributes.insert("severity".to_owned(), serde_json::json!(a.severity));
    attributes.insert("state".to_owned(), serde_json::json!(a.state));
    attributes.insert("fired_ms".to_owned(), serde_json::json!(a.fired_ms));
    Event {
        id: a.id.clone(),
        patient: a.patient.clone(),
        kind: "alert".into(),
        start_ms: a.start_ms,
        end_ms: a.cleared_ms.unwrap_or(a.end_ms).max(a.start_ms),
        source: "alerting".into(),
        attributes,
    }
}

fn log_transition(app: &AppState, t: &Transition) {
    let a = t.alert();
    let what = t.name();
    app.telemetry.alert_transitions.get_or_create(&crate::telemetry::CodeLabel { code: what.to_owned() }).inc();
    if a.page {
        tracing::warn!(
            target: "vitals::alert",
            alert = %a.id, rule = %a.rule, patient = %a.patient, severity = ?a.severity,
            suppressed_by = a.suppressed_by.as_deref().unwrap_or(""),
            fired = %vitals_core::time::format_time(a.fired_ms),
            "alert {what}"
        );
    } else {
        tracing::info!(target: "vitals::alert", alert = %a.id, rule = %a.rule, patient = %a.patient, "alert {what} (history: not paged)");
    }
}

/// An operator event (a failed dropped file, ...): notices to the operator contacts,
/// through the same outbox.
pub fn operator_event(app: &AppState, key: &str, subject: &str, text: &str) {
    let now = app.clock.now_ms();
    let notices: Vec<Notice> = notice::operator_notices(&app.config.notify, key, subject, text, now)
        .into_iter()
        .filter(|n| app.alerts.notice(&n.id).is_none())
        .collect();
    if let Err(e) = app.alerts.commit(Vec::new(), notices) {
        tracing::error!(error = %e, "recording an operator notice");
    }
}
