//! Fuzz target `record_files`: see [`vitals_fuzz::record_files`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::record_files(data));
