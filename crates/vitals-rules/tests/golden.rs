//! Golden tests of the rule language: what parses to what, where errors point, and
//! hand-computed traces.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vitals_rules::eval::{Episode, Series, episodes, points, truths};
use vitals_rules::{CmpOp, Expr, Func, parse};

const MIN: i64 = 60_000;

fn err(src: &str) -> (usize, String) {
    let e = parse(src).expect_err(src);
    (e.pos, e.message)
}

#[test]
fn rules_parse_with_units_in_the_metrics_canonical_unit() {
    let r = parse("blood_glucose > 115 or mean(blood_glucose, 10m) > 105").expect("glucose rule");
    let want = Expr::Or(
        Box::new(Expr::Cmp(Box::new(Expr::Metric("blood_glucose".into())), CmpOp::Gt, Box::new(Expr::Num(115.0)))),
        Box::new(Expr::Cmp(
            Box::new(Expr::Window { func: Func::Mean, metric: "blood_glucose".into(), window_ms: 10 * MIN }),
            CmpOp::Gt,
            Box::new(Expr::Num(105.0)),
        )),
    );
    assert_eq!(r, want);
    let mmol = parse("blood_glucose < 3.9 mmol/L").expect("mmol");
    let Expr::Cmp(_, _, n) = mmol else { panic!("{mmol:?}") };
    assert!(matches!(*n, Expr::Num(v) if (v - 70.26).abs() < 0.01), "{n:?}");
    // A difference converts without the offset: 1 degF of change is 5/9 degC.
    let d = parse("delta(skin_temperature, 1h) > 1 degF").expect("delta");
    let Expr::Cmp(_, _, n) = d else { panic!() };
    assert!(matches!(*n, Expr::Num(v) if (v - 5.0 / 9.0).abs() < 1e-9), "{n:?}");
    // The unit may come first, and may be glued to the number.
    assert!(parse("115mg/dL < blood_glucose").is_ok());
    for ok in [
        "rate(blood_glucose, 15m) < -2",
        "absent(blood_glucose, 15m)",
        "not (heart_rate > 100) and spo2 < 90 %",
        "heart_rate > 1.3 * mean(heart_rate, 1h)",
        "count(heart_rate, 5m) >= 3 and (min(spo2, 10m) < 88 or max(heart_rate, 30s) > 150 bpm)",
        "mean(body_temperature, 6h) - 37 > 0.5",
    ] {
        assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
    }
}

#[test]
fn errors_point_at_the_problem_and_say_what_was_expected() {
    let cases: [(&str, usize, &str); 11] = [
        ("blood_glucose >", 15, "expected a number, a metric or a function, found the end of the rule"),
        ("mean(blood_glucose 10m) > 1", 19, "expected ',' and a window like 10m, found the number 10"),
        ("mean(blood_glucose, 10) > 1", 22, "expected a time unit after the number (s, m, h, d), found ')'"),
        ("mean(blood_glucose, 10 kg) > 1", 23, "\"kg\" is not a time unit (s, m, h, d)"),
        ("blood_sugar > 100", 0, "no metric \"blood_sugar\" in the catalog"),
        ("blood_glucose > 5 kg", 18, "blood_glucose is not measured in \"kg\""),
        ("heart_rate > 100 and", 20, "expected a number, a metric or a function, found the end of the rule"),
        ("heart_rate > 100 100", 17, "expected 'and', 'or' or the end of the rule, found the number 100"),
        ("heart_rate $ 3", 11, "unexpected character '$'"),
        ("(heart_rate > 100", 17, "expected ')', found the end of the rule"),
        ("heart_rate > 100 and 5", 17, "'and' joins conditions"),
    ];
    for (src, pos, msg) in cases {
        let (p, m) = err(src);
        assert_eq!(p, pos, "{src}: {m}");
        assert!(m.contains(msg), "{src}: {m}");
    }
    assert!(err("heart_rate").1.contains("a rule is a condition"));
}

