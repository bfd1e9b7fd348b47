//! Live alerting: rules evaluated on durable samples, one alert per episode, ack and
//! snooze, history recorded without paging.

use serde_json::{Value, json};

use crate::harness::{ADMIN, DEVICE, NOW, TestServer, agent, eventually, into_resp};

const MIN: i64 = 60_000;

fn rule(v: Value) -> vitals_rules::RuleSpec {
    serde_json::from_value(v).expect("spec")
}

fn server() -> TestServer {
    TestServer::with_config(|c| {
        c.alerting.rules = vec![
            rule(json!({"name": "glucose-high", "expr": "blood_glucose > 115 or mean(blood_glucose, 10m) > 105"})),
            rule(json!({"name": "glucose-low", "expr": "blood_glucose < 70", "clear": "blood_glucose > 80",
                        "for": "10m", "severity": "urgent"})),
        ];
    })
}

fn glucose(server: &TestServer, patient: &str, t0: i64, values: &[f64]) {
    let body: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"patient": patient, "metric": "blood_glucose", "time": t0 + i as i64 * 5 * MIN, "value": v}))
        .collect();
    let r = server.ingest(&Value::Array(body));
    assert_eq!(r.status, 200, "{}", r.body);
}

fn alerts(server: &TestServer, query: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/alerts{query}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["alerts"].as_array().cloned().unwrap_or_default()
}

