//! Live evaluation: rules over each patient's stream, incrementally, giving the episodes a
//! backtest over the same readings gives, whatever the arrival order and batching within the
//! horizon.
//!
//! Per patient the engine keeps the recent readings of the metrics rules read; per rule
//! and patient, the state machine after each evaluation point not yet settled. New readings
//! from time `s` on re-evaluate only the points at or after `s` (in-order data: only the new
//! points), starting from the machine state just before `s`; everything before is
//! untouched, because a point's value only depends on readings at or before it. Points
//! later than `now` (a stale-data window still running) wait for [`Engine::advance`].
//! Points older than the patient's newest reading minus the horizon are settled: readings
//! that old arrive too late to change alerts and are counted in [`Engine::late`]. Settling
//! follows the data, not the clock, so a backfill of old history is evaluated too.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::eval::{Episode, Machine, Series, points, truths};
use crate::rule::Rule;

/// What changed about a rule's episodes for a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum Change {
    /// A new episode fired.
    Opened { rule: String, patient: String, episode: Episode },
    /// An episode cleared (again, at another time, if late readings moved its end).
    Resolved { rule: String, patient: String, episode: Episode },
    /// A closed episode holds again (late readings changed the past).
    Reopened { rule: String, patient: String, episode: Episode },
    /// An episode that late readings show never happened.
    Retracted { rule: String, patient: String, episode: Episode },
}

#[derive(Debug, Clone)]
struct RuleState {
    /// The machine before the first unsettled step.
    base: Machine,
    /// (point time, machine after it) for points not yet settled, in time order.
    steps: Vec<(i64, Machine)>,
    /// Episodes that closed at an unsettled point.
    closed: Vec<Episode>,
    /// Points up to here (inclusive) are evaluated.
    evaluated_to: i64,
    /// The rule as it was when this state began (its fingerprint); a changed rule starts over.
    fingerprint: u64,
    lookback_ms: i64,
}

impl RuleState {
    fn new(rule: &Rule, from: i64) -> RuleState {
        RuleState {
            base: Machine::Idle,
            steps: Vec::new(),
            closed: Vec::new(),
            evaluated_to: from - 1,
            fingerprint: rule.fingerprint(),
            lookback_ms: rule.lookback_ms(),
        }
    }

    fn episodes(&self) -> Vec<Episode> {
        let mut v = self.closed.clone();
        let m = self.steps.last().map_or(self.base, |s| s.1);
        v.extend(m.open());
        v
    }
}

#[derive(Debug, Default)]
struct PatientState {
    data: BTreeMap<String, Series>,
    rules: HashMap<String, RuleState>,
    /// Points before this are final.
    settled_to: i64,
    /// The newest reading's time: settling follows the data, so a backfill of old history
    /// is evaluated like live data.
    newest: i64,
}

/// The live rule evaluator.
#[derive(Debug)]
pub struct Engine {
    horizon_ms: i64,
    patients: HashMap<String, PatientState>,
    late: u64,
}

fn diff(rule: &str, patient: &str, before: &[Episode], after: &[Episode], out: &mut Vec<Change>) {
    let find = |v: &[Episode], start: i64| v.iter().find(|e| e.start == start).cloned();
    let mk = |episode: Episode| (rule.to_owned(), patient.to_owned(), episode);
    for a in after {
        match find(before, a.start) {
            None => {
                let (rule, patient, episode) = mk(a.clone());
                out.push(Change::Opened {
                    rule: rule.clone(),
                    patient: patient.clone(),
                    episode: Episode { cleared: None, ..a.clone() },
                });
                if a.cleared.is_some() {
                    out.push(Change::Resolved { rule, patient, episode });
                }
            }
            // Newly cleared, or (late readings) cleared at another time.
            Some(b) if a.cleared.is_some() && b.cleared != a.cleared => {
                let (rule, patient, episode) = mk(a.clone());
                out.push(Change::Resolved { rule, patient, episode });
            }
            Some(b) if b.cleared.is_some() && a.cleared.is_none() => {
                let (rule, patient, episode) = mk(a.clone());
                out.push(Change::Reopened { rule, patient, episode });
            }
            Some(_) => {}
        }
    }
    for b in before {
        if find(after, b.start).is_none() {
            let (rule, patient, episode) = mk(b.clone());
            out.push(Change::Retracted { rule, patient, episode });
        }
    }
}

/// The readings of `metrics` that evaluation points at or after `start` depend on: those
/// inside the longest window, and the last one before (a metric alone is its latest
/// reading).
fn view(data: &BTreeMap<String, Series>, metrics: &[(String, i64)], start: i64) -> BTreeMap<String, Series> {
    let mut out = BTreeMap::new();
    for (m, w) in metrics {
        let Some(s) = data.get(m) else { continue };
        let cut = s.partition_point(|x| x.0 <= start - w);
        out.insert(m.clone(), s[cut.saturating_sub(1)..].to_vec());
    }
    out
}

impl Engine {
    /// `horizon_ms`: how late a reading may arrive and still change alerts.
    pub fn new(horizon_ms: i64) -> Engine {
        Engine { horizon_ms, patients: HashMap::new(), late: 0 }
    }

    /// Readings that arrived after their time was settled.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The current episodes (closed but not yet settled, and open) of a rule for a patient.
    pub fn episodes(&self, rule: &str, patient: &str) -> Vec<Episode> {
        self.patients.get(patient).and_then(|p| p.rules.get(rule)).map_or_else(Vec::new, RuleState::episodes)
    }

