//! Email over SMTP (lettre): STARTTLS (required, not opportunistic), implicit TLS, or plain
//! for a relay on the same host; TLS 1.2+ by rustls, verified against the bundled web roots
//! plus `smtp_ca_file`. The notice id is the Message-ID, so a duplicate is recognisable.
//! A campaign's message carries its unsubscribe link as `List-Unsubscribe` with
//! `List-Unsubscribe-Post` (RFC 2369, RFC 8058), so mail clients offer one-click unsubscribe.

use std::time::Duration;

use anyhow::Context;
use lettre::Transport as _;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};

use vitals_alerts::{Notice, NoticeKind, NotifyConfig, SendError, Transport};

pub(crate) struct Email {
    transport: SmtpTransport,
    from: Mailbox,
}

impl Email {
    pub(crate) fn new(cfg: &NotifyConfig, timeout: Duration) -> anyhow::Result<Email> {
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(cfg.smtp_host.clone());
            if !cfg.smtp_ca_file.as_os_str().is_empty() {
                let pem = std::fs::read(&cfg.smtp_ca_file)
                    .with_context(|| format!("reading notify.smtp_ca_file {}", cfg.smtp_ca_file.display()))?;
                b = b.add_root_certificate(
                    Certificate::from_pem(&pem).context("notify.smtp_ca_file is not a PEM certificate")?,
                );
            }
            b.build_rustls().context("SMTP TLS settings")
        };
        let security = match cfg.smtp_security.as_str() {
            "tls" => Tls::Wrapper(tls()?),
            "none" => Tls::None,
            _ => Tls::Required(tls()?),
        };
        let mut b = SmtpTransport::builder_dangerous(cfg.smtp_host.clone())
            .port(cfg.smtp_port)
            .tls(security)
            .timeout(Some(timeout));
        if !cfg.smtp_username.is_empty() {
            b = b.credentials(Credentials::new(cfg.smtp_username.clone(), cfg.smtp_password.clone()));
        }
        let from: Mailbox = cfg.smtp_from.parse().context("notify.smtp_from")?;
        Ok(Email { transport: b.build(), from })
    }
}

impl Transport for Email {
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        let to: Mailbox =
            n.address.parse().map_err(|e| SendError::permanent(format!("email: {:?}: {e}", n.address)))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject.clone())
            .message_id(Some(format!("<{}@vitals>", n.id)))
            .header(ContentType::TEXT_PLAIN);
        if n.kind == NoticeKind::Campaign
            && let Some(url) = n.payload["unsubscribe"].as_str()
        {
            builder = builder.header(ListUnsubscribe(url.to_owned())).header(ListUnsubscribePost);
        }
        let message = builder.body(n.text.clone()).map_err(|e| SendError::permanent(format!("email: {e}")))?;
        match self.transport.send(&message) {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("email: {e}"))),
            Err(e) => Err(SendError::transient(format!("email: {e}"))),
        }
    }
}

type HeaderError = Box<dyn std::error::Error + Send + Sync>;

/// `List-Unsubscribe: <url>` (RFC 2369).
#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, HeaderError> {
        Ok(ListUnsubscribe(s.trim().trim_start_matches('<').trim_end_matches('>').to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): the link works by POST.
#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, HeaderError> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

/// Problems of the `[notify]` addresses this transport would refuse, each naming the option.
pub fn problems(n: &NotifyConfig) -> Vec<String> {
    let mut v = Vec::new();
    for c in &n.contacts {
        if c.email.as_deref().is_some_and(|e| e.parse::<lettre::Address>().is_err()) {
            v.push(format!("notify.contacts {:?}: email is not an address", c.name));
        }
    }
    if !n.smtp_from.is_empty() && n.smtp_from.parse::<Mailbox>().is_err() {
        v.push("notify.smtp_from is not an address".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use vitals_alerts::Contact;

    use super::*;

    #[test]
    fn addresses_that_do_not_parse_are_named() {
        let cfg = NotifyConfig {
            contacts: vec![
                Contact { name: "mail".into(), email: Some("not an address".into()), ..Contact::default() },
                Contact { name: "ok".into(), email: Some("ann@example.org".into()), ..Contact::default() },
            ],
            smtp_from: "nobody at all".into(),
            ..NotifyConfig::default()
        };
        assert_eq!(
            problems(&cfg),
            ["notify.contacts \"mail\": email is not an address", "notify.smtp_from is not an address"]
        );
        assert!(problems(&NotifyConfig::default()).is_empty());
    }
}
