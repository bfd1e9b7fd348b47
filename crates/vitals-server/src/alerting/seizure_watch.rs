//! The seizure detectors in the alerting thread (`[alerting.seizure] enabled`), chosen per
//! patient from the signals their devices send: a patient whose device sent acceleration in
//! the last [`MOTION_RECENT_MS`] is watched by both detectors combined (the motion detector
//! and the autonomic one, the first to fire for an episode raising the alert), any other by
//! the autonomic detector alone (heart rate or RR intervals, EDA). Both raise alerts of the
//! rule `seizure-detector`; an episode one detector opens while the other's is open, or
//! within [`SAME_EPISODE_MS`] of its firing, is the same seizure and raises nothing more.

use std::collections::{HashMap, HashSet};

use vitals_rules::autonomic::{AutonomicConfig, AutonomicDetector};
use vitals_rules::live::Change;
use vitals_rules::seizure::{SeizureConfig, SeizureDetector};

/// Acceleration this recent puts a patient in the combined mode.
pub(crate) const MOTION_RECENT_MS: i64 = 10 * 60_000;
/// Two detectors firing this close are one seizure.
const SAME_EPISODE_MS: i64 = 120_000;

/// Which detector watches a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Watch {
    /// Acceleration, heart rate and EDA: the motion and the autonomic detector.
    Combined,
    /// Heart rate or RR intervals (and EDA), no accelerometer.
    Autonomic,
}

