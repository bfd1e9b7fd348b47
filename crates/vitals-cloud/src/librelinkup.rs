//! LibreLinkUp: Abbott's follower service for FreeStyle Libre sensors, read with a follower
//! account (the email and password of the LibreLinkUp app that the Libre user invited).
//!
//! Requests (as the LibreLinkUp Android app 4.16 sends them: headers `product: llu.android`,
//! `version: 4.16.0`, `Accept: application/json`, `cache-control: no-cache`):
//! 1. `POST <base>/llu/auth/login` `{"email", "password"}` -> `{"status": 0, "data": {"user":
//!    {"id"}, "authTicket": {"token", "expires", "duration"}}}`; or `{"status": 0, "data":
//!    {"redirect": true, "region": "eu"}}`: the account lives at `api-eu.libreview.io`, sign
//!    in there; `status` 2: wrong credentials; 4: terms to accept in the app; 920: the app
//!    version is too old.
//! 2. Then with `Authorization: Bearer <token>` and `Account-Id: <SHA-256 hex of the user
//!    id>`: `GET <base>/llu/connections` -> `{"data": [{"patientId", ...}]}` (the people the
//!    account follows; the first, or the one chosen) and `GET
//!    <base>/llu/connections/<patientId>/graph` -> `{"data": {"connection": {"sensor": {"sn"},
//!    "glucoseMeasurement": {...}}, "graphData": [{"FactoryTimestamp": "11/10/2023 3:45:16 PM",
//!    "ValueInMgPerDl": 180, ...}]}}`: about 12 hours of 15-minute readings and the newest one.
//!    An answer may carry `ticket`, a renewed token, which is kept. HTTP 401: signed in again, once.
//!
//! `FactoryTimestamp` is UTC (`Timestamp` is the phone's local time, not used).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vitals_core::{RawTime, Validator};
use vitals_ingest::Batch;

use crate::http::Reply;
use crate::{Client, CloudError, Credentials, Vendor};

pub(crate) const REGIONS: &[&str] = &["eu", "eu2", "us", "de", "fr", "jp", "ap", "au", "ae", "ca", "la"];

/// The app version the service is told (it refuses versions below its minimum).
const APP_VERSION: &str = "4.16.0";

/// The service's base URL for a region: `api-<region>.libreview.io`, or `api.libreview.io`
/// without one; an override gets `/<region>` appended for a region.
fn base(client: &Client, region: &str) -> String {
    match (client.base(Vendor::LibreLinkUp), region) {
        (Some(b), "") => b.to_owned(),
        (Some(b), r) => format!("{b}/{r}"),
        (None, "") => "https://api.libreview.io".to_owned(),
        (None, r) => format!("https://api-{r}.libreview.io"),
    }
}

fn app_headers() -> Vec<(&'static str, String)> {
    vec![
        ("product", "llu.android".to_owned()),
        ("version", APP_VERSION.to_owned()),
        ("Accept", "application/json".to_owned()),
        ("cache-control", "no-cache".to_owned()),
    ]
}

