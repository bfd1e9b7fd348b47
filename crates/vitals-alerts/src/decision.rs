//! What is decided about alerts, as pure functions of (changes, current alerts, policy,
//! now) -> (alert versions, notices):
//!
//! - [`on_changes`]: engine changes become alert versions ([`plan`]); a new alert is
//!   suppressed by a higher-severity active alert of the patient on a shared metric, and
//!   suppresses lower ones; alerts fresh enough to page are routed to every matching
//!   subscription; resolutions and retractions are announced to those told of the alert
//!   (the all-clear where the subscription wants it) and release what they suppressed;
//!   a reopened alert reminds.
//! - [`on_tick`]: reminders (`renotify`) and escalation of open, unacknowledged, unsnoozed
//!   urgent alerts down each subscription's chain.
//! - [`reconcile`]: open alerts that no longer hold (their rule or data is gone) resolve.
//!
//! Quiet hours are applied when a notice is made ([`notice::make`]). Notices already in the
//! outbox (same id) are never made twice, so deciding again after a crash is harmless.

use std::collections::{BTreeMap, HashMap};

use vitals_core::Catalog;
use vitals_rules::Severity;
use vitals_rules::live::Change;

use crate::alert::{Alert, AlertState, RuleInfo, Transition, alert_id, plan};
use crate::config::NotifyConfig;
use crate::notice::{self, Notice, NoticeKind};

/// The alerts as they stand (the alert store, or a map in tests).
pub trait Alerts {
    /// The current version of an alert.
    fn get(&self, id: &str) -> Option<Alert>;
    /// Alerts still going on (open or acknowledged).
    fn active(&self) -> Vec<Alert>;
    /// Whether a notice with this id was already made.
    fn has_notice(&self, id: &str) -> bool;
}

/// What decisions depend on besides the alerts themselves.
pub struct Policy<'a> {
    /// Contacts and subscriptions.
    pub notify: &'a NotifyConfig,
    /// The rules in force, by name.
    pub rules: &'a HashMap<String, RuleInfo>,
    /// Reminder interval per rule name (`renotify`), for rules that have one.
    pub renotify: &'a HashMap<String, i64>,
    /// Alerts that fire on data older than this are recorded but page no one (backfills).
    pub fresh_ms: i64,
    /// Whether a patient (second) is a member of a cohort (first).
    pub in_cohort: &'a dyn Fn(&str, &str) -> bool,
}

/// Alert versions and notices to record together, and what happened, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decision {
    pub alerts: BTreeMap<String, Alert>,
    /// None of them already in the outbox.
    pub notices: BTreeMap<String, Notice>,
    pub transitions: Vec<Transition>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.notices.is_empty()
    }

    /// Drops notices already made.
    fn without_known_notices(mut self, current: &dyn Alerts) -> Decision {
        self.notices.retain(|id, _| !current.has_notice(id));
        self
    }
}

/// Notices of `kind` about `a` to every matching subscription's recipients at their
/// escalation level.
fn route(p: &Policy<'_>, a: &Alert, kind: NoticeKind, seq: &str, now: i64, out: &mut BTreeMap<String, Notice>) {
    for (i, s) in p.notify.subscriptions.iter().enumerate() {
        if !s.matches(a, p.in_cohort) || (kind == NoticeKind::Resolved && !s.all_clear) {
            continue;
        }
        let level = a.escalations.get(&s.name_or(i)).copied().unwrap_or(0) as usize;
        notice::make(p.notify, a, kind, seq, s, &notice::recipients(s, level), now, out);
    }
}

