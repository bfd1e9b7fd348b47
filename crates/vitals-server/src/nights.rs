//! A patient's nights read from the store: the readings of `vitals_rules::night::METRICS`
//! as 5-minute means (sums for steps), folded into nights by `vitals_rules::night`, and the
//! hours asleep from the patient's sleep events. Shared
//! by the baselines view (`api/baselines_api.rs`) and the anomaly detector of the alerting
//! thread (`alerting/anomaly_watch.rs`), so both see the same nights.

use std::collections::BTreeMap;

use vitals_core::{Catalog, PatientId};
use vitals_query::{Agg, QueryError, QueryResult, SeriesQuery};
use vitals_rules::anomaly::NightValues;
use vitals_rules::night;
use vitals_storage::Store;
use vitals_storage::event_store::EventStore;

pub(crate) const DAY: i64 = vitals_core::time::MS_PER_DAY;
const FIVE_MIN: i64 = 300_000;
const HOUR: i64 = 3_600_000;

/// The nights `[first_day, last_day]` (local day numbers at `offset_ms` from UTC) of
/// `patient`.
pub(crate) fn read(
    store: &Store,
    events: &EventStore,
    patient: &PatientId,
    first_day: i64,
    last_day: i64,
    offset_ms: i64,
) -> Result<BTreeMap<i64, NightValues>, QueryError> {
    // A night begins at noon the day before; steps are the day before's. Read a day at a
    // time, and heart rate and skin temperature only in the hours their nights use, so that
    // a band sending them every second stays far under a query's limit.
    let from = (first_day - 2) * DAY - offset_ms;
    let to = (last_day + 1) * DAY - offset_ms;
    let mut readings: Vec<(&str, i64, f64)> = Vec::new();
    // The UTC days that hold data of each of the patient's series: other days are not read.
    let held = store.series_days(Some(patient));
    for metric in night::METRICS {
        let Some(id) = Catalog::standard().id(metric) else { continue };
        let Some(days) = held.get(&(patient.clone(), id)) else { continue };
        let agg = if metric == "step_count" { Agg::Sum } else { Agg::Mean };
        let hours: &[(i64, i64)] = match metric {
            "heart_rate" => &[(0, 8), (22, 24)],
            "skin_temperature" => &[(0, 6)],
            _ => &[(0, 24)],
        };
        for day in first_day - 2..=last_day {
            for &(h0, h1) in hours {
                let (a, b) = (day * DAY + h0 * HOUR - offset_ms, day * DAY + h1 * HOUR - offset_ms);
                if days.range(a.div_euclid(DAY) * DAY..b).next().is_none() {
                    continue;
                }
                let q = SeriesQuery {
                    patient: patient.clone(),
                    metric: id,
                    device: None,
                    from: a,
                    to: b,
                    every_ms: Some(FIVE_MIN),
                    aggs: vec![agg],
                };
                if let QueryResult::Buckets(buckets) = vitals_query::run(store, &q)? {
                    readings.extend(
                        buckets.iter().filter_map(|b| Some((metric, b.time_ms + offset_ms, *b.values.first()?))),
                    );
                }
            }
        }
    }
    // Sleep from sleep events (Health Auto Export, Apple Health), awake stages left out.
    let asleep: Vec<(i64, i64)> = events
        .query(patient.as_str(), from, to, Some("sleep"))
        .into_iter()
        .filter(|e| {
            let stage = e.attributes.get("stage").or_else(|| e.attributes.get("value"));
            !stage.and_then(|s| s.as_str()).is_some_and(|s| s.to_ascii_lowercase().contains("awake"))
        })
        .map(|e| (e.start_ms + offset_ms, e.end_ms + offset_ms))
        .collect();
    let mut nights: BTreeMap<i64, NightValues> = BTreeMap::new();
    for (day, signal, v) in night::night_values(&readings).into_iter().chain(night::sleep_hours(&asleep)) {
        if (first_day..=last_day).contains(&day) {
            nights.entry(day).or_insert([None; 7])[signal.index()] = Some(v);
        }
    }
    Ok(nights)
}
