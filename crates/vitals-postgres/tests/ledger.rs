//! The file-drop ledger's contract (`vitals_storage::ledger::conformance`) against a real
//! PostgreSQL (`VITALS_TEST_POSTGRES`, started by scripts/test), shared by two nodes.

mod support;

use vitals_postgres::{PgLedger, Pool};
use vitals_storage::ledger::Ledger;
use vitals_storage::ledger::conformance::{self, Fixture};

struct Pg {
    url: String,
    schema: String,
}

impl Fixture for Pg {
    fn open(&self) -> Box<dyn Ledger> {
        let pool = Pool::connect(&self.url, &self.schema, 2).expect("connect");
        Box::new(PgLedger::open(pool, &self.schema).expect("open"))
    }

    fn shared(&self) -> bool {
        true
    }
}

#[test]
fn the_postgres_tables_keep_the_ledger_contract() {
    conformance::run_all(&|| Box::new(Pg { url: support::postgres_url(), schema: support::fresh_schema() }));
}
