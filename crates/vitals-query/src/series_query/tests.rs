//! Storage and queries against a naive model: random out-of-order writes with duplicates,
//! flushes, compactions and restarts, then random raw and bucketed queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use vitals_core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use vitals_core::{Catalog, DeviceId, ManualClock, PatientId, Sample};
use vitals_storage::{Store, StoreConfig};

use super::*;

const BASE: i64 = 1_750_000_000_000 - 1_750_000_000_000 % MS_PER_DAY;
const PATIENTS: [&str; 2] = ["p1", "p2"];
const METRICS: [&str; 2] = ["heart_rate", "step_count"];
const DEVICES: [Option<&str>; 3] = [None, Some("a"), Some("b")];

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(usize, usize, usize, i64, i32)>),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0..2usize, 0..2usize, 0..3usize, 0..(3 * 24 * 60i64), 40..200i32), 1..60).prop_map(Op::Write),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<(usize, usize, Option<String>, i64), f64>;

fn open(dir: &std::path::Path) -> Store {
    let cfg = StoreConfig { background: false, compact_min_segments: 2, ..StoreConfig::default() };
    Store::open(dir, cfg, Arc::new(ManualClock::new(BASE + 10 * MS_PER_DAY))).expect("open")
}

fn query(
    store: &Store,
    patient: usize,
    metric: usize,
    device: Option<&str>,
    from: i64,
    to: i64,
    every: Option<i64>,
) -> QueryResult {
    run(
        store,
        &SeriesQuery {
            patient: PatientId::new(PATIENTS[patient]).expect("id"),
            metric: Catalog::standard().id(METRICS[metric]).expect("metric"),
            device: device.map(|d| DeviceId::new(d).expect("id")),
            from,
            to,
            every_ms: every,
            aggs: Agg::ALL.to_vec(),
        },
    )
    .expect("query")
}

fn model_answer(
    model: &Model,
    patient: usize,
    metric: usize,
    device: Option<&str>,
    from: i64,
    to: i64,
    every: Option<i64>,
) -> QueryResult {
    let mut pts: Vec<(i64, Option<String>, f64)> = model
        .iter()
        .filter(|((p, m, d, t), _)| {
            *p == patient && *m == metric && *t >= from && *t < to && device.is_none_or(|x| d.as_deref() == Some(x))
        })
        .map(|((_, _, d, t), v)| (*t, d.clone(), *v))
        .collect();
    pts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    match every {
        None => QueryResult::Raw(
            pts.into_iter()
                .map(|(t, d, v)| RawPoint { time_ms: t, value: v, device: d.map(|d| DeviceId::new(&d).expect("id")) })
                .collect(),
        ),
        Some(e) => {
            let mut buckets: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
            for (t, _, v) in pts {
                buckets.entry(t.div_euclid(e) * e).or_default().push((t, v));
            }
            QueryResult::Buckets(
                buckets
                    .into_iter()
                    .map(|(b, vs)| {
                        let sum: f64 = vs.iter().map(|x| x.1).sum();
                        let n = vs.len() as f64;
                        let min = vs.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
                        let max = vs.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
                        // first/last by time; ties between devices are ambiguous, so the model
                        // only has data where they are not (checked by the caller).
                        let first = vs.iter().min_by_key(|x| x.0).map(|x| x.1).unwrap_or(0.0);
                        let last = vs.iter().max_by_key(|x| x.0).map(|x| x.1).unwrap_or(0.0);
                        Bucket { time_ms: b, values: vec![sum / n, min, max, n, sum, first, last] }
                    })
                    .collect(),
            )
        }
    }
}

