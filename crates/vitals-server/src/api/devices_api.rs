//! `GET /api/v1/patients/{p}/devices`: the patient's devices with their telemetry (when the
//! server last heard from each, its newest reading, battery, signal, the ways in it used,
//! whether the stale-device alarm holds), from the device book (`crate::devices`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use vitals_core::PatientId;
use vitals_core::time::format_time;

use crate::api::error::{ApiError, Code};
use crate::api::extract::Path;
use crate::app::AppState;
use crate::devices::Reading;

fn reading(r: Option<Reading>) -> Value {
    r.map_or(Value::Null, |r| json!({"time": format_time(r.time_ms), "value": r.value}))
}

pub(crate) async fn patient_devices(
    State(app): State<AppState>,
    Path(patient): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = PatientId::new(&patient)
        .map_err(|e| ApiError::new(Code::InvalidPatient, format!("patient id {patient:?} {e}")))?;
    let now = app.clock.now_ms();
    let alarm = &app.config.alerting.devices;
    let devices: Vec<Value> = app
        .devices
        .list(Some(p.as_str()))
        .into_iter()
        .map(|d| {
            let quiet_ms = now.saturating_sub(d.last_heard_ms);
            json!({
                "device": d.device,
                "first_heard": format_time(d.first_heard_ms),
                "last_heard": format_time(d.last_heard_ms),
                "last_reading": format_time(d.last_sample_ms),
                "quiet_seconds": quiet_ms / 1000,
                "readings": d.samples,
                "battery": reading(d.battery),
                "signal": reading(d.signal),
                "sources": d.sources,
                "firmware": d.firmware,
                "model": d.model,
                // Whether the alarm holds (when it is on), else whether it would.
                "stale": if alarm.enabled { d.stale_since_ms.is_some() } else { quiet_ms >= alarm.stale_after.as_ms() },
                "stale_since": d.stale_since_ms.map(format_time),
            })
        })
        .collect();
    Ok(Json(json!({
        "patient": p.as_str(),
        "now": format_time(now),
        "stale_after_seconds": alarm.stale_after.as_ms() / 1000,
        "alarm": alarm.enabled,
        "devices": devices,
    })))
}
