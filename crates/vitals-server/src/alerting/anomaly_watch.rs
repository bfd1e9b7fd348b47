//! The anomaly detector in the alerting thread (`[alerting.anomaly] enabled`): every
//! [`CHECK_MS`] it looks again at the patients with data newer than at their last look,
//! reads their nights (`crate::nights`, local days at `[alerting.anomaly] utc_offset`: where
//! the patients sleep), scores them (`vitals_rules::anomaly::detect`) and turns what changed since the
//! alerts already recorded into engine changes of the rule `anomaly-detector`: opened,
//! resolved, retracted (a night that arrived late, or an erasure, disproved it). Each
//! change comes with the anomaly's explanation, which becomes the alert's description.
//!
//! An anomaly is looked at while it opened in the last [`TRACKED_DAYS`]; an alert for one
//! that fired over a day before it was first seen (a backfill) is recorded but pages no
//! one, like any alert on old data.

use std::collections::HashMap;

use vitals_alerts::{Alert, alert_id};
use vitals_rules::anomaly::{Anomaly, AnomalyConfig, DETECTOR_RULE, detect};
use vitals_rules::eval::Episode;
use vitals_rules::live::Change;
use vitals_storage::Store;
use vitals_storage::event_store::EventStore;

use crate::nights::DAY;

/// How often patients with new data are looked at again.
pub(super) const CHECK_MS: i64 = 15 * 60_000;
/// Anomalies that opened this many days back or less are tracked.
pub(super) const TRACKED_DAYS: i64 = 14;

pub(super) struct AnomalyWatch {
    config: AnomalyConfig,
    /// Local time's offset from UTC (ms): day `d` starts at `d * DAY - offset`.
    offset: i64,
    /// The newest sample of each patient at their last look.
    seen: HashMap<String, i64>,
    next_check_ms: i64,
}

impl AnomalyWatch {
    pub(super) fn new(config: AnomalyConfig) -> AnomalyWatch {
        // The configuration was checked at start.
        let offset = config.offset_ms().unwrap_or(0);
        AnomalyWatch { config, offset, seen: HashMap::new(), next_check_ms: i64::MIN }
    }

    pub(super) fn forget_patient(&mut self, patient: &str) {
        self.seen.remove(patient);
    }

    /// The changes of every patient with new data (`evaluates`: those this node decides
    /// for), each with the explanation of its anomaly; nothing before the next check. A
    /// patient's sensitivity follows their cohorts (`in_cohort(cohort, patient)`); a
    /// change of cohorts is seen at the patient's next new data.
    pub(super) fn check(
        &mut self,
        store: &Store,
        events: &EventStore,
        alerts: &dyn Fn(&str) -> Vec<Alert>,
        evaluates: &dyn Fn(&str) -> bool,
        in_cohort: &dyn Fn(&str, &str) -> bool,
        now: i64,
    ) -> Vec<(Change, String)> {
        if now < self.next_check_ms {
            return Vec::new();
        }
        self.next_check_ms = now + CHECK_MS;
        let mut out = Vec::new();
        for (patient, newest) in store.patients() {
            let p = patient.as_str();
            if !evaluates(p) || self.seen.get(p) == Some(&newest) {
                continue;
            }
            let today = (now + self.offset).div_euclid(DAY);
            let first = today - TRACKED_DAYS - i64::from(self.config.baseline.window_days) - 1;
            match crate::nights::read(store, events, &patient, first, today, self.offset) {
                Ok(nights) => {
                    let config = self.config.for_patient(&|c| in_cohort(c, p));
                    let found = detect(&nights, &config);
                    // Anomalies that began before the nights read have their baseline cut
                    // off: they can be neither found nor disproved.
                    let judged_from = (first + i64::from(config.baseline.window_days)) * DAY - self.offset;
                    let days = Days { today, offset: self.offset };
                    out.extend(changes(p, &found, &alerts(p), days, now, judged_from));
                    self.seen.insert(p.to_owned(), newest);
                }
                Err(e) => tracing::error!(error = %e, patient = %p, "alerting: reading nights"),
            }
        }
        out
    }
}

/// Today's local day number, and where local days start: day `d` at `d * DAY - offset`.
#[derive(Debug, Clone, Copy)]
struct Days {
    today: i64,
    offset: i64,
}

impl Days {
    fn start(self, day: i64) -> i64 {
        day * DAY - self.offset
    }
}

/// The episode of an anomaly: from its first night's start; fired at `now` when it fired
/// on last night or the night before (it pages), else at the end of the night it fired
/// (old data: recorded only); cleared at the end of its last night.
fn episode(a: &Anomaly, days: Days, now: i64) -> Episode {
    let fired = if a.fired_day >= days.today - 1 { now } else { days.start(a.fired_day + 1) };
    let end = a.cleared_day.unwrap_or(days.today);
    Episode {
        start: days.start(a.start_day),
        fired: fired.max(days.start(a.start_day)),
        end: days.start(end),
        cleared: a.cleared_day.map(|d| days.start(d + 1)),
    }
}

