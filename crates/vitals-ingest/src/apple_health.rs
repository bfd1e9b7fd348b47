//! Apple Health's full export (`export.xml` inside `export.zip`), often gigabytes: read as
//! a stream of `<Record .../>` elements, handing samples on in chunks so memory stays flat.
//!
//! Quantity records map onto the catalog (`HKQuantityTypeIdentifierHeartRate` ->
//! `heart_rate`...), at their `startDate`, with the `sourceName` as device. Percentages
//! (`unit="%"`) are fractions in the export and become percent. Category records (sleep),
//! workouts and types the catalog lacks are counted per type as not stored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::BufRead;

use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::{Reader, XmlVersion};
use vitals_core::{Event, RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;
use crate::health_auto_export::{device_from_source, parse_date};

/// Why the document could not be read on (items before the error were handed on).
#[derive(Debug, thiserror::Error)]
pub enum AppleHealthError<E> {
    #[error("XML error at byte {offset}: {message}")]
    Xml { offset: u64, message: String },
    #[error("not an Apple Health export: the root element is {0:?}, not HealthData")]
    NotAnExport(String),
    #[error(transparent)]
    Sink(E),
}

/// Totals of a stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub records: u64,
    /// Record or element types not stored, with counts.
    pub not_stored: BTreeMap<String, u64>,
}

fn metric_of(hk_type: &str) -> Option<(&'static str, bool)> {
    // (metric, value is a fraction to be turned into percent)
    let t = hk_type.strip_prefix("HKQuantityTypeIdentifier")?;
    Some(match t {
        "HeartRate" => ("heart_rate", false),
        "RestingHeartRate" => ("resting_heart_rate", false),
        "HeartRateVariabilitySDNN" => ("hrv_sdnn", false),
        "StepCount" => ("step_count", false),
        "ActiveEnergyBurned" => ("active_energy", false),
        "BasalEnergyBurned" => ("resting_energy", false),
        "DistanceWalkingRunning" => ("walking_running_distance", false),
        "FlightsClimbed" => ("flights_climbed", false),
        "BloodGlucose" => ("blood_glucose", false),
        "OxygenSaturation" => ("spo2", true),
        "RespiratoryRate" => ("respiratory_rate", false),
        "BodyTemperature" => ("body_temperature", false),
        "BloodPressureSystolic" => ("blood_pressure_systolic", false),
        "BloodPressureDiastolic" => ("blood_pressure_diastolic", false),
        "WalkingSpeed" => ("walking_speed", false),
        "WalkingStepLength" => ("walking_step_length", false),
        "WalkingAsymmetryPercentage" => ("walking_asymmetry", true),
        "WalkingDoubleSupportPercentage" => ("walking_double_support", true),
        "HeadphoneAudioExposure" => ("headphone_audio_exposure", false),
        "BodyMass" => ("body_mass", false),
        _ => return None,
    })
}

fn attrs(e: &BytesStart<'_>) -> BTreeMap<String, String> {
    e.attributes()
        .flatten()
        .filter_map(|a| {
            let k = a.key.into_inner().to_owned();
            let v = a.normalized_value(XmlVersion::Implicit1_0).ok()?.into_owned();
            Some((k, v))
        })
        .collect()
}

/// The event of a sleep record or a workout element, if it is one.
fn event_of(name: &str, a: &BTreeMap<String, String>, patient: &str) -> Option<Event> {
    let start = a.get("startDate").and_then(|d| parse_date(d))?;
    let end = a.get("endDate").and_then(|d| parse_date(d)).unwrap_or(start).max(start);
    let source = a.get("sourceName").cloned().unwrap_or_default();
    let (kind, extra, attributes): (&str, String, BTreeMap<String, serde_json::Value>) = if name == "Workout" {
        let activity = a
            .get("workoutActivityType")
            .map(|t| t.trim_start_matches("HKWorkoutActivityType").to_owned())
            .unwrap_or_default();
        let keep = [
            "workoutActivityType",
            "duration",
            "durationUnit",
            "totalDistance",
            "totalDistanceUnit",
            "totalEnergyBurned",
            "totalEnergyBurnedUnit",
            "sourceName",
        ];
        let mut attrs: BTreeMap<String, serde_json::Value> = a
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        attrs.insert("activity".into(), serde_json::Value::String(activity.clone()));
        ("workout", format!("{source}|{activity}"), attrs)
    } else if a.get("type").map(String::as_str) == Some("HKCategoryTypeIdentifierSleepAnalysis") {
        let stage =
            a.get("value").map(|v| v.trim_start_matches("HKCategoryValueSleepAnalysis").to_owned()).unwrap_or_default();
        let kind = if stage == "InBed" { "in_bed" } else { "sleep" };
        let mut attrs = BTreeMap::new();
        attrs.insert("stage".to_owned(), serde_json::Value::String(stage.clone()));
        attrs.insert("sourceName".to_owned(), serde_json::Value::String(source.clone()));
        (kind, format!("{source}|{stage}"), attrs)
    } else {
        return None;
    };
    Some(Event {
        id: Event::content_id(patient, kind, start, end, &extra),
        patient: patient.to_owned(),
        kind: kind.to_owned(),
        start_ms: start,
        end_ms: end,
        source: "apple_health".into(),
        attributes,
    })
}