/// Turns engine changes into alert versions and notices. `latest(patient, metric, at)` is
/// the latest reading at or before `at`, put in a new alert's values.
pub fn on_changes(
    p: &Policy<'_>,
    current: &dyn Alerts,
    changes: &[Change],
    latest: &dyn Fn(&str, &str, i64) -> Option<f64>,
    now: i64,
) -> Decision {
    let mut d = Decision::default();
    // Higher severities first, so that within one batch they suppress lower ones.
    let mut order: Vec<&Change> = changes.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse(p.rules.get(c.parts().0).map(|i| i.severity)));
    for c in order {
        let (rule, patient, ep) = c.parts();
        let info = p.rules.get(rule).cloned().unwrap_or_default();
        let id = alert_id(rule, patient, ep.start);
        let existing = d.alerts.get(&id).cloned().or_else(|| current.get(&id));
        let Some(t) = plan(c, existing, &info, now, p.fresh_ms) else { continue };
        let mut a = t.alert().clone();
        match &t {
            Transition::Opened(_) => {
                for m in &a.metrics {
                    if let Some(v) = latest(&a.patient, m, a.fired_ms) {
                        let unit = Catalog::standard().by_code(m).map_or("", |x| x.unit);
                        a.values.insert(m.clone(), (v, unit.to_owned()));
                    }
                }
                suppress(current, &mut a, &mut d.alerts);
                if a.page && a.suppressed_by.is_none() {
                    route(p, &a, NoticeKind::Opened, "0", now, &mut d.notices);
                    a.notified = true;
                    a.last_notified_ms = Some(now);
                }
            }
            Transition::Resolved(_) | Transition::Retracted(_) => {
                let kind =
                    if matches!(t, Transition::Resolved(_)) { NoticeKind::Resolved } else { NoticeKind::Retracted };
                if a.notified {
                    route(p, &a, kind, &a.cleared_ms.unwrap_or(a.end_ms).to_string(), now, &mut d.notices);
                }
                release(p, current, &a, now, &mut d.alerts, &mut d.notices);
            }
            Transition::Reopened(_) => {
                if a.page && a.suppressed_by.is_none() && a.notified {
                    route(p, &a, NoticeKind::Reminder, &format!("reopened-{now}"), now, &mut d.notices);
                }
            }
        }
        d.alerts.insert(a.id.clone(), a.clone());
        d.transitions.push(t.with_alert(a));
    }
    d.without_known_notices(current)
}

/// The patient's active alerts, with this round's versions in place of the stored ones.
fn active_of(current: &dyn Alerts, patient: &str, changed: &BTreeMap<String, Alert>) -> BTreeMap<String, Alert> {
    let mut active: BTreeMap<String, Alert> =
        current.active().into_iter().filter(|x| x.patient == patient).map(|x| (x.id.clone(), x)).collect();
    for (id, x) in changed.iter().filter(|(_, x)| x.patient == patient) {
        active.insert(id.clone(), x.clone());
    }
    active
}

/// A higher-severity active alert of the patient on a shared metric suppresses `a`; `a`
/// suppresses lower ones.
fn suppress(current: &dyn Alerts, a: &mut Alert, changed: &mut BTreeMap<String, Alert>) {
    let active = active_of(current, &a.patient, changed);
    let shares = |x: &Alert| {
        x.id != a.id && x.patient == a.patient && x.state.active() && x.metrics.iter().any(|m| a.metrics.contains(m))
    };
    if let Some(top) = active.values().filter(|x| shares(x) && x.severity > a.severity).max_by_key(|x| x.severity) {
        a.suppressed_by = Some(top.id.clone());
        return;
    }
    for x in active.values().filter(|x| shares(x) && x.severity < a.severity && x.suppressed_by.is_none()) {
        changed
            .insert(x.id.clone(), Alert { suppressed_by: Some(a.id.clone()), updated_ms: a.updated_ms, ..x.clone() });
    }
}

/// Alerts that `a` suppressed stand on their own again; those never announced are now.
fn release(
    p: &Policy<'_>,
    current: &dyn Alerts,
    a: &Alert,
    now: i64,
    changed: &mut BTreeMap<String, Alert>,
    notices: &mut BTreeMap<String, Notice>,
) {
    // Held by `a` as stored, or as changed this round (this round's version wins).
    let mut held: Vec<Alert> =
        current.active().into_iter().filter(|x| x.suppressed_by.as_deref() == Some(&a.id)).collect();
    for x in changed.values().filter(|x| x.patient == a.patient) {
        if x.suppressed_by.as_deref() == Some(&a.id) && x.state.active() && !held.iter().any(|h| h.id == x.id) {
            held.push(x.clone());
        }
    }
    for x in held {
        let x = changed.get(&x.id).cloned().unwrap_or(x);
        let mut x = Alert { suppressed_by: None, updated_ms: now, ..x };
        if x.page && !x.notified && x.state == AlertState::Open {
            route(p, &x, NoticeKind::Opened, "0", now, notices);
            x.notified = true;
            x.last_notified_ms = Some(now);
        }
        changed.insert(x.id.clone(), x);
    }
}

