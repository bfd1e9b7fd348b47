//! The canonical sample and the validation that turns decoded input into one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::catalog::{Catalog, MetricId};
use crate::id::{DeviceId, PatientId, SampleId};
use crate::source::Source;
use crate::time::{self, MAX_TIME_MS};

/// One reading, canonical: validated ids, a catalog metric, UTC milliseconds, a value in the
/// metric's canonical unit rounded to its stored resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub patient: PatientId,
    pub metric: MetricId,
    pub time_ms: i64,
    pub value: f64,
    pub device: Option<DeviceId>,
    pub id: Option<SampleId>,
    /// The adapter it came in through.
    pub source: Source,
}

/// A time as it arrived on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum RawTime<'a> {
    Ms(i64),
    Text(Cow<'a, str>),
    /// A JSON number that was not an integer (some clients send float milliseconds).
    FloatMs(f64),
}

/// A decoded but not yet validated sample; strings borrow from the request body where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample<'a> {
    pub patient: Cow<'a, str>,
    pub metric: Cow<'a, str>,
    pub time: RawTime<'a>,
    pub value: f64,
    pub unit: Option<Cow<'a, str>>,
    pub device: Option<Cow<'a, str>>,
    pub id: Option<Cow<'a, str>>,
}

/// Stable rejection codes: part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The item is not valid syntax (a bad JSON line, a CSV row with the wrong column count).
    Malformed,
    MissingField,
    InvalidField,
    InvalidPatient,
    InvalidDevice,
    InvalidSampleId,
    UnknownMetric,
    UnknownUnit,
    InvalidTime,
    TimeInFuture,
    TimeTooOld,
    ValueNotFinite,
    ValueOutOfRange,
    /// The sender's token is bound to another patient.
    PatientNotAllowed,
}

impl RejectCode {
    pub const ALL: [RejectCode; 14] = [
        Self::Malformed,
        Self::MissingField,
        Self::InvalidField,
        Self::InvalidPatient,
        Self::InvalidDevice,
        Self::InvalidSampleId,
        Self::UnknownMetric,
        Self::UnknownUnit,
        Self::InvalidTime,
        Self::TimeInFuture,
        Self::TimeTooOld,
        Self::ValueNotFinite,
        Self::ValueOutOfRange,
        Self::PatientNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidPatient => "invalid_patient",
            Self::InvalidDevice => "invalid_device",
            Self::InvalidSampleId => "invalid_sample_id",
            Self::UnknownMetric => "unknown_metric",
            Self::UnknownUnit => "unknown_unit",
            Self::InvalidTime => "invalid_time",
            Self::TimeInFuture => "time_in_future",
            Self::TimeTooOld => "time_too_old",
            Self::ValueNotFinite => "value_not_finite",
            Self::ValueOutOfRange => "value_out_of_range",
            Self::PatientNotAllowed => "patient_not_allowed",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one item of a batch was refused; `index` is its position in the batch (0-based item
/// for JSON arrays, 0-based line for NDJSON and CSV data rows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub code: RejectCode,
    pub message: String,
}

/// The longest message of a rejection, in characters: messages quote the input, and input
/// is untrusted, so what they echo is cut (with `…`).
pub const MAX_MESSAGE_CHARS: usize = 200;

impl Rejection {
    pub fn new(index: usize, code: RejectCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
            message.truncate(cut);
            message.push('…');
        }
        Self { index, code, message }
    }
}

/// Turns raw samples into canonical ones against the catalog and a fixed "now".
///
/// One validator serves one batch; it interns ids so a batch of one patient's readings
/// allocates the patient id once.
#[derive(Debug)]
pub struct Validator<'c> {
    catalog: &'c Catalog,
    now_ms: i64,
    max_future_ms: i64,
    max_age_ms: Option<i64>,
    patients: HashMap<String, PatientId>,
    devices: HashMap<String, DeviceId>,
    only_patient: Option<PatientId>,
    source: Source,
}

impl<'c> Validator<'c> {
    pub fn new(catalog: &'c Catalog, now_ms: i64, max_future_ms: i64, max_age_ms: Option<i64>) -> Self {
        Self {
            catalog,
            now_ms,
            max_future_ms,
            max_age_ms,
            patients: HashMap::new(),
            devices: HashMap::new(),
            only_patient: None,
            source: Source::Unknown,
        }
    }

