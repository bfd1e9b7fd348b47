//! Authorization: the one place that decides who may do what.
//!
//! Every route declares an [`Action`] (see `server::router`); [`reach`] is the matrix of
//! role x action -> which patients, and [`check`] applies it to a principal and, for routes
//! about one patient, that patient. Routes that list several patients filter by
//! [`crate::auth::Principal::scope`] with [`visible`].

use crate::auth::{Principal, Role};

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Send samples (devices, uploaders, importers).
    WriteSamples,
    /// List patients (filtered to those reached).
    ListPatients,
    /// Read a patient's physiological data, events and alerts' values (pseudonymous).
    ReadPatientData,
    /// Read a patient's Nightscout site back: as `ReadPatientData`, and also the device
    /// token bound to the patient (uploaders such as AndroidAPS and xDrip+ read what they
    /// sync: treatments, profiles, the other uploaders' entries).
    SyncNightscout,
    /// Register a new patient (a pseudonym).
    CreatePatient,
    /// Connect, resync and disconnect a patient's accounts at vendor clouds (their
    /// credentials go in, sealed, and never come out).
    ManageConnections,
    /// Read who a patient is.
    ReadIdentity,
    /// Change who a patient is.
    WriteIdentity,
    /// Export everything about a patient.
    ExportPatient,
    /// Erase a patient.
    ErasePatient,
    /// Read alerts (filtered to those reached).
    ReadAlerts,
    /// Acknowledge or snooze an alert.
    ActOnAlerts,
    /// Read rules and the catalog of metrics.
    ReadRules,
    /// Run rules over stored data.
    Backtest,
    /// Create, change or delete rules.
    ManageRules,
    /// Read cohorts (named sets of pseudonyms).
    ReadCohorts,
    /// Change cohorts.
    ManageCohorts,
    /// Notices, contacts and deliveries (they hold contact details).
    ManageNotifications,
    /// Make, follow and cancel campaigns (their sends are listed for the patients reached).
    ManageCampaigns,
    /// Users, care teams, tokens.
    ManagePeople,
    /// Run SQL over pseudonymous data (rows limited to the patients reached).
    QuerySql,
    /// Export pseudonymous data in bulk (FHIR `$export`; limited to the patients reached).
    ExportBulk,
    /// Read the audit log.
    ReadAudit,
    /// Refused input (it holds raw payloads), server metrics.
    Operate,
    /// One's own account and session.
    Me,
}

/// Which patients a role reaches for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Not allowed at all.
    None,
    /// Only the principal's own patients (care teams; a patient account: themself; a bound
    /// device: its patient).
    Own,
    /// Every patient.
    Any,
}

/// The authorization matrix.
pub fn reach(role: Role, action: Action) -> Reach {
    use Action::*;
    use Reach::{Any, None as No, Own};
    match (role, action) {
        (Role::Admin, _) => Any,
        (_, Me) => Any,

        (Role::Device, WriteSamples | SyncNightscout) => Own,
        (Role::Device, _) => No,
        (_, SyncNightscout) => reach(role, ReadPatientData),

        (Role::Clinician, ListPatients | ReadPatientData | ReadIdentity | WriteIdentity | ExportPatient) => Own,
        (Role::Clinician | Role::Caregiver | Role::Patient, ManageConnections) => Own,
        (Role::Clinician, ReadAlerts | ActOnAlerts | Backtest | QuerySql | ExportBulk | ManageCampaigns) => Own,
        (Role::Clinician, CreatePatient | ReadRules | ReadCohorts) => Any,
        (Role::Clinician, _) => No,

        (Role::Caregiver, ListPatients | ReadPatientData | ReadIdentity | ReadAlerts | ActOnAlerts | QuerySql) => Own,
        (Role::Caregiver, ExportBulk) => Own,
        (Role::Caregiver, _) => No,

        (Role::Patient, ListPatients | ReadPatientData | ReadIdentity | WriteIdentity | ExportPatient) => Own,
        (Role::Patient, ReadAlerts | ActOnAlerts) => Own,
        (Role::Patient, _) => No,

        // Pseudonymous data of everyone; never identity, contacts, people or changes.
        (
            Role::Analyst,
            ListPatients | ReadPatientData | ReadAlerts | ReadRules | Backtest | ReadCohorts | QuerySql | ExportBulk,
        ) => Any,
        (Role::Analyst, _) => No,
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a {0} may not do this")]
    Role(Role),
    #[error("patient {patient} is not among the patients this {role} may reach")]
    Patient { role: Role, patient: String },
}

/// May `who` do `action` (on `patient`, for routes about one patient)?
pub fn check(who: &Principal, action: Action, patient: Option<&str>) -> Result<(), Denied> {
    match (reach(who.role, action), patient) {
        (Reach::None, _) => Err(Denied::Role(who.role)),
        // Routes about several patients filter with `visible`; a bound device's batch is
        // checked sample by sample by the validator.
        // A device token bound to no patient writes for any (its samples are checked one by
        // one) but reads none.
        (Reach::Own, _) if action == Action::SyncNightscout && who.role == Role::Device && who.patient.is_none() => {
            Err(Denied::Role(who.role))
        }
        (Reach::Any, _) | (Reach::Own, None) => Ok(()),
        (Reach::Own, Some(p)) if who.scope.includes(p) => Ok(()),
        (Reach::Own, Some(p)) => Err(Denied::Patient { role: who.role, patient: p.to_owned() }),
    }
}

/// Whether a listed item about `patient` is shown to `who` for `action`.
pub fn visible(who: &Principal, action: Action, patient: &str) -> bool {
    match reach(who.role, action) {
        Reach::None => false,
        Reach::Any => true,
        Reach::Own => who.scope.includes(patient),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysts_never_reach_identity_contacts_or_changes() {
        for a in [
            Action::ReadIdentity,
            Action::WriteIdentity,
            Action::ExportPatient,
            Action::ManageNotifications,
            Action::ManageCampaigns,
            Action::ManagePeople,
            Action::ActOnAlerts,
            Action::ReadAudit,
            Action::Operate,
        ] {
            assert_eq!(reach(Role::Analyst, a), Reach::None, "{a:?}");
        }
    }

    #[test]
    fn only_a_device_bound_to_the_patient_reads_its_nightscout_site() {
        let device = |patient: Option<&str>| Principal {
            actor: "token:t".into(),
            name: "cgm".into(),
            role: Role::Device,
            user_id: None,
            patient: patient.map(|p| vitals_core::PatientId::new(p).expect("p")),
            scope: match patient {
                Some(p) => crate::auth::Scope::Patients([p.to_owned()].into()),
                None => crate::auth::Scope::All,
            },
            csrf: None,
        };
        assert!(check(&device(Some("p-1")), Action::SyncNightscout, Some("p-1")).is_ok());
        assert!(check(&device(Some("p-1")), Action::SyncNightscout, Some("p-2")).is_err());
        assert!(check(&device(None), Action::SyncNightscout, Some("p-1")).is_err(), "an unbound device reads none");
        assert!(check(&device(None), Action::WriteSamples, Some("p-1")).is_ok(), "but writes for any");
        assert!(check(&device(Some("p-1")), Action::ReadPatientData, Some("p-1")).is_err(), "nor the rest of the API");
        for role in [Role::Clinician, Role::Caregiver, Role::Patient, Role::Analyst, Role::Admin] {
            assert_eq!(reach(role, Action::SyncNightscout), reach(role, Action::ReadPatientData), "{role}");
        }
    }
}
