//! Personal baselines and anomalies over the API: nights made from stored readings, the
//! band around each signal, the cold start, and an anomaly's explanation.

use serde_json::{Value, json};

use crate::harness::{ADMIN, NOW, TestServer};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn date(ms: i64) -> String {
    vitals_core::time::format_time(ms)[..10].to_owned()
}

/// `nights` mornings of resting heart rate (09:00 UTC, ending yesterday) around 58 bpm,
/// raised by 7 on the last `raised`, and skin temperature at 03:00 around 34.0 °C, raised
/// 0.5 °C with them.
fn nights(patient: &str, nights: i64, raised: i64) -> Value {
    nights_raised_by(patient, nights, raised, 7.0)
}

fn nights_raised_by(patient: &str, nights: i64, raised: i64, bpm: f64) -> Value {
    let today = NOW.div_euclid(DAY) * DAY;
    let mut v = Vec::new();
    for n in 1..=nights {
        let day = today - n * DAY;
        let up = n <= raised;
        let wobble = [1.0, 0.0, 0.0, 0.0, -1.0][(n % 5) as usize];
        let rhr = 58.0 + wobble + if up { bpm } else { 0.0 };
        let skin = 34.0 + 0.05 * (n % 3) as f64 + if up { 0.5 } else { 0.0 };
        v.push(json!({"patient": patient, "metric": "resting_heart_rate", "time": day + 9 * HOUR, "value": rhr}));
        v.push(json!({"patient": patient, "metric": "skin_temperature", "time": day + 3 * HOUR, "value": skin}));
    }
    Value::Array(v)
}

