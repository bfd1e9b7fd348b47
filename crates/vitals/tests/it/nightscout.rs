//! The Nightscout-compatible API: an xDrip+-style upload replayed by a real HTTP client
//! (Python requests, gzip, `api-secret: sha1(device token)`), reads as followers do them
//! (`?token=`), and auth.

use std::process::Command;

use serde_json::{Value, json};
use vitals_core::time::MS_PER_MINUTE;

use crate::harness::{ADMIN, DEVICE, NOW, TestServer};

const XDRIP: &str = r#"
import gzip, hashlib, json, sys
import requests

base, token, reader, now = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
secret = hashlib.sha1(token.encode()).hexdigest()
entries = [{"device": "xDrip-DexcomG6", "date": now - i * 300000, "dateString": "", "sgv": 120 - 3 * i,
            "delta": 3, "direction": "FortyFiveUp", "type": "sgv", "filtered": 120000, "unfiltered": 121000,
            "rssi": 100, "noise": 1} for i in range(6)]
for e in entries:
    del e["dateString"]
entries.append({"device": "xDrip-DexcomG6", "date": now - 60000, "mbg": 115, "type": "mbg"})
headers = {"api-secret": secret, "Content-Type": "application/json", "Content-Encoding": "gzip", "User-Agent": "xDrip+"}
r = requests.post(base + "/api/v1/entries", data=gzip.compress(json.dumps(entries).encode()), headers=headers)
print(r.status_code, len(r.json()))
r = requests.post(base + "/api/v1/devicestatus", json={"device": "xDrip-DexcomG6", "created_at": "2025-11-22T02:59:00.000Z", "uploader": {"battery": 76}}, headers={"api-secret": secret})
print(r.status_code)
r = requests.post(base + "/api/v1/treatments", json=[{"eventType": "Meal Bolus", "created_at": "2025-11-22T02:50:00.000Z", "carbs": 45, "insulin": 4.5}], headers={"api-secret": secret})
print(r.status_code)
r = requests.get(base + "/api/v1/entries.json", params={"count": 3, "token": reader})
print(json.dumps(r.json()))
"#;