impl Watch {
    /// The detector for a patient whose device's newest acceleration is `motion_at` and
    /// newest heart rate, RR interval or EDA `autonomic_at`, at `now`.
    pub fn of(motion_at: Option<i64>, autonomic_at: Option<i64>, now: i64) -> Option<Watch> {
        match (motion_at, autonomic_at) {
            (Some(m), _) if now - m <= MOTION_RECENT_MS => Some(Watch::Combined),
            (_, Some(_)) => Some(Watch::Autonomic),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Motion,
    Autonomic,
}

pub(crate) struct SeizureWatch {
    motion: SeizureDetector,
    autonomic: AutonomicDetector,
    /// Newest acceleration per patient.
    motion_at: HashMap<String, i64>,
    /// The episode raising the patient's alert: which detector, its start, when it fired,
    /// and whether it is still open.
    current: HashMap<String, (Which, i64, i64, bool)>,
    /// Episodes that were the same seizure as another's: their changes raise nothing.
    merged: HashSet<(String, Which, i64)>,
}

impl SeizureWatch {
    pub(crate) fn new(motion: SeizureConfig, autonomic: AutonomicConfig) -> SeizureWatch {
        SeizureWatch {
            motion: SeizureDetector::new(motion),
            autonomic: AutonomicDetector::new(autonomic),
            motion_at: HashMap::new(),
            current: HashMap::new(),
            merged: HashSet::new(),
        }
    }

    pub(crate) fn reads(metric: &str) -> bool {
        SeizureDetector::reads(metric) || AutonomicDetector::reads(metric)
    }

    pub(crate) fn late(&self) -> u64 {
        self.motion.late()
    }

    pub(crate) fn forget_patient(&mut self, patient: &str) {
        self.motion.forget_patient(patient);
        self.autonomic.forget_patient(patient);
        self.motion_at.remove(patient);
        self.current.remove(patient);
        self.merged.retain(|m| m.0 != patient);
    }

    /// A patient's readings `(metric, time, value)`: each detector's changes, merged.
    pub(crate) fn ingest(&mut self, patient: &str, readings: &[(&str, i64, f64)]) -> Vec<Change> {
        if let Some(t) = readings.iter().filter(|r| r.0.starts_with("acceleration")).map(|r| r.1).max() {
            let e = self.motion_at.entry(patient.to_owned()).or_insert(t);
            *e = (*e).max(t);
        }
        let mut out = Vec::new();
        let motion: Vec<(&str, i64, f64)> = readings.iter().copied().filter(|r| SeizureDetector::reads(r.0)).collect();
        if !motion.is_empty() {
            for c in self.motion.ingest(patient, &motion) {
                out.extend(self.merge(Which::Motion, c));
            }
        }
        let autonomic: Vec<(&str, i64, f64)> =
            readings.iter().copied().filter(|r| AutonomicDetector::reads(r.0)).collect();
        if !autonomic.is_empty() {
            for c in self.autonomic.ingest(patient, &autonomic) {
                out.extend(self.merge(Which::Autonomic, c));
            }
        }
        out
    }

    fn merge(&mut self, which: Which, c: Change) -> Option<Change> {
        let (_, patient, e) = c.parts();
        let key = (patient.to_owned(), which, e.start);
        match &c {
            Change::Opened { .. } => {
                if let Some(&(w, _, fired, open)) = self.current.get(patient)
                    && w != which
                    && (open || e.fired - fired <= SAME_EPISODE_MS)
                {
                    self.merged.insert(key);
                    return None;
                }
                self.current.insert(patient.to_owned(), (which, e.start, e.fired, true));
                Some(c)
            }
            _ => {
                if self.merged.remove(&key) {
                    return None;
                }
                if let Some(cur) = self.current.get_mut(patient)
                    && cur.0 == which
                    && cur.1 == e.start
                {
                    cur.3 = false;
                }
                Some(c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000;
    const T0: i64 = 1_763_700_000_000;

    /// 15 quiet minutes, then from 900 s a seizure: abrupt tachycardia (70 -> 110 bpm),
    /// an EDA surge from 920 s, and, with `motion`, 5 Hz jerks of 1 g for 60 s.
    fn seizure(motion: bool) -> Vec<(&'static str, i64, f64)> {
        let mut r = Vec::new();
        for i in 0..1100 {
            let t = T0 + i * S;
            let hr = if (900..990).contains(&i) {
                70.0 + 40.0 * ((i - 900) as f64 / 10.0).min(1.0)
            } else {
                70.0 + (i % 3) as f64
            };
            r.push(("heart_rate", t, hr));
            for q in 0..4 {
                let eda = 2.0 + if i >= 920 { 3.0 * ((i - 920) as f64 / 15.0).min(1.0) } else { 0.0 };
                r.push(("eda", t + q * 250, eda));
            }
            if motion && i >= 600 {
                for k in 0..32 {
                    let tt = t + k * 31;
                    let ts = (tt - T0) as f64 / 1000.0;
                    let jerk = if (900..960).contains(&i) { (std::f64::consts::TAU * 5.0 * ts).sin() } else { 0.0 };
                    r.push(("acceleration_x", tt, jerk));
                    r.push(("acceleration_y", tt, 0.6 * jerk));
                    r.push(("acceleration_z", tt, 1.0 + 0.5 * jerk));
                }
            }
        }
        r
    }

    fn opened(w: &mut SeizureWatch, patient: &str, r: &[(&'static str, i64, f64)]) -> Vec<Change> {
        r.chunks(5_000).flat_map(|c| w.ingest(patient, c)).filter(|c| matches!(c, Change::Opened { .. })).collect()
    }

    #[test]
    fn both_detectors_firing_for_one_seizure_raise_one_alert() {
        let mut w =
            SeizureWatch::new(SeizureConfig { enabled: true, ..SeizureConfig::default() }, AutonomicConfig::default());
        let r = seizure(true);
        // Each detector alone fires for it...
        let mut motion = SeizureDetector::new(SeizureConfig { enabled: true, ..SeizureConfig::default() });
        let mut autonomic = AutonomicDetector::new(AutonomicConfig::default());
        let only = |f: &dyn Fn(&str) -> bool| -> Vec<(&'static str, i64, f64)> {
            r.iter().copied().filter(|x| f(x.0)).collect()
        };
        let m: Vec<Change> = only(&SeizureDetector::reads).chunks(5_000).flat_map(|c| motion.ingest("m", c)).collect();
        let a: Vec<Change> =
            only(&AutonomicDetector::reads).chunks(5_000).flat_map(|c| autonomic.ingest("m", c)).collect();
        assert!(
            matches!(m.first(), Some(Change::Opened { .. })) && matches!(a.first(), Some(Change::Opened { .. })),
            "{m:?} {a:?}"
        );
        // ...and together they raise one alert.
        let with_motion = opened(&mut w, "m", &r);
        assert_eq!(with_motion.len(), 1, "{with_motion:?}");
        // A band without an accelerometer: the autonomic detector alone raises it.
        let without = opened(&mut w, "a", &seizure(false));
        assert_eq!(without.len(), 1, "{without:?}");
    }

    #[test]
    fn the_detector_follows_the_signals_sent() {
        let now = T0;
        assert_eq!(Watch::of(Some(now - 60_000), Some(now), now), Some(Watch::Combined));
        assert_eq!(
            Watch::of(Some(now - 3_600_000), Some(now), now),
            Some(Watch::Autonomic),
            "the accelerometer went quiet"
        );
        assert_eq!(Watch::of(None, Some(now), now), Some(Watch::Autonomic));
        assert_eq!(Watch::of(None, None, now), None);
    }
}
