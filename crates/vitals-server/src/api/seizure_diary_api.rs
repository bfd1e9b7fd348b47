//! `GET /api/v1/patients/{patient}/seizures?from=&to=&format=json|csv`: the seizure diary.
//! One entry per seizure: what the detector raised (alerts of `seizure-detector`, with who
//! acknowledged them and when) and what was recorded (events of kind `seizure`: a carer's
//! or the patient's own entry, a device's label), matched when they overlap (within two
//! minutes): `confirmed` (detected and recorded), `detected` (an alert no one recorded),
//! `recorded` (the detector missed it or was not watching). CSV for a spreadsheet or the
//! clinic's records; the dashboard's diary view prints it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vitals_alerts::Alert;
use vitals_core::Event;
use vitals_core::time::format_time;

use crate::api::error::{ApiError, Code};
use crate::api::extract::Path;
use crate::app::AppState;

/// Alerts and records this close are one seizure.
const MATCH_SLACK_MS: i64 = 120_000;
/// The longest period one diary covers.
const MAX_SPAN_MS: i64 = 400 * 86_400_000;

#[derive(Debug, serde::Deserialize)]
pub(crate) struct DiaryParams {
    from: String,
    to: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The diary's columns (CSV header, JSON keys).
const COLUMNS: [&str; 12] = [
    "start",
    "end",
    "duration_s",
    "status",
    "alert",
    "detected_at",
    "alert_state",
    "acknowledged_by",
    "acknowledged_at",
    "record",
    "recorded_by",
    "note",
];

/// One seizure of the diary.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    start_ms: i64,
    end_ms: i64,
    alert: Option<Alert>,
    event: Option<Event>,
}

