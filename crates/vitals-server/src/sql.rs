//! SQL in the server: the `vitals-sql` engine over this data directory's stores, and which
//! rows a principal's queries see (`scope`). The HTTP route is `api/sql_api.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use vitals_alerts::alert::Alert;
use vitals_meta::MetaStore;
use vitals_sql::{PatientRecord, Records, Scope};

use crate::alert_store::AlertStore;
use crate::auth::{self, Principal};
use crate::authz::{self, Action, Reach};
use crate::cohort_store::CohortStore;

/// Patients, teams and cohorts from the metadata and cohort stores; alerts from theirs.
pub struct StoreRecords {
    pub meta: Arc<dyn MetaStore>,
    pub cohorts: Arc<CohortStore>,
    pub alerts: Arc<AlertStore>,
}

impl Records for StoreRecords {
    fn patients(&self) -> Result<Vec<PatientRecord>, String> {
        let mut out: BTreeMap<String, PatientRecord> = BTreeMap::new();
        for p in self.meta.patients().map_err(|e| e.to_string())? {
            out.insert(
                p.id.clone(),
                PatientRecord { patient: p.id, registered_ms: Some(p.created_ms), ..Default::default() },
            );
        }
        fn record<'a>(out: &'a mut BTreeMap<String, PatientRecord>, p: &str) -> &'a mut PatientRecord {
            out.entry(p.to_owned()).or_insert_with(|| PatientRecord { patient: p.to_owned(), ..Default::default() })
        }
        for t in self.meta.teams().map_err(|e| e.to_string())? {
            for p in &t.patients {
                record(&mut out, p).teams.push(t.name.clone());
            }
        }
        for (name, members) in self.cohorts.list() {
            for p in &members {
                record(&mut out, p).cohorts.push(name.clone());
            }
        }
        Ok(out.into_values().collect())
    }

    fn alerts(&self) -> Vec<Alert> {
        self.alerts.list(None, None, i64::MIN, i64::MAX)
    }
}

/// The rows a principal's SQL sees; `None`: no SQL at all (devices, patients).
pub fn scope(who: &Principal) -> Option<Scope> {
    match authz::reach(who.role, Action::QuerySql) {
        Reach::None => None,
        Reach::Any => Some(Scope::All),
        Reach::Own => Some(match &who.scope {
            auth::Scope::All => Scope::All,
            auth::Scope::Patients(p) => Scope::Patients(p.iter().cloned().collect::<BTreeSet<String>>()),
        }),
    }
}
