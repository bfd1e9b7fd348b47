//! Personal baselines: what is normal for this person, from their own recent days.
//!
//! A baseline of a daily signal (the night's resting heart rate, the night's HRV, skin
//! temperature, respiratory rate and SpO2, the day's steps and sleep) is the median of the
//! values of the `window_days` days before the day scored, with a robust spread: the median
//! absolute deviation scaled to a standard deviation (x 1.4826), never below a floor per
//! signal (a resting rate that never moved would otherwise make 1 bpm an alarm). A
//! baseline needs `min_days` values in the window; before that there is none (cold start),
//! and nothing is scored against it. The day itself never counts in its own baseline.
//! Pure computation over `(day, value)` pairs; days are local day numbers.

use serde::{Deserialize, Serialize};

/// The daily signals baselines are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The night's resting heart rate (bpm).
    RestingHeartRate,
    /// The night's heart rate variability (SDNN or RMSSD, ms).
    Hrv,
    /// The night's skin temperature (°C).
    SkinTemperature,
    /// The night's respiratory rate (breaths/min).
    RespiratoryRate,
    /// The night's oxygen saturation (%).
    Spo2,
    /// The day's steps.
    Steps,
    /// The night's sleep (hours).
    Sleep,
}

/// Which way a signal moves when something is wrong (illness, strain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adverse {
    Up,
    Down,
}

impl Signal {
    pub const ALL: [Signal; 7] = [
        Signal::RestingHeartRate,
        Signal::Hrv,
        Signal::SkinTemperature,
        Signal::RespiratoryRate,
        Signal::Spo2,
        Signal::Steps,
        Signal::Sleep,
    ];

    /// The name in the API and in explanations.
    pub fn code(self) -> &'static str {
        match self {
            Signal::RestingHeartRate => "resting_heart_rate",
            Signal::Hrv => "hrv",
            Signal::SkinTemperature => "skin_temperature",
            Signal::RespiratoryRate => "respiratory_rate",
            Signal::Spo2 => "spo2",
            Signal::Steps => "steps",
            Signal::Sleep => "sleep",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Signal::RestingHeartRate => "bpm",
            Signal::Hrv => "ms",
            Signal::SkinTemperature => "°C",
            Signal::RespiratoryRate => "/min",
            Signal::Spo2 => "%",
            Signal::Steps => "steps",
            Signal::Sleep => "h",
        }
    }

    pub fn adverse(self) -> Adverse {
        match self {
            Signal::RestingHeartRate | Signal::SkinTemperature | Signal::RespiratoryRate => Adverse::Up,
            Signal::Hrv | Signal::Spo2 | Signal::Steps | Signal::Sleep => Adverse::Down,
        }
    }

    /// The smallest spread a baseline of this signal is given (in its unit).
    pub fn spread_floor(self) -> f64 {
        match self {
            Signal::RestingHeartRate => 1.0,
            Signal::Hrv => 3.0,
            Signal::SkinTemperature => 0.1,
            Signal::RespiratoryRate => 0.3,
            Signal::Spo2 => 0.5,
            Signal::Steps => 500.0,
            Signal::Sleep => 0.3,
        }
    }

    /// The signal's place in [`Signal::ALL`] (and in a night's values).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How baselines are taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Days before the scored day that make its baseline.
    pub window_days: u32,
    /// Values needed in the window for a baseline to exist.
    pub min_days: u32,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig { window_days: 28, min_days: 14 }
    }
}

impl BaselineConfig {
    /// Problems with the settings, each as `field: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !(7..=365).contains(&self.window_days) {
            v.push("window_days: between 7 and 365".to_owned());
        }
        if self.min_days < 3 || self.min_days > self.window_days {
            v.push("min_days: at least 3 and at most window_days".to_owned());
        }
        v
    }
}

/// A person's normal for one signal on one day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Baseline {
    pub median: f64,
    /// Robust standard deviation: MAD x 1.4826, at least the signal's floor.
    pub spread: f64,
    /// Values it was taken from.
    pub days: u32,
}

impl Baseline {
    /// The band `median ± k spread`.
    pub fn band(&self, k: f64) -> (f64, f64) {
        (self.median - k * self.spread, self.median + k * self.spread)
    }

