//! An alert: one episode of a rule for a patient. It opens when the rule fires, stays open
//! while the episode lasts, and resolves when it clears; an episode that late readings show
//! never happened is retracted. People acknowledge and snooze alerts.
//!
//! [`plan`] is the lifecycle: the alert version an engine change leads to, given the
//! alert's current version. Alerts have stable ids ([`alert_id`]) derived from the episode,
//! so an engine that re-derives episodes after a restart finds the alerts it raised.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vitals_core::Event;
use vitals_core::time::format_time;
use vitals_rules::Severity;
use vitals_rules::live::Change;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Open,
    Acknowledged,
    Resolved,
    Retracted,
}

impl AlertState {
    pub fn parse(s: &str) -> Option<AlertState> {
        Some(match s {
            "open" => AlertState::Open,
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            "retracted" => AlertState::Retracted,
            _ => return None,
        })
    }

    /// Open or acknowledged: the episode goes on.
    pub fn active(self) -> bool {
        matches!(self, AlertState::Open | AlertState::Acknowledged)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Alert {
    pub id: String,
    pub rule: String,
    pub patient: String,
    pub severity: Severity,
    pub state: AlertState,
    pub start_ms: i64,
    pub fired_ms: i64,
    pub end_ms: i64,
    pub cleared_ms: Option<i64>,
    /// Fresh enough to page someone when it opened (backfilled history is recorded, not paged).
    pub page: bool,
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    pub snoozed_until_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The rule's condition and description when it fired.
    #[serde(default)]
    pub expr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Metrics the rule reads: a higher-severity alert of the patient on one of them
    /// suppresses this one.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// The latest reading of each metric when it fired: (value, unit).
    #[serde(default)]
    pub values: BTreeMap<String, (f64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    /// Whether anyone was told it opened.
    #[serde(default)]
    pub notified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified_ms: Option<i64>,
    /// Escalation level reached per subscription.
    #[serde(default)]
    pub escalations: BTreeMap<String, u32>,
    #[serde(default)]
    pub reminders: u32,
}

impl Alert {
    /// Whether reminders and escalation may go out now.
    pub fn wants_attention(&self, now: i64) -> bool {
        self.state == AlertState::Open
            && self.page
            && self.suppressed_by.is_none()
            && self.snoozed_until_ms.is_none_or(|u| u <= now)
    }
}

/// The stable id of the alert of an episode.
pub fn alert_id(rule: &str, patient: &str, start_ms: i64) -> String {
    let h = vitals_core::Event::content_id(patient, rule, start_ms, 0, "alert");
    format!("al-{}", h.rsplit('-').next().unwrap_or_default())
}

/// What a change did to an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened(Alert),
    Resolved(Alert),
    Reopened(Alert),
    Retracted(Alert),
}

impl Transition {
    pub fn alert(&self) -> &Alert {
        match self {
            Transition::Opened(a) | Transition::Resolved(a) | Transition::Reopened(a) | Transition::Retracted(a) => a,
        }
    }

    /// The same transition of another version of the alert.
    pub fn with_alert(&self, a: Alert) -> Transition {
        match self {
            Transition::Opened(_) => Transition::Opened(a),
            Transition::Resolved(_) => Transition::Resolved(a),
            Transition::Reopened(_) => Transition::Reopened(a),
            Transition::Retracted(_) => Transition::Retracted(a),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transition::Opened(_) => "opened",
            Transition::Resolved(_) => "resolved",
            Transition::Reopened(_) => "reopened",
            Transition::Retracted(_) => "retracted",
        }
    }
}

/// The alert version an engine change leads to (not yet committed), given the alert's
/// current version, or `None` when the change changes nothing (an alert raised before a
/// restart is not raised again).
pub fn plan(change: &Change, existing: Option<Alert>, rule: &RuleInfo, now: i64, fresh_ms: i64) -> Option<Transition> {
    let (rule_name, patient, ep) = change.parts();
    let id = alert_id(rule_name, patient, ep.start);
    match (change, existing) {
        (Change::Opened { .. }, Some(a)) if a.state != AlertState::Retracted => None,
        (Change::Opened { .. }, _) => Some(Transition::Opened(Alert {
            id,
            rule: rule_name.to_owned(),
            patient: patient.to_owned(),
            severity: rule.severity,
            state: AlertState::Open,
            start_ms: ep.start,
            fired_ms: ep.fired,
            end_ms: ep.end,
            cleared_ms: None,
            page: now - ep.fired <= fresh_ms,
            created_ms: now,
            updated_ms: now,
            expr: rule.expr.clone(),
            description: rule.description.clone(),
            metrics: rule.metrics.clone(),
            ..Alert::default()
        })),
        (Change::Resolved { .. }, Some(a)) if a.state != AlertState::Retracted && a.cleared_ms != ep.cleared => {
            Some(Transition::Resolved(Alert {
                state: AlertState::Resolved,
                end_ms: ep.end,
                cleared_ms: ep.cleared,
                updated_ms: now,
                ..a
            }))
        }
        (Change::Reopened { .. }, Some(a)) if a.state == AlertState::Resolved => Some(Transition::Reopened(Alert {
            state: if a.acked_ms.is_some() { AlertState::Acknowledged } else { AlertState::Open },
            cleared_ms: None,
            updated_ms: now,
            ..a
        })),
        (Change::Retracted { .. }, Some(a)) if a.state != AlertState::Retracted => {
            Some(Transition::Retracted(Alert { state: AlertState::Retracted, updated_ms: now, ..a }))
        }
        _ => None,
    }
}

/// What the engine knows of the rule of a change.
#[derive(Debug, Clone, Default)]
pub struct RuleInfo {
    pub severity: Severity,
    pub expr: String,
    pub description: Option<String>,
    pub metrics: Vec<String>,
}

impl Alert {
    /// The alert as the API (and a webhook's payload) shows it.
    pub fn render(&self) -> Value {
        let a = self;
        let values: serde_json::Map<String, Value> =
            a.values.iter().map(|(m, (v, unit))| (m.clone(), json!({"value": v, "unit": unit}))).collect();
        json!({
            "id": a.id, "rule": a.rule, "patient": a.patient, "severity": a.severity, "state": a.state,
            "expr": a.expr, "description": a.description, "values": values,
            "start": format_time(a.start_ms), "fired": format_time(a.fired_ms), "end": format_time(a.end_ms),
            "cleared": a.cleared_ms.map(format_time), "paged": a.page, "suppressed_by": a.suppressed_by,
            "acknowledged_by": a.acked_by, "acknowledged_at": a.acked_ms.map(format_time),
            "snoozed_until": a.snoozed_until_ms.map(format_time), "escalations": a.escalations,
            "reminders": a.reminders, "updated": format_time(a.updated_ms),
        })
    }

    /// The alert as an event (`kind` `alert`, same id), drawn on charts with the data.
    pub fn to_event(&self) -> Event {
        let a = self;
        let mut attributes = BTreeMap::new();
        attributes.insert("rule".to_owned(), json!(a.rule));
        attributes.insert("severity".to_owned(), json!(a.severity));
        attributes.insert("state".to_owned(), json!(a.state));
        attributes.insert("fired_ms".to_owned(), json!(a.fired_ms));
        Event {
            id: a.id.clone(),
            patient: a.patient.clone(),
            kind: "alert".into(),
            start_ms: a.start_ms,
            end_ms: a.cleared_ms.unwrap_or(a.end_ms).max(a.start_ms),
            source: "alerting".into(),
            attributes,
        }
    }
}
