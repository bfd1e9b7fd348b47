//! Google Takeout exports of a Fitbit account: the per-day JSON files of
//! `Takeout/Fitbit/Global Export Data/` (the archive, or the files themselves).
//!
//! | file | each item | Vitals metric |
//! | --- | --- | --- |
//! | `heart_rate-YYYY-MM-DD.json` | `{"dateTime": "01/15/24 07:00:05", "value": {"bpm": 62, "confidence": 2}}` | `heart_rate` |
//! | `steps-YYYY-MM-DD.json` | `{"dateTime": "01/15/24 07:01:00", "value": "31"}` | `step_count` (minutes with steps) |
//! | `resting_heart_rate-YYYY-MM-DD.json` | `{"dateTime": "01/15/24 00:00:00", "value": {"date": "01/15/24", "value": 61.6, "error": 6.9}}` | `resting_heart_rate` (days without an estimate skipped) |
//!
//! Times (`MM/dd/yy HH:mm:ss`) are read as UTC. The other files of the archive (sleep
//! logs, calories, zones, profile...) are counted as not stored by the file source.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use vitals_core::{RawSample, RawTime, Validator};

use crate::Batch;

/// The device samples of a Takeout carry.
pub const DEVICE: &str = "fitbit";

/// The per-day files Vitals reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitbitFile {
    HeartRate,
    Steps,
    RestingHeartRate,
}

/// The kind of a Takeout file from its base name (`heart_rate-2024-01-15.json`).
pub fn kind_of(name: &str) -> Option<FitbitFile> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = base.strip_suffix(".json")?;
    let (prefix, date) = stem.split_at_checked(stem.len().checked_sub(10)?)?;
    let prefix = prefix.strip_suffix('-')?;
    let digits = date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !digits {
        return None;
    }
    match prefix {
        "heart_rate" => Some(FitbitFile::HeartRate),
        "steps" => Some(FitbitFile::Steps),
        "resting_heart_rate" => Some(FitbitFile::RestingHeartRate),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FitbitError {
    #[error("{file}: not a JSON array of readings: {reason}")]
    NotAnArray { file: String, reason: String },
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "dateTime", borrow)]
    date_time: Cow<'a, str>,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Deserialize)]
struct Bpm {
    bpm: f64,
}

#[derive(Deserialize)]
struct Resting {
    value: Option<f64>,
}