/// Reminders (`renotify`) and escalations of open, unacknowledged, unsnoozed alerts.
pub fn on_tick(p: &Policy<'_>, current: &dyn Alerts, now: i64) -> Decision {
    let mut d = Decision::default();
    for a in current.active() {
        if !a.wants_attention(now) {
            continue;
        }
        let mut a2 = a.clone();
        for (i, s) in p.notify.subscriptions.iter().enumerate() {
            let (Some(after), true) = (s.escalate_after, a.severity == Severity::Urgent) else { continue };
            if !s.matches(&a, p.in_cohort) || s.escalation.is_empty() {
                continue;
            }
            let reached = (((now - a.fired_ms) / after.as_ms().max(1)) as usize).min(s.escalation.len());
            let name = s.name_or(i);
            let before = a.escalations.get(&name).copied().unwrap_or(0) as usize;
            if reached > before {
                let next: Vec<&str> = s.escalation[before..reached].iter().map(String::as_str).collect();
                notice::make(p.notify, &a, NoticeKind::Escalated, &reached.to_string(), s, &next, now, &mut d.notices);
                a2.escalations.insert(name, reached as u32);
                a2.last_notified_ms = Some(now);
            }
        }
        if let Some(&every) = p.renotify.get(a.rule.as_str())
            && now - a.last_notified_ms.unwrap_or(a.fired_ms) >= every
        {
            a2.reminders += 1;
            a2.last_notified_ms = Some(now);
            // To those told so far: a contact escalated to at this tick just heard.
            route(p, &a, NoticeKind::Reminder, &a2.reminders.to_string(), now, &mut d.notices);
        }
        if a2 != a {
            a2.updated_ms = now;
            d.alerts.insert(a2.id.clone(), a2);
        }
    }
    d.without_known_notices(current)
}

