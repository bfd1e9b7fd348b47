//! Evaluation over stored series: the rule's truth at each evaluation point, then episodes.
//!
//! Evaluation points are the times of the readings of every metric the rule reads, plus,
//! for `absent(m, d)`, the instants `t + d` at which a reading of `m` leaves its window.
//! A window `d` at time `t` holds the readings in `(t - d, t]`. Sums are taken over the
//! readings' integer representation at their stored resolution, so they are exact and any
//! evaluator that sees the same readings computes the same values.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use vitals_core::Catalog;

use crate::parse::{ArOp, CmpOp, Expr, Func};

/// One metric's readings of one patient, sorted by time, one per time.
pub type Series = Vec<(i64, f64)>;

/// A rule's truth over time at its evaluation points.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub times: Vec<i64>,
    pub holds: Vec<bool>,
}

fn collect_absent(e: &Expr, out: &mut Vec<(String, i64)>) {
    match e {
        Expr::Window { func: Func::Absent, metric, window_ms } => out.push((metric.clone(), *window_ms)),
        Expr::Neg(a) | Expr::Not(a) => collect_absent(a, out),
        Expr::Arith(a, _, b) | Expr::Cmp(a, _, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            collect_absent(a, out);
            collect_absent(b, out);
        }
        _ => {}
    }
}

/// The evaluation points of `exprs` over `data` within `[from, to)`.
pub fn points(exprs: &[&Expr], data: &BTreeMap<String, Series>, from: i64, to: i64) -> Vec<i64> {
    let mut set = BTreeSet::new();
    for e in exprs {
        let mut metrics = Vec::new();
        e.metrics(&mut metrics);
        for (m, _) in &metrics {
            for &(t, _) in data.get(m).map_or(&[][..], Vec::as_slice) {
                if t >= from && t < to {
                    set.insert(t);
                }
            }
        }
        let mut absent = Vec::new();
        collect_absent(e, &mut absent);
        for (m, w) in absent {
            for &(t, _) in data.get(&m).map_or(&[][..], Vec::as_slice) {
                if t + w >= from && t + w < to {
                    set.insert(t + w);
                }
            }
        }
    }
    set.into_iter().collect()
}

fn scale_of(metric: &str) -> f64 {
    Catalog::standard().by_code(metric).map_or(1e6, |m| 10f64.powi(i32::from(m.scale)))
}

/// Values of a numeric expression at each point (NaN where unknown).
fn numbers(e: &Expr, data: &BTreeMap<String, Series>, times: &[i64]) -> Vec<f64> {
    let empty = Vec::new();
    match e {
        Expr::Num(n) => vec![*n; times.len()],
        Expr::Metric(m) => {
            let s = data.get(m).unwrap_or(&empty);
            let mut j = 0;
            times
                .iter()
                .map(|&t| {
                    while j < s.len() && s[j].0 <= t {
                        j += 1;
                    }
                    if j == 0 { f64::NAN } else { s[j - 1].1 }
                })
                .collect()
        }
        Expr::Window { func, metric, window_ms } => {
            window(*func, data.get(metric).unwrap_or(&empty), *window_ms, times, scale_of(metric))
        }
        Expr::Neg(a) => numbers(a, data, times).into_iter().map(|v| -v).collect(),
        Expr::Arith(a, op, b) => {
            let (x, y) = (numbers(a, data, times), numbers(b, data, times));
            x.into_iter()
                .zip(y)
                .map(|(x, y)| match op {
                    ArOp::Add => x + y,
                    ArOp::Sub => x - y,
                    ArOp::Mul => x * y,
                    ArOp::Div => x / y,
                })
                .collect()
        }
        // Conditions used as numbers: 1 or 0 (the checker does not produce these).
        other => truths(other, data, times).into_iter().map(|b| if b { 1.0 } else { 0.0 }).collect(),
    }
}

