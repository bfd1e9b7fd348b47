//! Passwords: Argon2id (RFC 9106 defaults of the `argon2` crate: 19 MiB, 2 passes) in PHC
//! strings, so parameters can be raised later without invalidating stored hashes.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::MetaError;

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;
/// Longest password accepted (hashing cost must stay bounded).
pub const MAX_LEN: usize = 1024;

/// Checks the policy and hashes a new password.
pub fn hash(password: &str) -> Result<String, MetaError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(MetaError::Invalid(format!("a password must be at least {MIN_LEN} characters long")));
    }
    if password.len() > MAX_LEN {
        return Err(MetaError::Invalid(format!("a password must be at most {MAX_LEN} bytes long")));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| MetaError::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches the stored PHC string (false for malformed hashes too).
pub fn verify(password: &str, phc: &str) -> bool {
    password.len() <= MAX_LEN && Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_verified() {
        let h = hash("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterx", &h));
        assert!(!verify("anything", "not a phc string"));
        assert_ne!(hash("correct horse battery").expect("hash"), h, "salted");
        assert!(matches!(hash("short"), Err(MetaError::Invalid(_))));
    }
}
