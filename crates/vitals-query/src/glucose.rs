//! Glucose summaries for the dashboard: the international consensus metrics (Battelino et
//! al., Diabetes Care 2019: time in range 70-180 mg/dL, below 70 and 54, above 180 and 250;
//! mean, coefficient of variation, GMI), the ambulatory glucose profile (percentiles by
//! time of day) and the 2-day moving average; [`variability`] adds the variability and risk
//! metrics (MAGE, MODD, CONGA, LBGI/HBGI, GRI, J-index). Pure functions over readings in
//! mg/dL.

use serde::Serialize;

pub mod variability;
pub use variability::{Variability, variability};

/// Consensus metrics over a set of readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub readings: usize,
    pub mean: f64,
    /// Coefficient of variation, percent.
    pub cv_percent: f64,
    /// Glucose management indicator, percent: 3.31 + 0.02392 x mean (mg/dL).
    pub gmi_percent: f64,
    /// Shares of readings, percent.
    pub very_low_percent: f64,
    pub low_percent: f64,
    pub in_range_percent: f64,
    pub high_percent: f64,
    pub very_high_percent: f64,
}

/// The consensus metrics; `None` without readings.
pub fn summary(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let share = |f: &dyn Fn(f64) -> bool| 100.0 * values.iter().filter(|v| f(**v)).count() as f64 / n;
    Some(Summary {
        readings: values.len(),
        mean,
        cv_percent: if mean > 0.0 { 100.0 * var.sqrt() / mean } else { 0.0 },
        gmi_percent: 3.31 + 0.02392 * mean,
        very_low_percent: share(&|v| v < 54.0),
        low_percent: share(&|v| (54.0..70.0).contains(&v)),
        in_range_percent: share(&|v| (70.0..=180.0).contains(&v)),
        high_percent: share(&|v| v > 180.0 && v <= 250.0),
        very_high_percent: share(&|v| v > 250.0),
    })
}

/// Minutes per slot of the daily profile.
pub const AGP_SLOT_MIN: i64 = 30;

/// One slot of the ambulatory glucose profile: percentiles 5, 25, 50, 75, 95.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgpSlot {
    /// Minutes after midnight (UTC shifted by the caller's offset) where the slot starts.
    pub minute: i64,
    pub p5: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub readings: usize,
}

/// Linear-interpolated percentile of sorted values (`q` in 0..=1).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A time zone as the viewer's browser knows it over a period: the offset from UTC at the
/// start and the times from which it changes (daylight saving), so that readings on either
/// side of a change fall at their own local time of day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offsets {
    /// The offset (ms) before the first change.
    pub base_ms: i64,
    /// `(from_ms, offset_ms)`, sorted by time: the offset in effect from `from_ms` on.
    pub changes: Vec<(i64, i64)>,
}

/// The most offset changes one request may name.
pub const MAX_OFFSET_CHANGES: usize = 64;

/// Why the viewer's time zone parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetsError {
    #[error("an offset from UTC is at most 14 hours (840 minutes)")]
    OffsetOutOfRange,
    #[error("tz_changes: {0:?} is not <ms since the epoch>:<minutes>")]
    BadChange(String),
    #[error("tz_changes: at most {MAX_OFFSET_CHANGES}, in time order")]
    BadChanges,
}

impl Offsets {
    pub fn fixed(offset_ms: i64) -> Offsets {
        Offsets { base_ms: offset_ms, changes: Vec::new() }
    }

