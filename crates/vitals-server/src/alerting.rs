//! The alerting thread: the live rule engine wired to the store and the outbox. It hears of
//! samples right after they are durable (the store's subscription), evaluates the rules in
//! force (config, packs, API; cohort scopes resolved) and the seizure detectors per patient
//! (`alerting/seizure_watch.rs`: motion and autonomic combined, or autonomic alone, by the
//! signals the patient's device sends; and, every 15 minutes, the anomaly detector over
//! nights: `alerting/anomaly_watch.rs`),
//! hands their changes to `vitals_alerts::decision` (alert versions, suppression, routing,
//! all-clears), and writes each batch's alert versions together with their notices as one
//! durable record. Once a second it asks for reminders and escalations of alerts still
//! unacknowledged.
//!
//! After a restart, or when the rules change, it re-reads the last `horizon` of stored
//! data, so episodes under way are found again and matched to the alerts already raised
//! (by id): none is lost, none raised twice.

use std::collections::BTreeSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use parking_lot::Mutex;
use vitals_alerts::decision::{self, Decision, Policy};
use vitals_alerts::{Alert, RuleInfo, Transition};
use vitals_core::{Catalog, Clock, Event, MetricId};
use vitals_query::{QueryResult, SeriesQuery};
use vitals_rules::live::{Change, Engine};
use vitals_rules::seizure::DETECTOR_RULE;
use vitals_rules::{Rule, Scope, Severity};
use vitals_storage::event_store::EventStore;
use vitals_storage::{DurableBatch, Store};

mod anomaly_watch;
pub mod device_watch;
pub mod seizure_watch;

use crate::alert_store::AlertStore;
use crate::cohort_store::CohortStore;
use crate::config::{AlertingConfig, NotifyConfig};
use crate::rule_store::RuleStore;
use crate::shutdown::Shutdown;
use crate::telemetry::{CodeLabel, Telemetry};

/// How often reminders, escalations and stale-data windows are looked at.
const TICK_MS: i64 = 1_000;
/// Batches of durable samples (each at most `vitals_storage::FEED_BATCH_SAMPLES`) waiting
/// for the engine before ingest waits for it: 64 x 8192 samples, about 35 MB.
const DURABLE_QUEUE_BATCHES: usize = 64;
/// At most this many queued samples are evaluated together.
const MAX_DRAIN_SAMPLES: usize = 1 << 20;

/// What the alerting thread reads and writes: the stores, not the whole application.
pub struct Context {
    pub store: Arc<Store>,
    pub rules: Arc<RuleStore>,
    pub cohorts: Arc<CohortStore>,
    pub alerts: Arc<AlertStore>,
    pub events: Arc<EventStore>,
    pub erased: Arc<ErasedPatients>,
    pub alerting: AlertingConfig,
    pub notify: NotifyConfig,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<Telemetry>,
    /// Cluster mode: the buckets this node owns; only their patients are evaluated here.
    pub owns: Option<Arc<crate::cluster::ownership::Ownership>>,
    /// Device telemetry, for the stale-device alarm.
    pub devices: Arc<crate::devices::DeviceBook>,
}

/// Patients erased while the process runs, for the live engine to forget.
#[derive(Debug, Default)]
pub struct ErasedPatients {
    set: Mutex<BTreeSet<String>>,
    version: AtomicU64,
}

impl ErasedPatients {
    pub fn add(&self, patient: &str) {
        self.set.lock().insert(patient.to_owned());
        self.version.fetch_add(1, Ordering::AcqRel);
    }
    pub fn contains(&self, patient: &str) -> bool {
        let s = self.set.lock();
        !s.is_empty() && s.contains(patient)
    }
    pub fn all(&self) -> Vec<String> {
        self.set.lock().iter().cloned().collect()
    }
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// The rules in force, enabled, with cohort scopes turned into their members.
fn rules_in_force(app: &Context) -> Vec<Rule> {
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
        v.extend(
            vitals_rules::seizure::METRICS.iter().chain(&vitals_rules::autonomic::METRICS).filter_map(|m| c.id(m)),
        );
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
        vitals_rules::anomaly::DETECTOR_RULE.to_owned(),
        RuleInfo {
            severity: Severity::Warning,
            expr: "anomaly detector: nights off the person's own baseline (resting heart rate, with HRV, skin temperature, respiratory rate, SpO2, steps)".into(),
            description: Some("Nights off the person's normal".into()),
            metrics: vec!["resting_heart_rate".into()],
        },
    );
    m.insert(
        device_watch::DEVICE_STALE_RULE.to_owned(),
        RuleInfo {
            severity: Severity::Warning,
            expr: "stale-device alarm: a device not heard from for [alerting.devices] stale_after".into(),
            description: Some("A device went quiet".into()),
            metrics: Vec::new(),
        },
    );
    m.insert(
        DETECTOR_RULE.to_owned(),
        RuleInfo {
            severity: Severity::Urgent,
            expr: "seizure detectors: rhythmic 3-8 Hz wrist motion with tachycardia or an electrodermal surge; abrupt tachycardia with an electrodermal surge".into(),
            description: Some("Possible seizure (wrist motion, heart rate, electrodermal activity)".into()),
            metrics: vitals_rules::seizure::METRICS.iter().map(|m| (*m).to_owned()).collect(),
        },
    );
    m
}

