//! Fuzz target `native_json`: see [`vitals_fuzz::native_json`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::native_json(data));
