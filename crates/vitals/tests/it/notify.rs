//! Notifications: each channel against a local server that checks the exact request (a
//! real SMTP server for email), retries and the dead-letter list, routing, quiet hours,
//! escalation, reminders, suppression, operator events, and the outbox across `kill -9`.

use serde_json::{Value, json};
use vitals_alerts::{Contact, Subscription};
use vitals_server::config::Config;

use crate::harness::{ADMIN, Capture, NOW, TestServer, agent, eventually, into_resp};

const MIN: i64 = 60_000;

fn rule(v: Value) -> vitals_rules::RuleSpec {
    serde_json::from_value(v).expect("spec")
}

fn contact(name: &str) -> Contact {
    Contact { name: name.into(), ..Contact::default() }
}

fn glucose(server: &TestServer, patient: &str, points: &[(i64, f64)]) {
    let body: Vec<Value> = points
        .iter()
        .map(|(t, v)| json!({"patient": patient, "metric": "blood_glucose", "time": t, "value": v}))
        .collect();
    let r = server.ingest(&Value::Array(body));
    assert_eq!(r.status, 200, "{}", r.body);
}

fn notices(server: &TestServer, query: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/notifications{query}"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["notifications"].as_array().cloned().unwrap_or_default()
}

fn alerts(server: &TestServer, query: &str) -> Vec<Value> {
    server.get(&format!("/api/v1/alerts{query}"), Some(ADMIN)).json()["alerts"].as_array().cloned().unwrap_or_default()
}

fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let r = server.post(path, Some(ADMIN), "application/json", body.to_string().as_bytes());
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

fn high_rule(c: &mut Config) {
    c.alerting.rules = vec![rule(json!({"name": "high", "expr": "blood_glucose > 180", "severity": "urgent"}))];
}

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

#[test]
fn webhooks_are_signed_json_retried_with_backoff_until_delivered_with_one_key() {
    let hook = Capture::start();
    hook.queue(503, "busy");
    let url = format!("{}/hooks/vitals", hook.url);
    let server = TestServer::with_config(|c| {
        high_rule(c);
        c.notify.webhook_secret = "s3cret".into();
        c.notify.retry_backoff = vitals_core::DurationMs(30_000);
        c.notify.contacts = vec![Contact { webhook: Some(url), ..contact("ward") }];
        c.notify.subscriptions = vec![Subscription { contacts: vec!["ward".into()], ..Subscription::default() }];
    });
    glucose(&server, "p-1", &[(NOW - 10 * MIN, 150.0), (NOW - 5 * MIN, 200.0)]);
    eventually("the first attempt", || hook.requests().len() == 1);
    eventually("the retry to be scheduled", || notices(&server, "").first().is_some_and(|n| n["attempts"] == 1));
    let n = &notices(&server, "")[0];
    assert_eq!(
        (n["state"].clone(), n["last_error"].as_str().map(|e| e.contains("503"))),
        (json!("pending"), Some(true))
    );
    assert_eq!(
        n["next_attempt"],
        json!(vitals_core::time::format_time(NOW + 30_000)),
        "backoff from the first attempt"
    );
    // Not before its time: the clock moves and the retry goes out.
    server.clock.advance(30_000);
    eventually("the second attempt", || hook.requests().len() == 2);
    eventually("delivered", || notices(&server, "?state=delivered").len() == 1);
    let reqs = hook.requests();
    let (a, b) = (&reqs[0], &reqs[1]);
    assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/hooks/vitals"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let key = a.header("idempotency-key").expect("key");
    assert_eq!(b.header("idempotency-key"), Some(key), "a retry carries the same key");
    assert_eq!(key, n["id"].as_str().expect("id"));
    assert_eq!(a.header("x-vitals-event"), Some("opened"));
    let ts = a.header("x-vitals-timestamp").expect("timestamp");
    assert_eq!(ts, (NOW / 1000).to_string());
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&a.body);
    assert_eq!(a.header("x-vitals-signature"), Some(format!("sha256={}", hmac_hex("s3cret", &signed)).as_str()));
    assert_eq!(a.body, b.body, "the same notice");
    let body = a.json();
    assert_eq!((body["kind"].clone(), body["alert"]["rule"].clone()), (json!("opened"), json!("high")));
    assert_eq!((body["alert"]["patient"].clone(), body["alert"]["severity"].clone()), (json!("p-1"), json!("urgent")));
    assert_eq!(body["alert"]["values"]["blood_glucose"], json!({"value": 200.0, "unit": "mg/dL"}));
    assert!(body["text"].as_str().expect("text").starts_with("[URGENT] high for p-1"), "{body}");
}

