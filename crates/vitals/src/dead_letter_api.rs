//! Keeping refused input (dead letters) and the admin routes to list, show, replay and
//! purge it. Shared by every adapter: [`keep`] is called with the body and the batch's
//! rejections; line-based formats keep only the refused lines, JSON keeps the whole body.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use vitals_core::{Event, Rejection, Validator};
use vitals_ingest::health_auto_export::{self, Unsupported};
use vitals_ingest::line_protocol::{self, Mapping, Precision};
use vitals_ingest::{Batch, Format, native, nightscout};
use vitals_storage::dead_letter::{DeadLetter, DeadLetterError, DeadLetters, RefusedItem};
use vitals_storage::event_store::EventStore;
use vitals_storage::{Store, StoreError};

use crate::api_error::{ApiError, Code};
use crate::config::Config;
use crate::server::AppState;

/// The wire formats a dead letter can be replayed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Native(Format),
    LineProtocol(Precision),
    /// Health Auto Export JSON; the patient travels in the entry's context.
    HealthAutoExport,
    /// A Nightscout collection (`entries`, `devicestatus`, `treatments`); the patient
    /// travels in the entry's context.
    Nightscout(&'static str),
}

impl WireFormat {
    fn name(self) -> &'static str {
        match self {
            WireFormat::Native(Format::Json) => "json",
            WireFormat::Native(Format::Ndjson) => "ndjson",
            WireFormat::Native(Format::Csv) => "csv",
            WireFormat::LineProtocol(_) => "line_protocol",
            WireFormat::HealthAutoExport => "health_auto_export",
            WireFormat::Nightscout("entries") => "nightscout_entries",
            WireFormat::Nightscout("devicestatus") => "nightscout_devicestatus",
            WireFormat::Nightscout(_) => "nightscout_treatments",
        }
    }

    fn line_based(self) -> bool {
        matches!(self, WireFormat::Native(Format::Ndjson | Format::Csv) | WireFormat::LineProtocol(_))
    }
}

/// Decodes a body of any supported format with the server's validation rules. Parts of a
/// Health Auto Export that cannot be stored yet count as refused (`unsupported`).
pub fn decode(
    config: &Config,
    now_ms: i64,
    format: WireFormat,
    body: &[u8],
    patient: Option<&str>,
) -> Result<(Batch, Vec<Event>, Vec<Unsupported>), String> {
    let cfg = &config.ingest;
    let mut v = Validator::new(
        vitals_core::Catalog::standard(),
        now_ms,
        cfg.max_future.as_ms(),
        cfg.max_age.map(|d| d.as_ms()),
    );
    match format {
        WireFormat::Native(f) => {
            native::decode(body, f, &mut v).map(|b| (b, Vec::new(), Vec::new())).map_err(|e| e.to_string())
        }
        WireFormat::LineProtocol(p) => {
            let mapping = Mapping { rules: config.line_protocol.measurements.clone() };
            Ok((line_protocol::decode(body, p, &mapping, &mut v, now_ms), Vec::new(), Vec::new()))
        }
        WireFormat::HealthAutoExport => {
            let patient = patient.ok_or("no patient recorded for this export")?;
            let d = health_auto_export::decode(body, patient, &mut v).map_err(|e| e.to_string())?;
            Ok((d.batch, d.events, d.unsupported))
        }
        WireFormat::Nightscout(what) => {
            let patient = patient.ok_or("no patient recorded for this upload")?;
            let d = match what {
                "entries" => nightscout::decode_entries(body, patient, &mut v),
                "devicestatus" => nightscout::decode_devicestatus(body, patient, &mut v),
                _ => nightscout::decode_treatments(body, patient, &mut v),
            };
            let d = d.map_err(|e| e.to_string())?;
            Ok((d.batch, d.events, d.unsupported))
        }
    }
}

/// What a request refused, for [`keep`].
#[derive(Debug, Default)]
pub struct Refused<'a> {
    pub rejections: &'a [Rejection],
    /// Set when the body could not be decoded at all.
    pub whole_failure: Option<&'a str>,
    /// Parts that cannot be stored yet (the whole body is kept for a later replay).
    pub unsupported: &'a [Unsupported],
    /// The patient an export belongs to (formats without patient ids in the body).
    pub patient: Option<&'a str>,
}

