//! What a scan's filters say about the partitions it needs: which patients, which metrics,
//! which time range. Pushed-down filters are `Inexact`: DataFusion applies them again to
//! what the scan returns, so this only has to be a superset, never exact.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, expr::InList};

/// The partitions a scan must read. `None` means unconstrained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wanted {
    pub(crate) patients: Option<BTreeSet<String>>,
    pub(crate) metrics: Option<BTreeSet<String>>,
    /// `[from, to)` in milliseconds.
    pub(crate) from: i64,
    pub(crate) to: i64,
}

impl Default for Wanted {
    fn default() -> Wanted {
        Wanted { patients: None, metrics: None, from: i64::MIN, to: i64::MAX }
    }
}

/// The columns a scan can prune on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub(crate) patient: Option<&'static str>,
    pub(crate) metric: Option<&'static str>,
    pub(crate) time: Option<&'static str>,
}

impl Keys {
    /// Whether this filter narrows a scan (so it is worth pushing down).
    pub(crate) fn understands(&self, e: &Expr) -> bool {
        let mut w = Wanted::default();
        self.apply(e, &mut w)
    }

    /// Everything the filters (a conjunction) say.
    pub(crate) fn wanted(&self, filters: &[Expr]) -> Wanted {
        let mut w = Wanted::default();
        for f in filters {
            self.apply(f, &mut w);
        }
        w
    }

    /// Narrows `w` by one conjunct; false when the expression says nothing usable.
    fn apply(&self, e: &Expr, w: &mut Wanted) -> bool {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                let a = self.apply(left, w);
                let b = self.apply(right, w);
                a || b
            }
            // Either side: the union of what each says (DataFusion writes short IN lists as
            // ORs of equalities).
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
                let (mut a, mut b) = (Wanted::default(), Wanted::default());
                if !self.apply(left, &mut a) || !self.apply(right, &mut b) {
                    return false;
                }
                let union = |x: Option<BTreeSet<String>>, y: Option<BTreeSet<String>>| match (x, y) {
                    (Some(x), Some(y)) => Some(x.union(&y).cloned().collect()),
                    _ => None,
                };
                let either = Wanted {
                    patients: union(a.patients, b.patients),
                    metrics: union(a.metrics, b.metrics),
                    from: a.from.min(b.from),
                    to: a.to.max(b.to),
                };
                if either == Wanted::default() {
                    return false;
                }
                if let Some(p) = either.patients {
                    self.narrow(&mut w.patients, p);
                }
                if let Some(m) = either.metrics {
                    self.narrow(&mut w.metrics, m);
                }
                w.from = w.from.max(either.from);
                w.to = w.to.min(either.to);
                true
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                match (column(left), literal(right), column(right), literal(left)) {
                    (Some(c), Some(v), _, _) => self.compare(c, *op, v, w),
                    (_, _, Some(c), Some(v)) => match flip(*op) {
                        Some(op) => self.compare(c, op, v, w),
                        None => false,
                    },
                    _ => false,
                }
            }
            Expr::InList(InList { expr, list, negated: false }) => {
                let Some(c) = column(expr) else { return false };
                let values: Option<BTreeSet<String>> = list.iter().map(|v| literal(v).and_then(text)).collect();
                match values {
                    Some(vs) => self.restrict_text(c, vs, w),
                    None => false,
                }
            }
            Expr::Between(Between { expr, negated: false, low, high }) => {
                let (Some(c), Some(lo), Some(hi)) = (column(expr), literal(low), literal(high)) else { return false };
                let a = self.compare(c, Operator::GtEq, lo, w);
                let b = self.compare(c, Operator::LtEq, hi, w);
                a && b
            }
            _ => false,
        }
    }

    fn compare(&self, c: &str, op: Operator, v: &ScalarValue, w: &mut Wanted) -> bool {
        if Some(c) == self.time {
            // `ms` rounded down; `exact` when the literal is a whole millisecond. Bounds are
            // whole milliseconds that keep every row the exact filter (run again later) keeps.
            let Some((ms, exact)) = millis(v) else { return false };
            let next = ms.saturating_add(1);
            match op {
                Operator::Eq => {
                    w.from = w.from.max(ms);
                    w.to = w.to.min(next);
                }
                Operator::Gt => w.from = w.from.max(next),
                Operator::GtEq => w.from = w.from.max(if exact { ms } else { next }),
                Operator::Lt => w.to = w.to.min(if exact { ms } else { next }),
                Operator::LtEq => w.to = w.to.min(next),
                _ => return false,
            }
            return true;
        }
        if op != Operator::Eq {
            return false;
        }
        match text(v) {
            Some(s) => self.restrict_text(c, BTreeSet::from([s]), w),
            None => false,
        }
    }

    fn restrict_text(&self, c: &str, values: BTreeSet<String>, w: &mut Wanted) -> bool {
        let slot = if Some(c) == self.patient {
            &mut w.patients
        } else if Some(c) == self.metric {
            &mut w.metrics
        } else {
            return false;
        };
        self.narrow(slot, values);
        true
    }

    fn narrow(&self, slot: &mut Option<BTreeSet<String>>, values: BTreeSet<String>) {
        *slot = Some(match slot.take() {
            None => values,
            Some(old) => old.intersection(&values).cloned().collect(),
        });
    }
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// A timestamp literal as milliseconds rounded down, and whether that is exact.
fn millis(v: &ScalarValue) -> Option<(i64, bool)> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000).map(|ms| (ms, true)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some((*ms, true)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some((us.div_euclid(1000), us.rem_euclid(1000) == 0)),
        ScalarValue::TimestampNanosecond(Some(ns), _) => {
            Some((ns.div_euclid(1_000_000), ns.rem_euclid(1_000_000) == 0))
        }
        _ => None,
    }
}

