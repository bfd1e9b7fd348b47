//! The PostgreSQL the tests use: `scripts/test` starts one on 127.0.0.1 and exports its
//! connection string as `VITALS_TEST_POSTGRES`. Each test works in a schema of its own.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) fn postgres_url() -> String {
    std::env::var("VITALS_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("VITALS_TEST_POSTGRES is not set: run the tests with ./scripts/test, which starts PostgreSQL")
    })
}

/// A schema name no other test (of this or another process) uses.
pub(crate) fn fresh_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