fn signed_in_headers(creds: &Credentials) -> Vec<(&'static str, String)> {
    let mut h = app_headers();
    h.push(("Authorization", format!("Bearer {}", creds.session)));
    h.push(("Account-Id", hex::encode(Sha256::digest(creds.account.as_bytes()))));
    h
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An answer that is not a success: what it means.
fn fail(r: &Reply) -> CloudError {
    if r.status == 429 {
        return CloudError::RateLimited { retry_after_ms: r.retry_after_ms };
    }
    if r.status == 401 || r.status == 403 {
        return CloudError::Credentials(format!("LibreLinkUp refused the sign-in (HTTP {})", r.status));
    }
    if r.status >= 500 || r.status == 408 {
        return CloudError::Unavailable(format!("LibreLinkUp: HTTP {}: {}", r.status, r.excerpt()));
    }
    CloudError::Protocol(format!("LibreLinkUp: HTTP {}: {}", r.status, r.excerpt()))
}

/// The `status` of a 200 answer: 0 is success.
fn status_error(v: &Value) -> Option<CloudError> {
    match v["status"].as_i64() {
        Some(0) | None => None,
        Some(2) => Some(CloudError::Credentials("LibreLinkUp refused the email or password".into())),
        Some(4) => Some(CloudError::Credentials(
            "LibreLinkUp needs the account holder: sign in to the LibreLinkUp app once and accept its terms".into(),
        )),
        Some(920) => Some(CloudError::Protocol(format!(
            "LibreLinkUp wants app version {} or later",
            v["data"]["minimumVersion"].as_str().unwrap_or("?")
        ))),
        Some(n) => Some(CloudError::Protocol(format!("LibreLinkUp status {n}: {}", v["error"]["message"]))),
    }
}

fn sign_in(client: &Client, creds: &mut Credentials) -> Result<(), CloudError> {
    let body = json!({"email": creds.username, "password": creds.password}).to_string();
    // The service answers with the account's region at most once.
    for _ in 0..2 {
        let url = format!("{}/llu/auth/login", base(client, &creds.region));
        let headers = app_headers();
        let r = client.post(&url, &[], &as_refs(&headers), &body)?;
        if r.status != 200 {
            return Err(fail(&r));
        }
        let v = r.json()?;
        if let Some(e) = status_error(&v) {
            return Err(e);
        }
        let data = &v["data"];
        if data["redirect"] == true {
            let region = data["region"].as_str().unwrap_or("").to_ascii_lowercase();
            if !REGIONS.contains(&region.as_str()) || region == creds.region {
                return Err(CloudError::Protocol(format!("LibreLinkUp redirected to an unknown region {region:?}")));
            }
            creds.region = region;
            continue;
        }
        let (Some(token), Some(user)) = (data["authTicket"]["token"].as_str(), data["user"]["id"].as_str()) else {
            return Err(CloudError::Protocol(format!("LibreLinkUp login: no token or user id: {}", r.excerpt())));
        };
        creds.session = token.to_owned();
        creds.account = user.to_owned();
        return Ok(());
    }
    Err(CloudError::Protocol("LibreLinkUp redirected more than once".into()))
}

/// A signed-in GET; `Ok(None)` when the token is no longer accepted (sign in again).
fn signed_in_get(client: &Client, creds: &mut Credentials, path: &str) -> Result<Option<Reply>, CloudError> {
    let url = format!("{}{path}", base(client, &creds.region));
    let headers = signed_in_headers(creds);
    let r = client.get(&url, &as_refs(&headers))?;
    if r.status == 401 {
        return Ok(None);
    }
    if r.status != 200 {
        return Err(fail(&r));
    }
    let v = r.json()?;
    if let Some(e) = status_error(&v) {
        return Err(e);
    }
    if let Some(token) = v["ticket"]["token"].as_str().filter(|t| !t.is_empty()) {
        creds.session = token.to_owned();
    }
    Ok(Some(r))
}

pub(crate) fn pull(client: &Client, creds: &mut Credentials) -> Result<Vec<Vec<u8>>, CloudError> {
    for _ in 0..2 {
        if creds.session.is_empty() {
            sign_in(client, creds)?;
        }
        if creds.follow.is_empty() {
            let Some(r) = signed_in_get(client, creds, "/llu/connections")? else {
                creds.session.clear();
                continue;
            };
            let v = r.json()?;
            let Some(first) = v["data"][0]["patientId"].as_str() else {
                return Err(CloudError::Credentials(
                    "the LibreLinkUp account follows no one: accept the Libre user's invitation in the app".into(),
                ));
            };
            if !first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(CloudError::Protocol(format!("LibreLinkUp: a patient id {first:?}")));
            }
            creds.follow = first.to_owned();
        }
        let path = format!("/llu/connections/{}/graph", creds.follow);
        match signed_in_get(client, creds, &path)? {
            Some(r) => return Ok(vec![r.body]),
            None => creds.session.clear(),
        }
    }
    Err(CloudError::Credentials("LibreLinkUp refused a token it had just given".into()))
}

/// Milliseconds of `M/D/YYYY h:mm:ss AM` (UTC), as an RFC 3339 text for the validator.
fn factory_time(s: &str) -> Option<String> {
    let mut parts = s.split_whitespace();
    let (date, time, half) = (parts.next()?, parts.next()?, parts.next()?);
    let mut d = date.split('/').map(|x| x.parse::<u32>().ok());
    let (month, day, year) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|x| x.parse::<u32>().ok());
    let (hour12, minute, second) = (t.next()??, t.next()??, t.next()??);
    if parts.next().is_some() || d.next().is_some() || t.next().is_some() || !(1..=12).contains(&hour12) {
        return None;
    }
    let hour = match half {
        "AM" => hour12 % 12,
        "PM" => hour12 % 12 + 12,
        _ => return None,
    };
    Some(format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"))
}

