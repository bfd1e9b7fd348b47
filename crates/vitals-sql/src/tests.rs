//! The engine over a real store: buffered and flushed rows, last write wins, scopes that
//! hold in every SQL shape, refused statements, limits, pruning, and a property test of
//! aggregates against a naive model across flushes and compactions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use proptest::prelude::*;
use vitals_core::time::{MS_PER_DAY, MS_PER_HOUR};
use vitals_core::{Catalog, DeviceId, ManualClock, PatientId, Sample};
use vitals_storage::event_store::EventStore;
use vitals_storage::{Store, StoreConfig};

use super::*;
use crate::filters::Keys;
use crate::samples::SeriesTable;
use datafusion::common::tree_node::TreeNode;

const BASE: i64 = 1_750_000_000_000 - 1_750_000_000_000 % MS_PER_DAY;

struct Fixed(Vec<PatientRecord>);

impl Records for Fixed {
    fn patients(&self) -> Result<Vec<PatientRecord>, String> {
        Ok(self.0.clone())
    }
    fn alerts(&self) -> Vec<Alert> {
        Vec::new()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    engine: Engine,
}

fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { background: false, compact_min_segments: 2, ..StoreConfig::default() };
    let store = Arc::new(
        Store::open(&dir.path().join("data"), cfg, Arc::new(ManualClock::new(BASE + 10 * MS_PER_DAY))).expect("open"),
    );
    let events = Arc::new(EventStore::open(&dir.path().join("events")).expect("events"));
    let records = Arc::new(Fixed(vec![
        PatientRecord {
            patient: "p1".into(),
            registered_ms: Some(BASE),
            teams: vec!["north".into()],
            cohorts: vec!["c1".into()],
        },
        PatientRecord {
            patient: "p2".into(),
            registered_ms: Some(BASE),
            teams: vec!["south".into()],
            cohorts: vec!["c1".into()],
        },
    ]));
    let engine = Engine::new(Sources { store: store.clone(), events, records }, limits);
    Fixture { _dir: dir, store, engine }
}

fn sample(p: &str, m: &str, d: Option<&str>, t: i64, v: f64) -> Sample {
    Sample {
        patient: PatientId::new(p).expect("id"),
        metric: Catalog::standard().id(m).expect("metric"),
        time_ms: t,
        value: v,
        device: d.map(|d| DeviceId::new(d).expect("id")),
        id: None,
        source: vitals_core::Source::Native,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn query(f: &Fixture, sql: &str, scope: &Scope) -> Result<Answer, SqlError> {
    rt().block_on(f.engine.query(sql, scope))
}

/// The answer as rows of display strings.
fn rows(a: &Answer) -> Vec<Vec<String>> {
    let v = answer::json(a).expect("json");
    v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array().expect("row").iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)).collect()
        })
        .collect()
}

fn only(scope: &[&str]) -> Scope {
    Scope::Patients(scope.iter().map(|s| s.to_string()).collect())
}

#[test]
fn buffered_and_flushed_rows_are_seen_and_the_last_write_wins() {
    let f = fixture(Limits::default());
    f.store.write(vec![sample("p1", "heart_rate", Some("w"), BASE + 1000, 60.0)]).expect("write");
    f.store.flush().expect("flush");
    // The same key again, still buffered: it replaces the flushed value.
    f.store.write(vec![sample("p1", "heart_rate", Some("w"), BASE + 1000, 61.0)]).expect("write");
    f.store.write(vec![sample("p1", "heart_rate", None, BASE + 2000, 70.0)]).expect("write");
    let a = query(&f, "SELECT patient, metric, time, value, unit, device FROM samples ORDER BY time", &Scope::All)
        .expect("query");
    assert_eq!(
        rows(&a),
        vec![
            vec!["p1", "heart_rate", "2025-06-15T00:00:01Z", "61.0", "bpm", "w"],
            vec!["p1", "heart_rate", "2025-06-15T00:00:02Z", "70.0", "bpm", "null"],
        ]
    );
}

