//! The web dashboard: its shell and security headers, the overview endpoint it reads, and
//! an end-to-end run in a real browser (Debian's chromium driven by playwright-core,
//! `e2e/dashboard.mjs`; screenshots in `$CARGO_TARGET_TMPDIR/e2e-artifacts`).

use serde_json::{Value, json};
use vitals_server::auth::{NewToken, Role};

use crate::harness::{ADMIN, NOW, TestServer};

const PASSWORD: &str = "correct horse battery";

/// A clinician "nurse" whose team looks after p-1 (not p-2); both have recent readings.
fn ward() -> TestServer {
    ward_with(|_| {})
}

fn ward_with(f: impl FnOnce(&mut vitals_server::config::Config)) -> TestServer {
    let server = TestServer::with_config(f);
    let d = &server.app.directory;
    d.create_user("nurse", Role::Clinician, Some(PASSWORD), None, NOW).expect("user");
    vitals_server::people::set_team(d.meta(), "ward", &["nurse".into()], &["p-1".into()], NOW).expect("team");
    let mut samples = Vec::new();
    for (p, hr) in [("p-1", 72), ("p-2", 90)] {
        for i in 0..30 {
            samples.push(json!({"patient": p, "metric": "heart_rate", "time": NOW - 60_000 * (30 - i), "value": hr}));
        }
        samples.push(json!({"patient": p, "metric": "blood_glucose", "time": NOW - 120_000, "value": 104}));
        samples.push(
            json!({"patient": p, "metric": "battery_level", "time": NOW - 120_000, "value": 81, "device": "band-1"}),
        );
    }
    samples.push(json!({"patient": "p-3", "metric": "heart_rate", "time": NOW - 5 * 3_600_000, "value": 60}));
    assert_eq!(server.ingest(&Value::Array(samples)).status, 200);
    vitals_server::people::set_team(d.meta(), "ward", &["nurse".into()], &["p-1".into(), "p-3".into()], NOW)
        .expect("team");
    server
}

/// A new API token of the nurse.
fn nurse_token(server: &TestServer) -> String {
    let d = &server.app.directory;
    d.create_token(&NewToken { name: "nurse's", user: Some("nurse"), ..Default::default() }, NOW).expect("token").1
}

