//! People changes shared by the API and the `vitals admin user|team` commands.

use anyhow::{Context, bail};
use vitals_core::PatientId;
use vitals_meta::{MetaError, MetaStore, Role, Team, User};

/// Creates the team if needed and makes its members (user names or ids) and patients
/// exactly the given ones.
pub fn set_team(
    meta: &dyn MetaStore,
    name: &str,
    members: &[String],
    patients: &[String],
    now_ms: i64,
) -> anyhow::Result<Team> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        bail!("a team name is 1 to 64 of A-Z a-z 0-9 - _ .");
    }
    let mut ids = Vec::new();
    for m in members {
        let u = meta.user(m)?.with_context(|| format!("no user {m:?}"))?;
        ids.push(u.id);
    }
    for p in patients {
        PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}"))?;
    }
    match meta.create_team(name, now_ms) {
        Ok(()) | Err(MetaError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let current =
        meta.teams()?.into_iter().find(|t| t.name == name).with_context(|| format!("team {name:?} vanished"))?;
    for old in current.members.iter().filter(|m| !ids.contains(m)) {
        meta.set_member(name, old, false)?;
    }
    for id in &ids {
        meta.set_member(name, id, true)?;
    }
    for old in current.patients.iter().filter(|p| !patients.contains(p)) {
        meta.set_team_patient(name, old, false)?;
    }
    for p in patients {
        meta.set_team_patient(name, p, true)?;
    }
    meta.teams()?.into_iter().find(|t| t.name == name).with_context(|| format!("team {name:?} vanished"))
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
    /// `true` clears a lockout.
    pub unlock: Option<bool>,
}

/// Applies a change to a user (by name or id). A new password or disabling ends the
/// user's sessions; a role change that would need another kind of account is refused.
pub fn change_user(meta: &dyn MetaStore, key: &str, change: UserChange) -> anyhow::Result<User> {
    let mut u = meta.user(key)?.with_context(|| format!("no user {key:?}"))?;
    if let Some(r) = change.role {
        if r == Role::Device || (r == Role::Patient) != u.patient.is_some() {
            bail!("a change to or from the {r} role needs a new account");
        }
        u.role = r;
    }
    let new_password = change.password.is_some();
    if let Some(p) = &change.password {
        u.password_hash = Some(vitals_meta::password::hash(p)?);
    }
    if let Some(d) = change.disabled {
        u.disabled = d;
    }
    meta.update_user(&u)?;
    if change.unlock == Some(true) {
        meta.unlock_user(&u.id)?;
        u.locked_until_ms = None;
        u.failed_logins = 0;
    }
    if u.disabled || new_password {
        meta.delete_sessions_of(&u.id)?;
    }
    Ok(u)
}
