//! Campaigns: `/api/v1/campaigns` (made and followed by clinicians and admins), a patient's
//! consent and the messages they received (`/api/v1/patients/{p}/campaigns`), and the
//! unsubscribe page the link in every message opens (`/unsubscribe`, public: the signed
//! token is the credential).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use vitals_alerts::campaign::{Campaign, CampaignError, PATIENT_CHANNELS, SendRecord};
use vitals_alerts::{Channel, NoticeState};
use vitals_core::DurationMs;
use vitals_core::time::{format_time, parse_time};

use crate::api::error::{ApiError, Code};
use crate::api::extract::Path;
use crate::api::patients_api::pseudonym;
use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::authz::{Action, visible};
use crate::campaign_store::{CampaignStoreError, ConsentChange, Run};

impl From<CampaignStoreError> for ApiError {
    fn from(e: CampaignStoreError) -> ApiError {
        match e {
            CampaignStoreError::NotFound(_) => ApiError::new(Code::NotFound, e.to_string()),
            CampaignStoreError::Io(m) => ApiError::internal(m),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> ApiError {
        ApiError::new(Code::InvalidBody, e.to_string())
    }
}

fn status(c: &Campaign, runs: &[Run]) -> &'static str {
    let last = runs.iter().map(|r| r.run).max();
    match (c.cancelled_ms, c.next_at(last), last) {
        (Some(_), _, _) => "cancelled",
        (None, None, _) => "ended",
        (None, Some(_), None) => "scheduled",
        (None, Some(_), Some(_)) => "active",
    }
}

/// What became of a send: skipped, or its notice's state in the outbox.
fn delivery_state(s: &SendRecord, notice: Option<&vitals_alerts::Notice>) -> &'static str {
    match (&s.skipped, notice) {
        (Some(_), _) => "skipped",
        (None, Some(n)) => match n.state {
            NoticeState::Pending => "pending",
            NoticeState::Delivered => "delivered",
            NoticeState::Dead => "failed",
            NoticeState::Withdrawn => "withdrawn",
        },
        // Erased from the outbox, or compacted away once delivered.
        (None, None) => "sent",
    }
}

/// A send as the caller may see it, with the delivery's state from the outbox.
fn send_json(app: &App, s: &SendRecord) -> Value {
    let notice = s.notice.as_deref().and_then(|n| app.alerts.notice(n));
    json!({
        "patient": s.patient,
        "channel": s.channel,
        "state": delivery_state(s, notice.as_ref()),
        "reason": s.skipped.map(|w| w.as_str()),
        "delivered_at": notice.as_ref().and_then(|n| n.delivered_ms).map(format_time),
        "error": notice.as_ref().filter(|n| n.state != NoticeState::Delivered).and_then(|n| n.last_error.clone()),
    })
}

fn campaign_json(app: &App, who: &Principal, c: &Campaign, runs: &[Run], detail: bool) -> Value {
    let last = runs.iter().map(|r| r.run).max();
    let occurrences: Vec<Value> = runs
        .iter()
        .rev()
        .map(|r| {
            let sends: Vec<&SendRecord> =
                r.sends.iter().filter(|s| visible(who, Action::ReadPatientData, &s.patient)).collect();
            let sent = sends.iter().filter(|s| s.notice.is_some()).count();
            let mut o = json!({
                "run": r.run,
                "at": format_time(r.at_ms),
                "members": sends.len(),
                "sent": sent,
                "skipped": sends.len() - sent,
            });
            if detail {
                o["sends"] = sends.iter().map(|s| send_json(app, s)).collect();
            }
            o
        })
        .collect();
    json!({
        "id": c.id,
        "name": c.name,
        "cohort": c.cohort,
        "subject": c.subject,
        "message": c.message,
        "start": format_time(c.start_ms),
        "every": c.every,
        "until": c.until_ms.map(format_time),
        "created_by": c.created_by,
        "created": format_time(c.created_ms),
        "cancelled": c.cancelled_ms.map(format_time),
        "status": status(c, runs),
        "next_at": c.next_at(last).map(format_time),
        "occurrences": occurrences,
    })
}

pub(crate) async fn list(State(app): State<AppState>, Extension(who): Extension<Principal>) -> Json<Value> {
    let list: Vec<Value> =
        app.campaigns.list().iter().rev().map(|(c, runs)| campaign_json(&app, &who, c, runs, false)).collect();
    Json(json!({ "campaigns": list }))
}

