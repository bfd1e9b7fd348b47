//! The identity vault's contract (`vitals_vault::conformance`) against a real PostgreSQL
//! (`VITALS_TEST_POSTGRES`, started by scripts/test): what one node keeps in its SQLite
//! file, a cluster keeps here, and every node sees the same sealed records.

mod support;

use vitals_postgres::{PgVault, Pool};
use vitals_vault::Backend;
use vitals_vault::conformance::{self, Fixture};

struct Pg {
    url: String,
    schema: String,
}

impl Fixture for Pg {
    fn open(&self) -> Box<dyn Backend> {
        let pool = Pool::connect(&self.url, &self.schema, 2).expect("connect");
        Box::new(PgVault::open(pool, &self.schema).expect("open"))
    }
}

#[test]
fn the_postgres_tables_keep_the_vault_contract() {
    conformance::run_all(&|| Box::new(Pg { url: support::postgres_url(), schema: support::fresh_schema() }));
}

#[test]
fn an_identity_written_on_one_node_is_read_on_another_and_erased_for_both() {
    let f = Pg { url: support::postgres_url(), schema: support::fresh_schema() };
    let ring = || vitals_vault::Keyring::parse_env("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("ring");
    let a = vitals_vault::Vault::with_backend(f.open(), ring()).expect("node a");
    let b = vitals_vault::Vault::with_backend(f.open(), ring()).expect("node b");
    a.put("p-1", &conformance::ann(), 1).expect("put on a");
    assert_eq!(b.get("p-1").expect("get on b"), Some(conformance::ann()));
    assert!(b.delete("p-1").expect("erase on b"));
    assert_eq!(a.get("p-1").expect("get on a"), None);
}
