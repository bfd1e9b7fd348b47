//! The lake is plain Hive-partitioned Parquet: pyarrow and DuckDB (installed by
//! `scripts/test`) read it as it is and see exactly the stored samples.

use std::process::Command;

use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;

use crate::harness::{NOW, TestServer};

const READER: &str = r#"
import json, sys
import duckdb
import pyarrow.dataset as ds

lake = sys.argv[1]
out = {}
for metric in ("heart_rate", "eda"):
    t = ds.dataset(f"{lake}/metric={metric}", format="parquet", partitioning="hive").to_table()
    out[metric] = {
        "columns": sorted(t.column_names),
        "rows": sorted(
            [r["patient"], int(r["time"].timestamp() * 1000), float(r["value"]), r["device"]]
            for r in t.to_pylist()
        ),
    }
rows = duckdb.sql(
    f"SELECT metric, patient, epoch_ms(time), CAST(value AS DOUBLE), device, year, month, day "
    f"FROM read_parquet('{lake}/**/*.parquet', hive_partitioning = true, union_by_name = true) ORDER BY ALL"
).fetchall()
out["duckdb"] = [list(r) for r in rows]
print(json.dumps(out))
"#;

#[test]
fn the_lake_is_read_as_is_by_pyarrow_and_duckdb() {
    let server = TestServer::start();
    let mut items = Vec::new();
    let mut want: Vec<(String, String, i64, f64, Option<String>)> = Vec::new();
    for (p, d) in [("p-1", Some("w1")), ("p-2", None)] {
        for day in 0..2 {
            let t = NOW - day * MS_PER_DAY;
            items.push(json!({"patient": p, "metric": "heart_rate", "time": t, "value": 61, "device": d}));
            items.push(json!({"patient": p, "metric": "eda", "time": t, "value": 0.125, "device": d}));
            want.push(("heart_rate".into(), p.into(), t, 61.0, d.map(str::to_owned)));
            want.push(("eda".into(), p.into(), t, 0.125, d.map(str::to_owned)));
        }
    }
    assert_eq!(server.ingest(&Value::Array(items)).status, 200);
    server.store.flush().expect("flush");
    let lake = server.data_dir().join("lake");
    let out = Command::new("python3").arg("-c").arg(READER).arg(&lake).output().expect("python3 runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    for metric in ["heart_rate", "eda"] {
        assert_eq!(
            v[metric]["columns"],
            json!(["day", "device", "month", "patient", "sample_id", "source", "time", "value", "year"]),
            "pyarrow sees the file columns and the Hive partition columns"
        );
        let mut rows: Vec<Value> = want.iter().filter(|w| w.0 == metric).map(|w| json!([w.1, w.2, w.3, w.4])).collect();
        rows.sort_by_key(|r| r.to_string());
        let mut got = v[metric]["rows"].as_array().expect("rows").clone();
        got.sort_by_key(|r| r.to_string());
        assert_eq!(got, rows, "pyarrow rows of {metric}");
    }
    let duck = v["duckdb"].as_array().expect("duckdb rows");
    assert_eq!(duck.len(), want.len(), "DuckDB reads every metric's files at once");
    for r in duck {
        let (metric, patient, t, value) = (r[0].as_str(), r[1].as_str(), r[2].as_i64(), r[3].as_f64());
        assert!(
            want.iter().any(|w| Some(w.0.as_str()) == metric
                && Some(w.1.as_str()) == patient
                && Some(w.2) == t
                && Some(w.3) == value),
            "unexpected DuckDB row {r}"
        );
        let (y, m, d) = vitals_core::time::civil_day(t.expect("t"));
        assert_eq!((r[5].as_i64(), r[6].as_i64(), r[7].as_i64()), (Some(y as i64), Some(m as i64), Some(d as i64)));
    }
}
