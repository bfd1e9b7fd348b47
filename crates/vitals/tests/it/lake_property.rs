//! A property test of the read path over every tier: random writes (overwriting times
//! often), some left buffered, some flushed, some compacted, some compacted across days
//! into archive segments (October, a month that ended), some uploaded to S3 (moto) and
//! dropped from the local disk; random aggregates over random ranges agree between SQL,
//! the REST API and a model of last-write-wins; once everything is compacted, DuckDB
//! reading the same lake (the local files plus the bucket's objects) agrees too.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;

use crate::bucket::{S3, python, s3_lake, start_moto};
use crate::harness::{ADMIN, NOW, Rng, TestServer};

const CASES: u64 = 4;
const ROUNDS: u64 = 6;

type Model = BTreeMap<(String, &'static str, i64), f64>;
/// (patient, metric) -> (count, sum)
type Sums = BTreeMap<(String, String), (u64, f64)>;

fn model_sums(model: &Model, lo: i64, hi: i64) -> Sums {
    let mut out = Sums::new();
    for ((p, m, t), v) in model {
        if *t >= lo && *t < hi {
            let e = out.entry((p.clone(), (*m).to_owned())).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    out
}

fn sql_sums(server: &TestServer, lo: i64, hi: i64) -> Sums {
    let q = format!(
        "SELECT patient, metric, count(*) AS n, sum(value) AS s FROM samples \
         WHERE time >= to_timestamp_millis({lo}) AND time < to_timestamp_millis({hi}) \
         GROUP BY patient, metric ORDER BY patient, metric"
    );
    let r = server.post("/api/v1/sql", Some(ADMIN), "application/json", json!({ "sql": q }).to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let s = |i: usize| row[i].as_str().expect("text").to_owned();
            ((s(0), s(1)), (row[2].as_u64().expect("n"), row[3].as_f64().expect("s")))
        })
        .collect()
}

fn rest_sums(server: &TestServer, keys: &[(String, String)], lo: i64, hi: i64) -> Sums {
    let mut out = Sums::new();
    for (p, m) in keys {
        let r = server.get(&format!("/api/v1/patients/{p}/series/{m}?time_format=ms&from={lo}&to={hi}"), Some(ADMIN));
        assert_eq!(r.status, 200, "{}", r.body);
        let pts = r.json()["points"].as_array().expect("points").clone();
        if !pts.is_empty() {
            let sum = pts.iter().map(|x| x["value"].as_f64().expect("v")).sum();
            out.insert((p.clone(), m.clone()), (pts.len() as u64, sum));
        }
    }
    out
}

fn assert_same(what: &str, got: &Sums, want: &Sums) {
    let keys = |s: &Sums| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: the same series");
    for (k, (n, s)) in want {
        let (gn, gs) = got[k];
        assert_eq!(gn, *n, "{what}: count of {k:?}");
        assert!((gs - s).abs() <= 1e-6 * s.abs().max(1.0), "{what}: sum of {k:?}: {gs} vs {s}");
    }
}

/// DuckDB over the local lake and the bucket's objects, gathered in one directory.
const DUCKDB: &str = r#"
import json, os, shutil, sys
import boto3, duckdb
port, bucket, local, work, lo, hi = sys.argv[1:7]
shutil.copytree(local, work, dirs_exist_ok=True)
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
prefix = "vitals/lake/"
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        dest = os.path.join(work, o["Key"][len(prefix):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        s3.download_file(bucket, o["Key"], dest)
# Day partitions and archived months: two layouts, read as `vitals lake ddl` does.
import glob
parts = []
for pattern in [f"{work}/metric=*/year=*/month=*/day=*/patient=*/*.parquet",
                f"{work}/archive/metric=*/year=*/month=*/patient=*/*.parquet"]:
    if glob.glob(pattern):
        parts.append(f"SELECT patient, metric, time, value FROM read_parquet('{pattern}', "
                     f"hive_partitioning = true, union_by_name = true, "
                     f"hive_types = {{'metric': VARCHAR, 'patient': VARCHAR, 'year': INTEGER, 'month': INTEGER}})")
rows = duckdb.sql(
    f"SELECT patient, metric, count(*), sum(CAST(value AS DOUBLE)) "
    f"FROM ({' UNION ALL BY NAME '.join(parts)}) "
    f"WHERE epoch_ms(time) >= {lo} AND epoch_ms(time) < {hi} GROUP BY ALL ORDER BY ALL"
).fetchall()
print(json.dumps([[r[0], r[1], r[2], r[3]] for r in rows]))
"#;

fn duckdb_sums(server: &TestServer, port: &str, bucket: &str, lo: i64, hi: i64) -> Sums {
    let work = tempfile::tempdir().expect("tmp");
    let local = server.data_dir().join("lake");
    let out = Command::new("python3")
        .args(["-c", DUCKDB, port, bucket])
        .arg(&local)
        .arg(work.path().join("lake"))
        .args([lo.to_string(), hi.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().expect("text").to_owned();
            ((s(0), s(1)), (r[2].as_u64().expect("n"), r[3].as_f64().expect("s")))
        })
        .collect()
}

/// 2025-10-25T00:00:00Z: days of October, a month that ended (NOW is 2025-11-22), are
/// compacted across days into archive segments.
const OCT_25: i64 = 1_761_350_400_000;

/// A sample time: one of the last five days, or of the last days of October.
fn random_time(rng: &mut Rng) -> i64 {
    let day = if rng.below(3) == 0 {
        OCT_25 + rng.below(7) as i64 * MS_PER_DAY
    } else {
        NOW - (1 + rng.below(5) as i64) * MS_PER_DAY
    };
    // Few distinct times per day, so that later writes overwrite earlier ones.
    day + rng.below(40) as i64 * 60_000
}

fn random_range(rng: &mut Rng) -> (i64, i64) {
    if rng.below(3) == 0 {
        return (0, NOW + 1);
    }
    let lo = random_time(rng) - rng.below(2) as i64 * MS_PER_DAY + rng.below(3000) as i64 * 1000;
    (lo, lo + (1 + rng.below(3 * 86_400) as i64) * 1000)
}

fn check(server: &TestServer, model: &Model, rng: &mut Rng, case: u64, round: u64) {
    for _ in 0..3 {
        let (lo, hi) = random_range(rng);
        let want = model_sums(model, lo, hi);
        let what = format!("case {case} round {round} [{lo}, {hi})");
        assert_same(&format!("SQL, {what}"), &sql_sums(server, lo, hi), &want);
        let keys: Vec<(String, String)> = model
            .keys()
            .map(|(p, m, _)| (p.clone(), (*m).to_owned()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_same(&format!("REST, {what}"), &rest_sums(server, &keys, lo, hi), &want);
    }
}

#[test]
fn sql_rest_duckdb_and_a_model_agree_over_buffer_segments_compaction_and_s3() {
    let moto = start_moto();
    let port = moto.port.to_string();
    let mut tiers_seen = (false, false, false);
    for case in 0..CASES {
        let bucket = format!("prop-{case}");
        python(S3, &[&port, "create", &bucket]);
        let server = TestServer::with_config(|c| {
            s3_lake(c, moto.port, &bucket);
            c.lake.upload_after = vitals_core::DurationMs(1);
            // Days that ended over 2 days ago leave the local disk; younger ones stay hot.
            c.lake.hot_days = 2;
            c.storage.compact_min_segments = 2;
        });
        let mut rng = Rng::new(case * 7919 + 1);
        let mut model = Model::new();
        for round in 0..ROUNDS {
            let n = 20 + rng.below(60);
            let mut items = Vec::new();
            for _ in 0..n {
                let p = format!("p{}", rng.below(3));
                let (metric, v) = if rng.below(2) == 0 {
                    ("heart_rate", (400 + rng.below(800)) as f64 / 10.0)
                } else {
                    ("step_count", rng.below(500) as f64)
                };
                let t = random_time(&mut rng);
                items.push(json!({"patient": p, "metric": metric, "time": t, "value": v}));
                model.insert((p, metric, t), v);
            }
            let r = server.ingest(&Value::Array(items));
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json()["accepted"], n, "{}", r.body);
            match rng.below(5) {
                0 => {}
                // Compaction across days now: October's days into archive segments.
                4 => {
                    server.store.flush().expect("flush");
                    server.store.compact_all().expect("compact all");
                }
                1 => server.store.flush().expect("flush"),
                2 => {
                    server.store.flush().expect("flush");
                    server.store.compact().expect("compact");
                }
                _ => {
                    server.store.flush().expect("flush");
                    server.store.compact().expect("compact");
                    server.store.tier().expect("upload");
                    server.store.tier().expect("cold");
                }
            }
            let segs = server.store.segments();
            tiers_seen.0 |= segs.iter().any(|s| s.cold);
            tiers_seen.1 |= segs.iter().any(|s| s.remote && !s.cold);
            tiers_seen.2 |= segs.iter().any(|s| s.is_archive());
            check(&server, &model, &mut rng, case, round);
        }
        // Everything into the lake, one segment per partition (October archived): DuckDB
        // sees what Vitals sees.
        server.store.flush().expect("flush");
        server.store.compact_all().expect("compact all");
        server.store.tier().expect("upload");
        server.store.tier().expect("cold");
        check(&server, &model, &mut rng, case, ROUNDS);
        for _ in 0..3 {
            let (lo, hi) = random_range(&mut rng);
            let want = model_sums(&model, lo, hi);
            assert_same(
                &format!("DuckDB, case {case} [{lo}, {hi})"),
                &duckdb_sums(&server, &port, &bucket, lo, hi),
                &want,
            );
        }
    }
    assert!(
        tiers_seen.0 && tiers_seen.1 && tiers_seen.2,
        "the cases reached cold and hot uploaded segments and archive segments: {tiers_seen:?}"
    );
}
