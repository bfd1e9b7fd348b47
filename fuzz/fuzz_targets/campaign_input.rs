//! Fuzz target `campaign_input`: see [`vitals_fuzz::campaign_input`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::campaign_input(data));
