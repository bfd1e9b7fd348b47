//! Recommendations: what a patient's recent nights and days suggest doing, each with the
//! evidence behind it, in words a clinician checks and a patient understands.
//!
//! Rules (in this order; at most one of each kind):
//! - **see a doctor**: an anomaly open for `doctor_nights` nights or more (the resting heart
//!   rate raised for 3 nights), or SpO2 under 92 % on two of the last three nights;
//! - **rest**: an anomaly open for fewer nights;
//! - **activity**: the median of the last 7 days' steps under `steps_goal` (7,000): a goal
//!   of 1,000 more than that median, at most the goal;
//! - **more sleep**: the median of the last 7 nights' sleep under 7 hours (the `sleep`
//!   signal, which the server fills from sleep events).
//!
//! Pure computation over the nights of [`crate::anomaly`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::anomaly::{Anomaly, NightValues};
use crate::baseline::{Signal, median};

/// Nights an anomaly must have lasted for a doctor's visit to be advised.
pub const DOCTOR_NIGHTS: usize = 3;
/// The daily steps goal.
pub const STEPS_GOAL: f64 = 7_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SeeDoctor,
    Rest,
    Activity,
    Sleep,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub kind: Kind,
    /// For the clinician: short and exact.
    pub title: String,
    /// For the patient: plain words.
    pub advice: String,
    /// What it rests on.
    pub evidence: Vec<String>,
}

fn last_values(nights: &BTreeMap<i64, NightValues>, signal: Signal, today: i64, days: i64) -> Vec<f64> {
    nights.range(today - days + 1..=today).filter_map(|(_, v)| v[signal.index()]).collect()
}

