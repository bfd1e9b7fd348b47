//! Which patient buckets this node owns, as the last heartbeat found, and until when.
//!
//! The alerting thread asks [`Ownership::owns`] for each patient; a lease this node could
//! not renew in time counts as lost (another node may own it by now), so a node cut off
//! from PostgreSQL stops evaluating rather than raise alerts twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use vitals_core::PatientId;
use vitals_postgres::{Fence, Tenure};

/// This node's buckets.
#[derive(Debug)]
pub struct Ownership {
    /// This node's name (the leases' owner).
    node: String,
    buckets: u16,
    state: RwLock<State>,
    /// Incremented whenever the set of owned buckets changes.
    version: AtomicU64,
    live_nodes: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// Bucket -> the epoch of this node's tenure.
    owned: BTreeMap<u16, i64>,
    until: Option<Instant>,
}

impl Ownership {
    pub fn new(buckets: u16, node: &str) -> Ownership {
        Ownership {
            node: node.to_owned(),
            buckets,
            state: Default::default(),
            version: AtomicU64::new(0),
            live_nodes: AtomicUsize::new(0),
        }
    }

    /// The fence of a write about `patients`: their buckets at this node's epochs; `None`
    /// when one of them is not (or no longer surely) this node's.
    pub fn fence<'a>(&self, patients: impl IntoIterator<Item = &'a str>) -> Option<Fence> {
        let st = self.state.read();
        if st.until.is_none_or(|u| Instant::now() >= u) {
            return None;
        }
        let mut leases: Vec<(u16, i64)> = Vec::new();
        for p in patients {
            let bucket = vitals_jetstream::bucket_of(&PatientId::new(p).ok()?, self.buckets);
            let epoch = *st.owned.get(&bucket)?;
            if !leases.contains(&(bucket, epoch)) {
                leases.push((bucket, epoch));
            }
        }
        Some(Fence { node: self.node.clone(), leases })
    }

    /// Takes in what a heartbeat found.
    pub fn update(&self, tenure: &Tenure) {
        let owned: BTreeMap<u16, i64> = tenure.owned.iter().map(|o| (o.bucket, o.epoch)).collect();
        let mut st = self.state.write();
        if st.owned != owned {
            st.owned = owned;
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        st.until = Some(tenure.until);
        self.live_nodes.store(tenure.live_nodes, Ordering::Relaxed);
    }

    /// Drops every bucket (leases lost, or released at shutdown).
    pub fn clear(&self) {
        let mut st = self.state.write();
        if !st.owned.is_empty() {
            st.owned.clear();
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        st.until = None;
    }

    /// Whether the leases are still surely held now.
    pub fn valid(&self) -> bool {
        self.state.read().until.is_some_and(|u| Instant::now() < u)
    }

    /// Whether this node evaluates `patient`'s rules now.
    pub fn owns(&self, patient: &str) -> bool {
        let Ok(p) = PatientId::new(patient) else { return false };
        self.owns_bucket(vitals_jetstream::bucket_of(&p, self.buckets))
    }

    /// Whether this node owns `bucket` now.
    pub fn owns_bucket(&self, bucket: u16) -> bool {
        let st = self.state.read();
        st.until.is_some_and(|u| Instant::now() < u) && st.owned.contains_key(&bucket)
    }

    /// The buckets owned, by number.
    pub fn owned(&self) -> Vec<u16> {
        self.state.read().owned.keys().copied().collect()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn buckets(&self) -> u16 {
        self.buckets
    }

    pub fn live_nodes(&self) -> usize {
        self.live_nodes.load(Ordering::Relaxed)
    }
}
