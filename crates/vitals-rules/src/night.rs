//! From readings to the nightly values that baselines and anomalies score.
//!
//! Night `D` is the night that ends on the morning of local day `D`. Its values:
//!
//! - resting heart rate: the device's own `resting_heart_rate` reported on day `D` (the
//!   last one), else the lowest 30-minute mean of `heart_rate` from 22:00 on `D - 1` to
//!   08:00 on `D` (a 30-minute window needs 3 readings), so devices that send only heart
//!   rate or RR-derived rate (the epilepsy platform's band) get one too;
//! - HRV (`hrv_sdnn`), respiratory rate, SpO2: the median of readings from 12:00 on `D - 1`
//!   to 12:00 on `D` (watches record them asleep);
//! - skin temperature: the median from 00:00 to 06:00 on `D` (the core of the night: the
//!   wrist is warm asleep, cool awake);
//! - steps: the sum over day `D - 1` (complete when night `D` is scored);
//! - sleep: the hours asleep from noon on `D - 1` to noon on `D` ([`sleep_hours`], from
//!   sleep periods rather than readings).
//!
//! The readings may be raw or, as the server reads them, [`five_minute_means`] (sums for
//! steps), which bounds the work for a wristband that sends heart rate every second.
//! Times are local (the caller adds the patient's offset). Pure computation.

use std::collections::BTreeMap;

use crate::baseline::{Signal, median};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The metrics nightly values are made from.
pub const METRICS: [&str; 7] =
    ["resting_heart_rate", "heart_rate", "hrv_sdnn", "respiratory_rate", "spo2", "skin_temperature", "step_count"];

/// The nights' values of readings `(metric, local time ms, value)` in any order, as
/// `(day, signal, value)` sorted by day then signal.
pub fn night_values(readings: &[(&str, i64, f64)]) -> Vec<(i64, Signal, f64)> {
    // (day, signal) -> values, and the reported resting rates (time, value) per day.
    let mut pools: BTreeMap<(i64, Signal), Vec<f64>> = BTreeMap::new();
    let mut reported: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    let mut heart: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
    let mut steps: BTreeMap<i64, f64> = BTreeMap::new();
    for &(metric, t, v) in readings {
        if !v.is_finite() {
            continue;
        }
        let day = t.div_euclid(DAY);
        let hour = t.rem_euclid(DAY);
        let noon_night = (t + 12 * HOUR).div_euclid(DAY);
        match metric {
            "resting_heart_rate" => {
                let e = reported.entry(day).or_insert((t, v));
                if t >= e.0 {
                    *e = (t, v);
                }
            }
            "heart_rate" if !(8 * HOUR..22 * HOUR).contains(&hour) => {
                heart.entry((t + 2 * HOUR).div_euclid(DAY)).or_default().push((t, v));
            }
            "hrv_sdnn" => pools.entry((noon_night, Signal::Hrv)).or_default().push(v),
            "respiratory_rate" => pools.entry((noon_night, Signal::RespiratoryRate)).or_default().push(v),
            "spo2" => pools.entry((noon_night, Signal::Spo2)).or_default().push(v),
            "skin_temperature" if hour < 6 * HOUR => pools.entry((day, Signal::SkinTemperature)).or_default().push(v),
            "step_count" => *steps.entry(day + 1).or_default() += v,
            _ => {}
        }
    }
    let mut out: Vec<(i64, Signal, f64)> = Vec::new();
    for (&(day, signal), values) in pools.iter_mut() {
        if let Some(m) = median(values) {
            out.push((day, signal, m));
        }
    }
    for (&day, &(_, v)) in &reported {
        out.push((day, Signal::RestingHeartRate, v));
    }
    for (day, mut beats) in heart {
        if reported.contains_key(&day) {
            continue;
        }
        beats.sort_by_key(|b| b.0);
        if let Some(v) = lowest_half_hour(&beats) {
            out.push((day, Signal::RestingHeartRate, v));
        }
    }
    out.extend(steps.into_iter().map(|(day, v)| (day, Signal::Steps, v)));
    out.sort_by_key(|a| (a.0, a.1));
    out
}

