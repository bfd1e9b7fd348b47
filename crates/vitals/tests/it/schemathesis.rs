//! The HTTP API fuzzed from its own OpenAPI document by schemathesis (PyPI, installed by
//! `scripts/test`): generated requests, valid and not, against the running server with an
//! admin token and with a device token. No answer may be a 5xx, and every answer must be
//! one the document declares, with the declared content type and body schema. Unsigned
//! requests must be refused (`ignored_auth`).

use std::process::Command;

use crate::harness::{ADMIN, DEVICE, NOW, TestServer};

const PATIENT: &str = "p-schema";

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,ignored_auth";

/// Runs schemathesis with `token` over the operations `filters` select; panics with its
/// report unless every check passed.
fn fuzz(server: &TestServer, schema: &std::path::Path, token: &str, filters: &[&str]) {
    let mut cmd = Command::new("python3");
    // Its cache (`.schemathesis/`) goes beside the schema, in the test's temporary
    // directory, not into the source tree.
    cmd.current_dir(schema.parent().unwrap_or(std::path::Path::new(".")))
        .args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())", "run"])
        .arg(schema)
        .args(["--url", &server.url])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "8"])
        // One worker: hypothesis is not thread-safe in every version, and the run is
        // reproducible from its seed.
        .args(["--workers", "1", "--seed", "20261206"])
        // Signing out would end the token's session for the rest of the run.
        .args(["--exclude-path", "/api/v1/session"])
        .args(filters)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let out = cmd.output().expect("python3 runs");
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    // It ran: operations were tested (a run that tested nothing also exits 0).
    assert!(report.contains("Tested:"), "{report}");
}

#[test]
fn the_api_answers_every_generated_request_as_its_document_says() {
    let server = TestServer::start();
    // A patient with data, which the document's examples name, so that the reads of a
    // patient's data answer with data and not only with 404.
    let samples: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"patient": PATIENT, "metric": "heart_rate", "time": NOW - 200_000 + i * 1000, "value": 60 + i % 40}))
        .collect();
    assert_eq!(server.ingest(&serde_json::Value::Array(samples)).status, 200);
    let r = server.get("/api/v1/openapi.json", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut doc = r.json();
    for item in doc["paths"].as_object_mut().expect("paths").values_mut() {
        for op in item.as_object_mut().expect("item").values_mut() {
            for p in op.get_mut("parameters").and_then(|v| v.as_array_mut()).into_iter().flatten() {
                match (p["in"].as_str(), p["name"].as_str()) {
                    (Some("path"), Some("patient")) => p["example"] = PATIENT.into(),
                    (Some("path"), Some("metric")) => p["example"] = "heart_rate".into(),
                    _ => {}
                }
            }
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, doc.to_string()).expect("write");
    fuzz(&server, &schema, ADMIN, &[]);
    // A device token can only write samples: the ways in, with its binding applied.
    fuzz(&server, &schema, DEVICE, &["--include-tag", "ingest", "--include-tag", "nightscout"]);
}