#[test]
fn an_xdrip_style_upload_works_unchanged_and_followers_read_it_back() {
    let server = TestServer::start();
    let base = format!("{}/nightscout/ns-1", server.url);
    // The uploader's device token (its SHA-1 is the api-secret), and a follower's token.
    let out = Command::new("python3")
        .args(["-c", XDRIP, &base, DEVICE, ADMIN, &NOW.to_string()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "200 7", "all seven entries stored");
    assert_eq!(lines[1], "200");
    assert_eq!(lines[2], "200", "treatments are stored as events");
    let newest: Vec<Value> = serde_json::from_str(lines[3]).expect("entries");
    assert_eq!(newest.len(), 3);
    assert_eq!(
        (newest[0]["type"].clone(), newest[0]["sgv"].clone(), newest[0]["date"].clone()),
        (json!("sgv"), json!(120), json!(NOW))
    );
    // The follower sees what the CGM showed, not a recomputation: the arrow, delta, noise,
    // raw values, signal and the device name as sent.
    for (k, v) in [
        ("direction", json!("FortyFiveUp")),
        ("delta", json!(3)),
        ("noise", json!(1)),
        ("filtered", json!(120000)),
        ("unfiltered", json!(121000)),
        ("rssi", json!(100)),
        ("device", json!("xDrip-DexcomG6")),
        ("_id", json!(format!("sgv-{NOW}"))),
    ] {
        assert_eq!(newest[0][k], v, "{k} as xDrip+ sent it: {}", newest[0]);
    }
    assert_eq!(newest[0]["dateString"], json!("2025-11-22T03:00:00.000Z"), "added where the uploader left it out");
    assert_eq!(newest[1]["type"], json!("mbg"));

    // sgv.json with date filters, newest first; current.json; status.json.
    let from = NOW - 12 * MS_PER_MINUTE;
    let r =
        server.get(&format!("/nightscout/ns-1/api/v1/entries/sgv.json?count=10&find[date][$gte]={from}"), Some(ADMIN));
    let sgv: Vec<i64> = r.json().as_array().expect("array").iter().map(|e| e["sgv"].as_i64().expect("sgv")).collect();
    assert_eq!(sgv, vec![120, 117, 114]);
    let cur = server.get("/nightscout/ns-1/api/v1/entries/current.json", Some(ADMIN)).json();
    assert_eq!(cur.as_array().map(Vec::len), Some(1));
    let status = server.get("/nightscout/ns-1/api/v1/status.json", Some(ADMIN)).json();
    assert_eq!(status["status"], json!("ok"));
    let status = server.get("/nightscout/ns-1/api/v1/devicestatus.json", Some(ADMIN)).json();
    assert_eq!(status[0]["uploader"], json!({"battery": 76}), "the status as sent: {status}");
    // The uploader battery became a reading; the treatment an event.
    let latest = server.get("/api/v1/patients/ns-1/latest", Some(ADMIN)).json();
    assert!(
        latest["metrics"].as_array().expect("m").iter().any(|m| m["metric"] == "battery_level" && m["value"] == 76.0),
        "{latest}"
    );
    let ev = server.get("/api/v1/patients/ns-1/events?kind=treatment", Some(ADMIN)).json();
    assert_eq!(ev["events"][0]["attributes"]["carbs"], json!(45), "{ev}");
    assert_eq!(ev["events"][0]["start"], json!("2025-11-22T02:50:00.000Z"));
}

#[test]
fn nightscout_auth_is_never_anonymous_and_respects_roles_and_bound_patients() {
    let server = TestServer::start();
    let agent = crate::harness::agent();
    let get = |path: &str, header: Option<(&str, String)>| {
        let mut req = agent.get(&format!("{}{path}", server.url));
        if let Some((k, v)) = &header {
            req = req.header(*k, v);
        }
        crate::harness::into_resp(req.call().expect("request"))
    };
    let sha1 = |t: &str| hex::encode(<sha1::Sha1 as sha1::Digest>::digest(t.as_bytes()));
    let path = "/nightscout/ns-2/api/v1/entries.json";
    assert_eq!(get(path, None).status, 401, "no anonymous reads");
    assert_eq!(get(path, Some(("api-secret", sha1("wrong-token-0123456789")))).status, 401);
    // People read with their token itself; the SHA-1 form is for device (uploader) tokens.
    assert_eq!(get(path, Some(("api-secret", ADMIN.to_owned()))).status, 200);
    assert_eq!(get(&format!("{path}?token={ADMIN}"), None).status, 200);
    assert_eq!(get(path, Some(("api-secret", sha1(ADMIN)))).status, 401);
    assert_eq!(get(&format!("{path}?secret={}", sha1(ADMIN)), None).status, 401);
    assert_eq!(get(path, Some(("api-secret", sha1(DEVICE)))).status, 403, "a device token only writes");
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"cgm","role":"device","patient":"ns-3"}"#,
    );
    let bound = r.json()["token"].as_str().expect("token").to_owned();
    let entry = format!("[{{\"sgv\": 100, \"date\": {NOW}}}]");
    let post = |p: &str| {
        let r = agent
            .post(&format!("{}/nightscout/{p}/api/v1/entries", server.url))
            .header("api-secret", &sha1(&bound))
            .header("Content-Type", "application/json")
            .send(entry.as_bytes())
            .expect("post");
        r.status().as_u16()
    };
    assert_eq!(post("ns-3"), 200);
    assert_eq!(post("ns-4"), 403, "a bound token serves only its patient");
}

/// Treatments as AndroidAPS (NSClient, API v1) and Loop upload them, and AndroidAPS's
/// profile store, then read back by a follower, with Python requests.
const TREATMENTS: &str = r#"
import hashlib, json, sys
import requests

base, token, reader = sys.argv[1], sys.argv[2], sys.argv[3]
secret = hashlib.sha1(token.encode()).hexdigest()
aaps = [{"eventType": "Meal Bolus", "created_at": "2025-11-22T02:30:00.000Z", "date": 1763778600000, "carbs": 30,
         "insulin": 3.5, "enteredBy": "AndroidAPS", "isSMB": False, "pumpId": 4711, "pumpType": "ACCU_CHEK_COMBO",
         "pumpSerial": "PUMP_10154415", "app": "AAPS", "utcOffset": 60},
        {"eventType": "Correction Bolus", "created_at": "2025-11-22T02:40:00.000Z", "insulin": 0.4, "isSMB": True,
         "enteredBy": "AndroidAPS", "pumpId": 4712, "app": "AAPS"}]
loop = [{"eventType": "Temp Basal", "created_at": "2025-11-22T02:45:00Z", "timestamp": "2025-11-22T02:45:00Z",
         "enteredBy": "loop://iPhone", "duration": 30, "rate": 0.45, "absolute": 0.45, "temp": "absolute",
         "syncIdentifier": "8f1c0d2e", "insulinType": "Humalog"}]
for batch in (aaps, loop):
    r = requests.post(base + "/api/v1/treatments", json=batch, headers={"api-secret": secret})
    print(r.status_code)
# Loop sends its temp basal again (a retry): stored once.
r = requests.post(base + "/api/v1/treatments", json=loop, headers={"api-secret": secret})
print(r.status_code)
r = requests.get(base + "/api/v1/treatments.json",
                 params={"find[created_at][$gte]": "2025-11-22T02:35:00.000Z", "count": 50, "token": reader})
