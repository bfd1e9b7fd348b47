//! The result of decoding one request or file: accepted samples and rejections.

use vitals_core::{Rejection, Sample};

/// Samples that passed decoding and validation, and what was refused with why.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<Sample>,
    pub rejections: Vec<Rejection>,
    /// Number of items seen (accepted + rejected).
    pub items: usize,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Self { samples: Vec::with_capacity(n), rejections: Vec::new(), items: 0 }
    }
}