    /// Parses the query parameters `tz_offset_min` (minutes east of UTC, 0 if absent) and
    /// `tz_changes` (`<ms since the epoch>:<minutes>,...` in time order, as a browser
    /// computes them for daylight saving). Times are within what Vitals stores, offsets
    /// within 14 hours, so `t + offset` cannot overflow.
    pub fn parse(base_min: Option<i64>, changes: Option<&str>) -> Result<Offsets, OffsetsError> {
        let minutes = |m: i64| {
            if (-14 * 60..=14 * 60).contains(&m) { Ok(m * 60_000) } else { Err(OffsetsError::OffsetOutOfRange) }
        };
        let mut list = Vec::new();
        for part in changes.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if list.len() == MAX_OFFSET_CHANGES {
                return Err(OffsetsError::BadChanges);
            }
            let bad = || OffsetsError::BadChange(part.chars().take(40).collect());
            let (t, m) = part.split_once(':').ok_or_else(bad)?;
            let t = t.trim().parse::<i64>().ok().filter(|t| (0..=vitals_core::time::MAX_TIME_MS).contains(t));
            list.push((t.ok_or_else(bad)?, minutes(m.trim().parse::<i64>().map_err(|_| bad())?)?));
        }
        if !list.is_sorted_by_key(|c| c.0) {
            return Err(OffsetsError::BadChanges);
        }
        Ok(Offsets { base_ms: minutes(base_min.unwrap_or(0))?, changes: list })
    }

    /// The offset in effect at `t`.
    pub fn at(&self, t: i64) -> i64 {
        match self.changes.partition_point(|c| c.0 <= t) {
            0 => self.base_ms,
            i => self.changes[i - 1].1,
        }
    }
}

/// Readings `(time_ms, mg/dL)` folded onto one local day (the offset in effect at each
/// reading) in [`AGP_SLOT_MIN`] slots; slots without readings are left out.
pub fn agp(readings: &[(i64, f64)], offsets: &Offsets) -> Vec<AgpSlot> {
    let slots = (24 * 60 / AGP_SLOT_MIN) as usize;
    let mut by: Vec<Vec<f64>> = vec![Vec::new(); slots];
    for (t, v) in readings {
        let minute = (t + offsets.at(*t)).rem_euclid(86_400_000) / 60_000;
        by[(minute / AGP_SLOT_MIN) as usize].push(*v);
    }
    by.into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, mut v)| {
            v.sort_by(f64::total_cmp);
            AgpSlot {
                minute: i as i64 * AGP_SLOT_MIN,
                p5: percentile(&v, 0.05),
                p25: percentile(&v, 0.25),
                p50: percentile(&v, 0.5),
                p75: percentile(&v, 0.75),
                p95: percentile(&v, 0.95),
                readings: v.len(),
            }
        })
        .collect()
}

