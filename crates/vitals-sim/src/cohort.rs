//! Cohorts: who is simulated, with pseudonyms and made-up display names.

use serde::{Deserialize, Serialize};

use crate::profile::{Mix, Profile};
use crate::rng::{Draws, key, str_key};

/// One simulated person: a pseudonym (the only id the data carries), the profiles, and a
/// made-up display name for the people who care for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub profiles: Mix,
    pub name: String,
}

const FIRST: [&str; 24] = [
    "Ada", "Bram", "Chiara", "Dmitri", "Elif", "Farah", "Gus", "Hana", "Ivo", "Jonas", "Kaia", "Lior", "Maren", "Nils",
    "Olu", "Priya", "Quinn", "Rosa", "Sami", "Tove", "Uma", "Viktor", "Wren", "Yusuf",
];
const LAST: [&str; 24] = [
    "Albers", "Brandt", "Costa", "Dahl", "Eriksen", "Fontaine", "Greco", "Haas", "Ilves", "Jansen", "Kowal", "Lind",
    "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Sato", "Tamm", "Ueda", "Varga", "Weiss", "Zeller",
];

fn member(seed: u64, group: u64, index: u64, profiles: Mix) -> Member {
    let mut d = Draws::new(key(&[seed, 0xC0_407, group, index]));
    let id = format!("p-{:012x}", d.next() >> 16);
    let name = format!("{} {}", FIRST[(d.next() % 24) as usize], LAST[(d.next() % 24) as usize]);
    Member { id, profiles, name }
}

/// `n` patients with the same profiles.
pub fn uniform(seed: u64, profiles: &Mix, n: usize) -> Vec<Member> {
    // Cohorts of other profiles get other pseudonyms.
    let group = str_key(&profiles.to_string());
    (0..n as u64).map(|i| member(seed, group, i, profiles.clone())).collect()
}

/// The demo's cohort: 20 people covering every profile (and one mix).
pub fn demo(seed: u64) -> Vec<Member> {
    use Profile::*;
    let plan: [(&[Profile], usize); 9] = [
        (&[Diabetic], 3),
        (&[Athlete], 2),
        (&[PartyGoer], 2),
        (&[LowGlucose], 2),
        (&[Elderly], 2),
        (&[Wearable], 2),
        (&[Epilepsy], 2),
        (&[Illness], 3),
        (&[Diabetic, Wearable], 2),
    ];
    let mut out = Vec::new();
    for (profiles, n) in plan {
        for _ in 0..n {
            // A Mix from this fixed table is valid by construction.
            if let Ok(mix) = Mix::new(profiles.to_vec()) {
                out.push(member(seed, 0, out.len() as u64, mix));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_cohort_covers_every_profile_with_distinct_pseudonyms() {
        let c = demo(7);
        assert_eq!(c.len(), 20);
        for p in Profile::ALL {
            assert!(c.iter().any(|m| m.profiles.has(p)), "{p}");
        }
        let mut ids: Vec<&str> = c.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 20);
        assert!(ids.iter().all(|id| vitals_core::PatientId::new(id).is_ok()));
        assert_eq!(demo(7), c, "deterministic");
        assert_ne!(demo(8)[0].id, c[0].id);
    }
}
