//! FHIR R4 exports, validated with `fhir.resources` (PyPI; its R4B models: R4's technical
//! correction, the same Observation, Patient, Device and Bundle): a patient's Bundle over
//! HTTP, and the bulk NDJSON export of `vitals lake fhir` on a data directory.

use std::process::Command;

use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;

use crate::cli::vitals;
use crate::harness::{ADMIN, NOW, TestServer};

/// Validates resources with the R4B models; prints what it learnt as JSON.
const VALIDATE: &str = r#"
import json, sys
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.device import Device

kind, path = sys.argv[1], sys.argv[2]
models = {"Observation": Observation, "Patient": Patient, "Device": Device}
out = {"types": {}, "loinc": [], "ucum": [], "subjects": [], "devices": [], "ids": []}
def note(r):
    t = r.get_resource_type()
    out["types"][t] = out["types"].get(t, 0) + 1
    out["ids"].append(t + "/" + r.id)
    if t == "Observation":
        for c in r.code.coding:
            if c.system == "http://loinc.org":
                out["loinc"].append(c.code)
        out["ucum"].append(r.valueQuantity.code)
        out["subjects"].append(r.subject.reference)
        if r.device is not None:
            out["devices"].append(r.device.reference)
if kind == "bundle":
    b = Bundle.model_validate_json(open(path).read())
    assert b.type == "collection"
    for e in b.entry:
        note(e.resource)
else:
    import os
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    out["manifest"] = manifest
    for o in manifest["output"]:
        n = 0
        for line in open(os.path.join(path, o["url"])):
            r = models[o["type"]].model_validate_json(line)
            assert r.get_resource_type() == o["type"]
            note(r)
            n += 1
        assert n == o["count"], (o, n)
print(json.dumps(out))
"#;

fn validate(kind: &str, path: &std::path::Path) -> Value {
    let out = Command::new("python3").args(["-c", VALIDATE, kind]).arg(path).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// p-1: heart rate from a watch (flushed) and steps (buffered); p-2: EDA.
fn samples() -> Value {
    let mut items = Vec::new();
    for i in 0..20 {
        let t = NOW - 2 * MS_PER_DAY + i * 60_000;
        items.push(json!({"patient": "p-1", "metric": "heart_rate", "time": t, "value": 60 + i, "device": "watch:a1"}));
    }
    for i in 0..5 {
        items.push(
            json!({"patient": "p-1", "metric": "step_count", "time": NOW - 3_600_000 + i * 60_000, "value": 100}),
        );
    }
    items.push(json!({"patient": "p-2", "metric": "eda", "time": NOW - 60_000, "value": 1.25}));
    Value::Array(items)
}

#[test]
fn a_patients_bundle_is_valid_fhir_with_loinc_ucum_and_no_identity() {
    let server = TestServer::start();
    let r = server.ingest(&json!(samples().as_array().expect("items")[..20]));
    assert_eq!(r.status, 200, "{}", r.body);
    server.store.flush().expect("flush");
    let r = server.ingest(&json!(samples().as_array().expect("items")[20..]));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server
        .put_json("/api/v1/patients/p-1/identity", &json!({"name": "Ada Lovelace", "date_of_birth": "1815-12-10"}));
    assert_eq!(r.status, 200, "{}", r.body);

    let from = NOW - 7 * MS_PER_DAY;
    let r = server.get(&format!("/api/v1/patients/p-1/fhir?from={from}&to={NOW}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some("application/fhir+json"));
    assert!(!r.body.contains("Lovelace") && !r.body.contains("1815"), "no identity in the export");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, &r.body).expect("write");
    let v = validate("bundle", &path);
    assert_eq!(v["types"], json!({"Patient": 1, "Device": 1, "Observation": 25}), "{v}");
    let loinc: Vec<&str> = v["loinc"].as_array().expect("loinc").iter().filter_map(Value::as_str).collect();
    assert_eq!(loinc.iter().filter(|c| **c == "8867-4").count(), 20, "heart rate is LOINC 8867-4");
    assert_eq!(loinc.iter().filter(|c| **c == "55423-8").count(), 5, "steps are LOINC 55423-8");
    let ucum: Vec<&str> = v["ucum"].as_array().expect("ucum").iter().filter_map(Value::as_str).collect();
    assert!(ucum.iter().filter(|u| **u == "/min").count() == 20 && ucum.contains(&"1"), "{ucum:?}");
    assert!(v["subjects"].as_array().expect("s").iter().all(|s| s == "Patient/p-1"));
    let device_ref = &v["devices"][0];
    assert!(v["ids"].as_array().expect("ids").contains(device_ref), "the device reference resolves");
    assert_eq!(v["devices"].as_array().expect("d").len(), 20);

    // The range and metric narrow it; a patient with no data is 404.
    let r = server
        .get(&format!("/api/v1/patients/p-1/fhir?from={}&to={NOW}&metric=step_count", NOW - 7_200_000), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["entry"].as_array().expect("entry").len(), 6, "the Patient and 5 step counts");
    let r = server.get("/api/v1/patients/nobody/fhir", Some(ADMIN));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = server.get("/api/v1/patients/p-1/fhir?metric=nope", Some(ADMIN));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["code"], "unknown_metric");
}

#[test]
fn a_bundle_too_large_is_refused_with_the_way_out() {
    let server = TestServer::start();
    let items: Vec<Value> = (0..100_001)
        .map(|i| json!({"patient": "p-1", "metric": "heart_rate", "time": NOW - 200_000_000 + i * 1000, "value": 70}))
        .collect();
    let r = server.ingest(&Value::Array(items));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.get(&format!("/api/v1/patients/p-1/fhir?from={}&to={NOW}", NOW - 7 * MS_PER_DAY), Some(ADMIN));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "too_many_points", "{}", r.body);
    assert!(r.body.contains("vitals lake fhir"), "{}", r.body);
}

