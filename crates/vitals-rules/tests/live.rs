//! The live engine agrees with the backtest: the same readings in any arrival order and
//! batching give the same episodes, and the stream of changes tells them all.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vitals_rules::eval::{Episode, Series};
use vitals_rules::live::{Change, Engine};
use vitals_rules::{Rule, RuleSpec};

const MIN: i64 = 60_000;

fn rules() -> Vec<Rule> {
    let specs = [
        serde_json::json!({"name": "high", "expr": "blood_glucose > 115 or mean(blood_glucose, 10m) > 105"}),
        serde_json::json!({"name": "low", "expr": "blood_glucose < 70", "clear": "blood_glucose > 80", "for": "10m"}),
        serde_json::json!({"name": "stale", "expr": "absent(blood_glucose, 15m)"}),
        serde_json::json!({"name": "falling", "expr": "rate(blood_glucose, 15m) < -2"}),
        serde_json::json!({"name": "both", "expr": "heart_rate > 100 and min(blood_glucose, 20m) < 90"}),
    ];
    specs
        .into_iter()
        .map(|s| Rule::compile(serde_json::from_value::<RuleSpec>(s).expect("spec")).expect("rule"))
        .collect()
}

type Reading = (&'static str, i64, f64);

fn readings() -> impl Strategy<Value = Vec<Reading>> {
    (prop::collection::vec((1i64..25, 40i64..220, any::<bool>()), 1..120)).prop_map(|v| {
        let mut t = 0;
        v.into_iter()
            .map(|(gap, value, hr)| {
                t += gap * MIN;
                if hr { ("heart_rate", t, (value / 2 + 30) as f64) } else { ("blood_glucose", t, value as f64) }
            })
            .collect()
    })
}

fn batch(rule: &Rule, rs: &[Reading], to: i64) -> Vec<Episode> {
    let mut data: BTreeMap<String, Series> = BTreeMap::new();
    for &(m, t, v) in rs {
        data.entry(m.to_owned()).or_default().push((t, v));
    }
    rule.episodes(&data, i64::MIN / 4, to).1
}

/// Replays changes into (start, cleared) per rule.
fn replay(changes: &[Change]) -> BTreeMap<String, BTreeMap<i64, Option<i64>>> {
    let mut out: BTreeMap<String, BTreeMap<i64, Option<i64>>> = BTreeMap::new();
    for c in changes {
        match c {
            Change::Opened { rule, episode, .. } | Change::Reopened { rule, episode, .. } => {
                out.entry(rule.clone()).or_default().insert(episode.start, None);
            }
            Change::Resolved { rule, episode, .. } => {
                out.entry(rule.clone()).or_default().insert(episode.start, episode.cleared);
            }
            Change::Retracted { rule, episode, .. } => {
                out.entry(rule.clone()).or_default().remove(&episode.start);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any order, any batching, within the horizon: the backtest's episodes.
    #[test]
    fn any_arrival_order_and_batching_gives_the_backtests_episodes(
        rs in readings(),
        order in any::<u64>(),
        cuts in prop::collection::vec(1usize..12, 1..40),
        every in prop::sample::select(vec![1usize, 2, 3, 64]),
    ) {
        let rules = rules();
        let mut shuffled = rs.clone();
        // A deterministic shuffle from the seed.
        let mut x = order | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let span = rs.last().map_or(0, |r| r.1) + 1;
        // Nothing settles during the test: every reading is within the horizon.
        let mut engine = Engine::with_checkpoints(span + 25 * 60 * MIN, every);
        let mut changes = Vec::new();
        let (mut i, mut k, mut now) = (0, 0, 0);
        while i < shuffled.len() {
            let n = cuts[k % cuts.len()].min(shuffled.len() - i);
            let b = &shuffled[i..i + n];
            now = b.iter().map(|r| r.1).fold(now, i64::max);
            changes.extend(engine.ingest(&rules, "p-1", b, now));
            i += n;
            k += 1;
        }
        let end = now + 24 * 60 * MIN;
        changes.extend(engine.advance(&rules, end));
        let replayed = replay(&changes);
        for rule in &rules {
            let want = batch(rule, &rs, end + 1);
            prop_assert_eq!(&engine.episodes(&rule.spec.name, "p-1"), &want, "rule {}", rule.spec.name);
            let got: Vec<(i64, Option<i64>)> = replayed.get(&rule.spec.name).map(|m| m.iter().map(|(a, b)| (*a, *b)).collect()).unwrap_or_default();
            let want: Vec<(i64, Option<i64>)> = want.iter().map(|e| (e.start, e.cleared)).collect();
            prop_assert_eq!(got, want, "changes of rule {}", rule.spec.name);
        }
        prop_assert_eq!(engine.late(), 0);
    }

    /// In order, each reading on time, with a short horizon: settled episodes leave the
    /// engine, but the changes still tell every one, and stale windows fire only once their
    /// time has come.
    #[test]
    fn in_order_streams_settle_and_still_tell_every_episode(
        rs in readings(),
        batch_size in 1usize..8,
        every in prop::sample::select(vec![1usize, 2, 3, 64]),
    ) {
        let rules = rules();
        let mut engine = Engine::with_checkpoints(30 * MIN, every);
        let mut changes = Vec::new();
        let mut now = 0;
        for b in rs.chunks(batch_size) {
            let latest = b.iter().map(|r| r.1).max().unwrap_or(now);
            let earliest = b.iter().map(|r| r.1).min().unwrap_or(now);
            // Time passes until the batch's first reading is due (a reading delivered after
            // its time has passed may rightly retract a stale-data alert: not tested here).
            while now + 5 * MIN < earliest {
                now += 5 * MIN;
                changes.extend(engine.advance(&rules, now));
            }
            now = latest;
            changes.extend(engine.ingest(&rules, "p-1", b, now));
        }
        let end = now + 24 * 60 * MIN;
        changes.extend(engine.advance(&rules, end));
        let replayed = replay(&changes);
        for rule in &rules {
            let want: Vec<(i64, Option<i64>)> = batch(rule, &rs, end + 1).iter().map(|e| (e.start, e.cleared)).collect();
            let got: Vec<(i64, Option<i64>)> = replayed.get(&rule.spec.name).map(|m| m.iter().map(|(a, b)| (*a, *b)).collect()).unwrap_or_default();
            prop_assert_eq!(got, want, "rule {}", rule.spec.name);
        }
        // Nothing was ever retracted: in-order data never rewrites the past.
        let rewrote = changes.iter().any(|c| matches!(c, Change::Retracted { .. } | Change::Reopened { .. }));
        prop_assert!(!rewrote, "in-order data rewrote the past");
    }
}

#[test]
fn readings_older_than_the_horizon_are_counted_late_and_change_nothing() {
    let rules = rules();
    let mut engine = Engine::new(30 * MIN);
    assert!(engine.ingest(&rules, "p-1", &[("blood_glucose", 0, 100.0)], 0).is_empty());
    let c = engine.ingest(&rules, "p-1", &[("blood_glucose", 120 * MIN, 100.0)], 120 * MIN);
    // The 15-minute silence after 0 was a stale-data episode, now over.
    assert!(matches!(&c[..], [Change::Opened { rule, .. }, Change::Resolved { .. }] if rule == "stale"), "{c:?}");
    assert!(engine.ingest(&rules, "p-1", &[("blood_glucose", 60 * MIN, 300.0)], 120 * MIN).is_empty());
    assert_eq!(engine.late(), 1);
}