/// A window function at each point, over `(t - w, t]`, with two pointers and exact sums.
fn window(func: Func, s: &[(i64, f64)], w: i64, times: &[i64], scale: f64) -> Vec<f64> {
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut sum: i128 = 0;
    let mut mins: VecDeque<usize> = VecDeque::new();
    let mut maxs: VecDeque<usize> = VecDeque::new();
    let q = |v: f64| (v * scale).round() as i128;
    times
        .iter()
        .map(|&t| {
            while hi < s.len() && s[hi].0 <= t {
                sum += q(s[hi].1);
                while mins.back().is_some_and(|&k| s[k].1 >= s[hi].1) {
                    mins.pop_back();
                }
                mins.push_back(hi);
                while maxs.back().is_some_and(|&k| s[k].1 <= s[hi].1) {
                    maxs.pop_back();
                }
                maxs.push_back(hi);
                hi += 1;
            }
            while lo < hi && s[lo].0 <= t - w {
                sum -= q(s[lo].1);
                lo += 1;
            }
            while mins.front().is_some_and(|&k| k < lo) {
                mins.pop_front();
            }
            while maxs.front().is_some_and(|&k| k < lo) {
                maxs.pop_front();
            }
            let n = hi - lo;
            match func {
                Func::Count => n as f64,
                Func::Absent => {
                    if n == 0 {
                        1.0
                    } else {
                        0.0
                    }
                }
                _ if n == 0 => f64::NAN,
                Func::Mean => sum as f64 / scale / n as f64,
                Func::Min => mins.front().map_or(f64::NAN, |&k| s[k].1),
                Func::Max => maxs.front().map_or(f64::NAN, |&k| s[k].1),
                Func::Delta => s[hi - 1].1 - s[lo].1,
                Func::Rate if n < 2 => f64::NAN,
                Func::Rate => (s[hi - 1].1 - s[lo].1) / ((s[hi - 1].0 - s[lo].0) as f64 / 60_000.0),
            }
        })
        .collect()
}

/// Truth of a condition at each point; comparisons with an unknown value are false.
pub fn truths(e: &Expr, data: &BTreeMap<String, Series>, times: &[i64]) -> Vec<bool> {
    match e {
        Expr::Window { func: Func::Absent, .. } => numbers(e, data, times).into_iter().map(|v| v == 1.0).collect(),
        Expr::Cmp(a, op, b) => {
            let (x, y) = (numbers(a, data, times), numbers(b, data, times));
            x.into_iter()
                .zip(y)
                .map(|(x, y)| match op {
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Ge => x >= y,
                    CmpOp::Eq => x == y,
                    CmpOp::Ne => !x.is_nan() && !y.is_nan() && x != y,
                })
                .collect()
        }
        Expr::And(a, b) => {
            truths(a, data, times).into_iter().zip(truths(b, data, times)).map(|(x, y)| x && y).collect()
        }
        Expr::Or(a, b) => truths(a, data, times).into_iter().zip(truths(b, data, times)).map(|(x, y)| x || y).collect(),
        Expr::Not(a) => truths(a, data, times).into_iter().map(|x| !x).collect(),
        other => numbers(other, data, times).into_iter().map(|v| v != 0.0 && !v.is_nan()).collect(),
    }
}

/// One episode of a rule for one patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Episode {
    /// When the condition began to hold.
    pub start: i64,
    /// When the rule fired (`start`, or `for` later).
    pub fired: i64,
    /// The last evaluation point before it cleared (or the last point seen, if open).
    pub end: i64,
    /// The first evaluation point at which it had cleared; `None` while still open.
    pub cleared: Option<i64>,
}

/// The episode state machine, one evaluation point at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    Idle,
    /// Holding since `start`, not yet for `for`.
    Pending {
        start: i64,
    },
    Firing {
        start: i64,
        fired: i64,
        last: i64,
    },
}

impl Machine {
    /// Advances over one point; returns the episode that closed at it, if any.
    pub fn step(&mut self, t: i64, holds: bool, clears: Option<bool>, for_ms: i64) -> Option<Episode> {
        let (next, closed) = match *self {
            Machine::Idle | Machine::Pending { .. } if !holds => (Machine::Idle, None),
            Machine::Idle if for_ms == 0 => (Machine::Firing { start: t, fired: t, last: t }, None),
            Machine::Idle => (Machine::Pending { start: t }, None),
            Machine::Pending { start } if t - start >= for_ms => (Machine::Firing { start, fired: t, last: t }, None),
            Machine::Pending { start } => (Machine::Pending { start }, None),
            Machine::Firing { start, fired, last } => {
                if clears.unwrap_or(!holds) {
                    (Machine::Idle, Some(Episode { start, fired, end: last, cleared: Some(t) }))
                } else {
                    (Machine::Firing { start, fired, last: t }, None)
                }
            }
        };
        *self = next;
        closed
    }

    /// The open episode, if firing.
    pub fn open(&self) -> Option<Episode> {
        match *self {
            Machine::Firing { start, fired, last } => Some(Episode { start, fired, end: last, cleared: None }),
            _ => None,
        }
    }
}

/// Turns truth at the evaluation points into episodes: a run of points where the condition
/// holds, firing once it has held `for_ms` (0: at once), and ending when `clear` holds (if
/// given: hysteresis) or else when the condition stops holding.
pub fn episodes(times: &[i64], holds: &[bool], clear: Option<&[bool]>, for_ms: i64) -> Vec<Episode> {
    let mut m = Machine::Idle;
    let mut out = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let h = holds.get(i).copied().unwrap_or(false);
        let c = clear.map(|c| c.get(i).copied().unwrap_or(false));
        out.extend(m.step(t, h, c, for_ms));
    }
    out.extend(m.open());
    out
}
