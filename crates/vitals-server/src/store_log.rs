//! The log under a small store (alerts and their outbox, rules, cohorts): an append-only
//! file in the data directory on one node, the table every node shares in cluster mode.
//!
//! A store keeps its state in memory and changes it only through [`StoreLog::write`] and
//! [`StoreLog::refresh`], which hand it the records to apply in the log's order: on one
//! node, the record just written; in cluster mode, every record appended since the last
//! look, this node's and the others', so every node applies the same records in the same
//! order. [`StoreLog::rewrite`] replaces the whole log (compaction, a patient's erasure):
//! in cluster mode it starts with a reset that makes every node drop its state first.

use serde::Serialize;
use serde::de::DeserializeOwned;
use vitals_postgres::records::Entry;
use vitals_postgres::{Fence, Records};
use vitals_storage::json_log::JsonLog;

/// What a store applies.
#[derive(Debug)]
pub enum Applied<T> {
    /// Forget the state: the records that follow are the whole log.
    Reset,
    Record(T),
}

/// A small store's log.
pub enum StoreLog {
    Local(JsonLog),
    /// Cluster mode: the log `name` of the shared table, and the last position applied.
    Shared {
        records: Records,
        name: &'static str,
        applied: u64,
    },
}

impl StoreLog {
    /// Writes `record` durably and applies what comes with it, in order.
    pub fn write<T: Serialize + DeserializeOwned>(
        &mut self,
        record: T,
        apply: impl FnMut(Applied<T>),
    ) -> Result<(), String> {
        self.write_fenced(record, None, apply)
    }

    /// [`write`](Self::write); in cluster mode refused, with nothing written, unless the
    /// fence's bucket leases are still this node's (a late write of a node whose buckets
    /// moved never lands; one node ignores the fence).
    pub fn write_fenced<T: Serialize + DeserializeOwned>(
        &mut self,
        record: T,
        fence: Option<&Fence>,
        apply: impl FnMut(Applied<T>),
    ) -> Result<(), String> {
        match self {
            StoreLog::Local(log) => {
                log.append(&record).map_err(|e| e.to_string())?;
                let mut apply = apply;
                apply(Applied::Record(record));
                Ok(())
            }
            StoreLog::Shared { records, name, .. } => {
                let body = serde_json::to_string(&record).map_err(|e| e.to_string())?;
                records.append_fenced(name, &[body], fence).map_err(|e| e.to_string())?;
                self.refresh(apply)
            }
        }
    }

    /// Cluster mode: applies what was appended since the last look (nothing on one node).
    pub fn refresh<T: DeserializeOwned>(&mut self, mut apply: impl FnMut(Applied<T>)) -> Result<(), String> {
        let StoreLog::Shared { records, name, applied } = self else { return Ok(()) };
        loop {
            let batch = records.since(name, *applied, 1000).map_err(|e| e.to_string())?;
            let Some(&(last, _)) = batch.last() else { return Ok(()) };
            for (seq, entry) in batch {
                match entry {
                    Entry::Reset => apply(Applied::Reset),
                    Entry::Record(body) => apply(Applied::Record(
                        serde_json::from_str(&body).map_err(|e| format!("shared log {name} record {seq}: {e}"))?,
                    )),
                }
            }
            *applied = last;
        }
    }

    /// [`refresh`](Self::refresh) before an answer: a failure is logged (naming `store`)
    /// and the state answers as it is.
    pub fn sync<T: DeserializeOwned>(&mut self, store: &str, apply: impl FnMut(Applied<T>)) {
        if self.is_shared()
            && let Err(e) = self.refresh(apply)
        {
            tracing::error!(error = %e, "{store}: reading the shared log");
        }
    }