print(json.dumps(r.json()))
r = requests.get(base + "/api/v1/treatments", params={"find[eventType]": "Meal Bolus", "token": reader})
print(json.dumps(r.json()))
r = requests.get(base + "/api/v1/treatments.json", params={"count": 1, "token": reader})
print(json.dumps(r.json()))
# AndroidAPS uploads its profile store when the profile changes; a follower reads it.
store = {"Default": {"dia": 5, "timezone": "Europe/Berlin", "units": "mg/dl",
                     "carbratio": [{"time": "00:00", "value": 10, "timeAsSeconds": 0}],
                     "sens": [{"time": "00:00", "value": 45, "timeAsSeconds": 0}],
                     "basal": [{"time": "00:00", "value": 0.8, "timeAsSeconds": 0}, {"time": "06:00", "value": 1.05, "timeAsSeconds": 21600}],
                     "target_low": [{"time": "00:00", "value": 100, "timeAsSeconds": 0}],
                     "target_high": [{"time": "00:00", "value": 120, "timeAsSeconds": 0}]}}
for day, dia in (("2025-11-01", 4), ("2025-11-20", 5)):
    doc = {"defaultProfile": "Default", "store": store, "startDate": day + "T00:00:00.000Z", "units": "mg/dl",
           "enteredBy": "AndroidAPS", "created_at": day + "T00:00:00.000Z"}
    doc["store"]["Default"]["dia"] = dia
    r = requests.post(base + "/api/v1/profile", json=json.loads(json.dumps(doc)), headers={"api-secret": secret})
    print(r.status_code)
r = requests.get(base + "/api/v1/profile.json", params={"token": reader})
print(json.dumps(r.json()))
"#;

#[test]
fn treatments_and_profiles_come_back_to_followers_as_the_uploader_sent_them() {
    let server = TestServer::start();
    let base = format!("{}/nightscout/ns-2", server.url);
    let out = Command::new("python3").args(["-c", TREATMENTS, &base, DEVICE, ADMIN]).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(&lines[..3], ["200", "200", "200"]);
    let since: Vec<Value> = serde_json::from_str(lines[3]).expect("treatments");
    let kinds: Vec<&str> = since.iter().map(|t| t["eventType"].as_str().expect("eventType")).collect();
    assert_eq!(kinds, ["Temp Basal", "Correction Bolus"], "newest first, from 02:35, the retry stored once");
    let basal = &since[0];
    for (k, v) in [
        ("absolute", json!(0.45)),
        ("duration", json!(30)),
        ("temp", json!("absolute")),
        ("enteredBy", json!("loop://iPhone")),
        ("syncIdentifier", json!("8f1c0d2e")),
        ("created_at", json!("2025-11-22T02:45:00Z")),
    ] {
        assert_eq!(basal[k], v, "{k} as Loop sent it: {basal}");
    }
    assert_eq!(basal["_id"], json!("8f1c0d2e"), "the id is the sender's own");
    assert_eq!(since[1]["isSMB"], json!(true));
    let meals: Vec<Value> = serde_json::from_str(lines[4]).expect("meals");
    assert_eq!(meals.len(), 1);
    assert_eq!(
        (meals[0]["carbs"].clone(), meals[0]["pumpSerial"].clone(), meals[0]["utcOffset"].clone()),
        (json!(30), json!("PUMP_10154415"), json!(60))
    );
    let newest: Vec<Value> = serde_json::from_str(lines[5]).expect("newest");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["eventType"], json!("Temp Basal"));
    assert_eq!(&lines[6..8], ["200", "200"]);
    let profiles: Vec<Value> = serde_json::from_str(lines[8]).expect("profiles");
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["startDate"], json!("2025-11-20T00:00:00.000Z"), "newest first");
    assert_eq!(profiles[0]["store"]["Default"]["dia"], json!(5));
    assert_eq!(profiles[1]["store"]["Default"]["dia"], json!(4));
    assert_eq!(
        profiles[0]["store"]["Default"]["basal"][1],
        json!({"time": "06:00", "value": 1.05, "timeAsSeconds": 21600})
    );
    assert_eq!(profiles[0]["defaultProfile"], json!("Default"));
    // Another patient's follower token cannot read them; no token at all neither.
    let r = server.request("GET", "/nightscout/ns-2/api/v1/treatments.json", &[], None);
    assert_eq!(r.status, 401);
}

/// A day of a closed loop as its clients talk to the server, replayed with Python requests:
/// xDrip+ (status poll, gzip entries with a calibration, its battery), Loop (entries with
/// `trend`/`trendRate` and a `loop://` device, a devicestatus with predictions) and
/// AndroidAPS on API v1 (devicestatus with `openaps`, pump and phone batteries), then a
/// follower app reading what a follower screen shows.
const LOOP_DAY: &str = r#"
import gzip, hashlib, json, sys
import requests

