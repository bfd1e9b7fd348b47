//! The seizure detector for wrist wearables: rhythmic motion in the 3-8 Hz band (clonic
//! jerks) that lasts, together with an autonomic sign, heart rate well above the person's
//! baseline or an electrodermal surge.
//!
//! Per patient it keeps the last window of the three acceleration axes and about 20 minutes
//! of heart rate and EDA. Every `hop` of accelerometer time it looks at the window ending
//! there: the power spectrum of each axis (a DFT over the samples' own timestamps, Hann
//! weighted, mean removed), the share of the 0.5-16 Hz motion power that lies in the band,
//! and the band's RMS amplitude. A window is *rhythmic* when both pass their thresholds.
//! The detector fires once rhythmic windows have lasted `min_motion` and, at some window
//! since the motion began, heart rate exceeded `(1 + hr_gain)` times its baseline (the mean
//! over the 15 minutes before the last 2) or EDA rose by `eda_rise_us` over its minimum of
//! the 5 minutes before. The episode clears after `clear_after` without rhythmic motion.
//!
//! Windows are evaluated once all three axes have samples past their end (a watermark), so
//! any batching of in-order data gives the same episodes; accelerometer samples older than
//! the last evaluated window arrive too late and are counted in [`SeizureDetector::late`].
//! Pure computation: time comes from the data.

use std::collections::{HashMap, VecDeque};
use std::f64::consts::TAU;

use serde::{Deserialize, Serialize};
use vitals_core::DurationMs;

use crate::eval::Episode;
use crate::live::Change;

/// The name alerts of the detector carry as their rule.
pub const DETECTOR_RULE: &str = "seizure-detector";

/// The detector's thresholds (`[alerting.seizure]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeizureConfig {
    pub enabled: bool,
    /// The analysis window of the accelerometer.
    pub window: DurationMs,
    /// How often a window is analysed.
    pub hop: DurationMs,
    /// The band of clonic motion (Hz).
    pub band_low_hz: f64,
    pub band_high_hz: f64,
    /// The band's share of the 0.5-16 Hz motion power.
    pub min_band_ratio: f64,
    /// The band's RMS amplitude over the three axes (g).
    pub min_band_rms_g: f64,
    /// How long rhythmic motion must last before the detector fires.
    pub min_motion: DurationMs,
    /// Heart rate above `(1 + hr_gain)` times the baseline counts as tachycardia.
    pub hr_gain: f64,
    /// An EDA rise of this much (µS) over its recent minimum counts as a surge.
    pub eda_rise_us: f64,
    /// The episode ends after this long without rhythmic motion.
    pub clear_after: DurationMs,
}

impl Default for SeizureConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window: DurationMs(8_000),
            hop: DurationMs(2_000),
            band_low_hz: 3.0,
            band_high_hz: 8.0,
            min_band_ratio: 0.5,
            min_band_rms_g: 0.2,
            min_motion: DurationMs(10_000),
            hr_gain: 0.3,
            eda_rise_us: 1.0,
            clear_after: DurationMs(60_000),
        }
    }
}

impl SeizureConfig {
    /// Problems with the thresholds, each as `field: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !(0.0 < self.band_low_hz && self.band_low_hz < self.band_high_hz && self.band_high_hz <= 16.0) {
            v.push("band_low_hz and band_high_hz: 0 < low < high <= 16".to_owned());
        }
        if !(0.0..=1.0).contains(&self.min_band_ratio) {
            v.push("min_band_ratio: between 0 and 1".to_owned());
        }
        if self.hop.as_ms() > self.window.as_ms() {
            v.push("hop: at most the window".to_owned());
        }
        if self.window.as_ms() > 60_000 {
            v.push("window: at most 1m".to_owned());
        }
        if !(self.hr_gain > 0.0 && self.eda_rise_us > 0.0 && self.min_band_rms_g > 0.0) {
            v.push("hr_gain, eda_rise_us and min_band_rms_g: positive".to_owned());
        }
        v
    }
}

