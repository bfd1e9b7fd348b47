//! Readings as real clients send them: Health Auto Export's REST JSON (hourly aggregates,
//! like the app's "hours" interval) and a Nightscout uploader's entries and devicestatus.
//! Readings these clients have no form for are counted as skipped, not invented.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::{Value, json};

use crate::model::{Reading, SimEvent};
use crate::rng::{key, str_key};

const HOUR: i64 = 3_600_000;

/// A payload and how many readings it carries and could not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub body: Value,
    pub carried: u64,
    pub skipped: u64,
}

/// `yyyy-MM-dd HH:mm:ss +0000`, or the 12-hour form with a narrow no-break space before
/// AM/PM that some phones send.
fn hae_date(ms: i64, twelve_hour: bool) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else { return String::new() };
    if twelve_hour {
        t.format("%Y-%m-%d %-I:%M:%S\u{202f}%p +0000").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S +0000").to_string()
    }
}

fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Health Auto Export JSON for one patient: sums and heart rate Min/Avg/Max per hour,
/// sparse metrics point by point, sleep (aggregated, newer shape) and workouts (version 2
/// with their per-minute heart rate). `twelve_hour` picks the AM/PM date form.
pub fn health_auto_export(readings: &[Reading], events: &[SimEvent], twelve_hour: bool) -> Payload {
    // HAE name, units, and how: Some(true) sum per hour, Some(false) one point per reading.
    let how = |metric: &str| -> Option<(&'static str, &'static str, bool)> {
        Some(match metric {
            "step_count" => ("step_count", "count", true),
            "active_energy" => ("active_energy", "kcal", true),
            "resting_energy" => ("basal_energy_burned", "kcal", true),
            "walking_running_distance" => ("walking_running_distance", "km", true),
            "resting_heart_rate" => ("resting_heart_rate", "count/min", false),
            "hrv_sdnn" => ("heart_rate_variability", "ms", false),
            "spo2" => ("blood_oxygen_saturation", "%", false),
            "respiratory_rate" => ("respiratory_rate", "count/min", false),
            "blood_glucose" => ("blood_glucose", "mg/dL", false),
            _ => return None,
        })
    };
    let date = |ms: i64| hae_date(ms, twelve_hour);
    let mut sums: BTreeMap<(&str, &str, i64), f64> = BTreeMap::new();
    let mut points: BTreeMap<(&str, &str), Vec<Value>> = BTreeMap::new();
    let mut hr: BTreeMap<i64, (f64, f64, f64, u32)> = BTreeMap::new();
    let (mut carried, mut skipped) = (0u64, 0u64);
    for r in readings {
        if r.metric == "heart_rate" {
            let e = hr.entry(r.time_ms.div_euclid(HOUR) * HOUR).or_insert((f64::MAX, 0.0, f64::MIN, 0));
            e.0 = e.0.min(r.value);
            e.1 += r.value;
            e.2 = e.2.max(r.value);
            e.3 += 1;
            carried += 1;
            continue;
        }
        let Some((name, units, sum)) = how(r.metric) else {
            skipped += 1;
            continue;
        };
        carried += 1;
        if sum {
            let v = if r.metric == "walking_running_distance" { r.value / 1000.0 } else { r.value };
            *sums.entry((name, units, r.time_ms.div_euclid(HOUR) * HOUR)).or_default() += v;
        } else {
            let mut p = json!({"date": date(r.time_ms), "qty": r.value, "source": "Simulated Apple Watch"});
            if r.metric == "blood_glucose" {
                p = json!({"date": date(r.time_ms), "qty": r.value, "mealTime": "Unspecified", "source": "Simulated CGM"});
            }
            points.entry((name, units)).or_default().push(p);
        }
    }
    for ((name, units, hour), v) in sums {
        points.entry((name, units)).or_default().push(json!({
            "date": date(hour), "qty": (v * 1000.0).round() / 1000.0, "source": "Simulated Apple Watch"
        }));
    }
    let mut metrics: Vec<Value> =
        points.into_iter().map(|((name, units), data)| json!({"name": name, "units": units, "data": data})).collect();
    if !hr.is_empty() {
        let data: Vec<Value> = hr
            .into_iter()
            .map(|(hour, (min, sum, max, n))| {
                json!({"date": date(hour), "Min": min, "Avg": round2(sum / f64::from(n)), "Max": max,
                       "source": "Simulated Apple Watch"})
            })
            .collect();
        metrics.push(json!({"name": "heart_rate", "units": "count/min", "data": data}));
    }
    let mut workouts = Vec::new();
    let mut sleep = Vec::new();
    for e in events {
        let hours = (e.end_ms - e.start_ms) as f64 / HOUR as f64;
        match e.kind {
            "sleep" => {
                let asleep = hours * 0.94;
                sleep.push(json!({
                    "date": hae_date(e.end_ms, false).get(..10).unwrap_or(""),
                    "totalSleep": round2(asleep), "asleep": 0, "core": round2(asleep * 0.55),
                    "deep": round2(asleep * 0.2), "rem": round2(asleep * 0.25), "awake": round2(hours - asleep),
                    "sleepStart": date(e.start_ms + 600_000), "sleepEnd": date(e.end_ms),
                    "inBed": round2(hours), "inBedStart": date(e.start_ms), "inBedEnd": date(e.end_ms),
                    "source": "Simulated Apple Watch"
                }));
            }
            _ => {
                // Per-minute heart rate during the workout, from the readings sent with it.
                let mut per_min: BTreeMap<i64, (f64, f64, f64, u32)> = BTreeMap::new();
                for r in readings
                    .iter()
                    .filter(|r| r.metric == "heart_rate" && r.time_ms >= e.start_ms && r.time_ms < e.end_ms)
                {
                    let m =
                        per_min.entry(r.time_ms.div_euclid(60_000) * 60_000).or_insert((f64::MAX, 0.0, f64::MIN, 0));
                    m.0 = m.0.min(r.value);
                    m.1 += r.value;
                    m.2 = m.2.max(r.value);
                    m.3 += 1;
                }
                let hr_data: Vec<Value> = per_min
                    .into_iter()
                    .map(|(t, (min, sum, max, n))| {
                        json!({"date": date(t), "Min": min, "Avg": round2(sum / f64::from(n)), "Max": max, "units": "count/min"})
                    })
                    .collect();
                let h = key(&[str_key(&e.patient), e.start_ms as u64]);
                workouts.push(json!({
                    "id": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xfff, (h >> 20) & 0xfff, h & 0xffff_ffff_ffff),
                    "name": if e.name == "running" { "Outdoor Run" } else { "Outdoor Cycle" },
                    "start": date(e.start_ms), "end": date(e.end_ms),
                    "duration": (e.end_ms - e.start_ms) / 1000,
                    "heartRateData": hr_data
                }));
            }
        }
    }
    if !sleep.is_empty() {
        metrics.push(json!({"name": "sleep_analysis", "units": "hr", "data": sleep}));
    }
    let mut data = json!({"metrics": metrics});
    if !workouts.is_empty() {
        data["workouts"] = Value::Array(workouts);
    }
    Payload { body: json!({"data": data}), carried, skipped }
}

