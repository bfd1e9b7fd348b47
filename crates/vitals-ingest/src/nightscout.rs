//! Nightscout uploader payloads (xDrip+, Loop, AndroidAPS): `entries` and `devicestatus`.
//!
//! Entries: an array or a single object; `type` `sgv` (sensor glucose, becomes
//! `blood_glucose`) or `mbg` (meter, `blood_glucose_meter`). Time from `date` (ms, also as
//! a float as Loop sends it), else `dateString` or `sysTime`. The uploader `device` becomes
//! the device id. Every accepted entry, and every `cal` record, is also kept whole as a
//! document ([`ENTRIES`]): the arrow the CGM showed (`direction`, `trend`), `delta`,
//! `noise`, `filtered`/`unfiltered`, `rssi` and the device name as sent, for followers.
//! Devicestatus: each status is kept whole as a document ([`DEVICESTATUS`]: loop and pump
//! state, predictions); the uploader's battery (`uploader.battery`, AndroidAPS'
//! `uploaderBattery`) and the pump's battery percentage also become `battery_level` of the
//! uploader (or `<device>-pump`).

use std::borrow::Cow;

use serde_json::{Map, Value};
use vitals_core::{Event, RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;
use crate::health_auto_export::{Unsupported, device_from_source};
use crate::native::DecodeError;

/// The kind of the documents holding entries as uploaders sent them.
pub const ENTRIES: &str = "nightscout/entries";
/// The kind of the documents holding device statuses as uploaders sent them.
pub const DEVICESTATUS: &str = "nightscout/devicestatus";
/// The kind of the documents holding xDrip+'s activity records (heart rate, steps, motion).
pub const ACTIVITY: &str = "nightscout/activity";
/// The kind of the documents holding the food database (names, portions, carbs).
pub const FOOD: &str = "nightscout/food";

/// What a payload decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: Batch,
    pub events: Vec<Event>,
    pub unsupported: Vec<Unsupported>,
}

fn objects(body: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| DecodeError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    match v {
        Value::Array(items) => Ok(items),
        Value::Object(_) => Ok(vec![v]),
        other => Err(DecodeError::Shape { found: format!("a JSON {}", kind(&other)) }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The time of a record: `date`/`mills` (ms), else `dateString`/`sysTime`/`created_at`.
fn time_of(o: &Map<String, Value>) -> Option<RawTime<'_>> {
    for k in ["date", "mills"] {
        if let Some(n) = o.get(k).and_then(Value::as_f64) {
            return Some(RawTime::FloatMs(n));
        }
    }
    for k in ["dateString", "sysTime", "created_at"] {
        if let Some(s) = o.get(k).and_then(Value::as_str) {
            return Some(RawTime::Text(Cow::Owned(normalise_iso(s))));
        }
    }
    None
}

/// xDrip+ writes offsets as `-0800`; RFC 3339 wants `-08:00`.
fn normalise_iso(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() > 5
        && (b[b.len() - 5] == b'+' || b[b.len() - 5] == b'-')
        && b[b.len() - 4..].iter().all(u8::is_ascii_digit)
    {
        return format!("{}:{}", &s[..s.len() - 2], &s[s.len() - 2..]);
    }
    s.to_owned()
}

/// Validates one reading into the batch; its time if it was accepted.
fn push(batch: &mut Batch, validator: &mut Validator<'_>, index: usize, raw: RawSample<'_>) -> Option<i64> {
    batch.items += 1;
    match validator.validate(index, &raw) {
        Ok(s) => {
            let t = s.time_ms;
            batch.samples.push(s);
            Some(t)
        }
        Err(r) => {
            batch.reject(r);
            None
        }
    }
}

/// The time in a Nightscout query's `find[date][$gte]=...` (and `$gt`, `$lte`, `$lt`, on
/// `date` or `dateString`): milliseconds since the epoch (any number, as uploaders send
/// floats), RFC 3339, or a bare date (midnight UTC). Clamped to the times Vitals stores, so
/// `t + 1` and friends cannot overflow; `None` if it is none of these.
pub fn find_time(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<f64>() {
        if ms.is_nan() {
            return None;
        }
        return Some((ms as i64).clamp(0, vitals_core::time::MAX_TIME_MS));
    }
    vitals_core::time::parse_time(v).ok().or_else(|| vitals_core::time::parse_time(&format!("{v}T00:00:00Z")).ok())
}

/// Decodes `POST /api/v1/entries`.
pub fn decode_entries(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        let Some(o) = item.as_object() else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("entry {i} is not an object")));
            continue;
        };
        let ty = o.get("type").and_then(Value::as_str).unwrap_or(if o.contains_key("mbg") { "mbg" } else { "sgv" });
        let (field, metric) = match ty {
            "sgv" => ("sgv", "blood_glucose"),
            "mbg" => ("mbg", "blood_glucose_meter"),
            "cal" => {
                // Calibrations (slope, intercept, scale) are no reading: kept as a document.
                out.batch.items += 1;
                match time_of(o).and_then(document_ms) {
                    Some(t) => {
                        out.events.push(document_event(patient, ENTRIES, format!("cal-{t}"), (t, t), o));
                        out.batch.items -= 1;
                    }
                    None => out.batch.reject(Rejection::new(
                        i,
                        RejectCode::MissingField,
                        format!("entry {i}: no date or dateString"),
                    )),
                }
                continue;
            }
            other => {
                out.batch.items += 1;
                out.batch.reject(Rejection::new(
                    i,
                    RejectCode::InvalidField,
                    format!("entry {i}: unknown type {other:?}"),
                ));
                continue;
            }
        };
        let Some(time) = time_of(o) else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("entry {i}: no date or dateString")));
            continue;
        };
        let value = match o.get(field) {
            Some(v) => match v.as_f64() {
                Some(x) => x,
                None => {
                    out.batch.items += 1;
                    out.batch.reject(Rejection::new(
                        i,
                        RejectCode::InvalidField,
                        format!("entry {i}: {field} is not a number"),
                    ));
                    continue;
                }
            },
            None => {
                out.batch.items += 1;
                out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("entry {i}: no {field}")));
                continue;
            }
        };
        let device = o.get("device").and_then(Value::as_str).and_then(device_from_source);
        let raw = RawSample {
            patient: Cow::Borrowed(patient),
            metric: Cow::Borrowed(metric),
            time,
            value,
            unit: Some(Cow::Borrowed("mg/dL")),
            device: device.map(Cow::Owned),
            id: None,
        };
        if let Some(t) = push(&mut out.batch, validator, i, raw) {
            // Nightscout's own key: one entry per (type, time); a re-send replaces it.
            let mut doc = document_event(patient, ENTRIES, format!("{ty}-{t}"), (t, t), o);
            doc.attributes.entry("type".into()).or_insert_with(|| Value::String(ty.to_owned()));
            out.events.push(doc);
        }
    }
    Ok(out)
}