/// The metrics the detector reads.
pub const METRICS: [&str; 5] = ["acceleration_x", "acceleration_y", "acceleration_z", "heart_rate", "eda"];

const HR_BASELINE_MS: i64 = 15 * 60_000;
const HR_BASELINE_GAP_MS: i64 = 2 * 60_000;
const RECENT_MS: i64 = 30_000;
const EDA_BASELINE_MS: i64 = 5 * 60_000;
const KEEP_MS: i64 = HR_BASELINE_MS + HR_BASELINE_GAP_MS + 60_000;

#[derive(Debug, Default)]
struct PatientState {
    axes: [VecDeque<(i64, f64)>; 3],
    hr: VecDeque<(i64, f64)>,
    eda: VecDeque<(i64, f64)>,
    /// The end of the last window analysed.
    evaluated_to: Option<i64>,
    /// The first and last rhythmic window of the current run, and whether an autonomic
    /// sign was seen since it began.
    run: Option<(i64, i64, bool)>,
    firing: Option<Episode>,
}

/// Features of one window, for tests and tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFeatures {
    pub band_ratio: f64,
    pub band_rms_g: f64,
}

/// The streaming detector for every patient.
#[derive(Debug)]
pub struct SeizureDetector {
    config: SeizureConfig,
    patients: HashMap<String, PatientState>,
    late: u64,
}

pub(crate) fn push_sorted(s: &mut VecDeque<(i64, f64)>, t: i64, v: f64) {
    match s.back() {
        Some(&(last, _)) if last >= t => {
            // Rare: out of order within what is kept. Insert in place (same time: replace).
            let i = s.partition_point(|x| x.0 < t);
            if s.get(i).is_some_and(|x| x.0 == t) {
                s[i].1 = v;
            } else {
                s.insert(i, (t, v));
            }
        }
        _ => s.push_back((t, v)),
    }
}

/// Gives back the room a burst left behind: a backfill hands over hours of a patient at
/// once, and a queue keeps its largest size for good unless told otherwise.
fn release_spare(s: &mut VecDeque<(i64, f64)>) {
    const FLOOR: usize = 4096;
    if s.capacity() > FLOOR && s.capacity() > 4 * s.len() {
        s.shrink_to((2 * s.len()).max(FLOOR));
    }
}

/// The samples of `s` in `(from, to]`.
pub(crate) fn range(s: &VecDeque<(i64, f64)>, from: i64, to: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
    let lo = s.partition_point(|x| x.0 <= from);
    let hi = s.partition_point(|x| x.0 <= to).max(lo);
    s.range(lo..hi).copied()
}

/// A seizure detector's episode opened (`opened`) or resolved, as the engine's change.
pub(crate) fn detector_change(patient: &str, episode: Episode, opened: bool) -> Change {
    let (rule, patient) = (DETECTOR_RULE.to_owned(), patient.to_owned());
    if opened { Change::Opened { rule, patient, episode } } else { Change::Resolved { rule, patient, episode } }
}

