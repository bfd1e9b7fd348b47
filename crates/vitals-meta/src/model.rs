//! The records of the metadata store: roles, users, tokens, care teams, patients, sessions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a person or a device is to Vitals. Permissions follow from the role (see the
/// binary's authorization matrix); the patients a role reaches follow from care teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the installation: everything.
    Admin,
    /// Sees and acts on the patients of their care teams.
    Clinician,
    /// A family member: the patients of their care teams, their alerts and dashboard.
    Caregiver,
    /// A patient: their own data.
    Patient,
    /// Pseudonymous data of all patients; never identity or contact details.
    Analyst,
    /// Writes samples only, optionally bound to one patient.
    Device,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Clinician, Role::Caregiver, Role::Patient, Role::Analyst, Role::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Caregiver => "caregiver",
            Role::Patient => "patient",
            Role::Analyst => "analyst",
            Role::Device => "device",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown role {s:?}; roles are admin, clinician, caregiver, patient, analyst, device")
        })
    }
}

/// A person who signs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// The sign-in name (unique).
    pub name: String,
    pub role: Role,
    /// PHC string of the Argon2id hash; `None` for accounts that only use tokens.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// For `patient` accounts: their own pseudonym.
    pub patient: Option<String>,
    pub disabled: bool,
    /// Failed sign-ins since the last success.
    pub failed_logins: u32,
    /// Sign-in refused until then (lockout).
    pub locked_until_ms: Option<i64>,
    pub created_ms: i64,
}

/// An API token (never the secret: only its hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub name: String,
    /// The role of a device token; for a user's token, the user's role decides at each use.
    pub role: Role,
    /// The user this token acts for.
    pub user_id: Option<String>,
    /// The device this token belongs to.
    pub device: Option<String>,
    /// A device token bound to one patient writes only that patient's samples.
    pub patient: Option<String>,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub sha256: String,
    /// For device tokens only: the hex SHA-256 of the hex SHA-1 of the secret. Nightscout
    /// uploaders send `api-secret: sha1(secret)`; what is stored is a hash of that, so a
    /// copy of the database cannot be replayed as an `api-secret`.
    #[serde(skip)]
    pub api_secret_sha256: Option<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

impl Token {
    /// Whether the token may be used at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

/// A care team: people (clinicians, caregivers) and the patients they look after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    pub patients: Vec<String>,
    pub created_ms: i64,
}

/// A registered patient: only the pseudonym lives here (identity is in the vault).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub id: String,
    pub created_ms: i64,
    /// Who registered the patient (a user id or "cli").
    pub created_by: String,
}

/// A dashboard session (the cookie's secret is stored hashed).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Hex SHA-256 of the cookie value.
    pub sha256: String,
    pub user_id: String,
    /// The CSRF token forms must echo.
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// A device's client certificate: presenting it over mutual TLS (HTTPS or the MQTT
/// listener) authenticates as this device, bound to `patient` if set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCert {
    /// Hex SHA-256 of the certificate's DER encoding.
    pub sha256: String,
    pub id: String,
    pub name: String,
    pub device: String,
    pub patient: Option<String>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}