/// Resolves the active alerts for which `orphan` holds (their rule was removed or changed,
/// their data is gone), without notices.
pub fn reconcile(current: &dyn Alerts, orphan: &dyn Fn(&Alert) -> bool, now: i64) -> Decision {
    let mut d = Decision::default();
    for a in current.active().into_iter().filter(|a| orphan(a)) {
        let a = Alert { state: AlertState::Resolved, cleared_ms: Some(now), updated_ms: now, ..a };
        d.alerts.insert(a.id.clone(), a);
    }
    d
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use vitals_core::DurationMs;
    use vitals_rules::eval::Episode;

    use super::*;
    use crate::notice::{Channel, Contact, NoticeState, Subscription};

    const MIN: i64 = 60_000;
    const T0: i64 = 1_763_780_400_000; // 2025-11-22T03:00:00Z

    /// The alerts as they stand: a map, and the ids of notices made.
    #[derive(Default)]
    struct Book {
        alerts: BTreeMap<String, Alert>,
        notices: BTreeSet<String>,
    }

    impl Alerts for Book {
        fn get(&self, id: &str) -> Option<Alert> {
            self.alerts.get(id).cloned()
        }
        fn active(&self) -> Vec<Alert> {
            self.alerts.values().filter(|a| a.state.active()).cloned().collect()
        }
        fn has_notice(&self, id: &str) -> bool {
            self.notices.contains(id)
        }
    }

    impl Book {
        fn apply(&mut self, d: &Decision) {
            self.alerts.extend(d.alerts.clone());
            self.notices.extend(d.notices.keys().cloned());
        }
    }

    fn info(severity: Severity, metrics: &[&str]) -> RuleInfo {
        RuleInfo {
            severity,
            expr: "x".into(),
            description: None,
            metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    fn rules() -> HashMap<String, RuleInfo> {
        [
            ("high", info(Severity::Warning, &["blood_glucose"])),
            ("very_high", info(Severity::Urgent, &["blood_glucose"])),
            ("tachy", info(Severity::Warning, &["heart_rate"])),
            ("note", info(Severity::Info, &["blood_glucose"])),
        ]
        .into_iter()
        .map(|(n, i)| (n.to_owned(), i))
        .collect()
    }

    fn contact(name: &str) -> Contact {
        Contact { name: name.into(), console: true, ..Contact::default() }
    }

    fn notify(subscriptions: Vec<Subscription>) -> NotifyConfig {
        NotifyConfig {
            contacts: ["ann", "bob", "cat", "dan"].into_iter().map(contact).collect(),
            subscriptions,
            ..NotifyConfig::default()
        }
    }

    fn sub(contacts: &[&str]) -> Subscription {
        Subscription { contacts: contacts.iter().map(|c| (*c).to_owned()).collect(), ..Subscription::default() }
    }

    fn ep(start: i64, cleared: Option<i64>) -> Episode {
        Episode { start, fired: start, end: cleared.map_or(start, |c| c - MIN), cleared }
    }

    fn opened(rule: &str, patient: &str, start: i64) -> Change {
        Change::Opened { rule: rule.into(), patient: patient.into(), episode: ep(start, None) }
    }

    fn resolved(rule: &str, patient: &str, start: i64, at: i64) -> Change {
        Change::Resolved { rule: rule.into(), patient: patient.into(), episode: ep(start, Some(at)) }
    }

    fn no_reading(_: &str, _: &str, _: i64) -> Option<f64> {
        None
    }

    fn no_cohort(_: &str, _: &str) -> bool {
        false
    }

    /// (contact, kind) of every notice, sorted.
    fn told(d: &Decision) -> Vec<(String, NoticeKind)> {
        let mut v: Vec<(String, NoticeKind)> = d.notices.values().map(|n| (n.contact.clone(), n.kind)).collect();
        v.sort_by_key(|(c, k)| (c.clone(), format!("{k:?}")));
        v
    }

    struct World {
        notify: NotifyConfig,
        rules: HashMap<String, RuleInfo>,
        renotify: HashMap<String, i64>,
        book: Book,
    }

    impl World {
        fn new(subscriptions: Vec<Subscription>) -> World {
            World { notify: notify(subscriptions), rules: rules(), renotify: HashMap::new(), book: Book::default() }
        }

        /// Decides with this world's policy, then records the decision in the book.
        fn decide(&mut self, f: impl FnOnce(&Policy<'_>, &Book) -> Decision) -> Decision {
            let policy = Policy {
                notify: &self.notify,
                rules: &self.rules,
                renotify: &self.renotify,
                fresh_ms: 10 * MIN,
                in_cohort: &no_cohort,
            };
            let d = f(&policy, &self.book);
            self.book.apply(&d);
            d
        }

        fn changes(&mut self, changes: &[Change], now: i64) -> Decision {
            self.decide(|p, book| on_changes(p, book, changes, &no_reading, now))
        }

        fn tick(&mut self, now: i64) -> Decision {
            self.decide(|p, book| on_tick(p, book, now))
        }

        fn alert(&self, rule: &str, start: i64) -> Alert {
            self.book.get(&alert_id(rule, "p-1", start)).expect("alert")
        }
    }

    #[test]
    fn suppression_by_severity_on_shared_metrics() {
        // (first rule, second rule, second suppressed?, first suppressed by the second?)
        let cases = [
            ("very_high", "high", true, false),
            ("high", "very_high", false, true),
            ("high", "tachy", false, false), // no shared metric
            ("high", "high2", false, false), // same severity: neither
        ];
        for (first, second, second_held, first_held) in cases {
            let mut w = World::new(vec![sub(&["ann"])]);
            w.rules.insert("high2".into(), info(Severity::Warning, &["blood_glucose"]));
            w.changes(&[opened(first, "p-1", T0)], T0);
            let d = w.changes(&[opened(second, "p-1", T0 + MIN)], T0 + MIN);
            let (a1, a2) = (w.alert(first, T0), w.alert(second, T0 + MIN));
            assert_eq!(a2.suppressed_by.is_some(), second_held, "{first} then {second}: second");
            assert_eq!(a1.suppressed_by.is_some(), first_held, "{first} then {second}: first");
            // A suppressed alert pages no one.
            assert_eq!(d.notices.is_empty(), second_held, "{first} then {second}: {:?}", told(&d));
        }
    }

    #[test]
    fn within_one_batch_the_higher_severity_wins_whatever_the_order() {
        let mut w = World::new(vec![sub(&["ann"])]);
        let d = w.changes(&[opened("high", "p-1", T0), opened("very_high", "p-1", T0)], T0);
        assert_eq!(w.alert("high", T0).suppressed_by, Some(alert_id("very_high", "p-1", T0)));
        assert_eq!(d.notices.values().filter(|n| n.kind == NoticeKind::Opened).count(), 1);
        assert_eq!(d.transitions.iter().map(Transition::name).collect::<Vec<_>>(), ["opened", "opened"]);
    }

    #[test]
    fn resolving_the_suppressor_releases_and_announces_the_held_alert() {
        let mut w = World::new(vec![sub(&["ann"])]);
        w.changes(&[opened("very_high", "p-1", T0)], T0);
        w.changes(&[opened("high", "p-1", T0 + MIN)], T0 + MIN);
        let d = w.changes(&[resolved("very_high", "p-1", T0, T0 + 5 * MIN)], T0 + 5 * MIN);
        assert_eq!(
            told(&d),
            [("ann".to_owned(), NoticeKind::Opened), ("ann".to_owned(), NoticeKind::Resolved)],
            "the all-clear of the urgent one, then the held warning at last"
        );
        let held = w.alert("high", T0 + MIN);
        assert_eq!((held.suppressed_by, held.notified), (None, true));
        assert_eq!(w.alert("very_high", T0).state, AlertState::Resolved);
    }

    #[test]
    fn routing_follows_subscriptions_and_the_all_clear() {
        let warn_only = Subscription { severities: vec![Severity::Warning], ..sub(&["bob"]) };
        let other_patient = Subscription { patients: vec!["p-2".into()], ..sub(&["cat"]) };
        let no_all_clear = Subscription { all_clear: false, ..sub(&["dan"]) };
        let by_rule = Subscription { rules: vec!["tachy".into()], ..sub(&["cat"]) };
        let mut w = World::new(vec![sub(&["ann"]), warn_only, other_patient, no_all_clear, by_rule]);
        let opened_d = w.changes(&[opened("very_high", "p-1", T0)], T0);
        let names = |d: &Decision| told(d).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(names(&opened_d), ["ann", "dan"]);
        let resolved_d = w.changes(&[resolved("very_high", "p-1", T0, T0 + 3 * MIN)], T0 + 3 * MIN);
        assert_eq!(names(&resolved_d), ["ann"], "dan does not want the all-clear");
        assert!(resolved_d.notices.values().all(|n| n.kind == NoticeKind::Resolved));
    }

    #[test]
    fn backfilled_alerts_are_recorded_but_page_no_one() {
        let mut w = World::new(vec![sub(&["ann"])]);
        let d = w.changes(&[opened("high", "p-1", T0 - 60 * MIN)], T0);
        let a = w.alert("high", T0 - 60 * MIN);
        assert_eq!((a.page, a.notified, d.notices.len()), (false, false, 0));
        let d = w.changes(&[resolved("high", "p-1", T0 - 60 * MIN, T0 - 50 * MIN)], T0);
        assert!(d.notices.is_empty(), "nobody was told it opened, so nobody hears it resolved");
    }

    #[test]
    fn an_alert_raised_before_is_not_raised_again_and_notices_are_not_made_twice() {
        let mut w = World::new(vec![sub(&["ann"])]);
        w.changes(&[opened("high", "p-1", T0)], T0);
        // The engine re-derives the same episode after a restart.
        let d = w.changes(&[opened("high", "p-1", T0)], T0 + MIN);
        assert!(d.is_empty() && d.transitions.is_empty());
        // A reopened episode reminds those told of it.
        w.changes(&[resolved("high", "p-1", T0, T0 + 2 * MIN)], T0 + 2 * MIN);
        let reopen = Change::Reopened { rule: "high".into(), patient: "p-1".into(), episode: ep(T0, None) };
        let d = w.changes(std::slice::from_ref(&reopen), T0 + 3 * MIN);
        assert_eq!(told(&d), [("ann".to_owned(), NoticeKind::Reminder)]);
        assert_eq!(w.alert("high", T0).state, AlertState::Open);
    }

    #[test]
    fn urgent_alerts_escalate_down_the_chain_until_acknowledged() {
        let chain = Subscription {
            escalate_after: Some(DurationMs(5 * MIN)),
            escalation: vec!["bob".into(), "cat".into()],
            ..sub(&["ann"])
        };
        // (minutes after firing, acknowledged or snoozed before, who is told at that tick)
        let cases: [(i64, &str, &[&str]); 6] =
            [(4, "", &[]), (5, "", &["bob"]), (9, "", &[]), (12, "", &["cat"]), (20, "", &[]), (5, "acked", &[])];
        let mut w = World::new(vec![chain.clone()]);
        w.changes(&[opened("very_high", "p-1", T0)], T0);
        for (minutes, before, who) in cases {
            if before == "acked" {
                w = World::new(vec![chain.clone()]);
                w.changes(&[opened("very_high", "p-1", T0)], T0);
                let mut a = w.alert("very_high", T0);
                a.state = AlertState::Acknowledged;
                w.book.alerts.insert(a.id.clone(), a);
            }
            let d = w.tick(T0 + minutes * MIN);
            let got: Vec<String> = told(&d).into_iter().map(|(c, _)| c).collect();
            assert_eq!(got, who, "at {minutes} min ({before})");
            assert!(d.notices.values().all(|n| n.kind == NoticeKind::Escalated));
        }
        // Warnings never escalate.
        let mut w = World::new(vec![chain]);
        w.changes(&[opened("high", "p-1", T0)], T0);
        assert!(w.tick(T0 + 30 * MIN).notices.is_empty());
    }

    #[test]
    fn reminders_repeat_every_renotify_until_snoozed() {
        let mut w = World::new(vec![sub(&["ann"])]);
        w.renotify.insert("high".into(), 10 * MIN);
        w.changes(&[opened("high", "p-1", T0)], T0);
        // (minutes after firing, reminders sent so far)
        for (minutes, reminders) in [(5, 0), (10, 1), (15, 1), (20, 2)] {
            w.tick(T0 + minutes * MIN);
            assert_eq!(w.alert("high", T0).reminders, reminders, "at {minutes} min");
        }
        let mut a = w.alert("high", T0);
        a.snoozed_until_ms = Some(T0 + 60 * MIN);
        w.book.alerts.insert(a.id.clone(), a);
        assert!(w.tick(T0 + 40 * MIN).is_empty(), "snoozed");
        assert_eq!(w.tick(T0 + 60 * MIN).notices.len(), 1, "the snooze ended");
    }

    #[test]
    fn quiet_hours_hold_non_urgent_notices_until_they_end() {
        // T0 is 03:00 UTC: inside 22:00-07:00.
        let quiet = Subscription { quiet_hours: Some("22:00-07:00".into()), ..sub(&["ann"]) };
        // (rule, when the notice may go)
        for (rule, due) in [("high", T0 + 4 * 60 * MIN), ("very_high", T0), ("note", T0 + 4 * 60 * MIN)] {
            let mut w = World::new(vec![quiet.clone()]);
            let d = w.changes(&[opened(rule, "p-1", T0)], T0);
            let n = d.notices.values().next().expect("a notice");
            assert_eq!((n.next_ms, n.state, n.channel), (due, NoticeState::Pending, Channel::Console), "{rule}");
        }
    }

    #[test]
    fn orphaned_alerts_resolve_without_notices() {
        let mut w = World::new(vec![sub(&["ann"])]);
        w.changes(&[opened("high", "p-1", T0), opened("tachy", "p-1", T0)], T0);
        let d = reconcile(&w.book, &|a: &Alert| a.rule == "tachy", T0 + MIN);
        assert_eq!(d.alerts.len(), 1);
        let a = d.alerts.values().next().expect("one");
        assert_eq!((a.rule.as_str(), a.state, a.cleared_ms), ("tachy", AlertState::Resolved, Some(T0 + MIN)));
        assert!(d.notices.is_empty());
    }
}