#[test]
fn the_app_shell_is_served_with_a_strict_content_security_policy_and_no_credentials() {
    let server = TestServer::start();
    let r = server.request("GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"<script type="module" src="/assets/app.js">"#), "{}", r.body);
    assert!(!r.body.contains("<script>"), "no inline scripts");
    let js = server.request("GET", "/assets/app.js", &[], None);
    assert_eq!((js.status, js.content_type.as_deref()), (200, Some("text/javascript; charset=utf-8")));
    assert_eq!(server.request("GET", "/assets/nope.js", &[], None).status, 404);
    // The headers, read raw.
    let resp = crate::harness::agent().get(&format!("{}/", server.url)).call().expect("get");
    let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = h("content-security-policy");
    for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("referrer-policy"), "no-referrer");
    // Every load asks again (no-cache) and gets the body only when it changed.
    let get = |path: &str, tag: Option<&str>| {
        let mut req = crate::harness::agent().get(&format!("{}{path}", server.url));
        if let Some(t) = tag {
            req = req.header("If-None-Match", t);
        }
        req.call().expect("get")
    };
    let first = get("/assets/uPlot.iife.min.js", None);
    let tag = first.headers().get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_owned();
    assert_eq!(first.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"));
    let mut again = get("/assets/uPlot.iife.min.js", Some(&tag));
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(again.body_mut().read_to_string().expect("body"), "", "no body for an unchanged asset");
    assert!(again.headers().get("content-security-policy").is_some(), "a 304 is secured too");
    assert_eq!(get("/assets/uPlot.iife.min.js", Some("\"stale\"")).status().as_u16(), 200);
    let shell = get("/", None);
    let shell_tag = shell.headers().get("etag").and_then(|v| v.to_str().ok()).expect("the shell's ETag").to_owned();
    assert_ne!(shell_tag, tag);
    assert_eq!(get("/", Some(&shell_tag)).status().as_u16(), 304);
}

#[test]
fn the_overview_shows_the_callers_patients_with_latest_values_alerts_battery_and_staleness() {
    let server = ward();
    // Heart rate 3 h and 25 h ago too: the sparkline holds the hourly means of the last 24 h.
    let older = json!([
        {"patient": "p-1", "metric": "heart_rate", "time": NOW - 3 * 3_600_000, "value": 60},
        {"patient": "p-1", "metric": "heart_rate", "time": NOW - 3 * 3_600_000 + 1000, "value": 62},
        {"patient": "p-1", "metric": "heart_rate", "time": NOW - 25 * 3_600_000, "value": 50},
    ]);
    assert_eq!(server.ingest(&older).status, 200);
    let token = nurse_token(&server);
    let r = server.get("/api/v1/overview", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let patients = v["patients"].as_array().expect("patients");
    let ids: Vec<&str> = patients.iter().map(|p| p["patient"].as_str().expect("id")).collect();
    assert_eq!(ids, ["p-1", "p-3"], "only the team's patients");
    assert_eq!(patients[0]["latest"]["heart_rate"]["value"], json!(72.0));
    assert_eq!(patients[0]["latest"]["blood_glucose"]["unit"], json!("mg/dL"));
    assert_eq!((patients[0]["battery"].clone(), patients[0]["stale"].clone()), (json!(81.0), json!(false)));
    assert_eq!(patients[1]["stale"], json!(true), "nothing for 5 hours");
    assert_eq!(patients[0]["open_alerts"], json!(0));
    let spark = &patients[0]["spark"];
    assert_eq!(spark["metric"], json!("heart_rate"));
    assert_eq!((spark["from"].clone(), spark["to"].clone()), (json!(NOW - 23 * 3_600_000), json!(NOW + 3_600_000)));
    assert_eq!(spark["t"], json!([NOW - 3 * 3_600_000, NOW - 3_600_000]), "{spark}");
    assert_eq!(spark["v"], json!([61.0, 72.0]));
    assert_eq!(patients[1]["spark"]["t"], json!([NOW - 5 * 3_600_000]));
    assert_eq!(server.get("/api/v1/overview", Some(ADMIN)).json()["patients"].as_array().map(Vec::len), Some(3));
}

/// Runs an e2e script against `server` as `user`: what it saw, as JSON.
fn browse(server: &TestServer, script: &str, user: &str, env: &[(&str, &str)]) -> Value {
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifacts");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e").join(script);
    let out = std::process::Command::new("node")
        .arg(&script)
        .env("VITALS_URL", &server.url)
        .env("VITALS_USER", user)
        .env("VITALS_PASSWORD", PASSWORD)
        .env("ARTIFACTS", &artifacts)
        .envs(env.iter().copied())
        .output()
        .expect("node (installed by scripts/test)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn an_admin_sees_system_health_people_teams_and_dead_letters_and_revokes_a_token_in_a_real_browser() {
    let server = ward();
    server.app.directory.create_user("root", Role::Admin, Some(PASSWORD), None, NOW).expect("admin");
    let (_, band) = server
        .app
        .directory
        .create_token(
            &NewToken { name: "band", role: Some(Role::Device), patient: Some("p-1"), ..Default::default() },
            NOW,
        )
        .expect("token");
    server
        .app
        .directory
        .register_cert("wristband w1", "w1", Some("p-1"), b"not a real certificate", NOW)
        .expect("cert");
    let bad = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": "fast"}]);
    assert_eq!(server.ingest(&bad).status, 200);
    let seen = browse(&server, "admin.mjs", "root", &[]);
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    assert_eq!(seen["system_status"], json!("ok"));
    assert_eq!(seen["a11y"], json!([]), "no WCAG 2.1 A/AA rule broken (axe-core)");
    // A phone: the wide tables scroll on their own (focusable regions), the page does not.
    assert_eq!(seen["phone_overflows"], json!(false), "{seen}");
    assert!(seen["phone_scrolling_tables"].as_u64().is_some_and(|n| n >= 1), "{seen}");
    assert_eq!(seen["phone_a11y"], json!([]), "{seen}");
    assert!(seen["rate"].as_str().is_some_and(|r| r.ends_with("samples/s")), "{seen}");
    let names: Vec<&str> = seen["users"].as_array().expect("users").iter().filter_map(|u| u[0].as_str()).collect();
    assert_eq!(names, ["nurse", "root"]);
    assert_eq!(seen["teams"], json!([["ward", "nurse", "p-1, p-3"]]));
    assert_eq!(seen["dead_letters"].as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(seen["revoke_status"], json!("Revoked token band"));
    let row = seen["tokens"].as_array().and_then(|t| t.iter().find(|r| r[0] == "band")).cloned();
    assert_eq!(row.map(|r| r[3].clone()), Some(json!("revoked")), "{seen}");
    assert_eq!(seen["devices"], json!([["wristband w1", "w1", "p-1", "revoked", ""]]), "{seen}");
    assert!(
        server.app.directory.meta().device_certs().expect("certs")[0].revoked_ms.is_some(),
        "revoked on the server"
    );
    assert!(seen["file_drop_text"].as_str().is_some_and(|t| t.contains("The file-drop watcher is off")), "{seen}");
    let sample = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": 70}]).to_string();
    assert_eq!(server.post("/api/v1/samples", Some(&band), "application/json", sample.as_bytes()).status, 401);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifacts/admin.png");
    assert!(shot.metadata().is_ok_and(|m| m.len() > 1000), "admin.png saved");
    assert!(shot.with_file_name("admin-phone.png").metadata().is_ok_and(|m| m.len() > 1000), "admin-phone.png saved");
}

#[test]
fn a_clinician_signs_in_sees_patients_acknowledges_an_alert_and_the_kiosk_fits_800x480_in_a_real_browser() {
    // Oura's sign-in and token endpoint, stood in for by a local server.
    let oura = crate::harness::Capture::start();
    // Every answer is the token answer (the sign-in page's content does not matter here).
    oura.respond(
        200,
        r#"{"access_token":"browser-at","token_type":"bearer","expires_in":86400,"refresh_token":"browser-rt"}"#,
    );
    let server = ward_with(|c| {
        c.connections.endpoints.insert("oura".into(), oura.url.clone());
        c.connections.public_url = "http://vitals.test".into();
        c.connections.oura_client_id = "oura-client".into();
        c.connections.oura_client_secret = "oura-secret".into();
    });
    let rule = json!({"name": "hr-over-70", "expr": "heart_rate > 70", "severity": "urgent",
        "description": "Heart rate above 70"});
    let r = server.request(
        "POST",
        "/api/v1/rules",
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(rule.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // An hour of glucose for p-1: the kiosk's trend.
    let glucose: Vec<Value> = (1..=6)
        .map(|i| json!({"patient": "p-1", "metric": "blood_glucose", "time": NOW - 600_000 * i - 150_000, "value": 100 + i}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(glucose)).status, 200);
    // Three older readings of p-3 (80, 90, 250 mg/dL): the glucose comparison.
    let p3: Vec<Value> = [80, 90, 250]
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"patient": "p-3", "metric": "blood_glucose", "time": NOW - 6 * 3_600_000 - 600_000 * i as i64, "value": v}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(p3)).status, 200);
    // Steps: 100 an hour for the last 3 days (ending 02:00 UTC today: 3 x 24 + 2 hours).
    let day_start = NOW - NOW % 86_400_000;
    let steps: Vec<Value> = (0..74)
        .map(|h| json!({"patient": "p-1", "metric": "step_count", "time": day_start + 2 * 3_600_000 - (h + 1) * 3_600_000, "value": 100}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(steps)).status, 200);
    // 40 mornings of p-3's resting heart rate (09:00), 58 bpm give or take 1, the last two
    // 65: an open anomaly since two nights ago.
    let rhr: Vec<Value> = (1..=40)
        .map(|n| {
            let v = if n <= 2 { 65.0 } else { 58.0 + [0.0, 1.0, -1.0][(n % 3) as usize] };
            json!({"patient": "p-3", "metric": "resting_heart_rate", "time": day_start - n * 86_400_000 + 9 * 3_600_000, "value": v})
        })
        .collect();
    assert_eq!(server.ingest(&Value::Array(rhr)).status, 200);
    // 20 days of p-3's heart rate before yesterday, every 10 minutes: 52 bpm from 00:00 to
    // 06:00 UTC, 64 by day (under the rule's 70): its usual band for each hour.
    let hr: Vec<Value> = (2..=21)
        .flat_map(|n| (0..144).map(move |m| (n, m)))
        .map(|(n, m)| {
            let v = if m < 36 { 52 } else { 64 };
            json!({"patient": "p-3", "metric": "heart_rate", "time": day_start - n * 86_400_000 + m * 600_000, "value": v})
        })
        .collect();
    assert_eq!(server.ingest(&Value::Array(hr)).status, 200);
    crate::harness::eventually("alerts for p-1 and p-2", || {
        server.get("/api/v1/alerts?state=open", Some(ADMIN)).json()["alerts"].as_array().map(Vec::len) == Some(2)
    });
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifacts");
    let now = NOW.to_string();
    let env = [
        ("VITALS_KIOSK_PATIENT", "p-1"),
        ("TZ", "UTC"),
        ("VITALS_DEVICE_TOKEN", crate::harness::DEVICE),
        ("VITALS_NOW", &now),
        ("VITALS_ADMIN_TOKEN", ADMIN),
    ];
    let seen = browse(&server, "dashboard.mjs", "nurse", &env);
    assert_eq!(seen["wrong_password_message"], json!("wrong user name or password"));
    assert_eq!(seen["who"], json!("nurse (clinician)"));
    assert_eq!(seen["admin_link_hidden"], json!(true), "no admin view for a clinician");
    let rows = seen["rows"].as_array().expect("rows");
    assert_eq!(rows.iter().map(|r| r["patient"].clone()).collect::<Vec<_>>(), [json!("p-1"), json!("p-3")]);
    let cells: Vec<&str> =
        rows[0]["cells"].as_array().expect("cells").iter().map(|c| c.as_str().expect("text")).collect();
    assert_eq!(cells, ["p-1", "72 bpm", "", "104 mg/dL", "–", "81 %", "1", "60 s ago"], "{cells:?}");
    assert_eq!(
        (rows[0]["spark"].clone(), rows[1]["spark"].clone()),
        (json!(1), json!(1)),
        "one hour of heart rate each"
    );
    assert_eq!(rows[1]["stale"], json!(true));
    assert_eq!(
        (seen["filter_stale"].clone(), seen["filter_alerts"].clone(), seen["filter_search"].clone()),
        (json!(["p-3"]), json!(["p-1"]), json!(["p-3"])),
        "{seen}"
    );
    assert_eq!(seen["cookie"], json!({"httpOnly": true, "sameSite": "Strict"}));
    assert!(seen["cookie_hours"].as_f64().is_some_and(|h| (11.9..=12.0).contains(&h)), "a 12-hour session: {seen}");
    assert_eq!(seen["patient_title"], json!("Patient p-1"));
    assert_eq!(seen["latest_rows"], json!(4), "heart rate, glucose, battery, steps");
    assert_eq!(
        seen["devices"],
        json!([["band-1", "0 s ago", "81 %", "–", "–", "1", "native", "Heard from"]]),
        "the device table: heard when its readings arrived (the server's clock)"
    );
    // Vendor accounts: connected with the form (sealed by the server; never pulled here),
    // shown with their state, then disconnected with the row's button.
    assert_eq!(
        seen["connections"],
        json!([["LibreLinkUp", "Active", "never", "never", "0", "–"], ["Oura", "Active", "never", "never", "0", "–"]]),
        "{seen}"
    );
    // Oura: the form sent the browser to Oura's sign-in, which was to send it back to the
    // dashboard; the code it came back with was exchanged, and the grant revoked on disconnect.
    assert_eq!(seen["oauth_redirect"], json!("http://vitals.test/"), "{seen}");
    let asked: Vec<(String, String)> = oura
        .requests()
        .iter()
        .filter(|r| r.path != "/favicon.ico")
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked[0].1.starts_with("/oauth/authorize?response_type=code&client_id=oura-client&"), "{asked:?}");
    assert_eq!(asked[1], ("POST".to_owned(), "/oauth/token".to_owned()));
    let token = oura.requests().into_iter().find(|r| r.path == "/oauth/token").expect("token request");
    assert!(token.text().contains("code=browser-code"), "{asked:?}");
    assert_eq!(asked[2], ("GET".to_owned(), "/oauth/revoke?access_token=browser-at".to_owned()));
    assert_eq!(seen["connections_after_disconnect"], json!(0), "{seen}");
    assert!(server.app.connections.of_patient("p-1").is_empty(), "disconnected on the server");
    // 6 h in about 1100 px: 30 s buckets, so each of the 30 minute readings is one point;
    // glucose: the 7 readings. 24 h: 2 min buckets, 15 of them hold the last 30 minutes.
    assert_eq!(seen["chart_6h"], json!({"heart_rate": 30, "blood_glucose": 7}), "{seen}");
    assert_eq!(seen["chart_alerts"], json!(1), "the alert episode is drawn on the charts");
    assert_eq!(seen["chart_canvases"], json!(2), "one uPlot canvas per panel");
    let label = seen["chart_labels"][0].as_str().unwrap_or_default();
    assert!(
        label.starts_with("Heart rate from ") && label.ends_with("lowest 72.0, highest 72.0, last 72.0 bpm"),
        "{label}"
    );
    let readouts: Vec<&str> = seen["readouts"].as_array().expect("readouts").iter().filter_map(Value::as_str).collect();
    assert!(
        readouts[0].ends_with(": Heart rate 72 bpm") && readouts[1].ends_with(": Glucose 104 mg/dL"),
        "{readouts:?}"
    );
    assert_eq!(seen["live_sent"], json!(200));
    assert_eq!(seen["chart_live"]["heart_rate"], json!(31), "the new reading arrived by server-sent event: {seen}");
    assert_eq!(seen["chart_24h"]["heart_rate"], json!(15), "{seen}");
    // Dragged from a quarter to three quarters of the 24 h chart: the middle 12 hours (to the
    // pixel: one pixel is about a minute).
    let d = &seen["drag"];
    let ms = |k: &str, i: usize| d[k][i].as_f64().expect("ms");
    let (span, px) = (ms("before", 1) - ms("before", 0), d["plot_width"].as_f64().expect("width"));
    assert!((span - 86_400_000.0).abs() < 1.0, "{d}");
    assert!((ms("after", 0) - (ms("before", 0) + span / 4.0)).abs() <= 2.0 * span / px, "{d}");
    assert!((ms("after", 1) - ms("after", 0) - span / 2.0).abs() <= 2.0 * span / px, "{d}");
    assert_eq!(seen["typed_range"], json!([NOW - 15 * 3_600_000, NOW - 3 * 3_600_000]), "12:00 to 00:00 UTC");
    assert_eq!(seen["typed_error"], json!("The start must be before the end."));
    assert_eq!(seen["chart_panned"], json!({"heart_rate": 0, "blood_glucose": 0}), "panned 6 h back, before any data");
    assert!(seen["url_after_open"].as_str().is_some_and(|u| u.ends_with("/#/patient/p-1")), "{seen}");
    // Glucose over 14 days: 7 readings of 101-106 mg/dL (mean 103.6, GMI 3.31 + 0.02392 x
    // 103.6 = 5.8 %), all in range; readings in 30 min buckets, 3 of them; the profile's
    // 30 min slots 01:30, 02:00, 02:30; one hourly 2-day average point (02:00).
    let g = &seen["glucose"];
    assert_eq!(g[0], json!(["Last 14 days", "p-1"]), "{g}");
    let stat = |name: &str| g.as_array().and_then(|rows| rows.iter().find(|r| r[0] == name)).map(|r| r[1].clone());
    assert_eq!(stat("Readings"), Some(json!("7")));
    assert_eq!(stat("Mean glucose"), Some(json!("104 mg/dL")));
    assert_eq!(stat("GMI"), Some(json!("5.8 %")));
    assert_eq!(stat("Time in range 70–180"), Some(json!("100.0 %")));
    assert_eq!(stat("Below 54"), Some(json!("0.0 %")));
    // Variability: the sample SD of 101..106 and 104 is 1.72; one day has no day-to-day
    // difference.
    assert_eq!(stat("SD"), Some(json!("1.7 mg/dL")));
    assert_eq!(stat("MODD"), Some(json!("–")));
    assert_eq!(stat("GRI"), Some(json!("0.0")));
    assert_eq!(
        seen["glucose_canvas"],
        json!([{"points": "3", "average": "1"}, {"slots": "3", "compared": "0"}]),
        "{seen}"
    );
    let compared = &seen["glucose_compared"];
    assert_eq!(compared[0], json!(["Last 14 days", "p-1", "p-3"]), "{compared}");
    assert_eq!(compared[1], json!(["Readings", "7", "3"]));
    assert_eq!(
        seen["glucose_tir"],
        json!([["p-1", [["in", "100.0"]]], ["p-3", [["in", "66.7"], ["high", "33.3"]]]]),
        "time in ranges, one bar each: {seen}"
    );
    assert_eq!(seen["glucose_profile_compared"], json!(1), "p-3's median on p-1's profile");
    // Baselines: p-3 is watched, with one open anomaly explained, and its resting rate
    // (and the steps it has none of) drawn in the band.
    let date = |ms: i64| vitals_core::time::format_time(ms)[..10].to_owned();
    assert_eq!(seen["baseline_status"], json!("watching"), "{seen}");
    let anomalies = seen["anomalies"].as_array().expect("anomalies");
    assert_eq!(anomalies.len(), 1, "{seen}");
    let text = anomalies[0].as_str().expect("text");
    let since = date(day_start - 2 * 86_400_000);
    assert!(
        text.starts_with(&format!(
            "Since {since} (open): For 2 nights since {since}: resting heart rate 65.0 bpm (+7.0 bpm"
        )),
        "{text}"
    );
    assert_eq!(
        seen["recommendations"],
        json!([["rest", "Rest: resting heart rate raised (+7 bpm) for 2 nights"]]),
        "two raised nights: rest, shown to a clinician with its title: {seen}"
    );
    assert_eq!(
        seen["baseline_figures"],
        json!([["baseline-resting_heart_rate", {"nights": "40", "banded": "27"}]]),
        "40 nights with a value; a band from the night with 14 nights in its 28-day window (26 nights ago) to today's: {seen}"
    );
    // The AGP report: p-1's statistics with their targets, variability, one printed page.
    let stats = seen["report_stats"].as_array().expect("report stats");
    let row = |name: &str| stats.iter().find(|r| r[0] == name).cloned();
    assert_eq!(row("Readings"), Some(json!(["Readings", "7", ""])), "{seen}");
    assert_eq!(row("Mean glucose"), Some(json!(["Mean glucose", "104 mg/dL", ""])));
    assert_eq!(row("In range, 70–180 mg/dL"), Some(json!(["In range, 70–180 mg/dL", "100.0 %", "over 70 %"])));
    assert_eq!(seen["report_risk"], json!(8), "SD, MAGE, MODD, CONGA, LBGI, HBGI, GRI, J-index");
    assert_eq!(seen["report_pdf_pages"], json!(1), "the report prints on one A4 page");
    assert_eq!(seen["report_print_widths"], json!([700, 700]), "the profile fits the printed page's width");
    // Daily steps: 4 days with steps (3 whole days before today and today's 2 hours), the
    // latest day 200 steps; hourly: the 48 hours up to 03:00, of which 02:00-03:00 has none.
    assert_eq!(seen["daily"]["bars"], json!(4), "{seen}");
    assert_eq!(seen["daily"]["last"], json!("200 count"), "{seen}");
    assert_eq!(seen["daily"]["hourly_bars"], json!(47), "{seen}");
    // The inbox shows the nurse's patient's alert only; one click acknowledges it.
    assert_eq!((seen["inbox_before"].clone(), seen["inbox_patients"].clone()), (json!(1), json!(["p-1"])), "{seen}");
    assert_eq!(seen["ack_status"], json!("Acknowledged hr-over-70 for p-1"));
    assert_eq!(seen["inbox_after"], json!(0));
    assert_eq!(seen["history_states"], json!(["acknowledged by nurse"]));
    assert!(seen["rules"].as_array().is_some_and(|r| r.contains(&json!("hr-over-70"))), "{seen}");
    let acked = server.get("/api/v1/alerts?patient=p-1", Some(ADMIN)).json();
    let first = acked["alerts"].as_array().and_then(|a| a.iter().find(|a| a["rule"] == "hr-over-70")).cloned();
    assert_eq!(first.map(|a| a["acknowledged_by"].clone()), Some(json!("nurse")), "the click reached the server");
    // The kiosk: the alert banner (acknowledged is still active), big numbers, the trend.
    let k = &seen["kiosk"];
    assert_eq!(k["banner"], json!("Alert: Heart rate above 70"), "{k}");
    assert_eq!(k["heart_rate"], json!("74"), "the reading sent live is the latest");
    // Steps since (UTC) midnight: 00:00 and 01:00; that reading is 2 hours old, so marked.
    assert_eq!(
        k["tiles"],
        json!([["Heart rate", "74", "bpm"], ["Glucose", "104", "mg/dL"], ["Steps today", "200", "steps, 2 h ago"]]),
        "{k}"
    );
    let offline = k["offline"].as_str().unwrap_or_default();
    assert!(offline.starts_with("Not updated since ") && offline.ends_with(": the server cannot be reached"), "{k}");
    assert!(k["recovered"].as_str().is_some_and(|t| t.starts_with("Updated ")), "{k}");
    assert!(k["trend_points"].as_u64().is_some_and(|n| n >= 3), "{k}");
    assert!(k["heart_rate_font_px"].as_f64().is_some_and(|px| px >= 60.0), "{k}");
    assert_eq!((k["overflows"].clone(), k["header_hidden"].clone()), (json!(false), json!(true)), "{k}");
    assert_eq!(seen["signed_out"], json!(true));
    // The views keep themselves current.
    let p3: Vec<&str> = seen["refreshed_p3"].as_array().expect("p-3").iter().filter_map(Value::as_str).collect();
    assert_eq!((p3[1], p3[7]), ("61 bpm", "10 s ago"), "{p3:?}");
    assert_eq!(seen["inbox_quiet"], json!(0));
    assert_eq!(seen["inbox_announced"], json!("1 new alert"), "{seen}");
    assert!(
        seen["inbox_new"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0].as_str().is_some_and(|t| t.starts_with("Heart rate above 78"))),
        "{seen}"
    );
    // The phone: nothing wider than the screen; a one-finger drag of half the chart's width
    // moves 6 h back by 3 h, a pinch from 20 % to 50 % of the width zooms to 40 % of the span
    // around the same middle (a few pixels of rounding allowed).
    let ph = &seen["phone"];
    assert!(ph["cookie_days"].as_f64().is_some_and(|d| (29.9..=30.0).contains(&d)), "kept signed in: {ph}");
    assert_eq!((ph["overflows"].clone(), ph["patients_overflow"].clone()), (json!(false), json!(false)), "{ph}");
    let at = |k: &str, i: usize| ph[k][i].as_f64().expect("ms");
    let tolerance = 0.02 * 6.0 * 3_600_000.0;
    assert!((at("start", 1) - at("start", 0) - 6.0 * 3_600_000.0).abs() < 1.0, "{ph}");
    assert!((at("swiped", 0) - at("start", 0) + 3.0 * 3_600_000.0).abs() < tolerance, "{ph}");
    assert!((at("swiped", 1) - at("swiped", 0) - 6.0 * 3_600_000.0).abs() < 1.0, "a drag keeps the span: {ph}");
    assert!((at("pinched", 1) - at("pinched", 0) - 0.4 * 6.0 * 3_600_000.0).abs() < tolerance, "{ph}");
    let middle = |k: &str| (at(k, 0) + at(k, 1)) / 2.0;
    assert!((middle("pinched") - middle("swiped")).abs() < tolerance, "{ph}");
    // Local days at UTC+5:30 start at 18:30 UTC: of the 74 hourly steps, 19 fall on the
    // first day, 24 on each of the next two and 7 (18:30-01:00 UTC) on today; the 48 local
    // hours up to 09:00 IST hold 46 of them.
    assert_eq!(ph["daily"], json!({"bars": 4, "last": "700 count", "hourly_bars": 46}), "{ph}");
    // axe-core: no WCAG 2.1 A/AA rule broken on any view.
    let a11y = seen["a11y"].as_object().expect("a11y");
    assert_eq!(a11y.len(), 14, "every view checked: {a11y:?}");
    assert_eq!(seen["profile_hours"], json!(24), "p-3's usual heart rate for every hour: {seen}");
    assert_eq!(seen["usual_legend"], json!(true));
    for (view, violations) in a11y {
        assert_eq!(violations, &json!([]), "{view}");
    }
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    // The two 401s the browser logs are expected (`/me` before signing in, the wrong
    // password), and the refused connections of the kiosk's simulated outage; anything else
    // would be a CSP violation, a missing asset or a bug.
    let console: Vec<&str> =
        seen["console_errors"].as_array().expect("errors").iter().filter_map(Value::as_str).collect();
    assert!(console.iter().all(|e| e.contains("401") || e.contains("ERR_CONNECTION_REFUSED")), "{console:?}");
    assert_eq!(console.iter().filter(|e| e.contains("401")).count(), 2, "{console:?}");
    for shot in [
        "patients.png",
        "patient.png",
        "glucose.png",
        "glucose-compared.png",
        "daily.png",
        "alerts.png",
        "kiosk-800x480.png",
        "kiosk-offline.png",
        "patients-800x480.png",
        "phone-patient.png",
        "phone-patients.png",
        "phone-daily-kolkata.png",
    ] {
        assert!(artifacts.join(shot).metadata().is_ok_and(|m| m.len() > 1000), "{shot} saved");
    }
}

