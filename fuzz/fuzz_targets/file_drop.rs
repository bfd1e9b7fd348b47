//! Fuzz target `file_drop`: see [`vitals_fuzz::file_drop`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::file_drop(data));
