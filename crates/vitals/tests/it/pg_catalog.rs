//! Browsing Vitals as a PostgreSQL database: psql's `\dt` and `\d samples` (Debian's psql),
//! and the `DatabaseMetaData` calls that DBeaver and Metabase make through pgjdbc (Debian's
//! libpostgresql-jdbc-java, run by the JDK), as an analyst and as a clinician whose rows
//! stay within their team.

use std::process::Command;

use crate::pg::{OWN, PASSWORD, World, psql, world};

/// Runs `tests/jdbc/Meta.java` as `user`: its output lines.
fn jdbc(w: &World, user: &str, password: &str) -> Vec<String> {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jdbc/Meta.java");
    let url = format!("jdbc:postgresql://127.0.0.1:{}/vitals", w.port);
    let out = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar", source, &url, user, password])
        .output()
        .expect("java runs (scripts/test installs a JDK and libpostgresql-jdbc-java)");
    assert!(out.status.success(), "pgjdbc as {user}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn psql_lists_and_describes_the_tables() {
    let w = world();
    let (ok, out, err) = psql(&w, "ana", PASSWORD, "\\dt");
    assert!(ok, "{err}");
    let tables: Vec<&str> = out.lines().map(|l| l.split('|').nth(1).unwrap_or("")).collect();
    assert_eq!(tables, ["alerts", "cohorts", "events", "metrics", "patients", "rollups_hourly", "samples"], "{out}");
    assert!(out.lines().all(|l| l.starts_with("public|") && l.contains("|table|")), "{out}");
    let (ok, out, err) = psql(&w, "cli", PASSWORD, "\\d samples");
    assert!(ok, "{err}");
    let columns: Vec<(&str, &str, bool)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0], f.get(1).copied().unwrap_or(""), l.contains("not null"))
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("patient", "text", true),
            ("metric", "text", true),
            ("time", "timestamp with time zone", true),
            ("value", "double precision", true),
            ("unit", "text", true),
            ("device", "text", false),
            ("source", "text", false),
        ],
        "{out}"
    );
    let (ok, out, err) = psql(&w, "ana", PASSWORD, "\\dn");
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("public|")), "{out}");
    // What a schema browser asks first, as DBeaver's PostgreSQL driver asks it.
    for sql in [
        "SELECT current_schema(), session_user",
        "SELECT db.oid, db.* FROM pg_catalog.pg_database db WHERE datname = 'vitals'",
        "SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass ORDER BY nspname",
        "SELECT c.oid, c.*, d.description FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass WHERE c.relnamespace = 2200 AND c.relkind NOT IN ('i', 'I', 'c')",
        "SHOW search_path",
        "SELECT version()",
    ] {
        let (ok, out, err) = psql(&w, "ana", PASSWORD, sql);
        assert!(ok && !out.is_empty(), "{sql}: {err}");
    }
}

#[test]
fn pgjdbc_lists_schemas_tables_and_columns_as_dbeaver_and_metabase_ask() {
    let w = world();
    let ana = jdbc(&w, "ana", PASSWORD);
    let has = |lines: &[String], want: &str| lines.iter().any(|l| l == want);
    assert_eq!(ana[0], "product PostgreSQL 16", "{ana:?}");
    assert!(has(&ana, "schema public"), "{ana:?}");
    let tables: Vec<&String> = ana.iter().filter(|l| l.starts_with("table ")).collect();
    assert_eq!(tables.len(), 7, "{ana:?}");
    assert!(has(&ana, "table samples TABLE remarks=true"), "{ana:?}");
    // java.sql.Types: VARCHAR 12, TIMESTAMP 93, DOUBLE 8.
    let columns: Vec<&String> = ana.iter().filter(|l| l.starts_with("column ")).collect();
    assert_eq!(
        columns,
        [
            "column 1 patient 12 text NO",
            "column 2 metric 12 text NO",
            "column 3 time 93 timestamptz NO",
            "column 4 value 8 float8 NO",
            "column 5 unit 12 text NO",
            "column 6 device 12 text YES",
            "column 7 source 12 text YES",
        ],
        "{ana:?}"
    );
    assert!(has(&ana, "count 11"), "an analyst counts every patient's rows: {ana:?}");
    // A clinician browses the same catalog and counts only their team's patient (OWN).
    let cli = jdbc(&w, "cli", PASSWORD);
    assert!(has(&cli, "table samples TABLE remarks=true"), "{cli:?}");
    assert!(has(&cli, "count 6"), "{OWN} only: {cli:?}");
    // A token is a password too.
    let tok = jdbc(&w, "anyone", &w.token);
    assert!(has(&tok, "count 6"), "{tok:?}");
}
