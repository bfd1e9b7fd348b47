//! A rule as users write it (JSON or TOML) and as the evaluator runs it.

use serde::{Deserialize, Serialize};
use vitals_core::time::DurationMs;

use crate::ParseError;
use crate::eval::{Episode, Series, episodes, points, truths};
use crate::parse::{Expr, parse};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Urgent,
}

/// Which patients a rule watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every patient.
    #[default]
    All,
    /// One patient.
    Patient(String),
    /// A list of patients.
    Patients(Vec<String>),
    /// The members of a cohort (a named group of patients kept by the server, which turns
    /// this into [`Scope::Patients`] before evaluation).
    Cohort(String),
}

impl Scope {
    /// Whether the scope holds the patient; a cohort not yet resolved holds no one.
    pub fn includes(&self, patient: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patient(p) => p == patient,
            Scope::Patients(ps) => ps.iter().any(|p| p == patient),
            Scope::Cohort(_) => false,
        }
    }
}

/// A rule as written: `{"name", "expr", "severity", "for", "clear", "scope", "renotify"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// The condition, e.g. `blood_glucose > 115 or mean(blood_glucose, 10m) > 105`.
    pub expr: String,
    #[serde(default)]
    pub severity: Severity,
    /// Persistence: the condition must hold this long before the rule fires (`15m`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Hysteresis: once fired, the alert clears when this holds (e.g. `blood_glucose > 80`
    /// for a low rule firing below 70) instead of when `expr` stops holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<String>,
    #[serde(default)]
    pub scope: Scope,
    /// Notify again this often while the alert stays open and unacknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// What is wrong with a rule: the field and, for expressions, the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: &'static str,
    pub position: Option<usize>,
    pub message: String,
}

impl RuleError {
    fn expr(field: &'static str, e: ParseError) -> RuleError {
        RuleError { field, position: Some(e.pos), message: e.to_string() }
    }

    fn plain(field: &'static str, message: String) -> RuleError {
        RuleError { field, position: None, message }
    }
}

/// A checked rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub spec: RuleSpec,
    pub expr: Expr,
    pub clear: Option<Expr>,
    pub for_ms: i64,
    pub renotify_ms: Option<i64>,
    /// The metrics read and the longest window over each (computed once).
    metrics: Vec<(String, i64)>,
    /// A hash of the spec: two rules with the same fingerprint are the same rule.
    fingerprint: u64,
}

fn duration(field: &'static str, s: &Option<String>) -> Result<Option<i64>, RuleError> {
    s.as_deref()
        .map(|d| {
            d.parse::<DurationMs>()
                .map(DurationMs::as_ms)
                .map_err(|_| RuleError::plain(field, format!("{d:?} is not a duration like 15m")))
        })
        .transpose()
}

impl Rule {
    /// Checks a spec: the name, both expressions, durations.
    pub fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 80
            && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(RuleError::plain("name", "1 to 80 characters of [A-Za-z0-9._-]".into()));
        }
        let expr = parse(&spec.expr).map_err(|e| RuleError::expr("expr", e))?;
        let clear = spec.clear.as_deref().map(parse).transpose().map_err(|e| RuleError::expr("clear", e))?;
        let for_ms = duration("for", &spec.for_)?.unwrap_or(0);
        let renotify_ms = duration("renotify", &spec.renotify)?;
        let ids: Vec<&String> = match &spec.scope {
            Scope::Patient(p) => vec![p],
            Scope::Patients(ps) => ps.iter().collect(),
            Scope::Cohort(c) => vec![c],
            Scope::All => Vec::new(),
        };
        for p in ids {
            if vitals_core::PatientId::new(p).is_err() {
                return Err(RuleError::plain("scope", format!("{p:?} is not a patient or cohort id")));
            }
        }
        let mut metrics = Vec::new();
        expr.metrics(&mut metrics);
        if let Some(c) = &clear {
            c.metrics(&mut metrics);
        }
        // FNV-1a over the spec as JSON: stable within a process, which is all it is for.
        let text = serde_json::to_string(&spec).unwrap_or_default();
        let fingerprint =
            text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Ok(Rule { spec, expr, clear, for_ms, renotify_ms, metrics, fingerprint })
    }

    /// Metric codes the rule reads and how much history before an evaluation point it
    /// needs (its longest window).
    pub fn metrics(&self) -> Vec<(String, i64)> {
        self.metrics.clone()
    }

    /// [`Rule::metrics`] without a copy.
    pub fn metric_list(&self) -> &[(String, i64)] {
        &self.metrics
    }

    /// Whether `metric` is read by the rule.
    pub fn reads(&self, metric: &str) -> bool {
        self.metrics.iter().any(|(m, _)| m == metric)
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn lookback_ms(&self) -> i64 {
        self.metrics.iter().map(|m| m.1).max().unwrap_or(0)
    }

    /// Episodes over one patient's series with evaluation points in `[from, to)`.
    /// `data` should start `lookback_ms()` before `from` so windows are full.
    pub fn episodes(&self, data: &BTreeMap<String, Series>, from: i64, to: i64) -> (usize, Vec<Episode>) {
        let mut exprs = vec![&self.expr];
        if let Some(c) = &self.clear {
            exprs.push(c);
        }
        let times = points(&exprs, data, from, to);
        let holds = truths(&self.expr, data, &times);
        let clear = self.clear.as_ref().map(|c| truths(c, data, &times));
        (times.len(), episodes(&times, &holds, clear.as_deref(), self.for_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> RuleSpec {
        serde_json::from_value(json).expect("spec")
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        let r = Rule::compile(spec(serde_json::json!({
            "name": "low", "expr": "blood_glucose < 70", "clear": "blood_glucose > 80", "for": "15m",
            "severity": "urgent", "scope": {"patient": "p-1"}, "renotify": "30m"
        })))
        .expect("rule");
        assert_eq!((r.for_ms, r.renotify_ms, r.spec.severity), (900_000, Some(1_800_000), Severity::Urgent));
        assert!(r.spec.scope.includes("p-1") && !r.spec.scope.includes("p-2"));
        let e = Rule::compile(spec(serde_json::json!({"name": "x", "expr": "blood_glucose <"}))).expect_err("expr");
        assert_eq!((e.field, e.position), ("expr", Some(15)));
        let e = Rule::compile(spec(serde_json::json!({"name": "x", "expr": "spo2 < 90", "clear": "spo2 >"})))
            .expect_err("clear");
        assert_eq!(e.field, "clear");
        let e =
            Rule::compile(spec(serde_json::json!({"name": "x", "expr": "spo2 < 90", "for": "soon"}))).expect_err("for");
        assert_eq!(e.field, "for");
        let e = Rule::compile(spec(serde_json::json!({"name": "a b", "expr": "spo2 < 90"}))).expect_err("name");
        assert_eq!(e.field, "name");
        assert_eq!(spec(serde_json::json!({"name": "x", "expr": "spo2 < 90"})).scope, Scope::All);
        assert!(
            serde_json::from_value::<RuleSpec>(
                serde_json::json!({"name": "x", "expr": "spo2 < 90", "sevrity": "info"})
            )
            .is_err()
        );
    }
}
