//! `GET /api/v1/patients/{patient}/fhir?from=&to=&metric=`: a patient's samples as a FHIR
//! R4 Bundle (`application/fhir+json`); see [`crate::fhir`].

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vitals_core::time::parse_time;
use vitals_core::{MetricId, PatientId};

use crate::api::error::{ApiError, Code};
use crate::api::extract::{Path, Query};
use crate::app::AppState;
use crate::fhir::{self, FhirError, Selection};

#[derive(Debug, Deserialize)]
pub(crate) struct FhirParams {
    from: Option<String>,
    to: Option<String>,
    /// Metric codes, comma separated; default: every metric.
    metric: Option<String>,
}

pub(crate) async fn bundle(
    State(app): State<AppState>,
    Path(patient): Path<String>,
    Query(q): Query<FhirParams>,
) -> Result<Response, ApiError> {
    let p = PatientId::new(&patient)
        .map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient id {patient:?} {e}")))?;
    if !app.store.has_patient(&p) {
        return Err(ApiError::new(Code::UnknownPatient, format!("no data for patient {patient:?}")));
    }
    let bad = |m: String| ApiError::new(Code::InvalidQuery, m);
    let from = q.from.as_deref().map(parse_time).transpose().map_err(|e| bad(format!("from: {e}")))?.unwrap_or(0);
    let to = match q.to.as_deref() {
        Some(s) => parse_time(s).map_err(|e| bad(format!("to: {e}")))?,
        None => app.clock.now_ms() + app.config.ingest.max_future.as_ms() + 1,
    };
    if from >= to {
        return Err(bad("from must be before to".into()));
    }
    let metrics = metric_codes(&app, q.metric.as_deref())?;
    let sel = Selection { patients: None, metrics, from, to };
    let a = app.clone();
    let bundle = tokio::task::spawn_blocking(move || fhir::bundle(&a, &p, &sel))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            FhirError::TooMany { .. } => ApiError::new(Code::TooManyPoints, e.to_string()),
            FhirError::Store(e) => ApiError::from(e),
        })?;
    let body = serde_json::to_vec(&bundle).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/fhir+json")], body).into_response())
}

/// The metrics of a comma-separated `metric` parameter; `None` (every metric) when absent or
/// empty; an unknown code is `unknown_metric`.
pub(crate) fn metric_codes(app: &AppState, list: Option<&str>) -> Result<Option<BTreeSet<MetricId>>, ApiError> {
    let Some(list) = list.filter(|m| !m.is_empty()) else { return Ok(None) };
    list.split(',')
        .map(|code| {
            app.catalog.id(code.trim()).ok_or_else(|| {
                ApiError::new(Code::UnknownMetric, format!("unknown metric {code:?}; see GET /api/v1/metrics"))
            })
        })
        .collect::<Result<BTreeSet<_>, _>>()
        .map(Some)
}