/// What must change for `patient`'s recorded anomaly alerts (`recorded`) to match the
/// anomalies found.
fn changes(
    patient: &str,
    found: &[Anomaly],
    recorded: &[Alert],
    days: Days,
    now: i64,
    judged_from: i64,
) -> Vec<(Change, String)> {
    let today = days.today;
    let mut out = Vec::new();
    let change =
        |c: fn(String, String, Episode) -> Change, ep: Episode| c(DETECTOR_RULE.to_owned(), patient.to_owned(), ep);
    let tracked = |a: &Anomaly| a.fired_day >= today - TRACKED_DAYS || a.cleared_day.is_none();
    for a in found.iter().filter(|a| tracked(a)) {
        let start = days.start(a.start_day);
        let existing = recorded.iter().find(|r| r.id == alert_id(DETECTOR_RULE, patient, start));
        let text = a.explanation.text.clone();
        match existing {
            None => {
                let ep = episode(a, days, now);
                out.push((
                    change(|rule, patient, episode| Change::Opened { rule, patient, episode }, ep.clone()),
                    text.clone(),
                ));
                if ep.cleared.is_some() {
                    out.push((change(|rule, patient, episode| Change::Resolved { rule, patient, episode }, ep), text));
                }
            }
            Some(r) if r.state.active() && a.cleared_day.is_some() => {
                let ep = Episode { fired: r.fired_ms, ..episode(a, days, now) };
                out.push((change(|rule, patient, episode| Change::Resolved { rule, patient, episode }, ep), text));
            }
            Some(_) => {}
        }
    }
    // Open alerts no anomaly found holds any more (among those the nights read can judge).
    for r in recorded.iter().filter(|r| r.state.active() && r.start_ms >= judged_from) {
        let held = found.iter().any(|a| alert_id(DETECTOR_RULE, patient, days.start(a.start_day)) == r.id);
        if !held {
            let ep = Episode { start: r.start_ms, fired: r.fired_ms, end: r.end_ms, cleared: None };
            out.push((
                change(|rule, patient, episode| Change::Retracted { rule, patient, episode }, ep),
                r.description.clone().unwrap_or_default(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_rules::anomaly::Explanation;

    fn anomaly(start_day: i64, fired_day: i64, cleared_day: Option<i64>) -> Anomaly {
        Anomaly {
            start_day,
            fired_day,
            cleared_day,
            explanation: Explanation { since_day: start_day, nights: 2, signals: Vec::new(), text: "why".into() },
        }
    }

    #[test]
    fn new_anomalies_open_cleared_ones_resolve_and_disproved_ones_are_retracted() {
        let (today, now) = (20_000, 20_000 * DAY + 9 * 3_600_000);
        let utc = Days { today, offset: 0 };
        // Fired last night: opens now (it pages).
        let c = changes("p", &[anomaly(19_998, 19_999, None)], &[], utc, now, 0);
        assert!(
            matches!(&c[..], [(Change::Opened { episode, .. }, t)] if episode.fired == now && episode.start == 19_998 * DAY && t == "why"),
            "{c:?}"
        );
        // Fired ten days ago and cleared since, first seen now (a backfill): opened at its
        // own time, then resolved.
        let c = changes("p", &[anomaly(19_989, 19_990, Some(19_993))], &[], utc, now, 0);
        assert!(
            matches!(&c[..], [(Change::Opened { episode: a, .. }, _), (Change::Resolved { episode: b, .. }, _)]
            if a.fired == 19_991 * DAY && b.cleared == Some(19_994 * DAY)),
            "{c:?}"
        );
        // Older than the tracked days and cleared: left alone.
        assert!(changes("p", &[anomaly(19_900, 19_901, Some(19_905))], &[], utc, now, 0).is_empty());
        // An open alert no anomaly holds is retracted, unless it began before the nights
        // read could judge it.
        let open = Alert {
            id: alert_id(DETECTOR_RULE, "p", 19_950 * DAY),
            start_ms: 19_950 * DAY,
            state: vitals_alerts::AlertState::Open,
            ..Alert::default()
        };
        let c = changes("p", &[], std::slice::from_ref(&open), utc, now, 19_940 * DAY);
        assert!(matches!(&c[..], [(Change::Retracted { .. }, _)]), "{c:?}");
        assert!(changes("p", &[], &[open], utc, now, 19_960 * DAY).is_empty());
        // An hour east of UTC, local days start an hour earlier in UTC.
        let east = Days { today, offset: 3_600_000 };
        let c = changes("p", &[anomaly(19_989, 19_990, Some(19_993))], &[], east, now, 0);
        assert!(
            matches!(&c[..], [(Change::Opened { episode: a, .. }, _), (Change::Resolved { episode: b, .. }, _)]
            if a.start == 19_989 * DAY - 3_600_000 && b.cleared == Some(19_994 * DAY - 3_600_000)),
            "{c:?}"
        );
    }
}
