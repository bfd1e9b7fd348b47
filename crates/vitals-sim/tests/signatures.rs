//! Each profile's statistical signature, determinism, and labels that match the signals.
//! The bounds asserted here are the ones documented in docs/simulator.md.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vitals_sim::{Encoding, Label, Mix, Options, Patient, Reading, Simulator, Which, demo_cohort};

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;
/// 2025-11-01T00:00:00Z
const T0: i64 = 1_761_955_200_000;

fn sim() -> Simulator {
    Simulator::new(42, Options::default())
}

fn readings(s: &Simulator, p: &Patient, from: i64, to: i64, which: Which) -> Vec<Reading> {
    let mut v = Vec::new();
    s.generate(p, from, to, which, &mut |r| v.push(r));
    v
}

fn series<'a>(rs: &'a [Reading], metric: &str) -> Vec<&'a Reading> {
    rs.iter().filter(|r| r.metric == metric).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

fn patient(s: &Simulator, id: &str, mix: &str) -> Patient {
    s.patient(id, mix.parse::<Mix>().expect("mix"))
}

fn encode(s: &Simulator, members: &[(String, Mix)], from: i64, to: i64) -> String {
    let mut out = String::new();
    for (id, mix) in members {
        let p = s.patient(id, mix.clone());
        s.generate(&p, from, to, Which::All, &mut |r| {
            Encoding::Ndjson.push(&mut out, id, &p.device_id(r.device), &r);
        });
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    let members: Vec<(String, Mix)> = demo_cohort(1).into_iter().map(|m| (m.id, m.profiles)).collect();
    let (from, to) = (T0, T0 + 2 * 3_600_000);
    let a = encode(&sim(), &members, from, to);
    let b = encode(&sim(), &members, from, to);
    assert!(a.len() > 1_000_000, "{}", a.len());
    assert_eq!(a, b);
    let c = encode(&Simulator::new(43, Options::default()), &members, from, to);
    assert_ne!(a, c);
}

fn sorted(mut v: Vec<Reading>) -> Vec<(&'static str, i64, u64)> {
    let mut k: Vec<_> = v.drain(..).map(|r| (r.metric, r.time_ms, r.value.to_bits())).collect();
    k.sort_unstable();
    k
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    /// Backfill then live equals one long run, wherever the timeline is cut.
    #[test]
    fn windows_compose(cut in 1i64..(2 * 3_600_000), which in 0usize..3) {
        let s = sim();
        let mix = ["diabetic", "epilepsy", "illness+athlete"][which];
        let p = patient(&s, "p-cut", mix);
        let (from, to) = (T0 + DAY - 3_600_000, T0 + DAY + 3_600_000);
        let whole = sorted(readings(&s, &p, from, to, Which::All));
        let mut parts = readings(&s, &p, from, from + cut, Which::All);
        parts.extend(readings(&s, &p, from + cut, to, Which::All));
        prop_assert_eq!(whole, sorted(parts));
    }
}

fn glucose_week(mix: &str) -> (Vec<f64>, Vec<i64>, Vec<Label>) {
    let s = sim();
    let mut values = Vec::new();
    let mut times = Vec::new();
    let mut labels = Vec::new();
    for i in 0..4 {
        let p = patient(&s, &format!("p-g{i}"), mix);
        let rs = readings(&s, &p, T0, T0 + 7 * DAY, Which::All);
        let g = series(&rs, "blood_glucose");
        values.extend(g.iter().map(|r| r.value));
        times.extend(g.iter().map(|r| r.time_ms));
        labels.extend(s.labels(&p, T0, T0 + 7 * DAY));
    }
    (values, times, labels)
}

#[test]
fn glucose_profiles_have_their_documented_signatures() {
    let mut report = BTreeMap::new();
    for mix in ["diabetic", "athlete", "party-goer", "low-glucose", "elderly"] {
        let (v, times, _) = glucose_week(mix);
        let low = v.iter().filter(|&&x| x < 70.0).count() as f64 / v.len() as f64;
        let high = v.iter().filter(|&&x| x > 180.0).count() as f64 / v.len() as f64;
        report.insert(mix, (mean(&v), sd(&v), low, high, v.len()));
        // A CGM: integer mg/dL within the sensor's range, on a 5-minute grid, few gaps.
        assert!(v.iter().all(|x| x.fract() == 0.0 && (40.0..=400.0).contains(x)), "{mix}");
        assert!(times.windows(2).all(|w| w[1] < w[0] || (w[1] - w[0]) % (5 * MIN) == 0), "{mix}");
        let expected = 4 * 7 * 288;
        assert!(v.len() > expected * 9 / 10 && v.len() < expected, "{mix}: {} of {expected}", v.len());
    }
    eprintln!("{report:#?}");
    let (mean_of, sd_of, low_of, high_of) = (|k| report[k].0, |k| report[k].1, |k| report[k].2, |k| report[k].3);
    assert!((160.0..210.0).contains(&mean_of("diabetic")) && high_of("diabetic") > 0.25, "{report:?}");
    assert!((80.0..100.0).contains(&mean_of("athlete")) && (0.002..0.1).contains(&low_of("athlete")), "{report:?}");
    assert!((100.0..125.0).contains(&mean_of("party-goer")) && sd_of("party-goer") > 18.0, "{report:?}");
    assert!((75.0..95.0).contains(&mean_of("low-glucose")) && low_of("low-glucose") > 0.03, "{report:?}");
    assert!((120.0..145.0).contains(&mean_of("elderly")) && sd_of("elderly") < 15.0, "{report:?}");
}

#[test]
fn every_low_glucose_label_holds_readings_below_70() {
    let s = sim();
    for i in 0..4 {
        let p = patient(&s, &format!("p-low{i}"), "low-glucose");
        let rs = readings(&s, &p, T0, T0 + 7 * DAY, Which::All);
        let labels = s.labels(&p, T0, T0 + 7 * DAY);
        assert!(labels.len() >= 7, "at least one episode a day: {}", labels.len());
        for l in labels {
            assert_eq!(l.kind, "hypoglycemia");
            let inside: Vec<f64> = series(&rs, "blood_glucose")
                .iter()
                .filter(|r| r.time_ms >= l.start_ms && r.time_ms < l.end_ms)
                .map(|r| r.value)
                .collect();
            // A reading may be lost to a signal gap; the rest of the episode goes low.
            assert!(inside.is_empty() || inside.iter().any(|&v| v < 70.0), "{l:?}: {inside:?}");
        }
    }
}

#[test]
fn wearable_signals_follow_sleep_and_are_quantized_like_devices() {
    let s = sim();
    let p = patient(&s, "p-w", "wearable");
    let rs = readings(&s, &p, T0, T0 + 7 * DAY, Which::All);
    let asleep = |t: i64| {
        s.events(&p, T0 - DAY, T0 + 7 * DAY).iter().any(|e| e.kind == "sleep" && e.start_ms <= t && t < e.end_ms)
    };
    let sleeps: Vec<_> = s.events(&p, T0 - DAY, T0 + 7 * DAY).into_iter().filter(|e| e.kind == "sleep").collect();
    assert_eq!(sleeps.len(), 8);
    for e in &sleeps {
        let hours = (e.end_ms - e.start_ms) as f64 / 3_600_000.0;
        assert!((5.5..11.0).contains(&hours), "{hours}");
    }
    let hr = series(&rs, "heart_rate");
    assert!(hr.iter().all(|r| r.value.fract() == 0.0 && (35.0..=220.0).contains(&r.value)));
    let (night, day): (Vec<&&Reading>, Vec<&&Reading>) = hr.iter().partition(|r| asleep(r.time_ms));
    let night_mean = mean(&night.iter().map(|r| r.value).collect::<Vec<_>>());
    let day_mean = mean(&day.iter().map(|r| r.value).collect::<Vec<_>>());
    assert!(day_mean - night_mean > 8.0, "day {day_mean} night {night_mean}");
    assert!((45.0..75.0).contains(&night_mean), "{night_mean}");
    // A watch: heart rate every 5 s, except while it charges (30-60 min a day).
    let expected = 7 * 17_280;
    assert!(hr.len() > expected * 94 / 100 && hr.len() < expected * 99 / 100, "{}", hr.len());
    let steps = series(&rs, "step_count");
    assert!(steps.iter().all(|r| r.value.fract() == 0.0 && r.value >= 0.0));
    assert!(steps.iter().filter(|r| asleep(r.time_ms)).all(|r| r.value == 0.0));
    let daily = steps.iter().map(|r| r.value).sum::<f64>() / 7.0;
    assert!((2_000.0..20_000.0).contains(&daily), "{daily} steps a day");
    let temp = series(&rs, "skin_temperature");
    assert!(temp.iter().all(|r| ((r.value * 100.0).round() - r.value * 100.0).abs() < 1e-6));
    let t_night = mean(&temp.iter().filter(|r| asleep(r.time_ms)).map(|r| r.value).collect::<Vec<_>>());
    let t_day = mean(&temp.iter().filter(|r| !asleep(r.time_ms)).map(|r| r.value).collect::<Vec<_>>());
    assert!(t_night > t_day + 0.5, "distal skin warms in sleep: {t_night} {t_day}");
    for metric in ["spo2", "respiratory_rate", "hrv_sdnn", "resting_heart_rate", "eda", "active_energy"] {
        assert!(!series(&rs, metric).is_empty(), "{metric}");
    }
    assert_eq!(series(&rs, "resting_heart_rate").len(), 7, "one a day");
    assert!(series(&rs, "spo2").iter().all(|r| asleep(r.time_ms) && (85.0..=100.0).contains(&r.value)));
}

/// Power of `x` in the 3-8 Hz band relative to its total variance (Goertzel-free: a
/// plain DFT over the few frequencies of interest).
fn band_power(x: &[f64], hz: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let m = mean(x);
    let total: f64 = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
    let mut band = 0.0;
    let k_lo = (3.0 * n / hz).ceil() as usize;
    let k_hi = (8.0 * n / hz).floor() as usize;
    for k in k_lo..=k_hi {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, v) in x.iter().enumerate() {
            let a = std::f64::consts::TAU * k as f64 * i as f64 / n;
            re += (v - m) * a.cos();
            im -= (v - m) * a.sin();
        }
        band += 2.0 * (re * re + im * im) / (n * n);
    }
    (band, total)
}