/// The sender's own id of a document (the first of `keys` it has), as `<prefix>-<id>`.
fn sender_id(o: &Map<String, Value>, keys: &[&str], prefix: &str) -> Option<String> {
    keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str)).map(|id| format!("{prefix}-{id}"))
}

/// A document's time as UNIX ms: a non-negative number of ms, or a readable date.
fn document_ms(t: RawTime<'_>) -> Option<i64> {
    match t {
        RawTime::FloatMs(ms) if ms.is_finite() && ms >= 0.0 => Some(ms as i64),
        RawTime::Text(t) => vitals_core::time::parse_time(&t).ok(),
        _ => None,
    }
}

/// A document kept whole as an event of `kind` (every field but a secret).
fn document_event(patient: &str, kind: &str, id: String, (start, end): (i64, i64), o: &Map<String, Value>) -> Event {
    let attributes = o
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "secret" | "api-secret"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Event {
        id,
        patient: patient.to_owned(),
        kind: kind.to_owned(),
        start_ms: start,
        end_ms: end,
        source: "nightscout".into(),
        attributes,
    }
}

/// Decodes `POST`/`PUT /api/v1/treatments`: each becomes a `treatment` event (meal
/// boluses, carbs, BG checks, temp basals...) at `created_at` (or `timestamp`, `date`),
/// lasting `duration` minutes, with every field kept as an attribute. The sender's id
/// (`_id`, `identifier`, `syncIdentifier`, `uuid`) makes re-sends replace the event.
pub fn decode_treatments(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let _ = validator;
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        out.batch.items += 1;
        let Some(o) = item.as_object() else {
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("treatment {i} is not an object")));
            continue;
        };
        let start = time_of(o)
            .or_else(|| o.get("timestamp").and_then(Value::as_str).map(|s| RawTime::Text(Cow::Owned(normalise_iso(s)))))
            .and_then(document_ms);
        let Some(start) = start else {
            out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("treatment {i}: no created_at")));
            continue;
        };
        let minutes = o.get("duration").and_then(Value::as_f64).filter(|d| d.is_finite() && *d > 0.0).unwrap_or(0.0);
        let end = start.saturating_add((minutes * 60_000.0) as i64);
        let event_type = o.get("eventType").and_then(Value::as_str).unwrap_or("Note");
        let id = sender_id(o, &["_id", "identifier", "syncIdentifier", "uuid"], "treatment")
            .unwrap_or_else(|| Event::content_id(patient, "treatment", start, end, event_type));
        out.events.push(document_event(patient, "treatment", id, (start, end), o));
        // Counted as an accepted item: it is stored, as an event.
        out.batch.items -= 1;
    }
    Ok(out)
}

