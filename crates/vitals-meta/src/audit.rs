//! The audit log's records and its hash chain.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's fields in a
//! fixed, length-prefixed encoding, so changing, inserting or removing an entry anywhere but
//! at the very end breaks every later link. The chain starts from 64 zeros. Removing
//! entries from the end is detected against the head the store keeps apart (see
//! [`crate::MetaStore::audit_head`]), which an operator can also copy elsewhere.
//!
//! Whoever can write the database could recompute a whole SHA-256 chain. With an
//! [`AuditKey`] (a secret kept outside the database), entries from the key's first
//! sequence number on are HMAC-SHA256 under it instead: a chain rewritten without the key
//! no longer verifies.

use hmac::{Hmac, Mac};
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

/// The fields an entry's hash covers, length-prefixed.
fn encoded(prev: &str, seq: i64, e: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
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
    out
}

/// The hash of an entry given its predecessor's (SHA-256: no key).
pub fn chain_hash(prev: &str, seq: i64, e: &AuditEvent) -> String {
    hex::encode(Sha256::digest(encoded(prev, seq, e)))
}

/// The hash of entry `seq`: HMAC-SHA256 under `key` from the key's first entry on, else
/// [`chain_hash`].
pub fn entry_hash(key: Option<&AuditKey>, prev: &str, seq: i64, e: &AuditEvent) -> String {
    match key {
        Some(k) if seq >= k.from_seq => {
            // HMAC takes a key of any length: this cannot fail.
            let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&k.key) else { return chain_hash(prev, seq, e) };
            mac.update(&encoded(prev, seq, e));
            hex::encode(mac.finalize().into_bytes())
        }
        _ => chain_hash(prev, seq, e),
    }
}

/// The audit chain's key: 256 random bits, and the first entry it covers (entries before it
/// were written before the key existed). Kept in a file outside the database.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey {
    key: [u8; 32],
    pub from_seq: i64,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey").field("from_seq", &self.from_seq).finish_non_exhaustive()
    }
}

const KEY_FILE_TAG: &str = "vitals-audit-key-v1";

impl AuditKey {
    /// A new random key for the entries from `from_seq` on.
    pub fn generate(from_seq: i64) -> Result<AuditKey, crate::MetaError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| crate::MetaError::Crypto(format!("no randomness available: {e}")))?;
        Ok(AuditKey { key, from_seq })
    }

    /// A key for another purpose, derived from this one (HMAC-SHA256 of `purpose`), so the
    /// server has one secret file, yet no use of a derived key reveals the audit key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("invariant: HMAC accepts any key length");
        mac.update(b"vitals-derived-key\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The key file's text: `vitals-audit-key-v1 <first entry> <64 hex digits>`.
    pub fn render(&self) -> String {
        format!("{KEY_FILE_TAG} {} {}\n", self.from_seq, hex::encode(self.key))
    }

    /// Reads a key file's text.
    pub fn parse(text: &str) -> Result<AuditKey, String> {
        let mut parts = text.split_whitespace();
        if parts.next() != Some(KEY_FILE_TAG) {
            return Err(format!("not an audit key file (it starts with {KEY_FILE_TAG})"));
        }
        let from_seq = parts
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s >= 1)
            .ok_or("the first entry it covers is missing or not a positive number")?;
        let key = parts
            .next()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("the key is not 64 hex digits")?;
        if parts.next().is_some() {
            return Err("unexpected text after the key".into());
        }
        Ok(AuditKey { key, from_seq })
    }
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
pub fn verify_run(
    mut prev: (i64, String),
    entries: &[AuditEntry],
    key: Option<&AuditKey>,
) -> Result<(i64, String), ChainBreak> {
    for e in entries {
        if e.seq != prev.0 + 1 {
            return Err(ChainBreak::Gap { seq: e.seq, prev_seq: prev.0 });
        }
        if e.prev != prev.1 {
            return Err(ChainBreak::Unlinked { seq: e.seq, prev_seq: prev.0 });
        }
        if entry_hash(key, &e.prev, e.seq, &e.event) != e.hash {
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
        assert_eq!(verify_run((0, GENESIS.into()), &c, None).map(|h| h.0), Ok(5));
        let mut changed = c.clone();
        changed[2].event.actor = "user:b".into();
        assert_eq!(verify_run((0, GENESIS.into()), &changed, None), Err(ChainBreak::Altered { seq: 3 }));
        // Rewriting the entry's own hash too breaks the next link instead.
        changed[2].hash = chain_hash(&changed[2].prev, 3, &changed[2].event);
        assert_eq!(verify_run((0, GENESIS.into()), &changed, None), Err(ChainBreak::Unlinked { seq: 4, prev_seq: 3 }));
        let mut removed = c.clone();
        removed.remove(1);
        assert_eq!(verify_run((0, GENESIS.into()), &removed, None), Err(ChainBreak::Gap { seq: 3, prev_seq: 1 }));
    }

    #[test]
    fn a_chain_rewritten_without_the_key_does_not_verify() {
        let key = AuditKey::generate(3).expect("key");
        // Entries 1-2 from before the key, 3-5 keyed.
        let mut c: Vec<AuditEntry> = Vec::new();
        for seq in 1..=5 {
            let prev = c.last().map_or(GENESIS.to_string(), |e| e.hash.clone());
            let event = AuditEvent { ts_ms: seq, actor: "user:a".into(), ..Default::default() };
            c.push(AuditEntry { seq, hash: entry_hash(Some(&key), &prev, seq, &event), prev, event });
        }
        assert_eq!(verify_run((0, GENESIS.into()), &c, Some(&key)).map(|h| h.0), Ok(5));
        assert_eq!(c[1].hash, chain_hash(&c[1].prev, 2, &c[1].event), "before the key: plain SHA-256");
        // A database writer changes entry 4 and recomputes every keyed hash, without the key.
        let mut forged = c.clone();
        forged[3].event.actor = "user:mallory".into();
        for i in 2..5 {
            forged[i].prev = forged[i - 1].hash.clone();
            forged[i].hash = chain_hash(&forged[i].prev, forged[i].seq, &forged[i].event);
        }
        assert_eq!(verify_run((0, GENESIS.into()), &forged, None).map(|h| h.0), Ok(5), "consistent as SHA-256");
        assert_eq!(verify_run((0, GENESIS.into()), &forged, Some(&key)), Err(ChainBreak::Altered { seq: 3 }));
        // Another key does not verify either.
        let other = AuditKey::generate(3).expect("key");
        assert_eq!(verify_run((0, GENESIS.into()), &c, Some(&other)), Err(ChainBreak::Altered { seq: 3 }));
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_refused() {
        let key = AuditKey::generate(42).expect("key");
        assert_eq!(AuditKey::parse(&key.render()), Ok(key.clone()));
        assert!(!format!("{key:?}").contains(&hex::encode(key.key)), "the key never reaches a log");
        for bad in ["", "vitals-audit-key-v1", "vitals-audit-key-v1 0 00", "other 1 00", "vitals-audit-key-v1 1 abcd"] {
            assert!(AuditKey::parse(bad).is_err(), "{bad:?}");
        }
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
