//! Framed record files, shared by the write-ahead log and the manifest log.
//!
//! Layout: an 8-byte header (`magic[4]`, `version: u32 LE`), then records, each
//! `len: u32 LE | crc32c-ish (crc32 IEEE) of payload: u32 LE | payload[len]`.
//! A record that runs past the end of the file, or whose checksum fails with no valid
//! record after it, is a torn tail (the last write before a crash). A bad record followed
//! by a valid one is corruption in the middle, which is never silently skipped.

use std::fmt;

/// Size of the file header.
pub const HEADER_LEN: usize = 8;
/// Size of a record's frame (length + checksum).
pub const FRAME_LEN: usize = 8;
/// Largest payload accepted; a larger length field is treated as damage.
pub const MAX_RECORD_LEN: usize = 256 * 1024 * 1024;

/// The header of a record file.
pub fn header(magic: [u8; 4], version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&magic);
    h[4..].copy_from_slice(&version.to_le_bytes());
    h
}

/// Appends one framed record to `out`.
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a record whose payload is written by `fill` directly into `out` (no copy).
pub fn encode_with(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    fill(out);
    let len = (out.len() - start - FRAME_LEN) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// How a scan of a record file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belonged to a valid record.
    Clean,
    /// The last record was incomplete or damaged; valid data ends at `offset`.
    Torn { offset: u64 },
    /// A damaged record at `offset` is followed by valid data.
    Corrupt { offset: u64, reason: String },
}

/// Why a record file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic([u8; 4]),
    UnsupportedVersion(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => f.write_str("file is shorter than its header"),
            Self::BadMagic(m) => write!(f, "bad magic {m:?}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

/// The records of a file: payload offsets (of each frame) and payloads, and how it ended.
#[derive(Debug)]
pub struct Scan<'a> {
    pub records: Vec<(u64, &'a [u8])>,
    pub tail: Tail,
    /// The header's format version (the newest accepted one for a file cut inside it).
    pub version: u32,
}

/// Checks the header and splits a file's bytes into records.
pub fn scan(bytes: &[u8], magic: [u8; 4], version: u32) -> Result<Scan<'_>, HeaderError> {
    scan_versions(bytes, magic, &[version])
}

/// [`scan`] of a format that still reads files of older `versions` (the newest last).
pub fn scan_versions<'a>(bytes: &'a [u8], magic: [u8; 4], versions: &[u32]) -> Result<Scan<'a>, HeaderError> {
    let newest = versions.last().copied().unwrap_or(0);
    if bytes.len() < HEADER_LEN {
        // A file cut before its header was complete holds no acknowledged data.
        if magic.starts_with(&bytes[..bytes.len().min(4)]) {
            return Ok(Scan { records: Vec::new(), tail: Tail::Torn { offset: 0 }, version: newest });
        }
        return Err(HeaderError::Short);
    }
    let mut m = [0u8; 4];
    m.copy_from_slice(&bytes[..4]);
    if m != magic {
        return Err(HeaderError::BadMagic(m));
    }
    let v = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if !versions.contains(&v) {
        return Err(HeaderError::UnsupportedVersion(v));
    }
    let mut records = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Ok(payload) => {
                records.push((pos as u64, payload));
                pos += FRAME_LEN + payload.len();
            }
            Err(reason) => {
                let tail = match next_valid_record(bytes, pos + 1) {
                    Search::Found(next) => Tail::Corrupt {
                        offset: pos as u64,
                        reason: format!("{reason}; a valid record follows at offset {next}"),
                    },
                    Search::GaveUp(at) => Tail::Corrupt {
                        offset: pos as u64,
                        reason: format!(
                            "{reason}; the {} bytes after offset {at} could not all be searched for a valid record, so this is treated as damage, not a torn write",
                            bytes.len() - at
                        ),
                    },
                    Search::None => Tail::Torn { offset: pos as u64 },
                };
                return Ok(Scan { records, tail, version: v });
            }
        }
    }
    Ok(Scan { records, tail: Tail::Clean, version: v })
}

fn record_at(bytes: &[u8], pos: usize) -> Result<&[u8], &'static str> {
    let frame = bytes.get(pos..pos + FRAME_LEN).ok_or("incomplete record frame")?;
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if len == 0 || len > MAX_RECORD_LEN {
        return Err("implausible record length");
    }
    let payload = bytes.get(pos + FRAME_LEN..pos + FRAME_LEN + len).ok_or("record runs past the end of the file")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// The most bytes checksummed while looking for a valid record after a bad one: every
/// offset is a candidate, and checksumming each candidate's claimed length could take hours
/// on a large damaged file. A torn write (a short tail) never comes near it.
pub const MAX_SEARCH_BYTES: usize = 256 << 20;

enum Search {
    Found(usize),
    /// No valid record anywhere after: the bad record was the end (a torn write).
    None,
    /// The budget ran out at this offset.
    GaveUp(usize),
}

