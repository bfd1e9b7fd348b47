//! FHIR Bulk Data `$export` over HTTP, driven by a Python client written to the
//! specification (requests from PyPI): kick-off with `Prefer: respond-async`, polling the
//! status URL from `Content-Location` (`202` with `X-Progress`, then the manifest), every
//! output file fetched with the token and each line validated with `fhir.resources`;
//! then `DELETE` on the status URL. Scopes: an analyst exports everyone, a clinician their
//! team's patient, a `Group` is a cohort; another principal never sees a job.

use std::process::Command;

use serde_json::{Value, json};
use vitals_core::time::MS_PER_DAY;
use vitals_server::auth::{NewToken, Role};

use crate::harness::{ADMIN, NOW, TestServer};

/// A Bulk Data client: prints {types, subjects, manifest, after_delete, no_token} as JSON.
const CLIENT: &str = r#"
import json, sys, time, requests
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.device import Device

base, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
auth = {"Authorization": "Bearer " + token}
r = requests.get(base + path, headers={**auth, "Accept": "application/fhir+json", "Prefer": "respond-async"})
assert r.status_code == 202, (r.status_code, r.text)
status = r.headers["Content-Location"]
assert status.startswith("http"), status
deadline = time.time() + 60
while True:
    s = requests.get(status, headers=auth)
    if s.status_code == 200:
        break
    assert s.status_code == 202, (s.status_code, s.text)
    assert "X-Progress" in s.headers and "Retry-After" in s.headers, s.headers
    assert time.time() < deadline, "the export did not finish"
    time.sleep(0.05)
manifest = s.json()
models = {"Observation": Observation, "Patient": Patient, "Device": Device}
out = {"types": {}, "subjects": [], "manifest": manifest}
for o in manifest["output"]:
    f = requests.get(o["url"], headers={**auth, "Accept": "application/fhir+ndjson"})
    assert f.status_code == 200, (f.status_code, f.text)
    assert f.headers["Content-Type"] == "application/fhir+ndjson", f.headers
    n = 0
    for line in f.text.splitlines():
        res = models[o["type"]].model_validate_json(line)
        if o["type"] == "Observation":
            out["subjects"].append(res.subject.reference)
        n += 1
    assert n == o["count"], (o, n)
    if n:
        out["types"][o["type"]] = n
if manifest["output"]:
    out["no_token"] = requests.get(manifest["output"][0]["url"]).status_code
d = requests.delete(status, headers=auth)
assert d.status_code == 202, (d.status_code, d.text)
out["after_delete"] = requests.get(status, headers=auth).status_code
print(json.dumps(out))
"#;

