//! Alert rules through the API: validation with positions, conflicts, config rules, and
//! backtests over stored data against hand-computed episodes.

use serde_json::{Value, json};

use crate::harness::{ADMIN, DEVICE, NOW, Resp, TestServer, agent, into_resp};

const MIN: i64 = 60_000;

fn send(server: &TestServer, method: &str, path: &str, token: &str, body: &Value) -> Resp {
    let url = format!("{}{path}", server.url);
    let auth = format!("Bearer {token}");
    let a = agent();
    let r = match method {
        "POST" => a
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        "PUT" => {
            a.put(&url).header("Authorization", &auth).header("Content-Type", "application/json").send(body.to_string())
        }
        _ => a.delete(&url).header("Authorization", &auth).call(),
    };
    into_resp(r.expect("request"))
}

#[test]
fn rules_are_validated_on_save_and_managed_through_the_api() {
    let server = TestServer::with_config(|c| {
        c.alerting.rules =
            vec![serde_json::from_value(json!({"name": "from-config", "expr": "spo2 < 90"})).expect("spec")];
    });
    let rule = json!({"name": "glucose-high", "expr": "blood_glucose > 115 or mean(blood_glucose, 10m) > 105", "severity": "warning"});
    let r = send(&server, "POST", "/api/v1/rules", ADMIN, &rule);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["source"], "api");
    assert_eq!(send(&server, "POST", "/api/v1/rules", ADMIN, &rule).status, 409);
    assert_eq!(send(&server, "POST", "/api/v1/rules", DEVICE, &rule).status, 403);
    // Errors say which field, where, and what was expected.
    let bad = send(&server, "POST", "/api/v1/rules", ADMIN, &json!({"name": "x", "expr": "blood_glucose >"}));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], "invalid_rule");
    assert_eq!(
        bad.json()["message"],
        "expr: at 15: expected a number, a metric or a function, found the end of the rule"
    );
    let bad =
        send(&server, "POST", "/api/v1/rules", ADMIN, &json!({"name": "x", "expr": "spo2 < 90", "for": "a while"}));
    assert!(bad.json()["message"].as_str().is_some_and(|m| m.starts_with("for: ")), "{}", bad.body);
    let bad =
        send(&server, "POST", "/api/v1/rules", ADMIN, &json!({"name": "x", "expr": "spo2 < 90", "colour": "red"}));
    assert_eq!((bad.status, bad.json()["code"].clone()), (400, json!("invalid_body")));
    // Replace, create by PUT, list, delete.
    let changed = json!({"name": "glucose-high", "expr": "blood_glucose > 180", "severity": "urgent", "for": "15m"});
    assert_eq!(send(&server, "PUT", "/api/v1/rules/glucose-high", ADMIN, &changed).status, 200);
    let low = json!({"name": "low", "expr": "blood_glucose < 70", "clear": "blood_glucose > 80"});
    assert_eq!(send(&server, "PUT", "/api/v1/rules/low", ADMIN, &low).status, 201);
    assert_eq!(
        send(&server, "PUT", "/api/v1/rules/other", ADMIN, &low).status,
        400,
        "the URL and the body name differ"
    );
    let list = server.get("/api/v1/rules", Some(ADMIN)).json();
    let names: Vec<(&str, &str)> = list["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| (r["name"].as_str().expect("name"), r["source"].as_str().expect("source")))
        .collect();
    assert_eq!(names, [("from-config", "config"), ("glucose-high", "api"), ("low", "api")]);
    let one = server.get("/api/v1/rules/glucose-high", Some(ADMIN)).json();
    assert_eq!((one["severity"].clone(), one["for"].clone()), (json!("urgent"), json!("15m")));
    assert_eq!(server.get("/api/v1/rules/glucose-high", Some(DEVICE)).status, 403);
    assert_eq!(send(&server, "DELETE", "/api/v1/rules/low", ADMIN, &Value::Null).status, 204);
    assert_eq!(send(&server, "DELETE", "/api/v1/rules/low", ADMIN, &Value::Null).status, 404);
    // Config rules are changed in the config file.
    assert_eq!(send(&server, "DELETE", "/api/v1/rules/from-config", ADMIN, &Value::Null).status, 409);
    let r =
        send(&server, "PUT", "/api/v1/rules/from-config", ADMIN, &json!({"name": "from-config", "expr": "spo2 < 80"}));
    assert_eq!(r.status, 409);
}