/// `lit op col` as `col op' lit`.
fn flip(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Eq => Operator::Eq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    const KEYS: Keys = Keys { patient: Some("patient"), metric: Some("metric"), time: Some("time") };

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into())))
    }

    #[test]
    fn equalities_and_lists_intersect() {
        let w = KEYS.wanted(&[
            col("patient").in_list(vec![lit("a"), lit("b")], false),
            col("patient").eq(lit("b")),
            lit("heart_rate").eq(col("metric")),
        ]);
        assert_eq!(w.patients, Some(BTreeSet::from(["b".to_owned()])));
        assert_eq!(w.metrics, Some(BTreeSet::from(["heart_rate".to_owned()])));
        let w = KEYS.wanted(&[col("patient").eq(lit("a")), col("patient").eq(lit("b"))]);
        assert_eq!(w.patients, Some(BTreeSet::new()), "contradictory filters read nothing");
    }

    #[test]
    fn time_bounds_are_a_superset() {
        let w = KEYS.wanted(&[col("time").gt(ts(1000)).and(col("time").lt_eq(ts(5000)))]);
        assert_eq!((w.from, w.to), (1001, 5001));
        let w = KEYS.wanted(&[ts(2000).gt(col("time"))]);
        assert_eq!((w.from, w.to), (i64::MIN, 2000));
        let w = KEYS.wanted(&[col("time").between(ts(10), ts(20))]);
        assert_eq!((w.from, w.to), (10, 21));
        let us = |v: i64| lit(ScalarValue::TimestampMicrosecond(Some(v), None));
        // time >= 1.999 ms keeps time = 2 ms; time < 1.999 ms keeps time = 1 ms.
        assert_eq!(KEYS.wanted(&[col("time").gt_eq(us(1_999))]).from, 2);
        assert_eq!(KEYS.wanted(&[col("time").lt(us(1_999))]).to, 2);
        assert_eq!(KEYS.wanted(&[col("time").gt_eq(us(2_000))]).from, 2);
    }

    #[test]
    fn alternatives_read_the_union() {
        let e = col("patient").eq(lit("a")).or(col("patient").eq(lit("b")).or(col("patient").eq(lit("c"))));
        let w = KEYS.wanted(&[e, col("patient").in_list(vec![lit("a"), lit("c"), lit("d")], false)]);
        assert_eq!(w.patients, Some(BTreeSet::from(["a".to_owned(), "c".to_owned()])));
        let e = col("time").lt(ts(10)).or(col("time").gt_eq(ts(100)).and(col("time").lt(ts(200))));
        assert_eq!(KEYS.wanted(&[e]), Wanted { from: i64::MIN, to: 200, ..Wanted::default() });
        // One side unconstrained: the other says nothing either.
        assert!(!KEYS.understands(&col("patient").eq(lit("a")).or(col("metric").eq(lit("x")))));
    }

    #[test]
    fn what_it_cannot_use_it_ignores() {
        assert!(!KEYS.understands(&col("patient").not_eq(lit("a"))));
        assert!(!KEYS.understands(&col("patient").eq(lit("a")).or(col("value").gt(lit(1.0)))));
        assert!(!KEYS.understands(&col("value").gt(lit(3.0))));
        assert!(!KEYS.understands(&col("patient").in_list(vec![lit("a")], true)));
        assert_eq!(KEYS.wanted(&[col("value").gt(lit(3.0))]), Wanted::default());
    }
}