/// Keeps what a request refused. Failing to keep is logged (the sender still gets the
/// per-item answer).
pub fn keep(
    dead: &DeadLetters,
    now_ms: i64,
    source: &str,
    format: WireFormat,
    body: &[u8],
    refused: &Refused<'_>,
) -> Option<u64> {
    let Refused { rejections, whole_failure, unsupported, patient } = *refused;
    if rejections.is_empty() && whole_failure.is_none() && unsupported.is_empty() {
        return None;
    }
    let mut context = BTreeMap::new();
    if let WireFormat::LineProtocol(p) = format {
        context.insert("precision".to_owned(), precision_name(p).to_owned());
    }
    if let Some(p) = patient {
        context.insert("patient".to_owned(), p.to_owned());
    }
    let (raw, items): (Vec<u8>, Vec<RefusedItem>) = if format.line_based() && whole_failure.is_none() {
        // Only the refused lines (and a CSV header), renumbered in the excerpt; the original
        // line is in each item's message.
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        let mut raw = Vec::new();
        let mut items = Vec::new();
        let header = matches!(format, WireFormat::Native(Format::Csv))
            && lines.first().is_some_and(|l| l.starts_with(b"patient"));
        if header {
            raw.extend_from_slice(lines[0]);
            raw.push(b'\n');
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in rejections {
            if seen.insert(r.index)
                && let Some(l) = lines.get(r.index)
            {
                raw.extend_from_slice(l);
                raw.push(b'\n');
            }
            items.push(RefusedItem {
                index: seen.len() - 1 + usize::from(header),
                code: r.code.as_str().to_owned(),
                message: format!("(line {} of the original) {}", r.index + 1, r.message),
            });
        }
        (raw, items)
    } else {
        let items = rejections
            .iter()
            .map(|r| RefusedItem { index: r.index, code: r.code.as_str().to_owned(), message: r.message.clone() })
            .collect();
        (body.to_vec(), items)
    };
    let reason = match (whole_failure, rejections.first()) {
        (Some(why), _) => why.to_owned(),
        (None, Some(first)) => format!("{} item(s) refused, first: {}", rejections.len(), first.code),
        (None, None) => {
            let parts: Vec<String> = unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
            format!("not stored yet: {}", parts.join(", "))
        }
    };
    let letter = DeadLetter {
        id: 0,
        time_ms: now_ms,
        source: source.to_owned(),
        format: format.name().to_owned(),
        reason,
        items,
        context,
        raw_bytes: 0,
    };
    match dead.add(letter, &raw) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, source, "could not keep a dead letter");
            None
        }
    }
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Nanoseconds => "ns",
        Precision::Microseconds => "u",
        Precision::Milliseconds => "ms",
        Precision::Seconds => "s",
        Precision::Minutes => "m",
        Precision::Hours => "h",
    }
}

fn format_of(letter: &DeadLetter) -> Option<WireFormat> {
    Some(match letter.format.as_str() {
        "json" => WireFormat::Native(Format::Json),
        "ndjson" => WireFormat::Native(Format::Ndjson),
        "csv" => WireFormat::Native(Format::Csv),
        "health_auto_export" => WireFormat::HealthAutoExport,
        "nightscout_entries" => WireFormat::Nightscout("entries"),
        "nightscout_devicestatus" => WireFormat::Nightscout("devicestatus"),
        "nightscout_treatments" => WireFormat::Nightscout("treatments"),
        "line_protocol" => {
            WireFormat::LineProtocol(letter.context.get("precision").map(String::as_str).unwrap_or("ns").parse().ok()?)
        }
        _ => return None,
    })
}

/// The result of a replay.
#[derive(Debug, serde::Serialize)]
pub struct Replayed {
    pub id: u64,
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub unsupported: Vec<Unsupported>,
    /// The entry is removed when nothing was refused this time.
    pub removed: bool,
}

/// Decodes a dead letter again with today's rules and writes what now passes. Samples that
/// were accepted the first time are written again, which is harmless: the same (patient,
/// metric, device, time) is one sample.
pub fn replay(
    config: &Config,
    store: &Store,
    events: &EventStore,
    dead: &DeadLetters,
    now_ms: i64,
    id: u64,
) -> Result<Replayed, ReplayError> {
    let (letter, raw) = dead.get(id)?;
    let format = format_of(&letter).ok_or_else(|| ReplayError::Format(letter.format.clone()))?;
    let patient = letter.context.get("patient").map(String::as_str);
    let (batch, evs, unsupported) = decode(config, now_ms, format, &raw, patient).map_err(ReplayError::Decode)?;
    events.put(evs).map_err(|e| ReplayError::Decode(e.to_string()))?;
    let accepted = batch.samples.len();
    store.write(batch.samples)?;
    let removed = batch.rejections.is_empty() && unsupported.is_empty();
    if removed {
        dead.remove(id)?;
    }
    Ok(Replayed { id, accepted, rejected: batch.rejections, unsupported, removed })
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown format {0:?}")]
    Format(String),
    #[error("still not decodable: {0}")]
    Decode(String),
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::DeadLetter(DeadLetterError::NotFound(id)) => {
                ApiError::new(Code::NotFound, format!("no dead letter {id}"))
            }
            ReplayError::Store(s) => s.into(),
            ReplayError::Decode(m) => ApiError::new(Code::InvalidBody, m),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn list(State(app): State<AppState>, Query(p): Query<ListParams>) -> Json<serde_json::Value> {
    let entries = app.dead_letters.list(p.after.unwrap_or(0), p.limit.unwrap_or(100).min(1000));
    Json(
        serde_json::json!({ "dead_letters": entries, "total": app.dead_letters.len(), "dropped": app.dead_letters.dropped() }),
    )
}

pub async fn show(State(app): State<AppState>, Path(id): Path<u64>) -> Result<Json<serde_json::Value>, ApiError> {
    let (meta, raw) = app.dead_letters.get(id).map_err(ReplayError::from)?;
    let mut v = serde_json::to_value(&meta).map_err(ApiError::internal)?;
    match String::from_utf8(raw) {
        Ok(text) => v["raw"] = serde_json::Value::String(text),
        Err(e) => {
            v["raw_base64"] = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()))
        }
    }
    Ok(Json(v))
}

/// (A body, if any, is read and ignored: a connection whose request body was left unread
/// cannot be kept alive.)
pub async fn replay_one(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    _body: axum::body::Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let r = tokio::task::spawn_blocking(move || {
        replay(&app.config, &app.store, &app.events, &app.dead_letters, app.clock.now_ms(), id)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(r))
}

pub async fn remove_one(State(app): State<AppState>, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    app.dead_letters.remove(id).map_err(ReplayError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let n = app.dead_letters.purge().map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "purged": n })))
}
