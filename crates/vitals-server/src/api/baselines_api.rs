//! `GET /api/v1/patients/{patient}/baselines?to=&days=&tz_offset_min=`: a patient's
//! nights, personal baselines and anomalies (docs/alerting.md), computed from the stored
//! readings by `vitals_rules` at each request: the same nights and the same anomalies
//! whatever order the readings came in. `GET .../profile?metrics=&to=&tz_offset_min=`: the
//! usual band of circadian metrics hour by hour (`vitals_rules::baseline::by_hour`), which
//! the patient view draws behind each series.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use vitals_rules::anomaly::{self, NightValues};
use vitals_rules::baseline::{self, Signal};

use crate::api::error::{ApiError, Code};
use crate::api::extract::Path;
use crate::app::AppState;

use crate::nights::DAY;

#[derive(Debug, serde::Deserialize)]
pub(crate) struct BaselineParams {
    /// The end of the period (default: now); its local day is the last night shown.
    to: Option<String>,
    /// Nights shown (7 to 365, default 60).
    days: Option<i64>,
    /// The patient's offset from UTC in minutes (nights are local).
    tz_offset_min: Option<i64>,
}

/// The end of the period (`to`, default now) and the patient's offset from UTC in ms.
fn end_and_offset(app: &AppState, to: Option<&str>, tz_offset_min: Option<i64>) -> Result<(i64, i64), ApiError> {
    let to = match to {
        Some(t) => crate::api::error::query_time("to", t)?,
        None => app.clock.now_ms(),
    };
    let offset = vitals_query::glucose::Offsets::parse(tz_offset_min, None)
        .map_err(|e| ApiError::new(Code::InvalidQuery, e.to_string()))?
        .base_ms;
    Ok((to, offset))
}

/// The date of a local day number.
fn date(day: i64) -> String {
    let (y, m, d) = vitals_core::time::civil_day(day * DAY);
    format!("{y:04}-{m:02}-{d:02}")
}

pub(crate) async fn baselines(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(p): crate::api::extract::Query<BaselineParams>,
) -> Result<Json<Value>, ApiError> {
    let (to, offset) = end_and_offset(&app, p.to.as_deref(), p.tz_offset_min)?;
    let days = p.days.unwrap_or(60);
    if !(7..=365).contains(&days) {
        return Err(ApiError::new(Code::InvalidQuery, "days: between 7 and 365"));
    }
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let cohorts = app.cohorts.clone();
    let config = app.config.alerting.anomaly.for_patient(&|c| cohorts.contains(c, &patient));
    let last_day = (to + offset).div_euclid(DAY);
    let first_day = last_day - days + 1;
    let (store, events) = (app.store.clone(), app.events.clone());
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let from_day = first_day - i64::from(config.baseline.window_days) - 1;
        let nights = crate::nights::read(&store, &events, &pid, from_day, last_day, offset)?;
        Ok(answer(&nights, &config, first_day, last_day))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(out))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ProfileParams {
    /// Comma-separated metrics (default: every one with a profile).
    metrics: Option<String>,
    /// The profile is of the days before this one's local day (default: now).
    to: Option<String>,
    tz_offset_min: Option<i64>,
}