#[test]
fn the_chart_endpoint_downsamples_to_the_width_in_round_buckets_and_refuses_bad_queries() {
    let server = ward();
    let q = |query: &str| server.get(&format!("/api/v1/patients/p-1/chart?{query}"), Some(ADMIN));
    // 30 minute readings over the last hour at width 12: 5-minute buckets, 6 with data.
    let r = q(&format!("metrics=heart_rate,blood_glucose&from={}&to={}&width=12", NOW - 3_600_000, NOW));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["every_ms"], json!(300_000));
    let hr = &v["series"][0];
    assert_eq!((hr["metric"].clone(), hr["unit"].clone()), (json!("heart_rate"), json!("bpm")));
    let t = hr["t"].as_array().expect("t");
    assert_eq!(t.len(), 6, "{hr}");
    assert!(t.iter().all(|x| x.as_i64().is_some_and(|x| x % 300_000 == 0)), "bucket starts: {hr}");
    assert_eq!(hr["count"], json!([5.0, 5.0, 5.0, 5.0, 5.0, 5.0]));
    assert_eq!(
        (hr["min"][0].clone(), hr["max"][0].clone(), hr["mean"][0].clone()),
        (json!(72.0), json!(72.0), json!(72.0))
    );
    assert_eq!(v["series"][1]["count"], json!([1.0]), "one glucose reading");
    // A year at 1000 px: whole-hour buckets (the rollups answer).
    let r = q(&format!("metrics=heart_rate&from={}&to={NOW}&width=1000", NOW - 365 * 86_400_000));
    assert_eq!(r.json()["every_ms"], json!(9 * 3_600_000));
    for bad in [
        "metrics=nope&from=0&to=1",
        "metrics=heart_rate&from=5&to=1",
        "metrics=heart_rate&from=0&to=1&width=5",
        "metrics=&from=0&to=1",
    ] {
        let r = q(bad);
        assert!(matches!(r.status, 400 | 404), "{bad}: {} {}", r.status, r.body);
    }
}

