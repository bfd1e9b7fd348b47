//! Live evaluation: rules over each patient's stream, incrementally, giving the episodes a
//! backtest over the same readings gives, whatever the arrival order and batching within the
//! horizon.
//!
//! Per patient the engine keeps the recent readings of the metrics rules read; per rule
//! and patient, the state machine after the last evaluation point, and exact checkpoints of
//! it (after each point where it changed, and every [`CHECKPOINT_EVERY`] points) for points
//! not yet settled, so memory grows with episodes and a small fraction of points, not with
//! every point. New readings from time `s` on re-evaluate only the points at or after `s`
//! (in-order data: only the new points), starting from the machine state just before `s`
//! (rebuilt from the checkpoint before it); everything before is untouched, because a
//! point's value only depends on readings at or before it. Points
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

impl Change {
    /// The rule, the patient and the episode the change is about.
    pub fn parts(&self) -> (&str, &str, &Episode) {
        match self {
            Change::Opened { rule, patient, episode }
            | Change::Resolved { rule, patient, episode }
            | Change::Reopened { rule, patient, episode }
            | Change::Retracted { rule, patient, episode } => (rule, patient, episode),
        }
    }
}

/// A checkpoint at least this often (in evaluation points), so rebuilding the machine
/// state before an out-of-order reading looks at no more than this many points.
pub const CHECKPOINT_EVERY: usize = 64;

#[derive(Debug, Clone)]
struct RuleState {
    /// The machine after the last settled point.
    base: Machine,
    /// (point time, machine after it) at unsettled points where the machine changed (its
    /// kind, start or firing time) and at least every `checkpoint_every` points, in order.
    marks: Vec<(i64, Machine)>,
    /// The machine after the last evaluated point, and that point's time.
    current: Machine,
    last_point: Option<i64>,
    /// Points evaluated since the last mark.
    since_mark: usize,
    /// Episodes that closed at an unsettled point.
    closed: Vec<Episode>,
    /// Points up to here (inclusive) are evaluated.
    evaluated_to: i64,
    /// The rule as it was when this state began (its fingerprint); a changed rule starts over.
    fingerprint: u64,
    lookback_ms: i64,
}

/// Two machine states that differ at most in the time of their last point.
fn same_phase(a: &Machine, b: &Machine) -> bool {
    match (a, b) {
        (Machine::Firing { start: s1, fired: f1, .. }, Machine::Firing { start: s2, fired: f2, .. }) => {
            s1 == s2 && f1 == f2
        }
        _ => a == b,
    }
}

impl RuleState {
    fn new(rule: &Rule, from: i64) -> RuleState {
        RuleState {
            base: Machine::Idle,
            marks: Vec::new(),
            current: Machine::Idle,
            last_point: None,
            since_mark: 0,
            closed: Vec::new(),
            evaluated_to: from - 1,
            fingerprint: rule.fingerprint(),
            lookback_ms: rule.lookback_ms(),
        }
    }

    fn episodes(&self) -> Vec<Episode> {
        let mut v = self.closed.clone();
        v.extend(self.current.open());
        v
    }

    /// The machine after the last evaluation point before `start`: the mark before `start`
    /// (or the settled base), brought up to the last point since, which only changes a
    /// firing machine's `last`.
    fn before(&self, rule: &Rule, data: &BTreeMap<String, Series>, settled: i64, start: i64) -> Machine {
        match self.last_point {
            None => return self.base,
            Some(lp) if lp < start => return self.current,
            Some(_) => {}
        }
        let i = self.marks.partition_point(|m| m.0 < start);
        let (lo, mut m) = match i.checked_sub(1).map(|i| self.marks[i]) {
            Some((t, m)) => (t, m),
            None => (settled, self.base),
        };
        if let Machine::Firing { last, .. } = &mut m {
            let mut exprs = vec![&rule.expr];
            if let Some(c) = &rule.clear {
                exprs.push(c);
            }
            let view = view(data, rule.metric_list(), lo);
            if let Some(&q) = points(&exprs, &view, lo, start).last() {
                *last = q;
            }
        }
        m
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
    checkpoint_every: usize,
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
        Engine::with_checkpoints(horizon_ms, CHECKPOINT_EVERY)
    }

