//! Fuzz target: the Health Auto Export decoder never panics and accounts for every item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_core::{Catalog, Validator};
use vitals_ingest::health_auto_export;

fuzz_target!(|data: &[u8]| {
    let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 600_000, None);
    for decode in [health_auto_export::decode, health_auto_export::decode_csv] {
        if let Ok(d) = decode(data, "p", &mut v) {
            assert_eq!(d.batch.samples.len() + d.batch.rejections.len(), d.batch.items);
        }
    }
});