#[test]
fn seizure_labels_align_with_motion_heart_rate_and_eda() {
    let s = Simulator::new(42, Options { seizures_per_day: 3.0, ..Options::default() });
    let p = patient(&s, "p-sz", "epilepsy");
    let (from, to) = (T0, T0 + 2 * DAY);
    let labels = s.labels(&p, from, to);
    assert!(labels.len() >= 3, "{labels:?}");
    for l in &labels {
        assert_eq!(l.kind, "seizure");
        let dur = l.end_ms - l.start_ms;
        assert!((30_000..=120_000).contains(&dur));
        let rs = readings(&s, &p, l.start_ms - 15 * MIN, l.end_ms + 5 * MIN, Which::All);
        let x = |a: i64, b: i64| -> Vec<f64> {
            series(&rs, "acceleration_x").iter().filter(|r| r.time_ms >= a && r.time_ms < b).map(|r| r.value).collect()
        };
        // 32 Hz motion, quantized to 1/64 g.
        let during = x(l.start_ms + 5_000, l.start_ms + 25_000);
        assert_eq!(during.len(), 640);
        assert!(during.iter().all(|v| (v * 64.0).fract() == 0.0));
        let (band, total) = band_power(&during, 32.0);
        assert!(band > 0.05 && band > 0.6 * total, "{l:?}: rhythmic 3-8 Hz motion {band} of {total}");
        let before = x(l.start_ms - 10 * MIN, l.start_ms - 10 * MIN + 20_000);
        let (band_before, _) = band_power(&before, 32.0);
        assert!(band > 10.0 * band_before, "{band} vs {band_before} before");
        // Tachycardia: more than 30% over the preceding 10 minutes' median.
        let hr = |a: i64, b: i64| -> Vec<f64> {
            series(&rs, "heart_rate").iter().filter(|r| r.time_ms >= a && r.time_ms < b).map(|r| r.value).collect()
        };
        let mut base = hr(l.start_ms - 10 * MIN, l.start_ms);
        base.sort_by(f64::total_cmp);
        let median = base[base.len() / 2];
        let peak = hr(l.start_ms, l.end_ms).into_iter().fold(0.0, f64::max);
        assert!(peak > 1.3 * median, "{l:?}: peak {peak} vs baseline {median}");
        // The electrodermal surge comes mostly after onset.
        let eda = |a: i64, b: i64| -> f64 {
            mean(
                &series(&rs, "eda")
                    .iter()
                    .filter(|r| r.time_ms >= a && r.time_ms < b)
                    .map(|r| r.value)
                    .collect::<Vec<_>>(),
            )
        };
        let pre = eda(l.start_ms - 2 * MIN, l.start_ms);
        let post = eda(l.start_ms + 60_000, l.start_ms + 180_000);
        assert!(post > pre + 1.0, "{l:?}: eda {pre} -> {post}");
        let rr = series(&rs, "rr_interval");
        assert!(
            rr.iter()
                .filter(|r| r.time_ms >= l.start_ms && r.time_ms < l.end_ms)
                .any(|r| r.value < 60_000.0 / (1.3 * median))
        );
    }
}

