//! The result of decoding one request or file: accepted samples and rejections.
//!
//! A body of junk may hold millions of bad items: the batch keeps the first
//! [`MAX_REJECTIONS`] of them with their messages and counts every one (in all and by code),
//! so memory follows the cap, not the input.

use vitals_core::{RawSample, RejectCode, Rejection, Sample, Validator};

/// Rejections a batch keeps with their messages; later ones are only counted.
pub const MAX_REJECTIONS: usize = 1000;

/// Samples that passed decoding and validation, and what was refused with why.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<Sample>,
    /// The first [`MAX_REJECTIONS`] refused items (see [`Batch::refused`] for all).
    pub rejections: Vec<Rejection>,
    /// Number of items seen (accepted + rejected).
    pub items: usize,
    /// Every refused item, counted.
    pub refused: usize,
    /// Refused items by code (indexed like [`RejectCode::ALL`]).
    pub refused_by_code: [usize; RejectCode::ALL.len()],
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Self { samples: Vec::with_capacity(n), ..Self::default() }
    }

    /// Records a refused item: counted always, kept while under [`MAX_REJECTIONS`].
    pub fn reject(&mut self, r: Rejection) {
        self.refused += 1;
        if let Some(i) = RejectCode::ALL.iter().position(|c| *c == r.code) {
            self.refused_by_code[i] += 1;
        }
        if self.rejections.len() < MAX_REJECTIONS {
            self.rejections.push(r);
        }
    }

    /// Counts and validates one decoded item (`index` labels a refusal).
    pub fn push(&mut self, v: &mut Validator<'_>, index: usize, raw: &RawSample<'_>) {
        self.items += 1;
        match v.validate(index, raw) {
            Ok(s) => self.samples.push(s),
            Err(r) => self.reject(r),
        }
    }

    /// Counts one item that could not be read at all.
    pub fn malformed(&mut self, index: usize, why: impl Into<String>) {
        self.items += 1;
        self.reject(Rejection::new(index, RejectCode::Malformed, why));
    }

    /// Whether some refused items were counted but not kept.
    pub fn truncated(&self) -> bool {
        self.refused > self.rejections.len()
    }
}

#[cfg(test)]
mod tests {
    use vitals_core::{Catalog, Validator};

    use super::*;
    use crate::{Format, native};

    #[test]
    fn a_body_of_junk_costs_the_cap_not_the_input() {
        let junk = "not json at all\n".repeat(200_000);
        let mut v = Validator::new(Catalog::standard(), 0, 0, None);
        let b = native::decode(junk.as_bytes(), Format::Ndjson, &mut v).expect("decodes");
        assert_eq!((b.rejections.len(), b.refused, b.items), (MAX_REJECTIONS, 200_000, 200_000));
        assert!(b.truncated());
        let malformed = RejectCode::ALL.iter().position(|c| *c == RejectCode::Malformed).expect("code");
        assert_eq!(b.refused_by_code[malformed], 200_000);
    }

    #[test]
    fn messages_quote_at_most_a_bounded_part_of_the_input() {
        let id = "x".repeat(100_000);
        let body = format!("{{\"patient\":\"{id}\",\"metric\":\"heart_rate\",\"time\":0,\"value\":60}}\n");
        let mut v = Validator::new(Catalog::standard(), 0, 0, None);
        let b = native::decode(body.as_bytes(), Format::Ndjson, &mut v).expect("decodes");
        let m = &b.rejections[0].message;
        assert!(m.chars().count() <= vitals_core::MAX_MESSAGE_CHARS + 1 && m.ends_with('…'), "{} chars", m.len());
    }
}
