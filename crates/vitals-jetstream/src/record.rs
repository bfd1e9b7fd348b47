//! A message's body: `VLG`, a version byte, then one write-ahead-log record payload
//! (`vitals_storage::wal::encode_record`) holding one bucket's samples of a write.

use vitals_core::{Catalog, Sample};
use vitals_storage::log::LogError;
use vitals_storage::wal;

use crate::{JetStreamConfig, bucket_of};

const MAGIC: &[u8; 3] = b"VLG";

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

/// The samples of a message's body, or why it does not decode.
pub fn decode(body: &[u8], catalog: &Catalog) -> Result<Vec<Sample>, String> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err("not a Vitals log message (no VLG header)".into());
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
