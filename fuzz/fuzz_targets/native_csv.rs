//! Fuzz target: the native csv decoder never panics and accounts for every item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_core::{Catalog, Validator};
use vitals_ingest::{Format, native};

fuzz_target!(|data: &[u8]| {
    let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 600_000, None);
    if let Ok(batch) = native::decode(data, Format::Csv, &mut v) {
        assert_eq!(batch.samples.len() + batch.rejections.len(), batch.items);
    }
});
