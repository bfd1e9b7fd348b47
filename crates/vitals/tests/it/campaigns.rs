//! Campaigns end to end: consent given by a patient and by a clinician, a repeating
//! campaign to a cohort delivered by SMS (a local gateway that checks the request) and
//! email (a real SMTP server), who is skipped and why, the record clinicians see (their
//! patients only), the unsubscribe link (page, one-click POST, tampered tokens), the audit
//! of identity reads, and erasure.

use serde_json::{Value, json};

use crate::harness::{ADMIN, Capture, NOW, Resp, TestServer, eventually};
use crate::notify::{mails, start_smtp};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn call(server: &TestServer, token: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    server.request(
        method,
        path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

fn ok(r: Resp, want: u16) -> Value {
    assert_eq!(r.status, want, "{}", r.body);
    r.json()
}

/// A token acting for a new user.
fn user_token(server: &TestServer, name: &str, role: &str, patient: Option<&str>) -> String {
    let mut body = json!({"name": name, "role": role, "password": "correct horse battery"});
    if let Some(p) = patient {
        body["patient"] = json!(p);
    }
    ok(call(server, ADMIN, "POST", "/api/v1/users", Some(&body)), 201);
    let t = ok(call(server, ADMIN, "POST", "/api/v1/tokens", Some(&json!({"name": name, "user": name}))), 201);
    t["token"].as_str().expect("token").to_owned()
}

/// The token of the first unsubscribe link in a message (an email's is in its
/// `List-Unsubscribe` header, before the body, which is quoted-printable).
fn link_token(text: &str) -> String {
    let at = text.find("/unsubscribe?token=").expect("an unsubscribe link");
    text[at + "/unsubscribe?token=".len()..].split_whitespace().next().expect("token").trim_end_matches('>').to_owned()
}

fn sends(campaign: &Value, occurrence: usize) -> Vec<(String, String)> {
    let runs = campaign["occurrences"].as_array().expect("occurrences");
    // Newest first.
    let run = &runs[runs.len() - 1 - occurrence];
    let mut v: Vec<(String, String)> = run["sends"]
        .as_array()
        .expect("sends")
        .iter()
        .map(|s| (s["patient"].as_str().unwrap_or("").to_owned(), s["state"].as_str().unwrap_or("").to_owned()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_campaign_reaches_the_opted_in_members_it_may_and_the_link_in_each_message_stops_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let smtp = start_smtp(dir.path());
    let (port, ca) = (smtp.port, dir.path().join("ca.pem"));
    let sms = Capture::start();
    sms.respond(201, r#"{"sid":"SM1","status":"queued"}"#);
    let sms_url = format!("{}/2010-04-01/Accounts/AC1/Messages.json", sms.url);
    let server = TestServer::with_config(|c| {
        c.notify.public_url = "https://vitals.example.org".into();
        c.notify.smtp_host = "127.0.0.1".into();
        c.notify.smtp_port = port;
        c.notify.smtp_from = "Vitals <vitals@example.org>".into();
        c.notify.smtp_ca_file = ca;
        c.notify.sms_url = sms_url;
        c.notify.sms_account_sid = "AC1".into();
        c.notify.sms_auth_token = "tok".into();
        c.notify.sms_from = "+15550000000".into();
    });
    // Four patients with their addresses in the vault; a cohort of all four.
    for (p, kind, value) in [
        ("p-1", "phone", "+15550001"),
        ("p-2", "email", "ann@example.org"),
        ("p-3", "phone", "+15550003"),
        ("p-4", "email", "dee@example.org"),
    ] {
        let identity = json!({"name": format!("Person {p}"), "contacts": [{"kind": kind, "value": value}]});
        ok(call(&server, ADMIN, "PUT", &format!("/api/v1/patients/{p}/identity"), Some(&identity)), 200);
    }
    let cohort = json!({"patients": ["p-1", "p-2", "p-3", "p-4"]});
    ok(call(&server, ADMIN, "PUT", "/api/v1/cohorts/ward-3", Some(&cohort)), 201);
    // Dr Lee's care team has p-1..p-3; Ann is patient p-2.
    let lee = user_token(&server, "dr-lee", "clinician", None);
    let team = json!({"members": ["dr-lee"], "patients": ["p-1", "p-2", "p-3"]});
    ok(call(&server, ADMIN, "PUT", "/api/v1/teams/ward", Some(&team)), 200);
    let ann = user_token(&server, "ann", "patient", Some("p-2"));

    // Consent: Ann gives hers by email; Dr Lee records p-1's by SMS; the admin p-4's.
    let mine =
        ok(call(&server, &ann, "PUT", "/api/v1/patients/p-2/campaigns", Some(&json!({"channel": "email"}))), 200);
    assert_eq!(
        (mine["consent"]["channel"].clone(), mine["consent"]["by"].clone()),
        (json!("email"), json!("user:ann"))
    );
    let email = mine["channels"].as_array().expect("channels").iter().find(|c| c["channel"] == "email").cloned();
    assert_eq!(email, Some(json!({"channel": "email", "configured": true, "address_on_file": true})));
    assert_eq!(
        call(&server, &ann, "PUT", "/api/v1/patients/p-1/campaigns", Some(&json!({"channel": "sms"}))).status,
        403
    );
    ok(call(&server, &lee, "PUT", "/api/v1/patients/p-1/campaigns", Some(&json!({"channel": "sms"}))), 200);
    ok(call(&server, ADMIN, "PUT", "/api/v1/patients/p-4/campaigns", Some(&json!({"channel": "email"}))), 200);
    // Refused with the reason: a channel this server does not send, an address not on file.
    let r = call(&server, &lee, "PUT", "/api/v1/patients/p-3/campaigns", Some(&json!({"channel": "telegram"})));
    assert!(r.status == 400 && r.body.contains("not configured"), "{}", r.body);
    let r = call(&server, &lee, "PUT", "/api/v1/patients/p-3/campaigns", Some(&json!({"channel": "email"})));
    assert!(r.status == 400 && r.body.contains("no email address"), "{}", r.body);

    // Dr Lee's weekly campaign, starting in an hour. A bare admin token cannot make one.
    let spec = json!({
        "name": "Flu season", "cohort": "ward-3", "subject": "Your flu shot",
        "message": "Flu shots are free at the clinic this month.",
        "start": NOW + HOUR, "every": "7d",
    });
    assert_eq!(call(&server, ADMIN, "POST", "/api/v1/campaigns", Some(&spec)).status, 403);
    let bad = json!({"name": "x", "cohort": "ward-3", "subject": "s", "message": "m", "every": "5m"});
    let r = call(&server, &lee, "POST", "/api/v1/campaigns", Some(&bad));
    assert!(r.status == 400 && r.body.contains("every"), "{}", r.body);
    let c = ok(call(&server, &lee, "POST", "/api/v1/campaigns", Some(&spec)), 201);
    assert_eq!((c["id"].clone(), c["status"].clone()), (json!("cp-1"), json!("scheduled")));
    assert_eq!(c["next_at"], json!(vitals_core::time::format_time(NOW + HOUR)));

    server.clock.advance(HOUR);
    eventually("the SMS and the email", || sms.requests().len() == 1 && mails(&smtp.maildir).len() == 1);
    // SMS to p-1's phone: the message, then the link; no pseudonym anywhere.
    let form = crate::harness::form_fields(&sms.requests()[0].text());
    assert_eq!(form[0], ("To".to_owned(), "+15550001".to_owned()));
    let text = &form[2].1;
    assert!(text.starts_with("Flu shots are free at the clinic this month."), "{text}");
    assert!(text.contains("https://vitals.example.org/unsubscribe?token=nt-") && !text.contains("p-1"), "{text}");
    let p1_token = link_token(text);
    // Email to Ann, with one-click unsubscribe headers (RFC 2369, RFC 8058).
    let mail = &mails(&smtp.maildir)[0];
    assert!(mail.contains("To: ann@example.org") && mail.contains("Subject: Your flu shot"), "{mail}");
    let ann_token = link_token(mail);
    assert!(
        mail.contains(&format!("List-Unsubscribe: <https://vitals.example.org/unsubscribe?token={ann_token}>")),
        "{mail}"
    );
    assert!(mail.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{mail}");

    // The record: Dr Lee sees the three patients of her team; the admin sees p-4 out of her reach.
    eventually("both delivered", || {
        sends(&ok(call(&server, &lee, "GET", "/api/v1/campaigns/cp-1", None), 200), 0)
            .iter()
            .filter(|(_, s)| s == "delivered")
            .count()
            == 2
    });
    let theirs = ok(call(&server, &lee, "GET", "/api/v1/campaigns/cp-1", None), 200);
    let want: Vec<(String, String)> =
        [("p-1", "delivered"), ("p-2", "delivered"), ("p-3", "skipped")].map(|(p, s)| (p.into(), s.into())).into();
    assert_eq!(sends(&theirs, 0), want);
    assert_eq!(theirs["status"], "active");
    assert_eq!(theirs["next_at"], json!(vitals_core::time::format_time(NOW + HOUR + 7 * DAY)));
    let all = ok(call(&server, ADMIN, "GET", "/api/v1/campaigns/cp-1", None), 200);
    let p4 = all["occurrences"][0]["sends"].as_array().expect("sends").iter().find(|s| s["patient"] == "p-4").cloned();
    assert_eq!(p4.map(|s| s["reason"].clone()), Some(json!("outside the patients its author may reach")));
    let p3 = all["occurrences"][0]["sends"].as_array().expect("sends").iter().find(|s| s["patient"] == "p-3").cloned();
    assert_eq!(p3.map(|s| s["reason"].clone()), Some(json!("not opted in")));
    // Ann sees what she was sent, in plain words.
    let hers = ok(call(&server, &ann, "GET", "/api/v1/patients/p-2/campaigns", None), 200);
    assert_eq!(hers["messages"][0]["name"], "Flu season");
    assert_eq!(hers["messages"][0]["message"], "Flu shots are free at the clinic this month.");
    // The addresses read for the occurrence are in the audit log, patient by patient.
    let audit = ok(call(&server, ADMIN, "GET", "/api/v1/audit?actor=campaign:cp-1", None), 200);
    let mut read: Vec<String> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "identity.read")
        .map(|e| e["patient"].as_str().unwrap_or("").to_owned())
        .collect();
    read.sort();
    assert_eq!(read, ["p-1", "p-2"]);

    // The link: a page that asks (mail scanners open links), then the POST that acts.
    let unsubscribe = |method: &str, token: &str| {
        server.request(
            method,
            &format!("/unsubscribe?token={token}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            (method == "POST").then_some(b"List-Unsubscribe=One-Click".as_slice()),
        )
    };
    let page = unsubscribe("GET", &p1_token);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form method=\"post\"") && page.body.contains(&p1_token), "{}", page.body);
    assert!(ok(call(&server, &lee, "GET", "/api/v1/patients/p-1/campaigns", None), 200)["consent"].is_object());
    let mut forged = p1_token.clone();
    let last = forged.pop().expect("a character");
    forged.push(if last == '0' { '1' } else { '0' });
    for bad in [forged.as_str(), "", "nt-0000000000000000.00000000000000000000000000000000"] {
        let r = unsubscribe("POST", bad);
        assert!(r.status == 400 && r.body.contains("not valid"), "{bad:?}: {}", r.body);
    }
    let done = unsubscribe("POST", &p1_token);
    assert!(done.status == 200 && done.body.contains("You are unsubscribed"), "{}", done.body);
    let p1 = ok(call(&server, &lee, "GET", "/api/v1/patients/p-1/campaigns", None), 200);
    assert_eq!(p1["consent"], Value::Null);
    assert_eq!(
        p1["history"].as_array().expect("history").last().map(|h| h["by"].clone()),
        Some(json!("unsubscribe link"))
    );
    let audit = ok(call(&server, ADMIN, "GET", "/api/v1/audit?action=consent.withdraw", None), 200);
    assert_eq!(audit["entries"][0]["patient"], "p-1");

    // A week later: Ann again, p-1 no more.
    server.clock.advance(7 * DAY);
    eventually("the second occurrence", || {
        ok(call(&server, &lee, "GET", "/api/v1/campaigns/cp-1", None), 200)["occurrences"].as_array().map(Vec::len)
            == Some(2)
    });
    let second = ok(call(&server, &lee, "GET", "/api/v1/campaigns/cp-1", None), 200);
    assert_eq!(sends(&second, 1)[0], ("p-1".to_owned(), "skipped".to_owned()));
    eventually("Ann's second email", || mails(&smtp.maildir).len() == 2);
    assert_eq!(sms.requests().len(), 1, "no SMS after the unsubscribe");
    // Ann's own one-click unsubscribe works the same way.
    assert_eq!(unsubscribe("POST", &ann_token).status, 200);
    assert_eq!(ok(call(&server, &ann, "GET", "/api/v1/patients/p-2/campaigns", None), 200)["consent"], Value::Null);

    // Cancelled, it has no next occurrence.
    let c = ok(call(&server, &lee, "POST", "/api/v1/campaigns/cp-1/cancel", None), 200);
    assert_eq!((c["status"].clone(), c["next_at"].clone()), (json!("cancelled"), Value::Null));

    // Erasing Ann takes her sends and the notices that held her address.
    let notices = ok(call(&server, ADMIN, "GET", "/api/v1/notifications", None), 200);
    assert!(notices.to_string().contains("ann@example.org"));
    assert_eq!(call(&server, ADMIN, "DELETE", "/api/v1/patients/p-2", None).status, 200);
    let notices = ok(call(&server, ADMIN, "GET", "/api/v1/notifications", None), 200);
    assert!(!notices.to_string().contains("ann@example.org"), "{notices}");
    let all = ok(call(&server, ADMIN, "GET", "/api/v1/campaigns/cp-1", None), 200);
    assert!(!all.to_string().contains("\"p-2\""), "{all}");
}

#[test]
fn campaigns_need_a_public_url_and_a_cohort() {
    let server = TestServer::start();
    let lee = user_token(&server, "dr-lee", "clinician", None);
    let spec = json!({"name": "n", "cohort": "ward-3", "subject": "s", "message": "m"});
    let r = call(&server, &lee, "POST", "/api/v1/campaigns", Some(&spec));
    assert!(r.status == 409 && r.body.contains("notify.public_url"), "{}", r.body);
    let server = TestServer::with_config(|c| c.notify.public_url = "https://v.example.org".into());
    let lee = user_token(&server, "dr-lee", "clinician", None);
    let r = call(&server, &lee, "POST", "/api/v1/campaigns", Some(&spec));
    assert!(r.status == 400 && r.body.contains("no cohort"), "{}", r.body);
    // Analysts and caregivers do not make campaigns.
    let analyst = user_token(&server, "an", "analyst", None);
    assert_eq!(call(&server, &analyst, "GET", "/api/v1/campaigns", None).status, 403);
}

#[test]
fn a_withdrawal_stops_a_message_still_waiting_for_its_retry() {
    let sms = Capture::start();
    sms.respond(503, "busy");
    let hook = Capture::start();
    let (sms_url, hook_url) = (format!("{}/2010-04-01/Accounts/AC1/Messages.json", sms.url), hook.url.clone());
    let server = TestServer::with_config(|c| {
        c.notify.public_url = "https://vitals.example.org".into();
        c.notify.retry_backoff = vitals_core::DurationMs(30_000);
        c.notify.sms_url = sms_url;
        c.notify.sms_account_sid = "AC1".into();
        c.notify.sms_auth_token = "tok".into();
        c.notify.sms_from = "+15550000000".into();
        c.notify.contacts =
            vec![vitals_alerts::Contact { name: "ops".into(), webhook: Some(hook_url), ..Default::default() }];
    });
    let identity = json!({"contacts": [{"kind": "mobile", "value": "+15550001"}]});
    ok(call(&server, ADMIN, "PUT", "/api/v1/patients/p-1/identity", Some(&identity)), 200);
    ok(call(&server, ADMIN, "PUT", "/api/v1/cohorts/c", Some(&json!({"patients": ["p-1"]}))), 201);
    ok(call(&server, ADMIN, "PUT", "/api/v1/patients/p-1/campaigns", Some(&json!({"channel": "sms"}))), 200);
    let root = user_token(&server, "root", "admin", None);
    let spec = json!({"name": "n", "cohort": "c", "subject": "s", "message": "m"});
    ok(call(&server, &root, "POST", "/api/v1/campaigns", Some(&spec)), 201);
    // The gateway is busy: the message waits 30 s for its retry.
    let state = || {
        let c = ok(call(&server, ADMIN, "GET", "/api/v1/campaigns/cp-1", None), 200);
        c["occurrences"][0]["sends"][0]["state"].as_str().unwrap_or("").to_owned()
    };
    eventually("the first attempt", || sms.requests().len() == 1 && state() == "pending");
    ok(call(&server, ADMIN, "PUT", "/api/v1/patients/p-1/campaigns", Some(&json!({"channel": null}))), 200);
    assert_eq!(state(), "withdrawn");
    let listed = ok(call(&server, ADMIN, "GET", "/api/v1/notifications?state=withdrawn", None), 200);
    assert_eq!(listed["notifications"][0]["last_error"], "consent withdrawn", "{listed}");
    // Past its retry time, a test message made later goes out; the withdrawn one does not.
    server.clock.advance(60_000);
    ok(call(&server, ADMIN, "POST", "/api/v1/notifications/test", Some(&json!({"contact": "ops"}))), 202);
    eventually("the later message", || hook.requests().len() == 1);
    assert_eq!(sms.requests().len(), 1, "no retry after the withdrawal");
}