    /// Marks every sample this validator passes as having come in through `source`.
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Refuses samples of any other patient (a sender whose token is bound to one patient).
    pub fn only_patient(mut self, patient: Option<PatientId>) -> Self {
        self.only_patient = patient;
        self
    }

    pub fn catalog(&self) -> &'c Catalog {
        self.catalog
    }

    /// Validates one raw sample; `index` is only used to label the rejection.
    pub fn validate(&mut self, index: usize, raw: &RawSample<'_>) -> Result<Sample, Rejection> {
        let reject = |code, message: String| Rejection::new(index, code, message);
        let metric_id = self
            .catalog
            .id(&raw.metric)
            .ok_or_else(|| reject(RejectCode::UnknownMetric, format!("unknown metric {:?}", raw.metric)))?;
        let metric = self.catalog.get(metric_id);
        let patient = intern(&mut self.patients, &raw.patient, PatientId::new)
            .map_err(|e| reject(RejectCode::InvalidPatient, format!("patient {:?} {e}", raw.patient)))?;
        if let Some(only) = &self.only_patient
            && *only != patient
        {
            return Err(reject(
                RejectCode::PatientNotAllowed,
                format!("this token may only write for patient {only}, not {patient}"),
            ));
        }
        let device = match raw.device.as_deref() {
            None | Some("") => None,
            Some(d) => Some(
                intern(&mut self.devices, d, DeviceId::new)
                    .map_err(|e| reject(RejectCode::InvalidDevice, format!("device {d:?} {e}")))?,
            ),
        };
        let id = match raw.id.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                SampleId::new(s).map_err(|e| reject(RejectCode::InvalidSampleId, format!("sample id {s:?} {e}")))?,
            ),
        };
        let time_ms = match &raw.time {
            RawTime::Ms(ms) => *ms,
            RawTime::FloatMs(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9e15 => *f as i64,
            RawTime::FloatMs(f) if f.is_finite() && f.abs() < 9e15 => f.round() as i64,
            RawTime::FloatMs(f) => return Err(reject(RejectCode::InvalidTime, format!("time {f} is not a timestamp"))),
            RawTime::Text(s) => time::parse_time(s).map_err(|e| reject(RejectCode::InvalidTime, e.to_string()))?,
        };
        if !(0..=MAX_TIME_MS).contains(&time_ms) {
            return Err(reject(RejectCode::InvalidTime, format!("time {time_ms} ms is outside 1970..9999")));
        }
        if time_ms > self.now_ms.saturating_add(self.max_future_ms) {
            return Err(reject(
                RejectCode::TimeInFuture,
                format!(
                    "time {} is {} s ahead of the server clock (at most {} s allowed)",
                    time::format_time(time_ms),
                    (time_ms - self.now_ms) / 1000,
                    self.max_future_ms / 1000
                ),
            ));
        }
        if let Some(max_age) = self.max_age_ms
            && time_ms < self.now_ms.saturating_sub(max_age)
        {
            return Err(reject(
                RejectCode::TimeTooOld,
                format!("time {} is older than the accepted age of {} s", time::format_time(time_ms), max_age / 1000),
            ));
        }
        if !raw.value.is_finite() {
            return Err(reject(RejectCode::ValueNotFinite, format!("value {} is not a finite number", raw.value)));
        }
        let value = match raw.unit.as_deref() {
            None | Some("") => raw.value,
            Some(u) => match metric.conversion(u) {
                Some(c) => c.apply(raw.value),
                None => {
                    let accepted: Vec<&str> = metric.unit_aliases().collect();
                    return Err(reject(
                        RejectCode::UnknownUnit,
                        format!("unit {u:?} is not accepted for {}; accepted: {}", metric.code, accepted.join(", ")),
                    ));
                }
            },
        };
        if !(metric.min..=metric.max).contains(&value) {
            return Err(reject(
                RejectCode::ValueOutOfRange,
                format!(
                    "{} {} {} is outside the plausible range {}..{}",
                    metric.code, value, metric.unit, metric.min, metric.max
                ),
            ));
        }
        Ok(Sample {
            patient,
            metric: metric_id,
            time_ms,
            value: metric.quantize(value),
            device,
            id,
            source: self.source,
        })
    }
}

