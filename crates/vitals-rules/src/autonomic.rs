//! The autonomic seizure detector, for wearables without an accelerometer (the epilepsy
//! platform's band sends heart rate as RR intervals, skin temperature and electrodermal
//! activity) and for seizures without rhythmic motion.
//!
//! Ictal tachycardia is abrupt: the heart rate leaves its baseline (the median of the 10
//! minutes before the last 2) by at least `hr_gain` and `hr_rise_bpm` within
//! `rise_within` (exercise, stress and fever climb over minutes), and an electrodermal
//! surge (`eda_rise_us` over the minimum of the 5 minutes before) follows within a minute
//! or two. A *run* begins at such an abrupt rise, with its baseline frozen, and lasts while
//! the rate stays above half the gain. The detector fires once a run has lasted `sustain`
//! and a surge was seen since it began; a patient whose device sends no EDA needs a
//! steeper rise (`no_eda_gain`) held for `no_eda_sustain`. The episode clears once the
//! rate has been back under half the gain for `clear_after`.
//!
//! Heart rate comes as `heart_rate` (bpm) or `rr_interval` (ms, turned into 60000 / RR).
//! Points are evaluated every `hop` once heart rate has arrived past them (a watermark),
//! so any batching of in-order data gives the same episodes. Pure computation: time comes
//! from the data.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use vitals_core::DurationMs;

use crate::eval::Episode;
use crate::live::Change;
use crate::seizure::{detector_change, push_sorted as push, range};

/// The metrics the detector reads.
pub const METRICS: [&str; 3] = ["heart_rate", "rr_interval", "eda"];

const SECOND: i64 = 1_000;
const BASELINE_MS: i64 = 10 * 60 * SECOND;
const BASELINE_GAP_MS: i64 = 2 * 60 * SECOND;
const NOW_MS: i64 = 10 * SECOND;
const EDA_RECENT_MS: i64 = 60 * SECOND;
const EDA_BEFORE_MS: i64 = 5 * 60 * SECOND;
const KEEP_MS: i64 = BASELINE_MS + BASELINE_GAP_MS + 60 * SECOND;

/// The detector's thresholds (`[alerting.seizure.autonomic]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutonomicConfig {
    /// How often a point is evaluated.
    pub hop: DurationMs,
    /// The rise over the baseline: at least this fraction and this many bpm.
    pub hr_gain: f64,
    pub hr_rise_bpm: f64,
    /// Most (`abrupt_share`) of the rise must have happened within this long.
    pub rise_within: DurationMs,
    pub abrupt_share: f64,
    /// How long the tachycardia must last before the detector fires.
    pub sustain: DurationMs,
    /// An EDA rise of this much (µS) over its minimum of the 5 minutes before.
    pub eda_rise_us: f64,
    /// Without EDA: the gain and duration needed instead.
    pub no_eda_gain: f64,
    pub no_eda_sustain: DurationMs,
    /// The episode ends after this long back under half the gain.
    pub clear_after: DurationMs,
}

impl Default for AutonomicConfig {
    fn default() -> Self {
        AutonomicConfig {
            hop: DurationMs(5 * SECOND),
            hr_gain: 0.25,
            hr_rise_bpm: 15.0,
            rise_within: DurationMs(30 * SECOND),
            abrupt_share: 0.6,
            sustain: DurationMs(15 * SECOND),
            eda_rise_us: 1.0,
            no_eda_gain: 0.4,
            no_eda_sustain: DurationMs(30 * SECOND),
            clear_after: DurationMs(60 * SECOND),
        }
    }
}

impl AutonomicConfig {
    /// Problems with the thresholds, each as `field: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !(self.hr_gain > 0.0 && self.no_eda_gain >= self.hr_gain && self.hr_rise_bpm >= 0.0) {
            v.push("hr_gain, no_eda_gain, hr_rise_bpm: 0 < hr_gain <= no_eda_gain, hr_rise_bpm >= 0".to_owned());
        }
        if !(0.0..=1.0).contains(&self.abrupt_share) {
            v.push("abrupt_share: between 0 and 1".to_owned());
        }
        if self.hop.as_ms() < SECOND || self.hop.as_ms() > 60 * SECOND {
            v.push("hop: between 1s and 1m".to_owned());
        }
        if self.eda_rise_us <= 0.0 {
            v.push("eda_rise_us: positive".to_owned());
        }
        v
    }
}

#[derive(Debug, Default)]
struct PatientState {
    hr: VecDeque<(i64, f64)>,
    eda: VecDeque<(i64, f64)>,
    evaluated_to: Option<i64>,
    /// The current run: its start, frozen baseline, last point above half the gain, and
    /// whether an EDA surge was seen since it began.
    run: Option<Run>,
    firing: Option<Episode>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: i64,
    base: f64,
    last_high: i64,
    surge: bool,
}

/// The streaming detector for every patient.
#[derive(Debug)]
pub struct AutonomicDetector {
    config: AutonomicConfig,
    patients: HashMap<String, PatientState>,
}

/// The values of `s` in `(from, to]`.
fn values(s: &VecDeque<(i64, f64)>, from: i64, to: i64) -> impl Iterator<Item = f64> + '_ {
    range(s, from, to).map(|x| x.1)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = v.collect();
    if v.len() < 10 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