#[test]
fn the_bulk_export_writes_valid_ndjson_per_resource_type() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let nd = dir.path().join("s.ndjson");
    let lines: Vec<String> = samples().as_array().expect("items").iter().map(Value::to_string).collect();
    std::fs::write(&nd, lines.join("\n")).expect("write");
    let d = data.to_str().expect("utf8");
    let (ok, _, err) = vitals(&["--data-dir", d, "ingest", nd.to_str().expect("utf8"), "--quiet"]);
    assert!(ok, "{err}");
    let out = dir.path().join("export");
    let (ok, stdout, err) = vitals(&["--data-dir", d, "lake", "fhir", "--out", out.to_str().expect("utf8")]);
    assert!(ok, "{err}");
    assert!(stdout.contains("26 Observation"), "{stdout}");
    let v = validate("bulk", &out);
    assert_eq!(v["types"], json!({"Patient": 2, "Device": 1, "Observation": 26}), "{v}");
    let ids: Vec<&Value> = v["ids"].as_array().expect("ids").iter().collect();
    for s in v["subjects"].as_array().expect("subjects") {
        assert!(ids.contains(&s), "subject {s} resolves to a Patient of the export");
    }
    assert_eq!(v["manifest"]["requiresAccessToken"], true);

    // Narrowed to one patient and a time range.
    let out2 = dir.path().join("export2");
    let (ok, _, err) = vitals(&[
        "--data-dir",
        d,
        "lake",
        "fhir",
        "--out",
        out2.to_str().expect("utf8"),
        "--patient",
        "p-2",
        "--from",
        &(NOW - 3_600_000).to_string(),
    ]);
    assert!(ok, "{err}");
    let v = validate("bulk", &out2);
    assert_eq!(v["types"], json!({"Patient": 1, "Observation": 1}), "{v}");
    // The export is audited like any read of patient data.
    let (ok, audit, err) = vitals(&["--data-dir", d, "admin", "audit", "list", "--action", "fhir.export"]);
    assert!(ok, "{err}");
    assert_eq!(audit.matches("fhir.export").count(), 2, "{audit}");
}