pub(crate) fn decode(body: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Batch, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("LibreLinkUp graph: not JSON ({e})"))?;
    let data = &root["data"];
    let Some(graph) = data["graphData"].as_array() else {
        return Err("LibreLinkUp graph: no data.graphData array".into());
    };
    let device = data["connection"]["sensor"]["sn"]
        .as_str()
        .filter(|sn| !sn.is_empty())
        .map(|sn| format!("libre-{}", sn.to_ascii_lowercase()))
        .unwrap_or_else(|| "librelinkup".to_owned());
    let latest = &data["connection"]["glucoseMeasurement"];
    let items = graph.iter().chain(latest.is_object().then_some(latest));
    let mut batch = Batch::with_capacity(graph.len() + 1);
    for (i, item) in items.enumerate() {
        let time = item["FactoryTimestamp"].as_str().and_then(factory_time);
        let (Some(time), Some(value)) = (time, item["ValueInMgPerDl"].as_f64()) else {
            batch.malformed(i, "a reading needs FactoryTimestamp (M/D/YYYY h:mm:ss AM) and a numeric ValueInMgPerDl");
            continue;
        };
        crate::push_reading(
            &mut batch,
            v,
            i,
            (patient, &device),
            ("blood_glucose", "mg/dL"),
            RawTime::Text(time.into()),
            value,
        );
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, Source};

    use super::*;

    #[test]
    fn factory_timestamps_are_utc_with_a_12_hour_clock() {
        assert_eq!(factory_time("11/10/2023 3:45:16 PM").as_deref(), Some("2023-11-10T15:45:16Z"));
        assert_eq!(factory_time("1/2/2024 12:05:00 AM").as_deref(), Some("2024-01-02T00:05:00Z"));
        assert_eq!(factory_time("1/2/2024 12:05:00 PM").as_deref(), Some("2024-01-02T12:05:00Z"));
        assert_eq!(factory_time("2024-01-02T12:05:00Z"), None);
        assert_eq!(factory_time("1/2/2024 13:05:00 PM"), None);
        assert_eq!(factory_time("1/2/2024 1:05:00 XM"), None);
    }

    #[test]
    fn the_graph_and_the_newest_reading_become_samples_of_the_sensor() {
        let body = br#"{"status":0,"data":{"connection":{"patientId":"abc","sensor":{"deviceId":"","sn":"0R8FDDJ820","a":1773402121,"pt":4},
            "glucoseMeasurement":{"FactoryTimestamp":"11/10/2023 3:46:16 PM","Timestamp":"11/10/2023 4:46:16 PM","type":1,"ValueInMgPerDl":182,"TrendArrow":3,"TrendMessage":null,"MeasurementColor":2,"GlucoseUnits":0,"Value":10.1,"isHigh":false,"isLow":false}},
            "activeSensors":[],
            "graphData":[{"FactoryTimestamp":"11/10/2023 3:30:16 PM","Timestamp":"11/10/2023 4:30:16 PM","type":0,"ValueInMgPerDl":170,"MeasurementColor":1,"GlucoseUnits":0,"Value":9.4,"isHigh":false,"isLow":false},
                         {"FactoryTimestamp":"11/10/2023 3:45:16 PM","Timestamp":"11/10/2023 4:45:16 PM","type":0,"ValueInMgPerDl":180,"MeasurementColor":1,"GlucoseUnits":0,"Value":10,"isHigh":false,"isLow":false},
                         {"Timestamp":"11/10/2023 4:50:16 PM","type":0}]},
            "ticket":{"token":"t","expires":1,"duration":1}}"#;
        let catalog = Catalog::standard();
        let mut v = Validator::new(catalog, 1_700_000_000_000, 60_000, None).source(Source::LibreLinkUp);
        let b = decode(body, "p-1", &mut v).expect("decoded");
        let got: Vec<(i64, f64)> = b.samples.iter().map(|s| (s.time_ms, s.value)).collect();
        assert_eq!(got, vec![(1_699_630_216_000, 170.0), (1_699_631_116_000, 180.0), (1_699_631_176_000, 182.0)]);
        assert_eq!(b.samples[0].device.as_ref().map(|d| d.as_str()), Some("libre-0r8fddj820"));
        assert_eq!(b.rejections.len(), 1);
        assert_eq!(b.rejections[0].index, 2);
        assert!(decode(br#"{"status":0,"data":[]}"#, "p-1", &mut v).is_err());
    }
}