#[test]
fn illness_labels_cover_a_rise_of_the_nightly_resting_heart_rate() {
    let s = sim();
    for i in 0..3 {
        let p = patient(&s, &format!("p-ill{i}"), "illness");
        let (from, to) = (T0, T0 + 40 * DAY);
        let labels = s.labels(&p, from, to);
        assert!((3..=5).contains(&labels.len()), "one per 10 days: {labels:?}");
        for l in &labels {
            let days = (l.end_ms - l.start_ms) as f64 / DAY as f64;
            assert!((2.5..=4.0).contains(&days), "{l:?}");
        }
        // Episodes that began before the window count too when telling well from ill.
        let all = s.labels(&p, from - 10 * DAY, to);
        let rhr = readings(&s, &p, from, to, Which::Sparse);
        let rhr = series(&rhr, "resting_heart_rate");
        assert_eq!(rhr.len(), 40);
        let sick = |t: i64| all.iter().any(|l| t >= l.start_ms + DAY && t < l.end_ms - DAY / 2);
        let well = |t: i64| all.iter().all(|l| t < l.start_ms || t > l.end_ms + DAY);
        let mean_where =
            |f: &dyn Fn(i64) -> bool| mean(&rhr.iter().filter(|r| f(r.time_ms)).map(|r| r.value).collect::<Vec<_>>());
        let (ill, base) = (mean_where(&sick), mean_where(&well));
        assert!(ill > base + 4.0, "resting heart rate {base} -> {ill}");
    }
}

