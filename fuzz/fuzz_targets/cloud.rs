//! Fuzz target `cloud`: see [`vitals_fuzz::cloud`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::cloud(data));