/// Band share and amplitude of one window of each axis.
pub fn window_features(axes: [&[(i64, f64)]; 3], window_ms: i64, band: (f64, f64), min_rms_g: f64) -> WindowFeatures {
    let none = WindowFeatures { band_ratio: 0.0, band_rms_g: 0.0 };
    if axes.iter().any(|s| s.len() < 8) {
        return none;
    }
    // Too still for the band to reach the amplitude threshold: skip the spectrum.
    let rms: f64 = axes
        .iter()
        .map(|s| {
            let mean = s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64;
            s.iter().map(|x| (x.1 - mean).powi(2)).sum::<f64>() / s.len() as f64
        })
        .sum::<f64>()
        .sqrt();
    if rms < min_rms_g {
        return none;
    }
    let df = 1000.0 / window_ms as f64;
    let (mut band_power, mut total_power, mut band_ms) = (0.0, 0.0, 0.0);
    for s in axes {
        let n = s.len() as f64;
        let t0 = s[0].0;
        let mean = s.iter().map(|x| x.1).sum::<f64>() / n;
        // (seconds since the window's first sample, Hann-weighted deviation from the mean)
        let mut xs: Vec<(f64, f64)> = Vec::with_capacity(s.len());
        let mut sum_w2 = 0.0;
        for x in s {
            let w = 0.5 - 0.5 * (TAU * (x.0 - t0) as f64 / window_ms as f64).cos();
            sum_w2 += w * w;
            xs.push(((x.0 - t0) as f64 / 1000.0, (x.1 - mean) * w));
        }
        let mean_w2 = sum_w2 / n;
        // The sampling rate bounds the frequencies there is information about.
        let span_s = xs.last().map_or(0.0, |x| x.0);
        let top = if span_s > 0.0 { (0.5 * (n - 1.0) / span_s).min(16.0) } else { 0.0 };
        let k0 = (0.5 / df).ceil() as i64;
        let k1 = (top / df).floor() as i64;
        if k1 < k0 {
            continue;
        }
        let bins = (k1 - k0 + 1) as usize;
        let (mut re, mut im) = (vec![0.0; bins], vec![0.0; bins]);
        // Sample by sample, the phasor e^{-i 2 pi f t} of each bin follows from the one
        // before by a rotation: one sin/cos per sample instead of one per sample and bin.
        for &(t, a) in &xs {
            let (s1, c1) = (TAU * df * t).sin_cos();
            let (s0, c0) = (TAU * k0 as f64 * df * t).sin_cos();
            let (mut pr, mut pi) = (c0, -s0);
            for (r, i) in re.iter_mut().zip(im.iter_mut()) {
                *r += a * pr;
                *i += a * pi;
                (pr, pi) = (pr * c1 + pi * s1, pi * c1 - pr * s1);
            }
        }
        for (j, (r, i)) in re.iter().zip(&im).enumerate() {
            let f = (k0 + j as i64) as f64 * df;
            let p = r * r + i * i;
            total_power += p;
            if f >= band.0 && f <= band.1 {
                band_power += p;
                // Parseval: the band's mean square of the unweighted signal.
                band_ms += 2.0 * p / (n * n * mean_w2);
            }
        }
    }
    WindowFeatures {
        band_ratio: if total_power > 0.0 { band_power / total_power } else { 0.0 },
        band_rms_g: band_ms.sqrt(),
    }
}

impl SeizureDetector {
    pub fn new(config: SeizureConfig) -> SeizureDetector {
        SeizureDetector { config, patients: HashMap::new(), late: 0 }
    }

    /// Accelerometer samples that arrived after their window was analysed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Forgets everything about a patient (after their erasure).
    pub fn forget_patient(&mut self, patient: &str) {
        self.patients.remove(patient);
    }

    /// Whether the detector reads this metric.
    pub fn reads(metric: &str) -> bool {
        METRICS.contains(&metric)
    }

    /// Takes readings `(metric, time, value)` of one patient and analyses the windows they
    /// complete.
    pub fn ingest(&mut self, patient: &str, readings: &[(&str, i64, f64)]) -> Vec<Change> {
        let p = self.patients.entry(patient.to_owned()).or_default();
        for &(metric, t, v) in readings {
            let series = match metric {
                "acceleration_x" => &mut p.axes[0],
                "acceleration_y" => &mut p.axes[1],
                "acceleration_z" => &mut p.axes[2],
                "heart_rate" => &mut p.hr,
                "eda" => &mut p.eda,
                _ => continue,
            };
            let axis = metric.starts_with("acceleration");
            if axis && p.evaluated_to.is_some_and(|e| t <= e) {
                self.late += 1;
                continue;
            }
            push_sorted(series, t, v);
        }
        let mut out = Vec::new();
        Self::analyse(&self.config, patient, p, &mut out);
        out
    }

