//! Fuzz target `line_protocol`: see [`vitals_fuzz::line_protocol`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::line_protocol(data));