/// Nightscout uploads of one patient: sensor glucose entries (`type: sgv`) and the
/// uploader's battery as devicestatus. Other readings have no Nightscout form.
pub fn nightscout(readings: &[Reading], device: &str) -> (Payload, Payload) {
    let (mut entries, mut status, mut skipped) = (Vec::new(), Vec::new(), 0u64);
    for r in readings {
        match r.metric {
            "blood_glucose" => entries.push(json!({
                "type": "sgv", "sgv": r.value, "date": r.time_ms, "dateString": iso(r.time_ms),
                "device": device, "rssi": 100, "noise": 1
            })),
            "battery_level" => {
                status.push(json!({"device": device, "created_at": iso(r.time_ms), "uploader": {"battery": r.value}}));
            }
            _ => skipped += 1,
        }
    }
    let n_entries = entries.len() as u64;
    let n_status = status.len() as u64;
    (
        Payload { body: Value::Array(entries), carried: n_entries, skipped },
        Payload { body: Value::Array(status), carried: n_status, skipped: 0 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;

    fn r(metric: &'static str, time_ms: i64, value: f64) -> Reading {
        Reading { metric, time_ms, value, device: Device::Watch }
    }

    #[test]
    fn hae_sums_per_hour_and_keeps_heart_rate_min_avg_max() {
        let t = 1_763_780_400_000; // 2025-11-22 03:00:00 UTC
        let rs = [
            r("step_count", t, 100.0),
            r("step_count", t + 60_000, 50.0),
            r("walking_running_distance", t, 1500.0),
            r("heart_rate", t, 60.0),
            r("heart_rate", t + 5_000, 70.0),
            r("eda", t, 1.0),
        ];
        let p = health_auto_export(&rs, &[], false);
        assert_eq!((p.carried, p.skipped), (5, 1));
        let metrics = p.body["data"]["metrics"].as_array().expect("metrics");
        let by = |n: &str| metrics.iter().find(|m| m["name"] == n).expect(n).clone();
        assert_eq!(
            by("step_count")["data"][0],
            json!({"date": "2025-11-22 03:00:00 +0000", "qty": 150.0, "source": "Simulated Apple Watch"})
        );
        assert_eq!(by("walking_running_distance")["data"][0]["qty"], json!(1.5));
        let hr = &by("heart_rate")["data"][0];
        assert_eq!((hr["Min"].clone(), hr["Avg"].clone(), hr["Max"].clone()), (json!(60.0), json!(65.0), json!(70.0)));
        let p12 = health_auto_export(&rs, &[], true);
        assert_eq!(p12.body["data"]["metrics"][0]["data"][0]["date"], json!("2025-11-22 3:00:00\u{202f}AM +0000"));
    }

    #[test]
    fn nightscout_carries_glucose_and_battery_only() {
        let rs =
            [r("blood_glucose", 1_000, 120.0), r("battery_level", 1_000, 80.0), r("signal_strength", 1_000, -70.0)];
        let (entries, status) = nightscout(&rs, "p-1-cgm");
        assert_eq!(entries.body[0]["sgv"], json!(120.0));
        assert_eq!(entries.body[0]["dateString"], json!("1970-01-01T00:00:01.000Z"));
        assert_eq!(status.body[0]["uploader"]["battery"], json!(80.0));
        assert_eq!((entries.carried, entries.skipped, status.carried), (1, 1, 1));
    }
}