    /// How far `value` is from normal in spreads, positive in the signal's adverse direction.
    pub fn adverse_z(&self, signal: Signal, value: f64) -> f64 {
        let z = (value - self.median) / self.spread;
        match signal.adverse() {
            Adverse::Up => z,
            Adverse::Down => -z,
        }
    }
}

/// The median of values (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// The baseline of `signal` for `day` from `history` (`(day, value)`, sorted by day, one
/// value per day): the days `[day - window_days, day)`. `None` before `min_days` values.
pub fn baseline(signal: Signal, history: &[(i64, f64)], day: i64, config: &BaselineConfig) -> Option<Baseline> {
    let from = day - i64::from(config.window_days);
    let lo = history.partition_point(|h| h.0 < from);
    let hi = history.partition_point(|h| h.0 < day);
    let mut values: Vec<f64> = history[lo..hi.max(lo)].iter().map(|h| h.1).filter(|v| v.is_finite()).collect();
    let days = u32::try_from(values.len()).unwrap_or(u32::MAX);
    if days < config.min_days {
        return None;
    }
    let median = median(&mut values)?;
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = self::median(&mut deviations)?;
    Some(Baseline { median, spread: (1.4826 * mad).max(signal.spread_floor()), days })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_baseline_is_the_median_of_the_days_before_with_a_robust_spread() {
        let c = BaselineConfig { window_days: 7, min_days: 5 };
        // Days 0-6: 60, 61, 59, 60, 62, 58, 90 (one outlier) and day 7 itself 100.
        let h: Vec<(i64, f64)> = [60.0, 61.0, 59.0, 60.0, 62.0, 58.0, 90.0, 100.0]
            .into_iter()
            .enumerate()
            .map(|(d, v)| (d as i64, v))
            .collect();
        let b = baseline(Signal::RestingHeartRate, &h, 7, &c).expect("seven days");
        assert_eq!((b.median, b.days), (60.0, 7), "the outlier does not move it, the day itself is not in it");
        // |x - 60|: 0, 1, 1, 0, 2, 2, 30 -> MAD 1.
        assert!((b.spread - 1.4826).abs() < 1e-12);
        assert!(b.adverse_z(Signal::RestingHeartRate, 64.0) > 2.6);
        assert!(b.adverse_z(Signal::Hrv, 64.0) < 0.0, "HRV is adverse downwards");
        // Day 3's window has only 3 values.
        assert_eq!(baseline(Signal::RestingHeartRate, &h, 3, &c), None);
        // A flat history gets the floor.
        let flat: Vec<(i64, f64)> = (0..20).map(|d| (d, 55.0)).collect();
        assert_eq!(baseline(Signal::RestingHeartRate, &flat, 20, &c).map(|b| b.spread), Some(1.0));
    }

    #[test]
    fn a_signals_index_is_its_place_in_all() {
        for (i, s) in Signal::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i, "{s:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(BaselineConfig::default().problems().is_empty());
        assert_eq!(BaselineConfig { window_days: 5, min_days: 3 }.problems().len(), 1);
        assert_eq!(BaselineConfig { window_days: 28, min_days: 29 }.problems().len(), 1);
    }

    proptest! {
        #[test]
        fn a_baseline_needs_min_days_and_lies_within_its_values(
            values in proptest::collection::vec((0i64..60, 30.0f64..120.0), 0..80),
            day in 0i64..70,
        ) {
            let mut h = values;
            h.sort_by_key(|v| v.0);
            h.dedup_by_key(|v| v.0);
            let c = BaselineConfig::default();
            let inside: Vec<f64> = h.iter().filter(|v| v.0 >= day - 28 && v.0 < day).map(|v| v.1).collect();
            match baseline(Signal::RestingHeartRate, &h, day, &c) {
                None => prop_assert!(inside.len() < 14),
                Some(b) => {
                    prop_assert!(inside.len() >= 14);
                    let lo = inside.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = inside.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    prop_assert!(b.median >= lo && b.median <= hi);
                    prop_assert!(b.spread >= 1.0);
                }
            }
        }
    }
}