#[test]
fn a_backtest_returns_the_episodes_the_rule_would_have_produced() {
    let server = TestServer::start();
    let t0 = NOW - 3 * 3_600_000;
    let trace = |patient: &str, values: &[f64]| -> Vec<Value> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"patient": patient, "metric": "blood_glucose", "time": t0 + i as i64 * 5 * MIN, "value": v}))
            .collect()
    };
    let mut samples = trace("p-1", &[100.0, 110.0, 120.0, 100.0, 104.0, 106.0, 104.0, 100.0, 116.0]);
    samples.extend(trace("p-2", &[90.0, 95.0, 99.0]));
    assert_eq!(server.ingest(&Value::Array(samples)).status, 200);
    let at = |k: i64| vitals_core::time::format_time(t0 + k * 5 * MIN);
    let r = send(
        &server,
        "POST",
        "/api/v1/rules/backtest",
        ADMIN,
        &json!({"expr": "blood_glucose > 115 or mean(blood_glucose, 10m) > 105", "from": t0, "to": NOW}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["episodes"],
        json!([
            {"patient": "p-1", "start": at(2), "fired": at(2), "end": at(3), "cleared": at(4)},
            {"patient": "p-1", "start": at(8), "fired": at(8), "end": at(8), "cleared": null},
        ])
    );
    assert_eq!(r.json()["points"], 12);
    // Persistence: only runs that last 5 minutes fire; one patient only; RFC 3339 bounds.
    let r = send(
        &server,
        "POST",
        "/api/v1/rules/backtest",
        ADMIN,
        &json!({"expr": "blood_glucose > 115 or mean(blood_glucose, 10m) > 105", "for": "5m", "patients": ["p-1"],
                "from": vitals_core::time::format_time(t0), "to": vitals_core::time::format_time(NOW)}),
    );
    assert_eq!(
        r.json()["episodes"],
        json!([{"patient": "p-1", "start": at(2), "fired": at(3), "end": at(3), "cleared": at(4)}])
    );
    let r = send(
        &server,
        "POST",
        "/api/v1/rules/backtest",
        ADMIN,
        &json!({"expr": "blood_glucose >>", "from": t0, "to": NOW}),
    );
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_rule")));
    let r =
        send(&server, "POST", "/api/v1/rules/backtest", ADMIN, &json!({"expr": "spo2 < 90", "from": NOW, "to": t0}));
    assert_eq!(r.status, 400);
    let r =
        send(&server, "POST", "/api/v1/rules/backtest", DEVICE, &json!({"expr": "spo2 < 90", "from": t0, "to": NOW}));
    assert_eq!(r.status, 403);
}

#[test]
fn a_deeply_nested_rule_is_refused_and_the_server_lives_on() {
    let server = TestServer::start();
    let deep = format!("{}heart_rate > 1{}", "(".repeat(40_000), ")".repeat(40_000));
    let nested = format!("{}heart_rate > 1{}", "(".repeat(40), ")".repeat(40));
    for expr in [deep, nested] {
        let backtest = json!({"expr": expr, "from": NOW - 3_600_000, "to": NOW});
        let r = send(&server, "POST", "/api/v1/rules/backtest", ADMIN, &backtest);
        assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_rule")), "{}", r.body);
        let rule = json!({"name": "deep", "expr": expr, "severity": "info"});
        let r = send(&server, "POST", "/api/v1/rules", ADMIN, &rule);
        assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_rule")), "{}", r.body);
    }
    assert_eq!(server.get("/healthz", None).status, 200, "still serving");
}