fn series(step_min: i64, values: &[f64]) -> Series {
    values.iter().enumerate().map(|(i, &v)| (i as i64 * step_min * MIN, v)).collect()
}

fn run(rule: &str, data: &BTreeMap<String, Series>) -> (Vec<i64>, Vec<bool>) {
    let e = parse(rule).expect(rule);
    let times = points(&[&e], data, i64::MIN / 2, i64::MAX / 2);
    let holds = truths(&e, data, &times);
    (times, holds)
}

#[test]
fn the_glucose_systems_rule_against_a_hand_computed_trace() {
    // Readings every 5 min; the 10-minute window at t holds the readings at t and t-5.
    let g = series(5, &[100.0, 110.0, 120.0, 100.0, 104.0, 106.0, 104.0, 100.0, 116.0]);
    let data = BTreeMap::from([("blood_glucose".to_owned(), g)]);
    let (times, holds) = run("blood_glucose > 115 or mean(blood_glucose, 10m) > 105", &data);
    // 100 | 110 (mean 105, not above) | 120 | 100 (mean 110) | 104 (102) | 106 (105) | 104 (105) | 100 | 116
    assert_eq!(holds, [false, false, true, true, false, false, false, false, true]);
    assert_eq!(
        episodes(&times, &holds, None, 0),
        [
            Episode { start: 10 * MIN, fired: 10 * MIN, end: 15 * MIN, cleared: Some(20 * MIN) },
            Episode { start: 40 * MIN, fired: 40 * MIN, end: 40 * MIN, cleared: None },
        ]
    );
}

#[test]
fn persistence_and_hysteresis_make_one_alert_per_episode() {
    let g = series(5, &[75.0, 68.0, 65.0, 66.0, 64.0, 72.0, 78.0, 82.0, 69.0, 71.0, 69.0, 71.0, 69.0]);
    let data = BTreeMap::from([("blood_glucose".to_owned(), g)]);
    let (times, holds) = run("blood_glucose < 70", &data);
    let (_, clear) = run("blood_glucose > 80", &data);
    // Fires once it has held 15 min (at 20), holds through 72 and 78 (not yet above 80),
    // clears at 82; then oscillates around 70 without reaching 80: one more episode, open.
    assert_eq!(
        episodes(&times, &holds, Some(&clear), 15 * MIN),
        [
            Episode { start: 5 * MIN, fired: 20 * MIN, end: 30 * MIN, cleared: Some(35 * MIN) },
            // 40: 69 (pending), 45: 71 (not holding: back to idle), 50: 69, 55: 71, 60: 69.
        ][..1]
    );
    // Without hysteresis the oscillation would flap; with it and no `for`, one episode.
    let flapping = episodes(&times, &holds, None, 0);
    assert_eq!(flapping.len(), 4, "{flapping:?}");
    let steady = episodes(&times, &holds, Some(&clear), 0);
    assert_eq!(steady.len(), 2, "{steady:?}");
    assert_eq!(steady[1], Episode { start: 40 * MIN, fired: 40 * MIN, end: 60 * MIN, cleared: None });
}

#[test]
fn stale_data_and_rates() {
    // Readings at 0, 5, 10 min, then none until 60.
    let g: Series = vec![(0, 100.0), (5 * MIN, 100.0), (10 * MIN, 100.0), (60 * MIN, 100.0)];
    let data = BTreeMap::from([("blood_glucose".to_owned(), g)]);
    let (times, holds) = run("absent(blood_glucose, 15m)", &data);
    assert_eq!(times, [0, 5 * MIN, 10 * MIN, 15 * MIN, 20 * MIN, 25 * MIN, 60 * MIN, 75 * MIN]);
    assert_eq!(holds, [false, false, false, false, false, true, false, true]);
    assert_eq!(
        episodes(&times, &holds, None, 0)[0],
        Episode { start: 25 * MIN, fired: 25 * MIN, end: 25 * MIN, cleared: Some(60 * MIN) }
    );
    // Falling 15 mg/dL per 5 minutes: -3 per minute over the window's first and last readings.
    let falling = series(5, &[180.0, 165.0, 150.0, 135.0, 120.0]);
    let data = BTreeMap::from([("blood_glucose".to_owned(), falling)]);
    let (_, holds) = run("rate(blood_glucose, 15m) < -2.5", &data);
    assert_eq!(holds, [false, true, true, true, true]);
    let (_, holds) = run("delta(blood_glucose, 15m) <= -30 and count(blood_glucose, 15m) == 3", &data);
    assert_eq!(holds, [false, false, true, true, true]);
}