/// Starts the engine if `[alerting] enabled`; it runs until `shutdown`.
pub fn spawn(app: Context, shutdown: Shutdown) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !app.alerting.enabled {
        return Ok(None);
    }
    let detector = app.alerting.seizure.enabled;
    let rx = app.store.subscribe_durable(&metric_ids(&rules_in_force(&app), detector), DURABLE_QUEUE_BATCHES);
    let thread =
        std::thread::Builder::new().name("alerting".into()).spawn(move || Live::new(app).run(&rx, &shutdown))?;
    Ok(Some(thread))
}

struct Live {
    app: Context,
    engine: Engine,
    detector: Option<seizure_watch::SeizureWatch>,
    anomalies: Option<anomaly_watch::AnomalyWatch>,
    devices: Option<device_watch::DeviceWatch>,
    rules: Vec<Rule>,
    info: HashMap<String, RuleInfo>,
    /// Reminder interval per rule that has one.
    renotify: HashMap<String, i64>,
    /// Versions of the rule and cohort stores the rules were resolved at.
    versions: (u64, u64),
    late_seen: u64,
    /// Version of the erased-patients set last applied.
    erased_seen: u64,
    /// Version of the cluster's bucket ownership last applied.
    owned_seen: u64,
}

impl Live {
    fn new(app: Context) -> Live {
        let cfg = &app.alerting;
        let engine = Engine::new(cfg.horizon.as_ms());
        let detector =
            cfg.seizure.enabled.then(|| seizure_watch::SeizureWatch::new(cfg.seizure.clone(), cfg.autonomic.clone()));
        Live {
            engine,
            detector,
            anomalies: cfg.anomaly.enabled.then(|| anomaly_watch::AnomalyWatch::new(cfg.anomaly.clone())),
            devices: cfg.devices.enabled.then(|| device_watch::DeviceWatch::new(cfg.devices.stale_after.as_ms())),
            rules: Vec::new(),
            info: HashMap::new(),
            renotify: HashMap::new(),
            versions: (u64::MAX, u64::MAX),
            late_seen: 0,
            erased_seen: 0,
            owned_seen: 0,
            app,
        }
    }