    fn analyse(c: &SeizureConfig, patient: &str, p: &mut PatientState, out: &mut Vec<Change>) {
        let (w, hop) = (c.window.as_ms(), c.hop.as_ms());
        let Some(watermark) = p.axes.iter().map(|a| a.back().map(|x| x.0)).min().flatten() else { return };
        let first = p.axes.iter().filter_map(|a| a.front().map(|x| x.0)).max().unwrap_or(watermark);
        // Window ends are multiples of the hop; a window is analysed once every axis has a
        // sample after its end.
        let mut end = match p.evaluated_to {
            Some(e) => e + hop,
            None => (first + w).div_euclid(hop) * hop + hop,
        };
        while end < watermark {
            let slices: Vec<Vec<(i64, f64)>> = p.axes.iter().map(|a| range(a, end - w, end).collect()).collect();
            let f = window_features(
                [&slices[0], &slices[1], &slices[2]],
                w,
                (c.band_low_hz, c.band_high_hz),
                c.min_band_rms_g,
            );
            let rhythmic = f.band_ratio >= c.min_band_ratio && f.band_rms_g >= c.min_band_rms_g;
            Self::step(c, patient, p, end, rhythmic, out);
            p.evaluated_to = Some(end);
            end += hop;
        }
        // Forget what no later window or baseline needs.
        if let Some(e) = p.evaluated_to {
            for a in &mut p.axes {
                while a.front().is_some_and(|x| x.0 <= e - w) {
                    a.pop_front();
                }
            }
            for s in [&mut p.hr, &mut p.eda] {
                while s.front().is_some_and(|x| x.0 < e - KEEP_MS) {
                    s.pop_front();
                }
            }
            for s in p.axes.iter_mut().chain([&mut p.hr, &mut p.eda]) {
                release_spare(s);
            }
        }
    }

    /// Tachycardia or an electrodermal surge at `t`.
    fn autonomic(c: &SeizureConfig, p: &PatientState, t: i64) -> bool {
        let in_range =
            |s: &VecDeque<(i64, f64)>, from: i64, to: i64| -> Vec<f64> { range(s, from, to).map(|x| x.1).collect() };
        let base = in_range(&p.hr, t - HR_BASELINE_MS - HR_BASELINE_GAP_MS, t - HR_BASELINE_GAP_MS);
        let recent = in_range(&p.hr, t - RECENT_MS, t);
        if !base.is_empty() && !recent.is_empty() {
            let baseline = base.iter().sum::<f64>() / base.len() as f64;
            if recent.iter().copied().fold(f64::MIN, f64::max) > (1.0 + c.hr_gain) * baseline {
                return true;
            }
        }
        let before = in_range(&p.eda, t - EDA_BASELINE_MS - RECENT_MS, t - RECENT_MS);
        let recent = in_range(&p.eda, t - RECENT_MS, t);
        if !before.is_empty() && !recent.is_empty() {
            let low = before.iter().copied().fold(f64::MAX, f64::min);
            if recent.iter().copied().fold(f64::MIN, f64::max) - low >= c.eda_rise_us {
                return true;
            }
        }
        false
    }

    fn step(c: &SeizureConfig, patient: &str, p: &mut PatientState, t: i64, rhythmic: bool, out: &mut Vec<Change>) {
        let change = |e: Episode, opened: bool| detector_change(patient, e, opened);
        if rhythmic {
            let sign = Self::autonomic(c, p, t);
            let (start, _, seen) = p.run.unwrap_or((t, t, false));
            p.run = Some((start, t, seen || sign));
            match &mut p.firing {
                Some(e) => e.end = t,
                None => {
                    if t - start >= c.min_motion.as_ms() && (seen || sign) {
                        let e = Episode { start, fired: t, end: t, cleared: None };
                        out.push(change(e.clone(), true));
                        p.firing = Some(e);
                    }
                }
            }
            return;
        }
        let Some((_, last, _)) = p.run else { return };
        // A pause: the motion run continues if rhythm comes back soon (before firing, after
        // one quiet window; after firing, within `clear_after`).
        let gap = t - last;
        match &p.firing {
            Some(e) if gap >= c.clear_after.as_ms() => {
                let done = Episode { cleared: Some(t), ..e.clone() };
                out.push(change(done, false));
                p.firing = None;
                p.run = None;
            }
            Some(_) => {}
            None if gap > c.hop.as_ms() => p.run = None,
            None => {}
        }
    }
}

