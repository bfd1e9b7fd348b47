//! Read routes: the metric catalog, patients, latest values and series queries.

use std::fmt::Write as _;
use std::time::Instant;

use axum::Json;
use axum::extract::State;

use crate::api::extract::{Path, Query};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vitals_core::time::{format_time, parse_time, write_time};
use vitals_core::{Catalog, DeviceId, DurationMs, MetricId, PatientId};
use vitals_query::{Agg, QueryResult, SeriesQuery};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;

pub async fn list_metrics(State(app): State<AppState>) -> Json<serde_json::Value> {
    let metrics: Vec<_> = app
        .catalog
        .all()
        .map(|(_, m)| {
            serde_json::json!({
                "code": m.code, "name": m.name, "unit": m.unit,
                "units_accepted": m.unit_aliases().collect::<Vec<_>>(),
                "min": m.min, "max": m.max, "loinc": m.loinc,
                "aggregation": m.aggregation, "resolution": 10f64.powi(-i32::from(m.scale)),
            })
        })
        .collect();
    Json(serde_json::json!({ "metrics": metrics }))
}

fn patient_id(app: &AppState, raw: &str) -> Result<PatientId, ApiError> {
    let p = PatientId::new(raw).map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient id {raw:?} {e}")))?;
    if !app.store.has_patient(&p) {
        return Err(ApiError::new(Code::UnknownPatient, format!("no data for patient {raw:?}")));
    }
    Ok(p)
}

fn metric_id(app: &AppState, code: &str) -> Result<MetricId, ApiError> {
    app.catalog
        .id(code)
        .ok_or_else(|| ApiError::new(Code::UnknownMetric, format!("unknown metric {code:?}; see GET /api/v1/metrics")))
}

/// `GET /api/v1/patients/{patient}/latest`: the newest reading of each metric, and which
/// seizure detector watches the patient (`combined`, `autonomic`, or null: none enabled, or
/// no signal it reads).
pub async fn latest(
    State(app): State<AppState>,
    Path(patient): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = patient_id(&app, &patient)?;
    let latest = app.store.latest(&p);
    let now_ms = app.clock.now_ms();
    // Which seizure detector watches the patient, by the signals their device sends.
    let newest = |codes: &[&str]| {
        latest.iter().filter(|l| codes.contains(&app.catalog.get(l.metric).code)).map(|l| l.time_ms).max()
    };
    let seizure_watch = app.config.alerting.seizure.enabled.then(|| {
        crate::alerting::seizure_watch::Watch::of(
            newest(&["acceleration_x", "acceleration_y", "acceleration_z"]),
            newest(&vitals_rules::autonomic::METRICS),
            now_ms,
        )
    });
    let metrics: Vec<_> = latest
        .into_iter()
        .map(|l| {
            let m = app.catalog.get(l.metric);
            serde_json::json!({
                "metric": m.code, "unit": m.unit, "time": format_time(l.time_ms), "value": l.value,
                "device": l.device.map(|d| d.to_string()),
            })
        })
        .collect();
    let now = format_time(now_ms);
    Ok(Json(serde_json::json!({
        "patient": p.to_string(), "metrics": metrics, "now": now, "seizure_watch": seizure_watch.flatten(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct EventParams {
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
}

/// `GET /api/v1/patients/{patient}/events?from=&to=&kind=`: workouts, sleep, treatments...
pub async fn events(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    Query(q): Query<EventParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = PatientId::new(&patient)
        .map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient {patient:?} {e}")))?;
    let bad = |m: String| ApiError::new(Code::InvalidQuery, m);
    let from = q.from.as_deref().map(parse_time).transpose().map_err(|e| bad(format!("from: {e}")))?.unwrap_or(0);
    let to = q.to.as_deref().map(parse_time).transpose().map_err(|e| bad(format!("to: {e}")))?.unwrap_or(i64::MAX);
    let events: Vec<serde_json::Value> = app
        .events
        .query(p.as_str(), from, to, q.kind.as_deref())
        .into_iter()
        .map(|e| {
            serde_json::json!({"id": e.id, "kind": e.kind, "start": format_time(e.start_ms), "end": format_time(e.end_ms),
                               "source": e.source, "attributes": e.attributes})
        })
        .collect();
    Ok(Json(serde_json::json!({ "patient": p.to_string(), "events": events })))
}

#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    from: Option<String>,
    to: Option<String>,
    device: Option<String>,
    every: Option<String>,
    agg: Option<String>,
    /// `device` adds each raw point's device.
    include: Option<String>,
    /// `rfc3339` (default) or `ms`.
    time_format: Option<String>,
}

/// How the client wants times written.
#[derive(Clone, Copy, PartialEq)]
enum TimeFormat {
    Rfc3339,
    Ms,
}

impl TimeFormat {
    fn write(self, out: &mut String, t: i64) {
        match self {
            TimeFormat::Rfc3339 => write_time(out, t),
            TimeFormat::Ms => {
                let _ = write!(out, "{t}");
            }
        }
    }
}

/// A parsed series request (shared with the CLI's local mode).
pub struct ParsedSeries {
    pub query: SeriesQuery,
    pub with_device: bool,
    time_format: TimeFormat,
}

impl ParsedSeries {
    /// A request with RFC 3339 times.
    pub fn new(query: SeriesQuery, with_device: bool) -> Self {
        Self { query, with_device, time_format: TimeFormat::Rfc3339 }
    }
}

pub fn parse_series_params(
    app: &AppState,
    patient: PatientId,
    metric: MetricId,
    p: &SeriesParams,
) -> Result<ParsedSeries, ApiError> {
    let bad = |m: String| ApiError::new(Code::InvalidQuery, m);
    let now = app.clock.now_ms();
    let from = match p.from.as_deref() {
        Some(s) => parse_time(s).map_err(|e| bad(format!("from: {e}")))?,
        None => 0,
    };
    let to = match p.to.as_deref() {
        Some(s) => parse_time(s).map_err(|e| bad(format!("to: {e}")))?,
        None => now + app.config.ingest.max_future.as_ms() + 1,
    };
    if from >= to {
        return Err(bad("from must be before to".into()));
    }
    let device = match p.device.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(DeviceId::new(d).map_err(|e| bad(format!("device {d:?} {e}")))?),
        None => None,
    };
    let every_ms = match p.every.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<DurationMs>().map_err(|e| bad(format!("every: {e}")))?.as_ms()),
        None => None,
    };
    let aggs = match p.agg.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            if every_ms.is_none() {
                return Err(bad("agg needs every= (the bucket width)".into()));
            }
            s.split(',').map(str::parse::<Agg>).collect::<Result<Vec<_>, _>>().map_err(bad)?
        }
        None => vec![Agg::Mean],
    };
    let with_device = match p.include.as_deref() {
        None | Some("") => false,
        Some("device") => true,
        Some(other) => return Err(bad(format!("include={other:?}: only include=device is supported"))),
    };
    let time_format = match p.time_format.as_deref() {
        None | Some("rfc3339") => TimeFormat::Rfc3339,
        Some("ms") => TimeFormat::Ms,
        Some(other) => return Err(bad(format!("time_format={other:?}: use rfc3339 or ms"))),
    };
    Ok(ParsedSeries {
        query: SeriesQuery { patient, metric, device, from, to, every_ms, aggs },
        with_device,
        time_format,
    })
}