/// Looks for any valid record starting after `from` (only on the failure path), within
/// [`MAX_SEARCH_BYTES`] of checksumming.
fn next_valid_record(bytes: &[u8], from: usize) -> Search {
    let mut budget = MAX_SEARCH_BYTES;
    for p in from..bytes.len().saturating_sub(FRAME_LEN) {
        let len = u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize;
        if len == 0 || len > MAX_RECORD_LEN || p + FRAME_LEN + len > bytes.len() {
            continue;
        }
        if len > budget {
            return Search::GaveUp(p);
        }
        budget -= len;
        if record_at(bytes, p).is_ok() {
            return Search::Found(p);
        }
    }
    Search::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAGIC: [u8; 4] = *b"TEST";

    fn file(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut out = header(MAGIC, 1).to_vec();
        let mut ends = Vec::new();
        for p in payloads {
            encode(&mut out, p);
            ends.push(out.len());
        }
        (out, ends)
    }

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..6)
    }

    #[test]
    fn damage_early_in_a_large_file_is_found_quickly_not_searched_for_hours() {
        // A good record, then 64 MiB in which every offset claims a plausible length.
        let (mut bytes, _) = file(&[b"good".to_vec()]);
        let damaged_at = bytes.len();
        for _ in 0..(16 << 20) {
            bytes.extend_from_slice(&[0, 0, 0x40, 0]);
        }
        // (Without the budget this scan runs for hours.)
        let s = scan(&bytes, MAGIC, 1).expect("header");
        assert_eq!(s.records.len(), 1);
        let Tail::Corrupt { offset, reason } = s.tail else { panic!("{:?}", s.tail) };
        assert_eq!(offset as usize, damaged_at);
        assert!(reason.contains("could not all be searched"), "{reason}");
    }

    #[test]
    fn clean_file_reads_back_every_record() {
        let ps = vec![b"one".to_vec(), b"two".to_vec()];
        let (bytes, _) = file(&ps);
        let s = scan(&bytes, MAGIC, 1).expect("header");
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.records.iter().map(|r| r.1.to_vec()).collect::<Vec<_>>(), ps);
        assert!(matches!(scan(&bytes, *b"NOPE", 1), Err(HeaderError::BadMagic(_))));
        assert!(matches!(scan(&bytes, MAGIC, 2), Err(HeaderError::UnsupportedVersion(1))));
    }

    proptest! {
        /// Cutting the file at any offset loses at most the record being cut, never an
        /// earlier one, and is reported as torn, never as corruption.
        #[test]
        fn truncation_at_every_offset_keeps_every_complete_record(ps in payloads()) {
            let (bytes, ends) = file(&ps);
            for cut in 0..=bytes.len() {
                let s = scan(&bytes[..cut], MAGIC, 1);
                if cut < HEADER_LEN {
                    let s = s.expect("short header is a torn empty file");
                    prop_assert!(s.records.is_empty());
                    continue;
                }
                let s = s.expect("header intact");
                let complete = ends.iter().filter(|e| **e <= cut).count();
                prop_assert_eq!(s.records.len(), complete);
                for (i, r) in s.records.iter().enumerate() {
                    prop_assert_eq!(r.1, &ps[i][..]);
                }
                let at_boundary = cut == HEADER_LEN || ends.contains(&cut);
                prop_assert_eq!(matches!(s.tail, Tail::Clean), at_boundary);
                let corrupt = matches!(s.tail, Tail::Corrupt { .. });
                prop_assert!(!corrupt, "cut at {} reported corruption", cut);
            }
        }

        /// Flipping any byte never yields a wrong payload: records before the damage are
        /// returned intact; damage in the last record is torn, damage before it is corrupt.
        #[test]
        fn corruption_at_every_offset_is_detected(ps in payloads(), bit in 0u8..8) {
            let (bytes, ends) = file(&ps);
            for at in HEADER_LEN..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let s = scan(&damaged, MAGIC, 1).expect("header intact");
                let hit = ends.iter().position(|e| at < *e).expect("inside a record");
                prop_assert!(s.records.len() >= hit);
                for (i, r) in s.records.iter().enumerate().take(hit) {
                    prop_assert_eq!(r.1, &ps[i][..]);
                }
                prop_assert!(s.records.len() < ps.len(), "damage at {} went unnoticed", at);
                let last = hit == ps.len() - 1;
                if last {
                    let torn = matches!(s.tail, Tail::Torn { .. });
                    prop_assert!(torn, "tail damage at {} gave {:?}", at, s.tail);
                } else {
                    let corrupt = matches!(s.tail, Tail::Corrupt { .. });
                    prop_assert!(corrupt, "middle damage at {} gave {:?}", at, s.tail);
                }
            }
        }
    }
}
