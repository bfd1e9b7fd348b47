//! Fuzz target `fit`: see [`vitals_fuzz::fit_file`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::fit_file(data));
