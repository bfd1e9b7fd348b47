use super::*;
use proptest::prelude::*;

/// Nights of a resting heart rate: 60 ± 1 bpm in a fixed pattern, with `raised` bpm added
/// on the given days.
fn rhr(days: std::ops::Range<i64>, raised: &[(i64, f64)]) -> Vec<(i64, Signal, f64)> {
    days.map(|d| {
        let wobble = [0.0, 1.0, -1.0, 0.5, -0.5][d.rem_euclid(5) as usize];
        let extra = raised.iter().find(|r| r.0 == d).map_or(0.0, |r| r.1);
        (d, Signal::RestingHeartRate, 60.0 + wobble + extra)
    })
    .collect()
}

fn batch(values: &[(i64, Signal, f64)]) -> BTreeMap<i64, NightValues> {
    let mut m: BTreeMap<i64, NightValues> = BTreeMap::new();
    for &(d, s, v) in values {
        m.entry(d).or_insert([None; 7])[s.index()] = Some(v);
    }
    m
}

#[test]
fn two_raised_nights_open_an_anomaly_with_its_explanation_and_two_normal_ones_clear_it() {
    let mut det = AnomalyDetector::new(AnomalyConfig::default());
    let nights = rhr(20_000..20_040, &[(20_030, 6.0), (20_031, 7.0), (20_032, 5.0)]);
    let mut changes = Vec::new();
    for n in &nights {
        changes.extend(det.ingest("p-1", std::slice::from_ref(n)));
    }
    assert_eq!(changes.len(), 2, "{changes:#?}");
    let AnomalyChange::Opened { anomaly, .. } = &changes[0] else { panic!("opened first: {changes:?}") };
    assert_eq!((anomaly.start_day, anomaly.fired_day, anomaly.cleared_day), (20_030, 20_031, None));
    let e = &anomaly.explanation;
    assert_eq!((e.since_day, e.nights, e.signals[0].signal), (20_030, 2, Signal::RestingHeartRate));
    assert!((e.signals[0].value - e.signals[0].median - 7.5).abs() < 1.0, "{e:?}");
    assert!(e.text.starts_with("For 2 nights since 2024-11-03: resting heart rate 68.0 bpm (+"), "{}", e.text);
    let AnomalyChange::Resolved { anomaly, .. } = &changes[1] else { panic!("then resolved: {changes:?}") };
    assert_eq!(anomaly.cleared_day, Some(20_034), "the second normal night after 3 raised ones");
    // One raised night is not an anomaly, unless it is raised twice over (8 bpm and 4
    // spreads for the normal sensitivity).
    let mut one = AnomalyDetector::new(AnomalyConfig::default());
    assert!(one.ingest("p-1", &rhr(20_000..20_040, &[(20_030, 6.0)])).is_empty());
    let marked = one.ingest("p-2", &rhr(20_000..20_040, &[(20_030, 10.0)]));
    let Some(AnomalyChange::Opened { anomaly, .. }) = marked.first() else { panic!("opened: {marked:?}") };
    assert_eq!((anomaly.start_day, anomaly.fired_day, anomaly.explanation.nights), (20_030, 20_030, 1));
}

#[test]
fn nothing_fires_before_a_baseline_exists_and_the_night_says_so() {
    let c = AnomalyConfig::default();
    // Ten nights, the last three far above the first: no baseline (14 nights needed).
    let nights = batch(&rhr(0..10, &[(7, 20.0), (8, 20.0), (9, 20.0)]));
    assert!(detect(&nights, &c).is_empty());
    assert_eq!(score_night(&nights, 9, &c).state, NightState::ColdStart);
    assert_eq!(score_night(&nights, 10, &c).state, NightState::Missing);
}

#[test]
fn supporting_signals_let_a_smaller_rise_count() {
    let c = AnomalyConfig::default();
    let mut values = rhr(0..30, &[(28, 2.5), (29, 2.5)]);
    // Skin temperature and respiratory rate steady, then up on the same nights.
    for d in 0..30 {
        let up = if d >= 28 { 1.0 } else { 0.0 };
        values.push((d, Signal::SkinTemperature, 34.0 + 0.05 * (d % 3) as f64 + 0.6 * up));
        values.push((d, Signal::RespiratoryRate, 14.0 + 0.1 * (d % 2) as f64 + 2.0 * up));
    }
    let with = detect(&batch(&values), &c);
    assert_eq!(with.len(), 1, "{with:?}");
    let names: Vec<Signal> = with[0].explanation.signals.iter().map(|d| d.signal).collect();
    assert_eq!(names, vec![Signal::RestingHeartRate, Signal::SkinTemperature, Signal::RespiratoryRate]);
    // Without them, 2.5 bpm is within normal.
    assert!(detect(&batch(&rhr(0..30, &[(28, 2.5), (29, 2.5)])), &c).is_empty());
}

