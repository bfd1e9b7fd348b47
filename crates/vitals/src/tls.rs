//! Transport security settings.

use crate::config::Config;

/// Whether the server speaks HTTPS (session cookies are then marked `Secure`).
pub fn enabled(config: &Config) -> bool {
    !config.server.tls_cert.as_os_str().is_empty()
}
