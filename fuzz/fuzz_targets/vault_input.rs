//! Fuzz target: the vault's inputs never panic: key files and the key environment variable
//! (errors, not crashes, for any text), and identity records (JSON, then validation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_vault::{Identity, Keyring};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ring) = Keyring::parse_file(text, "fuzz") {
        assert!(ring.get(ring.primary_id()).is_some());
    }
    if let Ok(ring) = Keyring::parse_env(text) {
        assert!(!ring.ids().is_empty());
    }
    if let Ok(identity) = serde_json::from_str::<Identity>(text) {
        let _ = identity.validate();
    }
});