#[test]
fn sensitivity_is_per_patient_and_rederives() {
    let nights = rhr(0..40, &[(30, 3.5), (31, 3.5)]);
    let mut det = AnomalyDetector::new(AnomalyConfig::default());
    assert!(det.ingest("p-1", &nights).is_empty(), "3.5 bpm is under the normal 4");
    let changes = det.set_sensitivity("p-1", Some(Sensitivity::High));
    assert!(
        matches!(changes.as_slice(), [AnomalyChange::Opened { .. }, AnomalyChange::Resolved { .. }]),
        "{changes:?}"
    );
    assert_eq!(det.config_for("p-2").sensitivity, Sensitivity::Normal);
    let back = det.set_sensitivity("p-1", None);
    assert!(matches!(back.as_slice(), [AnomalyChange::Retracted { .. }]), "{back:?}");
    // Through cohorts: high first, then low, else the default.
    let c = AnomalyConfig {
        high_cohorts: vec!["fragile".into()],
        low_cohorts: vec!["athletes".into()],
        ..AnomalyConfig::default()
    };
    assert_eq!(c.for_patient(&|x| x == "fragile" || x == "athletes").sensitivity, Sensitivity::High);
    assert_eq!(c.for_patient(&|x| x == "athletes").sensitivity, Sensitivity::Low);
    assert_eq!(c.for_patient(&|_| false).sensitivity, Sensitivity::Normal);
}

#[test]
fn a_late_normal_night_retracts_what_it_disproves() {
    let mut det = AnomalyDetector::new(AnomalyConfig::default());
    let mut nights = rhr(0..40, &[(30, 6.0), (32, 6.0)]);
    let late = nights.remove(31);
    // Without night 31, nights 30 and 32 are consecutive: an anomaly.
    let opened = det.ingest("p-1", &nights);
    assert!(matches!(opened.first(), Some(AnomalyChange::Opened { .. })), "{opened:?}");
    let changes = det.ingest("p-1", &[late]);
    assert!(matches!(changes.as_slice(), [AnomalyChange::Retracted { .. }]), "{changes:?}");
    assert!(det.anomalies("p-1").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn streaming_in_any_order_equals_batch_and_nothing_fires_without_a_baseline(
        base in 50.0f64..75.0,
        noise in proptest::collection::vec(-2.0f64..2.0, 90),
        illnesses in proptest::collection::vec((0i64..90, 1i64..6, 2.0f64..12.0), 0..4),
        gaps in proptest::collection::vec(0usize..90, 0..20),
        temp in proptest::collection::vec(-0.3f64..0.3, 90),
        order in Just((0..180).collect::<Vec<usize>>()).prop_shuffle(),
        chunk in 1usize..20,
    ) {
        let mut values = Vec::new();
        for d in 0..90i64 {
            if gaps.contains(&(d as usize)) {
                continue;
            }
            let ill: f64 = illnesses.iter().filter(|i| d >= i.0 && d < i.0 + i.1).map(|i| i.2).sum();
            values.push((d, Signal::RestingHeartRate, (base + noise[d as usize] + ill).round()));
            values.push((d, Signal::SkinTemperature, 34.0 + temp[d as usize] + 0.05 * ill));
        }
        let config = AnomalyConfig::default();
        let all = batch(&values);
        let expected = detect(&all, &config);
        // Nothing before a baseline: an anomaly's first night has 14 nights before it
        // within the window.
        for a in &expected {
            let before = all.range(a.start_day - 28..a.start_day).filter(|(_, v)| v[0].is_some()).count();
            prop_assert!(before >= 14, "{a:?}");
        }
        // In order, a night at a time: only openings and resolutions.
        let mut det = AnomalyDetector::new(config.clone());
        let mut changes = Vec::new();
        for v in &values {
            changes.extend(det.ingest("p", std::slice::from_ref(v)));
        }
        prop_assert_eq!(det.anomalies("p"), expected.as_slice());
        let in_order = |c: &AnomalyChange| matches!(c, AnomalyChange::Opened { .. } | AnomalyChange::Resolved { .. });
        prop_assert!(changes.iter().all(in_order), "{:?}", changes);
        // Shuffled, in chunks: the same anomalies in the end.
        let shuffled: Vec<(i64, Signal, f64)> = order.iter().filter_map(|i| values.get(*i).copied()).collect();
        let mut det = AnomalyDetector::new(config);
        for c in shuffled.chunks(chunk) {
            det.ingest("p", c);
        }
        prop_assert_eq!(det.anomalies("p"), expected.as_slice());
    }
}

#[test]
fn the_local_time_of_nights_is_an_offset_like_a_subscriptions() {
    let at = |s: &str| AnomalyConfig { utc_offset: s.into(), ..AnomalyConfig::default() };
    assert_eq!(AnomalyConfig::default().offset_ms(), Some(0));
    assert_eq!(at("+01:00").offset_ms(), Some(3_600_000));
    assert_eq!(at("-05:30").offset_ms(), Some(-19_800_000));
    assert_eq!(at("+14:00").offset_ms(), Some(50_400_000));
    assert_eq!(at("+1:00").offset_ms(), Some(3_600_000), "as quiet hours take it");
    for bad in ["01:00", "+15:00", "-14:30", "+05:60", "", "UTC"] {
        assert_eq!(at(bad).offset_ms(), None, "{bad:?}");
        assert_eq!(at(bad).problems().len(), 1, "{bad:?}");
    }
    assert!(AnomalyConfig::default().problems().is_empty());
}
