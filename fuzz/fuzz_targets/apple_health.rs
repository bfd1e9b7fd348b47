//! Fuzz target: the Apple Health export.xml streamer never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_core::{Catalog, Validator};
use vitals_ingest::{apple_health, empatica};

fuzz_target!(|data: &[u8]| {
    let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 600_000, None);
    let _ = apple_health::stream(data, "p", &mut v, 7, |b, _, _| -> Result<(), ()> {
        assert_eq!(b.samples.len() + b.rejections.len(), b.items);
        Ok(())
    });
    if let Ok(text) = std::str::from_utf8(data) {
        for f in empatica::SIGNAL_FILES {
            let _ = empatica::decode(f, text, "p", "e4", &mut v);
        }
    }
});
