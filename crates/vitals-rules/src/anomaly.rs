//! Anomalies: nights that drift away from the person's own normal, the early sign of an
//! infection or of strain, in the spirit of the published resting-heart-rate methods
//! (Mishra et al., Nature Biomedical Engineering 2020; Alavi et al., Nature Medicine 2022:
//! an alarm when the resting heart rate stays at least 4 bpm over the personal baseline for
//! two nights).
//!
//! Each night is scored against the baselines of [`crate::baseline`]: the resting heart
//! rate's rise over its median, in bpm and in robust spreads, and how far every other
//! signal present (HRV, skin temperature, respiratory rate, SpO2, steps, sleep) lies in its
//! adverse direction. A night is **elevated** when the resting rate is at least
//! `rise_bpm` and `rise_z` spreads over normal, or half of that with two other signals
//! `support_z` spreads adverse. An anomaly opens at the `nights`-th elevated night in a row
//! (nights without a resting rate are skipped, a normal night breaks the run), or at once
//! on a night elevated twice over (`2 rise_bpm` and `2 rise_z`: *marked*), and clears
//! after `nights` normal nights in a row. Without a baseline (fewer than `min_days` nights
//! in the window) a night is `cold_start` and never elevated: nothing fires before the
//! person's normal is known.
//!
//! The streaming [`AnomalyDetector`] keeps the nights of each patient and re-derives its
//! anomalies when a night arrives, in any order: the anomalies are a function of the
//! nights, so feeding them one at a time gives what scoring them all at once gives
//! ([`detect`]). Pure computation: days are local day numbers, time comes from the data.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::baseline::{Baseline, BaselineConfig, Signal, baseline};

/// The name alerts of the detector carry as their rule.
pub const DETECTOR_RULE: &str = "anomaly-detector";

/// Nights kept per patient; older ones are dropped and their anomalies settled.
pub const KEEP_DAYS: i64 = 400;

/// How readily the detector warns (per patient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// 5 bpm and 2.5 spreads: fewer false alarms, fewer warnings.
    Low,
    /// 4 bpm and 2 spreads, 2 nights.
    #[default]
    Normal,
    /// 3 bpm and 1.5 spreads, 2 nights.
    High,
}

/// What a sensitivity means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    pub rise_bpm: f64,
    pub rise_z: f64,
    pub nights: u32,
    pub support_z: f64,
}

impl Sensitivity {
    pub fn thresholds(self) -> Thresholds {
        match self {
            Sensitivity::Low => Thresholds { rise_bpm: 5.0, rise_z: 2.5, nights: 2, support_z: 2.5 },
            Sensitivity::Normal => Thresholds { rise_bpm: 4.0, rise_z: 2.0, nights: 2, support_z: 2.0 },
            Sensitivity::High => Thresholds { rise_bpm: 3.0, rise_z: 1.5, nights: 2, support_z: 1.5 },
        }
    }
}

/// The detector's settings (`[alerting.anomaly]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Raise alerts (the server's alerting thread); baselines are shown either way.
    pub enabled: bool,
    pub baseline: BaselineConfig,
    /// The sensitivity of patients in none of the cohorts below.
    pub sensitivity: Sensitivity,
    /// Patients of these cohorts are watched with `high` sensitivity (first), those of
    /// `low_cohorts` with `low`: a patient's sensitivity is set by putting them in one.
    pub high_cohorts: Vec<String>,
    pub low_cohorts: Vec<String>,
    /// The local time the alerting thread cuts nights in, as an offset from UTC
    /// (`+01:00`): where the patients sleep. (The Baselines view takes the browser's.)
    pub utc_offset: String,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: false,
            baseline: BaselineConfig::default(),
            sensitivity: Sensitivity::Normal,
            high_cohorts: Vec::new(),
            low_cohorts: Vec::new(),
            utc_offset: "+00:00".into(),
        }
    }
}