/// The recommendations for a patient on local day `today`, given their nights and the
/// anomalies found in them.
pub fn recommend(nights: &BTreeMap<i64, NightValues>, anomalies: &[Anomaly], today: i64) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let open = anomalies.iter().rev().find(|a| a.cleared_day.is_none() && a.start_day <= today);
    let low_spo2 = last_values(nights, Signal::Spo2, today, 3).iter().filter(|v| **v < 92.0).count();
    if let Some(a) = open {
        // Nights with a resting rate since it began (a night without one is not counted).
        let rhr_index = Signal::RestingHeartRate.index();
        let nights_open = nights.range(a.start_day..=today).filter(|(_, v)| v[rhr_index].is_some()).count();
        let rhr = a.explanation.signals.iter().find(|d| d.signal == Signal::RestingHeartRate);
        let raised = rhr.map_or(String::new(), |d| format!("{:+.0} bpm", d.value - d.median));
        if nights_open >= DOCTOR_NIGHTS || low_spo2 >= 2 {
            out.push(Recommendation {
                kind: Kind::SeeDoctor,
                title: format!("See a doctor: resting heart rate raised ({raised}) for {nights_open} nights"),
                advice: format!(
                    "Your heart has been beating faster than usual at rest for {nights_open} nights. This can be the start of an illness. Please see your doctor, or call them if you feel unwell."
                ),
                evidence: vec![a.explanation.text.clone()],
            });
        } else {
            out.push(Recommendation {
                kind: Kind::Rest,
                title: format!("Rest: resting heart rate raised ({raised}) for {nights_open} nights"),
                advice: "Your heart is beating faster than usual at rest. Take it easy today, drink enough and sleep well; if it goes on or you feel unwell, see your doctor.".into(),
                evidence: vec![a.explanation.text.clone()],
            });
        }
    } else if low_spo2 >= 2 {
        out.push(Recommendation {
            kind: Kind::SeeDoctor,
            title: format!("See a doctor: SpO2 under 92 % on {low_spo2} of the last 3 nights"),
            advice: "The oxygen level in your blood was lower than it should be at night. Please see your doctor."
                .into(),
            evidence: vec![format!("night SpO2: {:?}", last_values(nights, Signal::Spo2, today, 3))],
        });
    }
    let mut steps = last_values(nights, Signal::Steps, today, 7);
    if steps.len() >= 5
        && let Some(m) = median(&mut steps)
        && m < STEPS_GOAL
    {
        let goal = ((m + 1_000.0) / 500.0).round() * 500.0;
        let goal = goal.min(STEPS_GOAL);
        out.push(Recommendation {
            kind: Kind::Activity,
            title: format!("Activity: {m:.0} steps a day over the last week; goal {goal:.0}"),
            advice: format!("You walked about {m:.0} steps a day this week. Try for {goal:.0} a day: a 10-minute walk adds about 1,000."),
            evidence: vec![format!("median of {} days' steps: {m:.0}", steps.len())],
        });
    }
    let mut sleep = last_values(nights, Signal::Sleep, today, 7);
    if sleep.len() >= 5
        && let Some(m) = median(&mut sleep)
        && m < 7.0
    {
        out.push(Recommendation {
            kind: Kind::Sleep,
            title: format!("Sleep: {m:.1} h a night over the last week"),
            advice: format!("You slept about {m:.1} hours a night this week. Most adults need 7 to 9: try going to bed half an hour earlier."),
            evidence: vec![format!("median of {} nights' sleep: {m:.1} h", sleep.len())],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{AnomalyConfig, detect};

    fn nights(rhr: &[f64], steps: f64) -> BTreeMap<i64, NightValues> {
        rhr.iter()
            .enumerate()
            .map(|(d, v)| {
                let mut n = [None; 7];
                n[Signal::RestingHeartRate.index()] = Some(*v);
                n[Signal::Steps.index()] = Some(steps + (d % 3) as f64 * 100.0);
                (d as i64, n)
            })
            .collect()
    }

    #[test]
    fn a_raised_resting_rate_advises_rest_then_a_doctor() {
        let mut rhr: Vec<f64> = (0..30).map(|d| 60.0 + (d % 2) as f64).collect();
        rhr.extend([68.0, 68.0]);
        let n = nights(&rhr, 9_000.0);
        let a = detect(&n, &AnomalyConfig::default());
        let r = recommend(&n, &a, 31);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].kind, Kind::Rest);
        assert!(r[0].evidence[0].starts_with("For 2 nights since"), "{r:?}");
        rhr.push(69.0);
        let n = nights(&rhr, 9_000.0);
        let a = detect(&n, &AnomalyConfig::default());
        let r = recommend(&n, &a, 32);
        assert_eq!(r[0].kind, Kind::SeeDoctor);
        assert!(r[0].title.starts_with("See a doctor: resting heart rate raised (+"), "{}", r[0].title);
        assert!(r[0].title.ends_with("for 3 nights"), "{}", r[0].title);
    }

    #[test]
    fn few_steps_set_a_reachable_goal_and_enough_set_none() {
        let rhr: Vec<f64> = (0..20).map(|_| 60.0).collect();
        let r = recommend(&nights(&rhr, 3_000.0), &[], 19);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, Kind::Activity);
        assert_eq!(r[0].title, "Activity: 3100 steps a day over the last week; goal 4000");
        assert!(recommend(&nights(&rhr, 8_000.0), &[], 19).is_empty());
    }

    #[test]
    fn short_nights_set_a_sleep_goal() {
        let rhr: Vec<f64> = (0..10).map(|_| 60.0).collect();
        let mut n = nights(&rhr, 8_000.0);
        for (d, v) in n.iter_mut() {
            v[Signal::Sleep.index()] = Some(if *d % 2 == 0 { 6.0 } else { 6.5 });
        }
        let r = recommend(&n, &[], 9);
        assert_eq!(r.iter().map(|r| r.kind).collect::<Vec<_>>(), [Kind::Sleep]);
        assert_eq!(r[0].title, "Sleep: 6.5 h a night over the last week");
    }
}