/// How well detections match labelled seizures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub seizures: usize,
    pub detected: usize,
    pub false_alarms: usize,
    pub hours: f64,
    /// Onset (label start) to the first detection that fired during the seizure or within
    /// `grace` after it, per detected seizure (ms).
    pub latencies_ms: Vec<i64>,
}

impl Score {
    /// Matches detections (their firing time) to labels `(start, end)`.
    pub fn of(labels: &[(i64, i64)], fired: &[i64], hours: f64, grace_ms: i64) -> Score {
        let mut latencies = Vec::new();
        let mut matched = vec![false; fired.len()];
        for &(s, e) in labels {
            let mut first = None;
            for (i, &f) in fired.iter().enumerate() {
                if f >= s && f <= e + grace_ms {
                    matched[i] = true;
                    first = Some(first.map_or(f, |x: i64| x.min(f)));
                }
            }
            if let Some(f) = first {
                latencies.push(f - s);
            }
        }
        latencies.sort_unstable();
        Score {
            seizures: labels.len(),
            detected: latencies.len(),
            false_alarms: matched.iter().filter(|m| !**m).count(),
            hours,
            latencies_ms: latencies,
        }
    }

    pub fn sensitivity(&self) -> f64 {
        if self.seizures == 0 { 1.0 } else { self.detected as f64 / self.seizures as f64 }
    }

    pub fn false_alarms_per_day(&self) -> f64 {
        if self.hours <= 0.0 { 0.0 } else { self.false_alarms as f64 * 24.0 / self.hours }
    }

