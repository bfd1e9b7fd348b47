//! `samples` and `rollups_hourly`: scans of the store, one (patient, metric, UTC day) chunk
//! at a time, read on blocking threads and streamed through a small channel (a query that
//! stops early, or times out, stops the reads). Chunks come only from series and days the
//! store holds, in the caller's scope and the filters' patients, metrics and time range
//! (partition pruning); the store's read merges buffered and flushed data with last write
//! wins, so a query sees every acknowledged sample exactly as the REST API does.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use vitals_core::time::{MS_PER_DAY, MS_PER_HOUR, day_start};
use vitals_core::{Catalog, MetricId, PatientId};
use vitals_query::{Agg, QueryResult, SeriesQuery};
use vitals_storage::{ReadRequest, Store, StoreError};

use crate::filters::{Keys, Wanted};
use crate::tables::timestamp;
use crate::{Scope, SqlError};

/// Points one read may hold; a chunk the store estimates above it is read in parts.
const READ_POINTS: u64 = 1_000_000;
/// The end of year 9999: no stored time is later.
const MAX_TIME: i64 = 253_402_300_800_000;
/// Partitions a scan is split into (one per core of the machines Vitals is sized for).
const PARTITIONS: usize = 2;
/// The position of `source` in `samples`: read from the store only when a query uses it.
const SOURCE_COLUMN: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Samples,
    Rollups,
}

pub(crate) struct SeriesTable {
    kind: Kind,
    store: Arc<Store>,
    scope: Arc<Scope>,
    schema: SchemaRef,
}

impl fmt::Debug for SeriesTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeriesTable({:?})", self.kind)
    }
}

impl SeriesTable {
    pub(crate) fn samples(store: Arc<Store>, scope: Arc<Scope>) -> SeriesTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("patient", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("time", timestamp(), false),
            Field::new("value", DataType::Float64, false),
            Field::new("unit", DataType::Utf8, false),
            Field::new("device", DataType::Utf8, true),
            Field::new("source", DataType::Utf8, true),
        ]));
        SeriesTable { kind: Kind::Samples, store, scope, schema }
    }

    pub(crate) fn rollups(store: Arc<Store>, scope: Arc<Scope>) -> SeriesTable {
        let f = |n: &str| Field::new(n, DataType::Float64, false);
        let schema = Arc::new(Schema::new(vec![
            Field::new("patient", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("hour", timestamp(), false),
            Field::new("count", DataType::UInt64, false),
            f("sum"),
            f("min"),
            f("max"),
            f("mean"),
            f("first"),
            f("last"),
            Field::new("unit", DataType::Utf8, false),
        ]));
        SeriesTable { kind: Kind::Rollups, store, scope, schema }
    }

    fn keys(&self) -> Keys {
        let time = match self.kind {
            Kind::Samples => "time",
            Kind::Rollups => "hour",
        };
        Keys { patient: Some("patient"), metric: Some("metric"), time: Some(time) }
    }

    /// The chunks to read: series in scope and in the filters, days that hold data.
    fn chunks(&self, want: &Wanted) -> Vec<Chunk> {
        let catalog = Catalog::standard();
        // Stored times lie in years 1970 to 9999 (the validator's bounds).
        let want = Wanted { from: want.from.max(0), to: want.to.min(MAX_TIME), ..want.clone() };
        let (from, to) = match self.kind {
            Kind::Samples => (want.from, want.to),
            // Whole hours, so every bucket returned is complete.
            Kind::Rollups => (want.from.div_euclid(MS_PER_HOUR).saturating_mul(MS_PER_HOUR), ceil_hour(want.to)),
        };
        let mut out = Vec::new();
        for ((patient, metric), days) in self.store.series_days(None) {
            if !self.scope.includes(patient.as_str())
                || want.patients.as_ref().is_some_and(|p| !p.contains(patient.as_str()))
                || want.metrics.as_ref().is_some_and(|m| !m.contains(catalog.get(metric).code))
            {
                continue;
            }
            for day in days.range(day_start(from)..to.max(day_start(from))) {
                let lo = (*day).max(from);
                let hi = day.saturating_add(MS_PER_DAY).min(to);
                if lo < hi {
                    out.push(Chunk { patient: patient.clone(), metric, from: lo, to: hi });
                }
            }
        }
        out
    }
}

