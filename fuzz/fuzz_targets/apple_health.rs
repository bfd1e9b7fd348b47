//! Fuzz target `apple_health`: see [`vitals_fuzz::apple_health`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::apple_health(data));
