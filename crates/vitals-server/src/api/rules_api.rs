//! `/api/v1/rules`: list, read, create, replace and delete alert rules (validated on save,
//! in force at once), and `/api/v1/rules/backtest`: the episodes a rule would have produced
//! over stored data, computed by the rule evaluator itself.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::api::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_core::time::{format_time, parse_time};
use vitals_core::{Catalog, PatientId};
use vitals_query::{QueryResult, SeriesQuery};
use vitals_rules::{Rule, RuleSpec};

use crate::api::error::{ApiError, Code};
use crate::app::AppState;
use crate::rule_store::{RulesError, Source};

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> ApiError {
        match e {
            RulesError::Invalid(e) => ApiError::new(Code::InvalidRule, e.to_string()),
            RulesError::Conflict(m) => ApiError::new(Code::Conflict, m),
            RulesError::NotFound(_) => ApiError::new(Code::NotFound, e.to_string()),
            RulesError::Io(m) => ApiError::internal(m),
        }
    }
}

fn render(rule: &Rule, source: Source) -> Value {
    let mut v = serde_json::to_value(&rule.spec).unwrap_or(Value::Null);
    v["source"] = json!(source);
    v
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))
}

/// Saves a rule; compiling (parsing, checking) runs off the async workers.
async fn put(app: &AppState, spec: RuleSpec, create: bool) -> Result<(Rule, bool), ApiError> {
    let app = app.clone();
    Ok(tokio::task::spawn_blocking(move || app.rules.put(spec, create)).await.map_err(ApiError::internal)??)
}

pub(crate) async fn list(State(app): State<AppState>) -> Json<Value> {
    let rules: Vec<Value> = app.rules.list().iter().map(|(r, s)| render(r, *s)).collect();
    Json(json!({ "rules": rules }))
}

pub(crate) async fn get_one(State(app): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let (r, s) = app.rules.get(&name).ok_or_else(|| ApiError::new(Code::NotFound, format!("no rule {name:?}")))?;
    Ok(Json(render(&r, s)))
}

pub(crate) async fn create(
    State(app): State<AppState>,
    b: JsonBody<RuleSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = body(b)?;
    let (rule, _) = put(&app, spec, true).await?;
    Ok((StatusCode::CREATED, Json(render(&rule, Source::Api))))
}

pub(crate) async fn replace(
    State(app): State<AppState>,
    Path(name): Path<String>,
    b: JsonBody<RuleSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = body(b)?;
    if spec.name != name {
        return Err(ApiError::new(
            Code::InvalidRule,
            format!("name: the body names {:?}, the URL {name:?}", spec.name),
        ));
    }
    let (rule, created) = put(&app, spec, false).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(render(&rule, Source::Api))))
}

pub(crate) async fn delete(State(app): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    app.rules.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backtest {
    expr: String,
    #[serde(default)]
    clear: Option<String>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    /// Default: every patient with data.
    #[serde(default)]
    patients: Option<Vec<String>>,
    from: Value,
    to: Value,
}

fn time(field: &str, v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time(s).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::new(Code::InvalidBody, format!("{field}: an RFC 3339 time or milliseconds since the epoch"))
    })
}

/// Episodes of a rule over stored data: `{"episodes": [{"patient", "start", "fired", "end",
/// "cleared"}], "points": n}`.
pub(crate) async fn backtest(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    b: JsonBody<Backtest>,
) -> Result<Json<Value>, ApiError> {
    let req = body(b)?;
    let (from, to) = (time("from", &req.from)?, time("to", &req.to)?);
    if from >= to {
        return Err(ApiError::new(Code::InvalidQuery, "from must be before to"));
    }
    let spec = RuleSpec {
        name: "backtest".into(),
        expr: req.expr,
        severity: Default::default(),
        for_: req.for_,
        clear: req.clear,
        scope: Default::default(),
        renotify: None,
        enabled: true,
        description: None,
    };
    let rule = tokio::task::spawn_blocking(move || Rule::compile(spec))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(Code::InvalidRule, e.to_string()))?;
    let patients: Vec<PatientId> = match req.patients {
        Some(ps) => ps
            .iter()
            .map(|p| PatientId::new(p).map_err(|e| ApiError::new(Code::InvalidPatient, format!("{p:?}: {e}"))))
            .collect::<Result<_, _>>()?,
        None => app
            .store
            .patients()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| crate::authz::visible(&who, crate::authz::Action::Backtest, p.as_str()))
            .collect(),
    };
    for p in &patients {
        crate::authz::check(&who, crate::authz::Action::Backtest, Some(p.as_str()))
            .map_err(|d| ApiError::new(Code::Forbidden, d.to_string()))?;
    }
    let store = app.store.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let catalog = Catalog::standard();
        let mut episodes = Vec::new();
        let mut points = 0;
        for patient in patients {
            let mut data = BTreeMap::new();
            for (code, _) in rule.metrics() {
                let metric = catalog.id(&code).ok_or_else(|| ApiError::new(Code::UnknownMetric, code.clone()))?;
                let q = SeriesQuery {
                    patient: patient.clone(),
                    metric,
                    device: None,
                    from: from - rule.lookback_ms(),
                    to,
                    every_ms: None,
                    aggs: Vec::new(),
                };
                let series = match vitals_query::run(&store, &q)? {
                    QueryResult::Raw(pts) => pts.into_iter().map(|p| (p.time_ms, p.value)).collect(),
                    QueryResult::Buckets(_) => Vec::new(),
                };
                data.insert(code, series);
            }
            let (n, eps) = rule.episodes(&data, from, to);
            points += n;
            for e in eps {
                episodes.push(json!({
                    "patient": patient.as_str(),
                    "start": format_time(e.start),
                    "fired": format_time(e.fired),
                    "end": format_time(e.end),
                    "cleared": e.cleared.map(format_time),
                }));
            }
        }
        Ok(json!({"episodes": episodes, "points": points}))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(out))
}
