//! Withings (Health Mate): scales, blood-pressure monitors, thermometers and watches,
//! connected by the account's owner through Withings' OAuth 2.0 sign-in (an application
//! registered at developer.withings.com by whoever runs Vitals).
//!
//! Requests (Withings' public API documentation; every answer is HTTP 200 with a `status`,
//! 0 for success, and the payload under `body`):
//! - the user is sent to `https://account.withings.com/oauth2_user/authorize2?response_type=code&
//!   client_id&redirect_uri&scope=user.info,user.metrics&state`;
//! - `POST https://wbsapi.withings.net/v2/oauth2` (form) `action=requesttoken` with
//!   `grant_type=authorization_code` (or `refresh_token`: Withings rotates it) ->
//!   `{"status": 0, "body": {"userid", "access_token", "refresh_token", "expires_in", ...}}`;
//! - `POST https://wbsapi.withings.net/measure` (form) `action=getmeas&meastypes=1,9,10,11,54,71
//!   &category=1&startdate&enddate[&offset]` with `Authorization: Bearer` -> `{"status": 0,
//!   "body": {"measuregrps": [{"date", "model", "measures": [{"value": 65750, "type": 1,
//!   "unit": -3}]}], "more": 1, "offset": 250}}`: weight, blood pressure, pulse, SpO2 and body
//!   temperature, each `value` x 10^`unit`; `status` 401 in an answer: the token expired;
//! - revocation: `action=getnonce` (signed) then `action=revoke` (signed with the nonce), the
//!   signatures HMAC-SHA256 with the client secret as Withings specifies.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use vitals_core::{RawTime, Validator};
use vitals_ingest::Batch;

use crate::http::Reply;
use crate::oauth::{Endpoints, fresh};
use crate::{Client, CloudError, Credentials, Vendor};

/// How far back the first pull reads.
const FIRST_PULL_MS: i64 = 30 * 86_400_000;
/// At most this many pages per pull.
const MAX_PAGES: usize = 50;
/// Measure type -> (metric, unit).
const TYPES: &[(i64, &str, &str)] = &[
    (1, "body_mass", "kg"),
    (9, "blood_pressure_diastolic", "mmHg"),
    (10, "blood_pressure_systolic", "mmHg"),
    (11, "heart_rate", "bpm"),
    (54, "spo2", "%"),
    (71, "body_temperature", "degC"),
];

fn api_base(client: &Client) -> String {
    client.base(Vendor::Withings).unwrap_or("https://wbsapi.withings.net").to_owned()
}

pub(crate) fn endpoints(client: &Client) -> Endpoints {
    let authorize = match client.base(Vendor::Withings) {
        Some(b) => format!("{b}/oauth2_user/authorize2"),
        None => "https://account.withings.com/oauth2_user/authorize2".to_owned(),
    };
    Endpoints {
        authorize,
        token: format!("{}/v2/oauth2", api_base(client)),
        scopes: "user.info,user.metrics",
        extra: &[("action", "requesttoken")],
    }
}

/// The `status` of an answer: what it means when it is not 0.
fn status(v: &Value) -> Result<(), CloudError> {
    match v["status"].as_i64() {
        Some(0) => Ok(()),
        Some(401) => Err(CloudError::Credentials("Withings refused the access token".into())),
        Some(601) => Err(CloudError::RateLimited { retry_after_ms: None }),
        Some(n) => Err(CloudError::Protocol(format!("Withings status {n}: {}", v["error"].as_str().unwrap_or("")))),
        None => Err(CloudError::Protocol("Withings: an answer without a status".into())),
    }
}

fn http_fail(r: &Reply) -> CloudError {
    if r.status >= 500 {
        CloudError::Unavailable(format!("Withings: HTTP {}: {}", r.status, r.excerpt()))
    } else {
        CloudError::Protocol(format!("Withings: HTTP {}: {}", r.status, r.excerpt()))
    }
}

