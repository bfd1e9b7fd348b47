//! The tables a query sees, registered per query with the caller's scope. Small tables
//! (`events`, `alerts`, `patients`, `cohorts`, `metrics`) are built when a plan scans them;
//! `samples` and `rollups_hourly` stream from the store (`samples.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use vitals_core::Catalog;
use vitals_core::catalog::Aggregation;

use crate::samples::SeriesTable;
use crate::{Scope, Sources, SqlError};

/// Registers every table for one query; their names and schemas, for `pg_catalog`.
pub(crate) fn register(
    ctx: &SessionContext,
    sources: &Sources,
    scope: &Scope,
) -> Result<Vec<(&'static str, SchemaRef)>> {
    let scope = Arc::new(scope.clone());
    let mut tables: Vec<(&'static str, Arc<dyn TableProvider>)> = vec![
        ("samples", Arc::new(SeriesTable::samples(sources.store.clone(), scope.clone()))),
        ("rollups_hourly", Arc::new(SeriesTable::rollups(sources.store.clone(), scope.clone()))),
    ];
    let s = sources.clone();
    let sc = scope.clone();
    tables.push(("events", Lazy::new("events", events_schema(), move || events(&s, &sc))));
    let s = sources.clone();
    let sc = scope.clone();
    tables.push(("alerts", Lazy::new("alerts", alerts_schema(), move || alerts(&s, &sc))));
    let s = sources.clone();
    let sc = scope.clone();
    tables.push(("patients", Lazy::new("patients", patients_schema(), move || patients(&s, &sc))));
    let s = sources.clone();
    let sc = scope.clone();
    tables.push(("cohorts", Lazy::new("cohorts", cohorts_schema(), move || cohorts(&s, &sc))));
    tables.push(("metrics", Lazy::new("metrics", metrics_schema(), metrics)));
    let mut out = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        out.push((name, table.schema()));
        ctx.register_table(name, table)?;
    }
    Ok(out)
}

pub(crate) fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

type Build = dyn Fn() -> std::result::Result<RecordBatch, SqlError> + Send + Sync;

/// A table whose one batch is built when a plan scans it.
struct Lazy {
    name: &'static str,
    schema: SchemaRef,
    build: Box<Build>,
}

impl Lazy {
    fn new(
        name: &'static str,
        schema: SchemaRef,
        build: impl Fn() -> std::result::Result<RecordBatch, SqlError> + Send + Sync + 'static,
    ) -> Arc<Lazy> {
        Arc::new(Lazy { name, schema, build: Box::new(build) })
    }
}

impl fmt::Debug for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lazy({})", self.name)
    }
}

#[async_trait]
impl TableProvider for Lazy {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.build)().map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?)
    }
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> std::result::Result<RecordBatch, SqlError> {
    RecordBatch::try_new(schema, columns).map_err(|e| SqlError::Internal(e.to_string()))
}

fn strings<'a>(v: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.into_iter().collect::<StringArray>())
}

fn times(v: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(v.into_iter().collect::<TimestampMillisecondArray>().with_timezone("UTC"))
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("patient", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("start", timestamp(), false),
        Field::new("end", timestamp(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, false),
    ]))
}

fn events(s: &Sources, scope: &Scope) -> std::result::Result<RecordBatch, SqlError> {
    let mut rows = Vec::new();
    for p in s.events.patients() {
        if scope.includes(&p) {
            rows.extend(s.events.query(&p, i64::MIN, i64::MAX, None));
        }
    }
    let attributes: Vec<String> =
        rows.iter().map(|e| serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into())).collect();
    batch(
        events_schema(),
        vec![
            strings(rows.iter().map(|e| Some(e.patient.as_str()))),
            strings(rows.iter().map(|e| Some(e.id.as_str()))),
            strings(rows.iter().map(|e| Some(e.kind.as_str()))),
            times(rows.iter().map(|e| Some(e.start_ms))),
            times(rows.iter().map(|e| Some(e.end_ms))),
            strings(rows.iter().map(|e| Some(e.source.as_str()))),
            strings(attributes.iter().map(|a| Some(a.as_str()))),
        ],
    )
}

fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("patient", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("start", timestamp(), false),
        Field::new("fired", timestamp(), false),
        Field::new("end", timestamp(), false),
        Field::new("cleared", timestamp(), true),
        Field::new("acknowledged", timestamp(), true),
        Field::new("notified", DataType::Boolean, false),
        Field::new("metrics", DataType::Utf8, false),
        Field::new("expr", DataType::Utf8, false),
    ]))
}

