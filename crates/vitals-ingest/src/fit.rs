//! Garmin/ANT FIT files (Garmin, Polar, Suunto, Wahoo, Coros and others write them): the
//! binary messages are read by the `fitparser` crate (the FIT profile, compressed
//! timestamps, component fields); this module maps the health messages to samples and events.
//!
//! | FIT message | Vitals |
//! | --- | --- |
//! | `record` `heart_rate`, `respiration_rate`/`enhanced_respiration_rate` | `heart_rate`, `respiratory_rate` |
//! | `monitoring` `heart_rate` (with `timestamp_16`), `steps` (cumulative per activity type) | `heart_rate`, `step_count` (the increase since the previous reading) |
//! | `monitoring_hr_data` `resting_heart_rate` | `resting_heart_rate` |
//! | `hrv` `time` (beat-to-beat intervals, s) | `rr_interval`, placed from the file's first timestamp |
//! | `stress_level` `stress_level_value` (negative: no score) | `stress_level` |
//! | `spo2_data` `reading_spo2` | `spo2` |
//! | `respiration_rate` `respiration_rate` | `respiratory_rate` |
//! | `sleep_level` `sleep_level` | `sleep` events with a `stage` (runs of one level; the last ends a minute after it) |
//! | `device_info` of the creator `software_version`, `product_name`/`garmin_product` | a `device_info` event (`device`, `firmware`, `model`) |
//!
//! The device is `<manufacturer>-<serial number>` from `file_id` (or `-<product>` without
//! a serial). A file that stops making sense keeps what was read before, and the rest is one
//! refused item naming the byte where reading stopped.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use fitparser::de::{FitObject, FitStreamProcessor};
use fitparser::{FitDataRecord, Value};
use vitals_core::{Event, RawSample, RawTime, Validator};

use crate::Batch;

/// Seconds from the UNIX epoch to the FIT epoch (1989-12-31T00:00:00Z).
const FIT_EPOCH_S: i64 = 631_065_600;
/// The kind of the events that describe a device (firmware, model), as the device
/// telemetry reads them.
pub const DEVICE_INFO: &str = "device_info";
/// The length a sleep level with no later one is taken to last.
const LAST_SLEEP_LEVEL_MS: i64 = 60_000;

/// What a FIT file decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: Batch,
    /// Sleep stages, and the device's firmware (`device_info`).
    pub events: Vec<Event>,
    /// The device the file names, as samples carry it.
    pub device: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("not a FIT file: {0}")]
    NotFit(&'static str),
}

/// Whether `head` starts like a FIT file (a 12- or 14-byte header with `.FIT` at byte 8).
pub fn is_fit(head: &[u8]) -> bool {
    head.len() >= 12 && matches!(head[0], 12 | 14) && &head[8..12] == b".FIT"
}

/// Decodes a whole FIT file (chained files too) for `patient`.
pub fn decode(bytes: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Decoded, FitError> {
    if !is_fit(bytes) {
        return Err(FitError::NotFit("no FIT header (\".FIT\" at byte 8)"));
    }
    let mut p = FitStreamProcessor::new();
    let mut m = Mapper { patient, out: Decoded::default(), ..Mapper::default() };
    let mut input = bytes;
    let mut index = 0usize;
    // Where a (chained) file's header is due: at the start and after each CRC.
    let mut at_header = true;
    while !input.is_empty() {
        let at = bytes.len() - input.len();
        if at_header && input.len() < 14 && !(input[0] == 12 && input.len() >= 12) {
            // A header cut short (the reader's own handling of it overflows).
            m.out.batch.malformed(index + 1, format!("byte {at}: a FIT header cut short; the rest is not read"));
            break;
        }
        // The reader is a third party's: a panic in it (fuzzing found an arithmetic
        // overflow on a cut chained header) ends the file like a read error, not the caller.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.deserialize_next(input)));
        let Ok(next) = next else {
            m.out.batch.malformed(index + 1, format!("byte {at}: the FIT reader failed here; the rest is not read"));
            break;
        };
        match next {
            Ok((rest, obj)) => {
                if rest.len() >= input.len() {
                    m.out
                        .batch
                        .malformed(index, format!("byte {at}: the reader made no progress; the rest is not read"));
                    break;
                }
                input = rest;
                at_header = matches!(obj, FitObject::Crc(_));
                match obj {
                    FitObject::Crc(_) => {
                        p.reset();
                        m.end_of_file();
                    }
                    FitObject::DataMessage(msg) => {
                        index += 1;
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.decode_message(msg))) {
                            Ok(Ok(rec)) => m.record(index, &rec, v),
                            Ok(Err(e)) => m.out.batch.malformed(index, format!("message {index} (byte {at}): {e}")),
                            Err(_) => {
                                m.out
                                    .batch
                                    .malformed(index, format!("message {index} (byte {at}): the FIT reader failed"));
                                break;
                            }
                        }
                    }
                    FitObject::Header(_) | FitObject::DefinitionMessage(_) => {}
                }
            }
            Err(e) => {
                let kept = m.out.batch.items;
                m.out.batch.malformed(
                    index + 1,
                    format!(
                        "byte {at} of {}: {e}; the {kept} reading(s) before it were kept, the rest is not read",
                        bytes.len()
                    ),
                );
                break;
            }
        }
    }
    m.end_of_file();
    Ok(m.out)
}

