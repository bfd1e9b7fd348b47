//! Fuzz target `health_auto_export`: see [`vitals_fuzz::health_auto_export`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::health_auto_export(data));