    pub fn median_latency_ms(&self) -> Option<i64> {
        self.latencies_ms.get(self.latencies_ms.len() / 2).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 Hz axes: a slow posture sway plus, between `from` and `to`, a sinusoid of `hz`.
    fn axes(t0: i64, secs: i64, hz: f64, amp: f64, from: i64, to: i64) -> Vec<(&'static str, i64, f64)> {
        let mut v = Vec::new();
        for i in 0..secs * 32 {
            let t = t0 + i * 1000 / 32;
            let ts = t as f64 / 1000.0;
            let a = if t >= from && t < to { amp * (TAU * hz * ts).sin() } else { 0.0 };
            v.push(("acceleration_x", t, 0.3 * (TAU * ts / 60.0).sin() + a));
            v.push(("acceleration_y", t, 0.2 + 0.7 * a));
            v.push(("acceleration_z", t, 0.9 - 0.5 * a));
        }
        v
    }

    fn hr(t0: i64, secs: i64, base: f64, high_from: i64, high: f64) -> Vec<(&'static str, i64, f64)> {
        (0..secs).map(|i| t0 + i * 1000).map(|t| ("heart_rate", t, if t >= high_from { high } else { base })).collect()
    }

    #[test]
    fn band_features_tell_clonic_jerks_from_walking() {
        let feats = |hz: f64| {
            let r = axes(0, 8, hz, 0.8, 0, 8_000);
            let split = |m: &str| -> Vec<(i64, f64)> {
                r.iter().filter(|x| x.0 == m).map(|x| (x.1, x.2)).filter(|x| x.0 > 0 && x.0 <= 8_000).collect()
            };
            let (x, y, z) = (split("acceleration_x"), split("acceleration_y"), split("acceleration_z"));
            window_features([&x, &y, &z], 8_000, (3.0, 8.0), 0.01)
        };
        let jerks = feats(5.0);
        assert!(jerks.band_ratio > 0.9, "{jerks:?}");
        // 0.8 g on x, 0.56 on y, 0.4 on z: RMS sqrt((0.64 + 0.31 + 0.16) / 2) = 0.75 g.
        assert!((jerks.band_rms_g - 0.75).abs() < 0.08, "{jerks:?}");
        let walking = feats(1.8);
        assert!(walking.band_ratio < 0.1, "{walking:?}");
    }

    #[test]
    fn rhythmic_motion_with_tachycardia_fires_once_and_clears() {
        let mut d = SeizureDetector::new(SeizureConfig { enabled: true, ..SeizureConfig::default() });
        let t0 = 1_000_000_000_000;
        let (onset, end) = (t0 + 20 * 60_000, t0 + 20 * 60_000 + 60_000);
        let mut readings = hr(t0, 25 * 60, 70.0, onset + 10_000, 100.0);
        readings.extend(axes(t0 + 18 * 60_000, 7 * 60, 5.0, 0.8, onset, end));
        readings.sort_by_key(|r| r.1);
        // In batches of 1000 readings, as they would arrive.
        let mut changes = Vec::new();
        for chunk in readings.chunks(1000) {
            changes.extend(d.ingest("p", chunk));
        }
        assert_eq!(changes.len(), 2, "{changes:#?}");
        let Change::Opened { episode: o, .. } = &changes[0] else { panic!("{changes:?}") };
        assert!(o.fired - onset >= 10_000 && o.fired - onset <= 20_000, "latency {}", o.fired - onset);
        let Change::Resolved { episode: r, .. } = &changes[1] else { panic!("{changes:?}") };
        assert!(r.cleared.expect("cleared") >= end + 60_000);
        // The same data in one batch gives the same episodes.
        let mut d2 = SeizureDetector::new(SeizureConfig { enabled: true, ..SeizureConfig::default() });
        assert_eq!(d2.ingest("p", &readings), changes);
    }

    #[test]
    fn a_burst_of_history_does_not_keep_its_memory() {
        let mut d = SeizureDetector::new(SeizureConfig { enabled: true, ..SeizureConfig::default() });
        let t0 = 1_000_000_000_000;
        // An hour of 32 Hz motion at once, as a backfill hands it over.
        let mut readings = hr(t0, 3600, 70.0, i64::MAX, 70.0);
        readings.extend(axes(t0, 3600, 1.0, 0.1, 0, 0));
        readings.sort_by_key(|r| r.1);
        d.ingest("p", &readings);
        let p = &d.patients["p"];
        for a in &p.axes {
            // What a window needs (some hundreds of samples), not the hour's 115,200.
            assert!(a.capacity() <= 8192, "axis keeps room for {} samples", a.capacity());
        }
    }

    #[test]
    fn rhythmic_motion_without_an_autonomic_sign_does_not_fire() {
        let mut d = SeizureDetector::new(SeizureConfig { enabled: true, ..SeizureConfig::default() });
        let t0 = 1_000_000_000_000;
        let onset = t0 + 20 * 60_000;
        let mut readings = hr(t0, 25 * 60, 70.0, i64::MAX, 0.0);
        readings.extend(axes(t0 + 18 * 60_000, 7 * 60, 5.0, 0.8, onset, onset + 60_000));
        readings.sort_by_key(|r| r.1);
        assert!(d.ingest("p", &readings).is_empty());
    }

    #[test]
    fn thresholds_out_of_range_are_reported() {
        assert!(SeizureConfig::default().problems().is_empty());
        let bad = SeizureConfig {
            band_low_hz: 9.0,
            min_band_ratio: 1.5,
            hop: DurationMs(10_000),
            hr_gain: 0.0,
            ..SeizureConfig::default()
        };
        let p = bad.problems().join("; ");
        for want in ["band_low_hz", "min_band_ratio", "hop", "hr_gain"] {
            assert!(p.contains(want), "{want} in {p}");
        }
    }

    #[test]
    fn scores_count_detections_false_alarms_and_latency() {
        let s = Score::of(&[(1_000, 2_000), (10_000, 11_000)], &[1_500, 1_700, 5_000, 20_000], 24.0, 500);
        assert_eq!((s.seizures, s.detected, s.false_alarms), (2, 1, 2));
        assert_eq!(s.latencies_ms, vec![500]);
        assert_eq!((s.sensitivity(), s.false_alarms_per_day()), (0.5, 2.0));
    }
}