    /// Replaces the log by `records` (the caller's state is already what they say).
    pub fn rewrite<T: Serialize>(&mut self, records: &[T]) -> Result<(), String> {
        match self {
            StoreLog::Local(log) => log.rewrite(records).map_err(|e| e.to_string()),
            StoreLog::Shared { records: shared, name, applied } => {
                let bodies = records.iter().map(serde_json::to_string).collect::<Result<Vec<String>, _>>();
                let bodies = bodies.map_err(|e| e.to_string())?;
                *applied = shared.reset(name, &bodies).map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }

    /// Bytes of the local file (0 for the shared log, which PostgreSQL keeps).
    pub fn len_bytes(&self) -> u64 {
        match self {
            StoreLog::Local(log) => log.len_bytes(),
            StoreLog::Shared { .. } => 0,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLog::Shared { .. })
    }
}

#[cfg(test)]
mod tests {
    //! The small stores as two cluster nodes see them, over a real PostgreSQL (started by
    //! scripts/test, `VITALS_TEST_POSTGRES`).

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use vitals_alerts::{Alert, AlertState};
    use vitals_postgres::{Pool, Records};

    use crate::alert_store::AlertStore;
    use crate::cohort_store::CohortStore;
    use crate::rule_store::RuleStore;

    fn records() -> Records {
        open().1
    }

    /// A fresh schema's pool and shared logs.
    fn open() -> (Arc<Pool>, Records, String) {
        let url = std::env::var("VITALS_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!("VITALS_TEST_POSTGRES is not set: run the tests with ./scripts/test, which starts PostgreSQL")
        });
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let schema = format!("s{}_{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let pool = Pool::connect(&url, &schema, 2).expect("connect");
        let records = Records::open(Arc::clone(&pool), &schema).expect("records");
        (pool, records, schema)
    }

    #[test]
    fn an_alert_decided_by_a_node_that_lost_the_bucket_is_not_recorded() {
        use crate::cluster::ownership::Ownership;
        let (pool, shared, schema) = open();
        let ttl = std::time::Duration::from_secs(60);
        let leases = vitals_postgres::Leases::open(Arc::clone(&pool), &schema, 4, ttl).expect("leases");
        let a = Ownership::new(4, "a");
        a.update(&leases.heartbeat("a", "x").expect("heartbeat"));
        let store = AlertStore::open_shared(shared.clone()).expect("node a");
        let alert = |id: &str| Alert { id: id.into(), rule: "hr".into(), patient: "p-1".into(), ..Alert::default() };
        let fence = a.fence(["p-1"]).expect("a owns p-1's bucket");
        store.commit_fenced(vec![alert("al-1")], Vec::new(), Some(&fence)).expect("while a holds it");
        // a hands its buckets over (as at a clean stop, or once its leases expire); b takes them.
        leases.release_all("a").expect("release");
        let b = Ownership::new(4, "b");
        b.update(&leases.heartbeat("b", "y").expect("heartbeat"));
        assert!(b.fence(["p-1"]).is_some(), "b owns it now");
        let late = store.commit_fenced(vec![alert("al-2")], Vec::new(), Some(&fence));
        assert!(late.is_err(), "a's late decision is refused");
        let seen = AlertStore::open_shared(shared).expect("another node");
        assert!(seen.get("al-1").is_some() && seen.get("al-2").is_none(), "only the holder's alert is there");
        assert!(store.get("al-2").is_none(), "nor on a itself");
        assert!(Ownership::new(4, "c").fence(["p-1"]).is_none(), "a node without leases has no fence");
    }

    #[test]
    fn what_one_node_changes_every_node_sees_and_an_erasure_reaches_them_all() {
        let shared = records();
        let (c1, c2) = (
            CohortStore::open_shared(shared.clone()).expect("node 1"),
            CohortStore::open_shared(shared.clone()).expect("node 2"),
        );
        let v = c2.version();
        assert!(c1.put("ward-3", BTreeSet::from(["p-1".to_owned(), "p-2".to_owned()])).expect("put"));
        assert!(c2.contains("ward-3", "p-2"), "node 2 sees node 1's cohort");
        assert!(c2.version() > v, "and its version moved, so its alerting re-reads rules");
        assert!(!c2.put("ward-3", BTreeSet::from(["p-1".to_owned()])).expect("replace"), "not new on node 2 either");
        assert!(!c1.contains("ward-3", "p-2"));

        let spec = |name: &str, expr: &str| -> vitals_rules::RuleSpec {
            serde_json::from_value(serde_json::json!({"name": name, "expr": expr})).expect("spec")
        };
        let (r1, r2) = (
            RuleStore::open_shared(shared.clone(), &[], &[]).expect("node 1"),
            RuleStore::open_shared(shared.clone(), &[], &[]).expect("node 2"),
        );
        r1.put(spec("hr", "heart_rate > 120"), true).expect("put");
        assert!(r2.put(spec("hr", "heart_rate > 130"), true).is_err(), "node 2 knows the name is taken");
        r2.delete("hr").expect("node 2 deletes node 1's rule");
        assert!(r1.get("hr").is_none());

        let (a1, a2) = (
            AlertStore::open_shared(shared.clone()).expect("node 1"),
            AlertStore::open_shared(shared.clone()).expect("node 2"),
        );
        let alert = |id: &str, patient: &str| Alert {
            id: id.into(),
            rule: "hr".into(),
            patient: patient.into(),
            state: AlertState::Open,
            ..Alert::default()
        };
        a1.commit(vec![alert("al-1", "p-1"), alert("al-2", "p-2")], Vec::new()).expect("commit");
        let acked = a2.ack("al-1", "user:ann", 5).expect("node 2 acknowledges node 1's alert");
        assert_eq!(a1.get("al-1").map(|a| a.state), Some(acked.state));
        assert_eq!(a2.erase_patient("p-1", &[]).expect("erase"), (1, 0));
        assert!(a1.get("al-1").is_none(), "node 1 forgets the erased patient's alert");
        assert!(a1.get("al-2").is_some(), "and keeps the others");
        assert_eq!(c2.erase_patient("p-1").expect("erase"), 1);
        assert!(c1.members("ward-3").expect("cohort").is_empty());
        // A node that starts later reads the same state.
        let a3 = AlertStore::open_shared(shared.clone()).expect("node 3");
        assert_eq!(a3.list(None, None, i64::MIN, i64::MAX).len(), 1);

        // Campaigns: made on one node, consent given on the other, both see both.
        use crate::campaign_store::{CampaignStore, ConsentChange};
        let (k1, k2) = (
            CampaignStore::open_shared(shared.clone()).expect("node 1"),
            CampaignStore::open_shared(shared).expect("node 2"),
        );
        let c = vitals_alerts::campaign::Campaign {
            id: String::new(),
            name: "Walk".into(),
            cohort: "ward-3".into(),
            subject: "s".into(),
            message: "m".into(),
            start_ms: 0,
            every: None,
            until_ms: None,
            created_by: "u-1".into(),
            created_ms: 0,
            cancelled_ms: None,
        };
        assert_eq!(k1.create(c.clone()).expect("create").id, "cp-1");
        assert_eq!(k2.create(c).expect("create on node 2").id, "cp-2", "node 2 knows cp-1 is taken");
        let email = Some(vitals_alerts::Channel::Email);
        k2.set_consent(ConsentChange { patient: "p-2".into(), channel: email, at_ms: 1, by: "user:bo".into() })
            .expect("consent");
        assert_eq!(k1.consent("p-2").map(|c| c.channel), email);
        assert_eq!(k1.live().len(), 2);
    }
}