    /// The latest reading of `metric` at or before `at` that the engine holds.
    pub fn latest(&self, patient: &str, metric: &str, at: i64) -> Option<f64> {
        let s = self.patients.get(patient)?.data.get(metric)?;
        let i = s.partition_point(|x| x.0 <= at);
        i.checked_sub(1).map(|i| s[i].1)
    }

    /// Forgets the state of rules not in `rules` (removed ones).
    pub fn retain_rules(&mut self, rules: &[Rule]) {
        for p in self.patients.values_mut() {
            p.rules.retain(|name, _| rules.iter().any(|r| r.spec.name == *name));
        }
    }

    /// Patients the engine holds state for.
    pub fn patients(&self) -> usize {
        self.patients.len()
    }

    /// Takes durable readings `(metric, time, value)` of one patient and evaluates what they
    /// change, up to `now`.
    pub fn ingest(&mut self, rules: &[Rule], patient: &str, readings: &[(&str, i64, f64)], now: i64) -> Vec<Change> {
        let in_scope: Vec<&Rule> = rules.iter().filter(|r| r.spec.enabled && r.spec.scope.includes(patient)).collect();
        if in_scope.is_empty() {
            return Vec::new();
        }
        if !self.patients.contains_key(patient) {
            self.patients.insert(patient.to_owned(), PatientState::default());
        }
        let Some(p) = self.patients.get_mut(patient) else { return Vec::new() };
        let mut from = i64::MAX;
        for &(metric, t, v) in readings {
            if !in_scope.iter().any(|r| r.reads(metric)) {
                continue;
            }
            if !p.data.contains_key(metric) {
                p.data.insert(metric.to_owned(), Series::new());
            }
            let Some(s) = p.data.get_mut(metric) else { continue };
            if t < p.settled_to {
                // Too late to change settled points; still part of the windows of later
                // ones, as a backtest would see it. A reading already held is no news.
                if let Err(i) = s.binary_search_by_key(&t, |x| x.0) {
                    s.insert(i, (t, v));
                    self.late += 1;
                }
                continue;
            }
            match s.binary_search_by_key(&t, |x| x.0) {
                Ok(i) => s[i].1 = v,
                Err(i) => s.insert(i, (t, v)),
            }
            from = from.min(t);
            p.newest = p.newest.max(t);
        }
        let mut out = Vec::new();
        if from != i64::MAX {
            Self::evaluate(p, rules, patient, from, now, &mut out);
        }
        Self::settle(p, p.newest - self.horizon_ms);
        out
    }

    /// Evaluates the points that came due by `now` for every patient (stale-data windows).
    pub fn advance(&mut self, rules: &[Rule], now: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for (patient, p) in &mut self.patients {
            Self::evaluate(p, rules, patient, i64::MAX, now, &mut out);
        }
        out
    }

    /// Re-evaluates each rule in scope from `from` (or from where it stopped) up to `now`.
    fn evaluate(p: &mut PatientState, rules: &[Rule], patient: &str, from: i64, now: i64, out: &mut Vec<Change>) {
        for rule in rules.iter().filter(|r| r.spec.enabled && r.spec.scope.includes(patient)) {
            let name = &rule.spec.name;
            let settled = p.settled_to;
            if !p.rules.contains_key(name) {
                p.rules.insert(name.clone(), RuleState::new(rule, settled));
            }
            let Some(st) = p.rules.get_mut(name) else { continue };
            if st.fingerprint != rule.fingerprint() {
                *st = RuleState::new(rule, settled);
            }
            let start = from.min(st.evaluated_to + 1).max(settled);
            if start > now {
                continue;
            }
            let before = st.episodes();
            let keep = st.steps.partition_point(|s| s.0 < start);
            st.steps.truncate(keep);
            st.closed.retain(|e| e.cleared.is_some_and(|c| c < start));
            let mut m = st.steps.last().map_or(st.base, |s| s.1);
            let mut exprs = vec![&rule.expr];
            if let Some(c) = &rule.clear {
                exprs.push(c);
            }
            // Only the readings that points from `start` on can see: in-order data costs
            // the window, not the history held.
            let data = view(&p.data, rule.metric_list(), start);
            let times = points(&exprs, &data, start, now.saturating_add(1));
            let holds = truths(&rule.expr, &data, &times);
            let clears = rule.clear.as_ref().map(|c| truths(c, &data, &times));
            for (i, &t) in times.iter().enumerate() {
                let c = clears.as_ref().map(|c| c[i]);
                if let Some(e) = m.step(t, holds[i], c, rule.for_ms) {
                    st.closed.push(e);
                }
                st.steps.push((t, m));
            }
            st.evaluated_to = now;
            diff(name, patient, &before, &st.episodes(), out);
        }
    }

    /// Makes points before `to` final and forgets what they no longer need.
    fn settle(p: &mut PatientState, to: i64) {
        if to <= p.settled_to {
            return;
        }
        p.settled_to = to;
        let mut lookback = 0;
        for st in p.rules.values_mut() {
            lookback = lookback.max(st.lookback_ms);
            let n = st.steps.partition_point(|s| s.0 < to);
            if n > 0 {
                st.base = st.steps[n - 1].1;
                st.steps.drain(..n);
            }
            st.closed.retain(|e| e.cleared.is_none_or(|c| c >= to));
        }
        // Keep what windows of unsettled points reach, and each metric's last reading
        // before that (a metric alone is its latest reading, however old).
        for s in p.data.values_mut() {
            let cut = s.partition_point(|x| x.0 <= to - lookback);
            if cut > 1 {
                s.drain(..cut - 1);
            }
        }
    }
}