impl AnomalyConfig {
    /// `utc_offset` in ms; `None` unless it is an offset like `+01:00` (at most 14 hours).
    pub fn offset_ms(&self) -> Option<i64> {
        vitals_core::time::utc_offset_minutes(&self.utc_offset).map(|m| m * 60_000)
    }

    /// Problems with the settings, each as `field: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut v: Vec<String> = self.baseline.problems().into_iter().map(|p| format!("baseline.{p}")).collect();
        if self.offset_ms().is_none() {
            v.push(format!("utc_offset: {:?} is not an offset like +01:00 (-14:00 to +14:00)", self.utc_offset));
        }
        v
    }

    /// The settings for a patient, `in_cohort(cohort)` telling whether they are in one.
    pub fn for_patient(&self, in_cohort: &dyn Fn(&str) -> bool) -> AnomalyConfig {
        let sensitivity = if self.high_cohorts.iter().any(|c| in_cohort(c)) {
            Sensitivity::High
        } else if self.low_cohorts.iter().any(|c| in_cohort(c)) {
            Sensitivity::Low
        } else {
            self.sensitivity
        };
        AnomalyConfig { sensitivity, ..self.clone() }
    }
}

/// One night's values, by [`Signal::index`].
pub type NightValues = [Option<f64>; 7];

/// How far one signal was from normal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deviation {
    pub signal: Signal,
    pub value: f64,
    pub median: f64,
    pub spread: f64,
    /// Spreads from the median in the signal's adverse direction.
    pub z: f64,
}

impl Deviation {
    fn of(signal: Signal, value: f64, b: &Baseline) -> Deviation {
        Deviation { signal, value, median: b.median, spread: b.spread, z: b.adverse_z(signal, value) }
    }
}

/// What a night was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NightState {
    /// No resting heart rate that night.
    Missing,
    /// No baseline yet.
    ColdStart,
    Normal,
    Elevated,
    /// Elevated twice over (`2 rise_bpm` and `2 rise_z`): an anomaly opens at once.
    Marked,
}

/// A scored night.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Night {
    pub day: i64,
    pub state: NightState,
    /// Every signal of the night that has a baseline.
    pub deviations: Vec<Deviation>,
}

/// Why an anomaly was raised, as of the night it fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The first elevated night of the run.
    pub since_day: i64,
    pub nights: u32,
    /// The resting heart rate first, then the other signals at least 1.5 spreads adverse.
    pub signals: Vec<Deviation>,
    pub text: String,
}

/// A sustained deviation from the person's normal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub start_day: i64,
    pub fired_day: i64,
    /// The night it was over (the last of `nights` normal nights); `None` while open.
    pub cleared_day: Option<i64>,
    pub explanation: Explanation,
}

/// Scores night `day` against the nights before it.
pub fn score_night(nights: &BTreeMap<i64, NightValues>, day: i64, config: &AnomalyConfig) -> Night {
    let t = config.sensitivity.thresholds();
    let Some(values) = nights.get(&day) else {
        return Night { day, state: NightState::Missing, deviations: Vec::new() };
    };
    let from = day - i64::from(config.baseline.window_days);
    let mut deviations = Vec::new();
    for signal in Signal::ALL {
        let Some(value) = values[signal.index()] else { continue };
        let history: Vec<(i64, f64)> =
            nights.range(from..day).filter_map(|(d, v)| v[signal.index()].map(|x| (*d, x))).collect();
        if let Some(b) = baseline(signal, &history, day, &config.baseline) {
            deviations.push(Deviation::of(signal, value, &b));
        }
    }
    let state = match (values[Signal::RestingHeartRate.index()], deviations.first()) {
        (None, _) => NightState::Missing,
        (Some(_), Some(rhr)) if rhr.signal == Signal::RestingHeartRate => {
            let rise = rhr.value - rhr.median;
            let support = deviations[1..].iter().filter(|d| d.z >= t.support_z).count();
            let strong = rise >= t.rise_bpm && rhr.z >= t.rise_z;
            let supported = rise >= t.rise_bpm / 2.0 && rhr.z >= t.rise_z / 2.0 && support >= 2;
            if rise >= 2.0 * t.rise_bpm && rhr.z >= 2.0 * t.rise_z {
                NightState::Marked
            } else if strong || supported {
                NightState::Elevated
            } else {
                NightState::Normal
            }
        }
        (Some(_), _) => NightState::ColdStart,
    };
    Night { day, state, deviations }
}