base, uploader, follower, now = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
secret = hashlib.sha1(uploader.encode()).hexdigest()
up = {"api-secret": secret, "Content-Type": "application/json"}
out = []
# xDrip+ polls status.json first (to learn units and whether careportal is on).
r = requests.get(base + "/api/v1/status.json", headers={"api-secret": secret})
out.append(r.status_code)
xdrip = [{"device": "xDrip-DexcomG6", "date": now - 600000, "dateString": "2025-11-22T01:50:00.000-0100",
          "sysTime": "2025-11-22T01:50:00.000-0100", "sgv": 142, "delta": 6.2, "direction": "SingleUp",
          "type": "sgv", "filtered": 141176.47, "unfiltered": 143529.41, "rssi": 100, "noise": 2},
         {"device": "xDrip-DexcomG6", "type": "cal", "date": now - 590000, "slope": 850.5, "intercept": 31000, "scale": 1}]
r = requests.post(base + "/api/v1/entries", data=gzip.compress(json.dumps(xdrip).encode()),
                  headers=dict(up, **{"Content-Encoding": "gzip", "User-Agent": "xDrip+"}))
out.append(r.status_code)
out.append(len(r.json()))
loop = [{"date": float(now - 300000), "dateString": "2025-11-22T02:55:00Z", "device": "loop://iPhone", "type": "sgv",
         "sgv": 150, "trend": 2, "direction": "SingleUp", "trendRate": 2.4, "isCalibration": False}]
r = requests.post(base + "/api/v1/entries.json", json=loop, headers=up)
out.append(r.status_code)
status_loop = {"device": "loop://iPhone", "created_at": "2025-11-22T02:55:10Z",
               "uploader": {"name": "iPhone", "timestamp": "2025-11-22T02:55:10Z", "battery": 64},
               "pump": {"clock": "2025-11-22T02:55:00Z", "pumpID": "123456", "reservoir": 112.5,
                        "battery": {"percent": 75}, "suspended": False, "bolusing": False},
               "loop": {"name": "Loop", "version": "3.4.1", "timestamp": "2025-11-22T02:55:05Z",
                        "iob": {"iob": 1.35, "timestamp": "2025-11-22T02:55:00Z"}, "cob": {"cob": 12, "timestamp": "2025-11-22T02:55:00Z"},
                        "predicted": {"startDate": "2025-11-22T02:55:00Z", "values": [150, 153, 155, 156, 156]},
                        "automaticDoseRecommendation": {"timestamp": "2025-11-22T02:55:05Z", "bolusVolume": 0.1, "basalAdjustment": {"rate": 1.2, "duration": 30}}},
               "override": {"active": False}}
r = requests.post(base + "/api/v1/devicestatus", json=[status_loop], headers=up)
out.append(r.status_code)
status_aaps = {"device": "openaps://samsung SM-G970F", "created_at": "2025-11-22T02:59:30.000Z", "date": now - 30000,
               "uploaderBattery": 81, "isCharging": False,
               "pump": {"clock": "2025-11-22T02:59:00.000Z", "reservoir": 87, "battery": {"percent": 60},
                        "status": {"status": "normal", "timestamp": "2025-11-22T02:59:00.000Z"}},
               "openaps": {"suggested": {"bg": 150, "eventualBG": 132, "reason": "COB: 12, Dev: 8", "timestamp": "2025-11-22T02:59:10.000Z"},
                           "enacted": {"rate": 0.9, "duration": 30, "received": True},
                           "iob": {"iob": 1.1, "basaliob": 0.3, "time": "2025-11-22T02:59:00.000Z"}},
               "configuration": {"pump": "Combo", "version": "3.2.0"}}
r = requests.post(base + "/api/v1/devicestatus", json=status_aaps, headers=up)
out.append(r.status_code)
# A follower app: the last two hours of glucose, the newest status, the site settings.
f = {"token": follower}
r = requests.get(base + "/api/v1/entries/sgv.json", params=dict(f, count=24, **{"find[date][$gte]": now - 7200000}))
out.append(json.dumps(r.json()))
r = requests.get(base + "/api/v1/devicestatus.json", params=dict(f, count=2))
out.append(json.dumps(r.json()))
r = requests.get(base + "/api/v1/devicestatus.json", params=dict(f, **{"find[device]": "loop://iPhone"}))
out.append(json.dumps(r.json()))
r = requests.get(base + "/api/v1/entries.json", params=dict(f, count=10))
out.append(json.dumps(r.json()))
r = requests.get(base + "/api/v1/status.json", params=f)
out.append(json.dumps(r.json()))
# xDrip+ again: its watch's heart rate and steps as activity, then a treatment it upserts
# with PUT, looks up by uuid and deletes by _id.
act = [{"type": "hr-bpm", "timeStamp": now - 120000, "created_at": "2025-11-22T02:58:00.000Z", "bpm": 74, "accuracy": 3},
       {"type": "steps-total", "timeStamp": now - 120000, "created_at": "2025-11-22T02:58:00.000Z", "steps": 4211}]
