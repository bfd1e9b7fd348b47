//! The audit log's records and its hash chain.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's fields in a
//! fixed, length-prefixed encoding, so changing, inserting or removing an entry anywhere but
//! at the very end breaks every later link. The chain starts from 64 zeros. Removing
//! entries from the end is detected against the head the store keeps apart (see
//! [`crate::MetaStore::audit_head`]), which an operator can also copy elsewhere.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it gets its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditEvent {
    pub ts_ms: i64,
    /// Who: `user:<name>`, `token:<id>`, `device:<id>`, `cli`, `system`, `anonymous`.
    pub actor: String,
    /// What: a dotted verb such as `patient.read`, `identity.update`, `login.failed`.
    pub action: String,
    /// The patient concerned, if any.
    pub patient: Option<String>,
    /// The object acted on (a route, a token id, a user name...).
    pub target: String,
    /// From where: the client's address, or `cli`.
    pub origin: String,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
}

/// An entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev: String,
    pub hash: String,
}

/// The hash of an entry given its predecessor's.
pub fn chain_hash(prev: &str, seq: i64, e: &AuditEvent) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(prev.as_bytes());
    field(&seq.to_be_bytes());
    field(&e.ts_ms.to_be_bytes());
    field(e.actor.as_bytes());
    field(e.action.as_bytes());
    match &e.patient {
        Some(p) => field(format!("+{p}").as_bytes()),
        None => field(b"-"),
    }
    field(e.target.as_bytes());
    field(e.origin.as_bytes());
    field(e.outcome.as_bytes());
    hex::encode(h.finalize())
}

/// Where verification found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq}: its hash does not match its content (the entry was changed)")]
    Altered { seq: i64 },
    #[error("entry {seq}: it does not follow entry {prev_seq} (an entry was removed, inserted or changed)")]
    Unlinked { seq: i64, prev_seq: i64 },
    #[error("entry {seq}: sequence numbers jump from {prev_seq} (entries were removed)")]
    Gap { seq: i64, prev_seq: i64 },
    #[error(
        "the chain ends at entry {last} with {hash_found}, but its recorded head is entry {head_seq} ({head_hash}): entries were removed from the end"
    )]
    Truncated { last: i64, hash_found: String, head_seq: i64, head_hash: String },
}

/// Checks consecutive entries (in sequence order) continuing from `(prev_seq, prev_hash)`,
/// and returns the last `(seq, hash)`.
pub fn verify_run(mut prev: (i64, String), entries: &[AuditEntry]) -> Result<(i64, String), ChainBreak> {
    for e in entries {
        if e.seq != prev.0 + 1 {
            return Err(ChainBreak::Gap { seq: e.seq, prev_seq: prev.0 });
        }
        if e.prev != prev.1 {
            return Err(ChainBreak::Unlinked { seq: e.seq, prev_seq: prev.0 });
        }
        if chain_hash(&e.prev, e.seq, &e.event) != e.hash {
            return Err(ChainBreak::Altered { seq: e.seq });
        }
        prev = (e.seq, e.hash.clone());
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, prev: &str, actor: &str) -> AuditEntry {
        let event = AuditEvent { ts_ms: seq, actor: actor.into(), action: "patient.read".into(), ..Default::default() };
        AuditEntry { seq, hash: chain_hash(prev, seq, &event), prev: prev.into(), event }
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_string(), |e| e.hash.clone());
            out.push(entry(seq, &prev, "user:a"));
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_is_located() {
        let c = chain(5);
        assert_eq!(verify_run((0, GENESIS.into()), &c).map(|h| h.0), Ok(5));
        let mut changed = c.clone();
        changed[2].event.actor = "user:b".into();
        assert_eq!(verify_run((0, GENESIS.into()), &changed), Err(ChainBreak::Altered { seq: 3 }));
        // Rewriting the entry's own hash too breaks the next link instead.
        changed[2].hash = chain_hash(&changed[2].prev, 3, &changed[2].event);
        assert_eq!(verify_run((0, GENESIS.into()), &changed), Err(ChainBreak::Unlinked { seq: 4, prev_seq: 3 }));
        let mut removed = c.clone();
        removed.remove(1);
        assert_eq!(verify_run((0, GENESIS.into()), &removed), Err(ChainBreak::Gap { seq: 3, prev_seq: 1 }));
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = AuditEvent { actor: "ab".into(), action: "c".into(), ..Default::default() };
        let b = AuditEvent { actor: "a".into(), action: "bc".into(), ..Default::default() };
        assert_ne!(chain_hash(GENESIS, 1, &a), chain_hash(GENESIS, 1, &b));
        let none = AuditEvent::default();
        let empty = AuditEvent { patient: Some(String::new()), ..Default::default() };
        assert_ne!(chain_hash(GENESIS, 1, &none), chain_hash(GENESIS, 1, &empty));
    }
}
