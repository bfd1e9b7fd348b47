use super::*;
use proptest::prelude::*;

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn every_5_min(values: impl IntoIterator<Item = f64>) -> Vec<(i64, f64)> {
    values.into_iter().enumerate().map(|(i, v)| (i as i64 * 5 * MIN, v)).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn risk_indices_count_each_side_over_every_reading() {
    // f(112.5) is about 0: a reading there adds nothing on either side.
    let f = |g: f64| 1.509 * (g.ln().powf(1.084) - 5.381);
    let v = variability(&every_5_min([60.0, 112.5, 250.0, 100.0]), &Offsets::fixed(0)).expect("readings");
    assert!(close(v.lbgi, 10.0 * (f(60.0).powi(2) + f(100.0).powi(2)) / 4.0), "{v:?}");
    assert!(close(v.hbgi, 10.0 * (f(250.0).powi(2) + f(112.5).max(0.0).powi(2)) / 4.0), "{v:?}");
    let high = variability(&every_5_min([150.0; 10]), &Offsets::fixed(0)).expect("readings");
    assert_eq!(high.lbgi, 0.0);
    assert!(high.hbgi > 0.0);
}

#[test]
fn gri_weights_the_ranges_and_stops_at_100() {
    // 10 % below 54, 10 % 54-69, 20 % 181-250, 10 % above 250.
    let mut v = vec![50.0, 60.0, 200.0, 200.0, 300.0];
    v.extend([120.0; 5]);
    let g = variability(&every_5_min(v), &Offsets::fixed(0)).expect("readings");
    assert!(close(g.gri, 3.0 * 10.0 + 2.4 * 10.0 + 1.6 * 10.0 + 0.8 * 20.0), "{g:?}");
    let worst = variability(&every_5_min([40.0; 6]), &Offsets::fixed(0)).expect("readings");
    assert_eq!(worst.gri, 100.0);
}

#[test]
fn j_index_is_from_the_mean_and_the_sample_sd() {
    let v = variability(&every_5_min([100.0, 120.0, 140.0]), &Offsets::fixed(0)).expect("readings");
    assert_eq!(v.sd, Some(20.0));
    assert!(close(v.j_index.expect("two readings or more"), 0.001 * 140.0 * 140.0));
    let one = variability(&[(0, 100.0)], &Offsets::fixed(0)).expect("a reading");
    assert_eq!((one.sd, one.j_index, one.modd, one.conga1, one.mage), (None, None, None, None, None));
    assert!(variability(&[], &Offsets::fixed(0)).is_none());
    assert!(variability(&[(0, f64::NAN), (5, 0.0)], &Offsets::fixed(0)).is_none());
}

#[test]
fn the_grid_interpolates_within_45_minutes_and_leaves_gaps_empty() {
    // Readings at 00:10 (100), 00:20 (120), then 01:30 (200): the grid's points are at
    // 00:05, 00:10, ... of the first day.
    let local = [(10 * MIN, 100.0), (20 * MIN, 120.0), (90 * MIN, 200.0)];
    let g = Grid::day_by_day(&local, Some(5)).expect("grid");
    assert_eq!((g.start_ms, g.step_min, g.values.len()), (0, 5, 288));
    assert!(g.values[0].is_nan(), "before the first reading");
    assert_eq!(&g.values[1..4], &[100.0, 110.0, 120.0]);
    // The 70 minutes from 00:20 to 01:30 are a gap: empty up to the point before 01:30.
    assert!(g.values[4..17].iter().all(|v| v.is_nan()), "{:?}", &g.values[..20]);
    assert_eq!(g.values[17], 200.0);
    assert!(g.values[18..].iter().all(|v| v.is_nan()), "after the last reading");
    // The step is the most common interval, lowered to a divisor of a day.
    let seven = (0..20).map(|i| (i * 7 * MIN, 100.0)).collect::<Vec<_>>();
    assert_eq!(Grid::day_by_day(&seven, None).map(|g| g.step_min), Some(6));
    let fifteen = (0..20).map(|i| (i * 15 * MIN + 20_000, 100.0)).collect::<Vec<_>>();
    assert_eq!(Grid::day_by_day(&fifteen, None).map(|g| g.step_min), Some(15));
}

#[test]
fn local_days_follow_the_viewers_offset() {
    // Two readings 23:50 and 00:10 UTC lie on one grid day at UTC+1.
    let r = [(DAY - 10 * MIN, 100.0), (DAY + 10 * MIN, 110.0)];
    assert_eq!(Grid::day_by_day(&local_series(&r, &Offsets::fixed(0)), Some(5)).map(|g| g.values.len()), Some(576));
    let plus_one = local_series(&r, &Offsets::fixed(60 * MIN));
    assert_eq!(plus_one, vec![(DAY + 50 * MIN, 100.0), (DAY + 70 * MIN, 110.0)]);
    assert_eq!(Grid::day_by_day(&plus_one, Some(5)).map(|g| g.values.len()), Some(288));
}

#[test]
fn modd_is_zero_for_days_that_repeat_and_the_shift_otherwise() {
    let day =
        |shift: f64| (0..288).map(move |i| 100.0 + 50.0 * ((i as f64) / 288.0 * std::f64::consts::TAU).sin() + shift);
    let same = every_5_min(day(0.0).chain(day(0.0)).chain(day(0.0)));
    let g = Grid::day_by_day(&same, None).expect("grid");
    assert!(modd(&g, 1).expect("three days").abs() < 1e-9);
    let rising = every_5_min(day(0.0).chain(day(10.0)).chain(day(20.0)));
    assert!(close(modd(&Grid::day_by_day(&rising, None).expect("grid"), 1).expect("modd"), 10.0));
    let one_day = every_5_min(day(0.0));
    assert_eq!(modd(&Grid::day_by_day(&one_day, None).expect("grid"), 1), None);
}

#[test]
fn conga_is_the_sd_of_hourly_differences() {
    // A steady rise of 1 mg/dL per 5 minutes: every hourly difference is 12.
    let ramp = every_5_min((0..200).map(|i| 80.0 + i as f64));
    let g = Grid::day_by_day(&ramp, None).expect("grid");
    assert!(conga(&g, 1).expect("conga").abs() < 1e-9);
    // Alternating hours of 100 and 160 (as square steps): differences +-60 and 0.
    let steps = every_5_min((0..288).map(|i| if (i / 12) % 2 == 0 { 100.0 } else { 160.0 }));
    let c = conga(&Grid::day_by_day(&steps, None).expect("grid"), 1).expect("conga");
    assert!(c > 40.0 && c < 65.0, "{c}");
    assert_eq!(conga(&Grid::day_by_day(&every_5_min([100.0; 10]), None).expect("grid"), 1), None, "under an hour");
}

#[test]
fn mage_measures_the_swings_larger_than_one_sd() {
    // Three days of a swing between 80 and 240 every 6 hours (a triangle wave): every
    // excursion is 160 mg/dL, far above the SD.
    let wave = |i: i64| {
        let phase = (i % 72) as f64 / 72.0;
        80.0 + 160.0 * if phase < 0.5 { 2.0 * phase } else { 2.0 - 2.0 * phase }
    };
    let r = every_5_min((0..864).map(wave));
    let m = mage(&r).expect("excursions");
    assert!((m - 160.0).abs() < 1.0, "{m}");
    // Small ripples on a flat line are not excursions: under one SD... but the SD is
    // theirs, so a flat line has none at all.
    assert_eq!(mage(&every_5_min([120.0; 300])), None);
    // Too short a stretch.
    assert_eq!(mage(&every_5_min([100.0, 200.0, 100.0])), None);
}

#[test]
fn stretches_split_at_gaps_over_three_hours_each_counting_by_its_length() {
    let wave =
        |amp: f64| (0..288).map(move |i: i64| 100.0 + amp * (((i % 72) as f64 / 72.0 * std::f64::consts::TAU).sin()));
    // A day of swings of 2 x 50, four hours without data, a day of swings of 2 x 100.
    let mut r = every_5_min(wave(50.0));
    let later = 288 * 5 * MIN + 4 * 60 * MIN;
    r.extend(wave(100.0).enumerate().map(|(i, v)| (later + i as i64 * 5 * MIN, v)));
    let m = mage(&r).expect("excursions");
    let first = mage(&r[..288]).expect("the first stretch");
    let second = mage(&r[288..]).expect("the second stretch");
    assert!(first < second && first > 50.0 && second > 100.0, "{first} {second}");
    // Two stretches of (nearly: 287 and 288 grid points) the same length weigh the same.
    assert!((m - (first + second) / 2.0).abs() < 0.001 * m, "{m} {first} {second}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_readings_give_bounded_metrics_in_any_order(
        raw in proptest::collection::vec((0i64..(10 * DAY), prop_oneof![Just(f64::NAN), 1.0f64..600.0]), 0..400),
        offset_min in -840i64..=840,
    ) {
        let offsets = Offsets::fixed(offset_min * MIN);
        let v = variability(&raw, &offsets);
        let mut reversed = raw.clone();
        reversed.reverse();
        // Readings at one time: the last given wins, so reverse only distinct times.
        let mut seen = std::collections::HashSet::new();
        let distinct = raw.iter().all(|r| seen.insert(r.0));
        if distinct {
            prop_assert_eq!(format!("{v:?}"), format!("{:?}", variability(&reversed, &offsets)));
        }
        if let Some(v) = v {
            prop_assert!((0.0..=100.0).contains(&v.gri));
            prop_assert!(v.lbgi >= 0.0 && v.hbgi >= 0.0);
            for m in [v.sd, v.j_index, v.modd, v.conga1, v.mage].into_iter().flatten() {
                prop_assert!(m.is_finite() && m >= 0.0, "{v:?}");
            }
        }
    }
}
