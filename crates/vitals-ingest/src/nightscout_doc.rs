//! What Nightscout answers for a stored document, in API v1's and v3's forms: the fields
//! the uploader sent with `_id` and the fields Nightscout adds where the sender left them
//! out; identifiers, deletion (`isValid: false`), the collections of API v3 and where their
//! documents live; the trend arrow for readings that came without one.

use serde_json::{Value, json};
use vitals_core::Event;
use vitals_core::time::format_time;

use crate::nightscout::{ACTIVITY, DEVICESTATUS, ENTRIES, FOOD};

/// A document's identifier: the sender's `identifier`, else its id without the prefix the
/// decoder gave it (`treatment-`, `profile-`, `devicestatus-`; entries keep theirs).
pub fn identifier(e: &Event) -> String {
    if let Some(id) = e.attributes.get("identifier").and_then(Value::as_str) {
        return id.to_owned();
    }
    let prefix = match Collection::ALL.iter().find(|c| c.kind() == e.kind) {
        Some(c) => c.prefix(),
        None if e.kind == ACTIVITY => "activity-",
        None => "",
    };
    e.id.strip_prefix(prefix).unwrap_or(&e.id).to_owned()
}

/// Whether a document is live (not deleted: `isValid` is not `false`).
pub fn is_valid(e: &Event) -> bool {
    e.attributes.get("isValid") != Some(&Value::Bool(false))
}

/// A stored document as Nightscout returns it: what the uploader sent, with `_id` (the
/// sender's, else ours) and the fields Nightscout adds where the sender left them out.
pub fn ns_doc(e: Event) -> Value {
    let (t, ms) = (json!(format_time(e.start_ms)), json!(e.start_ms));
    match e.kind.as_str() {
        ENTRIES => stored_doc(e, "", [("date", ms), ("dateString", t.clone()), ("sysTime", t), ("type", json!("sgv"))]),
        DEVICESTATUS => stored_doc(e, "devicestatus-", [("created_at", t), ("mills", ms)]),
        "profile" => stored_doc(e, "profile-", [("startDate", t), ("mills", ms)]),
        ACTIVITY => stored_doc(e, "activity-", [("created_at", t), ("timeStamp", ms)]),
        FOOD => stored_doc(e, "food-", [("type", json!("food"))]),
        _ => stored_doc(e, "treatment-", [("created_at", t), ("eventType", json!("Note"))]),
    }
}

/// A reading that came another way in (an app, a file) as Nightscout shows an entry of
/// type `ty` (`sgv`, `mbg`); a sensor reading gets the arrow of its rate of change since
/// `prev` (the reading before, if at most 15 minutes before).
pub fn reading_doc(ty: &str, (time_ms, value): (i64, f64), device: Option<&str>, prev: Option<(i64, f64)>) -> Value {
    let mut doc = json!({"_id": format!("{ty}-{time_ms}"), "type": ty, ty: num(value), "date": time_ms,
        "dateString": format_time(time_ms), "sysTime": format_time(time_ms), "device": device});
    if ty == "sgv" {
        let prev = prev.filter(|(t, _)| time_ms - t <= 15 * 60_000 && *t < time_ms);
        doc["direction"] = json!(direction(prev.map(|(t, v)| (value - v) / ((time_ms - t) as f64 / 60_000.0))));
    }
    doc
}

/// Glucose as clients expect it: an integer when it is one (`118`, not `118.0`).
pub fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 { json!(v as i64) } else { json!(v) }
}

/// A stored document (a treatment, a profile) as Nightscout returns it: what was sent,
/// with `_id` (the event's id without `prefix`) and `defaults` where the sender left them out.
fn stored_doc<const N: usize>(e: Event, prefix: &str, defaults: [(&str, Value); N]) -> Value {
    let mut doc: serde_json::Map<String, Value> = e.attributes.into_iter().collect();
    if !doc.contains_key("_id") {
        doc.insert("_id".into(), json!(e.id.strip_prefix(prefix).unwrap_or(&e.id)));
    }
    for (k, v) in defaults {
        doc.entry(k).or_insert(v);
    }
    Value::Object(doc)
}

/// Nightscout's trend arrow for a rate of change in mg/dL per minute.
pub fn direction(rate: Option<f64>) -> &'static str {
    match rate {
        None => "NONE",
        Some(r) if !r.is_finite() => "NOT COMPUTABLE",
        Some(r) if r > 3.0 => "DoubleUp",
        Some(r) if r > 2.0 => "SingleUp",
        Some(r) if r > 1.0 => "FortyFiveUp",
        Some(r) if r >= -1.0 => "Flat",
        Some(r) if r >= -2.0 => "FortyFiveDown",
        Some(r) if r >= -3.0 => "SingleDown",
        Some(_) => "DoubleDown",
    }
}

/// A v3 collection and where its documents live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Collection {
    Entries,
    DeviceStatus,
    Treatments,
    Profile,
    Food,
}

impl Collection {
    pub fn parse(s: &str) -> Option<Collection> {
        match s {
            "entries" => Some(Collection::Entries),
            "devicestatus" => Some(Collection::DeviceStatus),
            "treatments" => Some(Collection::Treatments),
            "profile" => Some(Collection::Profile),
            "food" => Some(Collection::Food),
            _ => None,
        }
    }

