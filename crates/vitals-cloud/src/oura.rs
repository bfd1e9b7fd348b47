//! Oura (API v2): the ring's heart rate, connected by the ring's owner through Oura's
//! OAuth 2.0 sign-in (an application registered at cloud.ouraring.com/oauth/applications
//! by whoever runs Vitals).
//!
//! Requests (Oura's API v2 documentation):
//! - the user is sent to `https://cloud.ouraring.com/oauth/authorize?response_type=code&
//!   client_id&redirect_uri&scope=heartrate daily&state`;
//! - `POST https://api.ouraring.com/oauth/token` (form) exchanges the code, and later the
//!   refresh token (Oura rotates it: the new one is kept), for `{"access_token",
//!   "token_type": "bearer", "expires_in", "refresh_token"}`;
//! - `GET https://api.ouraring.com/v2/usercollection/heartrate?start_datetime&end_datetime
//!   [&next_token]` with `Authorization: Bearer` -> `{"data": [{"bpm": 61, "source": "awake",
//!   "timestamp": "2025-11-22T02:55:00+00:00"}], "next_token": null}`, page after page;
//! - `GET https://api.ouraring.com/oauth/revoke?access_token` on disconnect.

use serde_json::Value;
use vitals_core::time::format_time;
use vitals_core::{RawTime, Validator};
use vitals_ingest::Batch;

use crate::http::Reply;
use crate::oauth::{Endpoints, fresh};
use crate::{Client, CloudError, Credentials, Vendor};

/// The device readings are recorded from.
const DEVICE: &str = "oura";
/// How far back the first pull reads.
const FIRST_PULL_MS: i64 = 7 * 86_400_000;
/// At most this many pages per pull (the rest waits for the next one).
const MAX_PAGES: usize = 100;

fn api_base(client: &Client) -> String {
    client.base(Vendor::Oura).unwrap_or("https://api.ouraring.com").to_owned()
}

pub(crate) fn endpoints(client: &Client) -> Endpoints {
    let (authorize, api) = match client.base(Vendor::Oura) {
        Some(b) => (format!("{b}/oauth/authorize"), b.to_owned()),
        None => ("https://cloud.ouraring.com/oauth/authorize".to_owned(), "https://api.ouraring.com".to_owned()),
    };
    Endpoints { authorize, token: format!("{api}/oauth/token"), scopes: "heartrate daily", extra: &[] }
}

fn fail(r: &Reply) -> CloudError {
    match r.status {
        401 | 403 => CloudError::Credentials(format!("Oura refused the access (HTTP {}): connect again", r.status)),
        429 => CloudError::RateLimited { retry_after_ms: r.retry_after_ms },
        s if s >= 500 => CloudError::Unavailable(format!("Oura: HTTP {s}: {}", r.excerpt())),
        s => CloudError::Protocol(format!("Oura: HTTP {s}: {}", r.excerpt())),
    }
}

pub(crate) fn pull(
    client: &Client,
    creds: &mut Credentials,
    since_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Vec<u8>>, CloudError> {
    let from = since_ms.map_or(now_ms - FIRST_PULL_MS, |s| s - 10 * 60_000);
    let (start, end) = (format_time(from), format_time(now_ms));
    let url = format!("{}/v2/usercollection/heartrate", api_base(client));
    let mut pages = Vec::new();
    let mut next: Option<String> = None;
    let mut renewed = false;
    while pages.len() < MAX_PAGES {
        fresh(client, Vendor::Oura, creds, now_ms)?;
        let mut pairs = vec![("start_datetime", start.as_str()), ("end_datetime", end.as_str())];
        if let Some(n) = &next {
            pairs.push(("next_token", n.as_str()));
        }
        let query = serde_urlencoded::to_string(&pairs).map_err(|e| CloudError::Protocol(e.to_string()))?;
        let bearer = format!("Bearer {}", creds.access_token);
        let r = client.get(&format!("{url}?{query}"), &[("Authorization", &bearer)])?;
        if r.status == 401 && !renewed {
            // Revoked or expired early: refresh once.
            renewed = true;
            creds.expires_at_ms = 0;
            continue;
        }
        if r.status != 200 {
            return Err(fail(&r));
        }
        let v = r.json()?;
        next = v["next_token"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        pages.push(r.body);
        if next.is_none() {
            break;
        }
    }
    Ok(pages)
}

pub(crate) fn revoke(client: &Client, creds: &Credentials) -> Result<(), CloudError> {
    if creds.access_token.is_empty() {
        return Ok(());
    }
    let query = serde_urlencoded::to_string([("access_token", creds.access_token.as_str())])
        .map_err(|e| CloudError::Protocol(e.to_string()))?;
    let r = client.get(&format!("{}/oauth/revoke?{query}", api_base(client)), &[])?;
    if r.status == 200 || r.status == 401 { Ok(()) } else { Err(fail(&r)) }
}

pub(crate) fn decode(body: &[u8], patient: &str, v: &mut Validator<'_>) -> Result<Batch, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("Oura heart rate: not JSON ({e})"))?;
    let Some(items) = root["data"].as_array() else {
        return Err("Oura heart rate: no data array".into());
    };
    let mut batch = Batch::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (Some(time), Some(bpm)) = (item["timestamp"].as_str(), item["bpm"].as_f64()) else {
            batch.malformed(i, "a reading needs a timestamp and a numeric bpm");
            continue;
        };
        crate::push_reading(
            &mut batch,
            v,
            i,
            (patient, DEVICE),
            ("heart_rate", "bpm"),
            RawTime::Text(time.into()),
            bpm,
        );
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, Source};

    use super::*;

    #[test]
    fn heart_rate_pages_become_samples_of_the_ring() {
        let body = br#"{"data":[{"bpm":61,"source":"awake","timestamp":"2025-11-22T02:55:00+00:00"},
            {"bpm":"x","source":"rest","timestamp":"2025-11-22T02:56:00+00:00"},
            {"bpm":58,"source":"rest","timestamp":"2025-11-22T04:57:00+02:00"}],"next_token":null}"#;
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 60_000, None).source(Source::Oura);
        let b = decode(body, "p-1", &mut v).expect("decoded");
        let got: Vec<(i64, f64)> = b.samples.iter().map(|s| (s.time_ms, s.value)).collect();
        assert_eq!(got, vec![(1_763_780_100_000, 61.0), (1_763_780_220_000, 58.0)]);
        assert_eq!(b.rejections[0].index, 1);
        assert!(decode(b"{\"detail\":\"no\"}", "p-1", &mut v).is_err());
    }
}
