//! The endpoints the dashboard reads: the patients overview with sparklines, a patient's
//! charts (buckets sized to the screen), glucose summaries and live updates (server-sent
//! events).

use axum::Extension;
use axum::Json;
use axum::extract::State;

use crate::api::extract::Path;
use serde_json::{Value, json};
use vitals_core::time::format_time;
use vitals_query::glucose;

use crate::app::AppState;
use crate::auth::Principal;

/// A patient is stale when nothing arrived for this long.
const STALE_MS: i64 = 3_600_000;

/// The metrics a patient's 24-hour sparkline can show, in order of preference.
const SPARK_METRICS: &[&str] = &["heart_rate", "blood_glucose", "spo2", "skin_temperature", "respiratory_rate"];

/// The hourly means of the last 24 hours of `metric` (hour-aligned, so the rollups answer).
fn spark(
    store: &vitals_storage::Store,
    patient: &vitals_core::PatientId,
    (code, metric): (&str, vitals_core::MetricId),
    now: i64,
) -> Value {
    const HOUR: i64 = 3_600_000;
    let from = now.div_euclid(HOUR) * HOUR - 23 * HOUR;
    let q = vitals_query::SeriesQuery {
        patient: patient.clone(),
        metric,
        device: None,
        from,
        to: now + 1,
        every_ms: Some(HOUR),
        aggs: vec![vitals_query::Agg::Mean],
    };
    // A sparkline that cannot be read is left empty rather than failing the whole overview.
    let (t, v): (Vec<i64>, Vec<f64>) = match vitals_query::run(store, &q) {
        Ok(vitals_query::QueryResult::Buckets(b)) => b.iter().map(|b| (b.time_ms, b.values[0])).unzip(),
        Ok(vitals_query::QueryResult::Raw(_)) => (Vec::new(), Vec::new()),
        Err(e) => {
            tracing::warn!(patient = %patient, metric = code, error = %e, "overview: no sparkline");
            (Vec::new(), Vec::new())
        }
    };
    json!({"metric": code, "from": from, "to": from + 24 * HOUR, "t": t, "v": v})
}

