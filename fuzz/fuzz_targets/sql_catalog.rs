//! Fuzz target `sql_catalog`: see [`vitals_fuzz::sql_catalog`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::sql_catalog(data));