/// Decodes `POST /api/v1/profile`: each profile document (AndroidAPS and Loop upload one
/// when the profile changes: `defaultProfile`, `store` with basal rates, carb ratios,
/// sensitivities and targets) becomes a `profile` event holding the whole document, from
/// its `startDate` (else its time fields). A document without a `store` object is refused.
pub fn decode_profile(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let _ = validator;
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        out.batch.items += 1;
        let Some(o) = item.as_object() else {
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("profile {i} is not an object")));
            continue;
        };
        if !o.get("store").is_some_and(Value::is_object) {
            out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("profile {i}: no store object")));
            continue;
        }
        let start = o
            .get("startDate")
            .and_then(Value::as_str)
            .and_then(|s| vitals_core::time::parse_time(&normalise_iso(s)).ok())
            .or_else(|| time_of(o).and_then(document_ms));
        let Some(start) = start.filter(|t| (0..=vitals_core::time::MAX_TIME_MS).contains(t)) else {
            out.batch.reject(Rejection::new(
                i,
                RejectCode::MissingField,
                format!("profile {i}: no startDate or created_at"),
            ));
            continue;
        };
        let id = sender_id(o, &["_id", "identifier"], "profile")
            .unwrap_or_else(|| Event::content_id(patient, "profile", start, start, &item.to_string()));
        out.events.push(document_event(patient, "profile", id, (start, start), o));
        out.batch.items -= 1;
    }
    Ok(out)
}

/// Decodes `POST /api/v1/devicestatus`.
pub fn decode_devicestatus(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        let Some(o) = item.as_object() else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("status {i} is not an object")));
            continue;
        };
        let Some(time) = time_of(o) else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("status {i}: no created_at")));
            continue;
        };
        match document_ms(time.clone()) {
            Some(t) => {
                let sent = o.get("device").and_then(Value::as_str).unwrap_or("");
                let id = sender_id(o, &["_id", "identifier"], "devicestatus")
                    .unwrap_or_else(|| Event::content_id(patient, "devicestatus", t, t, sent));
                out.events.push(document_event(patient, DEVICESTATUS, id, (t, t), o));
            }
            None => {
                out.batch.items += 1;
                out.batch.reject(Rejection::new(i, RejectCode::InvalidField, format!("status {i}: bad created_at")));
                continue;
            }
        }
        let device =
            o.get("device").and_then(Value::as_str).and_then(device_from_source).unwrap_or_else(|| "uploader".into());
        let uploader = o
            .get("uploader")
            .and_then(|u| u.get("battery"))
            .or_else(|| o.get("uploaderBattery"))
            .and_then(Value::as_f64);
        let pump = o.get("pump").and_then(|p| p.get("battery")).and_then(|b| b.get("percent")).and_then(Value::as_f64);
        if uploader.is_none() && pump.is_none() {
            // Loop state, predictions...: only the document.
            continue;
        }
        for (value, dev) in [(uploader, device.clone()), (pump, format!("{device}-pump"))] {
            let Some(value) = value else { continue };
            let raw = RawSample {
                patient: Cow::Borrowed(patient),
                metric: Cow::Borrowed("battery_level"),
                time: time.clone(),
                value,
                unit: None,
                device: Some(Cow::Owned(dev)),
                id: None,
            };
            push(&mut out.batch, validator, i, raw);
        }
    }
    Ok(out)
}

