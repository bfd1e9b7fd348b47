//! Identifiers: patient pseudonyms, device ids and sample ids, validated once at the edge.

use std::fmt;
use std::sync::Arc;

/// Longest identifier accepted (patients, devices, sample ids).
pub const MAX_ID_LEN: usize = 64;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long, at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("contains {ch:?} at position {pos}; allowed are A-Z a-z 0-9 . _ - (and : in device and sample ids)")]
    BadChar { ch: char, pos: usize },
    #[error("must not be \".\" or \"..\"")]
    DotPath,
}

/// Checks an identifier: 1 to 64 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
///
/// A UUID satisfies this. The alphabet is safe in file paths, URLs and Hive
/// partition names without escaping, which the lake layout relies on.
pub fn check_id(s: &str) -> Result<(), IdError> {
    check_id_with(s, "")
}

/// Like [`check_id`], also allowing the characters in `extra` (device and sample ids,
/// which never become paths, also take `:` so that MAC addresses fit).
fn check_id_with(s: &str, extra: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: s.chars().count() });
    }
    for (pos, ch) in s.chars().enumerate() {
        if !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '-' || extra.contains(ch)) {
            return Err(IdError::BadChar { ch, pos });
        }
    }
    if s == "." || s == ".." {
        return Err(IdError::DotPath);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $extra:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: &str) -> Result<Self, IdError> {
                check_id_with(s, $extra)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A patient's pseudonym. Never a name: identity lives elsewhere.
    PatientId,
    ""
);
id_type!(
    /// A device's id (a wristband serial, a MAC address, an uploader name...).
    DeviceId,
    ":"
);
id_type!(
    /// An optional sender-assigned id of one sample (kept for lineage).
    SampleId,
    ":"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_uuids_and_refuse_path_tricks() {
        let cases: &[(&str, bool)] = &[
            ("p-17", true),
            ("0b9f5c2e-6d55-4d4a-9a43-6f1f5d9e2c11", true),
            ("A.b_c-9", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ];
        for (s, ok) in cases {
            assert_eq!(check_id(s).is_ok(), *ok, "{s:?}");
        }
        assert!(DeviceId::new("AA:BB:CC:DD:EE:FF").is_ok());
        assert!(PatientId::new("AA:BB").is_err(), "patient ids are path components");
    }
}