fn alerts(s: &Sources, scope: &Scope) -> std::result::Result<RecordBatch, SqlError> {
    let mut rows = s.records.alerts();
    rows.retain(|a| scope.includes(&a.patient));
    rows.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
    let severity: Vec<String> = rows.iter().map(|a| word(&a.severity)).collect();
    let state: Vec<String> = rows.iter().map(|a| word(&a.state)).collect();
    let metrics: Vec<String> = rows.iter().map(|a| a.metrics.join(",")).collect();
    batch(
        alerts_schema(),
        vec![
            strings(rows.iter().map(|a| Some(a.id.as_str()))),
            strings(rows.iter().map(|a| Some(a.rule.as_str()))),
            strings(rows.iter().map(|a| Some(a.patient.as_str()))),
            strings(severity.iter().map(|x| Some(x.as_str()))),
            strings(state.iter().map(|x| Some(x.as_str()))),
            times(rows.iter().map(|a| Some(a.start_ms))),
            times(rows.iter().map(|a| Some(a.fired_ms))),
            times(rows.iter().map(|a| Some(a.end_ms))),
            times(rows.iter().map(|a| a.cleared_ms)),
            times(rows.iter().map(|a| a.acked_ms)),
            Arc::new(rows.iter().map(|a| Some(a.notified)).collect::<BooleanArray>()),
            strings(metrics.iter().map(|x| Some(x.as_str()))),
            strings(rows.iter().map(|a| Some(a.expr.as_str()))),
        ],
    )
}

fn patients_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("patient", DataType::Utf8, false),
        Field::new("registered", timestamp(), true),
        Field::new("last_sample", timestamp(), true),
        Field::new("teams", DataType::Utf8, false),
        Field::new("cohorts", DataType::Utf8, false),
    ]))
}

/// Registered patients and patients only seen in samples, by pseudonym.
fn patient_rows(
    s: &Sources,
    scope: &Scope,
) -> std::result::Result<BTreeMap<String, (crate::PatientRecord, Option<i64>)>, SqlError> {
    let mut out: BTreeMap<String, (crate::PatientRecord, Option<i64>)> = BTreeMap::new();
    for r in s.records.patients().map_err(SqlError::Internal)? {
        if scope.includes(&r.patient) {
            out.insert(r.patient.clone(), (r, None));
        }
    }
    for (p, last) in s.store.patients() {
        if scope.includes(p.as_str()) {
            let e = out.entry(p.as_str().to_owned()).or_insert_with(|| {
                (crate::PatientRecord { patient: p.as_str().to_owned(), ..Default::default() }, None)
            });
            e.1 = Some(last);
        }
    }
    Ok(out)
}

fn patients(s: &Sources, scope: &Scope) -> std::result::Result<RecordBatch, SqlError> {
    let rows: Vec<(crate::PatientRecord, Option<i64>)> = patient_rows(s, scope)?.into_values().collect();
    let teams: Vec<String> = rows.iter().map(|(r, _)| r.teams.join(",")).collect();
    let cohorts: Vec<String> = rows.iter().map(|(r, _)| r.cohorts.join(",")).collect();
    batch(
        patients_schema(),
        vec![
            strings(rows.iter().map(|(r, _)| Some(r.patient.as_str()))),
            times(rows.iter().map(|(r, _)| r.registered_ms)),
            times(rows.iter().map(|(_, last)| *last)),
            strings(teams.iter().map(|x| Some(x.as_str()))),
            strings(cohorts.iter().map(|x| Some(x.as_str()))),
        ],
    )
}

fn cohorts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("cohort", DataType::Utf8, false),
        Field::new("patient", DataType::Utf8, false),
    ]))
}

/// One row per (cohort, member) the caller may see.
fn cohorts(s: &Sources, scope: &Scope) -> std::result::Result<RecordBatch, SqlError> {
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for r in s.records.patients().map_err(SqlError::Internal)? {
        if scope.includes(&r.patient) {
            for c in r.cohorts {
                pairs.insert((c, r.patient.clone()));
            }
        }
    }
    batch(
        cohorts_schema(),
        vec![
            strings(pairs.iter().map(|(c, _)| Some(c.as_str()))),
            strings(pairs.iter().map(|(_, p)| Some(p.as_str()))),
        ],
    )
}

fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("loinc", DataType::Utf8, true),
        Field::new("aggregation", DataType::Utf8, false),
        Field::new("min", DataType::Float64, false),
        Field::new("max", DataType::Float64, false),
        Field::new("decimals", DataType::UInt8, false),
        Field::new("units_accepted", DataType::Utf8, false),
    ]))
}

fn metrics() -> std::result::Result<RecordBatch, SqlError> {
    let all: Vec<_> = Catalog::standard().all().map(|(_, m)| m).collect();
    let aliases: Vec<String> =
        all.iter().map(|m| m.aliases.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(",")).collect();
    batch(
        metrics_schema(),
        vec![
            strings(all.iter().map(|m| Some(m.code))),
            strings(all.iter().map(|m| Some(m.name))),
            strings(all.iter().map(|m| Some(m.unit))),
            strings(all.iter().map(|m| m.loinc)),
            strings(all.iter().map(|m| Some(aggregation(m.aggregation)))),
            Arc::new(all.iter().map(|m| Some(m.min)).collect::<Float64Array>()),
            Arc::new(all.iter().map(|m| Some(m.max)).collect::<Float64Array>()),
            Arc::new(all.iter().map(|m| Some(m.scale)).collect::<UInt8Array>()),
            strings(aliases.iter().map(|x| Some(x.as_str()))),
        ],
    )
}

fn aggregation(a: Aggregation) -> &'static str {
    match a {
        Aggregation::Mean => "mean",
        Aggregation::Sum => "sum",
    }
}

/// An enum's wire name (its serde form).
fn word<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