/// A slow, obviously right evaluator of one window function.
fn naive(func: Func, s: &Series, w: i64, t: i64) -> f64 {
    let inside: Vec<(i64, f64)> = s.iter().copied().filter(|&(x, _)| x > t - w && x <= t).collect();
    let vals: Vec<f64> = inside.iter().map(|p| p.1).collect();
    match func {
        Func::Count => vals.len() as f64,
        Func::Absent => f64::from(u8::from(vals.is_empty())),
        _ if vals.is_empty() => f64::NAN,
        Func::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
        Func::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
        Func::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Func::Delta => vals[vals.len() - 1] - vals[0],
        Func::Rate if vals.len() < 2 => f64::NAN,
        Func::Rate => (vals[vals.len() - 1] - vals[0]) / ((inside[inside.len() - 1].0 - inside[0].0) as f64 / 60_000.0),
    }
}

proptest! {
    /// The sliding windows agree with the naive evaluator at every point.
    #[test]
    fn windows_match_a_naive_evaluator(
        gaps in prop::collection::vec(1i64..600, 1..80),
        vals in prop::collection::vec(40i64..400, 80),
        w_s in 1i64..1200,
        which in 0usize..7,
        threshold in 40i64..400,
    ) {
        let mut t = 0;
        let s: Series = gaps.iter().zip(&vals).map(|(g, v)| { t += g * 1000; (t, *v as f64) }).collect();
        let func = [Func::Mean, Func::Min, Func::Max, Func::Count, Func::Delta, Func::Rate, Func::Absent][which];
        let name = ["mean", "min", "max", "count", "delta", "rate", "absent"][which];
        let rule = if func == Func::Absent {
            format!("absent(blood_glucose, {w_s}s)")
        } else {
            format!("{name}(blood_glucose, {w_s}s) > {threshold}")
        };
        let data = BTreeMap::from([("blood_glucose".to_owned(), s.clone())]);
        let (times, holds) = run(&rule, &data);
        for (i, &t) in times.iter().enumerate() {
            let v = naive(func, &s, w_s * 1000, t);
            // Integer readings: sums are exact either way, so the comparison is too.
            let want = if func == Func::Absent { v == 1.0 } else { v > threshold as f64 };
            prop_assert_eq!(holds[i], want, "t={} v={}", t, v);
        }
    }
}

/// Bits of the language, so that random rules are often almost right.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("blood_glucose".to_owned()),
        Just("heart_rate".to_owned()),
        Just("mean(".to_owned()),
        Just("absent(".to_owned()),
        Just("rate(".to_owned()),
        Just(", 10m)".to_owned()),
        Just(" and ".to_owned()),
        Just(" or ".to_owned()),
        Just(" not ".to_owned()),
        Just(" > ".to_owned()),
        Just(" <= ".to_owned()),
        Just("115".to_owned()),
        Just("3.9 mmol/L".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("-".to_owned()),
        Just("*".to_owned()),
        "[ -~]{0,4}".prop_map(|s| s),
        "\\PC{0,3}".prop_map(|s| s),
    ]
}