out.append(requests.post(base + "/api/v1/activity", json=act, headers=up).status_code)
note = {"_id": "65f0c0ffee0123456789abcd", "uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "eventType": "Note",
        "enteredBy": "xdrip", "notes": "sensor warm-up", "created_at": "2025-11-22T02:57:00.000Z", "timestamp": now - 180000}
out.append(requests.put(base + "/api/v1/treatments", json=[note], headers=up).status_code)
r = requests.get(base + "/api/v1/treatments.json", params={"find[uuid]": note["uuid"]}, headers=up)
out.append(json.dumps(r.json()))
# xDrip+ downloads treatments only when they changed (ETag, If-Modified-Since).
t1 = requests.get(base + "/api/v1/treatments.json", headers=up)
t2 = requests.get(base + "/api/v1/treatments.json", headers=dict(up, **{"If-None-Match": t1.headers["ETag"]}))
t3 = requests.get(base + "/api/v1/treatments.json", headers=dict(up, **{"If-Modified-Since": "Sat, 22 Nov 2025 03:00:01 GMT"}))
t4 = requests.get(base + "/api/v1/treatments.json", headers=dict(up, **{"If-Modified-Since": t1.headers["Last-Modified"]}))
found = r.json()
assert isinstance(found, list) and found, (r.status_code, found)
out.append(requests.delete(base + "/api/v1/treatments/" + found[0]["_id"], headers=up).status_code)
out.append(json.dumps(requests.get(base + "/api/v1/treatments.json", headers=up).json()))
t5 = requests.get(base + "/api/v1/treatments.json", headers=dict(up, **{"If-None-Match": t1.headers["ETag"]}))
out.append(json.dumps([t1.status_code, t1.headers["Last-Modified"], t2.status_code, t2.text, t3.status_code, t4.status_code, t5.status_code]))
out.append(json.dumps(requests.get(base + "/api/v1/activity.json", params=f).json()))
for line in out:
    print(line)
"#;