/// Decodes `POST /api/v1/activity` (xDrip+: `type` `hr-bpm` with `bpm` and `accuracy`,
/// `steps-total` with `steps`, `motion-class` with `class`; at `timeStamp` (ms), else
/// `created_at`): each record is kept whole as a document; a heart rate also becomes a
/// `heart_rate` reading of the device (`device`, else `xdrip-watch`). Step totals are
/// cumulative counts of the watch's own day and stay documents.
pub fn decode_activity(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        let Some(o) = item.as_object() else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("activity {i} is not an object")));
            continue;
        };
        let time = ["timeStamp", "date", "mills"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_f64))
            .map(RawTime::FloatMs)
            .or_else(|| time_of(o));
        let Some(t) = time.clone().and_then(document_ms) else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(
                i,
                RejectCode::MissingField,
                format!("activity {i}: no timeStamp or created_at"),
            ));
            continue;
        };
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
        let id = sender_id(o, &["_id", "identifier"], "activity")
            .unwrap_or_else(|| Event::content_id(patient, "activity", t, t, ty));
        out.events.push(document_event(patient, ACTIVITY, id, (t, t), o));
        if let (Some(bpm), Some(time)) = (o.get("bpm").filter(|_| ty == "hr-bpm"), time) {
            let Some(value) = bpm.as_f64() else {
                out.batch.items += 1;
                out.batch.reject(Rejection::new(
                    i,
                    RejectCode::InvalidField,
                    format!("activity {i}: bpm is not a number"),
                ));
                continue;
            };
            let device = o.get("device").and_then(Value::as_str).and_then(device_from_source);
            let raw = RawSample {
                patient: Cow::Borrowed(patient),
                metric: Cow::Borrowed("heart_rate"),
                time,
                value,
                unit: Some(Cow::Borrowed("bpm")),
                device: Some(Cow::Owned(device.unwrap_or_else(|| "xdrip-watch".into()))),
                id: None,
            };
            push(&mut out.batch, validator, i, raw);
        }
    }
    Ok(out)
}

/// Decodes `POST /api/v1/food` and API v3 `food`: each food (`name`, `category`,
/// `portion`, `unit`, `carbs`, `fat`, `protein`, `gi`...) kept whole as a document, by the
/// sender's id, else by its name and category; at its `created_at`/`date` if it has one.
pub fn decode_food(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let _ = validator;
    let mut out = Decoded::default();
    for (i, item) in objects(body)?.iter().enumerate() {
        let Some(o) = item.as_object() else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::Malformed, format!("food {i} is not an object")));
            continue;
        };
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() && !o.contains_key("_id") && !o.contains_key("identifier") {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(i, RejectCode::MissingField, format!("food {i}: no name")));
            continue;
        }
        let t = time_of(o).and_then(document_ms).unwrap_or(0);
        let category = o.get("category").and_then(Value::as_str).unwrap_or("");
        let id = sender_id(o, &["_id", "identifier"], "food")
            .unwrap_or_else(|| Event::content_id(patient, "food", 0, 0, &format!("{category}\u{1f}{name}")));
        out.events.push(document_event(patient, FOOD, id, (t, t), o));
    }
    Ok(out)
}

#[cfg(test)]
mod profile_tests {
    use super::*;
    use vitals_core::Catalog;