/// Hours asleep per night from sleep periods `(start, end)` (local times; awake stages left
/// out by the caller): the union of the periods, each night's from noon to noon (night `D`
/// ends at noon on `D`), overlapping periods (several sources, stages) counted once.
pub fn sleep_hours(periods: &[(i64, i64)]) -> Vec<(i64, Signal, f64)> {
    let mut p: Vec<(i64, i64)> = periods.iter().copied().filter(|(s, e)| e > s).collect();
    p.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (s, e) in p {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut by_night: BTreeMap<i64, i64> = BTreeMap::new();
    for (s, e) in merged {
        // Split at the noons it crosses.
        let mut from = s;
        while from < e {
            let night = (from + 12 * HOUR).div_euclid(DAY);
            let noon = night * DAY + 12 * HOUR;
            let to = e.min(noon);
            *by_night.entry(night).or_default() += to - from;
            from = to;
        }
    }
    by_night.into_iter().map(|(d, ms)| (d, Signal::Sleep, ms as f64 / HOUR as f64)).collect()
}

/// Readings folded into 5-minute buckets (aligned to the epoch of the times given): the
/// mean of each metric's readings, the sum of `step_count`'s; each at its bucket's start.
pub fn five_minute_means<'a>(readings: &[(&'a str, i64, f64)]) -> Vec<(&'a str, i64, f64)> {
    const FIVE_MIN: i64 = 300_000;
    let mut buckets: BTreeMap<(&'a str, i64), (f64, usize)> = BTreeMap::new();
    for &(metric, t, v) in readings.iter().filter(|r| r.2.is_finite()) {
        let b = buckets.entry((metric, t.div_euclid(FIVE_MIN) * FIVE_MIN)).or_insert((0.0, 0));
        b.0 += v;
        b.1 += 1;
    }
    buckets
        .into_iter()
        .map(|((metric, t), (sum, n))| (metric, t, if metric == "step_count" { sum } else { sum / n as f64 }))
        .collect()
}

/// The lowest mean of the 30-minute windows (aligned to the half hour) holding at least
/// 3 readings.
fn lowest_half_hour(beats: &[(i64, f64)]) -> Option<f64> {
    let mut best: Option<f64> = None;
    for group in beats.chunk_by(|a, b| a.0.div_euclid(HOUR / 2) == b.0.div_euclid(HOUR / 2)) {
        if group.len() >= 3 {
            let mean = group.iter().map(|b| b.1).sum::<f64>() / group.len() as f64;
            best = Some(best.map_or(mean, |b: f64| b.min(mean)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signal_gets_its_night() {
        let d = 20_000 * DAY;
        let mut r: Vec<(&str, i64, f64)> = vec![
            ("resting_heart_rate", d + 9 * HOUR, 58.0),
            ("hrv_sdnn", d - 2 * HOUR, 40.0),
            ("hrv_sdnn", d + 3 * HOUR, 50.0),
            ("hrv_sdnn", d + 4 * HOUR, 60.0),
            ("skin_temperature", d + 2 * HOUR, 34.5),
            ("skin_temperature", d + 14 * HOUR, 31.0),
            ("step_count", d - 10 * HOUR, 300.0),
            ("step_count", d - 9 * HOUR, 200.0),
        ];
        // Heart rate only, the night before: 30 readings at 23:00-23:30 of 70, 20 at
        // 03:00-03:30 of 52 and 2 at 04:00 of 40 (too few for a window).
        r.extend((0..30).map(|i| ("heart_rate", d + DAY - HOUR + i * 60_000, 70.0)));
        r.extend((0..20).map(|i| ("heart_rate", d + DAY + 3 * HOUR + i * 60_000, 52.0)));
        r.extend((0..2).map(|i| ("heart_rate", d + DAY + 4 * HOUR + i * 60_000, 40.0)));
        let v = night_values(&r);
        let day = 20_000;
        assert_eq!(
            v,
            vec![
                (day, Signal::RestingHeartRate, 58.0),
                (day, Signal::Hrv, 50.0),
                (day, Signal::SkinTemperature, 34.5),
                (day, Signal::Steps, 500.0),
                (day + 1, Signal::RestingHeartRate, 52.0),
            ]
        );
        // Folded into 5-minute means first, the same nights.
        assert_eq!(night_values(&five_minute_means(&r)), v);
        let means = five_minute_means(&[
            ("heart_rate", 0, 60.0),
            ("heart_rate", 299_999, 70.0),
            ("step_count", 1, 5.0),
            ("step_count", 2, 6.0),
        ]);
        assert_eq!(means, vec![("heart_rate", 0, 65.0), ("step_count", 0, 11.0)]);
        // Sleep: 23:00-03:00 and 02:00-07:00 (overlapping sources) on the night to day
        // 20_001, and a nap 13:00-14:00 on day 20_001 (the next night's).
        let d1 = 20_001 * DAY;
        let sleep = sleep_hours(&[
            (d1 - HOUR, d1 + 3 * HOUR),
            (d1 + 2 * HOUR, d1 + 7 * HOUR),
            (d1 + 13 * HOUR, d1 + 14 * HOUR),
        ]);
        assert_eq!(sleep, vec![(20_001, Signal::Sleep, 8.0), (20_002, Signal::Sleep, 1.0)]);
    }
}