pub async fn series(
    State(app): State<AppState>,
    Path((patient, metric)): Path<(String, String)>,
    Query(params): Query<SeriesParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let metric = metric_id(&app, &metric)?;
    let patient = patient_id(&app, &patient)?;
    let parsed = parse_series_params(&app, patient, metric, &params)?;
    let store = app.store.clone();
    let q = parsed.query.clone();
    let result =
        tokio::task::spawn_blocking(move || vitals_query::run(&store, &q)).await.map_err(ApiError::internal)??;
    let csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    let response = if csv {
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], render_csv(&parsed, &result)).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], render_json(app.catalog, &parsed, &result)).into_response()
    };
    app.telemetry.query_latency.observe(started.elapsed().as_secs_f64());
    Ok(response)
}

/// Renders the envelope `{"patient", "metric", "unit", "points": [...]}` without building
/// an intermediate JSON tree (responses can hold millions of points).
pub fn render_json(catalog: &Catalog, parsed: &ParsedSeries, result: &QueryResult) -> String {
    let q = &parsed.query;
    let m = catalog.get(q.metric);
    let mut out = String::with_capacity(64 + points_len(result) * 48);
    let _ = write!(
        out,
        "{{\"patient\":{},\"metric\":{},\"unit\":{},",
        json_str(q.patient.as_str()),
        json_str(m.code),
        json_str(m.unit)
    );
    if let Some(e) = q.every_ms {
        let _ = write!(out, "\"every\":{},", json_str(&DurationMs(e).to_string()));
    }
    out.push_str("\"points\":[");
    let tf = parsed.time_format;
    let time = |out: &mut String, t: i64| {
        if tf == TimeFormat::Ms {
            let _ = write!(out, "{t}");
        } else {
            out.push('"');
            tf.write(out, t);
            out.push('"');
        }
    };
    match result {
        QueryResult::Raw(points) => {
            for (i, p) in points.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"time\":");
                time(&mut out, p.time_ms);
                out.push_str(",\"value\":");
                push_num(&mut out, p.value);
                if parsed.with_device {
                    match &p.device {
                        Some(d) => {
                            let _ = write!(out, ",\"device\":{}", json_str(d.as_str()));
                        }
                        None => out.push_str(",\"device\":null"),
                    }
                }
                out.push('}');
            }
        }
        QueryResult::Buckets(buckets) => {
            for (i, b) in buckets.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"time\":");
                time(&mut out, b.time_ms);
                for (a, v) in q.aggs.iter().zip(&b.values) {
                    let _ = write!(out, ",\"{}\":", a.as_str());
                    push_num(&mut out, *v);
                }
                out.push('}');
            }
        }
    }
    out.push_str("]}");
    out
}

pub fn render_csv(parsed: &ParsedSeries, result: &QueryResult) -> String {
    let mut out = String::with_capacity(32 + points_len(result) * 32);
    let tf = parsed.time_format;
    match result {
        QueryResult::Raw(points) => {
            out.push_str(if parsed.with_device { "time,value,device\n" } else { "time,value\n" });
            for p in points {
                tf.write(&mut out, p.time_ms);
                out.push(',');
                push_num(&mut out, p.value);
                if parsed.with_device {
                    out.push(',');
                    out.push_str(p.device.as_ref().map(|d| d.as_str()).unwrap_or(""));
                }
                out.push('\n');
            }
        }
        QueryResult::Buckets(buckets) => {
            out.push_str("time");
            for a in &parsed.query.aggs {
                out.push(',');
                out.push_str(a.as_str());
            }
            out.push('\n');
            for b in buckets {
                tf.write(&mut out, b.time_ms);
                for v in &b.values {
                    out.push(',');
                    push_num(&mut out, *v);
                }
                out.push('\n');
            }
        }
    }
    out
}

fn points_len(r: &QueryResult) -> usize {
    match r {
        QueryResult::Raw(p) => p.len(),
        QueryResult::Buckets(b) => b.len(),
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Numbers print as the shortest exact decimal; integers without a fraction.
fn push_num(out: &mut String, v: f64) {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}
