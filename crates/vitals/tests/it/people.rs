//! People and patients' rights over HTTP: sign-in (cookie, CSRF, lockout, rate limit),
//! token expiry and revocation, patients with identities, export and erasure.

use std::io::Read;

use serde_json::{Value, json};
use vitals_alerts::{Contact, Subscription};

use crate::harness::{ADMIN, NOW, Resp, TestServer, eventually};

fn admin_json(server: &TestServer, method: &str, path: &str, body: &Value) -> Resp {
    server.request(
        method,
        path,
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn login(server: &TestServer, name: &str, password: &str) -> Resp {
    server.request(
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(json!({"name": name, "password": password}).to_string().as_bytes()),
    )
}

#[test]
fn sign_in_gives_a_strict_cookie_changes_need_csrf_and_failures_lock_the_account() {
    let server = TestServer::with_config(|c| {
        c.auth.max_failed_logins = 3;
        c.auth.login_attempts_per_minute = 7;
    });
    let r = admin_json(
        &server,
        "POST",
        "/api/v1/users",
        &json!({"name": "nurse", "role": "clinician",
        "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.contains("correct horse") && !r.body.contains("argon2"), "{}", r.body);

    let ok = login(&server, "nurse", "correct horse battery");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cookie = ok.set_cookie.clone().expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag (HTTPS sets it)");
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let csrf = ok.json()["csrf"].as_str().expect("csrf").to_owned();
    let me = server.request("GET", "/api/v1/me", &[("Cookie", &pair)], None);
    assert_eq!((me.status, me.json()["role"].clone()), (200, json!("clinician")), "{}", me.body);
    // A state change with the cookie but without the CSRF token is refused; with it, allowed.
    let body = br#"{"name":"x","expr":"spo2 < 80"}"#;
    let no_csrf = server.request(
        "POST",
        "/api/v1/rules/backtest",
        &[("Cookie", &pair), ("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("X-CSRF-Token"), "{}", no_csrf.body);
    let with_csrf = server.request(
        "POST",
        "/api/v1/rules/backtest",
        &[("Cookie", &pair), ("Content-Type", "application/json"), ("X-CSRF-Token", &csrf)],
        Some(br#"{"expr":"spo2 < 80","from":0,"to":1}"#),
    );
    assert_ne!(with_csrf.status, 403, "{}", with_csrf.body);
    // A new password ends the user's sessions; a role change to another kind of account is refused.
    let other = login(&server, "nurse", "correct horse battery");
    let other_pair = other.set_cookie.expect("cookie").split(';').next().expect("pair").to_owned();
    let r = admin_json(&server, "PUT", "/api/v1/users/nurse", &json!({"role": "patient"}));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin_json(&server, "PUT", "/api/v1/users/nurse", &json!({"password": "correct horse battery"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.request("GET", "/api/v1/me", &[("Cookie", &other_pair)], None).status, 401, "session ended");
    let ok = login(&server, "nurse", "correct horse battery");
    let pair = ok.set_cookie.clone().expect("cookie").split(';').next().expect("pair").to_owned();
    let csrf = ok.json()["csrf"].as_str().expect("csrf").to_owned();
    let out = server.request("DELETE", "/api/v1/session", &[("Cookie", &pair), ("X-CSRF-Token", &csrf)], None);
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(server.request("GET", "/api/v1/me", &[("Cookie", &pair)], None).status, 401, "signed out");

    // Lockout after 3 failures, with a clear message; the right password does not help then.
    assert_eq!(login(&server, "nurse", "wrong one").status, 401);
    assert_eq!(login(&server, "nurse", "wrong two").status, 401);
    let locked = login(&server, "nurse", "wrong three");
    assert_eq!((locked.status, locked.json()["code"].clone()), (423, json!("account_locked")), "{}", locked.body);
    assert!(locked.json()["message"].as_str().expect("msg").contains("locked until"), "{}", locked.body);
    assert_eq!(login(&server, "nurse", "correct horse battery").status, 423);
    // 7 attempts this minute so far: the 8th is rate-limited whatever it says.
    let limited = login(&server, "nobody", "x");
    assert_eq!((limited.status, limited.json()["code"].clone()), (429, json!("rate_limited")), "{}", limited.body);
    server.clock.advance(15 * 60_000);
    assert_eq!(login(&server, "nurse", "correct horse battery").status, 200, "the lock expired");
    let audit = server.get("/api/v1/audit?action=login.", Some(ADMIN)).json();
    let outcomes: Vec<&str> =
        audit["entries"].as_array().expect("entries").iter().map(|e| e["outcome"].as_str().expect("o")).collect();
    assert_eq!(outcomes, ["ok", "locked", "locked", "denied", "denied", "ok", "ok", "ok"], "newest first");
}

#[test]
fn tokens_expire_and_a_revoked_one_is_refused_at_the_next_request() {
    let server = TestServer::start();
    assert_eq!(admin_json(&server, "POST", "/api/v1/users", &json!({"name": "mum", "role": "caregiver"})).status, 201);
    let r = admin_json(
        &server,
        "POST",
        "/api/v1/tokens",
        &json!({"name": "mum's phone", "user": "mum", "expires_in": "1h"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let t = r.json();
    let secret = t["token"].as_str().expect("secret").to_owned();
    assert_eq!(t["role"], "caregiver");
    assert_eq!(server.get("/api/v1/me", Some(&secret)).status, 200);
    server.clock.advance(3_600_000);
    assert_eq!(server.get("/api/v1/me", Some(&secret)).status, 401, "expired");
    let r = admin_json(&server, "POST", "/api/v1/tokens", &json!({"name": "band", "role": "device", "patient": "p-1"}));
    let dev = r.json();
    let dev_secret = dev["token"].as_str().expect("secret").to_owned();
    let sample = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 60}]).to_string();
    assert_eq!(server.post("/api/v1/samples", Some(&dev_secret), "application/json", sample.as_bytes()).status, 200);
    let id = dev["id"].as_str().expect("id");
    assert_eq!(
        server
            .request("DELETE", &format!("/api/v1/tokens/{id}"), &[("Authorization", &format!("Bearer {ADMIN}"))], None)
            .status,
        204
    );
    assert_eq!(server.post("/api/v1/samples", Some(&dev_secret), "application/json", sample.as_bytes()).status, 401);
    let listed = server.get("/api/v1/tokens", Some(ADMIN));
    assert!(!listed.body.contains(&dev_secret) && listed.body.contains("\"revoked\""), "{}", listed.body);
    let events = server.get("/api/v1/audit?action=people.manage", Some(ADMIN)).json();
    assert!(events["entries"].as_array().expect("e").len() >= 4, "token and user changes are audited");
    // People have accounts; a token without a user may only be admin or device.
    let r = admin_json(&server, "POST", "/api/v1/tokens", &json!({"name": "x", "role": "clinician"}));
    assert_eq!(r.status, 400, "{}", r.body);
}

/// A patient with everything: identity, flushed and buffered samples, an event, an alert
/// with a notice, a dead letter, a cohort, a rule scoped to them. Returns the pseudonym.
fn full_patient(server: &TestServer) -> String {
    let r = admin_json(
        server,
        "POST",
        "/api/v1/patients",
        &json!({"identity": {"name": "Erik Johansson",
        "date_of_birth": "1950-01-02", "external_ids": {"mrn": "H-55501"}}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let p = r.json()["patient"].as_str().expect("pseudonym").to_owned();
    assert_eq!(p.len(), 36, "a UUID: {p}");
    let rule = json!({"name": "erik-tachy", "expr": "heart_rate > 150", "scope": {"patient": p}});
    assert_eq!(admin_json(server, "POST", "/api/v1/rules", &rule).status, 201);
    let c = admin_json(server, "PUT", "/api/v1/cohorts/geriatrics", &json!({"patients": [p, "p-keep"]}));
    assert!(matches!(c.status, 200 | 201), "{}", c.body);
    let hr = |t: i64, v: f64| json!({"patient": p, "metric": "heart_rate", "time": t, "value": v});
    let day = 86_400_000;
    let old: Vec<Value> = (0..3).map(|d| hr(NOW - d * day - 3_600_000, 70.0)).collect();
    assert_eq!(server.ingest(&json!(old)).status, 200);
    server.store.flush().expect("flush");
    let fresh: Vec<Value> = (0..5).map(|i| hr(NOW - 60_000 + i * 1000, 170.0)).collect();
    assert_eq!(server.ingest(&json!(fresh)).status, 200);
    let other = json!([{"patient": "p-keep", "metric": "heart_rate", "time": NOW - 1000, "value": 80}]);
    assert_eq!(server.ingest(&other).status, 200);
    let bad = json!([hr(NOW, 70.0), {"patient": p, "metric": "heart_rate", "time": NOW, "value": "fast"}]);
    assert_eq!(server.ingest(&bad).status, 200);
    let ns = server.request(
        "POST",
        &format!("/nightscout/{p}/api/v1/treatments"),
        &[("api-secret", ADMIN), ("Content-Type", "application/json")],
        Some(br#"[{"eventType":"Meal Bolus","created_at":"2025-11-22T02:50:00.000Z","carbs":45}]"#),
    );
    assert_eq!(ns.status, 200, "{}", ns.body);
    eventually("the alert and its notice", || {
        server.app.alerts.list(Some(&p), None, i64::MIN, i64::MAX).len() == 1
            && !server.app.alerts.notices(None, None, 10).is_empty()
    });
    assert!(!server.app.dead_letters.is_empty());
    p
}

fn with_console_contact(c: &mut vitals_server::config::Config) {
    c.notify.contacts = vec![Contact { name: "ward".into(), console: true, ..Contact::default() }];
    c.notify.subscriptions = vec![Subscription { contacts: vec!["ward".into()], ..Subscription::default() }];
}

#[test]
fn an_export_holds_identity_samples_events_alerts_and_who_read_them() {
    let server = TestServer::with_config(with_console_contact);
    let p = full_patient(&server);
    assert_eq!(server.get(&format!("/api/v1/patients/{p}/identity"), Some(ADMIN)).status, 200);
    let r = server.get_accept(&format!("/api/v1/patients/{p}/export"), Some(ADMIN), "application/zip");
    assert_eq!((r.status, r.content_type.as_deref()), (200, Some("application/zip")), "{}", r.body);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.bytes.clone())).expect("a zip archive");
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap_or_else(|e| panic!("{name}: {e}")).read_to_string(&mut s).expect("read");
        s
    };
    assert!(read("identity.json").contains("Erik Johansson"));
    let csv = read("samples/heart_rate.csv");
    // Header, 3 flushed, 5 buffered and the good half of the partly refused batch.
    assert_eq!(csv.lines().count(), 1 + 3 + 5 + 1, "{csv}");
    assert!(csv.contains(",170,bpm,"), "{csv}");
    assert!(read("events.json").contains("treatment"));
    assert!(read("alerts.json").contains("erik-tachy"));
    assert!(read("notices.json").contains("console") && !read("notices.json").contains("\"log\""), "no addresses");
    let audit = read("audit.json");
    assert!(audit.contains("identity.read") && audit.contains("token:"), "{audit}");
    assert!(read("README.txt").contains(&p));
    assert!(!read("patient.json").contains("p-keep"), "nothing about other patients");
}

#[test]
fn an_export_larger_than_one_read_window_holds_every_sample_once_in_order() {
    let server = TestServer::start();
    let p = "p-big-export";
    // More points than one window of the export (it reads and writes in windows).
    let n = vitals_server::rights::EXPORT_WINDOW_POINTS as i64 + 150_000;
    let start = NOW - n * 100;
    let (patient, metric) =
        (vitals_core::PatientId::new(p).expect("id"), server.app.catalog.id("heart_rate").expect("hr"));
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(vitals_core::Sample {
            patient: patient.clone(),
            metric,
            time_ms: start + i * 100,
            value: (i % 97) as f64,
            device: None,
            id: None,
            source: vitals_core::Source::Native,
        });
        if batch.len() == 100_000 {
            server.store.write(std::mem::take(&mut batch)).expect("write");
        }
    }
    server.store.write(batch).expect("write");
    server.store.flush().expect("flush");
    let r = server.get_accept(&format!("/api/v1/patients/{p}/export"), Some(ADMIN), "application/zip");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.bytes.clone())).expect("a zip archive");
    let mut csv = String::new();
    zip.by_name("samples/heart_rate.csv").expect("samples").read_to_string(&mut csv).expect("read");
    let times: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().expect("time")).collect();
    assert_eq!(times.len() as i64, n, "every sample once");
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in time order, no duplicate");
}

/// Every file under `dir` with its bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

fn holds(bytes: &[u8], s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

#[test]
fn erasure_leaves_no_row_and_no_file_byte_of_the_patient_anywhere_but_the_audit_log() {
    let server = TestServer::with_config(with_console_contact);
    let p = full_patient(&server);
    // The patient is everywhere before.
    let before: Vec<_> = files(server.data_dir()).into_iter().filter(|(_, b)| holds(b, &p)).map(|(f, _)| f).collect();
    assert!(before.len() >= 5, "{before:?}");

    let r = admin_json(&server, "DELETE", &format!("/api/v1/patients/{p}"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!((report["identity"].clone(), report["samples"].clone()), (json!(true), json!(9)), "{report}");
    assert_eq!(
        (report["alerts"].clone(), report["events"].clone(), report["cohorts"].clone()),
        (json!(1), json!(2), json!(1)),
        "{report}: the treatment and the alert's event"
    );
    assert!(report["dead_letters"].as_u64() >= Some(1) && report["notices"].as_u64() >= Some(1), "{report}");

    for (path, bytes) in files(server.data_dir()) {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if name.starts_with("meta.sqlite") {
            continue; // checked table by table below: only the audit log names the pseudonym
        }
        assert!(!path.display().to_string().contains(&p), "{} is left", path.display());
        for secret in [p.as_str(), "Erik Johansson", "H-55501"] {
            assert!(!holds(&bytes, secret), "{} still holds {secret:?}", path.display());
        }
    }
    let db = rusqlite::Connection::open(server.data_dir().join("meta.sqlite")).expect("meta");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("q")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("tables");
    for t in tables.iter().filter(|t| !t.starts_with("audit")) {
        let mut q = db.prepare(&format!("SELECT * FROM {t}")).expect("select");
        let n = q.column_count();
        let mut rows = q.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).expect("value");
                if let rusqlite::types::Value::Text(s) = v {
                    assert!(!s.contains(&p), "table {t} still has a row naming the patient: {s}");
                }
            }
        }
    }
    let erased: Vec<String> = db
        .prepare("SELECT outcome FROM audit WHERE patient = ?1 AND action = 'patient.erase' ORDER BY seq")
        .expect("q")
        .query_map([&p], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("audit");
    assert_eq!(erased, ["requested", "ok"], "the erasure itself is audited, first before it is made");
    // The other patient keeps everything; the API knows nothing of the erased one.
    assert_eq!(server.get("/api/v1/patients/p-keep/latest", Some(ADMIN)).status, 200);
    assert_eq!(server.get(&format!("/api/v1/patients/{p}/latest",), Some(ADMIN)).status, 404);
    assert_eq!(server.get(&format!("/api/v1/patients/{p}/identity"), Some(ADMIN)).status, 404);
    let cohort = server.get("/api/v1/cohorts/geriatrics", Some(ADMIN)).json();
    assert_eq!(cohort["patients"], json!(["p-keep"]));
    assert_eq!(server.get("/api/v1/rules/erik-tachy", Some(ADMIN)).status, 404, "the rule about them alone is gone");
    assert!(!server.get("/api/v1/patients", Some(ADMIN)).body.contains(&p));
}

#[test]
fn a_screen_kept_signed_in_gets_a_30_day_session_and_an_ordinary_sign_in_ends_after_12_hours() {
    let server = TestServer::start();
    let r = admin_json(
        &server,
        "POST",
        "/api/v1/users",
        &json!({"name": "mirror", "role": "caregiver", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let kept = server.request(
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(json!({"name": "mirror", "password": "correct horse battery", "keep": true}).to_string().as_bytes()),
    );
    assert_eq!(kept.status, 200, "{}", kept.body);
    let plain = login(&server, "mirror", "correct horse battery");
    let cookie = |r: &Resp| r.set_cookie.clone().expect("cookie");
    assert!(cookie(&kept).contains("Max-Age=2592000"), "{}", cookie(&kept));
    assert!(cookie(&plain).contains("Max-Age=43200"), "{}", cookie(&plain));
    assert_eq!(kept.json()["expires"], json!(vitals_core::time::format_time(NOW + 30 * 86_400_000)));
    let pair = |r: &Resp| cookie(r).split(';').next().expect("pair").to_owned();
    let me = |r: &Resp| server.request("GET", "/api/v1/me", &[("Cookie", &pair(r))], None).status;
    server.clock.advance(13 * 3_600_000);
    assert_eq!((me(&kept), me(&plain)), (200, 401), "after 13 hours only the kept session is live");
    server.clock.advance(30 * 86_400_000);
    assert_eq!(me(&kept), 401, "and it too ends after 30 days");
    let audit = server.get("/api/v1/audit?action=login.ok", Some(ADMIN)).json();
    let targets: Vec<&str> =
        audit["entries"].as_array().expect("entries").iter().filter_map(|e| e["target"].as_str()).collect();
    assert!(targets.contains(&"user mirror (kept signed in)") && targets.contains(&"user mirror"), "{audit}");
}

#[test]
fn erasure_reaches_the_file_drops_copies_reports_ledger_and_damaged_wal_files() {
    let server = TestServer::with_config(|c| {
        c.file_drop.enabled = true;
        c.file_drop.poll_interval = vitals_core::DurationMs(20);
    });
    let (p, other) = ("p-dropped-1", "p-stays-1");
    let inbox = server.data_dir().join("drop").join("inbox");
    eventually("the inbox", || inbox.exists());
    let hae = br#"{"data":{"metrics":[{"name":"step_count","units":"count","data":[{"date":"2025-11-21 07:41:00 -0800","qty":112}]}]}}"#;
    crate::file_drop::drop_file(&inbox, &format!("{p}/export.json"), hae);
    let line = |who: &str, v: &str| {
        format!("{{\"patient\":\"{who}\",\"metric\":\"heart_rate\",\"time\":{NOW},\"value\":{v}}}\n")
    };
    let mixed = format!("{}{}{}", line(p, "60"), line(other, "61"), line(p, "\"fast\""));
    crate::file_drop::drop_file(&inbox, "mixed.ndjson", mixed.as_bytes());
    eventually("both processed", || {
        std::fs::read_dir(server.data_dir().join("drop").join("processed")).map(|d| d.count()).unwrap_or(0) == 4
    });
    // A WAL file set aside by --repair-wal that holds the patient.
    let wal = server.data_dir().join("wal");
    // (Strings in WAL records are a length byte and the bytes.)
    let record = [&[0u8, 0, 1, p.len() as u8][..], p.as_bytes(), &[10u8][..], b"heart_rate"].concat();
    std::fs::write(wal.join("wal-00000000000000000001.log.damaged"), record).expect("damaged");

    let r = admin_json(&server, "DELETE", &format!("/api/v1/patients/{p}"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(
        (report["dropped_files"].clone(), report["ledger_entries"].clone(), report["damaged_wal_files"].clone()),
        (json!(4), json!(1), json!(1)),
        "{report}: the export and its report, the mixed file and its report"
    );
    for (path, bytes) in files(server.data_dir()) {
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("meta.sqlite")) {
            continue;
        }
        assert!(!path.display().to_string().contains(p), "{} is left", path.display());
        assert!(!holds(&bytes, p), "{} still holds the patient", path.display());
    }
    let processed = server.data_dir().join("drop").join("processed");
    let kept: Vec<String> = std::fs::read_dir(&processed)
        .expect("processed")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("text"))
        .collect();
    assert!(kept.iter().any(|t| t.contains(other)), "the other patient's line stays: {kept:?}");
}

#[test]
fn erasure_and_identity_changes_are_recorded_before_they_are_made() {
    let server = TestServer::start();
    let p = "p-audited-1";
    assert_eq!(server.ingest(&json!([{"patient": p, "metric": "heart_rate", "time": NOW, "value": 60}])).status, 200);
    let identity = json!({"name": "Ada Byron"});
    assert_eq!(admin_json(&server, "PUT", &format!("/api/v1/patients/{p}/identity"), &identity).status, 200);
    assert_eq!(admin_json(&server, "DELETE", &format!("/api/v1/patients/{p}"), &json!({})).status, 200);
    for action in ["identity.update", "patient.erase"] {
        let audit = server.get(&format!("/api/v1/audit?action={action}"), Some(ADMIN)).json();
        // Newest first: the outcome, then the request recorded before the change was made.
        let outcomes: Vec<&str> =
            audit["entries"].as_array().expect("entries").iter().filter_map(|e| e["outcome"].as_str()).collect();
        assert_eq!(outcomes, ["ok", "requested"], "{action}: {audit}");
    }
}

fn login_from(server: &TestServer, client: &str) -> u16 {
    let body = json!({"name": "nobody", "password": "wrong"}).to_string();
    server
        .request(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json"), ("X-Forwarded-For", client)],
            Some(body.as_bytes()),
        )
        .status
}

#[test]
fn the_sign_in_limit_counts_forwarded_clients_only_behind_a_trusted_proxy() {
    // Behind a trusted proxy (the test client is 127.0.0.1): each forwarded client has its budget.
    let server = TestServer::with_config(|c| {
        c.auth.login_attempts_per_minute = 3;
        c.auth.max_failed_logins = 1000;
        c.auth.trusted_proxies = vec!["127.0.0.0/8".parse().expect("network")];
    });
    let statuses: Vec<u16> = (0..4).map(|_| login_from(&server, "203.0.113.5")).collect();
    assert_eq!(statuses, vec![401, 401, 401, 429]);
    assert_eq!(login_from(&server, "198.51.100.7"), 401, "another client is not limited by the first");

    // No trusted proxy: the header is the client's to invent and does not escape the limit.
    let server = TestServer::with_config(|c| {
        c.auth.login_attempts_per_minute = 3;
        c.auth.max_failed_logins = 1000;
    });
    let statuses: Vec<u16> =
        ["203.0.113.5", "198.51.100.7", "192.0.2.1", "192.0.2.2"].iter().map(|ip| login_from(&server, ip)).collect();
    assert_eq!(statuses, vec![401, 401, 401, 429]);
}

#[test]
fn sign_ins_beyond_the_concurrency_cap_are_shed_with_503_and_retry_after() {
    let server = TestServer::with_config(|c| {
        c.auth.max_concurrent_logins = 1;
        c.auth.login_attempts_per_minute = 1000;
    });
    let r = admin_json(
        &server,
        "POST",
        "/api/v1/users",
        &json!({"name": "nurse", "role": "clinician", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Each check takes Argon2's time and 19 MiB: eight at once against a cap of one.
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let all: Vec<_> = (0..8).map(|_| s.spawn(|| login(&server, "nurse", "correct horse battery"))).collect();
        all.into_iter().map(|h| h.join().expect("client")).collect()
    });
    let shed: Vec<&Resp> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(!shed.is_empty(), "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(shed.iter().all(|r| r.retry_after.is_some() && r.json()["code"] == "overloaded"), "{:?}", shed);
    assert!(
        answers.iter().all(|r| [200, 503].contains(&r.status)),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The permits come back: one at a time, every sign-in is checked.
    assert_eq!(login(&server, "nurse", "correct horse battery").status, 200);
}
