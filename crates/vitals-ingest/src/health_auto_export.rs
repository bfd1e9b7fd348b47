//! Health Auto Export (the iPhone app that exports Apple Health) REST JSON:
//! `{"data": {"metrics": [{"name", "units", "data": [...]}], "workouts": [...], ...}}`,
//! both export format versions.
//!
//! Quantity metrics become samples of the catalog (`heart_rate` `Min`/`Avg`/`Max` become
//! `heart_rate_min`/`heart_rate`/`heart_rate_max`; `blood_pressure` becomes systolic and
//! diastolic). Units go through the catalog. Dates are `yyyy-MM-dd HH:mm:ss Z`, also in the
//! 12-hour form with AM/PM after a space, a no-break space or a narrow no-break space
//! (U+202F), as real phones send them. The `source` becomes the device id (sanitised).
//! Sections and metrics Vitals cannot store yet (workouts, sleep analysis, medications...)
//! are reported back as `unsupported`, never silently dropped.

use std::borrow::Cow;

use chrono::DateTime;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use vitals_core::{Event, RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;
use crate::native::DecodeError;

/// A part of an export that was not stored, with how many items it had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unsupported {
    pub section: String,
    pub count: usize,
}

/// What an export decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: Batch,
    /// Workouts (with their heart-rate series in `batch`) and sleep.
    pub events: Vec<Event>,
    pub unsupported: Vec<Unsupported>,
}

// Points and workouts stay raw slices of the body until each is read on its own, so a
// large export is never held as a whole second tree in memory.
#[derive(Deserialize)]
struct Export<'a> {
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    #[serde(default, borrow)]
    metrics: Vec<MetricEntry<'a>>,
    #[serde(default, borrow)]
    workouts: Vec<&'a RawValue>,
    #[serde(default)]
    state_of_mind: Vec<IgnoredAny>,
    #[serde(default)]
    medications: Vec<IgnoredAny>,
    #[serde(default)]
    symptoms: Vec<IgnoredAny>,
    #[serde(default)]
    cycle_tracking: Vec<IgnoredAny>,
    #[serde(default)]
    ecg: Vec<IgnoredAny>,
    #[serde(default)]
    heart_rate_notifications: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct MetricEntry<'a> {
    name: String,
    #[serde(default)]
    units: Option<String>,
    #[serde(default, borrow)]
    data: Vec<&'a RawValue>,
}

/// One raw point read on its own (already known to be valid JSON).
fn point(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// Which catalog metric a field of an export's metric becomes.
fn targets(name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    // (field of the data point, metric code)
    Some(match name {
        "heart_rate" => {
            &[("Avg", "heart_rate"), ("Min", "heart_rate_min"), ("Max", "heart_rate_max"), ("qty", "heart_rate")]
        }
        "blood_pressure" => &[("systolic", "blood_pressure_systolic"), ("diastolic", "blood_pressure_diastolic")],
        "active_energy" => &[("qty", "active_energy")],
        "basal_energy_burned" | "resting_energy" => &[("qty", "resting_energy")],
        "resting_heart_rate" => &[("qty", "resting_heart_rate")],
        "flights_climbed" => &[("qty", "flights_climbed")],
        "headphone_audio_exposure" => &[("qty", "headphone_audio_exposure")],
        "step_count" => &[("qty", "step_count")],
        "walking_running_distance" => &[("qty", "walking_running_distance")],
        "walking_speed" => &[("qty", "walking_speed")],
        "walking_step_length" => &[("qty", "walking_step_length")],
        "walking_asymmetry_percentage" | "walking_asymmetry" => &[("qty", "walking_asymmetry")],
        "walking_double_support_percentage" | "walking_double_support" => &[("qty", "walking_double_support")],
        "heart_rate_variability" | "heart_rate_variability_sdnn" | "hrv" => &[("qty", "hrv_sdnn")],
        "blood_oxygen_saturation" | "oxygen_saturation" => &[("qty", "spo2")],
        "respiratory_rate" => &[("qty", "respiratory_rate")],
        "body_temperature" => &[("qty", "body_temperature")],
        "blood_glucose" => &[("qty", "blood_glucose")],
        "weight_body_mass" | "body_mass" => &[("qty", "body_mass")],
        _ => return None,
    })
}

/// Parses `yyyy-MM-dd HH:mm:ss Z` (24- or 12-hour), or RFC 3339, to ms since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let norm: String = s.trim().chars().map(|c| if c == '\u{202f}' || c == '\u{a0}' { ' ' } else { c }).collect();
    for fmt in ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %I:%M:%S %p %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %I:%M %p %z"] {
        if let Ok(t) = DateTime::parse_from_str(&norm, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&norm) {
        return Some(t.timestamp_millis());
    }
    // A date without an offset is the phone's local time, which is unknown: refused.
    None
}