#[test]
fn a_scope_holds_in_joins_subqueries_unions_and_every_table() {
    let f = fixture(Limits::default());
    f.store
        .write(vec![
            sample("p1", "heart_rate", None, BASE + 1000, 60.0),
            sample("p2", "heart_rate", None, BASE + 1000, 90.0),
        ])
        .expect("write");
    let mine = only(&["p1"]);
    for sql in [
        "SELECT DISTINCT patient FROM samples",
        "SELECT patient FROM samples WHERE patient = 'p2' UNION SELECT patient FROM samples",
        "SELECT patient FROM patients",
        "SELECT s.patient FROM samples s JOIN patients p ON s.patient = p.patient",
        "SELECT patient FROM samples WHERE patient IN (SELECT patient FROM patients WHERE patient <> 'p1') OR patient = 'p1'",
        "SELECT patient FROM cohorts",
        "SELECT patient FROM rollups_hourly",
        "SELECT DISTINCT patient FROM (SELECT * FROM samples UNION ALL SELECT * FROM samples) t",
    ] {
        let a = query(&f, sql, &mine).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let seen: BTreeSet<String> = rows(&a).into_iter().flatten().collect();
        assert_eq!(seen, BTreeSet::from(["p1".to_owned()]), "{sql}");
    }
    let a = query(&f, "SELECT count(*) FROM samples WHERE patient = 'p2'", &mine).expect("query");
    assert_eq!(rows(&a), vec![vec!["0"]]);
    let a = query(&f, "SELECT count(DISTINCT patient) FROM samples", &Scope::All).expect("query");
    assert_eq!(rows(&a), vec![vec!["2"]]);
}

#[test]
fn only_queries_are_accepted() {
    let f = fixture(Limits::default());
    for sql in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO samples VALUES ('p', 'heart_rate', now(), 1, 'bpm', NULL)",
        "DROP TABLE samples",
        "SET datafusion.execution.batch_size = 1",
        "CREATE VIEW v AS SELECT * FROM samples",
    ] {
        match query(&f, sql, &Scope::All) {
            Err(SqlError::NotAllowed(_) | SqlError::Invalid(_)) => {}
            other => panic!("{sql}: {other:?}"),
        }
    }
    match query(&f, "SELEC 1", &Scope::All) {
        Err(SqlError::Invalid(m)) => assert!(m.contains("SELEC"), "{m}"),
        other => panic!("{other:?}"),
    }
    let a = query(&f, "SHOW TABLES", &Scope::All).expect("show tables");
    let names: BTreeSet<String> = rows(&a).into_iter().map(|r| r[2].clone()).collect();
    for t in ["samples", "rollups_hourly", "events", "alerts", "patients", "cohorts", "metrics"] {
        assert!(names.contains(t), "{t} in {names:?}");
    }
}