#[test]
fn a_closed_loops_uploaders_and_a_follower_talk_to_it_as_to_nightscout() {
    let server = TestServer::with_config(|c| {
        c.nightscout.units = "mmol".into();
        c.nightscout.bg_target_bottom = 72.0;
    });
    // The patient's uploaders share one device token bound to the patient.
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"cgm","role":"device","patient":"ns-5"}"#,
    );
    let uploader = r.json()["token"].as_str().expect("token").to_owned();
    let base = format!("{}/nightscout/ns-5", server.url);
    let out = Command::new("python3")
        .args(["-c", LOOP_DAY, &base, &uploader, ADMIN, &NOW.to_string()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(&lines[..6], ["200", "200", "2", "200", "200", "200"], "the sgv and the calibration stored");
    let parse = |i: usize| -> Value { serde_json::from_str(lines[i]).expect("json") };

    let sgv = parse(6);
    let sgv = sgv.as_array().expect("array");
    assert_eq!(sgv.len(), 2, "only sgv entries: {sgv:?}");
    let (lp, xd) = (&sgv[0], &sgv[1]);
    assert_eq!(
        (&lp["device"], &lp["direction"], &lp["trend"], &lp["trendRate"], &lp["sgv"]),
        (&json!("loop://iPhone"), &json!("SingleUp"), &json!(2), &json!(2.4), &json!(150)),
        "Loop's entry as sent: {lp}"
    );
    assert_eq!(
        (&xd["direction"], &xd["delta"], &xd["noise"], &xd["filtered"], &xd["unfiltered"], &xd["dateString"]),
        (
            &json!("SingleUp"),
            &json!(6.2),
            &json!(2),
            &json!(141176.47),
            &json!(143529.41),
            &json!("2025-11-22T01:50:00.000-0100")
        ),
        "xDrip+'s entry as sent: {xd}"
    );

    let statuses = parse(7);
    let devices: Vec<&str> =
        statuses.as_array().expect("array").iter().map(|s| s["device"].as_str().expect("device")).collect();
    assert_eq!(devices, ["openaps://samsung SM-G970F", "loop://iPhone"], "newest first");
    assert_eq!(statuses[0]["openaps"]["suggested"]["eventualBG"], json!(132));
    assert_eq!(statuses[0]["pump"]["reservoir"], json!(87));
    assert_eq!(statuses[1]["loop"]["predicted"]["values"], json!([150, 153, 155, 156, 156]));
    assert_eq!(statuses[1]["loop"]["automaticDoseRecommendation"]["basalAdjustment"]["rate"], json!(1.2));
    let only_loop = parse(8);
    assert_eq!(only_loop.as_array().map(Vec::len), Some(1), "{only_loop}");
    assert_eq!(only_loop[0]["uploader"]["battery"], json!(64));

    let odd = server.get("/nightscout/ns-5/api/v1/devicestatus.json?find[a%22b]=1", Some(ADMIN));
    assert_eq!(odd.status, 400, "a field that is not a plain name is refused: {}", odd.body);
    let all = parse(9);
    let types: Vec<&str> = all.as_array().expect("array").iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["sgv", "cal", "sgv"], "entries.json has every type, newest first: {all}");
    assert_eq!(all[1]["slope"], json!(850.5));

    let status = parse(10);
    assert_eq!(status["settings"]["units"], json!("mmol"), "from [nightscout]: {status}");
    assert_eq!(status["settings"]["thresholds"]["bgTargetBottom"], json!(72));
    assert_eq!(status["careportalEnabled"], json!(true));
    assert!(status["settings"]["enable"].as_array().expect("enable").contains(&json!("loop")));

    assert_eq!(&lines[11..13], ["200", "200"], "activity and the PUT treatment stored");
    let by_uuid = parse(13);
    assert_eq!(by_uuid[0]["_id"], json!("65f0c0ffee0123456789abcd"), "found by uuid: {by_uuid}");
    assert_eq!(lines[14], "200", "deleted by _id");
    assert_eq!(parse(15), json!([]), "the uploader's own read no longer shows it");
    assert_eq!(
        parse(16),
        json!([200, "Sat, 22 Nov 2025 03:00:00 GMT", 304, "", 304, 200, 200]),
        "unchanged: 304 by tag or by a later date (not the same second); the deletion changes the tag"
    );
    let activity = parse(17);
    let kinds: Vec<&str> =
        activity.as_array().expect("array").iter().map(|a| a["type"].as_str().expect("type")).collect();
    assert_eq!(kinds.len(), 2, "{activity}");
    assert!(kinds.contains(&"hr-bpm") && kinds.contains(&"steps-total"));
    let hr = server.get(
        &format!("/api/v1/patients/ns-5/series/heart_rate?time_format=ms&from={}&to={}", NOW - 600_000, NOW),
        Some(ADMIN),
    );
    assert_eq!(hr.json()["points"][0]["value"], json!(74), "the watch's heart rate is a reading: {}", hr.body);

    // The batteries also became readings of each device (uploader and pump).
    let devices = server.get("/api/v1/patients/ns-5/devices", Some(ADMIN)).json();
    let battery = |device: &str| {
        devices["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|d| d["device"] == device)
            .map(|d| d["battery"]["value"].clone())
    };
    assert_eq!(battery("openaps-samsung-sm-g970f-pump"), Some(json!(60.0)), "{devices}");
    assert_eq!(battery("loop-iphone"), Some(json!(64.0)), "{devices}");
    // A patient's export holds what the uploaders sent; erasure removes it.
    let r = server.get_accept("/api/v1/patients/ns-5/export", Some(ADMIN), "application/zip");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.bytes.clone())).expect("a zip archive");
    let mut docs = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("documents.ndjson").expect("documents.ndjson"), &mut docs)
        .expect("read");
    assert_eq!(docs.lines().count(), 3 + 2 + 2, "three entries, two statuses, two activity records: {docs}");
    assert!(docs.contains("automaticDoseRecommendation"), "{docs}");
    let auth = format!("Bearer {ADMIN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = server.request("DELETE", "/api/v1/patients/ns-5", &headers, Some(b"{}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let after = server.get("/nightscout/ns-5/api/v1/devicestatus.json", Some(ADMIN)).json();
    assert_eq!(after, json!([]), "no status left after erasure");
}

/// AndroidAPS' NSClient v3 as its Retrofit interface (`NightscoutRemoteService`) talks:
/// the token exchange, status, lastModified, sgv reads and history, treatment create /
/// deduplicate / patch / delete, device status and profile uploads; with xDrip+ uploading
/// on API v1 beside it and downloading treatments with its uploader secret.
const AAPS_V3: &str = r#"
import gzip, hashlib, json, sys
import requests