#[test]
fn an_athletes_glucose_is_lower_after_training() {
    let s = sim();
    let (mut after, mut all) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let p = patient(&s, &format!("p-ath{i}"), "athlete+wearable");
        let rs = readings(&s, &p, T0, T0 + 7 * DAY, Which::Sparse);
        let g = series(&rs, "blood_glucose");
        let workouts: Vec<_> = s.events(&p, T0, T0 + 7 * DAY).into_iter().filter(|e| e.kind == "workout").collect();
        assert!(workouts.len() >= 6, "an athlete trains daily: {}", workouts.len());
        all.extend(g.iter().map(|r| r.value));
        for w in &workouts {
            after
                .extend(g.iter().filter(|r| r.time_ms >= w.end_ms && r.time_ms < w.end_ms + 90 * MIN).map(|r| r.value));
        }
    }
    let (a, m) = (mean(&after), mean(&all));
    assert!(a < m - 8.0, "after training {a} vs overall {m}");
}

#[test]
fn seizure_kinds_and_confounders_change_only_what_they_say() {
    let base = Options { seizures_per_day: 6.0, seizure_kinds: true, ..Options::default() };
    let plain = Simulator::new(42, base.clone());
    let confounded = Simulator::new(42, Options { confounders: true, ..base });
    let p = patient(&plain, "p-sz", "epilepsy");
    let (from, to) = (T0, T0 + 2 * DAY);
    // The same seizures, of several kinds, either way.
    let labels = plain.labels(&p, from, to);
    assert_eq!(labels, confounded.labels(&p, from, to));
    let kinds: std::collections::BTreeSet<_> = labels.iter().filter_map(|l| l.subtype).collect();
    assert!(kinds.contains("autonomic") && kinds.contains("hypermotor"), "{labels:?}");
    // An autonomic-only seizure: tachycardia without rhythmic motion.
    let a = labels.iter().find(|l| l.subtype == Some("autonomic")).expect("an autonomic seizure");
    let rs = readings(&plain, &p, a.start_ms + 5_000, a.start_ms + 25_000, Which::All);
    let x: Vec<f64> = series(&rs, "acceleration_x").iter().map(|r| r.value).collect();
    let (band, _) = band_power(&x, 32.0);
    assert!(band < 0.01, "no clonic motion: {band}");
    // Confounders: the morning's tooth brushing is rhythmic motion in the 3-8 Hz band, on
    // a day otherwise the same.
    let day: Vec<Reading> = readings(&plain, &p, from, from + DAY, Which::Dense);
    let day_c: Vec<Reading> = readings(&confounded, &p, from, from + DAY, Which::Dense);
    assert_eq!(day.len(), day_c.len());
    let differs: Vec<i64> = day
        .iter()
        .zip(&day_c)
        .filter(|(a, b)| a.metric.starts_with("acceleration") && a.value != b.value)
        .map(|(a, _)| a.time_ms)
        .collect();
    assert!(!differs.is_empty(), "confounders move the wrist");
    let start = differs[0];
    let brushing: Vec<f64> = series(&day_c, "acceleration_x")
        .iter()
        .filter(|r| r.time_ms >= start + 5_000 && r.time_ms < start + 25_000)
        .map(|r| r.value)
        .collect();
    let (band, total) = band_power(&brushing, 32.0);
    assert!(band > 0.02 && band > 0.5 * total, "rhythmic in the clonic band: {band} of {total}");
}