    #[test]
    fn profiles_are_kept_whole_from_their_start_and_bad_ones_refused() {
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 0, None);
        let body = br#"[{"_id":"65a1","defaultProfile":"Default","startDate":"2025-11-01T00:00:00.000Z",
            "store":{"Default":{"dia":4,"basal":[{"time":"00:00","value":0.8,"timeAsSeconds":0}]}},"units":"mg/dl"},
            {"defaultProfile":"x","created_at":"2025-11-02T00:00:00Z"}, 7]"#;
        let d = decode_profile(body, "p", &mut v).expect("decodes");
        assert_eq!(d.events.len(), 1);
        assert_eq!((d.events[0].id.as_str(), d.events[0].start_ms), ("profile-65a1", 1_761_955_200_000));
        assert_eq!(d.events[0].attributes["store"]["Default"]["dia"], serde_json::json!(4));
        let why: Vec<(usize, RejectCode)> = d.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(why, vec![(1, RejectCode::MissingField), (2, RejectCode::Malformed)]);
        assert_eq!(d.batch.items, 2, "the stored profile is not an item of the batch, as treatments");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_709_700_000_000;

    fn v() -> Validator<'static> {
        Validator::new(Catalog::standard(), NOW, 600_000, None)
    }

    #[test]
    fn find_times_are_numbers_dates_or_nothing_and_stay_in_range() {
        assert_eq!(find_time("1709653500000"), Some(1_709_653_500_000));
        assert_eq!(find_time(" 1709653500000.7 "), Some(1_709_653_500_000));
        assert_eq!(find_time("2024-03-05T07:45:00.000-08:00"), Some(1_709_653_500_000));
        assert_eq!(find_time("2024-03-05"), Some(1_709_596_800_000));
        assert_eq!(find_time("1e300"), Some(vitals_core::time::MAX_TIME_MS));
        assert_eq!(find_time("-1e300"), Some(0));
        assert_eq!(find_time("NaN"), None);
        assert_eq!(find_time("soon"), None);
    }

    #[test]
    fn xdrip_entries_decode_with_devices_and_times() {
        let body = br#"[{"device":"xDrip-DexcomG6","date":1709653500000,"dateString":"2024-03-05T07:45:00.000-0800",
            "sysTime":"2024-03-05T07:45:00.000-0800","sgv":118,"delta":-2.5,"direction":"Flat","type":"sgv",
            "filtered":120000,"unfiltered":121000,"rssi":100,"noise":1},
           {"device":"xDrip-DexcomG6","date":1709653200000,"dateString":"2024-03-05T07:40:00.000-0800","mbg":115,"type":"mbg"},
           {"device":"loop://iPhone","date":1709653800000.0,"sgv":120,"type":"sgv","trend":4},
           {"dateString":"2024-03-05T07:50:00.000-0800","sgv":121},
           {"type":"cal","date":1709653500000,"slope":1000},
           {"type":"sgv","sgv":"high","date":1709653500000},
           {"type":"sgv","date":1709653500000}]"#;
        let d = decode_entries(body, "p-1", &mut v()).expect("decodes");
        let got: Vec<(&str, i64, f64, Option<&str>)> = d
            .batch
            .samples
            .iter()
            .map(|s| {
                (Catalog::standard().get(s.metric).code, s.time_ms, s.value, s.device.as_ref().map(|x| x.as_str()))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("blood_glucose", 1_709_653_500_000, 118.0, Some("xdrip-dexcomg6")),
                ("blood_glucose_meter", 1_709_653_200_000, 115.0, Some("xdrip-dexcomg6")),
                ("blood_glucose", 1_709_653_800_000, 120.0, Some("loop-iphone")),
                ("blood_glucose", 1_709_653_800_000, 121.0, None),
            ]
        );
        let codes: Vec<(usize, RejectCode)> = d.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(codes, vec![(5, RejectCode::InvalidField), (6, RejectCode::MissingField)]);
        assert!(d.unsupported.is_empty());
        // Each accepted entry and the calibration are kept whole, as sent.
        let docs: Vec<(&str, &str, i64)> =
            d.events.iter().map(|e| (e.kind.as_str(), e.id.as_str(), e.start_ms)).collect();
        assert_eq!(
            docs,
            vec![
                (ENTRIES, "sgv-1709653500000", 1_709_653_500_000),
                (ENTRIES, "mbg-1709653200000", 1_709_653_200_000),
                (ENTRIES, "sgv-1709653800000", 1_709_653_800_000),
                (ENTRIES, "sgv-1709653800000", 1_709_653_800_000),
                (ENTRIES, "cal-1709653500000", 1_709_653_500_000),
            ]
        );
        let first = &d.events[0].attributes;
        assert_eq!(
            (&first["direction"], &first["device"], &first["filtered"]),
            (&serde_json::json!("Flat"), &serde_json::json!("xDrip-DexcomG6"), &serde_json::json!(120000))
        );
        assert_eq!(d.events[2].attributes["device"], serde_json::json!("loop://iPhone"));
        assert_eq!(d.events[4].attributes["slope"], serde_json::json!(1000));
        // A single object is one entry.
        let one = decode_entries(br#"{"sgv": 100, "date": 1709653500000}"#, "p-1", &mut v()).expect("one");
        assert_eq!(one.batch.samples.len(), 1);
    }

    #[test]
    fn devicestatus_batteries_become_readings() {
        let body = br#"[{"device":"xDrip-DexcomG6","created_at":"2024-03-05T15:50:02.000Z","uploader":{"battery":76}},
            {"device":"openaps://phone","date":1709653800000,"uploaderBattery":55,"pump":{"battery":{"percent":80}}},
            {"device":"loop://iPhone","created_at":"2024-03-05T15:50:02.000Z","loop":{"iob":1.2}}]"#;
        let d = decode_devicestatus(body, "p-1", &mut v()).expect("decodes");
        let got: Vec<(f64, &str)> =
            d.batch.samples.iter().map(|s| (s.value, s.device.as_ref().map(|x| x.as_str()).unwrap_or(""))).collect();
        assert_eq!(got, vec![(76.0, "xdrip-dexcomg6"), (55.0, "openaps-phone"), (80.0, "openaps-phone-pump")]);
        assert!(d.batch.rejections.is_empty());
        // Every status is kept whole, the loop's too.
        assert_eq!(d.events.iter().filter(|e| e.kind == DEVICESTATUS).count(), 3);
        assert_eq!(d.events[2].attributes["loop"]["iob"], serde_json::json!(1.2));
        let bad = decode_devicestatus(br#"[{"device":"x","created_at":"yesterday"},{"device":"x"}]"#, "p-1", &mut v())
            .expect("decodes");
        let why: Vec<(usize, RejectCode)> = bad.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(why, vec![(0, RejectCode::InvalidField), (1, RejectCode::MissingField)]);
    }

    #[test]
    fn treatments_become_events_replaced_on_resend() {
        let body = br#"[{"eventType":"Meal Bolus","created_at":"2024-03-05T15:50:00.000Z","enteredBy":"caregiver-app",
            "carbs":45,"insulin":4.5,"glucose":118,"glucoseType":"Sensor","units":"mg/dl","notes":"oatmeal","secret":"x"},
           {"eventType":"Temp Basal","timestamp":"2024-03-05T07:00:00.000-0800","duration":30,"percent":-50,"identifier":"abc"},
           {"eventType":"Note"}]"#;
        let d = decode_treatments(body, "p-1", &mut v()).expect("decodes");
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[0].attributes.get("carbs"), Some(&serde_json::json!(45)));
        assert!(!d.events[0].attributes.contains_key("secret"));
        assert_eq!((d.events[1].id.as_str(), d.events[1].end_ms - d.events[1].start_ms), ("treatment-abc", 1_800_000));
        assert_eq!(d.events[1].start_ms, 1_709_650_800_000);
        assert_eq!((d.batch.rejections[0].index, d.batch.rejections[0].code), (2, RejectCode::MissingField));
        let again = decode_treatments(body, "p-1", &mut v()).expect("decodes");
        assert_eq!(again.events[0].id, d.events[0].id, "content ids are stable");
    }

    #[test]
    fn xdrip_activity_keeps_records_and_heart_rates_become_readings() {
        let body =
            br#"[{"type":"hr-bpm","timeStamp":1709653500000,"created_at":"2024-03-05T15:45:00Z","bpm":72,"accuracy":3},
            {"type":"steps-total","timeStamp":1709653500000,"steps":4211},
            {"type":"hr-bpm","timeStamp":1709653560000,"bpm":"fast"},
            {"type":"motion-class","class":"walking"}]"#;
        let d = decode_activity(body, "p-1", &mut v()).expect("decodes");
        let hr: Vec<(i64, f64, Option<&str>)> =
            d.batch.samples.iter().map(|s| (s.time_ms, s.value, s.device.as_ref().map(|x| x.as_str()))).collect();
        assert_eq!(hr, vec![(1_709_653_500_000, 72.0, Some("xdrip-watch"))]);
        assert_eq!(d.events.iter().filter(|e| e.kind == ACTIVITY).count(), 3, "every record with a time kept");
        let why: Vec<(usize, RejectCode)> = d.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(why, vec![(2, RejectCode::InvalidField), (3, RejectCode::MissingField)]);
    }

    #[test]
    fn foods_are_kept_by_id_or_name() {
        let body = br#"[{"type":"food","category":"Breakfast","name":"Oatmeal","portion":250,"unit":"g","carbs":45},
            {"_id":"f1","name":"Apple","carbs":15}, {"category":"x"}]"#;
        let d = decode_food(body, "p-1", &mut v()).expect("decodes");
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[1].id, "food-f1");
        assert_eq!(d.events[0].attributes["carbs"], serde_json::json!(45));
        assert_eq!(d.batch.rejections[0].index, 2);
        let again = decode_food(body, "p-1", &mut v()).expect("decodes");
        assert_eq!(again.events[0].id, d.events[0].id, "the same food replaces itself");
    }

    #[test]
    fn offsets_without_colons_are_read() {
        assert_eq!(normalise_iso("2024-03-05T07:45:00.000-0800"), "2024-03-05T07:45:00.000-08:00");
        assert_eq!(normalise_iso("2024-03-05T15:45:00.000Z"), "2024-03-05T15:45:00.000Z");
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for f in [decode_entries, decode_devicestatus, decode_treatments, decode_activity, decode_food] {
                if let Ok(d) = f(&bytes, "p", &mut v()) {
                    proptest::prop_assert_eq!(d.batch.items, d.batch.samples.len() + d.batch.rejections.len());
                }
            }
        }
    }
}