#[test]
fn the_glucose_endpoint_computes_consensus_metrics_profile_and_moving_average() {
    let server = TestServer::start();
    // Two days of readings every 30 min: 50, 100, 200, 300 in turn.
    let cycle = [50.0, 100.0, 200.0, 300.0];
    let readings: Vec<Value> = (0..96)
        .map(|i| json!({"patient": "g-1", "metric": "blood_glucose", "time": NOW - 1_800_000 * (96 - i), "value": cycle[(i % 4) as usize]}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(readings)).status, 200);
    let r = server.get(
        &format!("/api/v1/patients/g-1/glucose?from={}&to={NOW}&tz_offset_min=60", NOW - 2 * 86_400_000),
        Some(ADMIN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let s = &v["summary"];
    assert_eq!(s["readings"], json!(96));
    assert_eq!(s["mean"], json!(162.5));
    for (k, want) in [
        ("very_low_percent", 25.0),
        ("in_range_percent", 25.0),
        ("high_percent", 25.0),
        ("very_high_percent", 25.0),
        ("low_percent", 0.0),
    ] {
        assert_eq!(s[k], json!(want), "{k}: {s}");
    }
    let gmi = s["gmi_percent"].as_f64().expect("gmi");
    assert!((gmi - (3.31 + 0.02392 * 162.5)).abs() < 1e-9);
    assert_eq!(v["agp"].as_array().map(Vec::len), Some(48), "every 30-minute slot of the day");
    let ma = v["moving_average"]["mean"].as_array().expect("ma");
    assert!(!ma.is_empty() && ma.iter().all(|m| m.as_f64().is_some_and(|m| (50.0..=300.0).contains(&m))));
    // Variability: a 2-hour cycle repeats every day, so MODD is 0; a quarter of readings
    // very low and a half above 180 put the GRI at its cap; LBGI from 50 and 100 mg/dL.
    let var = &v["variability"];
    let f = |g: f64| 1.509 * (g.ln().powf(1.084) - 5.381);
    let got = |k: &str| var[k].as_f64().unwrap_or_else(|| panic!("{k}: {var}"));
    assert!((got("lbgi") - 10.0 * (f(50.0).powi(2) + f(100.0).powi(2)) / 4.0).abs() < 1e-9, "{var}");
    assert!((got("hbgi") - 10.0 * (f(200.0).powi(2) + f(300.0).powi(2)) / 4.0).abs() < 1e-9, "{var}");
    assert_eq!(var["gri"], json!(100.0));
    assert!(got("modd").abs() < 1e-9, "{var}");
    assert_eq!(var["grid_step_min"], json!(30));
    let sd = got("sd");
    assert!((got("j_index") - 0.001 * (162.5 + sd).powi(2)).abs() < 1e-9);
    assert!(got("mage") > 100.0 && got("conga1") > 0.0, "swings of 250 mg/dL: {var}");
    assert_eq!(server.get("/api/v1/patients/g-1/glucose?from=5&to=1", Some(ADMIN)).status, 400);
}

#[test]
fn the_live_stream_sends_an_event_when_new_data_of_the_patient_is_durable() {
    use std::io::{BufRead, BufReader};
    let server = ward();
    let token = nurse_token(&server);
    let resp = crate::harness::agent()
        .get(&format!("{}/api/v1/patients/p-1/live?events=2", server.url))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("stream");
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let mut data = || loop {
        let l = lines.next().expect("an event").expect("line");
        if let Some(d) = l.strip_prefix("data: ") {
            break d.to_owned();
        }
    };
    assert_eq!(data(), (NOW - 60_000).to_string(), "the first event: where the stream starts");
    let s = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW - 1000, "value": 75}]);
    assert_eq!(server.ingest(&s).status, 200);
    assert_eq!(data(), (NOW - 1000).to_string(), "new data announced");
    let other = nurse_token(&server);
    assert_eq!(server.get("/api/v1/patients/p-2/live?events=1", Some(&other)).status, 403, "not the nurse's patient");
}

