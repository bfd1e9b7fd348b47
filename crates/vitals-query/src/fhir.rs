//! FHIR R4 resources from stored samples, for the tools clinicians and researchers use:
//! `Observation` (coded with LOINC where the catalog has a code, always with Vitals' own
//! metric code, values in UCUM units), `Patient` (the pseudonym only: never identity) and
//! `Device`; gathered as a `Bundle` or written as bulk NDJSON, one file per resource type,
//! as FHIR Bulk Data `$export` does.
//!
//! Ids are deterministic, so exporting the same data twice gives the same resources, and
//! a receiver can update instead of duplicating.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vitals_core::time::format_time;
use vitals_core::{Catalog, DeviceId, MetricId, PatientId};

/// The code system of Vitals' metric codes (`heart_rate`, `eda`, ...).
pub const METRIC_SYSTEM: &str = "urn:vitals:metric";
/// The identifier system of patient pseudonyms.
pub const PSEUDONYM_SYSTEM: &str = "urn:vitals:pseudonym";
/// The identifier system of device ids.
pub const DEVICE_SYSTEM: &str = "urn:vitals:device";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A FHIR id (`[A-Za-z0-9-.]{1,64}`) for a Vitals id: the id itself when it fits (most do:
/// ours allow `_` and, for devices, `:` besides), else a digest of it.
pub fn fhir_id(id: &str) -> String {
    let fits =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if fits { id.to_owned() } else { format!("h-{}", &hex::encode(Sha256::digest(id.as_bytes()))[..40]) }
}

/// The Patient resource of a pseudonym.
pub fn patient(p: &PatientId) -> Value {
    json!({
        "resourceType": "Patient",
        "id": fhir_id(p.as_str()),
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": p.as_str()}],
        "active": true,
    })
}

/// The Device resource of a device id, linked to the patient wearing it.
pub fn device(d: &DeviceId, p: &PatientId) -> Value {
    json!({
        "resourceType": "Device",
        "id": fhir_id(&format!("{p}.{d}")),
        "identifier": [{"system": DEVICE_SYSTEM, "value": d.as_str()}],
        "status": "active",
        "deviceName": [{"name": d.as_str(), "type": "user-friendly-name"}],
        "patient": {"reference": format!("Patient/{}", fhir_id(p.as_str()))},
    })
}

/// The observation category of a metric (vital signs, activity or laboratory), if any.
fn category(code: &str) -> Option<(&'static str, &'static str)> {
    match code {
        "heart_rate"
        | "heart_rate_min"
        | "heart_rate_max"
        | "resting_heart_rate"
        | "rr_interval"
        | "hrv_sdnn"
        | "skin_temperature"
        | "body_temperature"
        | "spo2"
        | "respiratory_rate"
        | "blood_pressure_systolic"
        | "blood_pressure_diastolic"
        | "body_mass"
        | "eda"
        | "bvp" => Some(("vital-signs", "Vital Signs")),
        "step_count"
        | "active_energy"
        | "resting_energy"
        | "flights_climbed"
        | "walking_running_distance"
        | "walking_speed"
        | "walking_step_length"
        | "walking_asymmetry"
        | "walking_double_support"
        | "acceleration_x"
        | "acceleration_y"
        | "acceleration_z" => Some(("activity", "Activity")),
        "blood_glucose" | "blood_glucose_meter" => Some(("laboratory", "Laboratory")),
        _ => None,
    }
}

/// One sample as an Observation.
pub fn observation(
    catalog: &Catalog,
    p: &PatientId,
    metric: MetricId,
    device: Option<&DeviceId>,
    time_ms: i64,
    value: f64,
) -> Value {
    let m = catalog.get(metric);
    let key = format!("{p}|{}|{}|{time_ms}", m.code, device.map(DeviceId::as_str).unwrap_or(""));
    let mut coding = Vec::new();
    if let Some(loinc) = m.loinc {
        coding.push(json!({"system": LOINC, "code": loinc, "display": m.name}));
    }
    coding.push(json!({"system": METRIC_SYSTEM, "code": m.code, "display": m.name}));
    let mut o = json!({
        "resourceType": "Observation",
        "id": format!("o-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..40]),
        "status": "final",
        "code": {"coding": coding, "text": m.name},
        "subject": {"reference": format!("Patient/{}", fhir_id(p.as_str()))},
        "effectiveDateTime": format_time(time_ms),
        "valueQuantity": {"value": value, "unit": m.unit, "system": UCUM, "code": m.ucum()},
    });
    if let Some((code, display)) = category(m.code) {
        o["category"] = json!([{"coding": [{"system": CATEGORY, "code": code, "display": display}]}]);
    }
    if let Some(d) = device {
        o["device"] = json!({"reference": format!("Device/{}", fhir_id(&format!("{p}.{d}")))});
    }
    o
}

/// A `collection` Bundle of resources, stamped with `now_ms` (no `total`: FHIR keeps it for
/// search and history bundles).
pub fn bundle(resources: Vec<Value>, now_ms: i64) -> Value {
    let entry: Vec<Value> = resources.into_iter().map(|r| json!({ "resource": r })).collect();
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": format_time(now_ms),
        "entry": entry,
    })
}

/// The output manifest of a bulk export (FHIR Bulk Data's `$export` status answer): one
/// `(resource type, file URL or path, count)` per NDJSON file.
pub fn bulk_manifest(transaction_ms: i64, request: &str, files: &[(&str, String, u64)]) -> Value {
    json!({
        "transactionTime": format_time(transaction_ms),
        "request": request,
        "requiresAccessToken": true,
        "output": files
            .iter()
            .map(|(t, url, count)| json!({"type": t, "url": url, "count": count}))
            .collect::<Vec<_>>(),
        "error": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_fhir_and_stay_distinct() {
        assert_eq!(fhir_id("p-0042.a"), "p-0042.a");
        let a = fhir_id("p_1");
        let b = fhir_id("p-1");
        assert_ne!(a, b, "an underscore is not folded into a dash");
        assert!(a.starts_with("h-") && a.len() <= 64);
        assert!(fhir_id("aa:bb:cc").chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    }

    #[test]
    fn an_observation_carries_loinc_ucum_subject_and_device() {
        let c = Catalog::standard();
        let p = PatientId::new("p-1").expect("id");
        let d = DeviceId::new("watch:01").expect("device");
        let o = observation(c, &p, c.id("heart_rate").expect("m"), Some(&d), 1_763_683_200_000, 61.5);
        assert_eq!(o["code"]["coding"][0]["system"], LOINC);
        assert_eq!(o["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(o["code"]["coding"][1]["code"], "heart_rate");
        assert_eq!(o["valueQuantity"]["code"], "/min");
        assert_eq!(o["valueQuantity"]["value"], 61.5);
        assert_eq!(o["subject"]["reference"], "Patient/p-1");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(o["effectiveDateTime"], "2025-11-21T00:00:00.000Z");
        assert_eq!(o["device"]["reference"], device(&d, &p)["id"].as_str().map(|i| format!("Device/{i}")).expect("id"));
        let again = observation(c, &p, c.id("heart_rate").expect("m"), Some(&d), 1_763_683_200_000, 62.0);
        assert_eq!(o["id"], again["id"], "the id names the sample, not its value");
        // A metric without LOINC code keeps Vitals' code only.
        let e = observation(c, &p, c.id("eda").expect("m"), None, 0, 1.25);
        assert_eq!(e["code"]["coding"].as_array().expect("coding").len(), 1);
        assert_eq!(e["valueQuantity"]["code"], "uS");
    }
}