#[derive(Default)]
struct Mapper<'p> {
    patient: &'p str,
    out: Decoded,
    /// The last full timestamp (UNIX ms), for `timestamp_16` and for placing beats.
    last_ms: Option<i64>,
    /// Where the next beat-to-beat interval ends.
    beat_ms: Option<i64>,
    /// The last cumulative step count by activity type.
    steps: HashMap<String, f64>,
    /// The sleep level in force and since when.
    sleep: Option<(i64, String, i64)>,
    /// Whether the creator's firmware was noted.
    firmware_seen: bool,
}

fn number(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Byte(x) | Value::Enum(x) | Value::UInt8(x) | Value::UInt8z(x) => f64::from(*x),
        Value::SInt8(x) => f64::from(*x),
        Value::SInt16(x) => f64::from(*x),
        Value::UInt16(x) | Value::UInt16z(x) => f64::from(*x),
        Value::SInt32(x) => f64::from(*x),
        Value::UInt32(x) | Value::UInt32z(x) => f64::from(*x),
        Value::SInt64(x) => *x as f64,
        Value::UInt64(x) | Value::UInt64z(x) => *x as f64,
        Value::Float32(x) => f64::from(*x),
        Value::Float64(x) => *x,
        Value::Timestamp(_) | Value::String(_) | Value::Array(_) | Value::Invalid => return None,
    };
    x.is_finite().then_some(x)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Invalid | Value::Array(_) => None,
        other => number(other).map(|x| format!("{x}")),
    }
}

/// A `timestamp_16` (the low 16 bits of the FIT-epoch seconds) as UNIX ms: the first such
/// time at or after the last full timestamp.
fn expand_timestamp_16(last_ms: i64, t16: i64) -> i64 {
    let last_s = last_ms.div_euclid(1000) - FIT_EPOCH_S;
    (last_s + (((t16 & 0xFFFF) - (last_s & 0xFFFF)) & 0xFFFF) + FIT_EPOCH_S) * 1000
}

/// A device id from what `file_id` says: letters, digits and `-` only.
fn device_id(manufacturer: &str, unit: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
    };
    let mut id = format!("{}-{}", clean(manufacturer), clean(unit));
    id.truncate(vitals_core::id::MAX_ID_LEN);
    id
}

