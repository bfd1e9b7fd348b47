//! The alert rules in force: those of the config file and of the built-in packs it
//! switches on (read-only through the API), and those made through the API, kept in `<data_dir>/rules/rules.log` (an append-only JSON
//! log of puts and deletes, replayed at start). Changes take effect at once: readers get
//! the current set on every evaluation. In cluster mode the API's rules are in the log every
//! node shares (`store_log`), so a rule saved on one node is in force on all.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use vitals_rules::{Rule, RuleError, RuleSpec};
use vitals_storage::json_log::JsonLog;

use crate::store_log::{Applied, StoreLog};

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Pack,
    Api,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Put(RuleSpec),
    Delete(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error("{0}")]
    Conflict(String),
    #[error("no rule {0:?}")]
    NotFound(String),
    #[error("the rule store: {0}")]
    Io(String),
}

pub struct RuleStore {
    /// Config and pack rules.
    config: BTreeMap<String, (Rule, Source)>,
    api: RwLock<BTreeMap<String, Rule>>,
    log: Mutex<StoreLog>,
    /// Bumped on every change, so the engine notices cheaply.
    version: std::sync::atomic::AtomicU64,
}

impl RuleStore {
    /// Opens the store; config rules and pack names must already be valid (the config
    /// checks them).
    pub fn open(dir: &Path, config_rules: &[RuleSpec], packs: &[String]) -> anyhow::Result<RuleStore> {
        let (log, changes) = JsonLog::open::<Change>(dir, "rules.log", *b"VRUL", 1)?;
        let store = RuleStore::over(StoreLog::Local(log), config_rules, packs)?;
        for c in changes {
            store.apply(Applied::Record(c));
        }
        store.warn_shadowed();
        Ok(store)
    }

    /// Cluster mode: the API's rules every node shares.
    pub fn open_shared(
        records: vitals_postgres::Records,
        config_rules: &[RuleSpec],
        packs: &[String],
    ) -> anyhow::Result<RuleStore> {
        let store = RuleStore::over(StoreLog::Shared { records, name: "rules", applied: 0 }, config_rules, packs)?;
        store.refresh(&mut store.log.lock()).map_err(|e| anyhow::anyhow!(e))?;
        store.warn_shadowed();
        Ok(store)
    }

    fn over(log: StoreLog, config_rules: &[RuleSpec], packs: &[String]) -> anyhow::Result<RuleStore> {
        let mut config = BTreeMap::new();
        for spec in config_rules {
            let rule = Rule::compile(spec.clone())?;
            config.insert(rule.spec.name.clone(), (rule, Source::Config));
        }
        for name in packs {
            let pack = vitals_rules::pack::pack(name).ok_or_else(|| anyhow::anyhow!("no rule pack {name:?}"))?;
            for spec in pack.rules {
                let rule = Rule::compile(spec)?;
                config.insert(rule.spec.name.clone(), (rule, Source::Pack));
            }
        }
        Ok(RuleStore { config, api: RwLock::default(), log: Mutex::new(log), version: Default::default() })
    }

    fn warn_shadowed(&self) {
        for name in self.api.read().keys() {
            if self.config.contains_key(name) {
                tracing::warn!(rule = %name, "the config file defines this rule too; the config's wins");
            }
        }
    }

