//! The authorization matrix: every route of the router against every role, on the
//! principal's own patient and on another one; and pseudonymization (what an analyst can
//! reach never holds identity).

use std::collections::BTreeMap;

use serde_json::json;
use vitals_server::auth::{NewToken, Role};

use crate::harness::{ADMIN, NOW, Resp, TestServer, eventually};

const OWN: &str = "own-patient-0001";
const OTHER: &str = "other-patient-0002";
const SECRET_NAME: &str = "Annika Lindqvist";

/// Expected access per role: `-` refused, `own` only on their own patient(s), `any` always.
/// Every route of the router must be here, and nothing else.
const MATRIX: &[(&str, &str, &str)] = &[
    // (method, path, "admin clinician caregiver patient analyst device")
    ("GET", "/metrics", "any - - - - -"),
    ("GET", "/api/v1/system", "any - - - - -"),
    ("GET", "/api/v1/file-drop", "any - - - - -"),
    ("GET", "/api/v1/devices", "any - - - - -"),
    ("DELETE", "/api/v1/devices/{id}", "any - - - - -"),
    ("POST", "/api/v1/samples", "any - - - - own"),
    ("POST", "/api/v1/ingest/health-auto-export", "any - - - - own"),
    ("POST", "/api/v1/ingest/file", "any - - - - own"),
    ("POST", "/write", "any - - - - own"),
    ("POST", "/api/v2/write", "any - - - - own"),
    ("POST", "/nightscout/{patient}/api/v1/entries", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/entries", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/entries.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/entries.json", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/entries/sgv.json", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/entries/sgv", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/entries/mbg.json", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/entries/current.json", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/devicestatus", "any - - - - own"),
    ("POST", "/nightscout/{patient}/api/v1/devicestatus.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/devicestatus", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/devicestatus.json", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/treatments", "any - - - - own"),
    ("PUT", "/nightscout/{patient}/api/v1/treatments", "any - - - - own"),
    ("POST", "/nightscout/{patient}/api/v1/treatments.json", "any - - - - own"),
    ("PUT", "/nightscout/{patient}/api/v1/treatments.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/treatments", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/profile", "any - - - - own"),
    ("PUT", "/nightscout/{patient}/api/v1/profile", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/profile", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/profile.json", "any - - - - own"),
    ("PUT", "/nightscout/{patient}/api/v1/profile.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/profile.json", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v1/treatments.json", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/activity", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/activity", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/activity.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/activity.json", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/food", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/food", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v1/food.json", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/food.json", "any own own own any own"),
    ("DELETE", "/nightscout/{patient}/api/v1/{collection}/{id}", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v2/authorization/request/{token}", "any any any any any any"),
    ("GET", "/nightscout/{patient}/api/v3/version", "any any any any any any"),
    ("GET", "/nightscout/{patient}/api/v3/status", "any any any any any any"),
    ("GET", "/nightscout/{patient}/api/v3/lastModified", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v3/{collection}", "any own own own any own"),
    ("POST", "/nightscout/{patient}/api/v3/{collection}", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v3/{collection}/history", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v3/{collection}/history/{since}", "any own own own any own"),
    ("GET", "/nightscout/{patient}/api/v3/{collection}/{identifier}", "any own own own any own"),
    ("PUT", "/nightscout/{patient}/api/v3/{collection}/{identifier}", "any - - - - own"),
    ("PATCH", "/nightscout/{patient}/api/v3/{collection}/{identifier}", "any - - - - own"),
    ("DELETE", "/nightscout/{patient}/api/v3/{collection}/{identifier}", "any - - - - own"),
    ("GET", "/nightscout/{patient}/api/v1/status.json", "any any any any any any"),
    ("GET", "/nightscout/{patient}/api/v1/status", "any any any any any any"),
    ("GET", "/api/v1/metrics", "any any - - any -"),
    ("GET", "/api/v1/patients", "any own own own any -"),
    ("POST", "/api/v1/patients", "any any - - - -"),
    ("GET", "/api/v1/patients/{patient}/identity", "any own own own - -"),
    ("PUT", "/api/v1/patients/{patient}/identity", "any own - own - -"),
    ("GET", "/api/v1/patients/{patient}/export", "any own - own - -"),
    ("DELETE", "/api/v1/patients/{patient}/connections/{vendor}", "any own own own - -"),
    ("DELETE", "/api/v1/patients/{patient}", "any - - - - -"),
    ("GET", "/api/v1/patients/{patient}/events", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/latest", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/devices", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/connections", "any own own own any -"),
    ("PUT", "/api/v1/patients/{patient}/connections/{vendor}", "any own own own - -"),
    ("POST", "/api/v1/patients/{patient}/connections/{vendor}/sync", "any own own own - -"),
    ("POST", "/api/v1/patients/{patient}/connections/{vendor}/authorize", "any own own own - -"),
    ("POST", "/api/v1/connections/oauth", "any own own own - -"),
    ("GET", "/api/v1/patients/{patient}/chart", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/glucose", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/baselines", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/profile", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/seizures", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/live", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/series/{metric}", "any own own own any -"),
    ("GET", "/api/v1/patients/{patient}/fhir", "any own own own any -"),
    ("GET", "/api/v1/overview", "any own own own any -"),
    ("GET", "/api/v1/me", "any any any any any any"),
    ("GET", "/api/v1/openapi.json", "any any any any any any"),
    ("DELETE", "/api/v1/session", "any any any any any any"),
    ("GET", "/api/v1/users", "any - - - - -"),
    ("POST", "/api/v1/users", "any - - - - -"),
    ("GET", "/api/v1/users/{user}", "any - - - - -"),
    ("PUT", "/api/v1/users/{user}", "any - - - - -"),
    ("DELETE", "/api/v1/users/{user}", "any - - - - -"),
    ("GET", "/api/v1/teams", "any - - - - -"),
    ("PUT", "/api/v1/teams/{team}", "any - - - - -"),
    ("DELETE", "/api/v1/teams/{team}", "any - - - - -"),
    ("GET", "/api/v1/audit", "any - - - - -"),
    ("GET", "/api/v1/tokens", "any - - - - -"),
    ("POST", "/api/v1/tokens", "any - - - - -"),
    ("DELETE", "/api/v1/tokens/{id}", "any - - - - -"),
    ("GET", "/api/v1/dead-letters", "any - - - - -"),
    ("DELETE", "/api/v1/dead-letters", "any - - - - -"),
    ("GET", "/api/v1/dead-letters/{id}", "any - - - - -"),
    ("DELETE", "/api/v1/dead-letters/{id}", "any - - - - -"),
    ("POST", "/api/v1/dead-letters/{id}/replay", "any - - - - -"),
    ("GET", "/api/v1/alerts", "any own own own any -"),
    ("GET", "/api/v1/alerts/{id}", "any own own own any -"),
    ("POST", "/api/v1/alerts/{id}/ack", "any own own own - -"),
    ("POST", "/api/v1/alerts/{id}/snooze", "any own own own - -"),
    ("GET", "/api/v1/notifications", "any - - - - -"),
    ("POST", "/api/v1/notifications/test", "any - - - - -"),
    ("GET", "/api/v1/notifications/{id}", "any - - - - -"),
    ("POST", "/api/v1/notifications/{id}/replay", "any - - - - -"),
    ("GET", "/api/v1/campaigns", "any own - - - -"),
    ("POST", "/api/v1/campaigns", "any own - - - -"),
    ("GET", "/api/v1/campaigns/{id}", "any own - - - -"),
    ("POST", "/api/v1/campaigns/{id}/cancel", "any own - - - -"),
    ("GET", "/api/v1/patients/{patient}/campaigns", "any own own own - -"),
    ("PUT", "/api/v1/patients/{patient}/campaigns", "any own - own - -"),
    ("GET", "/api/v1/cohorts", "any any - - any -"),
    ("GET", "/api/v1/cohorts/{name}", "any any - - any -"),
    ("PUT", "/api/v1/cohorts/{name}", "any - - - - -"),
    ("DELETE", "/api/v1/cohorts/{name}", "any - - - - -"),
    ("GET", "/api/v1/rules", "any any - - any -"),
    ("POST", "/api/v1/rules", "any - - - - -"),
    ("POST", "/api/v1/rules/backtest", "any own - - any -"),
    ("GET", "/api/v1/rules/{name}", "any any - - any -"),
    ("PUT", "/api/v1/rules/{name}", "any - - - - -"),
    ("DELETE", "/api/v1/rules/{name}", "any - - - - -"),
    ("POST", "/api/v1/sql", "any own own - any -"),
    ("GET", "/api/v1/fhir/$export", "any own own - any -"),
    ("GET", "/api/v1/fhir/Patient/$export", "any own own - any -"),
    ("GET", "/api/v1/fhir/Group/{name}/$export", "any own own - any -"),
    ("GET", "/api/v1/fhir/$export-status/{id}", "any own own - any -"),
    ("DELETE", "/api/v1/fhir/$export-status/{id}", "any own own - any -"),
    ("GET", "/api/v1/fhir/$export-file/{id}/{file}", "any own own - any -"),
];

const ROLES: [Role; 6] = [Role::Admin, Role::Clinician, Role::Caregiver, Role::Patient, Role::Analyst, Role::Device];

/// A server with one of each role: the clinician and the caregiver in a team with OWN, a
/// patient account for OWN, a device bound to OWN. OWN and OTHER have data, an identity and
/// an alert each.
struct World {
    server: TestServer,
    tokens: BTreeMap<Role, String>,
    alerts: BTreeMap<&'static str, String>,
}

fn world() -> World {
    let server = TestServer::start();
    let d = &server.app.directory;
    let meta = d.meta();
    let mut tokens = BTreeMap::new();
    tokens.insert(Role::Admin, ADMIN.to_owned());
    for (name, role) in [("cli", Role::Clinician), ("care", Role::Caregiver), ("ana", Role::Analyst)] {
        d.create_user(name, role, None, None, NOW).expect("user");
    }
    d.create_user("pat", Role::Patient, None, Some(OWN), NOW).expect("patient user");
    vitals_server::people::set_team(meta, "ward", &["cli".into(), "care".into()], &[OWN.into()], NOW).expect("team");
    for (name, role) in
        [("cli", Role::Clinician), ("care", Role::Caregiver), ("ana", Role::Analyst), ("pat", Role::Patient)]
    {
        let (_, t) = d.create_token(&NewToken { name, user: Some(name), ..Default::default() }, NOW).expect("token");
        tokens.insert(role, t);
    }
    let (_, dev) = d
        .create_token(
            &NewToken {
                name: "band",
                role: Some(Role::Device),
                patient: Some(OWN),
                device: Some("w1"),
                ..Default::default()
            },
            NOW,
        )
        .expect("device token");
    tokens.insert(Role::Device, dev);
    let r = server.request(
        "POST",
        "/api/v1/rules",
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(json!({"name": "tachy", "expr": "heart_rate > 150"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for p in [OWN, OTHER] {
        let samples: Vec<_> = (0..5)
            .map(|i| json!({"patient": p, "metric": "heart_rate", "time": NOW - 60_000 + i * 1000, "value": 170}))
            .collect();
        assert_eq!(server.ingest(&json!(samples)).status, 200);
        let id = json!({"name": format!("{SECRET_NAME} {p}"), "date_of_birth": "1984-03-09",
            "contacts": [{"kind": "phone", "value": "+46 70 555 0199"}]});
        let r = server.request(
            "PUT",
            &format!("/api/v1/patients/{p}/identity"),
            &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
            Some(id.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut alerts = BTreeMap::new();
    eventually("an alert for each patient", || {
        let list = server.get("/api/v1/alerts", Some(ADMIN)).json();
        for a in list["alerts"].as_array().into_iter().flatten() {
            let p = a["patient"].as_str().unwrap_or_default();
            let key = if p == OWN { OWN } else { OTHER };
            alerts.insert(key, a["id"].as_str().unwrap_or_default().to_owned());
        }
        alerts.len() == 2
    });
    World { server, tokens, alerts }
}

fn reach_of(spec: &str, role: Role) -> &str {
    let i = ROLES.iter().position(|r| *r == role).expect("role");
    spec.split_whitespace().nth(i).unwrap_or_else(|| panic!("matrix entry {spec:?} lacks role {role}"))
}

/// A concrete request for a route template, about `patient`.
fn concrete(w: &World, method: &str, template: &str, patient: &str) -> (String, Vec<u8>) {
    let alert = w.alerts.get(if patient == OWN { OWN } else { OTHER }).expect("alert");
    let path = template
        .replace("{patient}", patient)
        .replace("{metric}", "heart_rate")
        .replace("{user}", "nobody")
        .replace("{team}", "matrix-team")
        .replace("{name}", "nothing")
        .replace("{file}", "Observation.ndjson")
        .replace("{collection}", "treatments")
        .replace("{identifier}", "nothing")
        .replace("{since}", "0")
        .replace("{vendor}", "dexcom-share")
        .replace("{id}", if template.starts_with("/api/v1/alerts/") { alert } else { "999999" })
        + match template.rsplit('/').next() {
            Some("chart") => "?metrics=heart_rate&from=1763000000000&to=1763780400000",
            Some("glucose" | "seizures") => "?from=1763000000000&to=1763780400000",
            Some("live") => "?events=1",
            _ => "",
        };
    let body = match (method, template) {
        ("POST", "/api/v1/samples") => {
            json!([{"patient": patient, "metric": "heart_rate", "time": NOW - 1000, "value": 60}]).to_string()
        }
        ("POST", "/write" | "/api/v2/write") => format!("heart_rate,patient={patient} value=61 {}000000", NOW - 900),
        ("POST", "/api/v1/rules/backtest") => json!({"expr": "heart_rate > 150", "patients": [patient],
            "from": NOW - 3_600_000, "to": NOW})
        .to_string(),
        ("POST", "/api/v1/alerts/{id}/snooze") => json!({"for": "10m"}).to_string(),
        ("POST", "/api/v1/sql") => {
            json!({"sql": format!("SELECT count(*) FROM samples WHERE patient = '{patient}'")}).to_string()
        }
        ("PUT", "/api/v1/patients/{patient}/identity") => {
            json!({"name": format!("{SECRET_NAME} {patient}")}).to_string()
        }
        ("PUT", "/api/v1/patients/{patient}/connections/{vendor}") => {
            json!({"username": "share-user", "password": "share-password"}).to_string()
        }
        _ => "{}".to_owned(),
    };
    (path, body.into_bytes())
}

fn send(w: &World, role: Role, method: &str, template: &str, patient: &str) -> Resp {
    let (path, body) = concrete(w, method, template, patient);
    let token = &w.tokens[&role];
    let path = path.replace("{token}", token);
    let auth = if template.starts_with("/nightscout/") {
        ("api-secret", token.clone())
    } else {
        ("Authorization", format!("Bearer {token}"))
    };
    let ctype = if template.ends_with("write") { "text/plain" } else { "application/json" };
    let headers = [(auth.0, auth.1.as_str()), ("Content-Type", ctype)];
    // GET and DELETE carry no body, as real clients send them: a body no handler reads may
    // arrive after the answer, and the server then ends the connection.
    let body = (method != "GET" && method != "DELETE").then_some(body.as_slice());
    w.server.request(method, &path, &headers, body)
}

/// Whether a response is a refusal by authorization.
fn refused(r: &Resp, template: &str) -> bool {
    // An alert of a patient out of reach is not even shown to exist.
    r.status == 403 || (template.starts_with("/api/v1/alerts/") && r.status == 404)
}

#[test]
fn every_route_is_in_the_authorization_matrix_and_every_role_gets_exactly_its_entry() {
    let w = world();
    let table: Vec<(String, String)> =
        w.server.app_routes().into_iter().map(|r| (r.method.to_string(), r.path)).collect();
    let matrix: Vec<(String, String)> = MATRIX.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let missing: Vec<_> = table.iter().filter(|r| !matrix.contains(r)).collect();
    let stale: Vec<_> = matrix.iter().filter(|r| !table.contains(r)).collect();
    assert!(missing.is_empty(), "routes with no entry in the authorization matrix: {missing:?}");
    assert!(stale.is_empty(), "matrix entries for routes that do not exist: {stale:?}");

    // Without credentials every route is refused (only /healthz and /api/v1/login are public).
    for (method, template, _) in MATRIX {
        let (path, body) = concrete(&w, method, template, OWN);
        let r = w.server.request(method, &path, &[("Content-Type", "application/json")], Some(&body));
        assert_eq!(r.status, 401, "{method} {path} without credentials: {}", r.body);
    }

    // Destructive routes run last so that they do not remove what the others look at.
    let mut order: Vec<&(&str, &str, &str)> = MATRIX.iter().collect();
    order.sort_by_key(|(m, p, _)| (*m == "DELETE" && p.contains("{patient}"), *m == "POST" && p.contains("/ack")));
    let mut checked = 0;
    for (method, template, spec) in order {
        // The admin's erasure of OWN disables OWN's patient account: the admin goes last.
        let mut roles = ROLES;
        if *method == "DELETE" && template.contains("{patient}") {
            roles.reverse();
        }
        for role in roles {
            let reach = reach_of(spec, role);
            let on_patient = template.contains("{patient}") || template.starts_with("/api/v1/alerts/");
            let writes_samples = reach_of(spec, Role::Device) == "own" && *method != "GET";
            let cases: &[&str] = if on_patient || writes_samples { &[OWN, OTHER] } else { &[OWN] };
            for patient in cases {
                // The bound device's batch naming another patient is refused by the validator
                // (per sample), not by the route: it is checked in its own test.
                if writes_samples && !on_patient && *patient == OTHER {
                    continue;
                }
                let r = send(&w, role, method, template, patient);
                let expect_refused = match reach {
                    "-" => true,
                    "any" => false,
                    "own" => *patient == OTHER && (on_patient || writes_samples),
                    other => panic!("bad matrix value {other:?}"),
                };
                assert_eq!(
                    refused(&r, template),
                    expect_refused,
                    "{role} {method} {template} on {patient}: {} {}",
                    r.status,
                    r.body
                );
                if !expect_refused {
                    assert!(r.status < 500, "{role} {method} {template}: {} {}", r.status, r.body);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > MATRIX.len() * ROLES.len(), "{checked} cases");
}

#[test]
fn lists_show_only_the_patients_and_alerts_a_role_reaches() {
    let w = world();
    let patients = |role: Role| -> Vec<String> {
        let r = w.server.get("/api/v1/patients", Some(&w.tokens[&role]));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["patients"]
            .as_array()
            .expect("list")
            .iter()
            .map(|p| p["patient"].as_str().expect("id").to_owned())
            .collect()
    };
    for role in [Role::Clinician, Role::Caregiver, Role::Patient] {
        assert_eq!(patients(role), vec![OWN.to_owned()], "{role}");
    }
    for role in [Role::Admin, Role::Analyst] {
        let mut all = patients(role);
        all.sort();
        assert_eq!(all, vec![OTHER.to_owned(), OWN.to_owned()], "{role}");
    }
    let alert_patients = |role: Role| -> Vec<String> {
        let r = w.server.get("/api/v1/alerts", Some(&w.tokens[&role]));
        r.json()["alerts"]
            .as_array()
            .expect("list")
            .iter()
            .map(|a| a["patient"].as_str().expect("p").to_owned())
            .collect()
    };
    assert_eq!(alert_patients(Role::Caregiver), vec![OWN.to_owned()]);
    assert_eq!(alert_patients(Role::Analyst).len(), 2);
    // A clinician's backtest over "all patients" covers their own only.
    let r = w.server.request(
        "POST",
        "/api/v1/rules/backtest",
        &[("Authorization", &format!("Bearer {}", w.tokens[&Role::Clinician])), ("Content-Type", "application/json")],
        Some(json!({"expr": "heart_rate > 150", "from": NOW - 3_600_000, "to": NOW}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(OWN) && !r.body.contains(OTHER), "{}", r.body);
}

#[test]
fn nothing_an_analyst_can_reach_holds_identity_and_their_reads_are_audited() {
    let w = world();
    let analyst = &w.tokens[&Role::Analyst];
    let mut reached = 0;
    for (method, template, spec) in MATRIX {
        if *method != "GET" || reach_of(spec, Role::Analyst) == "-" {
            continue;
        }
        for patient in [OWN, OTHER] {
            let r = send(&w, Role::Analyst, method, template, patient);
            assert!(r.status < 500 && ![401, 403].contains(&r.status), "{template}: {} {}", r.status, r.body);
            for secret in [SECRET_NAME, "Lindqvist", "1984-03-09", "555 0199"] {
                assert!(!r.body.contains(secret), "{template} shows {secret:?} to an analyst: {}", r.body);
            }
            // Reads of one's own account and of the site's settings are not audited;
            // everything else is.
            let unaudited = [
                "/api/v1/me",
                "/api/v1/openapi.json",
                "/nightscout/{patient}/api/v1/status.json",
                "/nightscout/{patient}/api/v1/status",
                "/nightscout/{patient}/api/v2/authorization/request/{token}",
                "/nightscout/{patient}/api/v3/version",
                "/nightscout/{patient}/api/v3/status",
            ];
            reached += usize::from(!unaudited.contains(template));
        }
    }
    assert!(reached >= 20, "{reached} analyst reads");
    let r = w.server.get(&format!("/api/v1/patients/{OWN}/identity"), Some(analyst));
    assert_eq!(r.status, 403);
    // The identity is there for those allowed.
    let r = w.server.get(&format!("/api/v1/patients/{OWN}/identity"), Some(&w.tokens[&Role::Caregiver]));
    assert_eq!((r.status, r.json()["identity"]["name"].clone()), (200, json!(format!("{SECRET_NAME} {OWN}"))));

    let audit = w.server.get("/api/v1/audit?actor=user:ana&limit=1000", Some(ADMIN)).json();
    let entries = audit["entries"].as_array().expect("entries");
    assert!(entries.len() >= reached, "every analyst read is audited: {} < {reached}", entries.len());
    let denied = entries.iter().find(|e| e["outcome"] == "denied").expect("the refused identity read is audited");
    assert_eq!((denied["action"].clone(), denied["patient"].clone()), (json!("identity.read"), json!(OWN)));
    assert!(entries.iter().all(|e| e["origin"] == "127.0.0.1"), "from where: {entries:?}");
    let care = w.server.get("/api/v1/audit?actor=user:care&action=identity.", Some(ADMIN)).json();
    assert_eq!(care["entries"][0]["outcome"], "ok");
}
