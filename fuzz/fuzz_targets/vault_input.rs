//! Fuzz target `vault_input`: see [`vitals_fuzz::vault_input`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::vault_input(data));
