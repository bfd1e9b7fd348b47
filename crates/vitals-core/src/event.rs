//! Events: labelled intervals of a patient (a workout, a sleep stage, a treatment, a
//! button press), beside the samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One event. `id` is stable for the same event re-sent (from the sender's id or a hash of
/// its content), so re-sends replace rather than duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub patient: String,
    /// `workout`, `sleep`, `treatment`, `tag`...
    pub kind: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Which adapter it came from.
    pub source: String,
    /// Everything else the sender said, as given (names, energies, stages, carbs...).
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// When it last changed: the `srvModified` attribute (ms) the server stamps on every
    /// change of a document, else its start.
    pub fn changed_ms(&self) -> i64 {
        self.attributes.get("srvModified").and_then(serde_json::Value::as_i64).unwrap_or(self.start_ms)
    }

    /// A stable id from the event's content, for senders that give none.
    pub fn content_id(patient: &str, kind: &str, start_ms: i64, end_ms: i64, extra: &str) -> String {
        // FNV-1a: stable across builds and platforms (unlike the std hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [patient, kind, &start_ms.to_string(), &end_ms.to_string(), extra].join("\u{1f}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{kind}-{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_are_stable_and_distinct() {
        let a = Event::content_id("p", "sleep", 1, 2, "core");
        assert_eq!(a, Event::content_id("p", "sleep", 1, 2, "core"));
        assert_ne!(a, Event::content_id("p", "sleep", 1, 2, "deep"));
        assert!(a.starts_with("sleep-"));
    }
}
