//! Campaigns: a message a care team sends to the members of a cohort who agreed to receive
//! such messages (a flu-shot reminder, a walking challenge), once or on a schedule, as pure
//! decisions: which occurrence is due, who receives it on which channel and why others do
//! not, and the notice each delivery becomes, with its unsubscribe link.
//!
//! A patient's consent is theirs (given in the dashboard by them or recorded by their
//! clinician) and names one channel; the address comes from their identity at send time
//! (the server reads it from the vault), so the campaign records hold pseudonyms and never
//! addresses, and the notices hold addresses and never pseudonyms.
//!
//! The unsubscribe link carries the notice id and an HMAC of it under a key of the server's
//! ([`unsubscribe_token`]): nothing secret is stored, the same delivery made twice (after a
//! crash) has the same link, and the link says nothing about who it is for.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vitals_core::DurationMs;
use vitals_rules::Severity;

use crate::notice::{Channel, Notice, NoticeKind, NoticeState, notice_id};

/// The longest message (SMS gateways split long texts; email does not mind).
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// The shortest interval between two occurrences.
pub const MIN_EVERY_MS: i64 = 3_600_000;
/// The channels a patient may choose for campaigns (a webhook or the log reach no person).
pub const PATIENT_CHANNELS: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Telegram];

/// A campaign as created (and, once cancelled, with the time it was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// `cp-<n>`.
    pub id: String,
    /// A short title, shown to the patient with each message.
    pub name: String,
    /// The cohort addressed; its members at each occurrence receive it.
    pub cohort: String,
    pub subject: String,
    pub message: String,
    /// The first occurrence.
    pub start_ms: i64,
    /// Repeat this often (none: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationMs>,
    /// No occurrence after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// The user who created it: its messages reach only the patients that user may reach.
    pub created_by: String,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_ms: Option<i64>,
}

/// Why a campaign cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CampaignError {
    CampaignError::Invalid { field, reason: reason.into() }
}

impl Campaign {
    /// The problems of a campaign about to be created, the first one found.
    pub fn check(&self) -> Result<(), CampaignError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters"));
        }
        if self.subject.trim().is_empty() || self.subject.chars().count() > 200 || self.subject.contains(['\r', '\n']) {
            return Err(invalid("subject", "must be one line of 1 to 200 characters"));
        }
        let chars = self.message.chars().count();
        if self.message.trim().is_empty() || chars > MAX_MESSAGE_CHARS {
            return Err(invalid("message", format!("must be 1 to {MAX_MESSAGE_CHARS} characters (it has {chars})")));
        }
        if let Some(every) = self.every
            && every.as_ms() < MIN_EVERY_MS
        {
            return Err(invalid("every", format!("must be at least 1h (it is {every})")));
        }
        if let Some(until) = self.until_ms
            && until < self.start_ms
        {
            return Err(invalid("until", "is before start"));
        }
        Ok(())
    }

    /// The time of occurrence `run` (0 is the first).
    pub fn at(&self, run: u32) -> i64 {
        match self.every {
            Some(e) => self.start_ms.saturating_add(e.as_ms().saturating_mul(i64::from(run))),
            None => self.start_ms,
        }
    }

    /// The last occurrence there is: `None` while a repeating campaign has no end.
    fn last_run(&self) -> Option<u32> {
        match (self.every, self.until_ms) {
            (None, _) => Some(0),
            (Some(e), Some(until)) => {
                Some((until.saturating_sub(self.start_ms).max(0) / e.as_ms().max(1)).min(i64::from(u32::MAX)) as u32)
            }
            (Some(_), None) => None,
        }
    }

    /// The occurrence to send at `now`, given the last one sent: the latest that is due
    /// (occurrences missed while the server was down are not sent late, one after another:
    /// only the latest is). None when cancelled, not yet due or already sent.
    pub fn due(&self, last_sent: Option<u32>, now: i64) -> Option<u32> {
        if self.cancelled_ms.is_some() || now < self.start_ms {
            return None;
        }
        let mut run = match self.every {
            Some(e) => (now.saturating_sub(self.start_ms) / e.as_ms().max(1)).min(i64::from(u32::MAX)) as u32,
            None => 0,
        };
        if let Some(last) = self.last_run() {
            run = run.min(last);
        }
        (last_sent.is_none_or(|s| run > s)).then_some(run)
    }

    /// When the next occurrence goes, given the last one sent; None when none will.
    pub fn next_at(&self, last_sent: Option<u32>) -> Option<i64> {
        if self.cancelled_ms.is_some() {
            return None;
        }
        let run = last_sent.map_or(0, |s| s.saturating_add(1));
        if self.last_run().is_some_and(|last| run > last) {
            return None;
        }
        Some(self.at(run))
    }
}

