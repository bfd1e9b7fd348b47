//! Fuzz target: the Nightscout decoders never panic and account for every item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_core::{Catalog, Validator};
use vitals_ingest::nightscout;

fuzz_target!(|data: &[u8]| {
    for decode in [nightscout::decode_entries, nightscout::decode_devicestatus] {
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 600_000, None);
        if let Ok(d) = decode(data, "p", &mut v) {
            assert_eq!(d.batch.samples.len() + d.batch.rejections.len(), d.batch.items);
        }
    }
});