    pub const ALL: [Collection; 5] =
        [Collection::DeviceStatus, Collection::Entries, Collection::Food, Collection::Profile, Collection::Treatments];

    pub fn name(self) -> &'static str {
        match self {
            Collection::Entries => "entries",
            Collection::DeviceStatus => "devicestatus",
            Collection::Treatments => "treatments",
            Collection::Profile => "profile",
            Collection::Food => "food",
        }
    }

    /// The kind of the events holding its documents.
    pub fn kind(self) -> &'static str {
        match self {
            Collection::Entries => ENTRIES,
            Collection::DeviceStatus => DEVICESTATUS,
            Collection::Treatments => "treatment",
            Collection::Profile => "profile",
            Collection::Food => FOOD,
        }
    }

    /// The prefix the decoder puts before an identifier to make the document's id.
    pub fn prefix(self) -> &'static str {
        match self {
            Collection::Entries => "",
            Collection::DeviceStatus => "devicestatus-",
            Collection::Treatments => "treatment-",
            Collection::Profile => "profile-",
            Collection::Food => "food-",
        }
    }

    /// Kept in the document store (on disk) rather than among the events in memory.
    pub fn is_document(self) -> bool {
        matches!(self, Collection::Entries | Collection::DeviceStatus | Collection::Food)
    }
}

/// A document as v3 answers it: the v1 form with `identifier`, `date` (ms), `srvCreated`
/// and `srvModified`.
pub fn v3_doc(e: Event) -> Value {
    let (ident, start, modified) = (identifier(&e), e.start_ms, e.changed_ms());
    let mut doc = ns_doc(e);
    if let Value::Object(o) = &mut doc {
        o.insert("identifier".into(), json!(ident));
        o.entry("date").or_insert(json!(start));
        o.entry("srvModified").or_insert(json!(modified));
        o.entry("srvCreated").or_insert(json!(modified));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: &str, id: &str, attributes: Value) -> Event {
        Event {
            id: id.into(),
            patient: "p".into(),
            kind: kind.into(),
            start_ms: 1_763_780_400_000,
            end_ms: 1_763_780_400_000,
            source: "nightscout".into(),
            attributes: attributes.as_object().cloned().unwrap_or_default().into_iter().collect(),
        }
    }

    #[test]
    fn documents_answer_as_sent_with_what_nightscout_adds() {
        let t = doc("treatment", "treatment-abc", json!({"eventType": "Meal Bolus", "carbs": 30}));
        assert_eq!(identifier(&t), "abc");
        let v1 = ns_doc(t.clone());
        assert_eq!(
            (&v1["_id"], &v1["carbs"], &v1["created_at"]),
            (&json!("abc"), &json!(30), &json!("2025-11-22T03:00:00.000Z"))
        );
        let mut sent = t.clone();
        sent.attributes.insert("created_at".into(), json!("2025-11-22T04:00:00+01:00"));
        assert_eq!(ns_doc(sent)["created_at"], json!("2025-11-22T04:00:00+01:00"), "the sender's form is kept");
        let v3 = v3_doc(t.clone());
        assert_eq!(
            (&v3["identifier"], &v3["date"], &v3["srvModified"]),
            (&json!("abc"), &json!(1_763_780_400_000i64), &json!(1_763_780_400_000i64))
        );
        let own = doc(ENTRIES, "sgv-1", json!({"identifier": "u-1", "sgv": 100}));
        assert_eq!(identifier(&own), "u-1", "the sender's identifier wins");
        assert_eq!(ns_doc(own)["type"], json!("sgv"));
        assert!(is_valid(&t));
        assert!(!is_valid(&doc(DEVICESTATUS, "devicestatus-x", json!({"isValid": false}))));
        assert_eq!(identifier(&doc(DEVICESTATUS, "devicestatus-x", json!({}))), "x");
        assert_eq!(Collection::parse("settings"), None);
        let sgv = reading_doc("sgv", (600_000, 130.0), Some("band"), Some((300_000, 118.0)));
        assert_eq!(
            (&sgv["sgv"], &sgv["direction"], &sgv["_id"]),
            (&json!(130), &json!("SingleUp"), &json!("sgv-600000"))
        );
        assert_eq!(reading_doc("sgv", (2_000_000, 130.0), None, Some((300_000, 118.0)))["direction"], json!("NONE"));
        assert!(reading_doc("mbg", (1, 99.5), None, None).get("direction").is_none());
        assert!(Collection::ALL.iter().all(|c| Collection::parse(c.name()) == Some(*c)));
    }

    #[test]
    fn directions_follow_nightscout_thresholds() {
        let cases = [
            (None, "NONE"),
            (Some(3.5), "DoubleUp"),
            (Some(2.5), "SingleUp"),
            (Some(1.5), "FortyFiveUp"),
            (Some(0.0), "Flat"),
            (Some(-1.5), "FortyFiveDown"),
            (Some(-2.5), "SingleDown"),
            (Some(-4.0), "DoubleDown"),
        ];
        for (rate, want) in cases {
            assert_eq!(direction(rate), want, "{rate:?}");
        }
    }
}