/// The anomalies of a patient's nights, scored in day order.
pub fn detect(nights: &BTreeMap<i64, NightValues>, config: &AnomalyConfig) -> Vec<Anomaly> {
    let t = config.sensitivity.thresholds();
    let mut out: Vec<Anomaly> = Vec::new();
    let mut run: Option<(i64, u32)> = None;
    let mut open: Option<Anomaly> = None;
    let mut normal_run = 0u32;
    for &day in nights.keys() {
        let night = score_night(nights, day, config);
        match night.state {
            NightState::Missing => {}
            NightState::Elevated | NightState::Marked => {
                normal_run = 0;
                let (since, n) = run.map_or((day, 1), |(s, n)| (s, n + 1));
                run = Some((since, n));
                if open.is_none() && (n >= t.nights || night.state == NightState::Marked) {
                    open = Some(Anomaly {
                        start_day: since,
                        fired_day: day,
                        cleared_day: None,
                        explanation: explain(&night, since, n),
                    });
                }
            }
            NightState::Normal | NightState::ColdStart => {
                run = None;
                normal_run += 1;
                if normal_run >= t.nights
                    && let Some(mut a) = open.take()
                {
                    a.cleared_day = Some(day);
                    out.push(a);
                }
            }
        }
    }
    out.extend(open);
    out
}

fn explain(night: &Night, since: i64, nights: u32) -> Explanation {
    let mut signals: Vec<Deviation> =
        night.deviations.iter().filter(|d| d.signal == Signal::RestingHeartRate).copied().collect();
    signals.extend(night.deviations.iter().filter(|d| d.signal != Signal::RestingHeartRate && d.z >= 1.5).copied());
    let describe = |d: &Deviation| {
        let diff = d.value - d.median;
        format!(
            "{} {} {} ({:+.1} {}, {:.1} spreads from a normal of {} ± {})",
            d.signal.code().replace('_', " "),
            round_for(d.signal, d.value),
            d.signal.unit(),
            diff,
            d.signal.unit(),
            d.z,
            round_for(d.signal, d.median),
            round_for(d.signal, d.spread),
        )
    };
    let (y, m, dd) = vitals_core::time::civil_day(since * vitals_core::time::MS_PER_DAY);
    let plural = if nights == 1 { "night" } else { "nights" };
    let mut text = format!("For {nights} {plural} since {y:04}-{m:02}-{dd:02}: ");
    text.push_str(&signals.iter().map(describe).collect::<Vec<_>>().join("; "));
    Explanation { since_day: since, nights, signals, text }
}

fn round_for(signal: Signal, v: f64) -> String {
    match signal {
        Signal::SkinTemperature => format!("{v:.2}"),
        Signal::Steps => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// What changed about a patient's anomalies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum AnomalyChange {
    Opened {
        patient: String,
        anomaly: Anomaly,
    },
    Resolved {
        patient: String,
        anomaly: Anomaly,
    },
    /// A cleared anomaly holds again (a late night changed the past).
    Reopened {
        patient: String,
        anomaly: Anomaly,
    },
    /// An anomaly that late nights show never happened.
    Retracted {
        patient: String,
        anomaly: Anomaly,
    },
}

#[derive(Debug, Default)]
struct PatientNights {
    nights: BTreeMap<i64, NightValues>,
    anomalies: Vec<Anomaly>,
    /// Whether older nights were dropped (past [`KEEP_DAYS`]).
    trimmed: bool,
}

/// The streaming detector for every patient.
#[derive(Debug, Default)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    /// Per-patient settings that differ from `config`.
    sensitivity: HashMap<String, Sensitivity>,
    patients: HashMap<String, PatientNights>,
}

