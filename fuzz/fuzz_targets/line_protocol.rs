//! Fuzz target: the line protocol decoder never panics and accounts for every item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_core::{Catalog, Validator};
use vitals_ingest::line_protocol::{self, Mapping, Precision};

fuzz_target!(|data: &[u8]| {
    let now = 1_763_780_400_000;
    let mut v = Validator::new(Catalog::standard(), now, 600_000, None);
    let batch = line_protocol::decode(data, Precision::Milliseconds, &Mapping::default(), &mut v, now);
    assert_eq!(batch.samples.len() + batch.rejections.len(), batch.items);
});