/// Streams an export; `sink` gets batches of about `chunk` items, the events (sleep,
/// workouts) read meanwhile, and the bytes read so far.
pub fn stream<R: BufRead, E>(
    input: R,
    patient: &str,
    validator: &mut Validator<'_>,
    chunk: usize,
    mut sink: impl FnMut(Batch, Vec<Event>, u64) -> Result<(), E>,
) -> Result<Summary, AppleHealthError<E>> {
    let mut events: Vec<Event> = Vec::new();
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut summary = Summary::default();
    let mut batch = Batch::default();
    let mut root_seen = false;
    loop {
        let offset = reader.buffer_position();
        let event =
            reader.read_event_into(&mut buf).map_err(|e| AppleHealthError::Xml { offset, message: e.to_string() })?;
        match event {
            XmlEvent::Eof => break,
            XmlEvent::Start(e) | XmlEvent::Empty(e) => {
                let name = e.name().into_inner().to_owned();
                if !root_seen {
                    root_seen = true;
                    if name != "HealthData" {
                        return Err(AppleHealthError::NotAnExport(name));
                    }
                    continue;
                }
                match name.as_str() {
                    "Record" => {
                        let index = summary.records as usize;
                        summary.records += 1;
                        let a = attrs(&e);
                        let ty = a.get("type").cloned().unwrap_or_default();
                        let Some((metric, fraction)) = metric_of(&ty) else {
                            match event_of("Record", &a, patient) {
                                Some(e) => events.push(e),
                                None => *summary.not_stored.entry(ty).or_default() += 1,
                            }
                            continue;
                        };
                        batch.items += 1;
                        let at = format!("record {} (byte {offset}, {ty})", index + 1);
                        let Some(time) = a.get("startDate").and_then(|d| parse_date(d)) else {
                            batch.reject(Rejection::new(
                                index,
                                RejectCode::InvalidTime,
                                format!("{at}: no readable startDate"),
                            ));
                            continue;
                        };
                        let Some(mut value) = a.get("value").and_then(|v| v.trim().parse::<f64>().ok()) else {
                            batch.reject(Rejection::new(
                                index,
                                RejectCode::InvalidField,
                                format!("{at}: value is not a number"),
                            ));
                            continue;
                        };
                        let mut unit = a.get("unit").map(String::as_str);
                        if fraction && unit == Some("%") {
                            value *= 100.0;
                            unit = None;
                        }
                        let device = a.get("sourceName").and_then(|s| device_from_source(s));
                        let raw = RawSample {
                            patient: Cow::Borrowed(patient),
                            metric: Cow::Borrowed(metric),
                            time: RawTime::Ms(time),
                            value,
                            unit: unit.map(Cow::Borrowed),
                            device: device.map(Cow::Owned),
                            id: None,
                        };
                        match validator.validate(index, &raw) {
                            Ok(s) => batch.samples.push(s),
                            Err(r) => batch.reject(Rejection { message: format!("{at}: {}", r.message), ..r }),
                        }
                        if batch.items + events.len() >= chunk {
                            sink(std::mem::take(&mut batch), std::mem::take(&mut events), reader.buffer_position())
                                .map_err(AppleHealthError::Sink)?;
                        }
                    }
                    "Workout" => match event_of("Workout", &attrs(&e), patient) {
                        Some(ev) => events.push(ev),
                        None => *summary.not_stored.entry(name).or_default() += 1,
                    },
                    "ActivitySummary" | "ClinicalRecord" | "Audiogram" | "VisionPrescription" => {
                        *summary.not_stored.entry(name).or_default() += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        buf.clear();
    }
    if !root_seen {
        return Err(AppleHealthError::NotAnExport(String::new()));
    }
    sink(batch, events, reader.buffer_position()).map_err(AppleHealthError::Sink)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_709_700_000_000;

    const EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>
]>
<HealthData locale="en_US">
 <ExportDate value="2024-03-06 10:00:00 -0800"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth=""/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alex&#8217;s Apple Watch" sourceVersion="10.3" device="&lt;&lt;HKDevice: 0x2&gt;&gt;" unit="count/min" creationDate="2024-03-05 07:41:12 -0800" startDate="2024-03-05 07:41:00 -0800" endDate="2024-03-05 07:41:00 -0800" value="63">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="1"/>
 </Record>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Watch" unit="%" startDate="2024-03-05 07:42:00 -0800" endDate="2024-03-05 07:42:00 -0800" value="0.97"/>
 <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Meter" unit="mmol&lt;180.1558800000541&gt;/L" startDate="2024-03-05 07:45:00 -0800" endDate="2024-03-05 07:45:00 -0800" value="6.1"/>
 <Record type="HKQuantityTypeIdentifierActiveEnergyBurned" sourceName="iPhone" unit="Cal" startDate="2024-03-05 07:45:00 -0800" endDate="2024-03-05 07:46:00 -0800" value="1.5"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="iPhone" unit="count" startDate="not a date" endDate="x" value="12"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Watch" startDate="2024-03-04 23:00:00 -0800" endDate="2024-03-05 06:00:00 -0800" value="HKCategoryValueSleepAnalysisAsleepCore"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="29" startDate="2024-03-05 17:02:43 -0800" endDate="2024-03-05 17:31:53 -0800"/>
</HealthData>
"#;

    fn run(xml: &str, chunk: usize) -> (Vec<Batch>, Result<Summary, AppleHealthError<()>>) {
        run_with_events(xml, chunk).0
    }

    #[allow(clippy::type_complexity)] // reason: a test helper returning everything it saw
    fn run_with_events(xml: &str, chunk: usize) -> ((Vec<Batch>, Result<Summary, AppleHealthError<()>>), Vec<Event>) {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        let mut batches = Vec::new();
        let mut events = Vec::new();
        let r = stream(xml.as_bytes(), "p-1", &mut v, chunk, |b, e, _| {
            batches.push(b);
            events.extend(e);
            Ok(())
        });
        ((batches, r), events)
    }

    #[test]
    fn records_stream_out_in_chunks_with_units_and_fractions() {
        let ((batches, summary), events) = run_with_events(EXPORT, 2);
        let summary = summary.expect("reads");
        assert_eq!(summary.records, 6);
        assert!(summary.not_stored.is_empty(), "{:?}", summary.not_stored);
        let kinds: Vec<(&str, Option<&serde_json::Value>)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.attributes.get("stage").or(e.attributes.get("activity"))))
            .collect();
        assert_eq!(
            kinds,
            vec![("sleep", Some(&serde_json::json!("AsleepCore"))), ("workout", Some(&serde_json::json!("Walking")))]
        );
        assert_eq!(events[0].end_ms - events[0].start_ms, 7 * 3_600_000);
        assert!(batches.len() >= 2, "chunked");
        let samples: Vec<_> = batches.iter().flat_map(|b| b.samples.iter()).collect();
        let got: Vec<(&str, f64)> = samples.iter().map(|s| (Catalog::standard().get(s.metric).code, s.value)).collect();
        assert_eq!(got, vec![("heart_rate", 63.0), ("spo2", 97.0), ("blood_glucose", 109.9), ("active_energy", 1.5)]);
        assert_eq!(samples[0].device.as_ref().map(|d| d.as_str()), Some("alex-s-apple-watch"));
        assert_eq!(samples[0].time_ms, 1_709_653_260_000);
        let rejections: Vec<_> = batches.iter().flat_map(|b| b.rejections.iter()).collect();
        assert_eq!(rejections.len(), 1);
        assert_eq!((rejections[0].index, rejections[0].code), (4, RejectCode::InvalidTime));
    }

    #[test]
    fn other_documents_and_broken_xml_are_refused() {
        assert!(matches!(run("<html></html>", 10).1, Err(AppleHealthError::NotAnExport(_))));
        assert!(matches!(run("", 10).1, Err(AppleHealthError::NotAnExport(_))));
        let cut = &EXPORT[..EXPORT.find("<Record type=\"HKQuantityTypeIdentifierBloodGlucose\"").expect("record") + 30];
        let (batches, r) = run(cut, 10);
        assert!(matches!(r, Err(AppleHealthError::Xml { .. })), "{r:?}");
        assert!(batches.is_empty() || batches.iter().all(|b| b.items <= 10));
    }

    proptest::proptest! {
        #[test]
        fn streamer_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
            let _ = stream(&bytes[..], "p", &mut v, 3, |b, _, _| -> Result<(), ()> {
                assert_eq!(b.items, b.samples.len() + b.rejections.len());
                Ok(())
            });
        }
    }
}