fn intern<T: Clone, E>(
    cache: &mut HashMap<String, T>,
    s: &str,
    make: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, E> {
    if let Some(v) = cache.get(s) {
        return Ok(v.clone());
    }
    let v = make(s)?;
    if cache.len() < 4096 {
        cache.insert(s.to_owned(), v.clone());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_780_400_000;

    fn raw(metric: &'static str, time: RawTime<'static>, value: f64, unit: Option<&'static str>) -> RawSample<'static> {
        RawSample {
            patient: "p-1".into(),
            metric: metric.into(),
            time,
            value,
            unit: unit.map(Cow::from),
            device: None,
            id: None,
        }
    }

    #[test]
    fn every_rejection_code_reachable_by_validation_has_a_case() {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, Some(86_400_000))
            .only_patient(Some(PatientId::new("p-1").expect("id")));
        let ok = RawTime::Ms(NOW);
        let mut other = raw("heart_rate", ok.clone(), 70.0, None);
        other.patient = "p-2".into();
        let mut bad_patient = raw("heart_rate", ok.clone(), 70.0, None);
        bad_patient.patient = "a b".into();
        let mut bad_device = raw("heart_rate", ok.clone(), 70.0, None);
        bad_device.device = Some("x/y".into());
        let mut bad_id = raw("heart_rate", ok.clone(), 70.0, None);
        bad_id.id = Some("".repeat(0).into());
        let mut long_id = raw("heart_rate", ok.clone(), 70.0, None);
        long_id.id = Some("i".repeat(65).into());
        let cases = [
            (other, RejectCode::PatientNotAllowed),
            (bad_patient, RejectCode::InvalidPatient),
            (bad_device, RejectCode::InvalidDevice),
            (long_id, RejectCode::InvalidSampleId),
            (raw("heart_beat", ok.clone(), 70.0, None), RejectCode::UnknownMetric),
            (raw("heart_rate", ok.clone(), 70.0, Some("furlongs")), RejectCode::UnknownUnit),
            (raw("heart_rate", RawTime::Text("soon".into()), 70.0, None), RejectCode::InvalidTime),
            (raw("heart_rate", RawTime::Ms(-1), 70.0, None), RejectCode::InvalidTime),
            (raw("heart_rate", RawTime::Ms(NOW + 3_600_000), 70.0, None), RejectCode::TimeInFuture),
            (raw("heart_rate", RawTime::Ms(NOW - 2 * 86_400_000), 70.0, None), RejectCode::TimeTooOld),
            (raw("heart_rate", ok.clone(), f64::NAN, None), RejectCode::ValueNotFinite),
            (raw("heart_rate", ok.clone(), f64::INFINITY, None), RejectCode::ValueNotFinite),
            (raw("heart_rate", ok.clone(), 900.0, None), RejectCode::ValueOutOfRange),
            (raw("blood_glucose", ok.clone(), 5.5, None), RejectCode::ValueOutOfRange),
        ];
        for (i, (r, code)) in cases.iter().enumerate() {
            let got = v.validate(i, r).expect_err("must reject");
            assert_eq!(got.code, *code, "case {i}: {}", got.message);
            assert_eq!(got.index, i);
            assert!(!got.message.is_empty());
        }
        // An empty sample id means "none", not an error.
        assert!(v.validate(0, &bad_id).is_ok());
    }

    #[test]
    fn valid_samples_are_converted_and_quantized() {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        let s = v
            .validate(0, &raw("blood_glucose", RawTime::Text("2025-11-22T03:00:00Z".into()), 5.5, Some("mmol/L")))
            .expect("valid");
        assert_eq!(s.time_ms, NOW);
        assert_eq!(s.value, 99.1);
        // Years-old history is accepted by default.
        assert!(v.validate(0, &raw("heart_rate", RawTime::Ms(86_400_000), 60.0, None)).is_ok());
        assert!(v.validate(0, &raw("heart_rate", RawTime::FloatMs(NOW as f64 + 0.4), 60.0, None)).is_ok());
    }
}
