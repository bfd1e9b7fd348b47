//! The channels Vitals delivers notices on, each a [`Transport`] (`vitals-alerts` decides
//! what is sent and what happens after an attempt; this crate makes the attempt):
//! webhooks with an HMAC signature, the Telegram Bot API, Twilio-compatible SMS gateways,
//! email over SMTP (rustls), and the log. [`Transports`] holds one per channel, configured
//! once from the `[notify]` section.

pub mod email;
mod http;

use std::time::Duration;

use vitals_alerts::{Channel, Notice, NotifyConfig, SendError, Transport};

/// Every channel, configured once: one [`Transport`] per channel.
pub struct Transports {
    by_channel: Vec<(Channel, Box<dyn Transport>)>,
}

impl Transports {
    pub fn new(config: &NotifyConfig) -> anyhow::Result<Transports> {
        let timeout = Duration::from_millis(config.timeout.as_ms() as u64);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("vitals/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let email: Box<dyn Transport> = if config.smtp_host.is_empty() {
            Box::new(Unconfigured("no SMTP server is configured (notify.smtp_host)"))
        } else {
            Box::new(email::Email::new(config, timeout)?)
        };
        Ok(Transports {
            by_channel: vec![
                (Channel::Webhook, Box::new(http::Webhook::new(agent.clone(), config))),
                (Channel::Telegram, Box::new(http::Telegram::new(agent.clone(), config))),
                (Channel::Sms, Box::new(http::Sms::new(agent, config))),
                (Channel::Email, email),
                (Channel::Console, Box::new(Console)),
            ],
        })
    }
}

impl Transport for Transports {
    /// One attempt to deliver a notice on its channel.
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        match self.by_channel.iter().find(|(c, _)| *c == n.channel) {
            Some((_, t)) => t.send(n),
            None => Err(SendError::permanent(format!("no transport for {}", n.channel.as_str()))),
        }
    }
}

/// The log: notices written as warnings (target `vitals::notify`).
struct Console;

impl Transport for Console {
    fn send(&self, n: &Notice) -> Result<(), SendError> {
        tracing::warn!(target: "vitals::notify", notice = %n.id, contact = %n.contact, "{}", n.text);
        Ok(())
    }
}

/// A channel that is not configured: every attempt is refused for good.
struct Unconfigured(&'static str);

impl Transport for Unconfigured {
    fn send(&self, _: &Notice) -> Result<(), SendError> {
        Err(SendError::permanent(self.0))
    }
}