impl AnomalyDetector {
    pub fn new(config: AnomalyConfig) -> AnomalyDetector {
        AnomalyDetector { config, ..AnomalyDetector::default() }
    }

    /// The settings in effect for `patient`.
    pub fn config_for(&self, patient: &str) -> AnomalyConfig {
        let mut c = self.config.clone();
        if let Some(s) = self.sensitivity.get(patient) {
            c.sensitivity = *s;
        }
        c
    }

    /// Sets a patient's sensitivity (`None`: the default); the patient's anomalies are
    /// re-derived.
    pub fn set_sensitivity(&mut self, patient: &str, sensitivity: Option<Sensitivity>) -> Vec<AnomalyChange> {
        match sensitivity {
            Some(s) => self.sensitivity.insert(patient.to_owned(), s),
            None => self.sensitivity.remove(patient),
        };
        self.rederive(patient)
    }

    /// Adds nights' values `(day, signal, value)` of `patient` (a later value of a day and
    /// signal replaces the earlier) and reports what changed.
    pub fn ingest(&mut self, patient: &str, values: &[(i64, Signal, f64)]) -> Vec<AnomalyChange> {
        let p = self.patients.entry(patient.to_owned()).or_default();
        for &(day, signal, value) in values {
            if value.is_finite() {
                p.nights.entry(day).or_insert([None; 7])[signal.index()] = Some(value);
            }
        }
        if let Some(&newest) = p.nights.keys().next_back()
            && p.nights.keys().next().is_some_and(|first| *first < newest - KEEP_DAYS)
        {
            p.nights = p.nights.split_off(&(newest - KEEP_DAYS));
            p.trimmed = true;
        }
        self.rederive(patient)
    }

    /// The patient's anomalies, oldest first.
    pub fn anomalies(&self, patient: &str) -> &[Anomaly] {
        self.patients.get(patient).map_or(&[], |p| &p.anomalies)
    }

    fn rederive(&mut self, patient: &str) -> Vec<AnomalyChange> {
        let config = self.config_for(patient);
        let Some(p) = self.patients.get_mut(patient) else { return Vec::new() };
        // Once nights were dropped, anomalies that began before the kept nights' first
        // window are settled: they are no longer re-derived.
        let settled_before = match p.nights.keys().next() {
            Some(d) if p.trimmed => d + i64::from(config.baseline.window_days),
            _ => i64::MIN,
        };
        let (settled, old): (Vec<Anomaly>, Vec<Anomaly>) =
            std::mem::take(&mut p.anomalies).into_iter().partition(|a| a.start_day < settled_before);
        let new: Vec<Anomaly> =
            detect(&p.nights, &config).into_iter().filter(|a| a.start_day >= settled_before).collect();
        let mut changes = Vec::new();
        let who = || patient.to_owned();
        for a in &new {
            match old.iter().find(|o| o.start_day == a.start_day) {
                None => {
                    changes.push(AnomalyChange::Opened { patient: who(), anomaly: a.clone() });
                    if a.cleared_day.is_some() {
                        changes.push(AnomalyChange::Resolved { patient: who(), anomaly: a.clone() });
                    }
                }
                Some(o) if o.cleared_day != a.cleared_day => changes.push(match a.cleared_day {
                    None => AnomalyChange::Reopened { patient: who(), anomaly: a.clone() },
                    Some(_) => AnomalyChange::Resolved { patient: who(), anomaly: a.clone() },
                }),
                Some(_) => {}
            }
        }
        for o in old.iter().filter(|o| !new.iter().any(|a| a.start_day == o.start_day)) {
            changes.push(AnomalyChange::Retracted { patient: who(), anomaly: o.clone() });
        }
        p.anomalies = settled.into_iter().chain(new).collect();
        changes
    }
}

#[cfg(test)]
mod tests;
