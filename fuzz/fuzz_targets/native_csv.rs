//! Fuzz target `native_csv`: see [`vitals_fuzz::native_csv`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::native_csv(data));
