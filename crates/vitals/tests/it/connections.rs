//! Vendor clouds, against local HTTP servers that stand in for the vendors (they cannot be
//! reached here): each checks the exact requests (paths, query, headers, bodies) and answers
//! with payloads shaped as the vendors send them. Credentials are sealed at rest; the cursor
//! and the vendor's session survive a restart; refused credentials pause the connection.

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::harness::{ADMIN, Capture, Captured, NOW, TestServer, eventually};

const MIN: i64 = 60_000;
const APP_ID: &str = "d89443d2-327c-4a6f-89e5-496bbb0317db";

fn server_in(data: &std::path::Path, vendor: &str, base: &str) -> TestServer {
    TestServer::in_dir(tempfile::tempdir().expect("tmp"), data, |c| {
        c.connections.enabled = true;
        c.connections.endpoints.insert(vendor.to_owned(), base.to_owned());
    })
}

fn connection(server: &TestServer, patient: &str, vendor: &str) -> Value {
    let r = server.get(&format!("/api/v1/patients/{patient}/connections"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["connections"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["vendor"] == vendor)
        .cloned()
        .unwrap_or_default()
}

fn glucose(server: &TestServer, patient: &str) -> Vec<(i64, f64)> {
    let r = server.get(&format!("/api/v1/patients/{patient}/series/blood_glucose?time_format=ms"), Some(ADMIN));
    r.json()["points"]
        .as_array()
        .map(|a| a.iter().map(|p| (p["time"].as_i64().expect("t"), p["value"].as_f64().expect("v"))).collect())
        .unwrap_or_default()
}

fn connect(server: &TestServer, patient: &str, vendor: &str, body: &Value) -> Value {
    let r = server.request(
        "PUT",
        &format!("/api/v1/patients/{patient}/connections/{vendor}"),
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert!(r.status == 201 || r.status == 200, "{} {}", r.status, r.body);
    r.json()
}

fn sync(server: &TestServer, patient: &str, vendor: &str) {
    let r = server.request(
        "POST",
        &format!("/api/v1/patients/{patient}/connections/{vendor}/sync"),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

fn dexcom_reading(t: i64, value: Value) -> Value {
    json!({"WT": format!("Date({t})"), "ST": format!("Date({t})"), "DT": format!("Date({t}-0500)"), "Value": value, "Trend": "Flat"})
}

/// Every byte of the files under `dir`.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// Pulls done (each counted once its outcome is recorded).
fn pulls(server: &TestServer) -> u64 {
    let m = server.get("/metrics", Some(ADMIN)).body;
    m.lines().find_map(|l| l.strip_prefix("vitals_connection_pulls_total ")?.trim().parse().ok()).unwrap_or(0)
}

fn has(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn json_of(r: &Captured) -> Value {
    r.json()
}

#[test]
fn dexcom_share_signs_in_once_pulls_from_its_cursor_and_renews_an_expired_session() {
    let dexcom = Capture::start();
    let base = format!("{}/ShareWebServices/Services", dexcom.url);
    dexcom.queue(200, "\"8f0e5b1c-1111-4a6f-89e5-496bbb0317db\"");
    dexcom.queue(200, "\"5e7b0c2d-2222-4c6f-99e5-496bbb0317db\"");
    let first = json!([
        dexcom_reading(NOW - 5 * MIN, json!(127)),
        dexcom_reading(NOW - 10 * MIN, json!("HIGH")),
        dexcom_reading(NOW - 15 * MIN, json!(131)),
    ]);
    dexcom.queue(200, &first.to_string());
    let data = tempfile::tempdir().expect("data");
    let server = server_in(data.path(), "dexcom-share", &base);
    let shown = connect(
        &server,
        "dx-1",
        "dexcom-share",
        &json!({"username": "ann.share", "password": "s3cret-pw!", "region": "ous"}),
    );
    assert!(!shown.to_string().contains("s3cret-pw!") && !shown.to_string().contains("ann.share"), "{shown}");
    eventually("the first pull", || connection(&server, "dx-1", "dexcom-share")["last_success"].is_string());
    assert_eq!(glucose(&server, "dx-1"), vec![(NOW - 15 * MIN, 131.0), (NOW - 5 * MIN, 127.0)]);
    let c = connection(&server, "dx-1", "dexcom-share");
    assert_eq!(
        (c["status"].clone(), c["readings"].clone(), c["failures"].clone()),
        (json!("active"), json!(2), json!(0)),
        "{c}"
    );
    assert_eq!(c["newest_reading"], "2025-11-22T02:55:00.000Z", "{c}");

    // The exact requests Dexcom's follower apps send.
    let reqs = dexcom.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/ShareWebServices/Services/General/AuthenticatePublisherAccount");
    assert_eq!(
        json_of(&reqs[0]),
        json!({"accountName": "ann.share", "password": "s3cret-pw!", "applicationId": APP_ID})
    );
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[1].path, "/ShareWebServices/Services/General/LoginPublisherAccountById");
    assert_eq!(
        json_of(&reqs[1]),
        json!({"accountId": "8f0e5b1c-1111-4a6f-89e5-496bbb0317db", "password": "s3cret-pw!", "applicationId": APP_ID})
    );
    assert_eq!(
        reqs[2].path,
        "/ShareWebServices/Services/Publisher/ReadPublisherLatestGlucoseValues?sessionId=5e7b0c2d-2222-4c6f-99e5-496bbb0317db&minutes=1440&maxCount=288"
    );
    assert_eq!(reqs[2].text(), "{}");

    // The refused reading is a dead letter of the cloud source, with the vendor's answer.
    let dl = server.get("/api/v1/dead-letters", Some(ADMIN)).json();
    let letters = dl["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 1, "{dl}");
    assert_eq!(letters[0]["source"], "cloud/dexcom-share", "{dl}");

    // Credentials and session are sealed at rest: neither is anywhere in the data directory.
    let bytes = all_bytes(data.path());
    for secret in ["s3cret-pw!", "ann.share", "5e7b0c2d-2222"] {
        assert!(!has(&bytes, secret), "{secret:?} found in the data directory");
    }

    // A restart: the next pull reuses the sealed session and reads from the cursor. Dexcom
    // has forgotten the session: signed in again by account id (not by name), once.
    drop(server);
    let server = server_in(data.path(), "dexcom-share", &base);
    dexcom.queue(
        500,
        r#"{"Code":"SessionIdNotFound","Message":"Session ID not found","SubCode":null,"TypeName":"FaultException"}"#,
    );
    dexcom.queue(200, "\"6a8c1d3e-3333-4d6f-a9e5-496bbb0317db\"");
    dexcom.queue(200, &json!([dexcom_reading(NOW, json!(122)), dexcom_reading(NOW - 5 * MIN, json!(127))]).to_string());
    sync(&server, "dx-1", "dexcom-share");
    eventually("the pull after the restart", || connection(&server, "dx-1", "dexcom-share")["readings"] == 3);
    let reqs = dexcom.requests();
    assert_eq!(reqs.len(), 6, "{reqs:?}");
    let minutes = "minutes=15&maxCount=5"; // 5 minutes since the newest stored reading, + 10
    assert_eq!(
        reqs[3].path,
        format!(
            "/ShareWebServices/Services/Publisher/ReadPublisherLatestGlucoseValues?sessionId=5e7b0c2d-2222-4c6f-99e5-496bbb0317db&{minutes}"
        )
    );
    assert_eq!(reqs[4].path, "/ShareWebServices/Services/General/LoginPublisherAccountById");
    assert_eq!(
        reqs[5].path,
        format!(
            "/ShareWebServices/Services/Publisher/ReadPublisherLatestGlucoseValues?sessionId=6a8c1d3e-3333-4d6f-a9e5-496bbb0317db&{minutes}"
        )
    );
    assert_eq!(glucose(&server, "dx-1").len(), 3, "the overlap is not stored twice");

    // A changed password that Dexcom refuses: the connection waits for the user.
    connect(&server, "dx-1", "dexcom-share", &json!({"username": "ann.share", "password": "wrong"}));
    dexcom.queue(500, r#"{"Code":"AccountPasswordInvalid","Message":"Password not valid"}"#);
    eventually("the refusal", || connection(&server, "dx-1", "dexcom-share")["status"] == "needs_attention");
    let c = connection(&server, "dx-1", "dexcom-share");
    assert!(c["last_error"].as_str().unwrap_or("").contains("refused"), "{c}");
    assert!(c["next_attempt"].is_null(), "paused: {c}");
    assert_eq!(c["readings"], 3, "the cursor and count are kept: {c}");
    let seen = dexcom.requests().len();
    assert_eq!(seen, 7);

    // Disconnecting forgets it.
    let r = server.request(
        "DELETE",
        "/api/v1/patients/dx-1/connections/dexcom-share",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(connection(&server, "dx-1", "dexcom-share").is_null());
}

#[test]
fn librelinkup_follows_the_region_redirect_and_signs_requests_as_the_app_does() {
    let llu = Capture::start();
    llu.queue(200, r#"{"status":0,"data":{"redirect":true,"region":"eu"}}"#);
    llu.queue(
        200,
        r#"{"status":0,"data":{"user":{"id":"6f2a1c3e-aaaa-11ec-90ad-0242ac110005","firstName":"A","country":"DE"},"authTicket":{"token":"tok-1","expires":1794000000,"duration":15552000000}}}"#,
    );
    llu.queue(200, r#"{"status":0,"data":[{"patientId":"7c3b2d4f-bbbb-11ec-90ad-0242ac110005","firstName":"B","lastName":"C","targetLow":70,"targetHigh":180}],"ticket":{"token":"tok-1","expires":1794000000,"duration":15552000000}}"#);
    let graph = json!({"status": 0, "data": {
        "connection": {"patientId": "7c3b2d4f-bbbb-11ec-90ad-0242ac110005", "sensor": {"deviceId": "", "sn": "0R8FDDJ820", "a": 1763000000, "pt": 4},
            "glucoseMeasurement": {"FactoryTimestamp": "11/22/2025 2:59:00 AM", "Timestamp": "11/22/2025 3:59:00 AM", "type": 1,
                "ValueInMgPerDl": 104, "TrendArrow": 3, "TrendMessage": null, "MeasurementColor": 1, "GlucoseUnits": 1, "Value": 104, "isHigh": false, "isLow": false}},
        "activeSensors": [],
        "graphData": [
            {"FactoryTimestamp": "11/22/2025 2:30:00 AM", "Timestamp": "11/22/2025 3:30:00 AM", "type": 0, "ValueInMgPerDl": 98, "MeasurementColor": 1, "GlucoseUnits": 1, "Value": 98, "isHigh": false, "isLow": false},
            {"FactoryTimestamp": "11/22/2025 2:45:00 AM", "Timestamp": "11/22/2025 3:45:00 AM", "type": 0, "ValueInMgPerDl": 101, "MeasurementColor": 1, "GlucoseUnits": 1, "Value": 101, "isHigh": false, "isLow": false}
        ]},
        "ticket": {"token": "tok-2", "expires": 1794000100, "duration": 15_552_000_000i64}});
    llu.queue(200, &graph.to_string());
    let data = tempfile::tempdir().expect("data");
    let server = server_in(data.path(), "librelinkup", &llu.url);
    connect(&server, "ll-1", "librelinkup", &json!({"username": "follower@example.org", "password": "libre-pw"}));
    eventually("the first pull", || connection(&server, "ll-1", "librelinkup")["last_success"].is_string());
    assert_eq!(glucose(&server, "ll-1"), vec![(NOW - 30 * MIN, 98.0), (NOW - 15 * MIN, 101.0), (NOW - MIN, 104.0)]);
    let devices = server.get("/api/v1/patients/ll-1/devices", Some(ADMIN)).json();
    assert_eq!(devices["devices"][0]["device"], "libre-0r8fddj820", "{devices}");
    assert_eq!(devices["devices"][0]["sources"], json!(["librelinkup"]), "{devices}");
    assert_eq!(connection(&server, "ll-1", "librelinkup")["region"], "", "the region asked is kept as given");

    let reqs = llu.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    let app_headers = |r: &Captured| {
        assert_eq!(r.header("product"), Some("llu.android"), "{r:?}");
        assert_eq!(r.header("version"), Some("4.16.0"), "{r:?}");
        assert_eq!(r.header("accept"), Some("application/json"), "{r:?}");
    };
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/llu/auth/login"));
    assert_eq!(json_of(&reqs[0]), json!({"email": "follower@example.org", "password": "libre-pw"}));
    assert_eq!((reqs[1].method.as_str(), reqs[1].path.as_str()), ("POST", "/eu/llu/auth/login"));
    assert_eq!(json_of(&reqs[1]), json!({"email": "follower@example.org", "password": "libre-pw"}));
    let account = hex::encode(sha2::Sha256::digest(b"6f2a1c3e-aaaa-11ec-90ad-0242ac110005"));
    assert_eq!((reqs[2].method.as_str(), reqs[2].path.as_str()), ("GET", "/eu/llu/connections"));
    assert_eq!(reqs[3].path, "/eu/llu/connections/7c3b2d4f-bbbb-11ec-90ad-0242ac110005/graph");
    for r in &reqs {
        app_headers(r);
    }
    for r in &reqs[2..] {
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"), "{r:?}");
        assert_eq!(r.header("account-id"), Some(account.as_str()), "{r:?}");
    }

    // The next pull: the renewed token, the followed patient remembered: one request.
    llu.queue(200, &graph.to_string());
    sync(&server, "ll-1", "librelinkup");
    eventually("the second pull", || pulls(&server) == 2);
    let r = &llu.requests()[4];
    assert_eq!(r.path, "/eu/llu/connections/7c3b2d4f-bbbb-11ec-90ad-0242ac110005/graph");
    assert_eq!(r.header("authorization"), Some("Bearer tok-2"));
    assert_eq!(glucose(&server, "ll-1").len(), 3, "nothing stored twice");

    // Rate limited: backed off by the vendor's Retry-After, and the error is shown.
    llu.queue(429, r#"{"message":"too many requests"}"#);
    sync(&server, "ll-1", "librelinkup");
    eventually("the rate limit", || pulls(&server) == 3);
    let c = connection(&server, "ll-1", "librelinkup");
    assert!(c["last_error"].as_str().unwrap_or("").contains("slow down"), "{c}");
    assert_eq!(c["failures"], 1, "{c}");
    assert_eq!(c["status"], "active", "{c}");
}

#[test]
fn connecting_checks_what_it_is_given() {
    let server = TestServer::start();
    let put = |path: &str, body: &str| {
        server.request(
            "PUT",
            path,
            &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    let r = put("/api/v1/patients/p-1/connections/polar", r#"{"username":"a","password":"b"}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("dexcom-share"), "{}", r.body);
    let r = put("/api/v1/patients/p-1/connections/oura", r#"{"username":"a","password":"b"}"#);
    assert_eq!(r.status, 400, "an OAuth vendor takes no password: {}", r.body);
    assert!(r.body.contains("/authorize"), "{}", r.body);
    let r = put("/api/v1/patients/p-1/connections/dexcom-share", r#"{"username":"a","password":""}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = put("/api/v1/patients/p-1/connections/dexcom-share", r#"{"username":"a","password":"b","region":"mars"}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("us, ous, jp"), "{}", r.body);
    let r = put("/api/v1/patients/p-1/connections/dexcom-share", r#"{"username":"a","password":"b","token":"x"}"#);
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.body);
    let list = server.get("/api/v1/patients/p-1/connections", Some(ADMIN)).json();
    assert_eq!(list["connections"], json!([]));
    assert_eq!(list["vendors"][1]["vendor"], "librelinkup", "{list}");
}

#[test]
fn oura_is_connected_through_its_oauth_sign_in_and_the_tokens_are_refreshed_and_revoked() {
    let oura = Capture::start();
    let server = TestServer::with_config(|c| {
        c.connections.enabled = true;
        c.connections.endpoints.insert("oura".into(), oura.url.clone());
        c.connections.public_url = "https://vitals.example.org".into();
        c.connections.oura_client_id = "oura-client-1".into();
        c.connections.oura_client_secret = "oura-secret-1".into();
    });
    let post = |path: &str, token: &str, body: Option<&Value>| {
        let auth = format!("Bearer {token}");
        let text = body.map(Value::to_string);
        server.request(
            "POST",
            path,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            text.as_deref().map(str::as_bytes),
        )
    };
    // 1. The sign-in address, with a state only this server can open.
    let r = post("/api/v1/patients/or-1/connections/oura/authorize", ADMIN, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.json()["authorize_url"].as_str().expect("url").to_owned();
    let (base, query) = url.split_once('?').expect("query");
    assert_eq!(base, format!("{}/oauth/authorize", oura.url));
    let fields: std::collections::BTreeMap<String, String> = crate::harness::form_fields(query).into_iter().collect();
    assert_eq!(fields["response_type"], "code");
    assert_eq!(fields["client_id"], "oura-client-1");
    assert_eq!(fields["redirect_uri"], "https://vitals.example.org/");
    assert_eq!(fields["scope"], "heartrate daily");
    let state = fields["state"].clone();
    assert!(!state.contains("or-1"), "the state is sealed");

    // A state that is not the server's, and a caller who may not reach the patient, are refused.
    let r = post("/api/v1/connections/oauth", ADMIN, Some(&json!({"code": "c", "state": format!("{state}x")})));
    assert_eq!(r.status, 400, "{}", r.body);
    // A clinician of no team reaches no patient.
    let d = &server.app.directory;
    d.create_user("doc", vitals_server::auth::Role::Clinician, None, None, NOW).expect("user");
    let new = vitals_server::auth::NewToken { name: "doc", user: Some("doc"), ..Default::default() };
    let (_, clinician) = d.create_token(&new, NOW).expect("token");
    let r = post("/api/v1/connections/oauth", &clinician, Some(&json!({"code": "c", "state": state})));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(oura.requests().is_empty(), "nothing was sent to Oura");

    // 2. The code comes back: exchanged for tokens, then the first pull, page after page.
    oura.queue(200, r#"{"access_token":"at-1","token_type":"bearer","expires_in":86400,"refresh_token":"rt-1"}"#);
    let hr = |t: i64, bpm: i64| json!({"bpm": bpm, "source": "awake", "timestamp": vitals_core::time::format_time(t)});
    oura.queue(
        200,
        &json!({"data": [hr(NOW - 20 * MIN, 60), hr(NOW - 15 * MIN, 62)], "next_token": "page-2"}).to_string(),
    );
    oura.queue(200, &json!({"data": [hr(NOW - 10 * MIN, 64)], "next_token": null}).to_string());
    let r = post("/api/v1/connections/oauth", ADMIN, Some(&json!({"code": "code-1", "state": state})));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["patient"], "or-1");
    eventually("the first pull", || pulls(&server) == 1);
    let points = |server: &TestServer| {
        let r = server.get("/api/v1/patients/or-1/series/heart_rate?time_format=ms", Some(ADMIN));
        r.json()["points"].as_array().map(Vec::len).unwrap_or(0)
    };
    assert_eq!(points(&server), 3);
    let reqs = oura.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/oauth/token"));
    assert_eq!(reqs[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    let form: std::collections::BTreeMap<String, String> =
        crate::harness::form_fields(&reqs[0].text()).into_iter().collect();
    let want: std::collections::BTreeMap<String, String> = [
        ("grant_type", "authorization_code"),
        ("code", "code-1"),
        ("redirect_uri", "https://vitals.example.org/"),
        ("client_id", "oura-client-1"),
        ("client_secret", "oura-secret-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(form, want);
    let week_ago = vitals_core::time::format_time(NOW - 7 * 86_400_000).replace(':', "%3A");
    let now = vitals_core::time::format_time(NOW).replace(':', "%3A");
    assert_eq!(reqs[1].path, format!("/v2/usercollection/heartrate?start_datetime={week_ago}&end_datetime={now}"));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer at-1"));
    assert_eq!(
        reqs[2].path,
        format!("/v2/usercollection/heartrate?start_datetime={week_ago}&end_datetime={now}&next_token=page-2")
    );

    // 3. A day later the access token has expired: refreshed (Oura rotates the refresh
    // token), then read from the cursor.
    oura.queue(200, r#"{"access_token":"at-2","token_type":"bearer","expires_in":86400,"refresh_token":"rt-2"}"#);
    oura.queue(200, &json!({"data": [hr(NOW + 86_400_000 - MIN, 66)], "next_token": null}).to_string());
    // Due again (every 30 minutes) once the clock moves.
    server.clock.advance(86_400_000);
    eventually("the pull after a day", || pulls(&server) == 2);
    assert_eq!(points(&server), 4);
    let reqs = oura.requests();
    let form: std::collections::BTreeMap<String, String> =
        crate::harness::form_fields(&reqs[3].text()).into_iter().collect();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "rt-1");
    assert_eq!(form["client_secret"], "oura-secret-1");
    let from = vitals_core::time::format_time(NOW - 20 * MIN).replace(':', "%3A");
    let to = vitals_core::time::format_time(NOW + 86_400_000).replace(':', "%3A");
    assert_eq!(reqs[4].path, format!("/v2/usercollection/heartrate?start_datetime={from}&end_datetime={to}"));
    assert_eq!(reqs[4].header("authorization"), Some("Bearer at-2"));

    // 4. Disconnecting revokes the grant at Oura, then forgets it.
    let r = server.request(
        "DELETE",
        "/api/v1/patients/or-1/connections/oura",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let reqs = oura.requests();
    assert_eq!(reqs.len(), 6, "{reqs:?}");
    assert_eq!((reqs[5].method.as_str(), reqs[5].path.as_str()), ("GET", "/oauth/revoke?access_token=at-2"));
    assert!(connection(&server, "or-1", "oura").is_null());

    // A state older than ten minutes is refused.
    let r = post("/api/v1/patients/or-1/connections/oura/authorize", ADMIN, None);
    let url = r.json()["authorize_url"].as_str().expect("url").to_owned();
    let state: String = crate::harness::form_fields(url.split_once('?').expect("q").1)
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .expect("state");
    server.clock.advance(11 * MIN);
    let r = post("/api/v1/connections/oauth", ADMIN, Some(&json!({"code": "late", "state": state})));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("10 minutes"), "{}", r.body);
}

#[test]
fn withings_tokens_come_under_body_measures_are_read_page_by_page_and_revocation_is_signed() {
    let withings = Capture::start();
    let server = TestServer::with_config(|c| {
        c.connections.enabled = true;
        c.connections.endpoints.insert("withings".into(), withings.url.clone());
        c.connections.public_url = "https://vitals.example.org".into();
        c.connections.withings_client_id = "wi-client".into();
        c.connections.withings_client_secret = "wi-secret".into();
    });
    let post = |path: &str, body: Option<&Value>| {
        let text = body.map(Value::to_string);
        server.request(
            "POST",
            path,
            &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
            text.as_deref().map(str::as_bytes),
        )
    };
    let r = post("/api/v1/patients/wi-1/connections/withings/authorize", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.json()["authorize_url"].as_str().expect("url").to_owned();
    let (base, query) = url.split_once('?').expect("query");
    assert_eq!(base, format!("{}/oauth2_user/authorize2", withings.url));
    let fields: std::collections::BTreeMap<String, String> = crate::harness::form_fields(query).into_iter().collect();
    assert_eq!((fields["scope"].as_str(), fields["client_id"].as_str()), ("user.info,user.metrics", "wi-client"));

    // Withings answers HTTP 200 with a status and the tokens under `body`.
    withings.queue(
        200,
        r#"{"status":0,"body":{"userid":"363","access_token":"wat-1","refresh_token":"wrt-1","expires_in":10800,"scope":"user.info,user.metrics","csrf_token":"x","token_type":"Bearer"}}"#,
    );
    let group = |t: i64, model: &str, measures: Value| {
        json!({"grpid": t, "attrib": 0, "date": t / 1000, "created": t / 1000, "modified": t / 1000, "category": 1,
            "deviceid": "892359876fd8805ac45bab078c4828692f0276b1", "model": model, "measures": measures})
    };
    let page1 = json!({"status": 0, "body": {"updatetime": NOW / 1000, "timezone": "Europe/Paris", "measuregrps": [
        group(NOW - 60 * MIN, "Body+", json!([{"value": 72345, "type": 1, "unit": -3, "algo": 0, "fm": 3}]))], "more": 1, "offset": 1}});
    let page2 = json!({"status": 0, "body": {"updatetime": NOW / 1000, "timezone": "Europe/Paris", "measuregrps": [
        group(NOW - 30 * MIN, "BPM Connect", json!([{"value": 128, "type": 10, "unit": 0}, {"value": 82, "type": 9, "unit": 0}, {"value": 64, "type": 11, "unit": 0}]))],
        "more": 0, "offset": 0}});
    withings.queue(200, &page1.to_string());
    withings.queue(200, &page2.to_string());
    let state = fields["state"].clone();
    let r = post("/api/v1/connections/oauth", Some(&json!({"code": "wcode", "state": state})));
    assert_eq!(r.status, 201, "{}", r.body);
    eventually("the first pull", || pulls(&server) == 1);
    let series = |metric: &str| {
        let r = server.get(&format!("/api/v1/patients/wi-1/series/{metric}?time_format=ms"), Some(ADMIN));
        r.json()["points"]
            .as_array()
            .map(|a| a.iter().map(|p| p["value"].as_f64().expect("v")).collect::<Vec<f64>>())
            .unwrap_or_default()
    };
    assert_eq!(series("body_mass"), vec![72.35]);
    assert_eq!(series("blood_pressure_systolic"), vec![128.0]);
    assert_eq!(series("blood_pressure_diastolic"), vec![82.0]);
    assert_eq!(series("heart_rate"), vec![64.0]);
    let reqs = withings.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let form = |r: &Captured| -> std::collections::BTreeMap<String, String> {
        crate::harness::form_fields(&r.text()).into_iter().collect()
    };
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/v2/oauth2"));
    let f = form(&reqs[0]);
    assert_eq!(
        (f["action"].as_str(), f["grant_type"].as_str(), f["code"].as_str(), f["client_secret"].as_str()),
        ("requesttoken", "authorization_code", "wcode", "wi-secret")
    );
    assert_eq!(f["redirect_uri"], "https://vitals.example.org/");
    assert_eq!((reqs[1].method.as_str(), reqs[1].path.as_str()), ("POST", "/measure"));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer wat-1"));
    let f = form(&reqs[1]);
    let start = ((NOW - 30 * 86_400_000) / 1000).to_string();
    let end = (NOW / 1000).to_string();
    assert_eq!(
        (
            f["action"].as_str(),
            f["meastypes"].as_str(),
            f["category"].as_str(),
            f["startdate"].as_str(),
            f["enddate"].as_str()
        ),
        ("getmeas", "1,9,10,11,54,71", "1", start.as_str(), end.as_str())
    );
    assert!(!f.contains_key("offset"));
    assert_eq!(form(&reqs[2])["offset"], "1", "the next page");

    // Disconnecting: a signed nonce request, then the signed revocation for the user.
    withings.queue(200, r#"{"status":0,"body":{"nonce":"nonce-42"}}"#);
    withings.queue(200, r#"{"status":0,"body":{}}"#);
    let r = server.request(
        "DELETE",
        "/api/v1/patients/wi-1/connections/withings",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let reqs = withings.requests();
    assert_eq!(reqs.len(), 5, "{reqs:?}");
    let sign = |parts: &str| {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"wi-secret").expect("key");
        mac.update(parts.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(reqs[3].path, "/v2/signature");
    let f = form(&reqs[3]);
    let timestamp = (NOW / 1000).to_string();
    assert_eq!(
        (f["action"].as_str(), f["client_id"].as_str(), f["timestamp"].as_str()),
        ("getnonce", "wi-client", timestamp.as_str())
    );
    assert_eq!(f["signature"], sign(&format!("getnonce,wi-client,{timestamp}")));
    assert_eq!(reqs[4].path, "/v2/oauth2");
    let f = form(&reqs[4]);
    assert_eq!((f["action"].as_str(), f["nonce"].as_str(), f["userid"].as_str()), ("revoke", "nonce-42", "363"));
    assert_eq!(f["signature"], sign("revoke,wi-client,nonce-42"));
    assert!(connection(&server, "wi-1", "withings").is_null());
}
