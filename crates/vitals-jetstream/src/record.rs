//! A message's body: `VLG`, a version byte, then one write-ahead-log record payload
//! (`vitals_storage::wal::encode_record`) holding one bucket's samples of a write; or
//! `VLE`, a version byte, then a JSON array of one bucket's events (workouts, sleep,
//! treatments) of a write.

use vitals_core::{Catalog, Event, Sample};
use vitals_storage::log::LogError;
use vitals_storage::wal;

use crate::{JetStreamConfig, bucket_of};

const MAGIC: &[u8; 3] = b"VLG";
const EVENTS_MAGIC: &[u8; 3] = b"VLE";
const ERASE_MAGIC: &[u8; 3] = b"VLX";
/// The version of the erasure's encoding.
const ERASE_VERSION: u8 = 1;
/// The version of the events' encoding this build writes and reads.
const EVENTS_VERSION: u8 = 1;
/// Events one message holds at most (JSON nesting and sizes are bounded by the decoder
/// that made them; this bounds what a damaged or foreign message can make us allocate).
const MAX_EVENTS: usize = 10_000;

/// What a message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Samples(Vec<Sample>),
    Events(Vec<Event>),
    /// A patient erased: every node erases what it holds of them (what came before in the
    /// log; what comes after is new data).
    Erase {
        patient: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Erasure {
    patient: String,
}

/// The body of an erasure.
pub fn encode_erasure(patient: &str) -> Vec<u8> {
    let mut body = ERASE_MAGIC.to_vec();
    body.push(ERASE_VERSION);
    body.extend_from_slice(
        serde_json::to_string(&Erasure { patient: patient.to_owned() }).unwrap_or_else(|_| "{}".into()).as_bytes(),
    );
    body
}

/// Bytes a sample may take in a record, counted generously: time, value, its id, and the
/// header of a group in case it starts one.
fn size_of(s: &Sample, catalog: &Catalog) -> usize {
    let id = s.id.as_ref().map_or(0, |i| i.as_str().len());
    let device = s.device.as_ref().map_or(0, |d| d.as_str().len());
    8 + 8 + 1 + id + 4 + 3 + 1 + s.patient.as_str().len() + catalog.get(s.metric).code.len() + device
}

/// One write's samples as message bodies, by bucket (in the order buckets first appear),
/// each body under the configured size. Each patient's samples keep their order.
pub(crate) fn encode_by_bucket(
    samples: &[Sample],
    config: &JetStreamConfig,
    catalog: &Catalog,
) -> Vec<(u16, bytes::Bytes)> {
    let mut order: Vec<u16> = Vec::new();
    let mut by_bucket: std::collections::HashMap<u16, Vec<Sample>> = Default::default();
    for s in samples {
        let b = bucket_of(&s.patient, config.buckets);
        by_bucket
            .entry(b)
            .or_insert_with(|| {
                order.push(b);
                Vec::new()
            })
            .push(s.clone());
    }
    if samples.is_empty() {
        order.push(0);
        by_bucket.insert(0, Vec::new());
    }
    let limit = config.max_message_bytes.saturating_sub(64).max(1024);
    let mut out = Vec::new();
    for b in order {
        let Some(list) = by_bucket.remove(&b) else { continue };
        let mut start = 0;
        loop {
            let (mut end, mut bytes) = (start, 0);
            while end < list.len() && (end == start || bytes + size_of(&list[end], catalog) <= limit) {
                bytes += size_of(&list[end], catalog);
                end += 1;
            }
            out.push((b, bytes::Bytes::from(encode_message(&list[start..end], catalog))));
            if end >= list.len() {
                break;
            }
            start = end;
        }
    }
    out
}

/// One message's body holding `samples` (whatever their size: [`encode_by_bucket`] is
/// what cuts a write into messages).
pub fn encode_message(samples: &[Sample], catalog: &Catalog) -> Vec<u8> {
    let mut body = MAGIC.to_vec();
    body.push(wal::RECORD_VERSION as u8);
    wal::encode_record(&mut body, 0, samples, catalog);
    body
}

/// One write's events as message bodies, by bucket of their patient, each under the
/// configured size (an event larger than it alone in its message).
pub(crate) fn encode_events_by_bucket(events: &[Event], config: &JetStreamConfig) -> Vec<(u16, bytes::Bytes)> {
    let limit = config.max_message_bytes.saturating_sub(64).max(1024);
    let mut order: Vec<u16> = Vec::new();
    let mut by_bucket: std::collections::HashMap<u16, Vec<String>> = Default::default();
    for e in events {
        let b = crate::bucket_of_name(&e.patient, config.buckets);
        let json = serde_json::to_string(e).unwrap_or_else(|_| "null".into());
        by_bucket
            .entry(b)
            .or_insert_with(|| {
                order.push(b);
                Vec::new()
            })
            .push(json);
    }
    let mut out = Vec::new();
    for b in order {
        let Some(list) = by_bucket.remove(&b) else { continue };
        let mut body: Vec<u8> = Vec::new();
        let mut n = 0;
        for json in list {
            if n > 0 && (body.len() + json.len() + 2 > limit || n >= MAX_EVENTS) {
                body.push(b']');
                out.push((b, bytes::Bytes::from(std::mem::take(&mut body))));
                n = 0;
            }
            if n == 0 {
                body.extend_from_slice(EVENTS_MAGIC);
                body.push(EVENTS_VERSION);
                body.push(b'[');
            } else {
                body.push(b',');
            }
            body.extend_from_slice(json.as_bytes());
            n += 1;
        }
        if n > 0 {
            body.push(b']');
            out.push((b, bytes::Bytes::from(body)));
        }
    }
    out
}

/// One message's body holding `events`.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut body = EVENTS_MAGIC.to_vec();
    body.push(EVENTS_VERSION);
    body.extend_from_slice(serde_json::to_string(events).unwrap_or_else(|_| "[]".into()).as_bytes());
    body
}

