//! The lake's shared checks (`vitals_storage::remote::conformance`) on a cluster: two
//! nodes' stores sharing one bucket through the catalog in a real PostgreSQL (started by
//! scripts/test), the same checks one node passes in `vitals-storage`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use vitals_postgres::{PgLake, Pool};
use vitals_storage::remote::SharedLake;
use vitals_storage::remote::conformance::{self, Fixture, Writer};

struct TwoNodes {
    pool: Arc<Pool>,
    schema: String,
}

impl Fixture for TwoNodes {
    fn nodes(&self) -> usize {
        2
    }

    fn shared(&self, node: usize, writer: Arc<Writer>) -> Option<Arc<dyn SharedLake>> {
        let lake = PgLake::open(
            Arc::clone(&self.pool),
            &self.schema,
            Duration::ZERO,
            Arc::new(move |_: &str| writer.is(node)),
            Arc::new(move || node == 0),
        )
        .expect("open the catalog");
        Some(Arc::new(lake))
    }
}

#[test]
fn a_cluster_sharing_one_bucket_keeps_the_lake_contract() {
    conformance::run_all(&|| {
        let schema = support::fresh_schema();
        let pool = Pool::connect(&support::postgres_url(), &schema, 4).expect("connect");
        Box::new(TwoNodes { pool, schema })
    });
}