/// A patient's agreement to receive campaigns, and on which channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub channel: Channel,
    pub since_ms: i64,
    /// Who recorded it: `user:<name>` (the patient or their clinician).
    pub by: String,
}

/// What became of one member of the cohort at one occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRecord {
    pub patient: String,
    /// The notice in the outbox, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Why no notice was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
}

/// Why a member of the cohort received nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skipped {
    /// No consent, or it was withdrawn.
    NotOptedIn,
    /// Their identity has no address for the channel they chose.
    NoAddress,
    /// The campaign's author may not reach this patient (or no longer exists).
    OutOfReach,
}

impl Skipped {
    pub fn as_str(self) -> &'static str {
        match self {
            Skipped::NotOptedIn => "not opted in",
            Skipped::NoAddress => "no address for the chosen channel",
            Skipped::OutOfReach => "outside the patients its author may reach",
        }
    }
}

/// One member of the cohort as the server found them at an occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub patient: String,
    pub consent: Option<Consent>,
    /// The address for the consent's channel, from the patient's identity.
    pub address: Option<String>,
    /// Whether the campaign's author may reach this patient.
    pub in_reach: bool,
}

/// The sends of occurrence `run` and the notices they make, one per member.
pub fn deliveries(
    c: &Campaign,
    run: u32,
    members: &[Member],
    key: &UnsubscribeKey,
    public_url: &str,
    now: i64,
) -> (Vec<SendRecord>, Vec<Notice>) {
    let mut sends = Vec::with_capacity(members.len());
    let mut notices = Vec::new();
    for m in members {
        let skip = |why| SendRecord { patient: m.patient.clone(), notice: None, channel: None, skipped: Some(why) };
        let Some(consent) = &m.consent else {
            sends.push(skip(Skipped::NotOptedIn));
            continue;
        };
        if !m.in_reach {
            sends.push(skip(Skipped::OutOfReach));
            continue;
        }
        let Some(address) = m.address.clone() else {
            sends.push(SendRecord { channel: Some(consent.channel), ..skip(Skipped::NoAddress) });
            continue;
        };
        let id = notice_id(&["campaign", &c.id, &run.to_string(), &m.patient]);
        let link = unsubscribe_url(public_url, &key.token(&id));
        let text = format!(
            "{}\n\n--\nYou receive this because you agreed to messages from your care team (\"{}\"). To stop them: {link}",
            c.message.trim_end(),
            c.name.trim()
        );
        let payload = serde_json::json!({
            "kind": "campaign",
            "campaign": {"id": c.id, "name": c.name, "run": run},
            "subject": c.subject,
            "text": text,
            "unsubscribe": link,
        });
        notices.push(Notice {
            id: id.clone(),
            kind: NoticeKind::Campaign,
            alert: None,
            contact: format!("campaign:{}", c.id),
            channel: consent.channel,
            address,
            severity: Severity::Info,
            subject: c.subject.clone(),
            text,
            payload,
            created_ms: now,
            state: NoticeState::Pending,
            attempts: 0,
            next_ms: now,
            last_error: None,
            delivered_ms: None,
        });
        sends.push(SendRecord {
            patient: m.patient.clone(),
            notice: Some(id),
            channel: Some(consent.channel),
            skipped: None,
        });
    }
    (sends, notices)
}

/// The page a recipient opens to stop campaigns.
pub fn unsubscribe_url(public_url: &str, token: &str) -> String {
    format!("{}/unsubscribe?token={token}", public_url.trim_end_matches('/'))
}

/// The key of unsubscribe links (derived by the server from a secret of its own).
#[derive(Clone)]
pub struct UnsubscribeKey([u8; 32]);

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeKey(..)")
    }
}

/// The MAC's bytes kept in a token (128 bits).
const MAC_BYTES: usize = 16;

impl UnsubscribeKey {
    pub fn new(key: [u8; 32]) -> UnsubscribeKey {
        UnsubscribeKey(key)
    }

    fn mac(&self, notice: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("invariant: HMAC accepts any key length");
        mac.update(b"vitals-unsubscribe-v1\0");
        mac.update(notice.as_bytes());
        mac
    }

    /// `<notice id>.<hex of the first 128 bits of its HMAC>`.
    pub fn token(&self, notice: &str) -> String {
        let tag = self.mac(notice).finalize().into_bytes();
        format!("{notice}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The notice id of a genuine token (the MAC compared in constant time).
    pub fn verify<'t>(&self, token: &'t str) -> Option<&'t str> {
        let (notice, tag) = token.split_once('.')?;
        if !notice.starts_with("nt-") || notice.len() > 64 || tag.len() != 2 * MAC_BYTES {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        self.mac(notice).verify_truncated_left(&tag).ok().map(|()| notice)
    }
}

#[cfg(test)]
mod tests;