pub(crate) fn pull(
    client: &Client,
    creds: &mut Credentials,
    since_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Vec<u8>>, CloudError> {
    let from_s = since_ms.map_or(now_ms - FIRST_PULL_MS, |s| s - 60 * 60_000) / 1000;
    let (start, end) = (from_s.to_string(), (now_ms / 1000).to_string());
    let url = format!("{}/measure", api_base(client));
    let mut pages = Vec::new();
    let mut offset: Option<String> = None;
    let mut renewed = false;
    while pages.len() < MAX_PAGES {
        fresh(client, Vendor::Withings, creds, now_ms)?;
        let mut fields = vec![
            ("action", "getmeas"),
            ("meastypes", "1,9,10,11,54,71"),
            ("category", "1"),
            ("startdate", start.as_str()),
            ("enddate", end.as_str()),
        ];
        if let Some(o) = &offset {
            fields.push(("offset", o.as_str()));
        }
        let bearer = format!("Bearer {}", creds.access_token);
        let r =
            client.post_form_with(&url, &[("Authorization", &bearer)], &fields, vec![creds.access_token.as_str()])?;
        if r.status != 200 {
            return Err(http_fail(&r));
        }
        let v = r.json()?;
        if v["status"] == 401 && !renewed {
            renewed = true;
            creds.expires_at_ms = 0;
            continue;
        }
        status(&v)?;
        let more = v["body"]["more"].as_i64().unwrap_or(0) != 0 || v["body"]["more"] == true;
        offset = v["body"]["offset"].as_i64().map(|o| o.to_string());
        pages.push(r.body);
        if !more || offset.is_none() {
            break;
        }
    }
    Ok(pages)
}

fn sign(secret: &str, parts: &[&str]) -> Result<String, CloudError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| CloudError::Protocol(e.to_string()))?;
    mac.update(parts.join(",").as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn revoke(client: &Client, creds: &Credentials, now_ms: i64) -> Result<(), CloudError> {
    if creds.account.is_empty() {
        return Ok(());
    }
    let app = client.app(Vendor::Withings)?;
    let url = format!("{}/v2/signature", api_base(client));
    let timestamp = (now_ms / 1000).to_string();
    let signature = sign(&app.client_secret, &["getnonce", &app.client_id, &timestamp])?;
    let fields = [
        ("action", "getnonce"),
        ("client_id", app.client_id.as_str()),
        ("timestamp", timestamp.as_str()),
        ("signature", signature.as_str()),
    ];
    let r = client.post_form_with(&url, &[], &fields, vec![])?;
    let v = if r.status == 200 { r.json()? } else { return Err(http_fail(&r)) };
    status(&v)?;
    let nonce = v["body"]["nonce"].as_str().unwrap_or("").to_owned();
    let signature = sign(&app.client_secret, &["revoke", &app.client_id, &nonce])?;
    let fields = [
        ("action", "revoke"),
        ("client_id", app.client_id.as_str()),
        ("nonce", nonce.as_str()),
        ("signature", signature.as_str()),
        ("userid", creds.account.as_str()),
    ];
    let r = client.post_form_with(&format!("{}/v2/oauth2", api_base(client)), &[], &fields, vec![])?;
    let v = if r.status == 200 { r.json()? } else { return Err(http_fail(&r)) };
    status(&v)
}

/// A device id from a model name (`Body+` -> `withings-body`).
fn device_of(model: Option<&str>) -> String {
    let m: String = model
        .unwrap_or("")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let m: Vec<&str> = m.split('-').filter(|p| !p.is_empty()).collect();
    if m.is_empty() { "withings".to_owned() } else { format!("withings-{}", m.join("-")) }
}

pub(crate) fn decode(body: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Batch, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("Withings measures: not JSON ({e})"))?;
    if root["status"] != 0 {
        return Err(format!("Withings measures: status {}", root["status"]));
    }
    let Some(groups) = root["body"]["measuregrps"].as_array() else {
        return Err("Withings measures: no body.measuregrps array".into());
    };
    let mut batch = Batch::with_capacity(groups.len());
    let mut index = 0;
    for g in groups {
        let device = device_of(g["model"].as_str());
        let time = g["date"].as_i64().map(|s| s.saturating_mul(1000));
        let measures = g["measures"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if measures.is_empty() || time.is_none() {
            batch.malformed(index, "a measure group needs a date and measures");
            index += 1;
            continue;
        }
        for m in measures {
            let i = index;
            index += 1;
            let kind = TYPES.iter().find(|t| Some(t.0) == m["type"].as_i64());
            let (Some(time), Some(value), Some(unit), Some((_, metric, metric_unit))) =
                (time, m["value"].as_i64(), m["unit"].as_i64(), kind)
            else {
                batch.malformed(i, "a measure needs a known type, an integer value and unit");
                continue;
            };
            let value = value as f64 * 10f64.powi(i32::try_from(unit.clamp(-20, 20)).unwrap_or(0));
            crate::push_reading(&mut batch, v, i, (patient, &device), (metric, metric_unit), RawTime::Ms(time), value);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, Source};

    use super::*;

    #[test]
    fn measure_groups_become_samples_with_their_units_applied() {
        let body = br#"{"status":0,"body":{"updatetime":1763780000,"timezone":"Europe/Paris","measuregrps":[
            {"grpid":1,"attrib":0,"date":1763776800,"created":1763776900,"modified":1763776900,"category":1,"deviceid":"abc","model":"Body+","measures":[{"value":72345,"type":1,"unit":-3,"algo":0,"fm":3}]},
            {"grpid":2,"attrib":0,"date":1763777400,"category":1,"model":"BPM Connect","measures":[{"value":128,"type":10,"unit":0},{"value":82,"type":9,"unit":0},{"value":64,"type":11,"unit":0},{"value":5,"type":999,"unit":0}]}],
            "more":0,"offset":0}}"#;
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 60_000, None).source(Source::Withings);
        let b = decode(body, "p-1", &mut v).expect("decoded");
        let got: Vec<(String, i64, f64)> =
            b.samples.iter().map(|s| (Catalog::standard().get(s.metric).code.to_owned(), s.time_ms, s.value)).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], ("body_mass".to_owned(), 1_763_776_800_000, 72.35));
        assert!(got.contains(&("blood_pressure_systolic".to_owned(), 1_763_777_400_000, 128.0)), "{got:?}");
        assert_eq!(b.samples[1].device.as_ref().map(|d| d.as_str()), Some("withings-bpm-connect"));
        assert_eq!(b.rejections.len(), 1, "the unknown type");
        assert!(decode(br#"{"status":401,"error":"invalid token"}"#, "p-1", &mut v).is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_comma_joined_parts() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published vector.
        let s = sign("key", &["The quick brown fox jumps over the lazy dog"]).expect("sign");
        assert_eq!(s, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }
}
