//! Fuzz target `native_ndjson`: see [`vitals_fuzz::native_ndjson`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::native_ndjson(data));
