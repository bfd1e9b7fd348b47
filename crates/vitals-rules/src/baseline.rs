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
    baseline_of(history, day, config, signal.spread_floor())
}

/// [`baseline`] with the least spread given.
fn baseline_of(history: &[(i64, f64)], day: i64, config: &BaselineConfig, floor: f64) -> Option<Baseline> {
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
    Some(Baseline { median, spread: (1.4826 * mad).max(floor), days })
}

/// Metrics whose normal depends on the time of day (circadian), with the least spread of
/// their hourly profile: the patient view draws each one's usual band hour by hour.
pub const PROFILED: [(&str, f64); 4] =
    [("heart_rate", 2.0), ("skin_temperature", 0.2), ("respiratory_rate", 0.5), ("spo2", 0.5)];

/// A person's normal for each hour of the (local) day: for hour `h`, the median and
/// robust spread of the hourly means at `h` on the `window_days` days before `day`; `None`
/// for an hour seen on fewer than `min_days` of them. `hourly` holds `(local time, mean)`
/// of whole hours, in any order; `floor` is the least spread.
pub fn by_hour(hourly: &[(i64, f64)], day: i64, config: &BaselineConfig, floor: f64) -> [Option<Baseline>; 24] {
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    let (from, to) = ((day - i64::from(config.window_days)) * DAY, day * DAY);
    let mut at: [Vec<(i64, f64)>; 24] = Default::default();
    for &(t, v) in hourly {
        if (from..to).contains(&t) && v.is_finite() {
            at[(t.rem_euclid(DAY) / HOUR) as usize].push((t.div_euclid(DAY), v));
        }
    }
    let mut out = [None; 24];
    for (h, values) in at.iter_mut().enumerate() {
        // One value per day (the mean of any duplicates), as `baseline` takes them.
        values.sort_by_key(|x| x.0);
        let mut days: Vec<(i64, f64)> = Vec::with_capacity(values.len());
        let mut i = 0;
        while i < values.len() {
            let j = values[i..].iter().position(|x| x.0 != values[i].0).map_or(values.len(), |k| i + k);
            let mean = values[i..j].iter().map(|x| x.1).sum::<f64>() / (j - i) as f64;
            days.push((values[i].0, mean));
            i = j;
        }
        out[h] = baseline_of(&days, day, config, floor);
    }
    out
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

    #[test]
    fn the_hourly_profile_is_each_hours_baseline_over_the_days_before() {
        const H: i64 = 3_600_000;
        let c = BaselineConfig { window_days: 28, min_days: 14 };
        // 20 days before day 100: 52 bpm at night (00-06), 64 by day, with a wobble; day 100
        // itself at 120 (not in its own profile); hour 12 seen on 10 days only.
        let mut hourly = Vec::new();
        for d in 80..=100 {
            for h in 0..24 {
                if h == 12 && d % 2 == 0 {
                    continue;
                }
                let v = if d == 100 {
                    120.0
                } else if h < 6 {
                    52.0
                } else {
                    64.0 + (d % 3) as f64 - 1.0
                };
                hourly.push((d * 24 * H + h * H, v));
            }
        }
        hourly.reverse();
        let p = by_hour(&hourly, 100, &c, 2.0);
        let night = p[3].expect("hour 3");
        assert_eq!((night.median, night.spread, night.days), (52.0, 2.0, 20), "a flat hour gets the floor");
        let day = p[15].expect("hour 15");
        assert_eq!((day.median, day.days), (64.0, 20));
        assert!((day.spread - 2.0).abs() < 1e-12, "MAD 1 x 1.4826 is under the floor");
        assert_eq!(p[12], None, "10 days are too few");
        // Day 90 has only 10 days before it.
        assert!(by_hour(&hourly, 90, &c, 2.0).iter().all(Option::is_none));
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