proptest! {
    #[test]
    fn the_parser_never_panics_and_errors_point_inside_the_rule(parts in proptest::collection::vec(fragment(), 0..12)) {
        let src: String = parts.concat();
        match parse(&src) {
            Err(e) => prop_assert!(e.pos <= src.len(), "{e:?} for {src:?}"),
            Ok(expr) => {
                // What parses evaluates, whatever the data.
                let mut data = BTreeMap::new();
                let mut metrics = Vec::new();
                expr.metrics(&mut metrics);
                for (m, _) in &metrics {
                    data.insert(m.clone(), series(5, &[100.0, 40.0, 300.0]));
                }
                let times = points(&[&expr], &data, -MIN * 60, MIN * 120);
                prop_assert_eq!(truths(&expr, &data, &times).len(), times.len());
            }
        }
    }
}

#[test]
fn deep_or_long_rules_are_refused_with_the_limit_named_without_exhausting_the_stack() {
    use vitals_rules::{MAX_NESTING, MAX_OPERATORS, MAX_RULE_BYTES};
    let within_bytes = |s: String| s[..s.len().min(MAX_RULE_BYTES)].to_owned();
    let cases: Vec<(String, String)> = vec![
        ("(".repeat(50_000), format!("{MAX_RULE_BYTES} bytes")),
        (within_bytes("(".repeat(4_000)), format!("deeper than {MAX_NESTING}")),
        (format!("{}heart_rate > 1", "not ".repeat(1_000)), format!("deeper than {MAX_NESTING}")),
        (format!("{}heart_rate > 1", "- ".repeat(2_000)), format!("deeper than {MAX_NESTING}")),
        (within_bytes("heart_rate > 1 or ".repeat(300)), format!("more than {MAX_OPERATORS} operators")),
        (format!("heart_rate > {}1", "1 + ".repeat(300)), format!("more than {MAX_OPERATORS} operators")),
    ];
    // A quarter of a tokio worker's stack: parsing, checking and dropping must not recurse
    // with the input's size.
    let results = std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || cases.into_iter().map(|(src, want)| (parse(&src), want, src.len())).collect::<Vec<_>>())
        .expect("thread")
        .join()
        .expect("no stack overflow");
    for (result, want, len) in results {
        let e = result.expect_err(&want);
        assert!(e.message.contains(&want), "{e} (wanted {want})");
        assert!(e.pos <= len, "{e:?}");
    }
    // At the limits, rules still parse.
    let nested = format!("{}heart_rate > 1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(parse(&nested).is_ok(), "{MAX_NESTING} levels");
    let chain = vec!["heart_rate > 1"; 100].join(" or ");
    assert!(parse(&chain).is_ok(), "199 operators");
}

#[test]
fn type_checking_takes_time_linear_in_the_rule_even_when_units_do_not_fit() {
    use std::time::{Duration, Instant};
    // Found by fuzzing: a chain of products with a unit that nothing gives a metric to made
    // the checker try each side twice at every level (16 s for this input, 2^n in general).
    let fuzzed = "88*8*8c*8*4*8*888*2c*82c*8*4*888*2c*8*4*8*888*2c*82c*8*4*8*888*2c*8*4.";
    let with_metrics = format!("heart_rate > {}1", "5 c * heart_rate * ".repeat(18));
    let plain = format!("heart_rate > {}1", "2 * ".repeat(250));
    for src in [fuzzed.to_owned(), with_metrics, plain] {
        let at = Instant::now();
        let _ = parse(&src);
        assert!(at.elapsed() < Duration::from_secs(1), "{:?} for {} bytes", at.elapsed(), src.len());
    }
    // Units still come from the metric of the arithmetic, else from the comparison.
    assert!(parse("blood_glucose > 5.5 mmol/L + 10 mg/dL").is_ok());
    assert!(parse("blood_glucose > 2 * 90 mg/dL").is_ok());
    assert!(parse("heart_rate > 10 mg/dL * 2").is_err());
}
