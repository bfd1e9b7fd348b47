//! Fuzz target `gadgetbridge`: see [`vitals_fuzz::gadgetbridge_db`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::gadgetbridge_db(data));