impl Mapper<'_> {
    fn push(
        &mut self,
        v: &mut Validator<'_>,
        index: usize,
        metric: &'static str,
        t_ms: i64,
        value: f64,
        unit: Option<&'static str>,
    ) {
        let raw = RawSample {
            patient: Cow::Borrowed(self.patient),
            metric: Cow::Borrowed(metric),
            time: RawTime::Ms(t_ms),
            value,
            unit: unit.map(Cow::Borrowed),
            device: self.out.device.as_deref().map(Cow::Borrowed),
            id: None,
        };
        self.out.batch.push(v, index, &raw);
    }

    fn record(&mut self, index: usize, rec: &FitDataRecord, v: &mut Validator<'_>) {
        let kind = rec.kind().to_string();
        let fields: BTreeMap<&str, &Value> = rec.fields().iter().map(|f| (f.name(), f.value())).collect();
        let at = |name: &str| match fields.get(name) {
            Some(Value::Timestamp(t)) => Some(t.timestamp_millis()),
            _ => None,
        };
        let num = |name: &str| fields.get(name).and_then(|x| number(x));
        let mut time = at("timestamp");
        if time.is_none()
            && let (Some(t16), Some(last)) = (num("timestamp_16"), self.last_ms)
        {
            time = Some(expand_timestamp_16(last, t16 as i64));
        }
        if let Some(t) = at("timestamp") {
            self.last_ms = Some(t);
            self.beat_ms.get_or_insert(t);
        }
        match kind.as_str() {
            "file_id" => {
                let maker = fields.get("manufacturer").and_then(|x| text(x)).unwrap_or_else(|| "fit".into());
                let unit = fields
                    .get("serial_number")
                    .and_then(|x| text(x))
                    .or_else(|| fields.get("garmin_product").or(fields.get("product")).and_then(|x| text(x)));
                self.out.device = Some(device_id(&maker, unit.as_deref().unwrap_or("device")));
                if let Some(t) = at("time_created") {
                    self.last_ms.get_or_insert(t);
                    self.beat_ms.get_or_insert(t);
                }
            }
            "device_info" => {
                // The device that wrote the file (its index 0, "creator"): its firmware.
                let creator = match fields.get("device_index") {
                    None => true,
                    Some(Value::String(s)) => s == "creator",
                    Some(x) => number(x) == Some(0.0),
                };
                let (Some(dev), Some(version)) = (self.out.device.clone(), num("software_version")) else { return };
                if !creator || self.firmware_seen {
                    return;
                }
                self.firmware_seen = true;
                let t = time.or(self.last_ms).unwrap_or(0);
                let mut attributes = BTreeMap::new();
                attributes.insert("device".to_owned(), serde_json::Value::String(dev.clone()));
                attributes.insert("firmware".to_owned(), serde_json::Value::String(format!("{version}")));
                let model = fields.get("product_name").or(fields.get("garmin_product")).and_then(|x| text(x));
                if let Some(m) = model {
                    attributes.insert("model".to_owned(), serde_json::Value::String(m));
                }
                self.out.events.push(Event {
                    id: Event::content_id(self.patient, DEVICE_INFO, t, t, &format!("{dev}/{version}")),
                    patient: self.patient.to_owned(),
                    kind: DEVICE_INFO.to_owned(),
                    start_ms: t,
                    end_ms: t,
                    source: "fit".to_owned(),
                    attributes,
                });
            }
            "record" | "monitoring" => {
                let Some(t) = time else {
                    if num("heart_rate").is_some() || num("steps").is_some() {
                        self.out.batch.malformed(index, format!("message {index} ({kind}): no timestamp"));
                    }
                    return;
                };
                if let Some(hr) = num("heart_rate").filter(|hr| *hr > 0.0 && *hr < 255.0) {
                    self.push(v, index, "heart_rate", t, hr, None);
                }
                let breaths = num("enhanced_respiration_rate").or(num("respiration_rate"));
                if let Some(br) = breaths.filter(|b| *b > 0.0 && *b < 255.0) {
                    self.push(v, index, "respiratory_rate", t, br, None);
                }
                if kind == "monitoring"
                    && let Some(total) = num("steps")
                {
                    let activity = fields.get("activity_type").and_then(|x| text(x)).unwrap_or_default();
                    let before = self.steps.insert(activity, total).unwrap_or(0.0);
                    // The device counts from zero again each day.
                    let step = if total >= before { total - before } else { total };
                    if step > 0.0 {
                        self.push(v, index, "step_count", t, step, None);
                    }
                }
            }
            "monitoring_hr_data" => {
                if let (Some(t), Some(hr)) = (time, num("resting_heart_rate").filter(|x| *x > 0.0 && *x < 255.0)) {
                    self.push(v, index, "resting_heart_rate", t, hr, None);
                }
            }
            "hrv" => {
                let Some(Value::Array(beats)) = fields.get("time") else { return };
                let Some(mut clock) = self.beat_ms.or(self.last_ms) else {
                    self.out
                        .batch
                        .malformed(index, format!("message {index} (hrv): no timestamp before the intervals"));
                    return;
                };
                for b in beats.iter().filter_map(number).filter(|s| *s > 0.0 && *s < 65.0) {
                    clock += (b * 1000.0).round() as i64;
                    self.push(v, index, "rr_interval", clock, b, Some("s"));
                }
                self.beat_ms = Some(clock);
            }
            "stress_level" => {
                let t = at("stress_level_time").or(time);
                if let (Some(t), Some(s)) = (t, num("stress_level_value").filter(|s| *s >= 0.0)) {
                    self.push(v, index, "stress_level", t, s, None);
                }
            }
            "spo2_data" => {
                if let (Some(t), Some(s)) = (time, num("reading_spo2").filter(|s| *s > 0.0 && *s < 255.0)) {
                    self.push(v, index, "spo2", t, s, None);
                }
            }
            "respiration_rate" => {
                if let (Some(t), Some(r)) = (time, num("respiration_rate").filter(|r| *r > 0.0)) {
                    self.push(v, index, "respiratory_rate", t, r, None);
                }
            }
            "sleep_level" => {
                let (Some(t), Some(level)) = (time, fields.get("sleep_level").and_then(|x| text(x))) else { return };
                match &self.sleep {
                    Some((_, l, _)) if *l == level => {
                        if let Some(s) = &mut self.sleep {
                            s.2 = t;
                        }
                    }
                    _ => {
                        self.close_sleep(Some(t));
                        self.sleep = Some((t, level, t));
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends the sleep level in force at `end` (or a minute after its last reading).
    fn close_sleep(&mut self, end: Option<i64>) {
        let Some((start, level, last)) = self.sleep.take() else { return };
        let end = end.unwrap_or(last.saturating_add(LAST_SLEEP_LEVEL_MS));
        if end <= start {
            return;
        }
        let mut attributes = BTreeMap::new();
        attributes.insert("stage".to_owned(), serde_json::Value::String(level.clone()));
        if let Some(d) = &self.out.device {
            attributes.insert("device".to_owned(), serde_json::Value::String(d.clone()));
        }
        self.out.events.push(Event {
            id: Event::content_id(self.patient, "sleep", start, end, &level),
            patient: self.patient.to_owned(),
            kind: "sleep".to_owned(),
            start_ms: start,
            end_ms: end,
            source: "fit".to_owned(),
            attributes,
        });
    }

    fn end_of_file(&mut self) {
        self.close_sleep(None);
        self.steps.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    #[test]
    fn what_is_not_fit_is_refused_whole_and_a_cut_file_keeps_its_start() {
        let mut v = Validator::new(Catalog::standard(), i64::MAX / 4, 0, None);
        assert!(decode(b"hello world, this is text", "p", &mut v).is_err());
        assert!(!is_fit(b"\x0e\x10\x00\x00"));
        // A header that promises more data than there is.
        let mut cut = vec![14u8, 0x10, 0x00, 0x08, 0xff, 0, 0, 0];
        cut.extend_from_slice(b".FIT");
        cut.extend_from_slice(&[0, 0, 0x40, 0, 0]);
        let d = decode(&cut, "p", &mut v).expect("a FIT header");
        assert_eq!(d.batch.refused, 1, "{:?}", d.batch.rejections);
        assert!(d.batch.rejections[0].message.contains("byte"), "{}", d.batch.rejections[0].message);
    }

    #[test]
    fn a_file_that_made_the_reader_panic_is_refused_from_there_not_a_crash() {
        // Found by `cargo fuzz`: a chained header cut short, and a message that runs past the
        // data size (the reader then takes the rest for a header), overflowed in `fitparser`.
        for bytes in [
            &include_bytes!("../../../fuzz/seeds/fit-header-overflow.fit")[..],
            &include_bytes!("../../../fuzz/seeds/fit-overrun-header.fit")[..],
        ] {
            let mut v = Validator::new(Catalog::standard(), i64::MAX / 4, 0, None);
            let d = decode(bytes, "p", &mut v).expect("a FIT header");
            assert_eq!(d.batch.samples.len() + d.batch.refused, d.batch.items);
            assert!(d.batch.refused >= 1);
        }
    }

    #[test]
    fn compressed_timestamps_follow_the_last_full_one() {
        let last_s = 1_700_000_000i64;
        let low = |s: i64| (s - FIT_EPOCH_S) & 0xFFFF;
        assert_eq!(expand_timestamp_16(last_s * 1000, low(last_s + 300)), (last_s + 300) * 1000);
        assert_eq!(expand_timestamp_16(last_s * 1000 + 999, low(last_s)), last_s * 1000);
        // Past a wrap of the low 16 bits.
        assert_eq!(expand_timestamp_16(last_s * 1000, low(last_s + 65_000)), (last_s + 65_000) * 1000);
        assert_eq!(device_id("garmin", "3 9 x/y"), "garmin-3-9-x-y");
    }
}
