//! Fuzz target `time_params`: see [`vitals_fuzz::time_params`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::time_params(data));