/// `MM/dd/yy HH:mm:ss` (UTC) as UNIX ms.
fn parse_time(s: &str) -> Option<i64> {
    let t = chrono::NaiveDateTime::parse_from_str(s.trim(), "%m/%d/%y %H:%M:%S").ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// Decodes one per-day file (`file` names it in messages).
pub fn decode(
    kind: FitbitFile,
    file: &str,
    bytes: &[u8],
    patient: &str,
    v: &mut Validator<'_>,
) -> Result<Batch, FitbitError> {
    let items: Vec<&RawValue> = serde_json::from_slice(bytes)
        .map_err(|e| FitbitError::NotAnArray { file: file.to_owned(), reason: e.to_string() })?;
    let mut batch = Batch::with_capacity(items.len());
    for (i, raw) in items.iter().enumerate() {
        let here = |why: String| format!("{file}[{i}]: {why}");
        let item: Item<'_> = match serde_json::from_str(raw.get()) {
            Ok(x) => x,
            Err(e) => {
                batch.malformed(i, here(e.to_string()));
                continue;
            }
        };
        let Some(t) = parse_time(&item.date_time) else {
            batch.items += 1;
            batch.reject(vitals_core::Rejection::new(
                i,
                vitals_core::RejectCode::InvalidTime,
                here(format!("dateTime {:?} is not MM/dd/yy HH:mm:ss", item.date_time)),
            ));
            continue;
        };
        let (metric, value) = match kind {
            FitbitFile::HeartRate => match serde_json::from_str::<Bpm>(item.value.get()) {
                Ok(b) => ("heart_rate", b.bpm),
                Err(e) => {
                    batch.malformed(i, here(format!("value: {e}")));
                    continue;
                }
            },
            FitbitFile::Steps => {
                let text: Result<Cow<'_, str>, _> = serde_json::from_str(item.value.get());
                let n = match text {
                    Ok(s) => s.trim().parse::<f64>().ok(),
                    Err(_) => serde_json::from_str::<f64>(item.value.get()).ok(),
                };
                match n {
                    Some(0.0) => continue,
                    Some(n) => ("step_count", n),
                    None => {
                        batch.malformed(i, here(format!("value {} is not a step count", item.value.get())));
                        continue;
                    }
                }
            }
            FitbitFile::RestingHeartRate => match serde_json::from_str::<Resting>(item.value.get()) {
                // Days without an estimate carry 0 or null.
                Ok(Resting { value: None | Some(0.0) }) => continue,
                Ok(Resting { value: Some(x) }) => ("resting_heart_rate", x),
                Err(e) => {
                    batch.malformed(i, here(format!("value: {e}")));
                    continue;
                }
            },
        };
        let raw = RawSample {
            patient: Cow::Borrowed(patient),
            metric: Cow::Borrowed(metric),
            time: RawTime::Ms(t),
            value,
            unit: None,
            device: Some(Cow::Borrowed(DEVICE)),
            id: None,
        };
        batch.push(v, i, &raw);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    #[test]
    fn per_day_files_are_known_by_name() {
        assert_eq!(
            kind_of("Takeout/Fitbit/Global Export Data/heart_rate-2024-01-15.json"),
            Some(FitbitFile::HeartRate)
        );
        assert_eq!(kind_of("steps-2024-01-15.json"), Some(FitbitFile::Steps));
        assert_eq!(kind_of("resting_heart_rate-2024-01-15.json"), Some(FitbitFile::RestingHeartRate));
        assert_eq!(kind_of("sleep-2024-01-15.json"), None);
        assert_eq!(kind_of("heart_rate.json"), None);
        assert_eq!(kind_of("-"), None);
    }

    #[test]
    fn readings_decode_and_bad_items_are_refused_with_their_place() {
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 0, None);
        let hr = br#"[{"dateTime":"01/15/24 07:00:05","value":{"bpm":62,"confidence":2}},
            {"dateTime":"13/45/24 07:00:10","value":{"bpm":63,"confidence":2}},
            {"dateTime":"01/15/24 07:00:15","value":{"confidence":2}}, 5]"#;
        let b = decode(FitbitFile::HeartRate, "heart_rate-2024-01-15.json", hr, "p", &mut v).expect("array");
        assert_eq!(b.samples.len(), 1);
        assert_eq!((b.samples[0].time_ms, b.samples[0].value), (1_705_302_005_000, 62.0));
        assert_eq!(b.items, 4);
        let places: Vec<usize> = b.rejections.iter().map(|r| r.index).collect();
        assert_eq!(places, vec![1, 2, 3]);
        assert!(b.rejections[0].message.starts_with("heart_rate-2024-01-15.json[1]"), "{}", b.rejections[0].message);
        let steps = br#"[{"dateTime":"01/15/24 07:00:00","value":"0"},{"dateTime":"01/15/24 07:01:00","value":"31"}]"#;
        let b = decode(FitbitFile::Steps, "s", steps, "p", &mut v).expect("array");
        assert_eq!(b.samples.iter().map(|s| s.value).collect::<Vec<_>>(), vec![31.0]);
        let rest = br#"[{"dateTime":"01/14/24 00:00:00","value":{"date":null,"value":0.0,"error":0.0}},
            {"dateTime":"01/15/24 00:00:00","value":{"date":"01/15/24","value":61.6,"error":6.9}}]"#;
        let b = decode(FitbitFile::RestingHeartRate, "r", rest, "p", &mut v).expect("array");
        assert_eq!(b.samples.iter().map(|s| s.value).collect::<Vec<_>>(), vec![61.6]);
        assert!(decode(FitbitFile::Steps, "s", b"{\"not\":1}", "p", &mut v).is_err());
    }
}