fn export(server: &TestServer, token: &str, path: &str) -> Value {
    let out = Command::new("python3").args(["-c", CLIENT, &server.url, token, path]).output().expect("python3");
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// p-1: 20 heart rates from a watch (flushed) and 5 step counts (buffered); p-2: one EDA.
fn world() -> (TestServer, String, String) {
    let server = TestServer::start();
    let mut items = Vec::new();
    for i in 0..20 {
        let t = NOW - 2 * MS_PER_DAY + i * 60_000;
        items.push(json!({"patient": "p-1", "metric": "heart_rate", "time": t, "value": 60 + i, "device": "watch:a1"}));
    }
    assert_eq!(server.ingest(&Value::Array(items)).status, 200);
    server.store.flush().expect("flush");
    let mut items = Vec::new();
    for i in 0..5 {
        items.push(
            json!({"patient": "p-1", "metric": "step_count", "time": NOW - 3_600_000 + i * 60_000, "value": 100}),
        );
    }
    items.push(json!({"patient": "p-2", "metric": "eda", "time": NOW - 60_000, "value": 1.25}));
    assert_eq!(server.ingest(&Value::Array(items)).status, 200);
    let d = &server.app.directory;
    d.create_user("ana", Role::Analyst, None, None, NOW).expect("analyst");
    d.create_user("cli", Role::Clinician, None, None, NOW).expect("clinician");
    vitals_server::people::set_team(d.meta(), "ward", &["cli".into()], &["p-1".into()], NOW).expect("team");
    let token =
        |name: &str| d.create_token(&NewToken { name, user: Some(name), ..Default::default() }, NOW).expect("t").1;
    let r = server.put_json("/api/v1/cohorts/second", &json!({"patients": ["p-2"]}));
    assert!(r.status < 300, "{}", r.body);
    let (ana, cli) = (token("ana"), token("cli"));
    (server, ana, cli)
}

#[test]
fn a_bulk_data_client_exports_asynchronously_within_its_scope() {
    let (server, ana, cli) = world();
    let v = export(&server, &ana, "/api/v1/fhir/$export");
    assert_eq!(v["types"], json!({"Patient": 2, "Device": 1, "Observation": 26}), "{v}");
    let m = &v["manifest"];
    assert_eq!(m["requiresAccessToken"], true, "{m}");
    assert!(m["request"].as_str().is_some_and(|r| r.ends_with("/api/v1/fhir/$export")), "{m}");
    assert!(m["transactionTime"].is_string(), "{m}");
    assert_eq!(v["no_token"], 401, "files need the token");
    assert_eq!(v["after_delete"], 404, "a deleted job is gone");

    // A clinician's export holds their team's patient only.
    let v = export(&server, &cli, "/api/v1/fhir/Patient/$export");
    assert_eq!(v["types"], json!({"Patient": 1, "Device": 1, "Observation": 25}), "{v}");
    assert!(v["subjects"].as_array().expect("s").iter().all(|s| s == "Patient/p-1"), "{v}");
    // A Group is a cohort; _type and metric narrow the files.
    let v = export(&server, &ana, "/api/v1/fhir/Group/second/$export");
    assert_eq!(v["types"], json!({"Patient": 1, "Observation": 1}), "{v}");
    let v = export(&server, &ana, "/api/v1/fhir/$export?_type=Observation&metric=step_count");
    assert_eq!(v["types"], json!({"Observation": 5}), "{v}");
    assert_eq!(v["manifest"]["output"].as_array().map(Vec::len), Some(1), "{v}");
    // Within a clinician's scope, a cohort of other teams' patients is empty.
    let v = export(&server, &cli, "/api/v1/fhir/Group/second/$export");
    assert_eq!(v["types"], json!({}), "{v}");
}

#[test]
fn a_job_is_its_owners_and_bad_kick_offs_are_refused() {
    let (server, ana, cli) = world();
    let r = server.get("/api/v1/fhir/$export", Some(&ana));
    assert_eq!(r.status, 202, "{}", r.body);
    // The status URL is not in Resp: the audit log names the job's kick-off, and another
    // principal polling any job id gets 404.
    let r = server.get("/api/v1/fhir/$export-status/0123456789abcdef", Some(&cli));
    assert_eq!(r.status, 404, "{}", r.body);
    for (path, code) in [
        ("/api/v1/fhir/$export?_outputFormat=text/csv", "invalid_query"),
        ("/api/v1/fhir/$export?_type=Encounter", "invalid_query"),
        ("/api/v1/fhir/$export?_typeFilter=Observation%3Fcode%3Dx", "invalid_query"),
        ("/api/v1/fhir/$export?metric=nope", "unknown_metric"),
        ("/api/v1/fhir/Group/nobody/$export", "not_found"),
    ] {
        let r = server.get(path, Some(&ana));
        assert!(r.status == 400 || r.status == 404, "{path}: {} {}", r.status, r.body);
        assert_eq!(r.json()["code"], code, "{path}: {}", r.body);
    }
    let r = server.get("/api/v1/audit?action=fhir.export", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("/api/v1/fhir/$export"), "the kick-off is audited: {}", r.body);
    // Patients and devices export nothing in bulk.
    let d = &server.app.directory;
    d.create_user("pat", Role::Patient, None, Some("p-1"), NOW).expect("patient");
    let (_, pat) = d.create_token(&NewToken { name: "pat", user: Some("pat"), ..Default::default() }, NOW).expect("t");
    assert_eq!(server.get("/api/v1/fhir/$export", Some(&pat)).status, 403);
}
