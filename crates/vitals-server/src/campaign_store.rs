//! Campaigns, patients' consent to receive them, and the record of every occurrence sent
//! (who received it on which channel, who did not and why). Kept in
//! `<data_dir>/campaigns/campaigns.log`, an append-only JSON log; in cluster mode, in the log
//! every node shares (`store_log`). The decisions are `vitals_alerts::campaign`'s; the
//! campaign thread (`campaigns.rs`) sends.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_alerts::Channel;
use vitals_alerts::campaign::{Campaign, Consent, SendRecord};
use vitals_storage::json_log::JsonLog;

use crate::store_log::{Applied, StoreLog};

/// One occurrence of a campaign, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub campaign: String,
    pub run: u32,
    pub at_ms: i64,
    pub sends: Vec<SendRecord>,
}

/// A change of a patient's consent: given on a channel, or withdrawn (`channel: None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    pub patient: String,
    pub channel: Option<Channel>,
    pub at_ms: i64,
    /// `user:<name>`, or `unsubscribe link`.
    pub by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Put(Box<Campaign>),
    Consent(ConsentChange),
    Run(Box<Run>),
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignStoreError {
    #[error("no campaign {0:?}")]
    NotFound(String),
    #[error("the campaign store: {0}")]
    Io(String),
}

#[derive(Default)]
struct State {
    campaigns: BTreeMap<String, Campaign>,
    /// Each campaign's occurrences, in the order sent.
    runs: BTreeMap<String, Vec<Run>>,
    /// Each patient's consent changes, oldest first (the last one is in force).
    consent: BTreeMap<String, Vec<ConsentChange>>,
    /// The campaign and patient of each notice sent.
    notices: HashMap<String, (String, String)>,
}

impl State {
    /// The last occurrence of campaign `id` sent.
    fn last_run(&self, id: &str) -> Option<u32> {
        self.runs.get(id).and_then(|r| r.iter().map(|r| r.run).max())
    }

    /// The consent in force for `patient`.
    fn consent(&self, patient: &str) -> Option<Consent> {
        let last = self.consent.get(patient)?.last()?;
        Some(Consent { channel: last.channel?, since_ms: last.at_ms, by: last.by.clone() })
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(c) => {
                self.campaigns.insert(c.id.clone(), *c);
            }
            Change::Consent(c) => self.consent.entry(c.patient.clone()).or_default().push(c),
            Change::Run(r) => {
                for s in &r.sends {
                    if let Some(n) = &s.notice {
                        self.notices.insert(n.clone(), (r.campaign.clone(), s.patient.clone()));
                    }
                }
                self.runs.entry(r.campaign.clone()).or_default().push(*r);
            }
        }
    }

    /// The whole state as the changes that make it (a rewrite of the log).
    fn snapshot(&self) -> Vec<Change> {
        let campaigns = self.campaigns.values().map(|c| Change::Put(Box::new(c.clone())));
        let consent = self.consent.values().flatten().map(|c| Change::Consent(c.clone()));
        let runs = self.runs.values().flatten().map(|r| Change::Run(Box::new(r.clone())));
        campaigns.chain(consent).chain(runs).collect()
    }
}

pub struct CampaignStore {
    state: RwLock<State>,
    log: Mutex<StoreLog>,
}

impl CampaignStore {
    pub fn open(dir: &Path) -> anyhow::Result<CampaignStore> {
        let (log, changes) = JsonLog::open::<Change>(dir, "campaigns.log", *b"VCMP", 1)?;
        let mut state = State::default();
        for c in changes {
            state.apply(c);
        }
        Ok(CampaignStore { state: RwLock::new(state), log: Mutex::new(StoreLog::Local(log)) })
    }

    /// Cluster mode: the campaigns every node shares.
    pub fn open_shared(records: vitals_postgres::Records) -> anyhow::Result<CampaignStore> {
        let log = Mutex::new(StoreLog::Shared { records, name: "campaigns", applied: 0 });
        let s = CampaignStore { state: RwLock::default(), log };
        s.log.lock().refresh(|a| s.apply(a)).map_err(|e| anyhow::anyhow!(e))?;
        Ok(s)
    }

    fn apply(&self, a: Applied<Change>) {
        let mut st = self.state.write();
        match a {
            Applied::Reset => *st = State::default(),
            Applied::Record(c) => st.apply(c),
        }
    }

    /// Cluster mode: catches up with the other nodes' changes; a failure is logged.
    fn sync(&self) {
        self.log.lock().sync("campaign store", |a| self.apply(a));
    }

