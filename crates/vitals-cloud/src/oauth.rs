//! OAuth 2.0 authorization code grant (RFC 6749 section 4.1) for the vendors whose users
//! sign in at the vendor: the address to send the user to, the code exchanged for tokens,
//! the access token refreshed before it expires (a vendor that rotates refresh tokens gets
//! the new one kept), and revocation. Each vendor's file names its endpoints and scopes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::Reply;
use crate::{Client, CloudError, Credentials, Vendor, oura, withings};

/// An application registered with a vendor by whoever runs Vitals.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// Where the vendor sends the user back (`<public_url>/`).
    pub redirect_uri: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// A vendor's OAuth endpoints.
pub(crate) struct Endpoints {
    pub(crate) authorize: String,
    pub(crate) token: String,
    pub(crate) scopes: &'static str,
    /// Fields the vendor wants in every token request besides the standard ones.
    pub(crate) extra: &'static [(&'static str, &'static str)],
}

fn endpoints(client: &Client, vendor: Vendor) -> Result<Endpoints, CloudError> {
    match vendor {
        Vendor::Oura => Ok(oura::endpoints(client)),
        Vendor::Withings => Ok(withings::endpoints(client)),
        _ => Err(CloudError::Protocol(format!("{} does not use OAuth", vendor.title()))),
    }
}

/// Where to send the user to grant access; `state` comes back with the code.
pub fn authorize_url(client: &Client, vendor: Vendor, state: &str) -> Result<String, CloudError> {
    let app = client.app(vendor)?;
    let e = endpoints(client, vendor)?;
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", app.client_id.as_str()),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("scope", e.scopes),
        ("state", state),
    ])
    .map_err(|e| CloudError::Protocol(e.to_string()))?;
    Ok(format!("{}?{query}", e.authorize))
}

/// Reads a token answer into `creds`.
fn take_tokens(r: &Reply, creds: &mut Credentials, now_ms: i64) -> Result<(), CloudError> {
    if r.status == 400 || r.status == 401 {
        // invalid_grant: the code or refresh token is spent or revoked; the user must sign in again.
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let why = v["error_description"].as_str().or(v["error"].as_str()).unwrap_or("refused");
        return Err(CloudError::Credentials(format!("the vendor refused the grant: {why}; connect again")));
    }
    if r.status == 429 {
        return Err(CloudError::RateLimited { retry_after_ms: r.retry_after_ms });
    }
    if r.status != 200 {
        return Err(CloudError::Unavailable(format!("token endpoint: HTTP {}: {}", r.status, r.excerpt())));
    }
    let mut v = r.json()?;
    // Withings answers HTTP 200 with a `status` and the tokens under `body`.
    if let Some(status) = v["status"].as_i64() {
        if status != 0 {
            return Err(CloudError::Credentials(format!(
                "the vendor refused the grant (status {status}); connect again"
            )));
        }
        v = v["body"].take();
        let user = v["userid"].as_i64().map(|u| u.to_string()).or_else(|| v["userid"].as_str().map(str::to_owned));
        if let Some(user) = user {
            creds.account = user;
        }
    }
    let Some(access) = v["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(CloudError::Protocol("the token answer has no access_token".into()));
    };
    creds.access_token = access.to_owned();
    if let Some(refresh) = v["refresh_token"].as_str().filter(|t| !t.is_empty()) {
        creds.refresh_token = refresh.to_owned();
    }
    let expires_in_s = v["expires_in"].as_i64().unwrap_or(3600).max(60);
    creds.expires_at_ms = now_ms.saturating_add(expires_in_s.saturating_mul(1000));
    Ok(())
}

/// Exchanges the code the vendor sent the user back with for tokens.
pub fn exchange(client: &Client, vendor: Vendor, code: &str, now_ms: i64) -> Result<Credentials, CloudError> {
    let app = client.app(vendor)?;
    let e = endpoints(client, vendor)?;
    let mut fields = e.extra.to_vec();
    fields.extend([
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.as_str()),
    ]);
    let r = client.post_form(&e.token, &fields, vec![app.client_secret.as_str(), code])?;
    let mut creds = Credentials::default();
    take_tokens(&r, &mut creds, now_ms)?;
    Ok(creds)
}

/// Refreshes the access token if it expires within five minutes.
pub(crate) fn fresh(client: &Client, vendor: Vendor, creds: &mut Credentials, now_ms: i64) -> Result<(), CloudError> {
    if !creds.access_token.is_empty() && creds.expires_at_ms > now_ms + 5 * 60_000 {
        return Ok(());
    }
    if creds.refresh_token.is_empty() {
        return Err(CloudError::Credentials("the access expired and there is no refresh token: connect again".into()));
    }
    let app = client.app(vendor)?;
    let e = endpoints(client, vendor)?;
    let refresh = creds.refresh_token.clone();
    let mut fields = e.extra.to_vec();
    fields.extend([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.as_str()),
    ]);
    let r = client.post_form(&e.token, &fields, vec![app.client_secret.as_str(), refresh.as_str()])?;
    take_tokens(&r, creds, now_ms)
}

/// Tells the vendor to revoke the grant (on disconnect).
pub fn revoke(client: &Client, vendor: Vendor, creds: &Credentials, now_ms: i64) -> Result<(), CloudError> {
    match vendor {
        Vendor::Oura => oura::revoke(client, creds),
        Vendor::Withings => withings::revoke(client, creds, now_ms),
        _ => Ok(()),
    }
}
