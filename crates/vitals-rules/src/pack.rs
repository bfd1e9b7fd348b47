//! Built-in rule packs: sets of rules that clinical practice or the systems Vitals replaces
//! agree on, switched on by name (`[alerting] packs = [...]`). Their rules are named
//! `<pack>.<rule>` and are read-only through the API, like rules of the config file.

use crate::rule::{RuleSpec, Scope, Severity};

/// A named set of rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    pub name: &'static str,
    pub description: &'static str,
    pub rules: Vec<RuleSpec>,
}

struct Def {
    name: &'static str,
    expr: &'static str,
    clear: Option<&'static str>,
    for_: Option<&'static str>,
    severity: Severity,
    renotify: Option<&'static str>,
    description: &'static str,
}

const fn def(name: &'static str, expr: &'static str, severity: Severity, description: &'static str) -> Def {
    Def { name, expr, clear: None, for_: None, severity, renotify: None, description }
}

impl Def {
    const fn clear(mut self, c: &'static str) -> Def {
        self.clear = Some(c);
        self
    }

    const fn for_(mut self, f: &'static str) -> Def {
        self.for_ = Some(f);
        self
    }

    const fn renotify(mut self, r: &'static str) -> Def {
        self.renotify = Some(r);
        self
    }
}

/// Every built-in pack, in a stable order.
pub const PACK_NAMES: [&str; 4] = ["glucose-system", "glucose-consensus", "nightscout", "glucose-rate"];

fn defs(pack: &str) -> Option<(&'static str, Vec<Def>)> {
    use Severity::{Urgent, Warning};
    Some(match pack {
        "glucose-system" => (
            "The real-time glucose monitor's rule: a reading above 115 mg/dL or a 10-minute mean above 105",
            vec![def(
                "high",
                "blood_glucose > 115 or mean(blood_glucose, 10m) > 105",
                Warning,
                "A reading above 115 mg/dL, or the mean of the last 10 minutes above 105 mg/dL",
            )],
        ),
        "glucose-consensus" => (
            "International consensus on CGM (Battelino et al. 2019, 2023): level 1 and 2 hypo- and \
             hyperglycemia as events of at least 15 minutes, ending after 15 minutes back in range",
            vec![
                def(
                    "low-level1",
                    "blood_glucose < 70",
                    Warning,
                    "Below 70 mg/dL for at least 15 minutes (level 1 hypoglycemia)",
                )
                .for_("15m")
                .clear("min(blood_glucose, 15m) >= 70"),
                def(
                    "low-level2",
                    "blood_glucose < 54",
                    Urgent,
                    "Below 54 mg/dL for at least 15 minutes (level 2 hypoglycemia)",
                )
                .for_("15m")
                .clear("min(blood_glucose, 15m) >= 70")
                .renotify("15m"),
                def(
                    "high-level1",
                    "blood_glucose > 180",
                    Warning,
                    "Above 180 mg/dL for at least 15 minutes (level 1 hyperglycemia)",
                )
                .for_("15m")
                .clear("max(blood_glucose, 15m) <= 180"),
                def(
                    "high-level2",
                    "blood_glucose > 250",
                    Urgent,
                    "Above 250 mg/dL for at least 15 minutes (level 2 hyperglycemia)",
                )
                .for_("15m")
                .clear("max(blood_glucose, 15m) <= 180"),
            ],
        ),
        "nightscout" => (
            "Nightscout's default alarms: urgent low 55, low 80, high 180, urgent high 260 mg/dL, stale data \
             after 15 and 30 minutes",
            vec![
                def("urgent-low", "blood_glucose < 55", Urgent, "Urgent low: below 55 mg/dL").renotify("15m"),
                def("low", "blood_glucose < 80", Warning, "Low: below 80 mg/dL"),
                def("high", "blood_glucose > 180", Warning, "High: above 180 mg/dL"),
                def("urgent-high", "blood_glucose > 260", Urgent, "Urgent high: above 260 mg/dL"),
                def("stale", "absent(blood_glucose, 15m)", Warning, "No glucose reading for 15 minutes"),
                def("urgent-stale", "absent(blood_glucose, 30m)", Urgent, "No glucose reading for 30 minutes"),
            ],
        ),
        "glucose-rate" => (
            "Rate of change: glucose falling faster than 2 and 3 mg/dL per minute (over 15 minutes)",
            vec![
                def("falling", "rate(blood_glucose, 15m) < -2", Warning, "Falling faster than 2 mg/dL per minute"),
                def("falling-fast", "rate(blood_glucose, 15m) < -3", Urgent, "Falling faster than 3 mg/dL per minute"),
            ],
        ),
        _ => return None,
    })
}

/// The pack of that name.
pub fn pack(name: &str) -> Option<Pack> {
    let (description, defs) = defs(name)?;
    let name = PACK_NAMES.iter().copied().find(|n| *n == name)?;
    let rules = defs
        .into_iter()
        .map(|d| RuleSpec {
            name: format!("{name}.{}", d.name),
            expr: d.expr.to_owned(),
            severity: d.severity,
            for_: d.for_.map(str::to_owned),
            clear: d.clear.map(str::to_owned),
            scope: Scope::All,
            renotify: d.renotify.map(str::to_owned),
            enabled: true,
            description: Some(d.description.to_owned()),
        })
        .collect();
    Some(Pack { name, description, rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Rule;

    #[test]
    fn every_pack_rule_compiles_and_has_a_unique_name() {
        let mut names = std::collections::BTreeSet::new();
        for p in PACK_NAMES {
            let pack = pack(p).expect("pack");
            assert!(!pack.rules.is_empty());
            for spec in pack.rules {
                assert!(names.insert(spec.name.clone()), "{} twice", spec.name);
                Rule::compile(spec.clone()).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            }
        }
        assert!(pack("nope").is_none());
    }
}