impl AutonomicDetector {
    pub fn new(config: AutonomicConfig) -> AutonomicDetector {
        AutonomicDetector { config, patients: HashMap::new() }
    }

    /// Whether the detector reads this metric.
    pub fn reads(metric: &str) -> bool {
        METRICS.contains(&metric)
    }

    /// Forgets everything about a patient (after their erasure).
    pub fn forget_patient(&mut self, patient: &str) {
        self.patients.remove(patient);
    }

    /// Takes readings `(metric, time, value)` of one patient and evaluates the points
    /// they complete.
    pub fn ingest(&mut self, patient: &str, readings: &[(&str, i64, f64)]) -> Vec<Change> {
        let p = self.patients.entry(patient.to_owned()).or_default();
        for &(metric, t, v) in readings {
            if !v.is_finite() || p.evaluated_to.is_some_and(|e| t <= e) {
                continue;
            }
            match metric {
                "heart_rate" if v > 0.0 => push(&mut p.hr, t, v),
                "rr_interval" if (200.0..=3000.0).contains(&v) => push(&mut p.hr, t, 60_000.0 / v),
                "eda" => push(&mut p.eda, t, v),
                _ => {}
            }
        }
        let mut out = Vec::new();
        Self::analyse(&self.config, patient, p, &mut out);
        out
    }

    fn analyse(c: &AutonomicConfig, patient: &str, p: &mut PatientState, out: &mut Vec<Change>) {
        let hop = c.hop.as_ms();
        let Some(&(hr_last, _)) = p.hr.back() else { return };
        // With an EDA stream, points wait for it too (the two may come in separate batches).
        let watermark = match p.eda.back() {
            Some(&(e, _)) if e > hr_last - EDA_BEFORE_MS => hr_last.min(e),
            _ => hr_last,
        };
        let Some(&(first, _)) = p.hr.front() else { return };
        let mut t = match p.evaluated_to {
            Some(e) => e + hop,
            None => (first + BASELINE_MS + BASELINE_GAP_MS).div_euclid(hop) * hop + hop,
        };
        while t < watermark {
            Self::step(c, patient, p, t, out);
            p.evaluated_to = Some(t);
            t += hop;
        }
        if let Some(e) = p.evaluated_to {
            for s in [&mut p.hr, &mut p.eda] {
                while s.front().is_some_and(|x| x.0 < e - KEEP_MS) {
                    s.pop_front();
                }
            }
        }
    }

    fn surge(c: &AutonomicConfig, p: &PatientState, t: i64) -> bool {
        let before = values(&p.eda, t - EDA_RECENT_MS - EDA_BEFORE_MS, t - EDA_RECENT_MS).fold(f64::INFINITY, f64::min);
        let recent = values(&p.eda, t - EDA_RECENT_MS, t).fold(f64::NEG_INFINITY, f64::max);
        before.is_finite() && recent.is_finite() && recent - before >= c.eda_rise_us
    }

    fn step(c: &AutonomicConfig, patient: &str, p: &mut PatientState, t: i64, out: &mut Vec<Change>) {
        let Some(now) = mean(values(&p.hr, t - NOW_MS, t)) else { return };
        let has_eda = p.eda.back().is_some_and(|e| e.0 > t - EDA_BEFORE_MS);
        let surge = has_eda && Self::surge(c, p, t);
        match &mut p.run {
            None => {
                let base = median(values(&p.hr, t - BASELINE_GAP_MS - BASELINE_MS, t - BASELINE_GAP_MS));
                let before = mean(values(&p.hr, t - c.rise_within.as_ms() - NOW_MS, t - c.rise_within.as_ms()));
                if let (Some(base), Some(before)) = (base, before) {
                    let rise = now - base;
                    if now >= base * (1.0 + c.hr_gain) && rise >= c.hr_rise_bpm && now - before >= c.abrupt_share * rise
                    {
                        p.run = Some(Run { start: t, base, last_high: t, surge });
                    }
                }
            }
            Some(run) => {
                if now >= run.base * (1.0 + c.hr_gain / 2.0) {
                    run.last_high = t;
                }
                run.surge |= surge;
            }
        }
        let Some(run) = p.run else { return };
        let change = |e: Episode, opened: bool| detector_change(patient, e, opened);
        let high = run.last_high == t;
        match &mut p.firing {
            Some(e) if high => e.end = t,
            Some(e) => {
                if t - run.last_high >= c.clear_after.as_ms() {
                    out.push(change(Episode { cleared: Some(t), ..e.clone() }, false));
                    p.firing = None;
                    p.run = None;
                }
            }
            None if !high => p.run = None,
            None => {
                let lasted = t - run.start;
                let fires = if has_eda {
                    lasted >= c.sustain.as_ms() && run.surge
                } else {
                    lasted >= c.no_eda_sustain.as_ms() && now >= run.base * (1.0 + c.no_eda_gain)
                };
                if fires {
                    let e = Episode { start: run.start, fired: t, end: t, cleared: None };
                    out.push(change(e.clone(), true));
                    p.firing = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