fn assert_same(got: &QueryResult, want: &QueryResult, ambiguous_ends: bool) -> Result<(), TestCaseError> {
    match (got, want) {
        (QueryResult::Raw(g), QueryResult::Raw(w)) => prop_assert_eq!(g, w),
        (QueryResult::Buckets(g), QueryResult::Buckets(w)) => {
            prop_assert_eq!(g.len(), w.len(), "bucket count");
            for (a, b) in g.iter().zip(w) {
                prop_assert_eq!(a.time_ms, b.time_ms);
                let checked = if ambiguous_ends { 5 } else { 7 };
                for i in 0..checked {
                    prop_assert!(
                        (a.values[i] - b.values[i]).abs() < 1e-6,
                        "bucket {} agg {}: {} vs {}",
                        a.time_ms,
                        i,
                        a.values[i],
                        b.values[i]
                    );
                }
            }
        }
        _ => prop_assert!(false, "result kinds differ"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_and_queries_match_a_naive_model(
        ops in prop::collection::vec(op(), 1..12),
        queries in prop::collection::vec((0..2usize, 0..2usize, 0..4usize, 0..(4 * 24i64), 1..(4 * 24i64), 0..5usize, 0..60i64), 8),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut store = open(dir.path());
        let mut model = Model::new();
        for op in &ops {
            match op {
                Op::Write(items) => {
                    let samples: Vec<Sample> = items.iter().map(|&(p, m, d, minute, v)| Sample {
                        patient: PatientId::new(PATIENTS[p]).expect("id"),
                        metric: Catalog::standard().id(METRICS[m]).expect("metric"),
                        time_ms: BASE + minute * MS_PER_MINUTE,
                        value: f64::from(v),
                        device: DEVICES[d].map(|x| DeviceId::new(x).expect("id")),
                        id: None,
                        source: vitals_core::Source::Native,
                    }).collect();
                    for &(p, m, d, minute, v) in items {
                        model.insert((p, m, DEVICES[d].map(str::to_owned), BASE + minute * MS_PER_MINUTE), f64::from(v));
                    }
                    store.write(samples).expect("write");
                }
                Op::Flush => store.flush().expect("flush"),
                Op::Compact => { store.compact().expect("compact"); }
                Op::Reopen => {
                    store.close().expect("close");
                    drop(store);
                    store = open(dir.path());
                }
            }
        }
        for (p, m, d, from_h, len_h, every_i, jitter_min) in queries {
            // Mix hour-aligned ranges (rollup path) with ragged ones (raw path).
            let from = BASE + from_h * MS_PER_HOUR - if every_i % 2 == 0 { 0 } else { jitter_min * MS_PER_MINUTE };
            let to = from + len_h * MS_PER_HOUR;
            let every = [None, Some(MS_PER_HOUR), Some(MS_PER_DAY), Some(15 * MS_PER_MINUTE), Some(3 * MS_PER_HOUR)][every_i];
            let device = [None, Some("a"), Some("b"), None][d];
            let got = query(&store, p, m, device, from, to, every);
            let want = model_answer(&model, p, m, device, from, to, every);
            assert_same(&got, &want, device.is_none())?;
        }
    }
}

#[test]
fn resent_samples_are_stored_once_across_flushes() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    let s = |v: f64| Sample {
        patient: PatientId::new("p1").expect("id"),
        metric: Catalog::standard().id("heart_rate").expect("m"),
        time_ms: BASE + 1000,
        value: v,
        device: None,
        id: None,
        source: vitals_core::Source::Native,
    };
    store.write(vec![s(60.0)]).expect("write");
    store.flush().expect("flush");
    store.write(vec![s(61.0)]).expect("write");
    store.flush().expect("flush");
    store.write(vec![s(62.0)]).expect("write");
    let raw = query(&store, 0, 0, None, BASE, BASE + MS_PER_DAY, None);
    assert_eq!(raw, QueryResult::Raw(vec![RawPoint { time_ms: BASE + 1000, value: 62.0, device: None }]));
    assert_eq!(store.compact().expect("compact"), 1);
    assert_eq!(store.segments().len(), 1);
    let QueryResult::Buckets(b) = query(&store, 0, 0, None, BASE, BASE + MS_PER_DAY, Some(MS_PER_DAY)) else {
        panic!("buckets")
    };
    assert_eq!(b[0].values[3], 1.0, "count after compaction");
    assert_eq!(b[0].values[0], 62.0, "the buffered write still wins");
}
