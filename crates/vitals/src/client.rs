//! A small blocking HTTP client for commands that talk to a running server.

use std::time::Duration;

use anyhow::{Context, bail};

pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(url: &str, token: Option<&str>) -> anyhow::Result<Client> {
        let Some(token) = token else { bail!("--url needs --token (or VITALS_TOKEN)") };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client { base: url.trim_end_matches('/').to_owned(), token: token.to_owned(), agent })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET a path; returns the body, failing with the server's message on an error status.
    pub(crate) fn get(&self, path_and_query: &str, accept: &str) -> anyhow::Result<String> {
        let url = format!("{}{path_and_query}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth())
            .header("Accept", accept)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.body_mut().read_to_string().context("reading response")?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {}", error_message(&body));
        }
        Ok(body)
    }

    /// POST a body; retries on 503 (overload) honouring Retry-After, up to a minute.
    pub(crate) fn post(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<String> {
        self.post_with(path, content_type, body, &[])
    }

    /// POST with extra headers (e.g. Nightscout's `api-secret`).
    pub(crate) fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut waited = Duration::ZERO;
        loop {
            let mut req =
                self.agent.post(&url).header("Authorization", &self.auth()).header("Content-Type", content_type);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let mut resp = req.send(body).with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            let text = resp.body_mut().read_to_string().context("reading response")?;
            if status.as_u16() == 503 && waited < Duration::from_secs(60) {
                let pause = Duration::from_secs(retry_after.clamp(1, 10));
                #[allow(clippy::disallowed_methods)] // reason: the server asked for this back-off (Retry-After)
                std::thread::sleep(pause);
                waited += pause;
                continue;
            }
            if !status.is_success() {
                bail!("POST {url}: {status}: {}", error_message(&text));
            }
            return Ok(text);
        }
    }

    /// POST a file as the body, streamed from disk (an upload of gigabytes is not read
    /// into memory); answers the server's text, failing with its message on an error status.
    pub(crate) fn post_file(&self, path_and_query: &str, file: &std::path::Path) -> anyhow::Result<String> {
        let url = format!("{}{path_and_query}", self.base);
        let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth())
            .header("Content-Type", "application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut f))
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().context("reading response")?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {}", error_message(&text));
        }
        Ok(text)
    }

    /// POST a body and return the answer's bytes (binary formats), failing with the
    /// server's message on an error status.
    pub(crate) fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth())
            .header("Content-Type", content_type)
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let bytes = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().context("reading response")?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {}", error_message(&String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .delete(&url)
            .header("Authorization", &self.auth())
            .call()
            .with_context(|| format!("DELETE {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            bail!("DELETE {url}: {status}: {}", error_message(&text));
        }
        Ok(())
    }
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect())
}
