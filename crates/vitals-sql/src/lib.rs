//! SQL for analysts: Apache DataFusion over the store.
//!
//! Tables (`tables`): `samples` and `rollups_hourly` read the store (buffered and flushed
//! data, last write wins, exactly as the REST API answers), pruned by patient, metric and
//! time; `events`, `alerts`, `patients`, `cohorts` and `metrics` come from their stores.
//! Every table that holds a patient applies the caller's [`Scope`] in its scan, so the row
//! filter is part of every plan, whatever the SQL (joins, subqueries, `UNION`).
//!
//! Each query runs in a session of its own with a memory pool, a row limit, a timeout and
//! a slot among [`Limits::max_concurrent`]; only queries are accepted (no DDL, DML, `COPY`
//! or `SET`). [`answer`] writes results as JSON, CSV, Arrow IPC, Parquet or a text table.
//! A query that reads the PostgreSQL catalog gets one ([`pg_catalog`]: what psql and JDBC
//! clients browse). This crate reads; it never writes the store.

pub mod answer;
mod filters;
pub mod pg_catalog;
mod samples;
mod tables;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use vitals_alerts::alert::Alert;
use vitals_storage::Store;
use vitals_storage::event_store::EventStore;

pub use datafusion::arrow;

/// Which patients' rows a query may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Patients(BTreeSet<String>),
}

impl Scope {
    pub fn includes(&self, patient: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patients(p) => p.contains(patient),
        }
    }
}

/// What one query may use; exceeding any is a clear error, never a dead server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows an answer may hold.
    pub max_rows: usize,
    /// Memory the query's operators (sorts, joins, aggregates) may hold.
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Queries running at once; more are refused (`Busy`), not queued.
    pub max_concurrent: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_rows: 1_000_000, memory_bytes: 512 << 20, timeout: Duration::from_secs(60), max_concurrent: 4 }
    }
}

/// A registered or observed patient, as analysts may see them: never identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatientRecord {
    pub patient: String,
    pub registered_ms: Option<i64>,
    pub teams: Vec<String>,
    pub cohorts: Vec<String>,
}

/// The records that live outside the store, provided by whoever runs the engine.
pub trait Records: Send + Sync {
    /// Registered patients with their teams and cohorts (patients only seen in the store are
    /// added by the engine).
    fn patients(&self) -> Result<Vec<PatientRecord>, String>;
    /// The current version of every alert.
    fn alerts(&self) -> Vec<Alert>;
}

/// Everything the tables read.
#[derive(Clone)]
pub struct Sources {
    pub store: Arc<Store>,
    pub events: Arc<EventStore>,
    pub records: Arc<dyn Records>,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Invalid(String),
    #[error("only queries are allowed (SELECT, WITH, EXPLAIN, SHOW): {0}")]
    NotAllowed(String),
    #[error("the answer has more than {limit} rows; add a LIMIT, filter or aggregate")]
    TooManyRows { limit: usize },
    #[error("the query needs more than its {mib} MiB of memory: {detail}")]
    Memory { mib: usize, detail: String },
    #[error("the query ran longer than its {secs} s limit and was stopped")]
    Timeout { secs: u64 },
    #[error("{running} queries are running, the most allowed at once; try again shortly")]
    Busy { running: usize },
    #[error("the query failed: {0}")]
    Failed(String),
    #[error("reading the data failed: {0}")]
    Internal(String),
}

/// The value of a query placeholder: its text, or NULL.
pub type Param = Option<String>;

/// A query's result.
#[derive(Debug, Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

/// Runs SQL over the sources under limits.
pub struct Engine {
    sources: Sources,
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Engine {
    pub fn new(sources: Sources, limits: Limits) -> Engine {
        let slots = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
        Engine { sources, limits, slots }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.limits.max_concurrent.max(1) - self.slots.available_permits()
    }

    /// Runs one query for a caller who may see `scope`.
    pub async fn query(&self, sql: &str, scope: &Scope) -> Result<Answer, SqlError> {
        self.query_with(sql, &[], scope).await
    }

    /// Runs one query with values for its placeholders (`$1`, `$2`...): each value's text
    /// (or NULL) is cast to the type the query gives its placeholder, text where it says
    /// none. Values are bound into the plan, never pasted into the SQL.
    pub async fn query_with(&self, sql: &str, params: &[Param], scope: &Scope) -> Result<Answer, SqlError> {
        let _slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| SqlError::Busy { running: self.limits.max_concurrent })?;
        let secs = self.limits.timeout.as_secs();
        tokio::time::timeout(self.limits.timeout, self.run(sql, params, scope))
            .await
            .unwrap_or(Err(SqlError::Timeout { secs }))
    }

    /// The types of a query's placeholders, `$1` first (text where the query says none).
    pub async fn parameter_types(&self, sql: &str, scope: &Scope) -> Result<Vec<DataType>, SqlError> {
        let df = self.plan(sql, scope).await?;
        let types = df.logical_plan().get_parameter_types().map_err(|e| self.error(e))?;
        Ok((1..=types.len())
            .map(|i| types.get(&format!("${i}")).cloned().flatten().unwrap_or(DataType::Utf8))
            .collect())
    }

