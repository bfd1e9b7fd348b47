//! SQL that creates tables over the lake as it is, for engines that read Hive-partitioned
//! Parquet: DuckDB, Amazon Athena (Presto/Trino DDL) and Apache Spark SQL.
//!
//! The lake holds flushed samples only (buffered ones are seen by SQL inside Vitals), and a
//! day partition may hold overlapping segments until compaction merges them (days that
//! ended over an hour ago are merged into one segment): engines reading the files see the
//! rows as stored, without Vitals' last-write-wins resolution of such overlaps.

use std::fmt::Write as _;

use vitals_core::Catalog;

/// An engine whose DDL can be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    DuckDb,
    Athena,
    Spark,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s.to_ascii_lowercase().as_str() {
            "duckdb" => Ok(Engine::DuckDb),
            "athena" | "trino" | "presto" => Ok(Engine::Athena),
            "spark" | "databricks" => Ok(Engine::Spark),
            other => Err(format!("no DDL for {other:?}; use duckdb, athena or spark")),
        }
    }
}

/// The metrics whose directories exist under `lake` (`metric=<code>`), in catalog order.
pub fn metrics_in(lake: &std::path::Path) -> Vec<&'static str> {
    let present: std::collections::BTreeSet<String> = std::fs::read_dir(lake)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("metric=")).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Catalog::standard().all().map(|(_, m)| m.code).filter(|c| present.contains(*c)).collect()
}

/// The DDL for `engine` over the lake at `location` (a path or URL without a trailing
/// slash), with one table per metric (each keeps its own decimal scale), one per metric of
/// the archive (`archive/`: months compacted across days, partitioned by year, month and
/// patient) and a `samples` view over all of them with values as doubles.
pub fn ddl(engine: Engine, location: &str, metrics: &[&str], archived: &[&str]) -> String {
    let catalog = Catalog::standard();
    let location = location.trim_end_matches('/');
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Tables over the Vitals lake at {location} ({} metrics, {} with archived months).\n-- Flushed samples only; see docs/analytics.md.",
        metrics.len(),
        archived.len()
    );
    if engine == Engine::DuckDb {
        // DuckDB reads every metric at once; partition types are fixed so that a patient
        // id such as 0001 stays text.
        let mut parts = Vec::new();
        if !metrics.is_empty() {
            parts.push(format!(
                "SELECT patient, metric, time, CAST(value AS DOUBLE) AS value, device, sample_id, source,\n       make_date(year, month, day) AS day\nFROM read_parquet('{location}/metric=*/year=*/month=*/day=*/patient=*/*.parquet',\n    hive_partitioning = true, union_by_name = true,\n    hive_types = {{'metric': VARCHAR, 'year': INTEGER, 'month': INTEGER, 'day': INTEGER, 'patient': VARCHAR}})"
            ));
        }
        if !archived.is_empty() {
            parts.push(format!(
                "SELECT patient, metric, time, CAST(value AS DOUBLE) AS value, device, sample_id, source,\n       CAST(timezone('UTC', time) AS DATE) AS day\nFROM read_parquet('{location}/archive/metric=*/year=*/month=*/patient=*/*.parquet',\n    hive_partitioning = true, union_by_name = true,\n    hive_types = {{'metric': VARCHAR, 'year': INTEGER, 'month': INTEGER, 'patient': VARCHAR}})"
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "CREATE OR REPLACE VIEW samples AS\n{};", parts.join("\nUNION ALL BY NAME\n"));
        }
        return out;
    }
    let mut parts = Vec::new();
    let tables = metrics.iter().map(|c| (*c, false)).chain(archived.iter().map(|c| (*c, true)));
    for (code, archive) in tables {
        let Some(m) = catalog.by_code(code) else { continue };
        let (table, dir, keys, spark_keys) = if archive {
            (
                format!("vitals_{code}_archive"),
                format!("archive/metric={code}"),
                "`year` int, `month` int, `patient` string",
                "`year`, `month`, `patient`",
            )
        } else {
            (
                format!("vitals_{code}"),
                format!("metric={code}"),
                "`year` int, `month` int, `day` int, `patient` string",
                "`year`, `month`, `day`, `patient`",
            )
        };
        match engine {
            Engine::Athena => {
                let _ = writeln!(
                    out,
                    "CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n  `time` timestamp,\n  `value` decimal(18,{scale}),\n  `device` string,\n  `sample_id` string,\n  `source` string)\nPARTITIONED BY ({keys})\nSTORED AS PARQUET\nLOCATION '{location}/{dir}/';\nMSCK REPAIR TABLE {table};",
                    scale = m.scale
                );
            }
            Engine::Spark => {
                let _ = writeln!(
                    out,
                    "CREATE TABLE IF NOT EXISTS {table} (\n  `time` timestamp,\n  `value` decimal(18,{scale}),\n  `device` string,\n  `sample_id` string,\n  `source` string,\n  {keys})\nUSING parquet\nPARTITIONED BY ({spark_keys})\nLOCATION '{location}/{dir}';\nMSCK REPAIR TABLE {table};",
                    scale = m.scale
                );
            }
            Engine::DuckDb => {}
        }
        parts.push(format!(
            "SELECT patient, '{code}' AS metric, `time`, CAST(`value` AS double) AS `value`, device, sample_id, source FROM {table}"
        ));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "CREATE OR REPLACE VIEW samples AS\n{};", parts.join("\nUNION ALL\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_metric_keeps_its_scale_and_a_view_joins_them() {
        let a = ddl(Engine::Athena, "s3://b/lake/", &["heart_rate", "skin_temperature"], &["heart_rate"]);
        assert!(a.contains("LOCATION 's3://b/lake/metric=heart_rate/';"), "{a}");
        assert!(a.contains("`value` decimal(18,1)"), "{a}");
        assert!(a.contains("`value` decimal(18,2)"), "{a}");
        assert!(a.contains("MSCK REPAIR TABLE vitals_skin_temperature;"), "{a}");
        assert!(a.contains("UNION ALL\nSELECT patient, 'skin_temperature' AS metric"), "{a}");
        let s = ddl(Engine::Spark, "/data/lake", &["heart_rate"], &[]);
        assert!(s.contains("USING parquet\nPARTITIONED BY (`year`, `month`, `day`, `patient`)"), "{s}");
        let d = ddl(Engine::DuckDb, "/data/lake", &["heart_rate"], &["eda"]);
        assert!(d.contains("'patient': VARCHAR"), "{d}");
        assert!(
            d.contains("UNION ALL BY NAME")
                && d.contains("/data/lake/archive/metric=*/year=*/month=*/patient=*/*.parquet"),
            "{d}"
        );
        assert!(
            a.contains("CREATE EXTERNAL TABLE IF NOT EXISTS vitals_heart_rate_archive")
                && a.contains("LOCATION 's3://b/lake/archive/metric=heart_rate/';"),
            "{a}"
        );
        assert!(a.contains("PARTITIONED BY (`year` int, `month` int, `patient` string)"), "{a}");
        assert!(a.contains("FROM vitals_heart_rate_archive"), "{a}");
        assert!("trino".parse::<Engine>().is_ok() && "oracle".parse::<Engine>().is_err());
    }
}
