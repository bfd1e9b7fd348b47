//! Cluster mode's metadata on PostgreSQL: what the embedded mode keeps in SQLite and small
//! JSON logs, shared here by every node of a cluster.
//!
//! [`PgMeta`] implements `vitals_meta::MetaStore` (people, tokens, teams, patients,
//! sessions, device certificates, the hash-chained audit log) and passes the same
//! conformance checks as the SQLite store. Every table lives in one PostgreSQL schema
//! (`vitals` by default), so an installation can share a database; [`schema`] creates and
//! migrates it under an advisory lock, so nodes starting together do not race.
//!
//! [`PgVault`] keeps the identity vault's sealed records (`vitals_vault::Backend`), and
//! passes the vault's conformance checks too.
//!
//! [`PgLake`] is the shared lake's catalog (`vitals_storage::remote::SharedLake`): the
//! settled days each writer published, and the objects waiting for deletion.
//!
//! [`PgLedger`] is the file-drop ledger (`vitals_storage::ledger::Ledger`): a file
//! dropped on any node is a duplicate on every other; nodes watching one shared directory
//! claim a file before processing it.
//!
//! [`Leases`] decides which node owns which patient bucket (each patient's rules run on
//! exactly one node at a time), on the database's clock, with an epoch per tenure as a
//! fencing token.
//!
//! This is the only crate that links a PostgreSQL driver (`postgres`, rust-postgres'
//! synchronous client).

pub mod lake;
pub mod leases;
pub mod ledger;
mod meta;
pub mod pool;
pub mod records;
pub mod schema;
pub mod vault;

pub use lake::PgLake;
pub use leases::{Leases, Owned, Tenure};
pub use ledger::PgLedger;
pub use meta::PgMeta;
pub use pool::Pool;
pub use records::{Fence, Records};
pub use vault::PgVault;

use std::time::Duration;

/// Errors talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("postgres connection settings: {0}")]
    Config(String),
    #[error(
        "{0:?} is not a PostgreSQL schema name this accepts (letters, digits and _, not starting with a digit, at most 63)"
    )]
    Identifier(String),
    #[error("{target}: {source}")]
    Db {
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{target}: no connection free after {waited:?}")]
    Busy { target: String, waited: Duration },
    #[error("a PostgreSQL call panicked")]
    Panicked,
    #[error(
        "{target}: node {node} no longer holds bucket(s) {buckets:?} (another node took them over); nothing written"
    )]
    Fenced { target: String, node: String, buckets: Vec<u16> },
    #[error("{target}: schema version {found}, this build knows {known} (a newer Vitals wrote it?)")]
    NewerSchema { target: String, found: i32, known: i32 },
}

impl PgError {
    pub(crate) fn db(target: &str, source: postgres::Error) -> PgError {
        PgError::Db { target: target.to_owned(), source }
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&postgres::error::SqlState> {
        match self {
            PgError::Db { source, .. } => source.code(),
            _ => None,
        }
    }
}

/// Checks a schema name, which is put into SQL and connection options as is.
pub(crate) fn check_identifier(name: &str) -> Result<(), PgError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok { Ok(()) } else { Err(PgError::Identifier(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["vitals", "vitals_test_1", "_x"] {
            assert!(super::check_identifier(good).is_ok(), "{good}");
        }
        for bad in ["", "1x", "Vitals", "a-b", "a;drop", "a b", &"x".repeat(64)] {
            assert!(super::check_identifier(bad).is_err(), "{bad}");
        }
    }
}
