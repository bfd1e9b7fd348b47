//! Fuzz target `nightscout`: see [`vitals_fuzz::nightscout`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::nightscout(data));