#[test]
fn a_wristband_wearers_sensors_share_one_time_axis_with_the_seizure_drawn_and_listed_in_a_real_browser() {
    // The seizure detectors on: the page says which one watches this wearer.
    let server = TestServer::with_config(|c| c.alerting.seizure.enabled = true);
    server.app.directory.create_user("root", Role::Admin, Some(PASSWORD), None, NOW).expect("admin");
    // The last hour: heart rate every 5 s, RR intervals, EDA every second, skin temperature
    // every minute, and the last 10 minutes of 4 Hz motion; a seizure 6 to 4 minutes ago.
    let mut s = Vec::new();
    let at = |metric: &str, t: i64, value: f64| json!({"patient": "w-1", "metric": metric, "time": t, "value": value});
    for k in 1..=720 {
        s.push(at("heart_rate", NOW - 5000 * k, 70.0 + (k % 10) as f64));
    }
    for k in 1..=3600 {
        s.push(at("rr_interval", NOW - 1000 * k, 800.0 + (k % 50) as f64));
        s.push(at("eda", NOW - 1000 * k, 2.0 + (k % 7) as f64 / 10.0));
    }
    for k in 1..=60 {
        s.push(at("skin_temperature", NOW - 60_000 * k, 33.5));
    }
    for k in 1..=2400 {
        let t = NOW - 250 * k;
        s.push(at("acceleration_x", t, ((k as f64) / 4.0).sin() / 2.0));
        s.push(at("acceleration_y", t, ((k as f64) / 4.0).cos() / 2.0));
        s.push(at("acceleration_z", t, 1.0));
    }
    assert_eq!(server.ingest(&Value::Array(s)).status, 200);
    let seizure = vitals_core::Event {
        id: "sz-1".into(),
        patient: "w-1".into(),
        kind: "seizure".into(),
        start_ms: NOW - 360_000,
        end_ms: NOW - 240_000,
        source: "test".into(),
        attributes: [("name".to_owned(), json!("tonic-clonic"))].into_iter().collect(),
    };
    // Nine meals before it: the list under the charts shows the newest 8, the rest on demand.
    let meals = (0..9).map(|i| vitals_core::Event {
        id: format!("meal-{i}"),
        patient: "w-1".into(),
        kind: "meal".into(),
        start_ms: NOW - 3_600_000 + i * 60_000,
        end_ms: NOW - 3_600_000 + i * 60_000,
        source: "test".into(),
        attributes: Default::default(),
    });
    server.app.events.put(std::iter::once(seizure).chain(meals).collect()).expect("events");
    let seen = browse(&server, "sensors.mjs", "root", &[("VITALS_PATIENT", "w-1")]);
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    // 6 hours in about 1100 px: 30 s buckets.
    assert_eq!(seen["bucket_ms"], json!(30_000), "{seen}");
    assert_eq!(
        seen["panels"],
        json!([["heart_rate", 120], ["rr_interval", 120], ["skin_temperature", 60], ["eda", 120], ["motion", 20]]),
        "one panel per sensor, the three motion axes in one: {seen}"
    );
    assert_eq!(
        seen["captions"],
        json!([
            "Heart rate",
            "RR intervals (tachogram)",
            "Skin temperature",
            "Electrodermal activity",
            "Motion (acceleration)"
        ])
    );
    assert_eq!(seen["canvases"], json!(5));
    let readout = seen["motion_readout"].as_str().unwrap_or_default();
    assert!(readout.contains(": x ") && readout.contains(", y ") && readout.ends_with(", z 1 g"), "{readout}");
    let episodes = seen["episodes"].as_array().expect("episodes");
    assert_eq!(episodes.len(), 9, "8 and a button: {seen}");
    assert_eq!(
        episodes[0],
        json!("seizure: tonic-clonic, 11/22/2025, 2:54:00 AM – 2:56:00 AM"),
        "newest first: {seen}"
    );
    assert_eq!(episodes[1], json!("meal, 11/22/2025, 2:08:00 AM – 2:08:00 AM"));
    assert_eq!(episodes[8], json!("Show all 10"));
    assert_eq!(seen["all_episodes"], json!(10));
    assert_eq!(seen["a11y"], json!([]), "no WCAG 2.1 A/AA rule broken (axe-core)");
    // Zoomed to the seizure with a minute each side: 4 minutes in 1 s buckets.
    assert_eq!(seen["zoomed"], json!([NOW - 420_000, NOW - 180_000]), "{seen}");
    assert_eq!(seen["zoomed_bucket_ms"], json!(1000));
    assert_eq!(
        seen["zoomed_panels"],
        json!([["heart_rate", 48], ["rr_interval", 240], ["skin_temperature", 4], ["eda", 240], ["motion", 240]]),
        "{seen}"
    );
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifacts");
    // 2025-10-26T01:00:00Z: Berlin goes from UTC+2 to UTC+1.
    let q = seen["berlin_glucose_query"].as_str().unwrap_or_default();
    assert!(q.ends_with("&tz_offset_min=120&tz_changes=1761440400000:60"), "{q}");
    assert_eq!(seen["dark_background"], json!("rgb(17, 17, 17)"));
    assert_eq!(seen["dark_a11y"], json!([]), "the dark scheme passes axe-core too");
    let watch = &seen["seizure_watch"];
    assert_eq!(watch[0], json!("combined"), "a wristband with an accelerometer: {watch}");
    assert!(watch[1].as_str().is_some_and(|t| t.contains("both detectors")), "{watch}");
    // The seizure diary: the recorded seizure (no detector fired), its CSV, one printed page.
    let rows = seen["diary_rows"].as_array().expect("diary rows");
    assert_eq!(rows.len(), 1, "{seen}");
    assert_eq!(
        (rows[0][0].clone(), rows[0][2].clone(), rows[0][3].clone()),
        (json!("recorded"), json!("120 s"), json!("Recorded, not detected"))
    );
    assert_eq!(rows[0][7], json!("tonic-clonic"));
    assert_eq!(seen["diary_counts"], json!("1 seizure: 0 detected and recorded, 0 detected only, 1 recorded only."));
    let csv = seen["diary_csv"].as_str().expect("csv");
    assert!(
        csv.starts_with("start,end,duration_s,status,")
            && csv.contains(",recorded,")
            && csv.contains(",sz-1,test,tonic-clonic"),
        "{csv}"
    );
    assert_eq!(seen["diary_a11y"], json!([]), "{seen}");
    assert_eq!(seen["diary_pdf_pages"], json!(1));
    for shot in ["sensors.png", "sensors-seizure.png", "sensors-dark.png"] {
        assert!(artifacts.join(shot).metadata().is_ok_and(|m| m.len() > 1000), "{shot} saved");
    }
}