#[cfg(test)]
impl SeriesTable {
    /// (patient, metric, day) of each chunk a scan with these filters reads, in order.
    pub(crate) fn chunk_keys(&self, want: &Wanted) -> Vec<(String, &'static str, i64)> {
        self.chunks(want)
            .into_iter()
            .map(|c| (c.patient.as_str().to_owned(), Catalog::standard().get(c.metric).code, day_start(c.from)))
            .collect()
    }
}

fn ceil_hour(t: i64) -> i64 {
    match t.checked_add(MS_PER_HOUR - 1) {
        Some(x) => x.div_euclid(MS_PER_HOUR) * MS_PER_HOUR,
        None => i64::MAX,
    }
}

#[async_trait]
impl TableProvider for SeriesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let keys = self.keys();
        Ok(filters
            .iter()
            .map(|f| {
                if keys.understands(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let chunks = self.chunks(&self.keys().wanted(filters));
        let sources = self.kind == Kind::Samples && projection.is_none_or(|p| p.contains(&SOURCE_COLUMN));
        let mut parts: Vec<Vec<Chunk>> = vec![Vec::new(); PARTITIONS];
        for (i, c) in chunks.into_iter().enumerate() {
            parts[i % PARTITIONS].push(c);
        }
        let streams: Vec<Arc<dyn PartitionStream>> = parts
            .into_iter()
            .map(|chunks| {
                Arc::new(ChunkStream {
                    kind: self.kind,
                    store: self.store.clone(),
                    schema: self.schema.clone(),
                    chunks: Arc::new(chunks),
                    sources,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(self.schema.clone(), streams, projection, Vec::new(), false, limit)?))
    }
}

/// One series over `[from, to)` within one UTC day.
#[derive(Debug, Clone)]
struct Chunk {
    patient: PatientId,
    metric: MetricId,
    from: i64,
    to: i64,
}

struct ChunkStream {
    kind: Kind,
    store: Arc<Store>,
    schema: SchemaRef,
    chunks: Arc<Vec<Chunk>>,
    /// Whether the query uses `source`.
    sources: bool,
}

impl fmt::Debug for ChunkStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkStream({:?}, {} chunks)", self.kind, self.chunks.len())
    }
}

impl PartitionStream for ChunkStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let (kind, store, schema, chunks) = (self.kind, self.store.clone(), self.schema.clone(), self.chunks.clone());
        let sources = self.sources;
        tokio::task::spawn_blocking(move || {
            // The receiver is gone when the query ended early or was cancelled.
            let mut emit = |b: Result<RecordBatch>| tx.blocking_send(b).is_ok();
            for c in chunks.iter() {
                if !read_chunk(kind, &store, &schema, c, sources, &mut emit) {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn store_error(e: StoreError) -> DataFusionError {
    let e = match e {
        StoreError::TooManyPoints { limit } => {
            SqlError::Failed(format!("one series holds more than {limit} points in a part of a day"))
        }
        other => SqlError::Internal(other.to_string()),
    };
    DataFusionError::External(Box::new(e))
}

/// Reads one chunk as batches, in parts when the store estimates it large, and hands each
/// to `emit`; false when the scan should stop (an error was emitted, or nobody listens).
fn read_chunk(
    kind: Kind,
    store: &Store,
    schema: &SchemaRef,
    c: &Chunk,
    sources: bool,
    emit: &mut dyn FnMut(Result<RecordBatch>) -> bool,
) -> bool {
    let req = |from: i64, to: i64| ReadRequest {
        patient: c.patient.clone(),
        metric: c.metric,
        device: None,
        from,
        to,
        rollups: false,
        max_points: usize::try_from(READ_POINTS * 4).unwrap_or(usize::MAX),
        sources,
    };
    let parts = match kind {
        // Rollups are read hour-aligned and whole: their day is folded at once.
        Kind::Rollups => 1,
        Kind::Samples => store.estimate(&req(c.from, c.to)).div_ceil(READ_POINTS).max(1),
    };
    let parts = i64::try_from(parts).unwrap_or(i64::MAX).min((c.to - c.from).max(1));
    let span = c.to - c.from;
    let step = (span / parts + i64::from(span % parts != 0)).max(1);
    let mut from = c.from;
    while from < c.to {
        let to = from.saturating_add(step).min(c.to);
        let b = match kind {
            Kind::Samples => samples_batch(store, schema, c, &req(from, to)),
            Kind::Rollups => rollups_batch(store, schema, c),
        };
        match b {
            Ok(b) if b.num_rows() == 0 => {}
            Ok(b) => {
                if !emit(Ok(b)) {
                    return false;
                }
            }
            Err(e) => {
                emit(Err(e));
                return false;
            }
        }
        from = to;
    }
    true
}

fn samples_batch(store: &Store, schema: &SchemaRef, c: &Chunk, req: &ReadRequest) -> Result<RecordBatch> {
    let read = store.read(req).map_err(store_error)?;
    let n: usize = read.raw.iter().map(|s| s.times.len()).sum();
    let metric = Catalog::standard().get(c.metric);
    let mut times = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    let mut devices: Vec<Option<&str>> = Vec::with_capacity(n);
    // Left all null when the query does not use `source` (then the read did not decode it).
    let mut sources: Vec<Option<&str>> = Vec::with_capacity(n);
    for s in &read.raw {
        times.extend_from_slice(&s.times);
        values.extend_from_slice(&s.values);
        devices.extend(std::iter::repeat_n(s.device.as_ref().map(|d| d.as_str()), s.times.len()));
        sources.extend(s.sources.iter().map(|x| x.name()));
    }
    sources.resize(n, None);
    let columns: Vec<ArrayRef> = vec![
        repeat(c.patient.as_str(), n),
        repeat(metric.code, n),
        Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
        Arc::new(Float64Array::from(values)),
        repeat(metric.unit, n),
        Arc::new(devices.into_iter().collect::<StringArray>()),
        Arc::new(sources.into_iter().collect::<StringArray>()),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn rollups_batch(store: &Store, schema: &SchemaRef, c: &Chunk) -> Result<RecordBatch> {
    let q = SeriesQuery {
        patient: c.patient.clone(),
        metric: c.metric,
        device: None,
        from: c.from,
        to: c.to,
        every_ms: Some(MS_PER_HOUR),
        aggs: vec![Agg::Count, Agg::Sum, Agg::Min, Agg::Max, Agg::Mean, Agg::First, Agg::Last],
    };
    let buckets = match vitals_query::run(store, &q) {
        Ok(QueryResult::Buckets(b)) => b,
        Ok(QueryResult::Raw(_)) => Vec::new(),
        Err(vitals_query::QueryError::Store(e)) => return Err(store_error(e)),
        Err(e) => return Err(DataFusionError::External(Box::new(SqlError::Failed(e.to_string())))),
    };
    let n = buckets.len();
    let metric = Catalog::standard().get(c.metric);
    let col = |i: usize| -> ArrayRef { Arc::new(buckets.iter().map(|b| b.values[i]).collect::<Float64Array>()) };
    let columns: Vec<ArrayRef> = vec![
        repeat(c.patient.as_str(), n),
        repeat(metric.code, n),
        Arc::new(TimestampMillisecondArray::from_iter_values(buckets.iter().map(|b| b.time_ms)).with_timezone("UTC")),
        Arc::new(buckets.iter().map(|b| b.values[0] as u64).collect::<UInt64Array>()),
        col(1),
        col(2),
        col(3),
        col(4),
        col(5),
        col(6),
        repeat(metric.unit, n),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn repeat(s: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n)))
}
