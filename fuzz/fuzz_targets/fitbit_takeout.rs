//! Fuzz target `fitbit_takeout`: see [`vitals_fuzz::fitbit_takeout_file`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::fitbit_takeout_file(data));