#[test]
fn raised_nights_over_a_personal_baseline_are_an_anomaly_with_its_explanation() {
    let server = TestServer::start();
    assert_eq!(server.ingest(&nights("b-1", 40, 3)).status, 200);
    let r = server.get("/api/v1/patients/b-1/baselines?days=30", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let today = NOW.div_euclid(DAY) * DAY;
    assert_eq!((v["status"].clone(), v["to"].clone()), (json!("watching"), json!(date(today))), "{v}");
    // The resting rate's nights with their band: median 58, the band median ± 2 spreads.
    let rhr = &v["signals"][0];
    assert_eq!(rhr["signal"], json!("resting_heart_rate"));
    let shown = rhr["nights"].as_array().expect("nights");
    let yesterday = shown.iter().find(|n| n["day"] == json!(date(today - DAY))).expect("yesterday");
    assert_eq!(yesterday["value"], json!(65.0));
    assert_eq!(yesterday["baseline"]["median"], json!(58.0), "{yesterday}");
    let (low, high) =
        (yesterday["baseline"]["low"].as_f64().expect("low"), yesterday["baseline"]["high"].as_f64().expect("high"));
    assert!(low < 58.0 && high > 58.0 && high < 65.0, "{yesterday}");
    assert!(yesterday["z"].as_f64().is_some_and(|z| z > 4.0), "{yesterday}");
    assert_eq!(v["signals"][1]["signal"], json!("skin_temperature"));
    // One anomaly: since three nights ago, fired on the second, still open, explained.
    let a = v["anomalies"].as_array().expect("anomalies");
    assert_eq!(a.len(), 1, "{v}");
    assert_eq!(
        (a[0]["start"].clone(), a[0]["fired"].clone(), a[0]["cleared"].clone()),
        (json!(date(today - 3 * DAY)), json!(date(today - 2 * DAY)), Value::Null)
    );
    let text = a[0]["explanation"].as_str().expect("text");
    assert!(
        text.starts_with(&format!(
            "For 2 nights since {}: resting heart rate 65.0 bpm (+7.0 bpm",
            date(today - 3 * DAY)
        )),
        "{text}"
    );
    assert!(text.contains("skin temperature"), "{text}");
    // Three raised nights: see a doctor, with the anomaly as the evidence.
    let rec = &v["recommendations"][0];
    assert_eq!(rec["kind"], json!("see_doctor"), "{v}");
    assert_eq!(rec["title"], json!("See a doctor: resting heart rate raised (+7 bpm) for 3 nights"));
    assert!(rec["advice"].as_str().is_some_and(|a| a.contains("see your doctor")), "{rec}");
    assert_eq!(rec["evidence"][0], json!(text));
    let states: Vec<&str> =
        v["nights"].as_array().expect("states").iter().filter_map(|n| n["state"].as_str()).collect();
    assert_eq!(states.len(), 30);
    assert_eq!(&states[26..], &["elevated", "elevated", "elevated", "missing"], "today's night has no values yet");
}

#[test]
fn nothing_is_flagged_before_the_baseline_exists_and_the_answer_says_so() {
    let server = TestServer::start();
    assert_eq!(server.ingest(&nights("b-2", 8, 3)).status, 200);
    let v = server.get("/api/v1/patients/b-2/baselines", Some(ADMIN)).json();
    assert_eq!(v["status"], json!("cold_start"), "{v}");
    assert_eq!((v["nights_with_resting_rate"].clone(), v["nights_needed"].clone()), (json!(8), json!(14)));
    assert_eq!(v["anomalies"], json!([]));
    let states = v["nights"].as_array().expect("states");
    assert!(states.iter().all(|n| n["state"] == "cold_start" || n["state"] == "missing"), "{v}");
    assert!(v["signals"][0]["nights"].as_array().expect("nights").iter().all(|n| n["baseline"].is_null()));
    // Bad parameters are refused.
    assert_eq!(server.get("/api/v1/patients/b-2/baselines?days=3", Some(ADMIN)).status, 400);
    assert_eq!(server.get("/api/v1/patients/b-2/baselines?tz_offset_min=900", Some(ADMIN)).status, 400);
}

#[test]
fn a_band_that_sends_only_heart_rate_gets_a_resting_rate_of_its_own() {
    let server = TestServer::start();
    let today = NOW.div_euclid(DAY) * DAY;
    // Heart rate every minute from 02:00 to 04:00 on the last 3 nights: 50 bpm from 03:00
    // to 03:30, 62 otherwise.
    let mut v = Vec::new();
    for n in 1..=3 {
        for m in 0..120 {
            let t = today - n * DAY + 2 * HOUR + m * 60_000;
            let hr = if (60..90).contains(&m) { 50 } else { 62 };
            v.push(json!({"patient": "b-3", "metric": "heart_rate", "time": t, "value": hr}));
        }
    }
    assert_eq!(server.ingest(&Value::Array(v)).status, 200);
    let a = server.get("/api/v1/patients/b-3/baselines?days=7", Some(ADMIN)).json();
    let rhr = &a["signals"][0];
    assert_eq!(rhr["signal"], json!("resting_heart_rate"), "{a}");
    let values: Vec<Value> = rhr["nights"].as_array().expect("nights").iter().map(|n| n["value"].clone()).collect();
    assert_eq!(values, vec![json!(50.0); 3], "the lowest half hour of each night: {a}");
}

/// Heart rate every 10 minutes for `days` days before today (UTC): 52 bpm from 00:00 to
/// 06:00, 64 by day.
fn circadian(patient: &str, days: i64) -> Value {
    let today = NOW.div_euclid(DAY) * DAY;
    let mut v = Vec::new();
    for n in 1..=days {
        for m in 0..144 {
            let t = today - n * DAY + m * 600_000;
            let hr = if t.rem_euclid(DAY) < 6 * HOUR { 52 } else { 64 };
            v.push(json!({"patient": patient, "metric": "heart_rate", "time": t, "value": hr}));
        }
    }
    Value::Array(v)
}

#[test]
fn heart_rate_has_a_usual_band_for_each_hour_of_the_day_once_two_weeks_are_known() {
    let server = TestServer::start();
    assert_eq!(server.ingest(&circadian("b-6", 20)).status, 200);
    assert_eq!(server.ingest(&circadian("b-7", 10)).status, 200);
    let r = server.get("/api/v1/patients/b-6/profile?metrics=heart_rate", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["window_days"].clone(), v["days_needed"].clone()), (json!(28), json!(14)));
    let p = &v["profiles"][0];
    assert_eq!((p["metric"].clone(), p["unit"].clone()), (json!("heart_rate"), json!("bpm")));
    let hours = p["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24);
    // A steady person: the floor of 2 bpm for the spread, the band median ± 2 spreads.
    assert_eq!(hours[3], json!({"hour": 3, "median": 52.0, "spread": 2.0, "low": 48.0, "high": 56.0, "days": 20}));
    assert_eq!((hours[15]["median"].clone(), hours[15]["low"].clone()), (json!(64.0), json!(60.0)));
    // Local time moves the hours: at UTC+02:00, 03:00 local is 01:00 UTC (night), 07:00
    // local is 05:00 UTC (still night), 08:00 local is day.
    let east = server.get("/api/v1/patients/b-6/profile?metrics=heart_rate&tz_offset_min=120", Some(ADMIN)).json();
    let h = &east["profiles"][0]["hours"];
    assert_eq!((h[7]["median"].clone(), h[8]["median"].clone()), (json!(52.0), json!(64.0)), "{east}");
    // Ten days are not enough: every hour unknown; metrics without a profile are refused.
    let cold = server.get("/api/v1/patients/b-7/profile", Some(ADMIN)).json();
    assert_eq!(cold["profiles"].as_array().map(Vec::len), Some(4), "every profiled metric by default");
    assert!(cold["profiles"][0]["hours"].as_array().expect("hours").iter().all(Value::is_null), "{cold}");
    let r = server.get("/api/v1/patients/b-6/profile?metrics=step_count", Some(ADMIN));
    assert!(r.status == 400 && r.body.contains("no hourly profile"), "{}", r.body);
}

#[test]
fn an_anomaly_is_raised_as_an_explained_alert_and_resolved_by_normal_nights() {
    let server = TestServer::with_config(|c| c.alerting.anomaly.enabled = true);
    let today = NOW.div_euclid(DAY) * DAY;
    assert_eq!(server.ingest(&nights("b-4", 40, 2)).status, 200);
    // Too few nights for a baseline: nothing, however raised.
    assert_eq!(server.ingest(&nights("b-5", 8, 3)).status, 200);
    let list = |state: &str| -> Vec<Value> {
        let r = server.get(&format!("/api/v1/alerts?state={state}"), Some(ADMIN)).json();
        r["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["rule"] == "anomaly-detector")
            .collect()
    };
    // The detector looks every 15 minutes.
    server.clock.advance(15 * 60_000 + 1_000);
    crate::harness::eventually("an anomaly alert", || !list("open").is_empty());
    let open = list("open");
    assert_eq!(open.len(), 1, "b-5 has no baseline yet: {open:?}");
    let a = &open[0];
    assert_eq!((a["patient"].clone(), a["severity"].clone()), (json!("b-4"), json!("warning")), "{a}");
    let since = date(today - 2 * DAY);
    let why = a["description"].as_str().unwrap_or_default();
    assert!(why.starts_with(&format!("For 2 nights since {since}: resting heart rate 65.0 bpm (+7.0 bpm")), "{a}");
    assert!(why.contains("skin temperature"), "{why}");
    assert_eq!(a["paged"], json!(true), "it fired on last night's data: it pages");
    // Two normal nights later it is over.
    server.clock.advance(2 * DAY);
    let normal: Vec<Value> = [today, today + DAY]
        .iter()
        .map(|d| json!({"patient": "b-4", "metric": "resting_heart_rate", "time": d + 9 * HOUR, "value": 58}))
        .collect();
    assert_eq!(server.ingest(&Value::Array(normal)).status, 200);
    server.clock.advance(15 * 60_000);
    crate::harness::eventually("the anomaly resolved", || list("open").is_empty());
    let resolved = list("resolved");
    assert_eq!(resolved.len(), 1, "the same alert, resolved: {resolved:?}");
    assert_eq!(resolved[0]["id"], a["id"]);
}

#[test]
fn a_patients_cohort_sets_their_sensitivity() {
    let server = TestServer::with_config(|c| c.alerting.anomaly.high_cohorts = vec!["fragile".into()]);
    // 3.5 bpm over normal for two nights: under the normal sensitivity's 4, over high's 3.
    for p in ["b-6", "b-7"] {
        assert_eq!(server.ingest(&nights_raised_by(p, 40, 2, 3.5)).status, 200);
    }
    let r = server.put_json("/api/v1/cohorts/fragile", &json!({"patients": ["b-6"]}));
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let high = server.get("/api/v1/patients/b-6/baselines", Some(ADMIN)).json();
    let normal = server.get("/api/v1/patients/b-7/baselines", Some(ADMIN)).json();
    assert_eq!((high["sensitivity"].clone(), normal["sensitivity"].clone()), (json!("high"), json!("normal")));
    assert_eq!(high["anomalies"].as_array().map(Vec::len), Some(1), "{high}");
    assert_eq!(normal["anomalies"], json!([]), "{normal}");
}

#[test]
fn a_band_without_an_accelerometer_is_watched_by_the_autonomic_detector() {
    let server = TestServer::with_config(|c| c.alerting.seizure.enabled = true);
    // 18 minutes ending now: RR intervals at 70 bpm, then from 3 minutes ago an abrupt
    // rise to 110 bpm for 90 s, with an electrodermal surge of 3 µS from 20 s after.
    let onset = NOW - 3 * 60_000;
    let mut v = Vec::new();
    let mut t = NOW - 18 * 60_000;
    while t < NOW {
        let bpm = if (onset..onset + 90_000).contains(&t) {
            70.0 + 40.0 * ((t - onset) as f64 / 10_000.0).min(1.0)
        } else {
            70.0
        };
        let rr = (60_000.0 / bpm).round();
        v.push(json!({"patient": "band-1", "metric": "rr_interval", "time": t, "value": rr}));
        t += rr as i64;
    }
    for k in 0..(18 * 60 * 4) {
        let t = NOW - 18 * 60_000 + k * 250;
        let surge = if t >= onset + 20_000 { 3.0 * ((t - onset - 20_000) as f64 / 15_000.0).min(1.0) } else { 0.0 };
        v.push(json!({"patient": "band-1", "metric": "eda", "time": t, "value": 2.0 + surge}));
    }
    // Another patient's watch sends acceleration too.
    for k in 0..40 {
        v.push(json!({"patient": "watch-1", "metric": "acceleration_x", "time": NOW - k * 250, "value": 0.1}));
        v.push(json!({"patient": "watch-1", "metric": "heart_rate", "time": NOW - k * 250, "value": 70}));
    }
    assert_eq!(server.ingest(&Value::Array(v)).status, 200);
    let seizure_alerts = || -> Vec<Value> {
        let r = server.get("/api/v1/alerts?patient=band-1", Some(ADMIN)).json();
        r["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["rule"] == "seizure-detector")
            .collect()
    };
    crate::harness::eventually("a seizure alert for band-1", || !seizure_alerts().is_empty());
    let a = &seizure_alerts()[0];
    assert_eq!((a["severity"].clone(), a["paged"].clone()), (json!("urgent"), json!(true)), "{a}");
    let latest =
        |p: &str| server.get(&format!("/api/v1/patients/{p}/latest"), Some(ADMIN)).json()["seizure_watch"].clone();
    assert_eq!(latest("band-1"), json!("autonomic"));
    assert_eq!(latest("watch-1"), json!("combined"));
    // With the detectors off, nothing watches.
    let off = TestServer::start();
    assert_eq!(off.ingest(&json!([{"patient": "x", "metric": "heart_rate", "time": NOW, "value": 70}])).status, 200);
    assert_eq!(off.get("/api/v1/patients/x/latest", Some(ADMIN)).json()["seizure_watch"], Value::Null);
}

#[test]
fn sleep_events_make_the_sleep_signal_and_short_nights_a_sleep_goal() {
    let server = TestServer::start();
    let today = NOW.div_euclid(DAY) * DAY;
    // Seven nights of 6 h (23:00-05:00) as core sleep, with an awake stage in each that
    // does not count, and the same period again from a second source.
    let mut events = Vec::new();
    for n in 1..=7 {
        let bed = today - n * DAY - HOUR;
        for (i, (s, e, stage)) in
            [(bed, bed + 6 * HOUR, "Core"), (bed + 2 * HOUR, bed + 3 * HOUR, "Awake"), (bed, bed + 6 * HOUR, "Core")]
                .into_iter()
                .enumerate()
        {
            events.push(vitals_core::Event {
                id: format!("sl-{n}-{i}"),
                patient: "b-8".into(),
                kind: "sleep".into(),
                start_ms: s,
                end_ms: e,
                source: "health_auto_export".into(),
                attributes: [("value".to_owned(), json!(stage))].into_iter().collect(),
            });
        }
    }
    server.app.events.put(events).expect("events");
    assert_eq!(
        server.ingest(&json!([{"patient": "b-8", "metric": "heart_rate", "time": NOW, "value": 60}])).status,
        200
    );
    let v = server.get("/api/v1/patients/b-8/baselines?days=7", Some(ADMIN)).json();
    let sleep = v["signals"]
        .as_array()
        .expect("signals")
        .iter()
        .find(|s| s["signal"] == "sleep")
        .cloned()
        .expect("a sleep signal");
    let hours: Vec<Value> = sleep["nights"].as_array().expect("nights").iter().map(|n| n["value"].clone()).collect();
    assert_eq!(hours, vec![json!(6.0); 6], "the six nights shown, 6 h each: {sleep}");
    let kinds: Vec<Value> = v["recommendations"].as_array().expect("recs").iter().map(|r| r["kind"].clone()).collect();
    assert_eq!(kinds, [json!("sleep")], "{v}");
}