/// `GET /api/v1/overview`: every patient the caller reaches with their latest value of
/// each metric, a 24-hour sparkline, open alerts, device battery and whether they went
/// quiet.
pub(crate) async fn overview(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, crate::api::error::ApiError> {
    let now = app.clock.now_ms();
    let open = app.alerts.active();
    let patients = crate::api::patients_api::reachable(&app, &who)?;
    let out = tokio::task::spawn_blocking(move || -> Vec<Value> {
        patients
            .into_iter()
            .map(|(p, _, seen)| {
                let id = vitals_core::PatientId::new(&p).ok();
                let rows = id.as_ref().map(|id| app.store.latest(id)).unwrap_or_default();
                let latest: serde_json::Map<String, Value> = rows
                    .iter()
                    .map(|l| {
                        let m = app.catalog.get(l.metric);
                        (m.code.to_owned(), json!({"value": l.value, "unit": m.unit, "time": format_time(l.time_ms)}))
                    })
                    .collect();
                let spark_metric = SPARK_METRICS
                    .iter()
                    .find(|c| latest.contains_key(**c))
                    .and_then(|c| Some((*c, app.catalog.id(c)?)));
                let spark = match (id, spark_metric) {
                    (Some(id), Some(m)) => spark(&app.store, &id, m, now),
                    _ => Value::Null,
                };
                let battery = latest.get("battery_level").and_then(|b| b.get("value")).cloned();
                let alerts = open.iter().filter(|a| a.patient == p).count();
                json!({
                    "patient": p, "last_seen": seen.map(format_time),
                    "stale": seen.is_none_or(|t| now - t > STALE_MS),
                    "open_alerts": alerts, "battery": battery, "latest": latest, "spark": spark,
                })
            })
            .collect()
    })
    .await
    .map_err(crate::api::error::ApiError::internal)?;
    Ok(Json(json!({ "patients": out, "now": format_time(now) })))
}

/// `from` and `to` query values (RFC 3339 or ms), `from` before `to`, at most `max_span_ms`
/// apart.
fn time_range(from: &str, to: &str, max_span_ms: i64) -> Result<(i64, i64), crate::api::error::ApiError> {
    use crate::api::error::{ApiError, Code};
    let (from, to) = (crate::api::error::query_time("from", from)?, crate::api::error::query_time("to", to)?);
    if from >= to || to - from > max_span_ms {
        return Err(ApiError::new(Code::InvalidQuery, "from must be before to (and the range not too long)"));
    }
    Ok((from, to))
}

/// Bucket widths a chart uses: round numbers, so whole hours can be answered from rollups.
const NICE_MS: &[i64] =
    &[1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000];

/// The bucket width that puts at most `width` buckets into `range_ms`.
pub(crate) fn bucket_ms(range_ms: i64, width: i64) -> i64 {
    let raw = (range_ms + width - 1) / width.max(1);
    match NICE_MS.iter().find(|n| **n >= raw) {
        Some(n) => *n,
        None => (raw + 3_599_999) / 3_600_000 * 3_600_000,
    }
}

/// `every`, or whole hours (at least one) when a bucketing of `points` raw points over the
/// range would read more than `budget`.
fn hours_when_too_dense(every: i64, points: u64, budget: u64) -> i64 {
    const HOUR: i64 = 3_600_000;
    if every % HOUR == 0 || points <= budget { every } else { (every + HOUR - 1) / HOUR * HOUR }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ChartParams {
    /// Comma-separated metric codes.
    metrics: String,
    from: String,
    to: String,
    /// Buckets per series at most (the chart's width in pixels); 10 to 4000.
    width: Option<i64>,
}

/// `GET /api/v1/patients/{patient}/chart?metrics=&from=&to=&width=`: each metric downsampled
/// to the chart's width as columns (`t`, `mean`, `min`, `max`, `count`; ms times, bucket
/// starts), plus the events and alert episodes overlapping the range, for one shared time
/// axis.
pub(crate) async fn chart(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(p): crate::api::extract::Query<ChartParams>,
) -> Result<Json<Value>, crate::api::error::ApiError> {
    use crate::api::error::{ApiError, Code};
    let bad = |m: String| ApiError::new(Code::InvalidQuery, m);
    let (from, to) = time_range(&p.from, &p.to, i64::MAX)?;
    let width = p.width.unwrap_or(1000);
    if !(10..=4000).contains(&width) {
        return Err(bad("width: 10 to 4000".into()));
    }
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let mut metrics = Vec::new();
    for code in p.metrics.split(',').map(str::trim).filter(|c| !c.is_empty()).take(12) {
        let id = app
            .catalog
            .id(code)
            .ok_or_else(|| ApiError::new(Code::UnknownMetric, format!("unknown metric {code:?}")))?;
        metrics.push((code.to_owned(), id));
    }
    if metrics.is_empty() {
        return Err(bad("metrics: one or more metric codes".into()));
    }
    let mut every = bucket_ms(to - from, width);
    let aggs = vec![vitals_query::Agg::Mean, vitals_query::Agg::Min, vitals_query::Agg::Max, vitals_query::Agg::Count];
    let store = app.store.clone();
    let (every, series) = tokio::task::spawn_blocking(move || -> Result<(i64, Vec<Value>), ApiError> {
        // Buckets shorter than an hour are folded from raw points: when that would read too
        // many (a dense signal over weeks), whole hours, which the rollups answer, instead.
        if every % 3_600_000 != 0 {
            let scan = |metric| {
                store.estimate(&vitals_storage::ReadRequest {
                    patient: pid.clone(),
                    metric,
                    device: None,
                    from,
                    to,
                    rollups: false,
                    max_points: 0,
                    sources: false,
                })
            };
            let densest = metrics.iter().map(|(_, m)| scan(*m)).max().unwrap_or(0);
            every = hours_when_too_dense(every, densest, vitals_query::MAX_SCANNED_POINTS as u64);
        }
        let mut out = Vec::new();
        for (code, metric) in metrics {
            // Align to the bucket width so that panning keeps buckets stable.
            let q = vitals_query::SeriesQuery {
                patient: pid.clone(),
                metric,
                device: None,
                from: from.div_euclid(every) * every,
                to,
                every_ms: Some(every),
                aggs: aggs.clone(),
            };
            let result = vitals_query::run(&store, &q)?;
            let buckets = match result {
                vitals_query::QueryResult::Buckets(b) => b,
                vitals_query::QueryResult::Raw(_) => Vec::new(),
            };
            let col = |i: usize| -> Vec<f64> { buckets.iter().map(|b| b.values[i]).collect() };
            let unit = vitals_core::Catalog::standard().get(metric).unit;
            out.push(json!({
                "metric": code, "unit": unit,
                "t": buckets.iter().map(|b| b.time_ms).collect::<Vec<_>>(),
                "mean": col(0), "min": col(1), "max": col(2), "count": col(3),
            }));
        }
        Ok((every, out))
    })
    .await
    .map_err(ApiError::internal)??;
    let events: Vec<Value> = app
        .events
        .query(&patient, from, to, None)
        .into_iter()
        // Alerts come below; a device's description and a Nightscout profile are records,
        // not moments of the patient's day.
        .filter(|e| !matches!(e.kind.as_str(), "alert" | "device_info" | "profile"))
        .map(|e| {
            let name = e.attributes.get("name").and_then(Value::as_str);
            json!({"kind": e.kind, "name": name, "start": e.start_ms, "end": e.end_ms.max(e.start_ms)})
        })
        .collect();
    let alerts: Vec<Value> = app
        .alerts
        .list(Some(&patient), None, i64::MIN, i64::MAX)
        .into_iter()
        .filter(|a| a.start_ms < to && a.end_ms.max(a.fired_ms) >= from)
        .map(|a| {
            json!({"id": a.id, "rule": a.rule, "severity": a.severity, "state": a.state,
                "start": a.start_ms, "end": a.end_ms.max(a.fired_ms), "description": a.description})
        })
        .collect();
    Ok(Json(json!({"patient": patient, "from": from, "to": to, "every_ms": every,
        "series": series, "events": events, "alerts": alerts})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_widths_are_round_and_whole_hours_past_an_hour() {
        assert_eq!(super::bucket_ms(3_600_000, 1000), 5_000, "an hour in 1000 px: 5 s buckets (720)");
        assert_eq!(super::bucket_ms(60_000, 1000), 1_000);
        assert_eq!(super::bucket_ms(86_400_000, 1000), 120_000);
        assert_eq!(super::bucket_ms(365 * 86_400_000, 1000), 9 * 3_600_000, "whole hours: rollups answer");
        assert!(365 * 86_400_000 / super::bucket_ms(365 * 86_400_000, 1000) <= 1000);
    }

    #[test]
    fn sub_hour_buckets_turn_to_whole_hours_when_they_would_read_too_much() {
        // (bucket, raw points in the range, budget, bucket used)
        let cases = [
            (1_800_000, 10, 100, 1_800_000),
            (1_800_000, 101, 100, 3_600_000),
            (300_000, u64::MAX, 100, 3_600_000),
            (7_200_000, u64::MAX, 100, 7_200_000),
        ];
        for (every, points, budget, want) in cases {
            assert_eq!(super::hours_when_too_dense(every, points, budget), want, "{every} {points}");
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct GlucoseParams {
    from: String,
    to: String,
    /// The viewer's offset from UTC in minutes (the daily profile is by local time of day).
    tz_offset_min: Option<i64>,
    /// Where that offset changes within the range (daylight saving): `ms:minutes,...`.
    tz_changes: Option<String>,
}

/// The viewer's time zone over the range: `tz_offset_min` and the `tz_changes` after it.
fn offsets(p: &GlucoseParams) -> Result<glucose::Offsets, crate::api::error::ApiError> {
    use crate::api::error::{ApiError, Code};
    glucose::Offsets::parse(p.tz_offset_min, p.tz_changes.as_deref())
        .map_err(|e| ApiError::new(Code::InvalidQuery, e.to_string()))
}

/// `GET /api/v1/patients/{patient}/glucose?from=&to=&tz_offset_min=&tz_changes=`: the consensus metrics
/// (time in ranges, mean, CV, GMI), the variability and risk metrics (SD, MAGE, MODD,
/// CONGA, LBGI/HBGI, GRI, J-index, on local days), the daily profile (percentiles per 30 min of the day)
/// and the 2-day moving average (hourly), over the CGM readings (`blood_glucose`, mg/dL).
pub(crate) async fn glucose(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(p): crate::api::extract::Query<GlucoseParams>,
) -> Result<Json<Value>, crate::api::error::ApiError> {
    use crate::api::error::ApiError;
    let (from, to) = time_range(&p.from, &p.to, 400 * 86_400_000)?;
    let offsets = offsets(&p)?;
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let metric = app.catalog.id("blood_glucose").ok_or_else(|| ApiError::internal("no blood_glucose metric"))?;
    let window = 2 * 86_400_000;
    let store = app.store.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        // The moving average needs the two days before `from` too.
        let read = store
            .read(&vitals_storage::ReadRequest {
                patient: pid,
                metric,
                device: None,
                from: from - window,
                to,
                rollups: false,
                // 400 days of a CGM every minute is 0.6 M readings.
                max_points: vitals_query::MAX_RAW_POINTS,
                sources: false,
            })?;
        let mut all: Vec<(i64, f64)> =
            read.raw.iter().flat_map(|s| s.times.iter().copied().zip(s.values.iter().copied())).collect();
        all.sort_by_key(|r| r.0);
        let inside: Vec<(i64, f64)> = all.iter().copied().filter(|r| r.0 >= from).collect();
        let values: Vec<f64> = inside.iter().map(|r| r.1).collect();
        let step = 3_600_000;
        let ma = glucose::moving_average(&all, from.div_euclid(step) * step + step, to, step, window);
        Ok(json!({
            "unit": "mg/dL", "from": from, "to": to,
            "target": [70, 180],
            "summary": glucose::summary(&values),
            "variability": glucose::variability(&inside, &offsets),
            "agp": glucose::agp(&inside, &offsets),
            "moving_average": {"t": ma.iter().map(|m| m.0).collect::<Vec<_>>(), "mean": ma.iter().map(|m| m.1).collect::<Vec<_>>()},
        }))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(out))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct LiveParams {
    events: Option<u64>,
}

/// `GET /api/v1/patients/{patient}/live`: server-sent events, one `latest` event (the time
/// of the newest reading, ms) whenever new data of the patient has become durable, checked
/// every second, plus a comment every 15 s so proxies keep the stream open. The dashboard
/// refetches what it shows on each event. `?events=N` ends the stream after N events.
pub(crate) async fn live(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(q): crate::api::extract::Query<LiveParams>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    crate::api::error::ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let newest = |app: &AppState, pid: &vitals_core::PatientId| app.store.latest(pid).iter().map(|l| l.time_ms).max();
    let start = newest(&app, &pid);
    let limit = q.events.unwrap_or(u64::MAX);
    let stream = futures_util::stream::unfold((app, pid, start, 0u64), move |(app, pid, seen, sent)| async move {
        if sent >= limit {
            return None;
        }
        if sent > 0 {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = newest(&app, &pid);
                if now > seen {
                    let ev = Event::default().event("latest").data(now.unwrap_or_default().to_string());
                    return Some((Ok(ev), (app, pid, now, sent + 1)));
                }
            }
        }
        // The first event says where the stream starts.
        let ev = Event::default().event("latest").data(seen.unwrap_or_default().to_string());
        Some((Ok(ev), (app, pid, seen, 1)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}