/// What a message's body carries, or why it does not decode.
pub fn decode_any(body: &[u8], catalog: &Catalog) -> Result<Message, String> {
    if let Some(rest) = body.strip_prefix(ERASE_MAGIC) {
        let Some((&version, payload)) = rest.split_first() else { return Err("no version byte".into()) };
        if version != ERASE_VERSION {
            return Err(format!("erasure version {version}: this build reads {ERASE_VERSION}"));
        }
        let e: Erasure = serde_json::from_slice(payload).map_err(|e| format!("erasure: {e}"))?;
        vitals_core::PatientId::new(&e.patient).map_err(|why| format!("erasure: patient {:?} {why}", e.patient))?;
        return Ok(Message::Erase { patient: e.patient });
    }
    let Some(rest) = body.strip_prefix(EVENTS_MAGIC) else { return decode(body, catalog).map(Message::Samples) };
    let Some((&version, payload)) = rest.split_first() else { return Err("no version byte".into()) };
    if version != EVENTS_VERSION {
        return Err(format!("events version {version}: this build reads {EVENTS_VERSION}"));
    }
    let events: Vec<Event> = serde_json::from_slice(payload).map_err(|e| format!("events: {e}"))?;
    if events.len() > MAX_EVENTS {
        return Err(format!("{} events in one message: at most {MAX_EVENTS}", events.len()));
    }
    Ok(Message::Events(events))
}

/// The samples of a message's body, or why it does not decode.
pub fn decode(body: &[u8], catalog: &Catalog) -> Result<Vec<Sample>, String> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err("not a Vitals log message (no VLG or VLE header)".into());
    };
    let Some((&version, payload)) = rest.split_first() else { return Err("no version byte".into()) };
    if !wal::RECORD_VERSIONS.contains(&u32::from(version)) {
        return Err(format!("record version {version}: this build reads {:?}", wal::RECORD_VERSIONS));
    }
    wal::decode_record(payload, catalog, u32::from(version)).map(|r| r.samples)
}