#[test]
fn the_admin_endpoints_report_system_health_and_list_and_revoke_device_certificates() {
    let server = ward();
    let sys = server.get("/api/v1/system", Some(ADMIN)).json();
    assert_eq!((sys["status"].clone(), sys["now"].clone()), (json!("ok"), json!(vitals_core::time::format_time(NOW))));
    assert_eq!(
        sys["samples_written"],
        json!(65),
        "30 heart rates, a glucose and a battery reading each for 2, 1 for p-3"
    );
    assert_eq!((sys["patients"].clone(), sys["users"].clone()), (json!(3), json!(1)), "{sys}");
    assert!(sys["wal_bytes"].as_u64().is_some_and(|b| b > 0), "{sys}");
    assert_eq!(sys["dead_letters"], json!(0));
    let bad = json!([{"patient": "p-1", "metric": "heart_rate", "time": NOW, "value": "fast"}]);
    assert_eq!(server.ingest(&bad).status, 200);
    let sys = server.get("/api/v1/system", Some(ADMIN)).json();
    assert_eq!((sys["dead_letters"].clone(), sys["samples_written"].clone()), (json!(1), json!(65)), "{sys}");

    let d = &server.app.directory;
    d.register_cert("wristband w1", "w1", Some("p-1"), b"not a real certificate", NOW).expect("cert");
    let list = server.get("/api/v1/devices", Some(ADMIN)).json();
    let dev = &list["devices"][0];
    assert_eq!(
        (dev["name"].clone(), dev["device"].clone(), dev["patient"].clone(), dev["revoked"].clone()),
        (json!("wristband w1"), json!("w1"), json!("p-1"), Value::Null),
        "{list}"
    );
    let id = dev["id"].as_str().expect("id").to_owned();
    server.clock.advance(1000);
    let del = |id: &str| {
        server.request(
            "DELETE",
            &format!("/api/v1/devices/{id}"),
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            None,
        )
    };
    assert_eq!(del(&id).status, 204);
    let list = server.get("/api/v1/devices", Some(ADMIN)).json();
    assert_eq!(list["devices"][0]["revoked"], json!(vitals_core::time::format_time(NOW + 1000)));
    assert_eq!(del(&id).status, 404, "already revoked");
    assert_eq!(del("nope").status, 404);
    let nurse = nurse_token(&server);
    assert_eq!(server.get("/api/v1/system", Some(&nurse)).status, 403, "admins only");
}