#[test]
fn telegram_and_sms_requests_are_what_their_apis_expect_and_all_clear_follows() {
    let tg = Capture::start();
    tg.respond(200, r#"{"ok":true,"result":{"message_id":1}}"#);
    let sms = Capture::start();
    sms.respond(201, r#"{"sid":"SM1","status":"queued"}"#);
    let (tg_url, sms_url) = (tg.url.clone(), format!("{}/2010-04-01/Accounts/AC123/Messages.json", sms.url));
    let server = TestServer::with_config(|c| {
        high_rule(c);
        c.notify.telegram_bot_token = "123:ABC".into();
        c.notify.telegram_api_base = tg_url;
        c.notify.sms_url = sms_url;
        c.notify.sms_account_sid = "AC123".into();
        c.notify.sms_auth_token = "tok".into();
        c.notify.sms_from = "+15550000000".into();
        c.notify.contacts = vec![Contact {
            telegram_chat_id: Some("-100200".into()),
            sms: Some("+15551234567".into()),
            ..contact("mum")
        }];
        c.notify.subscriptions = vec![Subscription { contacts: vec!["mum".into()], ..Subscription::default() }];
    });
    glucose(&server, "p-2", &[(NOW - 10 * MIN, 190.0)]);
    eventually("telegram and sms", || tg.requests().len() == 1 && sms.requests().len() == 1);
    let t = &tg.requests()[0];
    assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/bot123:ABC/sendMessage"));
    assert_eq!(t.header("content-type"), Some("application/json"));
    let body = t.json();
    assert_eq!((body["chat_id"].clone(), body["disable_notification"].clone()), (json!("-100200"), json!(false)));
    assert!(body["text"].as_str().expect("text").contains("high for p-2"), "{body}");
    let s = &sms.requests()[0];
    assert_eq!(s.path, "/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(s.header("content-type"), Some("application/x-www-form-urlencoded"));
    // Basic base64("AC123:tok")
    assert_eq!(s.header("authorization"), Some("Basic QUMxMjM6dG9r"));
    assert!(s.header("i-twilio-idempotency-token").is_some_and(|k| k.starts_with("nt-")));
    let form = crate::harness::form_fields(&s.text());
    assert_eq!(form[0], ("To".to_owned(), "+15551234567".to_owned()));
    assert_eq!(form[1], ("From".to_owned(), "+15550000000".to_owned()));
    assert!(form[2].0 == "Body" && form[2].1.starts_with("[URGENT] high for p-2"), "{form:?}");
    // The all-clear goes to the same people.
    glucose(&server, "p-2", &[(NOW - 5 * MIN, 120.0)]);
    eventually("the all-clear", || tg.requests().len() == 2 && sms.requests().len() == 2);
    assert!(tg.requests()[1].json()["text"].as_str().expect("text").starts_with("[resolved] high for p-2"));
}

#[test]
fn failing_notices_go_to_the_dead_letter_list_tell_the_operator_and_replay() {
    let hook = Capture::start();
    hook.respond(500, "down");
    let bad = Capture::start();
    bad.respond(400, "no such hook");
    let (url, bad_url) = (hook.url.clone(), bad.url.clone());
    let server = TestServer::with_config(|c| {
        high_rule(c);
        c.notify.max_attempts = 2;
        c.notify.retry_backoff = vitals_core::DurationMs(1_000);
        c.notify.contacts = vec![
            Contact { webhook: Some(url), ..contact("flaky") },
            Contact { webhook: Some(bad_url), ..contact("gone") },
            Contact { console: true, ..contact("ops") },
        ];
        c.notify.operator_contacts = vec!["ops".into()];
        c.notify.subscriptions =
            vec![Subscription { contacts: vec!["flaky".into(), "gone".into()], ..Subscription::default() }];
    });
    glucose(&server, "p-3", &[(NOW - 2 * MIN, 250.0)]);
    // A 400 is a refusal: dead at once. A 500 is retried until max_attempts.
    eventually("the refused one dead", || notices(&server, "?state=dead").len() == 1);
    assert_eq!(bad.requests().len(), 1);
    eventually("the first attempt", || hook.requests().len() == 1);
    eventually("its retry scheduled", || notices(&server, "?state=pending").iter().any(|n| n["attempts"] == 1));
    server.clock.advance(1_000);
    eventually("both dead", || notices(&server, "?state=dead").len() == 2);
    assert_eq!(hook.requests().len(), 2, "max_attempts = 2");
    // The operator heard of both, on the console channel.
    eventually("operator notices", || {
        notices(&server, "?state=delivered").iter().filter(|n| n["kind"] == "operator" && n["contact"] == "ops").count()
            == 2
    });
    let dead = notices(&server, "?state=dead");
    let flaky = dead.iter().find(|n| n["contact"] == "flaky").expect("flaky");
    assert!(flaky["last_error"].as_str().expect("error").contains("HTTP 500"), "{flaky}");
    // `vitals admin notifications` lists them too, and replays through the server.
    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitals"))
            .args(["admin", "notifications"])
            .args(args)
            .args(["--url", &server.url, "--token", ADMIN])
            .output()
            .expect("vitals admin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["list", "--state", "dead"]);
    for n in &dead {
        assert!(listed.contains(n["id"].as_str().expect("id")), "{listed}");
    }
    let gone = dead.iter().find(|n| n["contact"] == "gone").expect("gone")["id"].as_str().expect("id").to_owned();
    let replayed: Value = serde_json::from_str(&cli(&["replay", &gone])).expect("json");
    assert_eq!(replayed["state"], "pending");
    eventually("refused again", || {
        server.get(&format!("/api/v1/notifications/{gone}"), Some(ADMIN)).json()["state"] == "dead"
    });
    // Fixed: replay delivers it, with the same key.
    hook.respond(200, "{}");
    let id = flaky["id"].as_str().expect("id");
    let (status, replayed) = post(&server, &format!("/api/v1/notifications/{id}/replay"), &Value::Null);
    assert_eq!((status, replayed["state"].clone()), (200, json!("pending")));
    eventually("delivered after replay", || {
        server.get(&format!("/api/v1/notifications/{id}"), Some(ADMIN)).json()["state"] == "delivered"
    });
    assert_eq!(hook.requests()[2].header("idempotency-key"), Some(id));
    assert_eq!(
        post(&server, &format!("/api/v1/notifications/{id}/replay"), &Value::Null).0,
        409,
        "only dead ones replay"
    );
    assert_eq!(post(&server, "/api/v1/notifications/nt-nope/replay", &Value::Null).0, 404);
}

#[test]
fn subscriptions_route_by_patient_and_severity_with_quiet_hours_escalation_and_reminders() {
    let server = TestServer::with_config(|c| {
        c.alerting.rules = vec![
            rule(json!({"name": "low", "expr": "blood_glucose < 70", "severity": "urgent", "renotify": "5m"})),
            rule(json!({"name": "high", "expr": "blood_glucose > 250", "severity": "warning"})),
        ];
        c.notify.contacts = vec![
            Contact { console: true, ..contact("nurse") },
            Contact { console: true, ..contact("doctor") },
            Contact { console: true, ..contact("family") },
        ];
        c.notify.subscriptions = vec![
            Subscription {
                name: "ward".into(),
                contacts: vec!["nurse".into()],
                escalate_after: Some(vitals_core::DurationMs(10 * MIN)),
                escalation: vec!["doctor".into()],
                // NOW is 03:00Z: inside.
                quiet_hours: Some("22:00-07:00".into()),
                ..Subscription::default()
            },
            Subscription {
                contacts: vec!["family".into()],
                patients: vec!["p-5".into()],
                severities: vec![vitals_rules::Severity::Urgent],
                ..Subscription::default()
            },
        ];
    });
    glucose(&server, "p-4", &[(NOW - MIN, 60.0)]);
    glucose(&server, "p-4c", &[(NOW - MIN, 62.0)]);
    glucose(&server, "p-4h", &[(NOW - 30_000, 300.0)]);
    eventually("three notices", || notices(&server, "").len() >= 3);
    let all = notices(&server, "");
    assert_eq!(all.len(), 3, "{all:#?}");
    // In one batch or several, one patient's alert never suppresses another's.
    assert!(alerts(&server, "").iter().all(|a| a["suppressed_by"].is_null()), "{:#?}", alerts(&server, ""));
    let id_of = |patient: &str| -> String {
        let l = alerts(&server, &format!("?patient={patient}"));
        l.first().and_then(|a| a["id"].as_str()).unwrap_or_default().to_owned()
    };
    let (low, low_c, high) = (id_of("p-4"), id_of("p-4c"), id_of("p-4h"));
    let of = |alert: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = notices(&server, "")
            .iter()
            .filter(|n| n["alert"] == alert)
            .map(|n| (n["kind"].as_str().expect("kind").to_owned(), n["contact"].as_str().expect("c").to_owned()))
            .collect();
        v.sort();
        v
    };
    let pair = |k: &str, c: &str| (k.to_owned(), c.to_owned());
    // Not family's patients; the urgent lows go out now, the warning waits for 07:00.
    assert_eq!(of(&low), vec![pair("opened", "nurse")]);
    let h = notices(&server, "").into_iter().find(|n| n["alert"] == high.as_str()).expect("high notice");
    assert_eq!(
        (h["state"].clone(), h["next_attempt"].clone()),
        (json!("pending"), json!(vitals_core::time::format_time(NOW + 4 * 60 * MIN)))
    );
    // Reminders every 5 minutes while unacknowledged; escalation to the doctor at 10.
    server.clock.advance(5 * MIN);
    eventually("a reminder", || of(&low).len() == 2);
    server.clock.advance(5 * MIN);
    eventually("escalation and a second reminder", || of(&low).len() == 4);
    assert_eq!(
        of(&low),
        vec![
            pair("escalated", "doctor"),
            pair("opened", "nurse"),
            pair("reminder", "nurse"),
            pair("reminder", "nurse")
        ]
    );
    let a = server.get(&format!("/api/v1/alerts/{low}"), Some(ADMIN)).json();
    assert_eq!((a["reminders"].clone(), a["escalations"]["ward"].clone()), (json!(2), json!(1)));
    // Acknowledged: no more reminders for it, while the other one goes on (to both now).
    assert_eq!(post(&server, &format!("/api/v1/alerts/{low}/ack"), &Value::Null).0, 200);
    server.clock.advance(5 * MIN);
    eventually("the other alert's third reminder", || of(&low_c).len() == 6);
    assert_eq!(of(&low).len(), 4, "acknowledged alerts are not reminded");
    // family hears of p-5's urgent alert only.
    glucose(&server, "p-5", &[(NOW + 15 * MIN, 55.0)]);
    eventually("family and nurse", || of(&id_of("p-5")) == vec![pair("opened", "family"), pair("opened", "nurse")]);
}

#[test]
fn a_higher_severity_alert_on_the_same_metric_suppresses_the_lower_one() {
    let server = TestServer::with_config(|c| {
        c.alerting.packs = vec!["nightscout".into()];
        c.notify.contacts = vec![Contact { console: true, ..contact("cg") }];
        c.notify.subscriptions = vec![Subscription { contacts: vec!["cg".into()], ..Subscription::default() }];
    });
    // 75: low (warning) opens and is announced; 50: urgent low opens, low is suppressed;
    // 60: urgent low resolves, low stands again (already announced: no second notice).
    glucose(&server, "p-6", &[(NOW - 3 * MIN, 75.0)]);
    eventually("the low notice", || notices(&server, "").len() == 1);
    glucose(&server, "p-6", &[(NOW - 2 * MIN, 50.0)]);
    eventually("the urgent low notice", || notices(&server, "").len() == 2);
    let urgent = alerts(&server, "").into_iter().find(|a| a["rule"] == "nightscout.urgent-low").expect("urgent");
    let low = alerts(&server, "").into_iter().find(|a| a["rule"] == "nightscout.low").expect("low");
    assert_eq!(low["suppressed_by"], urgent["id"]);
    glucose(&server, "p-6", &[(NOW - MIN, 60.0)]);
    eventually("urgent resolved", || alerts(&server, "?state=resolved").len() == 1);
    let low = alerts(&server, "?state=open").into_iter().find(|a| a["rule"] == "nightscout.low").expect("low");
    assert_eq!(low["suppressed_by"], Value::Null);
    eventually("the all-clear of the urgent one", || notices(&server, "").len() == 3);
    // Both at once (a first reading of 50): only the urgent one is announced.
    glucose(&server, "p-7", &[(NOW - 30_000, 50.0)]);
    eventually("p-7's alerts", || alerts(&server, "?patient=p-7").len() == 2);
    let p7: Vec<Value> = alerts(&server, "?patient=p-7");
    let low = p7.iter().find(|a| a["rule"] == "nightscout.low").expect("low");
    assert!(low["suppressed_by"].is_string(), "{p7:?}");
    eventually("one notice for p-7", || notices(&server, "").len() == 4);
    let last: Vec<Value> =
        notices(&server, "").into_iter().filter(|n| n["text"].as_str().is_some_and(|t| t.contains("p-7"))).collect();
    assert_eq!(last.len(), 1);
    assert!(last[0]["text"].as_str().expect("t").contains("urgent-low"), "{last:?}");
}

#[test]
fn rule_packs_cohorts_and_alert_events_work_together() {
    let server = TestServer::with_config(|c| {
        c.alerting.packs = vec!["nightscout".into()];
        c.alerting.rules =
            vec![rule(json!({"name": "ward-high", "expr": "blood_glucose > 150", "scope": {"cohort": "ward"}}))];
    });
    let rules = server.get("/api/v1/rules", Some(ADMIN)).json();
    let stale = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == "nightscout.stale")
        .cloned()
        .expect("stale");
    assert_eq!((stale["source"].clone(), stale["expr"].clone()), (json!("pack"), json!("absent(blood_glucose, 15m)")));
    let (status, _) = post(&server, "/api/v1/rules", &json!({"name": "nightscout.low", "expr": "blood_glucose < 1"}));
    assert_eq!(status, 409, "pack rules are read-only");
    // Not in the cohort yet: no ward alert.
    glucose(&server, "p-8", &[(NOW - 10 * MIN, 160.0)]);
    let r = server.put_json("/api/v1/cohorts/ward", &json!({"patients": ["p-8"]}));
    assert_eq!(r.status, 201, "{}", r.body);
    // Cohort changes take effect at once (re-evaluating recent data).
    eventually("the ward alert", || alerts(&server, "").iter().any(|a| a["rule"] == "ward-high"));
    // Stale data: 15 minutes without a reading, once the clock gets there.
    server.clock.advance(6 * MIN);
    eventually("stale", || alerts(&server, "").iter().any(|a| a["rule"] == "nightscout.stale"));
    let a = alerts(&server, "").into_iter().find(|a| a["rule"] == "nightscout.stale").expect("stale");
    assert_eq!(a["fired"], json!(vitals_core::time::format_time(NOW + 5 * MIN)));
    // Alerts are also events of the patient, to chart with the data (written just after
    // the alert itself).
    eventually("alert events", || {
        let ev = server.get("/api/v1/patients/p-8/events?kind=alert", Some(ADMIN)).json();
        let rules_seen: Vec<String> = ev["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["attributes"]["rule"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        rules_seen.iter().any(|r| r == "ward-high") && rules_seen.iter().any(|r| r == "nightscout.stale")
    });
    let list = server.get("/api/v1/cohorts", Some(ADMIN)).json();
    assert_eq!(list["cohorts"][0], json!({"name": "ward", "patients": ["p-8"]}));
}

#[test]
fn file_drop_failures_reach_the_operator_through_the_notifier() {
    let hook = Capture::start();
    let url = hook.url.clone();
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = vitals_core::DurationMs(50);
        c.notify.contacts = vec![Contact { webhook: Some(url), ..contact("ops") }];
        c.notify.operator_contacts = vec!["ops".into()];
    });
    let inbox = server.data_dir().join("drop/inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    std::fs::write(inbox.join("staging"), [0xff, 0xfe, 0x00, 0x01]).expect("write");
    std::fs::rename(inbox.join("staging"), inbox.join("garbage.bin")).expect("rename");
    eventually("the operator notice", || !hook.requests().is_empty());
    let body = hook.requests()[0].json();
    assert_eq!(body["kind"], "operator");
    assert!(body["subject"].as_str().expect("subject").contains("garbage.bin"), "{body}");
}

#[test]
fn a_test_notice_checks_a_contacts_channels() {
    let hook = Capture::start();
    let url = hook.url.clone();
    let server = TestServer::with_config(|c| {
        c.notify.contacts = vec![Contact { webhook: Some(url), ..contact("ops") }];
    });
    let (status, body) = post(&server, "/api/v1/notifications/test", &json!({"contact": "ops"}));
    assert_eq!(status, 202, "{body}");
    eventually("the test message", || hook.requests().len() == 1);
    assert!(hook.requests()[0].json()["text"].as_str().expect("text").contains("test message"));
    assert_eq!(post(&server, "/api/v1/notifications/test", &json!({"contact": "nobody"})).0, 404);
}

/// A real SMTP server (aiosmtpd from PyPI) requiring STARTTLS, with a certificate of a
/// test CA.
pub(crate) struct Smtp {
    child: std::process::Child,
    pub(crate) port: u16,
    pub(crate) maildir: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_smtp(dir: &std::path::Path) -> Smtp {
    let run = |args: &[&str]| {
        let s = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(s.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&s.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "smtp.key", "-out", "smtp.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "smtp.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "smtp.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let maildir = dir.join("maildir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "--tlscert",
            "smtp.pem",
            "--tlskey",
            "smtp.key",
        ])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (installed by scripts/test)");
    let smtp = Smtp { child, port, maildir };
    eventually("the SMTP server", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    smtp
}

pub(crate) fn mails(maildir: &std::path::Path) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            for e in rd.flatten() {
                v.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    v
}

#[test]
fn email_arrives_at_a_real_smtp_server_over_starttls() {
    let dir = tempfile::tempdir().expect("tmp");
    let smtp = start_smtp(dir.path());
    let (port, ca) = (smtp.port, dir.path().join("ca.pem"));
    let server = TestServer::with_config(|c| {
        high_rule(c);
        c.notify.smtp_host = "127.0.0.1".into();
        c.notify.smtp_port = port;
        c.notify.smtp_security = "starttls".into();
        c.notify.smtp_from = "Vitals <vitals@example.org>".into();
        c.notify.smtp_ca_file = ca;
        c.notify.contacts = vec![Contact { email: Some("dr.lee@example.org".into()), ..contact("dr-lee") }];
        c.notify.subscriptions = vec![Subscription { contacts: vec!["dr-lee".into()], ..Subscription::default() }];
    });
    glucose(&server, "p-9", &[(NOW - MIN, 222.0)]);
    eventually("the mail", || mails(&smtp.maildir).len() == 1);
    let mail = &mails(&smtp.maildir)[0];
    eventually("the delivery recorded", || notices(&server, "?state=delivered").len() == 1);
    let n = &notices(&server, "?state=delivered")[0];
    for want in [
        "From: Vitals <vitals@example.org>".to_owned(),
        "To: dr.lee@example.org".to_owned(),
        "Subject: [URGENT] high for p-9".to_owned(),
        format!("Message-ID: <{}@vitals>", n["id"].as_str().expect("id")),
        "blood_glucose 222 mg/dL".to_owned(),
    ] {
        assert!(mail.contains(&want), "{want:?} not in\n{mail}");
    }
    // A server that does not offer STARTTLS (here: none listening) is a transient failure.
    drop(smtp);
    glucose(&server, "p-10", &[(NOW - MIN, 230.0)]);
    eventually("a failed attempt", || notices(&server, "?state=pending").iter().any(|n| n["attempts"] == 1));
}

/// The outbox across `kill -9`: a notice whose receiver is down is delivered after a
/// restart, with the same key.
#[test]
fn pending_notices_survive_kill_9_and_are_delivered_after_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let hook = Capture::start();
    hook.respond(503, "down");
    let config = dir.path().join("vitals.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\n[[alerting.rules]]\nname = \"high\"\nexpr = \"blood_glucose > 180\"\nseverity = \"urgent\"\n\
             [notify]\nretry_backoff = \"1s\"\nretry_max_backoff = \"1s\"\nmax_attempts = 1000\n\
             [[notify.contacts]]\nname = \"ward\"\nwebhook = \"{}/h\"\n\
             [[notify.subscriptions]]\ncontacts = [\"ward\"]\n",
            hook.url
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let cfg = config.to_str().expect("utf8").to_owned();
    let server = crate::crash::spawn_server(&data, &[("VITALS_CONFIG", &cfg)]);
    let now = crate::crash::chrono_now_ms();
    let body = json!([{"patient": "p-k", "metric": "blood_glucose", "time": now - 1000, "value": 300}]);
    let r = into_resp(
        agent()
            .post(&format!("{}/api/v1/samples", server.url))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("post"),
    );
    assert_eq!(r.status, 200);
    eventually("an attempt that failed", || !hook.requests().is_empty());
    let key = hook.requests()[0].header("idempotency-key").expect("key").to_owned();
    let mut server = server;
    let killed =
        std::process::Command::new("kill").args(["-9", &server.child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let _ = server.child.wait();
    drop(server);
    hook.respond(200, "{}");
    let server = crate::crash::spawn_server(&data, &[("VITALS_CONFIG", &cfg)]);
    eventually("delivered after the restart", || {
        hook.requests().iter().any(|r| r.header("idempotency-key") == Some(&key)) && {
            let r = into_resp(
                agent()
                    .get(&format!("{}/api/v1/notifications?state=delivered", server.url))
                    .header("Authorization", &format!("Bearer {ADMIN}"))
                    .call()
                    .expect("get"),
            );
            serde_json::from_str::<Value>(&r.body)
                .map(|v| v["notifications"].as_array().map_or(0, Vec::len))
                .unwrap_or(0)
                == 1
        }
    });
    let keys: std::collections::BTreeSet<String> =
        hook.requests().iter().filter_map(|r| r.header("idempotency-key").map(str::to_owned)).collect();
    assert_eq!(keys.len(), 1, "one notice, however many attempts");
}

#[test]
fn bad_parameters_of_the_alert_routes_are_refused_with_stable_codes() {
    let server = TestServer::start();
    for path in [
        "/api/v1/alerts?state=closed",
        "/api/v1/alerts?from=yesterday",
        "/api/v1/notifications?state=lost",
        "/api/v1/notifications?limit=many",
    ] {
        let r = server.get(path, Some(ADMIN));
        assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_query")), "{path}: {}", r.body);
    }
    let (status, body) = post(&server, "/api/v1/alerts/al-x/snooze", &json!({"for": "soon"}));
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_body")));
    assert_eq!(post(&server, "/api/v1/alerts/al-x/snooze", &json!({"for": "10m"})).0, 404);
    let r = server.put_json("/api/v1/cohorts/bad%20name", &json!({"patients": []}));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("invalid_body")), "{}", r.body);
    let r = server.put_json("/api/v1/cohorts/ward", &json!({"patients": ["no spaces allowed"]}));
    assert_eq!(r.status, 400, "{}", r.body);
}
