//! The metadata store's contract (`vitals_meta::conformance`) against a real PostgreSQL,
//! which `scripts/test` starts on 127.0.0.1 and names in `VITALS_TEST_POSTGRES`.

mod support;

use std::sync::Arc;

use vitals_meta::conformance::{self, Fixture};
use vitals_meta::{MetaError, MetaStore};
use vitals_postgres::{PgMeta, Pool};

struct Pg {
    url: String,
    schema: String,
    raw: Arc<Pool>,
}

impl Fixture for Pg {
    fn open(&self) -> Arc<dyn MetaStore> {
        let pool = Pool::connect(&self.url, &self.schema, 4).expect("connect");
        Arc::new(PgMeta::open(pool, &self.schema).expect("open"))
    }

    fn raw(&self, sql: &str) {
        self.raw.with(|c| c.batch_execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn fresh() -> Box<dyn Fixture> {
    let url = support::postgres_url();
    let schema = support::fresh_schema();
    let raw = Pool::connect(&url, &schema, 1).expect("connect");
    Box::new(Pg { url, schema, raw })
}

#[test]
fn the_postgres_store_keeps_the_metadata_contract() {
    conformance::run_all(&fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_can_be_called_from_async_handlers_and_dropped_there() {
    // The server calls the store from tokio workers, where the client may not block.
    let f = fresh();
    let store = f.open();
    store
        .create_patient(&vitals_meta::Patient { id: "p-1".into(), created_ms: 1, created_by: "t".into() })
        .expect("create");
    assert_eq!(store.patients().expect("list").len(), 1);
    drop(store);
    drop(f);
}

#[test]
fn nodes_starting_together_create_the_schema_once() {
    let url = support::postgres_url();
    let schema = support::fresh_schema();
    let stores: Vec<Result<PgMeta, MetaError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (url, schema) = (&url, &schema);
                s.spawn(move || PgMeta::open(Pool::connect(url, schema, 1).expect("connect"), schema))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for s in &stores {
        assert!(s.is_ok(), "{:?}", s.as_ref().err());
    }
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let url = support::postgres_url();
    let schema = support::fresh_schema();
    let pool = Pool::connect(&url, &schema, 1).expect("connect");
    PgMeta::open(Arc::clone(&pool), &schema).expect("open");
    pool.with(|c| c.execute("UPDATE schema_versions SET version = 99 WHERE component = 'meta'", &[])).expect("bump");
    let err = PgMeta::open(pool, &schema).expect_err("newer");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let err = Pool::connect("host=127.0.0.1 port=1 user=nobody connect_timeout=2", "vitals", 1).expect_err("refused");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
