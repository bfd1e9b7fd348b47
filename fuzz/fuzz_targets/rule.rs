//! Fuzz target `rule`: see [`vitals_fuzz::rule`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::rule(data));
