//! Fuzz target `log_message`: see [`vitals_fuzz::log_message`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::log_message(data));
