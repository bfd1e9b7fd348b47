//! Fuzz target `mqtt_packet`: see [`vitals_fuzz::mqtt_packet`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitals_fuzz::mqtt_packet(data));