#[test]
fn the_glucose_profile_places_readings_at_their_local_time_across_a_daylight_saving_change() {
    let server = TestServer::start();
    // 07:10 UTC two mornings running; the clocks go from UTC+1 to UTC+2 in between.
    let day = 86_400_000;
    let first = NOW - NOW % day - 2 * day + 7 * 3_600_000 + 600_000;
    let readings = json!([
        {"patient": "g-2", "metric": "blood_glucose", "time": first, "value": 100},
        {"patient": "g-2", "metric": "blood_glucose", "time": first + day, "value": 140},
    ]);
    assert_eq!(server.ingest(&readings).status, 200);
    let agp = |tz: &str| {
        let r = server.get(&format!("/api/v1/patients/g-2/glucose?from={}&to={NOW}&{tz}", NOW - 3 * day), Some(ADMIN));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["agp"]
            .as_array()
            .expect("agp")
            .iter()
            .map(|s| (s["minute"].clone(), s["p50"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(agp("tz_offset_min=60"), [(json!(480), json!(120.0))], "one offset: both at 08:10");
    let change = first + day / 2;
    assert_eq!(
        agp(&format!("tz_offset_min=60&tz_changes={change}:120")),
        [(json!(480), json!(100.0)), (json!(540), json!(140.0))],
        "08:10 before the change, 09:10 after"
    );
    let too_many = (0..65).map(|i| format!("{i}:60")).collect::<Vec<_>>().join(",");
    for bad in [
        "tz_changes=soon",
        "tz_offset_min=900",
        "tz_changes=5:60,1:60",
        "tz_changes=1:-900",
        &format!("tz_changes={too_many}"),
    ] {
        let r = server.get(&format!("/api/v1/patients/g-2/glucose?from={}&to={NOW}&{bad}", NOW - 3 * day), Some(ADMIN));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

/// The README's screenshots (`docs/dashboard-*.png`, copied from
/// `$CARGO_TARGET_TMPDIR/e2e-artifacts/readme-*.png`) are taken here, from a day of the
/// demo cohort's synthetic patients (`vitals demo`'s seed), in a real browser.
#[test]
fn the_readme_screenshots_show_a_day_of_the_demo_cohort_in_a_real_browser() {
    use vitals_sim::{Options, Simulator, Which, demo_cohort};
    let server = TestServer::start();
    server.app.directory.create_user("root", Role::Admin, Some(PASSWORD), None, NOW).expect("admin");
    let sim = Simulator::new(7, Options::default());
    let cohort = demo_cohort(7);
    // The first six of the demo (people with diabetes, athletes, a party-goer) and the
    // diabetic wristband wearers; the one shown is the first of those.
    let shown = cohort.iter().rev().find(|m| m.profiles.to_string().contains("wearable")).expect("a wearer").clone();
    let members: Vec<_> = cohort.iter().take(6).chain(std::iter::once(&shown)).collect();
    for m in &members {
        let p = sim.patient(&m.id, m.profiles.clone());
        let mut samples = Vec::new();
        sim.generate(&p, NOW - 24 * 3_600_000, NOW, Which::Sparse, &mut |r| {
            samples.push(json!({"patient": m.id, "metric": r.metric, "time": r.time_ms, "value": r.value,
                "device": p.device_id(r.device)}));
        });
        for chunk in samples.chunks(20_000) {
            let r = server.ingest(&Value::Array(chunk.to_vec()));
            assert_eq!((r.status, r.json()["rejected_total"].clone()), (200, json!(0)), "{}", r.body);
        }
    }
    let seen = browse(&server, "readme.mjs", "root", &[("VITALS_PATIENT", &shown.id)]);
    assert_eq!(seen["page_errors"], json!([]));
    assert_eq!(seen["rows"], json!(members.len()), "{seen}");
    let panels = seen["panels"].as_array().expect("panels");
    let drawn: Vec<&str> = panels.iter().filter(|p| p[1].as_u64() > Some(0)).filter_map(|p| p[0].as_str()).collect();
    for metric in ["heart_rate", "blood_glucose"] {
        assert!(drawn.contains(&metric), "{metric} not drawn: {seen}");
    }
}

#[test]
fn the_ward_board_fits_50_tiles_rings_for_open_alerts_and_is_acknowledged_from_a_real_browser() {
    let server = TestServer::with_config(|c| {
        let rule = json!({"name": "tachycardia", "expr": "heart_rate > 150", "severity": "urgent"});
        c.alerting.rules = vec![serde_json::from_value(rule).expect("rule")];
    });
    let d = &server.app.directory;
    d.create_user("carer", Role::Clinician, Some(PASSWORD), None, NOW).expect("user");
    // 50 wearers: heart rate a minute ago (170 for b-00 and b-01: alerts), SpO2 for some,
    // and three whose devices went quiet two hours ago.
    let ids: Vec<String> = (0..50).map(|i| format!("b-{i:02}")).collect();
    let mut samples = Vec::new();
    for (i, p) in ids.iter().enumerate() {
        let t = if (10..13).contains(&i) { NOW - 2 * 3_600_000 } else { NOW - 60_000 };
        let hr = if i < 2 { 170 } else { 60 + i };
        samples.push(json!({"patient": p, "metric": "heart_rate", "time": t, "value": hr}));
        if i % 3 == 0 {
            samples.push(json!({"patient": p, "metric": "spo2", "time": t, "value": 97}));
        }
    }
    assert_eq!(server.ingest(&Value::Array(samples)).status, 200);
    vitals_server::people::set_team(d.meta(), "ward", &["carer".into()], &ids, NOW).expect("team");
    crate::harness::eventually("two open alerts", || {
        server.get("/api/v1/alerts?state=open", Some(ADMIN)).json()["alerts"].as_array().map(Vec::len) == Some(2)
    });
    let now = NOW.to_string();
    let seen =
        browse(&server, "board.mjs", "carer", &[("VITALS_DEVICE_TOKEN", crate::harness::DEVICE), ("VITALS_NOW", &now)]);
    // The 1280x800 run comes after b-00 was acknowledged and b-49's alert opened.
    for (size, rings) in [("1920x1080", ["b-00", "b-01"]), ("1280x800", ["b-01", "b-49"])] {
        let s = &seen["sizes"][size];
        assert_eq!(
            (s["tiles"].clone(), s["inside"].clone()),
            (json!(50), json!(50)),
            "all 50 tiles on screen at {size}: {seen}"
        );
        assert_eq!((s["scrolls"].clone(), s["clipped"].clone()), (json!(false), json!(0)), "{size}: {s}");
        let mut ringing: Vec<String> = serde_json::from_value(s["ringing"].clone()).expect("ringing");
        ringing.sort();
        assert_eq!(ringing, rings, "{size}");
        assert_eq!(s["stale"], json!(3), "{size}");
        assert_eq!(seen["a11y"][size], json!([]), "no WCAG 2.1 A/AA rule broken at {size}: {seen}");
    }
    let alarm = seen["alarm"].as_str().expect("alarm");
    assert!(alarm.starts_with("2 open alerts: ") && alarm.contains("b-00") && alarm.contains("b-01"), "{alarm}");
    assert_eq!(seen["sent"], json!(200));
    // After the new alert rang and b-00 was acknowledged from the board.
    let mut ringing: Vec<String> = serde_json::from_value(seen["after_ack"]["ringing"].clone()).expect("ringing");
    ringing.sort();
    assert_eq!(ringing, ["b-01", "b-49"], "{seen}");
    assert_eq!(seen["acked_text"], json!(" · acknowledged by carer"));
    let acked = server.get("/api/v1/alerts?patient=b-00", Some(ADMIN)).json();
    assert_eq!(acked["alerts"][0]["acknowledged_by"], json!("carer"), "{acked}");
    // (The console's only errors are the 401s of the page asking who is signed in before
    // the sign-in.)
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
}

#[test]
fn a_clinician_makes_a_campaign_and_records_consent_and_the_patient_reads_and_stops_it_in_a_real_browser() {
    let sms = crate::harness::Capture::start();
    sms.respond(201, r#"{"sid":"SM1","status":"queued"}"#);
    let sms_url = format!("{}/2010-04-01/Accounts/AC1/Messages.json", sms.url);
    let server = TestServer::with_config(|c| {
        c.notify.public_url = "https://vitals.example.org".into();
        c.notify.sms_url = sms_url;
        c.notify.sms_account_sid = "AC1".into();
        c.notify.sms_auth_token = "tok".into();
        c.notify.sms_from = "+15550000000".into();
    });
    let d = &server.app.directory;
    d.create_user("nurse", Role::Clinician, Some(PASSWORD), None, NOW).expect("user");
    d.create_user("pat", Role::Patient, Some(PASSWORD), Some("p-1"), NOW).expect("patient user");
    vitals_server::people::set_team(d.meta(), "ward", &["nurse".into()], &["p-1".into()], NOW).expect("team");
    let admin = |method: &str, path: &str, body: Value| {
        let auth = format!("Bearer {ADMIN}");
        let r = server.request(
            method,
            path,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        assert!(r.status < 300, "{}", r.body);
    };
    admin("PUT", "/api/v1/patients/p-1/identity", json!({"contacts": [{"kind": "phone", "value": "+15550001"}]}));
    admin("PUT", "/api/v1/cohorts/ward-3", json!({"patients": ["p-1"]}));
    let seen = browse(&server, "campaigns.mjs", "nurse", &[("VITALS_PATIENT_USER", "pat")]);
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    // The only failed loads are the sign-in form's: `/api/v1/me` before signing in (401).
    let errors = seen["console_errors"].as_array().expect("console errors");
    assert!(errors.iter().all(|e| e.as_str().is_some_and(|e| e.contains("401"))), "{seen}");
    for (view, found) in seen["a11y"].as_object().expect("a11y") {
        assert_eq!(found, &json!([]), "no WCAG 2.1 A/AA rule broken on {view}");
    }
    assert_eq!(seen["consent_before"], json!("Patient p-1 does not receive messages from the care team."));
    assert_eq!(seen["email_disabled"], json!(true), "no email server: not offered");
    assert!(seen["consent_after"].as_str().is_some_and(|s| s.contains("by text message (SMS)")), "{seen}");
    assert_eq!(seen["empty"], json!("No campaigns yet."));
    assert_eq!(seen["hash"], json!("#/campaign/cp-1"));
    assert_eq!(seen["status"], json!("active"), "{seen}");
    let state = seen["sends"][0][1].as_str().unwrap_or_default();
    assert!(seen["sends"][0][0] == "p-1" && ["pending", "delivered"].contains(&state), "{seen}");
    crate::harness::eventually("the SMS", || sms.requests().len() == 1);
    assert!(sms.requests()[0].text().contains("Ten+minutes+of+walking"), "{}", sms.requests()[0].text());
    assert!(seen["patient_status"].as_str().is_some_and(|s| s.starts_with("You receive messages")), "{seen}");
    let messages = seen["patient_messages"].as_array().expect("messages");
    assert!(
        messages.len() == 1 && messages[0].as_str().is_some_and(|m| m.contains("Ten minutes of walking")),
        "{seen}"
    );
    assert_eq!(seen["patient_stopped"], json!("You do not receive messages from the care team."));
    let consent = server.get("/api/v1/patients/p-1/campaigns", Some(ADMIN)).json();
    assert_eq!((consent["consent"].clone(), consent["history"][1]["by"].clone()), (Value::Null, json!("user:pat")));
}
