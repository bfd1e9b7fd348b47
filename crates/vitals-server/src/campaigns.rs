//! The campaign thread: sends each campaign's occurrence when it is due.
//!
//! For an occurrence: the cohort's members now, each one's consent (`campaign_store`), the
//! address for their chosen channel from their identity (the vault; each read audited as
//! `identity.read` by `campaign:<id>`), and whether the campaign's author may reach them ->
//! `vitals_alerts::campaign::deliveries` -> the notices into the outbox (the notifier
//! delivers them like any other, with retries and the dead-letter list), then the
//! occurrence recorded. A crash between the two makes the same notices again (their ids
//! and texts are deterministic) and the outbox keeps the first ones. In cluster mode the
//! node that delivers operator notices (bucket 0's owner) sends campaigns.

use std::time::Duration;

use vitals_alerts::campaign::{Campaign, Member, UnsubscribeKey, deliveries};
use vitals_alerts::{Channel, Notice, NoticeState};
use vitals_vault::Identity;

use crate::app::{App, AppState};
use crate::campaign_store::{ConsentChange, Run};
use crate::shutdown::Shutdown;

/// How often the thread looks at the clock (it may be a manual clock in tests).
const TICK: Duration = Duration::from_millis(500);

/// The key of unsubscribe links, derived from the server's audit key (shared by the nodes
/// of a cluster), so no other secret is kept.
pub(crate) fn unsubscribe_key(app: &App) -> UnsubscribeKey {
    UnsubscribeKey::new(app.directory.audit_key().derive("campaign-unsubscribe"))
}

/// The address for `channel` among an identity's contact points.
pub(crate) fn address(identity: &Identity, channel: Channel) -> Option<String> {
    let kinds: &[&str] = match channel {
        Channel::Email => &["email"],
        Channel::Sms => &["sms", "mobile", "phone"],
        Channel::Telegram => &["telegram"],
        Channel::Webhook | Channel::Console => &[],
    };
    kinds.iter().find_map(|k| {
        identity.contacts.iter().find(|c| c.kind.eq_ignore_ascii_case(k)).map(|c| c.value.trim().to_owned())
    })
}

/// Records a change of a patient's consent. A withdrawal also withdraws their campaign
/// messages still waiting in the outbox (a retry after a failed attempt): none of them
/// goes after it. Returns how many were withdrawn.
pub(crate) fn set_consent(app: &App, change: ConsentChange) -> anyhow::Result<usize> {
    let (patient, withdrawn) = (change.patient.clone(), change.channel.is_none());
    app.campaigns.set_consent(change)?;
    if !withdrawn {
        return Ok(0);
    }
    let waiting: Vec<Notice> = app
        .campaigns
        .sent_to(&patient)
        .iter()
        .filter_map(|(_, _, s)| app.alerts.notice(s.notice.as_deref()?))
        .filter(|n| n.state == NoticeState::Pending)
        .map(|n| Notice { state: NoticeState::Withdrawn, last_error: Some("consent withdrawn".into()), ..n })
        .collect();
    let n = waiting.len();
    app.alerts.commit(Vec::new(), waiting)?;
    Ok(n)
}

/// Starts the thread; it runs until `shutdown`.
pub(crate) fn spawn(app: AppState, shutdown: Shutdown) -> anyhow::Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new().name("campaigns".into()).spawn(move || {
        let key = unsubscribe_key(&app);
        while !shutdown.wait_timeout(TICK) {
            if !sends_here(&app) {
                continue;
            }
            let now = app.clock.now_ms();
            for (c, last) in app.campaigns.live() {
                if let Some(run) = c.due(last, now)
                    && let Err(e) = send(&app, &key, &c, run, now)
                {
                    // Not recorded: tried again at the next look.
                    tracing::error!(campaign = %c.id, run, error = %e, "sending a campaign");
                }
            }
        }
    })?)
}

/// Cluster mode: whether this node sends campaigns (the owner of bucket 0).
fn sends_here(app: &App) -> bool {
    match &app.cluster {
        Some(c) => c.ownership.valid() && c.ownership.owned().first() == Some(&0),
        None => true,
    }
}

/// Sends occurrence `run` of `c` and records it.
fn send(app: &App, key: &UnsubscribeKey, c: &Campaign, run: u32, now: i64) -> anyhow::Result<()> {
    let members = app.cohorts.members(&c.cohort).unwrap_or_default();
    let author = app.directory.meta().user(&c.created_by)?.and_then(|u| app.directory.principal_of_user(&u));
    let consents = app.campaigns.consents(&members);
    let mut found = Vec::with_capacity(members.len());
    let mut audit = Vec::new();
    for (patient, consent) in members.into_iter().zip(consents) {
        let in_reach =
            author.as_ref().is_some_and(|a| crate::authz::visible(a, crate::authz::Action::ReadIdentity, &patient));
        let mut addr = None;
        if let Some(consent) = consent.as_ref().filter(|_| in_reach) {
            match app.vault.get(&patient) {
                Ok(identity) => addr = identity.and_then(|i| address(&i, consent.channel)),
                Err(e) => tracing::error!(campaign = %c.id, patient, error = %e, "reading an identity for a campaign"),
            }
            audit.push(vitals_meta::AuditEvent {
                ts_ms: now,
                actor: format!("campaign:{}", c.id),
                action: "identity.read".into(),
                patient: Some(patient.clone()),
                target: format!("campaign {} occurrence {run}: the {} address", c.id, consent.channel.as_str()),
                origin: "campaigns".into(),
                outcome: if addr.is_some() { "ok" } else { "failed" }.into(),
            });
        }
        found.push(Member { patient, consent, address: addr, in_reach });
    }
    if !audit.is_empty() {
        app.auditor.record_all_blocking(audit)?;
    }
    let (sends, notices) = deliveries(c, run, &found, key, &app.config.notify.public_url, now);
    // Made before a crash, they are in the outbox already (and may be delivered).
    let fresh: Vec<_> = notices.into_iter().filter(|n| app.alerts.notice(&n.id).is_none()).collect();
    let made = fresh.len();
    app.alerts.commit(Vec::new(), fresh)?;
    app.campaigns.record_run(Run { campaign: c.id.clone(), run, at_ms: now, sends })?;
    tracing::info!(campaign = %c.id, run, notices = made, "campaign occurrence sent");
    Ok(())
}