    fn apply(&self, a: Applied<Change>) {
        let mut api = self.api.write();
        match a {
            Applied::Reset => api.clear(),
            Applied::Record(Change::Put(spec)) => match Rule::compile(spec) {
                Ok(rule) => {
                    api.insert(rule.spec.name.clone(), rule);
                }
                // A rule saved by an older version that this one refuses: kept out, said.
                Err(e) => tracing::error!(error = %e, "a stored rule no longer compiles; it is not in force"),
            },
            Applied::Record(Change::Delete(name)) => {
                api.remove(&name);
            }
        }
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn refresh(&self, log: &mut StoreLog) -> Result<(), String> {
        log.refresh(|a| self.apply(a))
    }

    /// Cluster mode: catches up with the other nodes' changes; a failure is logged.
    fn sync(&self) {
        self.log.lock().sync("rule store", |a| self.apply(a));
    }

    pub fn version(&self) -> u64 {
        self.sync();
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every rule in force (config rules win over API rules of the same name).
    pub fn list(&self) -> Vec<(Rule, Source)> {
        self.sync();
        let api = self.api.read();
        let mut out: Vec<(Rule, Source)> = self.config.values().cloned().collect();
        out.extend(api.values().filter(|r| !self.config.contains_key(&r.spec.name)).map(|r| (r.clone(), Source::Api)));
        out.sort_by(|a, b| a.0.spec.name.cmp(&b.0.spec.name));
        out
    }

    pub fn get(&self, name: &str) -> Option<(Rule, Source)> {
        if let Some(r) = self.config.get(name) {
            return Some(r.clone());
        }
        self.sync();
        self.api.read().get(name).map(|r| (r.clone(), Source::Api))
    }

    /// Saves a rule; `create` refuses an existing name, otherwise it replaces. Returns the
    /// rule and whether it is new.
    pub fn put(&self, spec: RuleSpec, create: bool) -> Result<(Rule, bool), RulesError> {
        let rule = Rule::compile(spec)?;
        let name = rule.spec.name.clone();
        if self.config.contains_key(&name) {
            return Err(RulesError::Conflict(format!(
                "rule {name:?} comes from the config file or a rule pack; change it there"
            )));
        }
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(RulesError::Io)?;
        let exists = self.api.read().contains_key(&name);
        if create && exists {
            return Err(RulesError::Conflict(format!("rule {name:?} exists; PUT /api/v1/rules/{name} replaces it")));
        }
        log.write(Change::Put(rule.spec.clone()), |a| self.apply(a)).map_err(RulesError::Io)?;
        Ok((rule, !exists))
    }

    /// Takes a patient out of the scopes of API rules (a rule about them alone is deleted)
    /// and rewrites the log without them; returns the names of the rules changed.
    /// Config-file rules naming the patient are left to the operator (and reported).
    pub fn erase_patient(&self, patient: &str) -> Result<Vec<String>, RulesError> {
        use vitals_rules::Scope;
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(RulesError::Io)?;
        let mut api = self.api.write();
        let mut changed = Vec::new();
        let mut next = BTreeMap::new();
        for (name, rule) in api.iter() {
            let mut spec = rule.spec.clone();
            let keep = match &mut spec.scope {
                Scope::Patient(p) if p == patient => false,
                Scope::Patients(ps) if ps.iter().any(|p| p == patient) => {
                    ps.retain(|p| p != patient);
                    !ps.is_empty()
                }
                _ => {
                    next.insert(name.clone(), rule.clone());
                    continue;
                }
            };
            changed.push(name.clone());
            if keep {
                next.insert(name.clone(), Rule::compile(spec)?);
            }
        }
        let snapshot: Vec<Change> = next.values().map(|r| Change::Put(r.spec.clone())).collect();
        log.rewrite(&snapshot).map_err(RulesError::Io)?;
        *api = next;
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        for (name, (rule, _)) in &self.config {
            if matches!(&rule.spec.scope, Scope::Patient(p) if p == patient)
                || matches!(&rule.spec.scope, Scope::Patients(ps) if ps.iter().any(|p| p == patient))
            {
                changed.push(format!("{name} (config file: edit it there)"));
            }
        }
        Ok(changed)
    }

    pub fn delete(&self, name: &str) -> Result<(), RulesError> {
        if self.config.contains_key(name) {
            return Err(RulesError::Conflict(format!(
                "rule {name:?} comes from the config file or a rule pack; remove it there"
            )));
        }
        let mut log = self.log.lock();
        self.refresh(&mut log).map_err(RulesError::Io)?;
        if !self.api.read().contains_key(name) {
            return Err(RulesError::NotFound(name.to_owned()));
        }
        log.write(Change::Delete(name.to_owned()), |a| self.apply(a)).map_err(RulesError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, expr: &str) -> RuleSpec {
        serde_json::from_value(serde_json::json!({"name": name, "expr": expr})).expect("spec")
    }

    #[test]
    fn api_rules_survive_reopen_and_config_rules_cannot_be_changed_through_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = [spec("cfg", "spo2 < 90")];
        let s = RuleStore::open(dir.path(), &cfg, &["glucose-system".to_owned()]).expect("open");
        assert!(s.put(spec("a", "heart_rate > 120"), true).expect("a").1);
        assert!(s.put(spec("b", "heart_rate > 130"), true).expect("b").1);
        assert!(!s.put(spec("a", "heart_rate > 140"), false).expect("replace").1);
        s.delete("b").expect("delete");
        assert!(matches!(s.put(spec("cfg", "spo2 < 80"), false), Err(RulesError::Conflict(_))));
        assert!(matches!(s.delete("cfg"), Err(RulesError::Conflict(_))));
        assert_eq!(s.get("glucose-system.high").map(|r| r.1), Some(Source::Pack));
        assert!(matches!(s.delete("glucose-system.high"), Err(RulesError::Conflict(_))));
        assert!(matches!(s.put(spec("c", "spo2 <"), true), Err(RulesError::Invalid(_))));
        drop(s);
        let s = RuleStore::open(dir.path(), &cfg, &[]).expect("reopen");
        let names: Vec<(String, Source, String)> =
            s.list().into_iter().map(|(r, src)| (r.spec.name.clone(), src, r.spec.expr.clone())).collect();
        assert_eq!(
            names,
            [
                ("a".to_owned(), Source::Api, "heart_rate > 140".to_owned()),
                ("cfg".to_owned(), Source::Config, "spo2 < 90".to_owned())
            ]
        );
    }
}