base, uploader, now = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
r = requests.get(base + "/api/v2/authorization/request/" + uploader)
out["jwt"] = [r.status_code, r.json()]
bearer = {"Authorization": "Bearer " + r.json()["token"]}
v3 = base + "/api/v3/"
out["status"] = requests.get(v3 + "status", headers=bearer).json()
# xDrip+ uploads two readings on API v1 meanwhile.
xdrip = [{"device": "xDrip-DexcomG6", "date": now - i * 300000, "sgv": 110 + i, "direction": "FortyFiveDown",
          "type": "sgv", "delta": -4.5} for i in range(2)]
r = requests.post(base + "/api/v1/entries", json=xdrip, headers={"api-secret": hashlib.sha1(uploader.encode()).hexdigest()})
out["xdrip"] = r.status_code
out["sgvs"] = requests.get(v3 + "entries?sort$desc=date&type=sgv", headers=bearer).json()
out["newer"] = requests.get(v3 + "entries?sort=date", params={"date$gt": now - 400000, "limit": 10}, headers=bearer).json()
out["entries_history"] = requests.get(v3 + "entries/history/0", params={"limit": 500}, headers=bearer).json()
t = {"date": now - 60000, "utcOffset": 60, "eventType": "Correction Bolus", "insulin": 0.6, "type": "NORMAL",
     "isSMB": False, "isValid": True, "app": "AAPS", "device": "Samsung SM-G970F", "pumpId": 4713,
     "pumpType": "ACCU_CHEK_COMBO", "pumpSerial": "PUMP_10154415", "identifier": "6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab"}
r = requests.post(v3 + "treatments", json=t, headers=bearer)
out["create"] = [r.status_code, r.json()]
r = requests.post(v3 + "treatments", json=t, headers=bearer)
out["again"] = [r.status_code, r.json()]
created = out["create"][1]["lastModified"]
r = requests.patch(v3 + "treatments/" + t["identifier"], json={"notes": "before lunch"}, headers=bearer)
out["patch"] = [r.status_code, r.json()]
out["one"] = requests.get(v3 + "treatments/" + t["identifier"], headers=bearer).json()
out["history"] = requests.get(v3 + "treatments/history/" + str(created - 1), params={"limit": 10}, headers=bearer).json()
r = requests.delete(v3 + "treatments/" + t["identifier"], headers=bearer)
out["delete"] = r.status_code
out["gone"] = requests.get(v3 + "treatments/" + t["identifier"], headers=bearer).status_code
out["history_after"] = requests.get(v3 + "treatments/history/" + str(created - 1), headers=bearer).json()
# xDrip+ downloads treatments on API v1 with its uploader secret: the deleted one is gone.
r = requests.get(base + "/api/v1/treatments.json", headers={"api-secret": hashlib.sha1(uploader.encode()).hexdigest()})
out["v1_treatments"] = [r.status_code, r.json()]
ds = {"device": "openaps://samsung SM-G970F", "date": now - 20000, "created_at": "2025-11-22T02:59:40Z",
      "uploaderBattery": 77, "isCharging": True, "pump": {"reservoir": 80, "battery": {"percent": 55}},
      "openaps": {"suggested": {"bg": 111, "eventualBG": 104}}, "app": "AAPS"}
r = requests.post(v3 + "devicestatus", json=ds, headers=bearer)
out["devicestatus"] = [r.status_code, r.json()]
out["ds_history"] = requests.get(v3 + "devicestatus/history/0", headers=bearer).json()
profile = {"date": now - 30000, "defaultProfile": "Default", "startDate": "2025-11-22T02:59:30.000Z", "app": "AAPS",
           "store": {"Default": {"dia": 5, "units": "mg/dl", "basal": [{"time": "00:00", "value": 0.9, "timeAsSeconds": 0}]}}}
r = requests.post(v3 + "profile", json=profile, headers=bearer)
out["profile"] = [r.status_code, r.json()]
out["last_profile"] = requests.get(v3 + "profile?sort$desc=date&limit=1", headers=bearer).json()
out["lastModified"] = requests.get(v3 + "lastModified", headers=bearer).json()
bad = requests.post(v3 + "entries", json={"type": "sgv", "date": now}, headers=bearer)
out["bad"] = [bad.status_code, bad.json()]
r = requests.post(base + "/api/v1/food", json=[{"type": "food", "category": "Breakfast", "name": "Oatmeal", "portion": 250, "unit": "g", "carbs": 45}],
                  headers={"api-secret": hashlib.sha1(uploader.encode()).hexdigest()})
out["food_v1"] = r.status_code
out["foods"] = requests.get(v3 + "food", params={"limit": 100}, headers=bearer).json()
out["unknown"] = requests.get(v3 + "settings", headers=bearer).status_code
out["anonymous"] = requests.get(v3 + "entries").status_code
print(json.dumps(out))
"#;

