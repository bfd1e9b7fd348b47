//! One series query: raw points or buckets with aggregates.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use vitals_core::time::MS_PER_HOUR;
use vitals_core::{DeviceId, MetricId, PatientId};
use vitals_storage::segment::HourAgg;
use vitals_storage::{ReadRequest, Store, StoreError};

/// Most raw points one query returns.
pub const MAX_RAW_POINTS: usize = 2_000_000;
/// Most raw points one bucketed query reads (buckets that are not whole hours, and days
/// not answered by rollups, are folded from raw points).
pub const MAX_SCANNED_POINTS: usize = 8_000_000;
/// Most buckets one query may span.
pub const MAX_BUCKETS: i64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the range holds more than {MAX_RAW_POINTS} points; narrow it or aggregate with every=")]
    TooManyPoints,
    #[error(
        "these buckets would read more than {MAX_SCANNED_POINTS} raw points; narrow the range or use whole-hour buckets (every=1h), which the hourly rollups answer"
    )]
    TooManyScanned,
    #[error("every={every_ms}ms over this range makes more than {MAX_BUCKETS} buckets")]
    TooManyBuckets { every_ms: i64 },
    #[error("from must be before to")]
    EmptyRange,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An aggregate function over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Agg {
    Mean,
    Min,
    Max,
    Count,
    Sum,
    First,
    Last,
}

impl Agg {
    pub const ALL: [Agg; 7] = [Agg::Mean, Agg::Min, Agg::Max, Agg::Count, Agg::Sum, Agg::First, Agg::Last];

    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::First => "first",
            Agg::Last => "last",
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Agg {
    type Err = String;
    fn from_str(s: &str) -> Result<Agg, String> {
        Agg::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| format!("unknown aggregate {s:?}; use mean, min, max, count, sum, first or last"))
    }
}

#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub patient: PatientId,
    pub metric: MetricId,
    pub device: Option<DeviceId>,
    pub from: i64,
    pub to: i64,
    /// Bucket width; `None` for raw points.
    pub every_ms: Option<i64>,
    pub aggs: Vec<Agg>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawPoint {
    pub time_ms: i64,
    pub value: f64,
    pub device: Option<DeviceId>,
}

/// One non-empty bucket: its start and one value per requested aggregate, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub time_ms: i64,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Raw(Vec<RawPoint>),
    Buckets(Vec<Bucket>),
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: (i64, f64),
    last: (i64, f64),
}

impl Acc {
    fn of(h: &HourAgg) -> Acc {
        Acc {
            count: h.count,
            sum: h.sum,
            min: h.min,
            max: h.max,
            first: (h.first_ms, h.first),
            last: (h.last_ms, h.last),
        }
    }

    fn point(t: i64, v: f64) -> Acc {
        Acc { count: 1, sum: v, min: v, max: v, first: (t, v), last: (t, v) }
    }

    fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.first.0 < self.first.0 {
            self.first = o.first;
        }
        if o.last.0 >= self.last.0 {
            self.last = o.last;
        }
    }

    fn value(&self, a: Agg) -> f64 {
        match a {
            Agg::Mean => self.sum / self.count as f64,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Count => self.count as f64,
            Agg::Sum => self.sum,
            Agg::First => self.first.1,
            Agg::Last => self.last.1,
        }
    }
}

/// Runs a query against the store.
pub fn run(store: &Store, q: &SeriesQuery) -> Result<QueryResult, QueryError> {
    if q.from >= q.to {
        return Err(QueryError::EmptyRange);
    }
    let rollups = q.every_ms.is_some_and(|e| e > 0 && e % MS_PER_HOUR == 0);
    if let Some(every) = q.every_ms
        && q.to.saturating_sub(q.from) / every.max(1) > MAX_BUCKETS
    {
        return Err(QueryError::TooManyBuckets { every_ms: every });
    }
    let bucketed = q.every_ms.is_some_and(|e| e > 0);
    let read = store
        .read(&ReadRequest {
            patient: q.patient.clone(),
            metric: q.metric,
            device: q.device.clone(),
            from: q.from,
            to: q.to,
            rollups,
            max_points: if bucketed { MAX_SCANNED_POINTS } else { MAX_RAW_POINTS },
            sources: false,
        })
        .map_err(|e| match e {
            StoreError::TooManyPoints { .. } if bucketed => QueryError::TooManyScanned,
            StoreError::TooManyPoints { .. } => QueryError::TooManyPoints,
            other => other.into(),
        })?;
    let Some(every) = q.every_ms.filter(|e| *e > 0) else {
        let n: usize = read.raw.iter().map(|s| s.times.len()).sum();
        if n > MAX_RAW_POINTS {
            return Err(QueryError::TooManyPoints);
        }
        let mut points = Vec::with_capacity(n);
        for s in &read.raw {
            for (&t, &v) in s.times.iter().zip(&s.values) {
                points.push(RawPoint { time_ms: t, value: v, device: s.device.clone() });
            }
        }
        if read.raw.len() > 1 {
            points.sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then_with(|| a.device.cmp(&b.device)));
        }
        return Ok(QueryResult::Raw(points));
    };
    let bucket = |t: i64| t.div_euclid(every) * every;
    let mut acc: BTreeMap<i64, Acc> = BTreeMap::new();
    for h in &read.hours {
        let a = Acc::of(h);
        acc.entry(bucket(h.hour_ms)).and_modify(|x| x.merge(&a)).or_insert(a);
    }
    for s in &read.raw {
        for (&t, &v) in s.times.iter().zip(&s.values) {
            let a = Acc::point(t, v);
            acc.entry(bucket(t)).and_modify(|x| x.merge(&a)).or_insert(a);
        }
    }
    let aggs = if q.aggs.is_empty() { vec![Agg::Mean] } else { q.aggs.clone() };
    Ok(QueryResult::Buckets(
        acc.into_iter()
            .map(|(t, a)| Bucket { time_ms: t, values: aggs.iter().map(|g| a.value(*g)).collect() })
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