#[test]
fn limits_give_clear_errors() {
    let f = fixture(Limits { max_rows: 10, ..Limits::default() });
    match query(&f, "SELECT * FROM range(11)", &Scope::All) {
        Err(SqlError::TooManyRows { limit: 10 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(query(&f, "SELECT * FROM range(10)", &Scope::All).expect("ten").rows, 10);

    let f = fixture(Limits { memory_bytes: 1 << 20, ..Limits::default() });
    match query(
        &f,
        "SELECT v, count(*) FROM (SELECT value AS v FROM range(2000000)) GROUP BY v ORDER BY count(*) DESC LIMIT 1",
        &Scope::All,
    ) {
        Err(SqlError::Memory { mib: 1, .. }) => {}
        other => panic!("{other:?}"),
    }

    let f = fixture(Limits { timeout: Duration::from_millis(50), ..Limits::default() });
    match query(&f, "SELECT sum(a.value * b.value) FROM range(100000) a CROSS JOIN range(100000) b", &Scope::All) {
        Err(SqlError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }

    let f = Arc::new(fixture(Limits { max_concurrent: 1, ..Limits::default() }));
    let rt = rt();
    rt.block_on(async {
        let g = f.clone();
        let slow = tokio::spawn(async move {
            g.engine
                .query("SELECT sum(a.value * b.value) FROM range(100000) a CROSS JOIN range(100000) b", &Scope::All)
                .await
        });
        while f.engine.running() == 0 {
            tokio::task::yield_now().await;
        }
        match f.engine.query("SELECT 1", &Scope::All).await {
            Err(SqlError::Busy { running: 1 }) => {}
            other => panic!("{other:?}"),
        }
        slow.abort();
        let _ = slow.await;
        // The aborted query gave its slot back.
        assert_eq!(f.engine.running(), 0);
        assert_eq!(f.engine.query("SELECT 1", &Scope::All).await.expect("after").rows, 1);
    });
}

#[test]
fn scans_read_only_the_partitions_their_filters_name() {
    let f = fixture(Limits::default());
    let mut batch = Vec::new();
    for p in ["p1", "p2", "p3"] {
        for day in 0..5 {
            batch.push(sample(p, "heart_rate", None, BASE + day * MS_PER_DAY + 5, 60.0));
            batch.push(sample(p, "step_count", None, BASE + day * MS_PER_DAY + 5, 10.0));
        }
    }
    f.store.write(batch).expect("write");
    f.store.flush().expect("flush");
    let keys = Keys { patient: Some("patient"), metric: Some("metric"), time: Some("time") };
    let table = SeriesTable::samples(f.store.clone(), Arc::new(only(&["p1", "p2"])));
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("samples", Arc::new(SeriesTable::samples(f.store.clone(), Arc::new(Scope::All)))).expect("reg");
    let plan = rt()
        .block_on(ctx.sql(&format!(
            "SELECT * FROM samples WHERE patient IN ('p2', 'p3') AND metric = 'heart_rate' AND time >= to_timestamp_millis({}) AND time < to_timestamp_millis({})",
            BASE + MS_PER_DAY,
            BASE + 3 * MS_PER_DAY
        )))
        .expect("plan")
        .into_optimized_plan()
        .expect("optimized");
    let mut filters = Vec::new();
    plan.apply(|n| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(s) = n {
            filters.extend(s.filters.clone());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .expect("walk");
    let chunks = table.chunk_keys(&keys.wanted(&filters));
    // p3 is out of scope, p1 out of the filter, step_count out of the filter, days 0 and 3-4
    // outside the range.
    assert_eq!(
        chunks,
        vec![
            ("p2".to_owned(), "heart_rate", BASE + MS_PER_DAY),
            ("p2".to_owned(), "heart_rate", BASE + 2 * MS_PER_DAY)
        ]
    );
}

#[test]
fn hourly_rollups_match_the_series_query() {
    let f = fixture(Limits::default());
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.push(sample(
            "p1",
            "heart_rate",
            Some(["a", "b"][i % 2]),
            BASE + i as i64 * 37_000,
            50.0 + (i % 40) as f64,
        ));
    }
    f.store.write(batch[..300].to_vec()).expect("write");
    f.store.flush().expect("flush");
    f.store.write(batch[300..].to_vec()).expect("write");
    let a = query(
        &f,
        "SELECT hour, count, sum, min, max, mean, first, last FROM rollups_hourly ORDER BY hour",
        &Scope::All,
    )
    .expect("query");
    let expected = vitals_query::run(
        &f.store,
        &vitals_query::SeriesQuery {
            patient: PatientId::new("p1").expect("id"),
            metric: Catalog::standard().id("heart_rate").expect("m"),
            device: None,
            from: BASE,
            to: BASE + MS_PER_DAY,
            every_ms: Some(MS_PER_HOUR),
            aggs: vec![
                vitals_query::Agg::Count,
                vitals_query::Agg::Sum,
                vitals_query::Agg::Min,
                vitals_query::Agg::Max,
                vitals_query::Agg::Mean,
                vitals_query::Agg::First,
                vitals_query::Agg::Last,
            ],
        },
    )
    .expect("series");
    let vitals_query::QueryResult::Buckets(buckets) = expected else { panic!("buckets") };
    assert_eq!(a.rows, buckets.len());
    assert!(a.rows >= 5);
    let b = &a.batches.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(*b, a.rows);
    let mut i = 0;
    for batch in &a.batches {
        let count = batch.column(1).as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
        let sum = batch.column(2).as_primitive::<Float64Type>();
        for r in 0..batch.num_rows() {
            assert_eq!(count.value(r) as f64, buckets[i].values[0]);
            assert!((sum.value(r) - buckets[i].values[1]).abs() < 1e-9);
            i += 1;
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(usize, usize, usize, i64, i32)>),
    Flush,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0..2usize, 0..2usize, 0..3usize, 0..(3 * 24 * 60i64), 40..200i32), 1..40).prop_map(Op::Write),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
    ]
}

const PATIENTS: [&str; 2] = ["p1", "p2"];
const METRICS: [&str; 2] = ["heart_rate", "step_count"];
const DEVICES: [Option<&str>; 3] = [None, Some("a"), Some("b")];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Per (patient, metric) count, sum, min and max over a random time window agree with a
    /// model of last-write-wins samples, whatever was flushed or compacted.
    #[test]
    fn aggregates_agree_with_a_model(ops in prop::collection::vec(op(), 1..12), lo in 0..(3 * 24 * 60i64), len in 1..(3 * 24 * 60i64)) {
        let f = fixture(Limits::default());
        let mut model: BTreeMap<(usize, usize, usize, i64), f64> = BTreeMap::new();
        for o in ops {
            match o {
                Op::Write(w) => {
                    let mut batch = Vec::new();
                    for (p, m, d, minute, v) in w {
                        let t = BASE + minute * 60_000;
                        model.insert((p, m, d, t), f64::from(v));
                        batch.push(sample(PATIENTS[p], METRICS[m], DEVICES[d], t, f64::from(v)));
                    }
                    f.store.write(batch).expect("write");
                }
                Op::Flush => f.store.flush().expect("flush"),
                Op::Compact => { f.store.compact().expect("compact"); }
            }
        }
        let (from, to) = (BASE + lo * 60_000, BASE + (lo + len) * 60_000);
        let sql = format!(
            "SELECT patient, metric, count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi FROM samples \
             WHERE time >= to_timestamp_millis({from}) AND time < to_timestamp_millis({to}) GROUP BY patient, metric ORDER BY patient, metric"
        );
        let a = query(&f, &sql, &Scope::All).expect("query");
        let mut want: BTreeMap<(String, String), (i64, f64, f64, f64)> = BTreeMap::new();
        for ((p, m, _, t), v) in &model {
            if *t >= from && *t < to {
                let e = want.entry((PATIENTS[*p].to_owned(), METRICS[*m].to_owned())).or_insert((0, 0.0, f64::MAX, f64::MIN));
                e.0 += 1;
                e.1 += v;
                e.2 = e.2.min(*v);
                e.3 = e.3.max(*v);
            }
        }
        let mut got: BTreeMap<(String, String), (i64, f64, f64, f64)> = BTreeMap::new();
        for b in &a.batches {
            let (p, m) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
            let n = b.column(2).as_primitive::<Int64Type>();
            let (s, lo, hi) = (b.column(3).as_primitive::<Float64Type>(), b.column(4).as_primitive::<Float64Type>(), b.column(5).as_primitive::<Float64Type>());
            for r in 0..b.num_rows() {
                prop_assert!(!n.is_null(r));
                got.insert((p.value(r).to_owned(), m.value(r).to_owned()), (n.value(r), s.value(r), lo.value(r), hi.value(r)));
            }
        }
        prop_assert_eq!(got.len(), want.len());
        for (k, w) in &want {
            let g = got.get(k).expect("group");
            prop_assert_eq!(g.0, w.0);
            prop_assert!((g.1 - w.1).abs() < 1e-6);
            prop_assert_eq!(g.2, w.2);
            prop_assert_eq!(g.3, w.3);
        }
    }
}

/// The PostgreSQL catalog describes the session's tables (psql's `\dt` and `\d samples`
/// queries as psql 15 sends them), and a query that takes the catalog path is still held to
/// the caller's scope and to queries only.
#[test]
fn the_pg_catalog_lists_tables_and_columns_and_changes_no_rule() {
    let f = fixture(Limits::default());
    f.store
        .write(vec![
            sample("p1", "heart_rate", None, BASE + 1000, 60.0),
            sample("p2", "heart_rate", None, BASE + 1000, 90.0),
        ])
        .expect("write");
    let dt = "SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\", pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2";
    let a = query(&f, dt, &only(&["p1"])).expect("\\dt");
    let names: Vec<String> = rows(&a).into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(names, ["alerts", "cohorts", "events", "metrics", "patients", "rollups_hourly", "samples"]);
    let columns = "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation, a.attidentity, a.attgenerated FROM pg_catalog.pg_attribute a WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(samples)$' COLLATE pg_catalog.default) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
    let a = query(&f, columns, &Scope::All).expect("\\d samples");
    let got: Vec<(String, String, String)> =
        rows(&a).into_iter().map(|r| (r[0].clone(), r[1].clone(), r[3].clone())).collect();
    let want = [
        ("patient", "text", "true"),
        ("metric", "text", "true"),
        ("time", "timestamp with time zone", "true"),
        ("value", "double precision", "true"),
        ("unit", "text", "true"),
        ("device", "text", "false"),
        ("source", "text", "false"),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));
    // The catalog path plans the same tables with the same row filter.
    let a = query(&f, "SELECT DISTINCT patient FROM samples WHERE version() LIKE 'PostgreSQL%'", &only(&["p1"]))
        .expect("scoped");
    assert_eq!(rows(&a), vec![vec!["p1"]]);
    for sql in [
        "CREATE TABLE pg_x AS SELECT 1",
        "DELETE FROM pg_catalog.pg_class",
        "COPY (SELECT * FROM pg_catalog.pg_class) TO '/tmp/x.csv'",
    ] {
        let e = query(&f, sql, &Scope::All).expect_err(sql);
        assert!(matches!(e, SqlError::NotAllowed(_) | SqlError::Invalid(_)), "{sql}: {e:?}");
    }
}

/// The SQL parser doubles its time per level of nested calls: a query nested deeper than
/// MAX_NESTING is refused at once instead of holding a core for minutes; quotes and
/// comments do not count, and real nesting within the limit runs.
#[test]
fn deeply_nested_sql_is_refused_before_it_is_parsed() {
    let f = fixture(Limits::default());
    let deep = format!("SELECT {}1{}", "abs(".repeat(40), ")".repeat(40));
    let started = std::time::Instant::now();
    let e = query(&f, &deep, &Scope::All).expect_err("refused");
    assert!(matches!(&e, SqlError::Invalid(m) if m.contains("40 levels")), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(split_statements(&deep), vec![deep.clone()], "split leaves it whole for the error");
    let fine =
        format!("SELECT {}1{} AS x -- (((((((((((((((((((((", "abs(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    let a = query(&f, &fine, &Scope::All).expect("within the limit");
    assert_eq!(rows(&a), vec![vec!["1"]]);
    assert!(too_deep("SELECT '((((((((((((((((((((((((((((((' AS s").is_ok());
}