pub(crate) async fn profile(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    crate::api::extract::Query(p): crate::api::extract::Query<ProfileParams>,
) -> Result<Json<Value>, ApiError> {
    let (to, offset) = end_and_offset(&app, p.to.as_deref(), p.tz_offset_min)?;
    let mut wanted = Vec::new();
    for m in p.metrics.as_deref().map_or_else(Vec::new, |s| s.split(',').map(str::trim).collect()) {
        match baseline::PROFILED.iter().find(|(code, _)| *code == m) {
            Some(x) => wanted.push(*x),
            None => {
                let known: Vec<&str> = baseline::PROFILED.iter().map(|(c, _)| *c).collect();
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("metrics: {m:?} has no hourly profile (these do: {})", known.join(", ")),
                ));
            }
        }
    }
    if wanted.is_empty() {
        wanted = baseline::PROFILED.to_vec();
    }
    let pid = crate::api::patients_api::pseudonym(&patient)?;
    let cohorts = app.cohorts.clone();
    let config = app.config.alerting.anomaly.for_patient(&|c| cohorts.contains(c, &patient));
    let day = (to + offset).div_euclid(DAY);
    let store = app.store.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let k = config.sensitivity.thresholds().rise_z;
        let from = (day - i64::from(config.baseline.window_days)) * DAY - offset;
        let mut profiles = Vec::new();
        for (metric, floor) in wanted {
            let Some(id) = vitals_core::Catalog::standard().id(metric) else { continue };
            let q = vitals_query::SeriesQuery {
                patient: pid.clone(),
                metric: id,
                device: None,
                from,
                to: day * DAY - offset,
                every_ms: Some(3_600_000),
                aggs: vec![vitals_query::Agg::Mean],
            };
            let hourly: Vec<(i64, f64)> = match vitals_query::run(&store, &q).map_err(ApiError::internal)? {
                vitals_query::QueryResult::Buckets(b) => {
                    b.iter().filter_map(|b| Some((b.time_ms + offset, *b.values.first()?))).collect()
                }
                _ => Vec::new(),
            };
            let hours: Vec<Value> = baseline::by_hour(&hourly, day, &config.baseline, floor)
                .iter()
                .enumerate()
                .map(|(h, b)| {
                    b.map_or(Value::Null, |b| {
                        let (low, high) = b.band(k);
                        json!({"hour": h, "median": b.median, "spread": b.spread, "low": low, "high": high, "days": b.days})
                    })
                })
                .collect();
            let unit = vitals_core::Catalog::standard().get(id).unit;
            profiles.push(json!({"metric": metric, "unit": unit, "hours": hours}));
        }
        Ok(json!({
            "before": date(day),
            "window_days": config.baseline.window_days,
            "days_needed": config.baseline.min_days,
            "band_spreads": k,
            "profiles": profiles,
        }))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(out))
}

/// The answer: every signal's nights with its baseline band, each night's state, the
/// anomalies touching the period and whether the detector is still learning.
fn answer(
    nights: &std::collections::BTreeMap<i64, NightValues>,
    config: &anomaly::AnomalyConfig,
    first_day: i64,
    last_day: i64,
) -> Value {
    let t = config.sensitivity.thresholds();
    let window = i64::from(config.baseline.window_days);
    let mut signals = Vec::new();
    for signal in Signal::ALL {
        let history: Vec<(i64, f64)> = nights.iter().filter_map(|(d, v)| v[signal.index()].map(|x| (*d, x))).collect();
        let shown: Vec<Value> = (first_day..=last_day)
            .filter_map(|day| {
                let value = nights.get(&day).and_then(|v| v[signal.index()]);
                let b = baseline::baseline(signal, &history, day, &config.baseline);
                if value.is_none() && b.is_none() {
                    return None;
                }
                Some(json!({
                    "day": date(day),
                    "value": value,
                    "baseline": b.map(|b| {
                        let (low, high) = b.band(t.rise_z);
                        json!({"median": b.median, "spread": b.spread, "low": low, "high": high, "nights": b.days})
                    }),
                    "z": value.zip(b).map(|(v, b)| b.adverse_z(signal, v)),
                }))
            })
            .collect();
        if !shown.is_empty() {
            signals.push(json!({"signal": signal.code(), "unit": signal.unit(), "nights": shown}));
        }
    }
    let states: Vec<Value> = (first_day..=last_day)
        .map(|day| {
            let n = anomaly::score_night(nights, day, config);
            json!({"day": date(day), "state": n.state})
        })
        .collect();
    let found = anomaly::detect(nights, config);
    let recommendations = vitals_rules::recommendation::recommend(nights, &found, last_day);
    let anomalies: Vec<Value> = found
        .into_iter()
        .filter(|a| a.cleared_day.is_none_or(|c| c >= first_day) && a.start_day <= last_day)
        .map(|a| {
            json!({
                "start": date(a.start_day), "fired": date(a.fired_day), "cleared": a.cleared_day.map(date),
                "explanation": a.explanation.text, "signals": a.explanation.signals,
            })
        })
        .collect();
    // Learning until the next night would have a resting-rate baseline.
    let rhr: Vec<(i64, f64)> = nights.iter().filter_map(|(d, v)| v[0].map(|x| (*d, x))).collect();
    let next = last_day + 1;
    let learning = baseline::baseline(Signal::RestingHeartRate, &rhr, next, &config.baseline).is_none();
    let rhr_nights = rhr.iter().filter(|(d, _)| (next - window..next).contains(d)).count();
    json!({
        "from": date(first_day),
        "to": date(last_day),
        "sensitivity": config.sensitivity,
        "thresholds": t,
        "window_days": config.baseline.window_days,
        "status": if learning { "cold_start" } else { "watching" },
        "nights_with_resting_rate": rhr_nights,
        "nights_needed": config.baseline.min_days,
        "signals": signals,
        "nights": states,
        "anomalies": anomalies,
        "recommendations": recommendations,
    })
}
