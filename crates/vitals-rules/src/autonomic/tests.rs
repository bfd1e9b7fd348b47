use super::*;

const S: i64 = 1_000;
const T0: i64 = 1_763_700_000_000;

/// Heart rate every second for `secs` from T0: `base` bpm, then `hr(second)` from `from`.
fn heart(secs: i64, base: f64, from: i64, hr: impl Fn(i64) -> f64) -> Vec<(&'static str, i64, f64)> {
    (0..secs)
        .map(|i| ("heart_rate", T0 + i * S, if i >= from { hr(i - from) } else { base + (i % 3) as f64 }))
        .collect()
}

/// EDA four times a second: 2 µS, plus `extra(second)` from `from`.
fn eda(secs: i64, from: i64, extra: impl Fn(i64) -> f64) -> Vec<(&'static str, i64, f64)> {
    (0..secs * 4)
        .map(|k| {
            let i = k / 4;
            ("eda", T0 + k * 250, 2.0 + if i >= from { extra(i - from) } else { 0.0 })
        })
        .collect()
}

fn run(readings: &[(&'static str, i64, f64)], chunk: usize) -> Vec<Change> {
    let mut sorted = readings.to_vec();
    sorted.sort_by_key(|r| r.1);
    let mut d = AutonomicDetector::new(AutonomicConfig::default());
    sorted.chunks(chunk).flat_map(|c| d.ingest("p", c)).collect()
}

/// 15 minutes at 70 bpm, then an abrupt rise to 105 for 90 s, and an EDA surge of 3 µS
/// from 20 s after onset.
fn seizure() -> Vec<(&'static str, i64, f64)> {
    let onset = 900;
    let mut r = heart(1300, 70.0, onset, |s| if s < 90 { 70.0 + 35.0 * (s as f64 / 10.0).min(1.0) } else { 71.0 });
    r.extend(eda(1300, onset + 20, |s| 3.0 * (s as f64 / 15.0).min(1.0)));
    r
}

#[test]
fn abrupt_tachycardia_with_an_electrodermal_surge_fires_once_and_clears() {
    let changes = run(&seizure(), 100_000);
    assert_eq!(changes.len(), 2, "{changes:?}");
    let Change::Opened { episode, rule, .. } = &changes[0] else { panic!("{changes:?}") };
    assert_eq!(rule, crate::seizure::DETECTOR_RULE);
    let onset = T0 + 900 * S;
    assert!(episode.start >= onset && episode.start <= onset + 15 * S, "{episode:?}");
    // The surge reaches 1 µS about 25 s after onset.
    assert!(episode.fired >= onset + 20 * S && episode.fired <= onset + 40 * S, "{episode:?}");
    let Change::Resolved { episode, .. } = &changes[1] else { panic!("{changes:?}") };
    assert!(episode.cleared.is_some_and(|c| c >= onset + 150 * S), "{episode:?}");
}

#[test]
fn any_batching_gives_the_same_changes() {
    let r = seizure();
    let whole = run(&r, 100_000);
    for chunk in [1, 7, 250, 4_000] {
        assert_eq!(run(&r, chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn heart_rate_and_eda_in_separate_batches_give_the_same_changes() {
    let r = seizure();
    let (hr, e): (Vec<_>, Vec<_>) = r.iter().partition(|x| x.0 == "heart_rate");
    let mut d = AutonomicDetector::new(AutonomicConfig::default());
    let mut got = Vec::new();
    // A minute of heart rate, then that minute of EDA, and so on.
    for m in 0..25 {
        let part = |v: &Vec<(&'static str, i64, f64)>| -> Vec<(&'static str, i64, f64)> {
            v.iter().copied().filter(|x| (x.1 - T0) / 60_000 == m).collect()
        };
        got.extend(d.ingest("p", &part(&hr)));
        got.extend(d.ingest("p", &part(&e)));
    }
    assert_eq!(got, run(&r, 100_000));
}

#[test]
fn rr_intervals_stand_in_for_heart_rate() {
    let r: Vec<(&'static str, i64, f64)> = seizure()
        .into_iter()
        .map(|(m, t, v)| if m == "heart_rate" { ("rr_interval", t, 60_000.0 / v) } else { (m, t, v) })
        .collect();
    assert_eq!(run(&r, 500).len(), 2);
}

#[test]
fn slow_rises_do_not_fire_even_with_sweat() {
    // Stress or exercise: up 30 bpm over two minutes, with an EDA rise.
    let onset = 900;
    let mut r = heart(1300, 70.0, onset, |s| 70.0 + 30.0 * (s as f64 / 120.0).min(1.0));
    r.extend(eda(1300, onset, |s| 3.0 * (s as f64 / 60.0).min(1.0)));
    assert!(run(&r, 1000).is_empty());
    // Abrupt but small (clapping, a fright): +8 %.
    let r = heart(1300, 70.0, onset, |s| if s < 60 { 76.0 } else { 70.0 });
    assert!(run(&r, 1000).is_empty());
}

#[test]
fn without_eda_a_steeper_longer_rise_is_needed() {
    let onset = 900;
    // +50 % for 60 s: fires after 30 s.
    let steep = heart(1200, 70.0, onset, |s| if s < 60 { 70.0 + 35.0 * (s as f64 / 5.0).min(1.0) } else { 70.0 });
    let c = run(&steep, 300);
    let Some(Change::Opened { episode, .. }) = c.first() else { panic!("{c:?}") };
    assert!(episode.fired - episode.start >= 30 * S, "{episode:?}");
    // +30 % only: not without a surge.
    let mild = heart(1200, 70.0, onset, |s| if s < 60 { 91.0 } else { 70.0 });
    assert!(run(&mild, 300).is_empty());
}

#[test]
fn thresholds_out_of_range_are_reported() {
    assert!(AutonomicConfig::default().problems().is_empty());
    let bad = AutonomicConfig { hr_gain: 0.5, no_eda_gain: 0.3, abrupt_share: 2.0, ..AutonomicConfig::default() };
    assert_eq!(bad.problems().len(), 2);
}