    /// An engine that marks a checkpoint at least every `every` points (tests use small
    /// values to exercise rebuilding machine states).
    pub fn with_checkpoints(horizon_ms: i64, every: usize) -> Engine {
        Engine { horizon_ms, patients: HashMap::new(), late: 0, checkpoint_every: every.max(1) }
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

    /// Forgets everything about a patient (after their erasure).
    pub fn forget_patient(&mut self, patient: &str) {
        self.patients.remove(patient);
    }

    /// Forgets the state of rules not in `rules` (removed ones).
    pub fn retain_rules(&mut self, rules: &[Rule]) {
        for p in self.patients.values_mut() {
            p.rules.retain(|name, _| rules.iter().any(|r| r.spec.name == *name));
        }
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
            Self::evaluate(p, rules, patient, from, now, self.checkpoint_every, &mut out);
        }
        Self::settle(p, rules, p.newest - self.horizon_ms);
        out
    }

    /// Evaluates the points that came due by `now` for every patient (stale-data windows).
    pub fn advance(&mut self, rules: &[Rule], now: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for (patient, p) in &mut self.patients {
            Self::evaluate(p, rules, patient, i64::MAX, now, self.checkpoint_every, &mut out);
        }
        out
    }

    /// Re-evaluates each rule in scope from `from` (or from where it stopped) up to `now`.
    fn evaluate(
        p: &mut PatientState,
        rules: &[Rule],
        patient: &str,
        from: i64,
        now: i64,
        every: usize,
        out: &mut Vec<Change>,
    ) {
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
            let mut m = st.before(rule, &p.data, settled, start);
            // An upper bound of the last point before `start` (exact after the loop if it
            // evaluates any): overstating it only sends a later call the slow way.
            let mut last_point = st.last_point.map(|_| start - 1);
            let keep = st.marks.partition_point(|s| s.0 < start);
            st.marks.truncate(keep);
            st.since_mark = 0;
            st.closed.retain(|e| e.cleared.is_some_and(|c| c < start));
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
                let prev = m;
                if let Some(e) = m.step(t, holds[i], c, rule.for_ms) {
                    st.closed.push(e);
                }
                st.since_mark += 1;
                if !same_phase(&prev, &m) || st.since_mark >= every {
                    st.marks.push((t, m));
                    st.since_mark = 0;
                }
                last_point = Some(t);
            }
            st.current = m;
            st.last_point = last_point;
            st.evaluated_to = now;
            diff(name, patient, &before, &st.episodes(), out);
        }
    }

    /// Makes points before `to` final and forgets what they no longer need.
    fn settle(p: &mut PatientState, rules: &[Rule], to: i64) {
        if to <= p.settled_to {
            return;
        }
        let settled = p.settled_to;
        let mut lookback = 0;
        for (name, st) in p.rules.iter_mut() {
            lookback = lookback.max(st.lookback_ms);
            let Some(rule) = rules.iter().find(|r| r.spec.name == *name) else { continue };
            // The exact machine after the last point before `to` becomes the base.
            st.base = st.before(rule, &p.data, settled, to);
            let n = st.marks.partition_point(|s| s.0 < to);
            st.marks.drain(..n);
            st.closed.retain(|e| e.cleared.is_none_or(|c| c >= to));
        }
        p.settled_to = to;
        // Keep what windows of unsettled points reach (and of the points since the first
        // mark, which rebuilding a machine state may look at), and each metric's last
        // reading before that (a metric alone is its latest reading, however old).
        for s in p.data.values_mut() {
            let cut = s.partition_point(|x| x.0 <= to - lookback);
            if cut > 1 {
                s.drain(..cut - 1);
            }
        }
    }
}
