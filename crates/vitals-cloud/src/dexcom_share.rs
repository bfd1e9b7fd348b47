//! Dexcom Share: the service Dexcom's follower apps read, with the CGM owner's own account
//! (the publisher's username and password, not a follower's; Share must be on in the Dexcom
//! app with at least one follower invited).
//!
//! Requests (as Dexcom's own follower apps and pydexcom send them; JSON bodies):
//! 1. `POST <base>/General/AuthenticatePublisherAccount` `{"accountName", "password",
//!    "applicationId"}` -> the account id (a JSON string), once;
//! 2. `POST <base>/General/LoginPublisherAccountById` `{"accountId", "password",
//!    "applicationId"}` -> a session id (a JSON string), kept until Dexcom forgets it;
//! 3. `POST <base>/Publisher/ReadPublisherLatestGlucoseValues?sessionId=..&minutes=..&maxCount=..`
//!    with body `{}` -> `[{"WT": "Date(1691346655000)", "ST": ..., "DT": "Date(...-0400)",
//!    "Value": 127, "Trend": "Flat"}, ...]`, newest first; at most 1440 minutes and 288 readings.
//!
//! Errors come as HTTP 500 with `{"Code": ..., "Message": ...}`: `SessionIdNotFound` or
//! `SessionNotValid` (signed in again, once), `AccountPasswordInvalid`,
//! `SSO_AuthenticatePasswordInvalid`, `SSO_AuthenticateAccountNotFound`, `SSO_InternalError`
//! "Cannot Authenticate..." (the credentials), `SSO_AuthenticateMaxAttemptsExceeded`
//! (locked for a while: slowed down).

use serde_json::{Value, json};
use vitals_core::{RawTime, Validator};
use vitals_ingest::Batch;

use crate::http::Reply;
use crate::{Client, CloudError, Credentials, Vendor};

pub(crate) const REGIONS: &[&str] = &["us", "ous", "jp"];

/// The application id Dexcom's apps send (Japan has its own).
const APP_ID: &str = "d89443d2-327c-4a6f-89e5-496bbb0317db";
const APP_ID_JP: &str = "d8665ade-9673-4e27-9ff6-92db4ce13d13";
/// The session id Dexcom answers when it signed no one in.
const NO_SESSION: &str = "00000000-0000-0000-0000-000000000000";
/// The device readings are recorded from.
const DEVICE: &str = "dexcom-share";
/// How long an account is left alone after Dexcom locked it for too many sign-ins.
const LOCKED_MS: i64 = 30 * 60_000;

/// The service's base URL and application id for a region.
fn endpoint(client: &Client, region: &str) -> (String, &'static str) {
    let app = if region == "jp" { APP_ID_JP } else { APP_ID };
    let base = match client.base(Vendor::DexcomShare) {
        Some(b) => b.to_owned(),
        None => match region {
            "ous" => "https://shareous1.dexcom.com/ShareWebServices/Services".to_owned(),
            "jp" => "https://share.dexcom.jp/ShareWebServices/Services".to_owned(),
            _ => "https://share2.dexcom.com/ShareWebServices/Services".to_owned(),
        },
    };
    (base, app)
}

/// What a failed answer means.
enum Failure {
    /// The session is gone: sign in again.
    Session,
    Other(CloudError),
}