/// 16 random hex digits: a handle's prefix for message ids.
pub(crate) fn random_hex() -> Result<String, LogError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| LogError::Remote { log: "message ids".into(), reason: format!("no randomness: {e}") })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_storage::log::conformance::sample;

    #[test]
    fn bodies_stay_under_the_limit_and_decode_to_each_buckets_samples_in_order() {
        let config = JetStreamConfig { max_message_bytes: 4096, buckets: 4, ..Default::default() };
        let c = Catalog::standard();
        let samples: Vec<Sample> = (0..2000).map(sample).collect();
        let bodies = encode_by_bucket(&samples, &config, c);
        assert!(bodies.len() > 4, "cut into many messages");
        let mut back: std::collections::HashMap<u16, Vec<Sample>> = Default::default();
        for (b, body) in &bodies {
            assert!(body.len() <= 4096, "{} bytes", body.len());
            back.entry(*b).or_default().extend(decode(body, c).expect("decodes"));
        }
        for (b, got) in back {
            let want: Vec<Sample> = samples.iter().filter(|s| bucket_of(&s.patient, 4) == b).cloned().collect();
            assert_eq!(got, want, "bucket {b}");
        }
    }

    fn event(patient: &str, i: usize) -> Event {
        Event {
            id: format!("e-{i}"),
            patient: patient.into(),
            kind: "workout".into(),
            start_ms: 1_700_000_000_000 + i as i64,
            end_ms: 1_700_000_060_000 + i as i64,
            source: "test".into(),
            attributes: [("name".to_owned(), serde_json::json!("x".repeat(i % 50)))].into(),
        }
    }

    #[test]
    fn events_go_by_bucket_under_the_limit_and_decode_back_in_order() {
        let config = JetStreamConfig { max_message_bytes: 4096, buckets: 4, ..Default::default() };
        let c = Catalog::standard();
        let events: Vec<Event> = (0..500).map(|i| event(&format!("p-{}", i % 7), i)).collect();
        let bodies = encode_events_by_bucket(&events, &config);
        assert!(bodies.len() > 4, "cut into many messages");
        let mut back: std::collections::HashMap<u16, Vec<Event>> = Default::default();
        for (b, body) in &bodies {
            assert!(body.len() <= 4096, "{} bytes", body.len());
            let Ok(Message::Events(got)) = decode_any(body, c) else { panic!("events decode") };
            back.entry(*b).or_default().extend(got);
        }
        for (b, got) in back {
            let want: Vec<Event> =
                events.iter().filter(|e| crate::bucket_of_name(&e.patient, 4) == b).cloned().collect();
            assert_eq!(got, want, "bucket {b}");
        }
        let one = encode_events(&events[..3]);
        assert_eq!(decode_any(&one, c), Ok(Message::Events(events[..3].to_vec())));
        let (_, samples) = encode_by_bucket(&[sample(1)], &config, c).remove(0);
        assert_eq!(decode_any(&samples, c), Ok(Message::Samples(vec![sample(1)])));
    }

    #[test]
    fn erasures_round_trip_and_damaged_ones_are_refused() {
        let c = Catalog::standard();
        assert_eq!(decode_any(&encode_erasure("p-7"), c), Ok(Message::Erase { patient: "p-7".into() }));
        assert!(decode_any(b"VLX\x02{}", c).expect_err("newer").contains("erasure version 2"));
        assert!(decode_any(b"VLX\x01{\"patient\": \"a b\"}", c).expect_err("not a pseudonym").contains("patient"));
        assert!(decode_any(b"VLX\x01{", c).is_err());
    }

    #[test]
    fn damaged_event_messages_are_refused_with_a_reason() {
        let c = Catalog::standard();
        assert!(decode_any(b"VLE", c).expect_err("no version").contains("version"));
        assert!(decode_any(b"VLE\x02[]", c).expect_err("newer").contains("events version 2"));
        assert!(decode_any(b"VLE\x01[{\"id\":1}]", c).expect_err("not an event").starts_with("events:"));
        assert!(decode_any(b"VLE\x01[", c).is_err(), "truncated");
    }

    #[test]
    fn foreign_or_damaged_bodies_are_refused_with_a_reason() {
        let c = Catalog::standard();
        assert!(decode(b"", c).expect_err("empty").contains("VLG"));
        assert!(decode(b"VLG", c).expect_err("no version").contains("version"));
        assert!(decode(b"VLG\x09", c).expect_err("newer").contains("version 9"));
        let config = JetStreamConfig::default();
        let (_, body) = encode_by_bucket(&[sample(1)], &config, c).remove(0);
        assert!(decode(&body[..body.len() - 3], c).is_err(), "truncated");
    }
}