    fn run(mut self, rx: &std::sync::mpsc::Receiver<DurableBatch>, shutdown: &Shutdown) {
        self.refresh_rules(true);
        let mut last_tick = i64::MIN;
        while !shutdown.is_triggered() {
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
            self.refresh_ownership();
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
                self.watch_anomalies(now);
                self.watch_devices(now);
                self.remind(now);
                last_tick = now;
            }
            for b in &batches {
                self.app.telemetry.alert_eval_seconds.observe(b.at.elapsed().as_secs_f64());
            }
            let late = self.engine.late() + self.detector.as_ref().map_or(0, seizure_watch::SeizureWatch::late);
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
            if let Some(w) = &mut self.anomalies {
                w.forget_patient(&p);
            }
        }
    }

    /// Whether this node evaluates `patient` (always, but in cluster mode).
    fn evaluates(&self, patient: &str) -> bool {
        self.app.owns.as_ref().is_none_or(|o| o.owns(patient))
    }

    /// Cluster mode: when buckets came or went, the engine forgets the patients no longer
    /// evaluated here and re-reads the recent data of those that now are (their episodes
    /// found again, matched to the alerts already raised).
    fn refresh_ownership(&mut self) {
        let Some(o) = &self.app.owns else { return };
        let v = o.version();
        if v == self.owned_seen {
            return;
        }
        self.owned_seen = v;
        for (patient, _) in self.app.store.patients() {
            if !self.evaluates(patient.as_str()) {
                self.engine.forget_patient(patient.as_str());
                if let Some(d) = &mut self.detector {
                    d.forget_patient(patient.as_str());
                }
            }
        }
        self.prime();
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
        self.renotify = self.rules.iter().filter_map(|r| Some((r.spec.name.clone(), r.renotify_ms?))).collect();
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
        let horizon = self.app.alerting.horizon.as_ms();
        let lookback = self.rules.iter().map(Rule::lookback_ms).max().unwrap_or(0);
        let c = Catalog::standard();
        let mut metrics: Vec<&str> = self.rules.iter().flat_map(Rule::metric_list).map(|(m, _)| m.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        // Episodes of alerts still open are re-derived from their start, however old, so
        // that they are found again rather than raised twice.
        let mut oldest: HashMap<String, i64> = HashMap::new();
        let own_rule = |r: &str| {
            r != DETECTOR_RULE && r != vitals_rules::anomaly::DETECTOR_RULE && r != device_watch::DEVICE_STALE_RULE
        };
        for a in self.app.alerts.active().into_iter().filter(|a| own_rule(&a.rule)) {
            let e = oldest.entry(a.patient.clone()).or_insert(a.start_ms);
            *e = (*e).min(a.start_ms);
        }
        let mut changes = Vec::new();
        for (patient, last) in self.app.store.patients() {
            if !self.evaluates(patient.as_str()) {
                continue;
            }
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
        let orphan = |a: &Alert| {
            if !self.evaluates(&a.patient) {
                return false; // another node's
            }
            if a.rule == DETECTOR_RULE {
                return startup;
            }
            if a.rule == vitals_rules::anomaly::DETECTOR_RULE {
                return false; // the anomaly watch keeps its own
            }
            if a.rule == device_watch::DEVICE_STALE_RULE {
                return self.devices.is_none(); // the device watch keeps its own, while on
            }
            let in_force = self.rules.iter().any(|r| r.spec.name == a.rule && r.spec.scope.includes(&a.patient));
            let holds = || {
                self.engine.episodes(&a.rule, &a.patient).iter().any(|e| e.start == a.start_ms && e.cleared.is_none())
            };
            let orphan = !in_force || !holds();
            if orphan {
                tracing::info!(alert = %a.id, rule = %a.rule, patient = %a.patient, "alert closed: its rule or data no longer holds it");
            }
            orphan
        };
        let d = decision::reconcile(&*self.app.alerts, &orphan, now);
        self.commit(d);
    }

    fn ingest(&mut self, samples: &[&vitals_core::Sample], now: i64) -> Vec<Change> {
        let c = Catalog::standard();
        let mut by_patient: BTreeMap<&str, Vec<(&str, i64, f64)>> = BTreeMap::new();
        for s in samples {
            by_patient.entry(s.patient.as_str()).or_default().push((c.get(s.metric).code, s.time_ms, s.value));
        }
        let mut changes = Vec::new();
        for (patient, readings) in by_patient {
            if self.app.erased.contains(patient) || !self.evaluates(patient) {
                continue;
            }
            changes.extend(self.engine.ingest(&self.rules, patient, &readings, now));
            if let Some(d) = &mut self.detector {
                let motion: Vec<(&str, i64, f64)> =
                    readings.iter().copied().filter(|r| seizure_watch::SeizureWatch::reads(r.0)).collect();
                if !motion.is_empty() {
                    changes.extend(d.ingest(patient, &motion));
                }
            }
        }
        changes
    }

    /// Turns engine changes into alert versions and notices, committed as one record.
    fn handle(&mut self, changes: &[Change], now: i64) {
        let erased = &self.app.erased;
        let changes: Vec<Change> = changes.iter().filter(|c| !erased.contains(c.parts().1)).cloned().collect();
        if changes.is_empty() {
            return;
        }
        let engine = &self.engine;
        let latest = |patient: &str, metric: &str, at: i64| engine.latest(patient, metric, at);
        let cohorts = &self.app.cohorts;
        let in_cohort = |c: &str, p: &str| cohorts.contains(c, p);
        let policy = self.policy(&in_cohort);
        let d = decision::on_changes(&policy, &*self.app.alerts, &changes, &latest, now);
        self.commit(d);
    }

    /// The anomaly detector's changes (when a check is due), each decided with its
    /// anomaly's explanation as the alert's description.
    fn watch_anomalies(&mut self, now: i64) {
        let Some(mut w) = self.anomalies.take() else { return };
        let rule = vitals_rules::anomaly::DETECTOR_RULE;
        let alerts = &self.app.alerts;
        let recorded = |p: &str| -> Vec<Alert> {
            alerts.list(Some(p), None, i64::MIN, i64::MAX).into_iter().filter(|a| a.rule == rule).collect()
        };
        let evaluates = |p: &str| self.evaluates(p) && !self.app.erased.contains(p);
        let cohorts = &self.app.cohorts;
        let found =
            w.check(&self.app.store, &self.app.events, &recorded, &evaluates, &|c, p| cohorts.contains(c, p), now);
        self.anomalies = Some(w);
        self.decide_described(rule, found, now);
    }

    /// The stale-device alarm's changes (when a look is due), each with which device as
    /// the alert's description.
    fn watch_devices(&mut self, now: i64) {
        let Some(mut w) = self.devices.take() else { return };
        let evaluates = |p: &str| self.evaluates(p) && !self.app.erased.contains(p);
        let found = w.check(&self.app.devices, &evaluates, now);
        self.devices = Some(w);
        self.decide_described(device_watch::DEVICE_STALE_RULE, found, now);
    }

    /// Decides changes of one built-in rule, each with its own description.
    fn decide_described(&mut self, rule: &str, found: Vec<(Change, String)>, now: i64) {
        for (change, explanation) in found {
            let mut info = self.info.clone();
            if let Some(i) = info.get_mut(rule) {
                i.description = Some(explanation);
            }
            let cohorts = &self.app.cohorts;
            let in_cohort = |c: &str, p: &str| cohorts.contains(c, p);
            let policy = Policy { rules: &info, ..self.policy(&in_cohort) };
            let d = decision::on_changes(&policy, &*self.app.alerts, &[change], &|_, _, _| None, now);
            self.commit(d);
        }
    }

    fn policy<'a>(&'a self, in_cohort: &'a dyn Fn(&str, &str) -> bool) -> Policy<'a> {
        Policy {
            notify: &self.app.notify,
            rules: &self.info,
            renotify: &self.renotify,
            fresh_ms: self.app.alerting.fresh.as_ms(),
            in_cohort,
        }
    }

    /// Records a decision's alert versions and notices as one record, mirrors the alerts as
    /// events (so they can be charted with the data) and logs the transitions.
    fn commit(&self, d: Decision) {
        if d.is_empty() {
            return;
        }
        let alerts: Vec<Alert> = d.alerts.into_values().collect();
        let events: Vec<Event> = alerts.iter().map(Alert::to_event).collect();
        let notices: Vec<_> = d.notices.into_values().collect();
        // Cluster mode: alert versions are recorded only while this node still holds their
        // patients' buckets (a reminder or an escalation comes with its alert's new version;
        // operator notices, of no patient, are not fenced).
        let fence = match &self.app.owns {
            None => None,
            Some(o) => match o.fence(alerts.iter().map(|a| a.patient.as_str())) {
                Some(f) => Some(f),
                None => {
                    tracing::warn!("alerting: buckets lost before a decision was recorded; the new owner decides");
                    return;
                }
            },
        };
        if let Err(e) = self.app.alerts.commit_fenced(alerts, notices, fence.as_ref()) {
            tracing::error!(error = %e, "alerting: saving alerts");
            return;
        }
        if !events.is_empty()
            && let Err(e) = self.app.events.put(events)
        {
            tracing::error!(error = %e, "alerting: recording alerts as events");
        }
        for t in &d.transitions {
            log_transition(&self.app, t);
        }
    }

    /// Reminders (`renotify`) and escalations of open, unacknowledged, unsnoozed alerts
    /// (cluster mode: of the patients this node evaluates; each node reminds of its own).
    fn remind(&mut self, now: i64) {
        let cohorts = &self.app.cohorts;
        let in_cohort = |c: &str, p: &str| cohorts.contains(c, p);
        let evaluated = |p: &str| self.evaluates(p);
        let mine = Evaluated { all: &*self.app.alerts, keep: &evaluated };
        let d = decision::on_tick(&self.policy(&in_cohort), &mine, now);
        self.commit(d);
    }
}

/// The alerts of the patients this node evaluates.
struct Evaluated<'a> {
    all: &'a dyn decision::Alerts,
    keep: &'a dyn Fn(&str) -> bool,
}

impl decision::Alerts for Evaluated<'_> {
    fn get(&self, id: &str) -> Option<Alert> {
        self.all.get(id)
    }

    fn active(&self) -> Vec<Alert> {
        self.all.active().into_iter().filter(|a| (self.keep)(&a.patient)).collect()
    }

    fn has_notice(&self, id: &str) -> bool {
        self.all.has_notice(id)
    }
}

fn log_transition(app: &Context, t: &Transition) {
    let a = t.alert();
    let what = t.name();
    app.telemetry.alert_transitions.get_or_create(&CodeLabel { code: what.to_owned() }).inc();
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