fn post(server: &TestServer, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = into_resp(
        agent()
            .post(&format!("{}{path}", server.url))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("post"),
    );
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

#[test]
fn fresh_readings_open_one_alert_per_episode_that_resolves_and_can_be_acknowledged() {
    let server = server();
    let t0 = NOW - 45 * MIN;
    // The glucose system's rule: 120 fires, mean 110 holds, 102 clears; 116 fires again.
    glucose(&server, "p-1", t0, &[100.0, 110.0, 120.0, 100.0, 104.0, 106.0, 104.0, 100.0, 116.0]);
    // One call per check: the two alerts are saved one after the other.
    eventually("two alerts", || alerts(&server, "?patient=p-1").len() == 2);
    let list = alerts(&server, "?patient=p-1");
    assert_eq!(list.len(), 2, "{list:#?}");
    let (newest, oldest) = (&list[0], &list[1]);
    assert_eq!((newest["rule"].clone(), newest["state"].clone()), (json!("glucose-high"), json!("open")));
    assert_eq!(newest["fired"], json!(vitals_core::time::format_time(t0 + 40 * MIN)));
    assert_eq!(newest["paged"], true, "fresh data pages");
    assert_eq!(oldest["state"], "resolved");
    assert_eq!(oldest["cleared"], json!(vitals_core::time::format_time(t0 + 20 * MIN)));
    // The same readings again change nothing: still two alerts.
    glucose(&server, "p-1", t0, &[100.0, 110.0, 120.0, 100.0, 104.0, 106.0, 104.0, 100.0, 116.0]);
    assert_eq!(alerts(&server, "?patient=p-1").len(), 2);
    assert_eq!(alerts(&server, "?state=open").len(), 1);
    let id = newest["id"].as_str().expect("id").to_owned();
    let (status, acked) = post(&server, &format!("/api/v1/alerts/{id}/ack"), ADMIN, &Value::Null);
    assert_eq!(status, 200, "{acked}");
    assert_eq!((acked["state"].clone(), acked["acknowledged_by"].clone()), (json!("acknowledged"), json!("admin")));
    let (status, snoozed) = post(&server, &format!("/api/v1/alerts/{id}/snooze"), ADMIN, &json!({"for": "30m"}));
    assert_eq!(status, 200);
    assert_eq!(snoozed["snoozed_until"], json!(vitals_core::time::format_time(NOW + 30 * MIN)));
    assert_eq!(post(&server, &format!("/api/v1/alerts/{id}/snooze"), ADMIN, &json!({"for": "5h"})).0, 400);
    let resolved = oldest["id"].as_str().expect("id");
    assert_eq!(post(&server, &format!("/api/v1/alerts/{resolved}/ack"), ADMIN, &Value::Null).0, 409);
    assert_eq!(post(&server, "/api/v1/alerts/al-nope/ack", ADMIN, &Value::Null).0, 404);
    assert_eq!(post(&server, &format!("/api/v1/alerts/{id}/ack"), DEVICE, &Value::Null).0, 403);
    // A normal reading once 116 has left the 10-minute window resolves it, when its time
    // comes (5 minutes from now).
    glucose(&server, "p-1", t0 + 50 * MIN, &[98.0]);
    assert_eq!(alerts(&server, "?patient=p-1&state=acknowledged").len(), 1);
    server.clock.set(NOW + 5 * MIN);
    eventually("the all-clear", || alerts(&server, "?patient=p-1&state=resolved").len() == 2);
}

#[test]
fn persistence_and_hysteresis_hold_one_low_alert_through_oscillations() {
    let server = server();
    let t0 = NOW - 45 * MIN;
    // Below 70 for 10 minutes fires (at 20), 72 and 78 do not clear (above 80 does), then
    // oscillation around 70 stays one alert.
    glucose(&server, "p-2", t0, &[75.0, 68.0, 65.0, 66.0, 64.0, 72.0, 78.0, 69.0, 71.0, 69.0, 71.0, 69.0, 71.0]);
    eventually("the low alert", || !alerts(&server, "?patient=p-2").is_empty());
    let list = alerts(&server, "?patient=p-2");
    let lows: Vec<&Value> = list.iter().filter(|a| a["rule"] == "glucose-low").collect();
    assert_eq!(lows.len(), 1, "{list:?}");
    assert_eq!(lows[0]["severity"], "urgent");
    assert_eq!(lows[0]["start"], json!(vitals_core::time::format_time(t0 + 5 * MIN)));
    assert_eq!(lows[0]["fired"], json!(vitals_core::time::format_time(t0 + 15 * MIN)));
    assert_eq!(lows[0]["state"], "open");
}

#[test]
fn backfilled_history_records_alerts_without_paging() {
    let server = server();
    let t0 = NOW - 3 * 86_400_000;
    glucose(&server, "p-3", t0, &[100.0, 130.0, 90.0, 90.0]);
    eventually("the historical alert", || alerts(&server, "?patient=p-3&state=resolved").len() == 1);
    let a = &alerts(&server, "?patient=p-3")[0];
    assert_eq!((a["paged"].clone(), a["state"].clone()), (json!(false), json!("resolved")));
    // Counted just after the alert is recorded.
    eventually("the transition counted", || {
        server.get("/metrics", Some(ADMIN)).body.contains("vitals_alert_transitions_total{code=\"opened\"} 1")
    });
}

/// `vitals serve` as a real process: requests with the admin token.
fn call(url: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let full = format!("{url}{path}");
    let auth = format!("Bearer {ADMIN}");
    let a = agent();
    let r = match (method, body) {
        ("POST", Some(b)) => {
            a.post(&full).header("Authorization", &auth).header("Content-Type", "application/json").send(b.to_string())
        }
        _ => a.get(&full).header("Authorization", &auth).call(),
    };
    let r = into_resp(r.expect("request"));
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

fn kill_9(mut s: crate::crash::Running) {
    let killed = std::process::Command::new("kill").args(["-9", &s.child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let _ = s.child.wait();
}

fn metric_value(url: &str, line_prefix: &str) -> u64 {
    let r = into_resp(
        agent().get(&format!("{url}/metrics")).header("Authorization", &format!("Bearer {ADMIN}")).call().expect("m"),
    );
    r.body.lines().find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn after_kill_9_no_episode_is_lost_and_none_is_raised_twice() {
    let dir = tempfile::tempdir().expect("tmp");
    let now = crate::crash::chrono_now_ms();
    // A short horizon: p-a's episode began long before it, and must still be found again.
    let env = [("VITALS_ALERTING_HORIZON", "5m")];
    let server = crate::crash::spawn_server(dir.path(), &env);
    let rule = json!({"name": "high", "expr": "blood_glucose > 115", "severity": "urgent"});
    assert_eq!(call(&server.url, "POST", "/api/v1/rules", Some(&rule)).0, 201);
    let readings = |p: &str, pts: &[(i64, f64)]| -> Value {
        Value::Array(
            pts.iter().map(|(t, v)| json!({"patient": p, "metric": "blood_glucose", "time": t, "value": v})).collect(),
        )
    };
    let open_alerts = |url: &str, p: &str| -> Vec<Value> {
        call(url, "GET", &format!("/api/v1/alerts?patient={p}"), None).1["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // An episode raised before the crash.
    let body = readings("p-a", &[(now - 50 * MIN, 100.0), (now - 40 * MIN, 130.0), (now - 10 * MIN, 140.0)]);
    assert_eq!(call(&server.url, "POST", "/api/v1/samples", Some(&body)).0, 200);
    eventually("the alert", || open_alerts(&server.url, "p-a").len() == 1);
    let id = open_alerts(&server.url, "p-a")[0]["id"].clone();
    // An episode acknowledged as samples and killed at once, maybe before evaluation.
    let body = readings("p-b", &[(now - 12 * MIN, 100.0), (now - 8 * MIN, 150.0)]);
    assert_eq!(call(&server.url, "POST", "/api/v1/samples", Some(&body)).0, 200);
    kill_9(server);

    let server = crate::crash::spawn_server(dir.path(), &env);
    // The rule came back from the rule store; p-b's episode is found by re-reading the data.
    eventually("p-b's alert", || open_alerts(&server.url, "p-b").len() == 1);
    let a = open_alerts(&server.url, "p-a");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["id"], id, "the same alert, not a second one");
    assert_eq!(a[0]["state"], "open");
    // A normal reading resolves it: the engine knew the episode after the restart.
    let body = readings("p-a", &[(now - 5 * MIN, 100.0)]);
    assert_eq!(call(&server.url, "POST", "/api/v1/samples", Some(&body)).0, 200);
    eventually("the all-clear", || open_alerts(&server.url, "p-a").first().is_some_and(|a| a["state"] == "resolved"));
    assert_eq!(open_alerts(&server.url, "p-a").len(), 1);
    eventually("the resolution counted", || {
        metric_value(&server.url, "vitals_alert_transitions_total{code=\"resolved\"}") == 1
    });
    let opened_again = metric_value(&server.url, "vitals_alert_transitions_total{code=\"opened\"}");
    assert!(opened_again <= 1, "only p-b's alert may be opened after the restart: {opened_again}");
    kill_9(server);
}

#[test]
fn removing_a_rule_closes_its_open_alerts() {
    let server = TestServer::start();
    let rule = json!({"name": "api-high", "expr": "blood_glucose > 115"});
    assert_eq!(post(&server, "/api/v1/rules", ADMIN, &rule).0, 201);
    // The rule is in force at once: readings right after it was saved are evaluated.
    glucose(&server, "p-r", NOW - 10 * MIN, &[120.0]);
    eventually("the alert", || alerts(&server, "?patient=p-r&state=open").len() == 1);
    let del = into_resp(
        agent()
            .delete(&format!("{}/api/v1/rules/api-high", server.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .expect("delete"),
    );
    assert_eq!(del.status, 204);
    eventually("closed", || alerts(&server, "?patient=p-r&state=resolved").len() == 1);
}