/// Turns a free-form device label (an app `source` such as "Alex’s Apple Watch|Alex’s
/// iPhone", an uploader such as "loop://iPhone") into a device id: lower case, runs of other
/// characters become one `-`, at most 64 characters.
pub fn device_from_source(source: &str) -> Option<String> {
    let mut out = String::with_capacity(source.len().min(64));
    let mut dash = false;
    for c in source.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
        if out.len() >= 64 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    (!out.is_empty()).then_some(out)
}

/// Decodes an export for `patient`.
pub fn decode(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let export: Export = serde_json::from_slice(body).map_err(|e| DecodeError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut out = Decoded::default();
    let d = export.data;
    for (section, n) in [
        ("stateOfMind", d.state_of_mind.len()),
        ("medications", d.medications.len()),
        ("symptoms", d.symptoms.len()),
        ("cycleTracking", d.cycle_tracking.len()),
        ("ecg", d.ecg.len()),
        ("heartRateNotifications", d.heart_rate_notifications.len()),
    ] {
        if n > 0 {
            out.unsupported.push(Unsupported { section: section.to_owned(), count: n });
        }
    }
    let mut index = 0usize;
    for (w, workout) in d.workouts.iter().enumerate() {
        decode_workout(w, &point(workout), patient, validator, &mut out, &mut index);
    }
    for (m, entry) in d.metrics.iter().enumerate() {
        if entry.name == "sleep_analysis" {
            decode_sleep(m, entry, patient, &mut out, &mut index);
            continue;
        }
        let Some(targets) = targets(&entry.name) else {
            out.unsupported.push(Unsupported { section: format!("metrics/{}", entry.name), count: entry.data.len() });
            index += entry.data.len();
            continue;
        };
        let unit = entry.units.as_deref().map(hae_unit);
        for (k, raw) in entry.data.iter().enumerate() {
            let point = point(raw);
            let here = format!("data.metrics[{m}].data[{k}] ({})", entry.name);
            let item = index;
            index += 1;
            let Some(obj) = point.as_object() else {
                out.batch.items += 1;
                out.batch.reject(Rejection::new(item, RejectCode::Malformed, format!("{here}: not an object")));
                continue;
            };
            let date = obj.get("date").and_then(Value::as_str);
            let Some(time) = date.and_then(parse_date) else {
                out.batch.items += 1;
                let why = match date {
                    Some(s) => format!("{here}: date {s:?} is not yyyy-MM-dd HH:mm:ss Z"),
                    None => format!("{here}: no date"),
                };
                out.batch.reject(Rejection::new(item, RejectCode::InvalidTime, why));
                continue;
            };
            let device = obj.get("source").and_then(Value::as_str).and_then(device_from_source);
            // A glucose reading's meal time ("Before Meal", "After Meal") is kept as an event
            // at the reading, so charts and rules can tell fasting from post-meal values.
            if entry.name == "blood_glucose"
                && let Some(meal) = obj.get("mealTime").and_then(Value::as_str).filter(|m| *m != "Unspecified")
            {
                let mut attributes = std::collections::BTreeMap::new();
                attributes.insert("mealTime".to_owned(), Value::String(meal.to_owned()));
                out.events.push(Event {
                    id: Event::content_id(patient, "glucose_meal_time", time, time, meal),
                    patient: patient.to_owned(),
                    kind: "glucose_meal_time".into(),
                    start_ms: time,
                    end_ms: time,
                    source: "health_auto_export".into(),
                    attributes,
                });
            }
            let mut any = false;
            for (field, code) in targets {
                // heart_rate with Avg does not also read qty (older exports have only qty).
                if *field == "qty" && *code == "heart_rate" && obj.contains_key("Avg") {
                    continue;
                }
                let Some(v) = obj.get(*field) else { continue };
                any = true;
                out.batch.items += 1;
                let Some(mut value) = v.as_f64() else {
                    out.batch.reject(Rejection::new(
                        item,
                        RejectCode::InvalidField,
                        format!("{here}: {field} is not a number"),
                    ));
                    continue;
                };
                // SpO2 as a fraction (0.97) with unit % is a percentage (97).
                if *code == "spo2" && value <= 1.0 {
                    value *= 100.0;
                }
                let raw = RawSample {
                    patient: Cow::Borrowed(patient),
                    metric: Cow::Borrowed(code),
                    time: RawTime::Ms(time),
                    value,
                    unit: unit.map(Cow::Borrowed),
                    device: device.as_deref().map(Cow::Borrowed),
                    id: None,
                };
                match validator.validate(item, &raw) {
                    Ok(s) => out.batch.samples.push(s),
                    Err(r) => out.batch.reject(Rejection { message: format!("{here}: {}", r.message), ..r }),
                }
            }
            if !any {
                out.batch.items += 1;
                let fields: Vec<&str> = targets.iter().map(|t| t.0).collect();
                out.batch.reject(Rejection::new(
                    item,
                    RejectCode::MissingField,
                    format!("{here}: none of {}", fields.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

fn attributes(o: &serde_json::Map<String, Value>, skip: &[&str]) -> std::collections::BTreeMap<String, Value> {
    o.iter().filter(|(k, _)| !skip.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A workout (both export versions) becomes an event; its heart-rate series samples.
fn decode_workout(
    w: usize,
    workout: &Value,
    patient: &str,
    validator: &mut Validator<'_>,
    out: &mut Decoded,
    index: &mut usize,
) {
    let here = format!("data.workouts[{w}]");
    let item = *index;
    *index += 1;
    let Some(o) = workout.as_object() else {
        out.batch.items += 1;
        out.batch.reject(Rejection::new(item, RejectCode::Malformed, format!("{here}: not an object")));
        return;
    };
    let start = o.get("start").and_then(Value::as_str).and_then(parse_date);
    let end = o.get("end").and_then(Value::as_str).and_then(parse_date);
    let (Some(start), Some(end)) = (start, end) else {
        out.batch.items += 1;
        out.batch.reject(Rejection::new(item, RejectCode::InvalidTime, format!("{here}: no readable start and end")));
        return;
    };
    let name = o.get("name").and_then(Value::as_str).unwrap_or("workout");
    let id = match o.get("id").and_then(Value::as_str) {
        Some(id) => format!("workout-{id}"),
        None => Event::content_id(patient, "workout", start, end, name),
    };
    let series = [
        "heartRateData",
        "heartRateRecovery",
        "route",
        "activeEnergy",
        "basalEnergy",
        "cyclingCadence",
        "cyclingDistance",
        "cyclingPower",
        "cyclingSpeed",
        "swimDistance",
        "swimStroke",
        "stepCount",
        "walkingAndRunningDistance",
    ];
    out.events.push(Event {
        id,
        patient: patient.to_owned(),
        kind: "workout".into(),
        start_ms: start,
        end_ms: end.max(start),
        source: "health_auto_export".into(),
        attributes: attributes(o, &series),
    });
    for (k, point) in o.get("heartRateData").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let item = *index;
        *index += 1;
        let at = format!("{here}.heartRateData[{k}]");
        let Some(p) = point.as_object() else { continue };
        let Some(time) = p.get("date").and_then(Value::as_str).and_then(parse_date) else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(item, RejectCode::InvalidTime, format!("{at}: no readable date")));
            continue;
        };
        for (field, metric) in
            [("Avg", "heart_rate"), ("qty", "heart_rate"), ("Min", "heart_rate_min"), ("Max", "heart_rate_max")]
        {
            let Some(value) = p.get(field).and_then(Value::as_f64) else { continue };
            if field == "qty" && p.contains_key("Avg") {
                continue;
            }
            out.batch.items += 1;
            let raw = RawSample {
                patient: Cow::Borrowed(patient),
                metric: Cow::Borrowed(metric),
                time: RawTime::Ms(time),
                value,
                unit: None,
                device: p.get("source").and_then(Value::as_str).and_then(device_from_source).map(Cow::Owned),
                id: None,
            };
            match validator.validate(item, &raw) {
                Ok(s) => out.batch.samples.push(s),
                Err(r) => out.batch.reject(Rejection { message: format!("{at}: {}", r.message), ..r }),
            }
        }
    }
}

/// Sleep analysis in all three shapes the app has used: aggregated (>= 6.6.2 and older)
/// become a `sleep` event from sleepStart to sleepEnd (and an `in_bed` one), unaggregated
/// records a `sleep` event per stage.
fn decode_sleep(m: usize, entry: &MetricEntry<'_>, patient: &str, out: &mut Decoded, index: &mut usize) {
    for (k, raw) in entry.data.iter().enumerate() {
        let point = point(raw);
        let item = *index;
        *index += 1;
        let here = format!("data.metrics[{m}].data[{k}] (sleep_analysis)");
        let Some(o) = point.as_object() else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(item, RejectCode::Malformed, format!("{here}: not an object")));
            continue;
        };
        let date = |key: &str| o.get(key).and_then(Value::as_str).and_then(parse_date);
        let mut made = 0;
        let mut push = |kind: &str, start: i64, end: i64, extra: &str, attrs| {
            out.events.push(Event {
                id: Event::content_id(patient, kind, start, end, extra),
                patient: patient.to_owned(),
                kind: kind.into(),
                start_ms: start,
                end_ms: end.max(start),
                source: "health_auto_export".into(),
                attributes: attrs,
            });
            made += 1;
        };
        if let (Some(s), Some(e)) = (date("startDate"), date("endDate")) {
            let stage = o.get("value").and_then(Value::as_str).unwrap_or("Unspecified").to_owned();
            push("sleep", s, e, &stage, attributes(o, &["startDate", "endDate"]));
        } else {
            if let (Some(s), Some(e)) = (date("sleepStart"), date("sleepEnd")) {
                push("sleep", s, e, "", attributes(o, &["sleepStart", "sleepEnd", "inBedStart", "inBedEnd"]));
            }
            if let (Some(s), Some(e)) = (date("inBedStart"), date("inBedEnd")) {
                push("in_bed", s, e, "", attributes(o, &["sleepStart", "sleepEnd", "inBedStart", "inBedEnd"]));
            }
        }
        if made == 0 {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(
                item,
                RejectCode::InvalidTime,
                format!("{here}: no readable sleep or in-bed interval"),
            ));
        }
    }
}

/// Decodes the app's CSV export of health metrics (daily aggregates): a header row
/// `Date/Time,<Metric> (<unit>),<Metric> [<Field>] (<unit>),...` (e.g. `Active Energy
/// (kcal)`, `Heart Rate [Min] (count/min)`), then one row per day. Column names map onto
/// the same metric names as the JSON export (`Active Energy` -> `active_energy`); dates
/// without an offset are taken as UTC (the CSV carries days, so the calendar day is kept).
/// Rejections are indexed by 0-based line; unknown columns are reported as unsupported.
pub fn decode_csv(body: &[u8], patient: &str, validator: &mut Validator<'_>) -> Result<Decoded, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::NotUtf8 { offset: e.valid_up_to() })?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = rdr.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        _ => return Err(DecodeError::Shape { found: "a CSV without a header row".into() }),
    };
    // Per column: the metric code and the unit, or None for unknown columns.
    let mut columns: Vec<Option<(&'static str, Option<String>)>> = Vec::new();
    let mut out = Decoded::default();
    for h in header.iter().skip(1) {
        let (name, unit) = match (h.rfind('('), h.ends_with(')')) {
            (Some(i), true) => (h[..i].trim(), Some(h[i + 1..h.len() - 1].trim().to_owned())),
            _ => (h.trim(), None),
        };
        let (name, field) = match (name.find('['), name.ends_with(']')) {
            (Some(i), true) => (name[..i].trim(), Some(name[i + 1..name.len() - 1].trim())),
            _ => (name, None),
        };
        let snake: String = name
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch.to_ascii_lowercase() } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let wanted = match field.map(str::to_ascii_lowercase).as_deref() {
            None => "qty",
            Some("min") => "Min",
            Some("max") => "Max",
            Some("avg") => "Avg",
            Some("systolic") => "systolic",
            Some("diastolic") => "diastolic",
            Some(_) => "",
        };
        let metric = targets(&snake)
            .and_then(|t| t.iter().find(|(f, _)| *f == wanted || (wanted == "qty" && *f == "Avg")).map(|(_, m)| *m));
        match metric {
            Some(m) => columns.push(Some((m, unit.map(|u| hae_unit(&u).to_owned())))),
            None => {
                columns.push(None);
                out.unsupported.push(Unsupported { section: format!("csv/{h}"), count: 0 });
            }
        }
    }
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.batch.items += 1;
                let line = e.position().map(|p| p.line().saturating_sub(1) as usize).unwrap_or(0);
                out.batch.reject(Rejection::new(line, RejectCode::Malformed, e.to_string()));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line().saturating_sub(1) as usize).unwrap_or(0);
        let date = rec.get(0).unwrap_or("").trim();
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let time = parse_date(date).or_else(|| {
            chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S")
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .map(|n| n.and_utc().timestamp_millis())
        });
        let Some(time) = time else {
            out.batch.items += 1;
            out.batch.reject(Rejection::new(
                line,
                RejectCode::InvalidTime,
                format!("line {}: date {date:?}", line + 1),
            ));
            continue;
        };
        for (i, col) in columns.iter().enumerate() {
            let cell = rec.get(i + 1).unwrap_or("").trim();
            if cell.is_empty() {
                continue;
            }
            let Some((metric, unit)) = col else {
                if let Some(u) =
                    out.unsupported.iter_mut().find(|u| u.section == format!("csv/{}", header.get(i + 1).unwrap_or("")))
                {
                    u.count += 1;
                }
                continue;
            };
            out.batch.items += 1;
            let Ok(mut value) = cell.parse::<f64>() else {
                out.batch.reject(Rejection::new(
                    line,
                    RejectCode::InvalidField,
                    format!("line {}: {cell:?} is not a number", line + 1),
                ));
                continue;
            };
            if *metric == "spo2" && value <= 1.0 {
                value *= 100.0;
            }
            let raw = RawSample {
                patient: Cow::Borrowed(patient),
                metric: Cow::Borrowed(metric),
                time: RawTime::Ms(time),
                value,
                unit: unit.as_deref().map(Cow::Borrowed),
                device: None,
                id: None,
            };
            match validator.validate(line, &raw) {
                Ok(s) => out.batch.samples.push(s),
                Err(r) => out.batch.reject(r),
            }
        }
    }
    Ok(out)
}

/// Unit spellings of the app mapped onto the catalog's.
fn hae_unit(u: &str) -> &str {
    match u {
        "count/min" | "bpm" => "count/min",
        "degC" | "ºC" => "degC",
        "degF" | "ºF" => "degF",
        "km/hr" => "km/hr",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_709_700_000_000; // 2024-03-06T04:40:00Z

    fn run(body: &str) -> Decoded {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        decode(body.as_bytes(), "alias-42", &mut v).expect("decodes")
    }

    fn codes(d: &Decoded) -> Vec<&'static str> {
        d.batch.samples.iter().map(|s| Catalog::standard().get(s.metric).code).collect()
    }

    #[test]
    fn dates_in_every_form_phones_send() {
        let want = parse_date("2024-01-01 15:04:05 -0800").expect("24h");
        for s in [
            "2024-01-01 3:04:05 PM -0800",
            "2024-01-01 3:04:05\u{202f}PM -0800",
            "2024-01-01 03:04:05\u{a0}PM -0800",
            "2024-01-01T15:04:05-08:00",
        ] {
            assert_eq!(parse_date(s), Some(want), "{s:?}");
        }
        assert_eq!(want, 1_704_150_245_000);
        assert_eq!(parse_date("2024-01-01 12:00:00 AM +0000"), Some(1_704_067_200_000));
        for bad in ["2024-01-01", "2024-01-01 15:04:05", "yesterday", "2024-13-01 00:00:00 +0000"] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sources_become_device_ids() {
        assert_eq!(device_from_source("Alex’s Apple Watch").as_deref(), Some("alex-s-apple-watch"));
        assert_eq!(
            device_from_source("Alex’s iPhone|Alex’s Apple Watch").as_deref(),
            Some("alex-s-iphone-alex-s-apple-watch")
        );
        assert_eq!(device_from_source("’’"), None);
    }

    #[test]
    fn the_documented_example_decodes_with_units_and_unsupported_parts_reported() {
        let body = r#"{"data":{"metrics":[
          {"name":"heart_rate","units":"count/min","data":[
             {"date":"2024-03-05 07:41:00 -0800","Min":58,"Avg":63.5,"Max":71,"source":"Alex’s Apple Watch"}]},
          {"name":"step_count","units":"count","data":[
             {"date":"2024-03-05 07:41:00 -0800","qty":112,"source":"Alex’s iPhone|Alex’s Apple Watch"}]},
          {"name":"blood_glucose","units":"mmol/L","data":[
             {"date":"2024-03-05 07:45:00 -0800","qty":6.1,"mealTime":"Before Meal"}]},
          {"name":"blood_pressure","units":"mmHg","data":[
             {"date":"2024-03-05 08:00:00 -0800","systolic":121,"diastolic":79}]},
          {"name":"active_energy","units":"kJ","data":[{"date":"2024-03-05 08:00:00 -0800","qty":418.4}]},
          {"name":"blood_oxygen_saturation","units":"%","data":[{"date":"2024-03-05 08:00:00 -0800","qty":0.97}]},
          {"name":"sleep_analysis","units":"hr","data":[{"date":"2024-03-05","totalSleep":7.1,"asleep":0,"core":3.9,"deep":1.1,"rem":1.6,"awake":0.5,
             "sleepStart":"2024-03-04 23:12:10 -0800","sleepEnd":"2024-03-05 06:41:02 -0800","inBed":7.5,
             "inBedStart":"2024-03-04 23:05:00 -0800","inBedEnd":"2024-03-05 06:45:00 -0800","source":"Alex’s Apple Watch"},
             {"startDate":"2024-03-05 01:00:00 -0800","endDate":"2024-03-05 01:30:00 -0800","qty":0.5,"value":"Deep","source":"Watch"},
             {"date":"2024-03-05","totalSleep":7.1}]},
          {"name":"apple_stand_hour","units":"count","data":[]}
        ],"workouts":[{"id":"9d2b","name":"Outdoor Walk","start":"2024-03-05 17:02:43 -0800","end":"2024-03-05 17:31:53 -0800",
            "duration":1750,"distance":{"qty":2.41,"units":"km"},
            "heartRateData":[{"date":"2024-03-05 17:03:00 -0800","Min":96,"Avg":101,"Max":108,"units":"count/min"}]},
          {"name":"Legacy Run","start":"2024-03-04 17:00:00 -0800","end":"2024-03-04 17:30:00 -0800",
            "heartRateData":[{"date":"2024-03-04 17:01:00 -0800","qty":140,"units":"count"}]}]}}"#;
        let d = run(body);
        assert_eq!(
            codes(&d),
            vec![
                "heart_rate",
                "heart_rate_min",
                "heart_rate_max",
                "heart_rate",
                "heart_rate",
                "heart_rate_min",
                "heart_rate_max",
                "step_count",
                "blood_glucose",
                "blood_pressure_systolic",
                "blood_pressure_diastolic",
                "active_energy",
                "spo2"
            ],
            "the workouts' heart-rate series come first"
        );
        // The sleep point without any interval is refused with why.
        assert_eq!(d.batch.rejections.len(), 1, "{:?}", d.batch.rejections);
        assert_eq!(d.batch.rejections[0].code, RejectCode::InvalidTime);
        let kinds: Vec<(&str, i64)> = d.events.iter().map(|e| (e.kind.as_str(), e.end_ms - e.start_ms)).collect();
        assert_eq!(
            kinds,
            vec![
                ("workout", 1_750_000),
                ("workout", 1_800_000),
                ("glucose_meal_time", 0),
                ("sleep", 26_932_000),
                ("in_bed", 27_600_000),
                ("sleep", 1_800_000)
            ]
        );
        assert_eq!(d.events[2].attributes.get("mealTime"), Some(&serde_json::json!("Before Meal")));
        assert_eq!(d.events[0].id, "workout-9d2b");
        assert_eq!(d.events[0].attributes.get("distance"), Some(&serde_json::json!({"qty": 2.41, "units": "km"})));
        assert!(!d.events[0].attributes.contains_key("heartRateData"), "series become samples, not attributes");
        assert_eq!(d.events[5].attributes.get("value"), Some(&serde_json::json!("Deep")));
        let s = &d.batch.samples[4..];
        assert_eq!(s[0].time_ms, 1_709_653_260_000);
        assert_eq!(s[0].value, 63.5);
        assert_eq!(s[0].device.as_ref().map(|x| x.as_str()), Some("alex-s-apple-watch"));
        assert_eq!(s[4].value, 109.9, "6.1 mmol/L");
        assert_eq!(s[7].value, 100.0, "418.4 kJ");
        assert_eq!(s[8].value, 97.0, "fraction to percent");
        assert_eq!(d.unsupported, vec![Unsupported { section: "metrics/apple_stand_hour".into(), count: 0 }]);
    }

    #[test]
    fn bad_points_are_refused_one_by_one_with_their_path() {
        let body = r#"{"data":{"metrics":[{"name":"step_count","units":"count","data":[
            {"date":"2024-03-05 07:41:00 -0800","qty":10},
            {"date":"05/03/2024","qty":10},
            {"qty":10},
            {"date":"2024-03-05 07:42:00 -0800","qty":"ten"},
            {"date":"2024-03-05 07:43:00 -0800"},
            7,
            {"date":"2024-03-05 07:44:00 -0800","qty":10}]},
          {"name":"body_temperature","units":"furlongs","data":[{"date":"2024-03-05 07:41:00 -0800","qty":37}]}]}}"#;
        let d = run(body);
        assert_eq!(d.batch.samples.len(), 2);
        let got: Vec<(usize, RejectCode)> = d.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(
            got,
            vec![
                (1, RejectCode::InvalidTime),
                (2, RejectCode::InvalidTime),
                (3, RejectCode::InvalidField),
                (4, RejectCode::MissingField),
                (5, RejectCode::Malformed),
                (7, RejectCode::UnknownUnit),
            ]
        );
        assert!(d.batch.rejections[0].message.starts_with("data.metrics[0].data[1] (step_count)"));
        assert_eq!(d.batch.items, d.batch.samples.len() + d.batch.rejections.len());
    }

    #[test]
    fn the_csv_export_maps_columns_onto_metrics() {
        let csv = "Date/Time,Active Energy (kcal),Heart Rate [Min] (count/min),Heart Rate [Max] (count/min),Heart Rate [Avg] (count/min),Step Count (count),Walking + Running Distance (km),Blood Pressure [Systolic] (mmHg),Apple Stand Hour (count)\n\
                   2024-03-04 00:00:00,512.5,52,141,71.3,10234,7.41,,12\n\
                   2024-03-05 00:00:00,480,55,150,73,abc,,121,10\n\
                   yesterday,1,1,1,1,1,1,1,1\n";
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        let d = decode_csv(csv.as_bytes(), "p-1", &mut v).expect("csv");
        let got: Vec<(&str, i64, f64)> =
            d.batch.samples.iter().map(|s| (Catalog::standard().get(s.metric).code, s.time_ms, s.value)).collect();
        assert_eq!(got[0], ("active_energy", 1_709_510_400_000, 512.5));
        assert_eq!(got.iter().filter(|g| g.1 == 1_709_510_400_000).count(), 6);
        assert!(got.contains(&("walking_running_distance", 1_709_510_400_000, 7410.0)));
        assert!(got.contains(&("heart_rate", 1_709_596_800_000, 73.0)));
        assert!(got.contains(&("blood_pressure_systolic", 1_709_596_800_000, 121.0)));
        let codes: Vec<(usize, RejectCode)> = d.batch.rejections.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(codes, vec![(2, RejectCode::InvalidField), (3, RejectCode::InvalidTime)]);
        assert_eq!(d.unsupported, vec![Unsupported { section: "csv/Apple Stand Hour (count)".into(), count: 2 }]);
        assert_eq!(d.batch.items, d.batch.samples.len() + d.batch.rejections.len());
    }

    #[test]
    fn the_body_must_be_an_export() {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        for bad in ["[]", "{\"metrics\": []}", "{\"data\": {\"metrics\": 5}}", "{"] {
            assert!(decode(bad.as_bytes(), "p", &mut v).is_err(), "{bad}");
        }
        assert!(decode(b"{\"data\": {}}", "p", &mut v).expect("empty export").batch.samples.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for f in [decode, decode_csv] {
                let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
                if let Ok(d) = f(&bytes, "p", &mut v) {
                    proptest::prop_assert_eq!(d.batch.items, d.batch.samples.len() + d.batch.rejections.len());
                }
            }
        }
    }
}
