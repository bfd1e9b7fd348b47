//! Profiles: who a synthetic patient is. A patient has at most one glucose profile and any
//! of the wearable ones; `epilepsy` and `illness` include `wearable`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A profile, with its public code (`diabetic`, `party-goer`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Type 1/2 diabetes: high baseline, large meal excursions.
    Diabetic,
    /// Low baseline; glucose falls during and after daily training.
    Athlete,
    /// Late meals and drinks, irregular sleep, high variability.
    PartyGoer,
    /// Near-low baseline with dangerously low episodes (labelled `hypoglycemia`).
    LowGlucose,
    /// Steady and somewhat high, small excursions, early nights.
    Elderly,
    /// A smartwatch: heart rate, skin temperature, EDA, steps, energy, SpO2, sleep.
    Wearable,
    /// A research wristband (E4-like, 1 Hz heart rate, RR intervals, 4 Hz EDA, 32 Hz
    /// accelerometer) with labelled seizures.
    Epilepsy,
    /// A smartwatch wearer with labelled multi-day illnesses (resting heart rate rises).
    Illness,
}

impl Profile {
    pub const ALL: [Profile; 8] = [
        Profile::Diabetic,
        Profile::Athlete,
        Profile::PartyGoer,
        Profile::LowGlucose,
        Profile::Elderly,
        Profile::Wearable,
        Profile::Epilepsy,
        Profile::Illness,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Profile::Diabetic => "diabetic",
            Profile::Athlete => "athlete",
            Profile::PartyGoer => "party-goer",
            Profile::LowGlucose => "low-glucose",
            Profile::Elderly => "elderly",
            Profile::Wearable => "wearable",
            Profile::Epilepsy => "epilepsy",
            Profile::Illness => "illness",
        }
    }

    pub fn is_glucose(self) -> bool {
        matches!(
            self,
            Profile::Diabetic | Profile::Athlete | Profile::PartyGoer | Profile::LowGlucose | Profile::Elderly
        )
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error(
        "unknown profile {0:?} (one of diabetic, athlete, party-goer, low-glucose, elderly, wearable, epilepsy, illness)"
    )]
    Unknown(String),
    #[error("profiles {0} and {1} are both glucose profiles; a patient has one")]
    TwoGlucose(Profile, Profile),
    #[error("no profile given")]
    Empty,
}

impl FromStr for Profile {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Profile, ProfileError> {
        Profile::ALL.into_iter().find(|p| p.code() == s.trim()).ok_or_else(|| ProfileError::Unknown(s.to_owned()))
    }
}

/// A patient's mix of profiles, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Profile>", into = "Vec<Profile>")]
pub struct Mix {
    profiles: Vec<Profile>,
}

impl Mix {
    pub fn new(mut profiles: Vec<Profile>) -> Result<Mix, ProfileError> {
        profiles.sort();
        profiles.dedup();
        if profiles.is_empty() {
            return Err(ProfileError::Empty);
        }
        let glucose: Vec<Profile> = profiles.iter().copied().filter(|p| p.is_glucose()).collect();
        if glucose.len() > 1 {
            return Err(ProfileError::TwoGlucose(glucose[0], glucose[1]));
        }
        Ok(Mix { profiles })
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    pub fn glucose(&self) -> Option<Profile> {
        self.profiles.iter().copied().find(|p| p.is_glucose())
    }

    pub fn has(&self, p: Profile) -> bool {
        self.profiles.contains(&p)
    }

    /// Wears a watch or a wristband at all.
    pub fn wearable(&self) -> bool {
        self.has(Profile::Wearable) || self.has(Profile::Epilepsy) || self.has(Profile::Illness)
    }

    /// Wears the research wristband (dense signals) rather than a watch.
    pub fn wristband(&self) -> bool {
        self.has(Profile::Epilepsy)
    }
}

impl TryFrom<Vec<Profile>> for Mix {
    type Error = ProfileError;
    fn try_from(v: Vec<Profile>) -> Result<Mix, ProfileError> {
        Mix::new(v)
    }
}

impl From<Mix> for Vec<Profile> {
    fn from(m: Mix) -> Vec<Profile> {
        m.profiles
    }
}

impl FromStr for Mix {
    type Err = ProfileError;
    /// `diabetic,epilepsy` or `diabetic+epilepsy`.
    fn from_str(s: &str) -> Result<Mix, ProfileError> {
        Mix::new(s.split([',', '+']).filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = self.profiles.iter().map(|p| p.code()).collect();
        f.write_str(&codes.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_refuse_two_glucose_profiles() {
        let m: Mix = "epilepsy,diabetic".parse().expect("mix");
        assert_eq!(m.glucose(), Some(Profile::Diabetic));
        assert!(m.wristband() && m.wearable());
        assert_eq!(m.to_string(), "diabetic+epilepsy");
        assert_eq!(
            "diabetic+elderly".parse::<Mix>(),
            Err(ProfileError::TwoGlucose(Profile::Diabetic, Profile::Elderly))
        );
        assert!(matches!("sleepy".parse::<Mix>(), Err(ProfileError::Unknown(_))));
        assert_eq!("".parse::<Mix>(), Err(ProfileError::Empty));
    }
}