impl Entry {
    fn status(&self) -> &'static str {
        match (&self.alert, &self.event) {
            (Some(_), Some(_)) => "confirmed",
            (Some(_), None) => "detected",
            _ => "recorded",
        }
    }

    /// What the record says about the seizure (its name, type or note, as sent).
    fn note(&self) -> String {
        let Some(e) = &self.event else { return String::new() };
        ["name", "type", "note", "notes"]
            .iter()
            .filter_map(|k| e.attributes.get(*k))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The entry's values, in the order of [`COLUMNS`].
    fn fields(&self) -> [(&'static str, Value); 12] {
        let a = self.alert.as_ref();
        let e = self.event.as_ref();
        [
            ("start", json!(format_time(self.start_ms))),
            ("end", json!(format_time(self.end_ms))),
            ("duration_s", json!((self.end_ms - self.start_ms) / 1000)),
            ("status", json!(self.status())),
            ("alert", json!(a.map(|a| a.id.clone()))),
            ("detected_at", json!(a.map(|a| format_time(a.fired_ms)))),
            ("alert_state", json!(a.map(|a| a.state))),
            ("acknowledged_by", json!(a.and_then(|a| a.acked_by.clone()))),
            ("acknowledged_at", json!(a.and_then(|a| a.acked_ms).map(format_time))),
            ("record", json!(e.map(|e| e.id.clone()))),
            ("recorded_by", json!(e.map(|e| e.source.clone()))),
            ("note", json!(self.note())),
        ]
    }
}

/// The diary's entries, oldest first: each alert with the records it overlaps, then the
/// records no alert matched.
fn entries(alerts: Vec<Alert>, events: Vec<Event>) -> Vec<Entry> {
    let mut events: Vec<Option<Event>> = events.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for a in alerts {
        let end = a.cleared_ms.unwrap_or(a.end_ms).max(a.fired_ms);
        let overlaps = |e: &Event| e.start_ms <= end + MATCH_SLACK_MS && e.end_ms + MATCH_SLACK_MS >= a.start_ms;
        let matched = events.iter_mut().find(|e| e.as_ref().is_some_and(overlaps)).and_then(Option::take);
        let (start, stop) = match &matched {
            Some(e) => (a.start_ms.min(e.start_ms), end.max(e.end_ms)),
            None => (a.start_ms, end),
        };
        out.push(Entry { start_ms: start, end_ms: stop, alert: Some(a), event: matched });
    }
    out.extend(events.into_iter().flatten().map(|e| Entry {
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        alert: None,
        event: Some(e),
    }));
    out.sort_by_key(|e| e.start_ms);
    out
}

/// A CSV field, quoted when it must be, and kept from being read as a formula by a
/// spreadsheet (a leading `=`, `+`, `-`, `@` gets a `'`).
fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s = if !v.is_number() && s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

pub(crate) async fn diary(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(p): crate::api::extract::Query<DiaryParams>,
) -> Result<Response, ApiError> {
    let (from, to) = (crate::api::error::query_time("from", &p.from)?, crate::api::error::query_time("to", &p.to)?);
    if from >= to || to - from > MAX_SPAN_MS {
        return Err(ApiError::new(Code::InvalidQuery, "from must be before to, at most 400 days apart"));
    }
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::new(Code::InvalidQuery, "format: json or csv")),
    };
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let rule = vitals_rules::seizure::DETECTOR_RULE;
    // Alerts that began in the period (a list by firing time, widened by the slack).
    let alerts: Vec<Alert> = app
        .alerts
        .list(Some(pid.as_str()), None, from - MATCH_SLACK_MS, to)
        .into_iter()
        .filter(|a| a.rule == rule && a.start_ms < to && a.cleared_ms.unwrap_or(a.end_ms) >= from)
        .collect();
    let events = app.events.query(pid.as_str(), from, to, Some("seizure"));
    let list = entries(alerts, events);
    if csv {
        let mut body = COLUMNS.join(",");
        body.push_str("\r\n");
        for e in &list {
            body.push_str(&e.fields().iter().map(|f| csv_field(&f.1)).collect::<Vec<_>>().join(","));
            body.push_str("\r\n");
        }
        let name = format!("attachment; filename=\"seizures-{}.csv\"", pid.as_str());
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)],
            body,
        )
            .into_response());
    }
    let count = |s: &str| list.iter().filter(|e| e.status() == s).count();
    let rows: Vec<Value> =
        list.iter().map(|e| Value::Object(e.fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect())).collect();
    Ok(axum::Json(json!({
        "patient": pid.as_str(), "from": format_time(from), "to": format_time(to),
        "counts": {"confirmed": count("confirmed"), "detected": count("detected"), "recorded": count("recorded")},
        "entries": rows,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, start: i64, cleared: i64) -> Alert {
        Alert {
            id: id.into(),
            start_ms: start,
            fired_ms: start + 10_000,
            end_ms: cleared,
            cleared_ms: Some(cleared),
            ..Alert::default()
        }
    }

    fn event(id: &str, start: i64, end: i64) -> Event {
        Event {
            id: id.into(),
            patient: "p".into(),
            kind: "seizure".into(),
            start_ms: start,
            end_ms: end,
            source: "diary".into(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn alerts_and_records_that_overlap_are_one_confirmed_seizure() {
        let m = 60_000;
        let list = entries(
            vec![alert("a1", 10 * m, 12 * m), alert("a2", 100 * m, 101 * m)],
            vec![event("e1", 11 * m, 13 * m), event("e2", 50 * m, 51 * m)],
        );
        let got: Vec<(&str, i64, i64)> = list.iter().map(|e| (e.status(), e.start_ms / m, e.end_ms / m)).collect();
        assert_eq!(got, vec![("confirmed", 10, 13), ("recorded", 50, 51), ("detected", 100, 101)]);
    }

    #[test]
    fn every_entry_has_the_columns_in_order() {
        let e = Entry { start_ms: 0, end_ms: 1000, alert: None, event: Some(event("e", 0, 1000)) };
        assert_eq!(e.fields().map(|f| f.0), COLUMNS);
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field(&json!("plain")), "plain");
        assert_eq!(csv_field(&json!("a, \"b\"")), "\"a, \"\"b\"\"\"");
        assert_eq!(csv_field(&json!("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field(&json!(-5)), "-5");
        assert_eq!(csv_field(&Value::Null), "");
    }
}