    fn write(&self, change: Change) -> Result<(), CampaignStoreError> {
        let mut log = self.log.lock();
        log.refresh(|a| self.apply(a)).map_err(CampaignStoreError::Io)?;
        log.write(change, |a| self.apply(a)).map_err(CampaignStoreError::Io)
    }

    /// Records a new campaign under the next id (`cp-<n>`); returns it.
    pub fn create(&self, mut c: Campaign) -> Result<Campaign, CampaignStoreError> {
        let mut log = self.log.lock();
        log.refresh(|a| self.apply(a)).map_err(CampaignStoreError::Io)?;
        let n = self
            .state
            .read()
            .campaigns
            .keys()
            .filter_map(|id| id.strip_prefix("cp-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        c.id = format!("cp-{}", n + 1);
        log.write(Change::Put(Box::new(c.clone())), |a| self.apply(a)).map_err(CampaignStoreError::Io)?;
        Ok(c)
    }

    /// Stops a campaign: no occurrence is sent after `now`. Cancelling twice keeps the
    /// first time.
    pub fn cancel(&self, id: &str, now: i64) -> Result<Campaign, CampaignStoreError> {
        let mut c = self.get(id).ok_or_else(|| CampaignStoreError::NotFound(id.to_owned()))?.0;
        if c.cancelled_ms.is_none() {
            c.cancelled_ms = Some(now);
            self.write(Change::Put(Box::new(c.clone())))?;
        }
        Ok(c)
    }

    /// Every campaign with its occurrences sent.
    pub fn list(&self) -> Vec<(Campaign, Vec<Run>)> {
        self.sync();
        let st = self.state.read();
        st.campaigns.values().map(|c| (c.clone(), st.runs.get(&c.id).cloned().unwrap_or_default())).collect()
    }

    pub fn get(&self, id: &str) -> Option<(Campaign, Vec<Run>)> {
        self.sync();
        let st = self.state.read();
        let c = st.campaigns.get(id)?.clone();
        Some((c, st.runs.get(id).cloned().unwrap_or_default()))
    }

    /// The last occurrence of `id` sent.
    pub fn last_run(&self, id: &str) -> Option<u32> {
        self.state.read().last_run(id)
    }

    /// Campaigns that may still send, with their last occurrence sent (for the campaign
    /// thread: no clone of the runs).
    pub fn live(&self) -> Vec<(Campaign, Option<u32>)> {
        self.sync();
        let st = self.state.read();
        st.campaigns.values().filter(|c| c.cancelled_ms.is_none()).map(|c| (c.clone(), st.last_run(&c.id))).collect()
    }

    pub fn record_run(&self, run: Run) -> Result<(), CampaignStoreError> {
        self.write(Change::Run(Box::new(run)))
    }

    /// The consent in force for `patient`.
    pub fn consent(&self, patient: &str) -> Option<Consent> {
        self.sync();
        self.state.read().consent(patient)
    }

    /// The consent in force for each of `patients` (one look at the shared log for all).
    pub fn consents<'a>(&self, patients: impl IntoIterator<Item = &'a String>) -> Vec<Option<Consent>> {
        self.sync();
        let st = self.state.read();
        patients.into_iter().map(|p| st.consent(p)).collect()
    }

    /// Every consent change of `patient`, oldest first.
    pub fn consent_history(&self, patient: &str) -> Vec<ConsentChange> {
        self.sync();
        self.state.read().consent.get(patient).cloned().unwrap_or_default()
    }

    pub fn set_consent(&self, change: ConsentChange) -> Result<(), CampaignStoreError> {
        self.write(Change::Consent(change))
    }

    /// The campaign and patient a notice was sent for.
    pub fn by_notice(&self, notice: &str) -> Option<(String, String)> {
        self.sync();
        self.state.read().notices.get(notice).cloned()
    }

    /// What `patient` was sent: each campaign and occurrence with their send, newest first.
    pub fn sent_to(&self, patient: &str) -> Vec<(Campaign, i64, SendRecord)> {
        self.sync();
        let st = self.state.read();
        let mut out: Vec<(Campaign, i64, SendRecord)> = st
            .runs
            .values()
            .flatten()
            .filter_map(|r| {
                let s = r.sends.iter().find(|s| s.patient == patient && s.notice.is_some())?;
                Some((st.campaigns.get(&r.campaign)?.clone(), r.at_ms, s.clone()))
            })
            .collect();
        out.sort_by_key(|(_, at, _)| std::cmp::Reverse(*at));
        out
    }

    /// Forgets `patient` (consent and sends) and rewrites the log without them; returns the
    /// ids of the notices they were sent, for the outbox to forget too.
    pub fn erase_patient(&self, patient: &str) -> Result<Vec<String>, CampaignStoreError> {
        let mut log = self.log.lock();
        log.refresh(|a| self.apply(a)).map_err(CampaignStoreError::Io)?;
        let mut st = self.state.write();
        st.consent.remove(patient);
        let mut notices = Vec::new();
        for r in st.runs.values_mut().flatten() {
            r.sends.retain(|s| {
                let theirs = s.patient == patient;
                if theirs && let Some(n) = &s.notice {
                    notices.push(n.clone());
                }
                !theirs
            });
        }
        st.notices.retain(|_, (_, p)| p != patient);
        log.rewrite(&st.snapshot()).map_err(CampaignStoreError::Io)?;
        Ok(notices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_alerts::campaign::Skipped;

    fn campaign() -> Campaign {
        Campaign {
            id: String::new(),
            name: "Walk more".into(),
            cohort: "ward-3".into(),
            subject: "A walking week".into(),
            message: "Ten minutes after lunch.".into(),
            start_ms: 1_000,
            every: None,
            until_ms: None,
            created_by: "u-1".into(),
            created_ms: 0,
            cancelled_ms: None,
        }
    }

    fn send(patient: &str, notice: Option<&str>) -> SendRecord {
        SendRecord {
            patient: patient.into(),
            notice: notice.map(str::to_owned),
            channel: notice.map(|_| Channel::Email),
            skipped: notice.is_none().then_some(Skipped::NotOptedIn),
        }
    }

    #[test]
    fn campaigns_consent_and_runs_survive_reopen_and_erasure_forgets_a_patient() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = CampaignStore::open(dir.path()).expect("open");
        let a = s.create(campaign()).expect("create");
        let b = s.create(campaign()).expect("create");
        assert_eq!((a.id.as_str(), b.id.as_str()), ("cp-1", "cp-2"));
        s.set_consent(ConsentChange {
            patient: "p-1".into(),
            channel: Some(Channel::Email),
            at_ms: 5,
            by: "user:ann".into(),
        })
        .expect("consent");
        s.set_consent(ConsentChange {
            patient: "p-2".into(),
            channel: Some(Channel::Sms),
            at_ms: 6,
            by: "user:bo".into(),
        })
        .expect("consent");
        s.set_consent(ConsentChange { patient: "p-2".into(), channel: None, at_ms: 7, by: "unsubscribe link".into() })
            .expect("withdraw");
        let run = Run {
            campaign: a.id.clone(),
            run: 0,
            at_ms: 1_000,
            sends: vec![send("p-1", Some("nt-1")), send("p-2", None)],
        };
        s.record_run(run.clone()).expect("run");
        s.cancel(&b.id, 2_000).expect("cancel");
        assert_eq!(s.cancel(&b.id, 3_000).expect("again").cancelled_ms, Some(2_000));
        drop(s);

        let s = CampaignStore::open(dir.path()).expect("reopen");
        assert_eq!(s.consent("p-1").map(|c| (c.channel, c.since_ms)), Some((Channel::Email, 5)));
        assert_eq!(s.consent("p-2"), None, "withdrawn");
        assert_eq!(s.consent_history("p-2").len(), 2);
        assert_eq!(s.get("cp-1").expect("cp-1").1, [run]);
        assert_eq!(s.last_run("cp-1"), Some(0));
        assert_eq!(s.live().iter().map(|(c, _)| c.id.as_str()).collect::<Vec<_>>(), ["cp-1"]);
        assert_eq!(s.by_notice("nt-1"), Some(("cp-1".into(), "p-1".into())));
        assert_eq!(s.sent_to("p-1").len(), 1);
        assert!(s.sent_to("p-2").is_empty(), "skipped is not sent");

        assert_eq!(s.erase_patient("p-1").expect("erase"), ["nt-1"]);
        drop(s);
        let s = CampaignStore::open(dir.path()).expect("reopen");
        assert_eq!((s.consent("p-1"), s.by_notice("nt-1")), (None, None));
        assert_eq!(s.get("cp-1").expect("cp-1").1[0].sends, [send("p-2", None)]);
        assert!(matches!(s.cancel("cp-9", 0), Err(CampaignStoreError::NotFound(_))));
    }
}