    fn bind(&self, df: DataFrame, params: &[Param]) -> Result<DataFrame, SqlError> {
        if params.is_empty() {
            return Ok(df);
        }
        let types = df.logical_plan().get_parameter_types().map_err(|e| self.error(e))?;
        let values = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let t = types.get(&format!("${}", i + 1)).cloned().flatten().unwrap_or(DataType::Utf8);
                match p {
                    None => ScalarValue::try_from(&t),
                    Some(s) => ScalarValue::try_from_string(s.clone(), &t),
                }
                .map_err(|e| SqlError::Invalid(format!("parameter ${}: {}", i + 1, e.strip_backtrace())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        df.with_param_values(values).map_err(|e| self.error(e))
    }

    /// The columns a query would answer with, without running it (for clients that ask
    /// before they execute, such as the PostgreSQL protocol's Describe).
    pub async fn describe(&self, sql: &str, scope: &Scope) -> Result<SchemaRef, SqlError> {
        let df = self.plan(sql, scope).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    async fn run(&self, sql: &str, params: &[Param], scope: &Scope) -> Result<Answer, SqlError> {
        let df = self.plan(sql, scope).await?;
        let df = self.bind(df, params)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(|e| self.error(e))?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| self.error(e))?;
            rows += b.num_rows();
            if rows > self.limits.max_rows {
                return Err(SqlError::TooManyRows { limit: self.limits.max_rows });
            }
            if b.num_rows() > 0 {
                batches.push(b);
            }
        }
        Ok(Answer { schema, batches, rows })
    }

    /// Plans one query in a session of its own. A query that names the PostgreSQL catalog
    /// gets one, and its PostgreSQL-only syntax rewritten on the parsed statement.
    async fn plan(&self, sql: &str, scope: &Scope) -> Result<DataFrame, SqlError> {
        too_deep(sql)?;
        let catalog =
            pg_catalog::wanted(sql) || sql.trim_start().get(..5).is_some_and(|w| w.eq_ignore_ascii_case("show "));
        let ctx = self.session(scope, catalog)?;
        if !catalog {
            return ctx.sql_with_options(sql, options()).await.map_err(|e| self.error(e));
        }
        use datafusion::sql::parser::{DFParser, Statement};
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
            .map_err(|e| SqlError::Invalid(e.to_string()))?;
        if statements.len() != 1 {
            return Err(SqlError::Invalid(format!("expected one statement, found {}", statements.len())));
        }
        let mut statement = statements.pop_front().ok_or_else(|| SqlError::Invalid("no statement".into()))?;
        if let Statement::Statement(s) = &mut statement {
            pg_catalog::rewrite(s);
        }
        let state = ctx.state();
        let plan = state.statement_to_plan(statement).await.map_err(|e| self.error(e))?;
        options().verify_plan(&plan).map_err(|e| self.error(e))?;
        ctx.execute_logical_plan(plan).await.map_err(|e| self.error(e))
    }

    fn session(&self, scope: &Scope, pg_catalog: bool) -> Result<SessionContext, SqlError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(2)
            .with_default_catalog_and_schema("vitals", "public");
        // No spilling: temporary files would hold health data outside the data directory,
        // and the memory limit is meant as a limit.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let tables = tables::register(&ctx, &self.sources, scope).map_err(|e| SqlError::Internal(e.to_string()))?;
        if pg_catalog {
            pg_catalog::register(&ctx, &tables).map_err(|e| SqlError::Internal(e.to_string()))?;
        }
        Ok(ctx)
    }

    fn error(&self, e: DataFusionError) -> SqlError {
        classify(&e, self.limits.memory_bytes)
    }
}

/// The statements of a text that may hold several (`SELECT 1; SELECT 2`), each as SQL
/// text, in the PostgreSQL dialect. A text that does not parse is returned whole, so that
/// running it reports the error.
pub fn split_statements(sql: &str) -> Vec<String> {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    if too_deep(sql).is_err() {
        return vec![sql.to_owned()];
    }
    match DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) {
        // One statement: the text as the client wrote it.
        Ok(statements) if statements.len() <= 1 => vec![sql.to_owned()],
        Ok(statements) => statements.iter().map(|s| s.to_string()).collect(),
        Err(_) => vec![sql.to_owned()],
    }
}

/// How deeply a query may nest parentheses and brackets. The SQL parser backtracks at every
/// level of nested calls (`f(f(f(...`), doubling its time per level: 16 levels parse in
/// about 0.1 s, 24 took 26 s on this machine, so a deeper query is refused before it is
/// parsed (real queries, psql's and JDBC's catalog queries among them, nest far less).
pub const MAX_NESTING: usize = 16;

/// Refuses a text nesting parentheses or brackets deeper than [`MAX_NESTING`] (outside
/// quotes and comments), before any parsing.
pub fn too_deep(sql: &str) -> Result<(), SqlError> {
    let b = sql.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    if deepest > MAX_NESTING {
        return Err(SqlError::Invalid(format!(
            "the query nests parentheses {deepest} levels deep; at most {MAX_NESTING} are accepted"
        )));
    }
    Ok(())
}

/// Queries only: DDL (which could read or write files), DML and statements are refused.
fn options() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// What a DataFusion error means to the caller (through its context and shared wrappers).
fn classify(e: &DataFusionError, memory_bytes: usize) -> SqlError {
    let text = e.strip_backtrace();
    match e {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => {
            if text.contains("not supported because") || text.contains("DDL not supported") {
                SqlError::NotAllowed(text)
            } else {
                SqlError::Invalid(text)
            }
        }
        DataFusionError::ResourcesExhausted(detail) => {
            SqlError::Memory { mib: memory_bytes >> 20, detail: detail.clone() }
        }
        DataFusionError::External(inner) => match inner.downcast_ref::<SqlError>() {
            Some(SqlError::Internal(s)) => SqlError::Internal(s.clone()),
            Some(SqlError::Failed(s)) => SqlError::Failed(s.clone()),
            _ => SqlError::Failed(text),
        },
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => classify(inner, memory_bytes),
        DataFusionError::Shared(inner) => classify(inner, memory_bytes),
        _ => SqlError::Failed(text),
    }
}

#[cfg(test)]
mod tests;