#[test]
fn androidaps_nsclient_v3_syncs_by_identifier_and_modification_time() {
    let server = TestServer::start();
    let r = server.post(
        "/api/v1/tokens",
        Some(ADMIN),
        "application/json",
        br#"{"name":"aaps","role":"device","patient":"ns-6"}"#,
    );
    let uploader = r.json()["token"].as_str().expect("token").to_owned();
    let base = format!("{}/nightscout/ns-6", server.url);
    let out = Command::new("python3")
        .args(["-c", AAPS_V3, &base, &uploader, &NOW.to_string()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let o: Value = serde_json::from_str(&stdout).expect("json");

    assert_eq!(o["jwt"][0], json!(200));
    assert_eq!(o["jwt"][1]["exp"].as_i64().expect("exp") - o["jwt"][1]["iat"].as_i64().expect("iat"), 8 * 3600);
    assert_eq!(o["status"]["result"]["apiPermissions"]["treatments"], json!("crud"), "{}", o["status"]);
    assert_eq!(o["xdrip"], json!(200));
    let sgvs = o["sgvs"]["result"].as_array().expect("sgvs");
    assert_eq!(sgvs.len(), 2, "{sgvs:?}");
    assert_eq!((&sgvs[0]["sgv"], &sgvs[0]["direction"]), (&json!(110), &json!("FortyFiveDown")), "as xDrip+ sent");
    assert_eq!(sgvs[0]["identifier"], json!(format!("sgv-{NOW}")));
    assert_eq!(sgvs[0]["srvModified"], json!(NOW), "stamped by the server's clock");
    let newer: Vec<i64> =
        o["newer"]["result"].as_array().expect("newer").iter().map(|e| e["date"].as_i64().expect("date")).collect();
    assert_eq!(newer, vec![NOW - 300_000, NOW], "oldest first with sort=date");
    assert_eq!(o["entries_history"]["result"].as_array().map(Vec::len), Some(2));

    let ident = "6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab";
    assert_eq!(o["create"][0], json!(201), "{}", o["create"]);
    assert_eq!(o["create"][1]["identifier"], json!(ident));
    assert_eq!(o["again"][0], json!(200), "a re-send is deduplicated: {}", o["again"]);
    assert_eq!(o["again"][1]["isDeduplication"], json!(true));
    assert_eq!(o["patch"][0], json!(200), "{}", o["patch"]);
    let one = &o["one"]["result"];
    assert_eq!(
        (&one["notes"], &one["insulin"], &one["pumpSerial"]),
        (&json!("before lunch"), &json!(0.6), &json!("PUMP_10154415"))
    );
    assert_eq!(one["identifier"], json!(ident));
    let history = o["history"]["result"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["notes"], json!("before lunch"));
    assert_eq!((o["delete"].clone(), o["gone"].clone()), (json!(200), json!(410)));
    let after = o["history_after"]["result"].as_array().expect("history");
    assert_eq!(after[0]["isValid"], json!(false), "the deletion is in the history: {after:?}");
    assert_eq!(o["v1_treatments"], json!([200, []]), "the uploader reads back; the deleted one is gone");

    assert_eq!(o["devicestatus"][0], json!(201), "{}", o["devicestatus"]);
    let ds = &o["ds_history"]["result"][0];
    assert_eq!((&ds["openaps"]["suggested"]["eventualBG"], &ds["isCharging"]), (&json!(104), &json!(true)));
    assert_eq!(o["profile"][0], json!(201), "{}", o["profile"]);
    assert_eq!(o["last_profile"]["result"][0]["store"]["Default"]["dia"], json!(5));
    let collections = &o["lastModified"]["result"]["collections"];
    for c in ["entries", "treatments", "devicestatus", "profile"] {
        assert_eq!(collections[c], json!(NOW), "{c}: {collections}");
    }
    assert_eq!(o["bad"][0], json!(400), "an entry without its value: {}", o["bad"]);
    assert!(o["bad"][1]["message"].as_str().expect("message").contains("no sgv"), "{}", o["bad"]);
    assert_eq!((o["unknown"].clone(), o["anonymous"].clone()), (json!(404), json!(401)));
    assert_eq!(o["food_v1"], json!(200));
    assert_eq!(o["foods"]["result"][0]["carbs"], json!(45), "a food stored on v1 is read on v3: {}", o["foods"]);

    // The uploader's devicestatus battery reached the device view; AndroidAPS' treatment
    // never reached another patient's site.
    let other = server.get("/nightscout/ns-7/api/v3/treatments", Some(ADMIN)).json();
    assert_eq!(other["result"], json!([]));
    let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(uploader.as_bytes()));
    let r = server.request("GET", "/nightscout/ns-7/api/v1/treatments.json", &[("api-secret", &sha1)], None);
    assert_eq!(r.status, 403, "a bound uploader reads only its own patient's site");
}