/// The trailing moving average over `window_ms` (2 days for the glucose system), sampled
/// every `step_ms` from `from` to `to`: `(time, mean of readings in (time - window, time])`,
/// points without readings in their window left out. `readings` sorted by time.
pub fn moving_average(readings: &[(i64, f64)], from: i64, to: i64, step_ms: i64, window_ms: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let (mut lo, mut hi, mut sum) = (0usize, 0usize, 0.0);
    let mut t = from;
    while t <= to {
        while hi < readings.len() && readings[hi].0 <= t {
            sum += readings[hi].1;
            hi += 1;
        }
        while lo < hi && readings[lo].0 <= t - window_ms {
            sum -= readings[lo].1;
            lo += 1;
        }
        if hi > lo {
            out.push((t, sum / (hi - lo) as f64));
        }
        t += step_ms.max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_from_query_parameters_or_are_refused() {
        assert_eq!(Offsets::parse(None, None), Ok(Offsets::fixed(0)));
        assert_eq!(
            Offsets::parse(Some(60), Some("1711846800000:120, 1729990800000:60")),
            Ok(Offsets {
                base_ms: 3_600_000,
                changes: vec![(1_711_846_800_000, 7_200_000), (1_729_990_800_000, 3_600_000)]
            })
        );
        assert_eq!(Offsets::parse(Some(841), None), Err(OffsetsError::OffsetOutOfRange));
        assert_eq!(Offsets::parse(None, Some("5:-841")), Err(OffsetsError::OffsetOutOfRange));
        assert!(matches!(Offsets::parse(None, Some("9223372036854775807:60")), Err(OffsetsError::BadChange(_))));
        assert!(matches!(Offsets::parse(None, Some("-1:60")), Err(OffsetsError::BadChange(_))));
        assert!(matches!(Offsets::parse(None, Some("12")), Err(OffsetsError::BadChange(_))));
        assert_eq!(Offsets::parse(None, Some("20:60,10:0")), Err(OffsetsError::BadChanges));
        let many = (0..65).map(|i| format!("{i}:0")).collect::<Vec<_>>().join(",");
        assert_eq!(Offsets::parse(None, Some(&many)), Err(OffsetsError::BadChanges));
        // An echoed part is cut short.
        let long = format!("{}:x", "9".repeat(10_000));
        let Err(OffsetsError::BadChange(echo)) = Offsets::parse(None, Some(&long)) else { panic!("refused") };
        assert!(echo.len() <= 40);
    }

    #[test]
    fn consensus_shares_mean_cv_and_gmi() {
        let v = [50.0, 60.0, 100.0, 150.0, 180.0, 200.0, 300.0, 100.0, 100.0, 160.0];
        let s = summary(&v).expect("summary");
        assert_eq!(s.readings, 10);
        assert!((s.mean - 140.0).abs() < 1e-9);
        assert!((s.gmi_percent - (3.31 + 0.02392 * 140.0)).abs() < 1e-9);
        assert_eq!((s.very_low_percent, s.low_percent), (10.0, 10.0));
        assert_eq!(s.in_range_percent, 60.0, "70 and 180 are in range");
        assert_eq!((s.high_percent, s.very_high_percent), (10.0, 10.0));
        let total = s.very_low_percent + s.low_percent + s.in_range_percent + s.high_percent + s.very_high_percent;
        assert!((total - 100.0).abs() < 1e-9);
        assert!(summary(&[]).is_none());
        assert_eq!(summary(&[100.0, 100.0]).map(|s| s.cv_percent), Some(0.0));
    }

    #[test]
    fn the_profile_folds_days_by_time_of_day_with_percentiles() {
        // Three days, a reading at 08:10 each day (100, 120, 140) and one at 20:00.
        let day = 86_400_000;
        let r: Vec<(i64, f64)> = (0..3)
            .map(|d| (d * day + 8 * 3_600_000 + 600_000, 100.0 + 20.0 * d as f64))
            .chain(std::iter::once((20 * 3_600_000, 90.0)))
            .collect();
        let p = agp(&r, &Offsets::fixed(0));
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].minute, p[0].readings, p[0].p50, p[0].p5), (480, 3, 120.0, 102.0));
        assert_eq!((p[1].minute, p[1].p95), (1200, 90.0));
        // At UTC+1 the same readings are an hour later in the day.
        assert_eq!(agp(&r, &Offsets::fixed(3_600_000))[0].minute, 540);
        // Clocks go forward (UTC+1 to UTC+2) between the second and the third day: the
        // third 08:10 UTC reading is at 10:10 local, the others at 09:10.
        let dst = Offsets { base_ms: 3_600_000, changes: vec![(2 * day, 7_200_000)] };
        let p = agp(&r, &dst);
        let at = |m: i64| p.iter().find(|s| s.minute == m).map(|s| s.readings);
        assert_eq!((at(540), at(600)), (Some(2), Some(1)), "{p:?}");
        assert_eq!((dst.at(2 * day - 1), dst.at(2 * day)), (3_600_000, 7_200_000));
    }

    #[test]
    fn the_moving_average_is_over_the_trailing_window_only() {
        let h = 3_600_000;
        let r = [(0, 100.0), (h, 200.0), (3 * h, 300.0)];
        let m = moving_average(&r, 0, 4 * h, h, 2 * h);
        assert_eq!(m, vec![(0, 100.0), (h, 150.0), (2 * h, 200.0), (3 * h, 300.0), (4 * h, 300.0)]);
        assert!(moving_average(&r, -3 * h, -h, h, 2 * h).is_empty());
    }
}