fn failure(r: &Reply) -> Failure {
    if r.status == 429 {
        return Failure::Other(CloudError::RateLimited { retry_after_ms: r.retry_after_ms });
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let code = v["Code"].as_str().unwrap_or("");
    let message = v["Message"].as_str().unwrap_or("");
    let said =
        if code.is_empty() { format!("HTTP {}: {}", r.status, r.excerpt()) } else { format!("{code}: {message}") };
    Failure::Other(match code {
        "SessionIdNotFound" | "SessionNotValid" => return Failure::Session,
        "AccountPasswordInvalid" | "SSO_AuthenticatePasswordInvalid" | "SSO_AuthenticateAccountNotFound" => {
            CloudError::Credentials(format!("Dexcom refused the username or password ({said})"))
        }
        "SSO_InternalError" if message.contains("Cannot Authenticate") => {
            CloudError::Credentials(format!("Dexcom refused the username or password ({said})"))
        }
        "SSO_AuthenticateMaxAttemptsExceeded" => CloudError::RateLimited { retry_after_ms: Some(LOCKED_MS) },
        _ if r.status >= 500 || r.status == 408 => CloudError::Unavailable(format!("Dexcom Share: {said}")),
        _ => CloudError::Protocol(format!("Dexcom Share: {said}")),
    })
}

fn fail(r: &Reply) -> CloudError {
    match failure(r) {
        Failure::Session => CloudError::Protocol("Dexcom Share refused a session it had just given".into()),
        Failure::Other(e) => e,
    }
}

/// A JSON string answer (an account or session id).
fn id_answer(r: &Reply, what: &str) -> Result<String, CloudError> {
    if r.status != 200 {
        return Err(fail(r));
    }
    match r.json()? {
        Value::String(s) if !s.is_empty() => Ok(s),
        other => Err(CloudError::Protocol(format!("Dexcom Share: {what} is not a string: {other}"))),
    }
}

/// Signs in: the account id once, then a session.
fn sign_in(client: &Client, creds: &mut Credentials) -> Result<(), CloudError> {
    let (base, app) = endpoint(client, &creds.region);
    if creds.account.is_empty() {
        let body = json!({"accountName": creds.username, "password": creds.password, "applicationId": app});
        let r = client.post(&format!("{base}/General/AuthenticatePublisherAccount"), &[], &[], &body.to_string())?;
        creds.account = id_answer(&r, "the account id")?;
    }
    let body = json!({"accountId": creds.account, "password": creds.password, "applicationId": app});
    let r = client.post(&format!("{base}/General/LoginPublisherAccountById"), &[], &[], &body.to_string())?;
    let session = id_answer(&r, "the session id")?;
    if session == NO_SESSION {
        creds.account.clear();
        return Err(CloudError::Credentials(
            "Dexcom Share signed no one in: check the account (the CGM owner's, not a follower's) and that Share is on"
                .into(),
        ));
    }
    creds.session = session;
    Ok(())
}

pub(crate) fn pull(
    client: &Client,
    creds: &mut Credentials,
    since_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Vec<u8>>, CloudError> {
    // From a little before the newest stored reading, within what Dexcom keeps (24 h).
    let minutes = since_ms.map_or(1440, |s| ((now_ms - s).max(0) / 60_000 + 10).clamp(1, 1440));
    let max_count = (minutes / 5 + 2).clamp(1, 288);
    let (minutes, max_count) = (minutes.to_string(), max_count.to_string());
    let (base, _) = endpoint(client, &creds.region);
    let url = format!("{base}/Publisher/ReadPublisherLatestGlucoseValues");
    for attempt in 0..2 {
        if creds.session.is_empty() {
            sign_in(client, creds)?;
        }
        let query = [("sessionId", creds.session.as_str()), ("minutes", &minutes), ("maxCount", &max_count)];
        let r = client.post(&url, &query, &[], "{}")?;
        if r.status == 200 {
            return Ok(vec![r.body]);
        }
        match failure(&r) {
            Failure::Session if attempt == 0 => creds.session.clear(),
            Failure::Session => return Err(fail(&r)),
            Failure::Other(e) => return Err(e),
        }
    }
    Err(CloudError::Protocol("Dexcom Share: no session".into()))
}

/// Milliseconds of `Date(1691346655000)`, `/Date(1691346655000)/` or `Date(1691346655000-0400)`
/// (the offset is the display zone's; the number is UTC).
fn dexcom_time(s: &str) -> Option<i64> {
    let inner = s.trim().trim_matches('/').strip_prefix("Date(")?.strip_suffix(')')?;
    let (sign, rest) = match inner.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, inner),
    };
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    rest[..end].parse::<i64>().ok().map(|n| sign * n)
}

pub(crate) fn decode(body: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Batch, String> {
    let items: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| format!("Dexcom Share readings: not a JSON array ({e})"))?;
    let mut batch = Batch::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let time = item["WT"].as_str().or_else(|| item["ST"].as_str()).and_then(dexcom_time);
        let (Some(time), Some(value)) = (time, item["Value"].as_f64()) else {
            batch.malformed(i, "a reading needs WT (Date(ms)) and a numeric Value");
            continue;
        };
        crate::push_reading(&mut batch, v, i, (patient, DEVICE), ("blood_glucose", "mg/dL"), RawTime::Ms(time), value);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, Source};

    use super::*;

    #[test]
    fn reads_dexcom_times_in_every_shape_seen() {
        assert_eq!(dexcom_time("Date(1691346655000)"), Some(1_691_346_655_000));
        assert_eq!(dexcom_time("/Date(1426292016000)/"), Some(1_426_292_016_000));
        assert_eq!(dexcom_time("Date(1691346655000-0400)"), Some(1_691_346_655_000));
        assert_eq!(dexcom_time("Date(1691346655000+0900)"), Some(1_691_346_655_000));
        assert_eq!(dexcom_time("2023-08-06"), None);
        assert_eq!(dexcom_time("Date()"), None);
    }

    #[test]
    fn readings_become_glucose_samples_and_a_bad_one_is_refused_with_its_position() {
        let body = br#"[{"WT":"Date(1691346655000)","ST":"Date(1691346655000)","DT":"Date(1691346655000-0400)","Value":127,"Trend":"Flat"},
            {"WT":"Date(1691346355000)","ST":"Date(1691346355000)","DT":"Date(1691346355000-0400)","Value":"high","Trend":"Flat"},
            {"WT":"Date(1691346055000)","ST":"Date(1691346055000)","DT":"Date(1691346055000-0400)","Value":131,"Trend":"FortyFiveDown"}]"#;
        let catalog = Catalog::standard();
        let mut v = Validator::new(catalog, 1_691_400_000_000, 60_000, None).source(Source::DexcomShare);
        let b = decode(body, "p-1", &mut v).expect("decoded");
        assert_eq!(b.samples.len(), 2);
        assert_eq!((b.samples[0].time_ms, b.samples[0].value), (1_691_346_655_000, 127.0));
        assert_eq!(b.samples[0].source, Source::DexcomShare);
        assert_eq!(b.samples[0].device.as_ref().map(|d| d.as_str()), Some("dexcom-share"));
        assert_eq!(b.rejections.len(), 1);
        assert_eq!(b.rejections[0].index, 1);
        assert!(decode(b"{\"Code\":\"SessionIdNotFound\"}", "p-1", &mut v).is_err());
    }
}