pub(crate) async fn get_one(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (c, runs) =
        app.campaigns.get(&id).ok_or_else(|| ApiError::new(Code::NotFound, format!("no campaign {id:?}")))?;
    Ok(Json(campaign_json(&app, &who, &c, &runs, true)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCampaign {
    name: String,
    cohort: String,
    subject: String,
    message: String,
    /// RFC 3339 or epoch ms; default: now.
    start: Option<TimeArg>,
    every: Option<DurationMs>,
    until: Option<TimeArg>,
}

/// A time as RFC 3339 text or epoch milliseconds (text digits too).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum TimeArg {
    Ms(i64),
    Text(String),
}

impl TimeArg {
    fn ms(&self, field: &str) -> Result<i64, ApiError> {
        match self {
            TimeArg::Ms(ms) if *ms >= 0 => Ok(*ms),
            TimeArg::Ms(ms) => Err(ApiError::new(Code::InvalidBody, format!("{field}: {ms} is before 1970"))),
            TimeArg::Text(s) => {
                parse_time(s).map_err(|e| ApiError::new(Code::InvalidBody, format!("{field}: {s:?}: {e}")))
            }
        }
    }
}

pub(crate) async fn create(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewCampaign>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(b) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    let Some(user) = who.user_id.clone() else {
        return Err(ApiError::new(
            Code::Forbidden,
            "campaigns are made by a user (whose patients decide who receives them), not by a bare token",
        ));
    };
    if app.config.notify.public_url.trim().is_empty() {
        return Err(ApiError::new(
            Code::Conflict,
            "campaigns need notify.public_url: every message carries an unsubscribe link to this server",
        ));
    }
    if app.cohorts.members(&b.cohort).is_none() {
        return Err(ApiError::new(Code::InvalidBody, format!("cohort: no cohort {:?}", b.cohort)));
    }
    let now = app.clock.now_ms();
    let start_ms = match &b.start {
        Some(t) => t.ms("start")?,
        None => now,
    };
    let until_ms = b.until.as_ref().map(|t| t.ms("until")).transpose()?;
    let c = Campaign {
        id: String::new(),
        name: b.name.trim().to_owned(),
        cohort: b.cohort,
        subject: b.subject.trim().to_owned(),
        message: b.message,
        start_ms,
        every: b.every,
        until_ms,
        created_by: user,
        created_ms: now,
        cancelled_ms: None,
    };
    c.check()?;
    let c = app.campaigns.create(c)?;
    Ok((StatusCode::CREATED, Json(campaign_json(&app, &who, &c, &[], true))))
}

pub(crate) async fn cancel(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = app.campaigns.cancel(&id, app.clock.now_ms())?;
    let runs = app.campaigns.get(&id).map(|(_, r)| r).unwrap_or_default();
    Ok(Json(campaign_json(&app, &who, &c, &runs, true)))
}

fn configured(app: &App, channel: Channel) -> bool {
    let n = &app.config.notify;
    match channel {
        Channel::Email => !n.smtp_host.is_empty(),
        Channel::Sms => !n.sms_url.is_empty(),
        Channel::Telegram => !n.telegram_bot_token.is_empty(),
        Channel::Webhook | Channel::Console => false,
    }
}

fn consent_json(app: &App, patient: &str) -> Result<Value, ApiError> {
    let identity = app.vault.get(patient).map_err(ApiError::internal)?;
    let channels: Vec<Value> = PATIENT_CHANNELS
        .iter()
        .map(|&ch| {
            json!({
                "channel": ch,
                "configured": configured(app, ch),
                "address_on_file": identity.as_ref().is_some_and(|i| crate::campaigns::address(i, ch).is_some()),
            })
        })
        .collect();
    let consent = app.campaigns.consent(patient);
    let history: Vec<Value> = app
        .campaigns
        .consent_history(patient)
        .iter()
        .map(|c| json!({"at": format_time(c.at_ms), "channel": c.channel, "by": c.by}))
        .collect();
    let messages: Vec<Value> = app
        .campaigns
        .sent_to(patient)
        .iter()
        .map(|(c, at, s)| {
            let notice = s.notice.as_deref().and_then(|n| app.alerts.notice(n));
            let state = delivery_state(s, notice.as_ref());
            json!({
                "campaign": c.id,
                "name": c.name,
                "subject": c.subject,
                "message": c.message,
                "sent_at": format_time(*at),
                "channel": s.channel,
                "state": state,
            })
        })
        .collect();
    Ok(json!({
        "patient": patient,
        "consent": consent.map(|c| json!({"channel": c.channel, "since": format_time(c.since_ms), "by": c.by})),
        "channels": channels,
        "history": history,
        "messages": messages,
    }))
}

pub(crate) async fn patient_get(
    State(app): State<AppState>,
    Path(patient): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    Ok(Json(consent_json(&app, p.as_str())?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    /// The channel to receive campaigns on; null withdraws consent.
    channel: Option<Channel>,
}

pub(crate) async fn patient_put(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(patient): Path<String>,
    body: Result<Json<ConsentBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = pseudonym(&patient)?;
    let Json(b) = body.map_err(|e| ApiError::new(Code::InvalidBody, e.body_text()))?;
    if let Some(ch) = b.channel {
        if !PATIENT_CHANNELS.contains(&ch) {
            return Err(ApiError::new(Code::InvalidBody, format!("channel: {} reaches no person", ch.as_str())));
        }
        if !configured(&app, ch) {
            return Err(ApiError::new(
                Code::InvalidBody,
                format!("channel: this server sends no {} (not configured)", ch.as_str()),
            ));
        }
        let identity = app.vault.get(p.as_str()).map_err(ApiError::internal)?;
        if identity.is_none_or(|i| crate::campaigns::address(&i, ch).is_none()) {
            return Err(ApiError::new(
                Code::InvalidBody,
                format!("channel: no {} address in the patient's identity; add one first", ch.as_str()),
            ));
        }
    }
    let change = ConsentChange { patient: p.to_string(), channel: b.channel, at_ms: app.clock.now_ms(), by: who.actor };
    crate::campaigns::set_consent(&app, change).map_err(ApiError::internal)?;
    Ok(Json(consent_json(&app, p.as_str())?))
}

/// The token of `?token=...`.
fn token(query: Option<&str>) -> Option<String> {
    let q = query?;
    q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_owned)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}}button{{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #1f4e8c;background:#1f4e8c;color:#fff;cursor:pointer}}</style></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page of a link that is not (or no longer) genuine.
fn not_valid() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "<p>The link may be incomplete: open it again from the message, or ask your care team to stop the messages.</p>",
    )
}

/// The token, campaign and patient of a genuine link.
fn check_link(app: &App, query: Option<&str>) -> Option<(String, String, String)> {
    let t = token(query)?;
    let key = crate::campaigns::unsubscribe_key(app);
    let notice = key.verify(&t)?;
    let (campaign, patient) = app.campaigns.by_notice(notice)?;
    Some((t, campaign, patient))
}

/// `GET /unsubscribe?token=`: asks before acting (mail scanners open links).
pub(crate) async fn unsubscribe_page(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some((t, _, patient)) = check_link(&app, q.as_deref()) else { return not_valid() };
    if app.campaigns.consent(&patient).is_none() {
        return page(
            StatusCode::OK,
            "You are unsubscribed",
            "<p>You receive no messages from your care team's campaigns.</p>",
        );
    }
    page(
        StatusCode::OK,
        "Stop these messages?",
        &format!(
            "<p>You will receive no more messages from your care team's campaigns. Alerts about your health are not affected.</p><form method=\"post\" action=\"/unsubscribe?token={}\"><button type=\"submit\">Stop the messages</button></form>",
            escape(&t)
        ),
    )
}

/// `POST /unsubscribe?token=`: the button of the page, and the one-click unsubscribe of
/// mail clients (RFC 8058, `List-Unsubscribe=One-Click`).
pub(crate) async fn unsubscribe(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some((_, campaign, patient)) = check_link(&app, q.as_deref()) else { return not_valid() };
    let now = app.clock.now_ms();
    if app.campaigns.consent(&patient).is_some() {
        let change =
            ConsentChange { patient: patient.clone(), channel: None, at_ms: now, by: "unsubscribe link".into() };
        if let Err(e) = crate::campaigns::set_consent(&app, change) {
            tracing::error!(error = %e, "recording an unsubscribe");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "<p>This could not be saved just now.</p>",
            );
        }
        let event = vitals_meta::AuditEvent {
            ts_ms: now,
            actor: "unsubscribe-link".into(),
            action: "consent.withdraw".into(),
            patient: Some(patient),
            target: format!("campaign {campaign}"),
            origin: "unsubscribe link".into(),
            outcome: "ok".into(),
        };
        if let Err(e) = app.auditor.record(event).await {
            tracing::error!(error = %e, "auditing an unsubscribe");
        }
    }
    page(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>You will receive no more messages from your care team's campaigns. Ask your care team if you want them again.</p>",
    )
}
