//! A patient's traits (fixed) and day plans (sleep, meals, exercise, walks, device gaps,
//! low-glucose episodes, seizures), each drawn from the patient's key and the day number.

use crate::profile::{Mix, Profile};
use crate::rng::{Draws, key};

pub(crate) const SECOND: i64 = 1000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Purposes of keyed draws (the second part of a key after the patient's).
pub(crate) mod purpose {
    pub(crate) const TRAITS: u64 = 1;
    pub(crate) const DAY: u64 = 2;
    pub(crate) const ILLNESS: u64 = 3;
    pub(crate) const NOISE: u64 = 4;
    pub(crate) const SCR: u64 = 5;
    pub(crate) const POSTURE: u64 = 6;
    pub(crate) const BEATS: u64 = 7;
    pub(crate) const DROPOUT: u64 = 8;
    pub(crate) const ROUGH_NIGHT: u64 = 9;
    pub(crate) const CONFOUNDER: u64 = 10;
    pub(crate) const SEIZURE_KIND: u64 = 11;
}

/// Glucose model parameters of a glucose profile (mg/dL; documented in docs/simulator.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlucoseParams {
    pub(crate) base: f64,
    /// Daily rhythm amplitude, peaking at 05:00 (dawn phenomenon).
    pub(crate) amplitude: f64,
    /// mg/dL per gram of carbohydrate at the response peak.
    pub(crate) gain: f64,
    /// Minutes from a meal to its peak response.
    pub(crate) peak_min: f64,
    /// Fall during and after exercise at full intensity.
    pub(crate) exercise_drop: f64,
    /// Slow physiological variation (sd) and sensor noise (sd).
    pub(crate) smooth_sd: f64,
    pub(crate) noise_sd: f64,
}

impl GlucoseParams {
    pub(crate) fn of(p: Profile) -> GlucoseParams {
        let g = |base, amplitude, gain, peak_min, exercise_drop, smooth_sd, noise_sd| GlucoseParams {
            base,
            amplitude,
            gain,
            peak_min,
            exercise_drop,
            smooth_sd,
            noise_sd,
        };
        match p {
            Profile::Diabetic => g(150.0, 12.0, 1.6, 60.0, 20.0, 14.0, 6.0),
            Profile::Athlete => g(88.0, 5.0, 0.5, 35.0, 35.0, 5.0, 4.0),
            Profile::PartyGoer => g(100.0, 8.0, 0.9, 40.0, 10.0, 14.0, 9.0),
            Profile::LowGlucose => g(80.0, 5.0, 0.5, 35.0, 10.0, 5.0, 4.0),
            _ => g(125.0, 4.0, 0.6, 50.0, 5.0, 4.0, 3.0), // elderly
        }
    }
}

/// What does not change from day to day.
#[derive(Debug, Clone)]
pub(crate) struct Traits {
    pub(crate) rest_hr: f64,
    /// Minutes after midnight (UTC) of waking and of going to bed (may pass 24 h).
    pub(crate) wake_min: f64,
    pub(crate) bed_min: f64,
    pub(crate) glucose: Option<GlucoseParams>,
    pub(crate) phases: [f64; 4],
    pub(crate) eda_tonic: f64,
    pub(crate) skin_base: f64,
    pub(crate) step_len_m: f64,
    pub(crate) bmr_kcal: f64,
    pub(crate) hrv_ms: f64,
    pub(crate) spo2: f64,
    pub(crate) resp_rate: f64,
    /// Offset of the CGM's 5-minute grid.
    pub(crate) cgm_offset_ms: i64,
}

impl Traits {
    pub(crate) fn draw(patient_key: u64, mix: &Mix) -> Traits {
        let mut d = Draws::new(key(&[patient_key, purpose::TRAITS]));
        let elderly = mix.has(Profile::Elderly);
        let party = mix.has(Profile::PartyGoer);
        let athlete = mix.has(Profile::Athlete);
        let glucose = mix.glucose().map(|p| {
            let mut g = GlucoseParams::of(p);
            g.base += d.normal(0.0, g.base * 0.04);
            g
        });
        Traits {
            rest_hr: if athlete { d.range(46.0, 56.0) } else { d.range(56.0, 72.0) },
            wake_min: if elderly { d.range(330.0, 400.0) } else { d.range(370.0, 470.0) },
            bed_min: if party {
                d.range(1440.0, 1560.0)
            } else if elderly {
                d.range(1230.0, 1300.0)
            } else {
                d.range(1320.0, 1420.0)
            },
            glucose,
            phases: [d.range(0.0, 6.3), d.range(0.0, 6.3), d.range(0.0, 6.3), d.range(0.0, 6.3)],
            eda_tonic: d.range(0.4, 3.0),
            skin_base: d.range(32.6, 33.8),
            step_len_m: if elderly { d.range(0.55, 0.65) } else { d.range(0.65, 0.8) },
            bmr_kcal: d.range(1350.0, 1900.0),
            hrv_ms: if elderly { d.range(22.0, 38.0) } else { d.range(38.0, 75.0) },
            spo2: d.range(96.0, 98.4),
            resp_rate: d.range(12.5, 15.5),
            cgm_offset_ms: (d.range(0.0, 300.0) as i64) * SECOND,
        }
    }
}

/// What kind of seizure (`Options::seizure_kinds`; otherwise every one is hypermotor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeizureKind {
    /// Rhythmic jerks at 0.6-1.4 g for 30-120 s, heart rate +35-60 %, an electrodermal surge.
    Hypermotor,
    /// No rhythmic motion (hypomotor, autonomic-only): heart rate +30-50 %, the surge.
    Autonomic,
    /// 10-25 s of jerks at 0.4-0.8 g, heart rate +15-30 %, a smaller surge.
    Short,
}

impl SeizureKind {
    pub(crate) fn code(self) -> &'static str {
        match self {
            SeizureKind::Hypermotor => "hypermotor",
            SeizureKind::Autonomic => "autonomic",
            SeizureKind::Short => "short",
        }
    }
}

/// A seizure episode, with what it does to each signal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seizure {
    pub(crate) kind: SeizureKind,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Rhythmic motion frequency at onset and at the end (Hz; clonic jerks slow down).
    pub(crate) f0: f64,
    pub(crate) f1: f64,
    /// Motion amplitude (g).
    pub(crate) amp_g: f64,
    /// Heart rate rises by this fraction of the baseline.
    pub(crate) hr_gain: f64,
    /// The electrodermal surge starts this long after onset and reaches about this height.
    pub(crate) eda_delay_ms: i64,
    pub(crate) eda_us: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct DayPlan {
    pub(crate) wake: i64,
    pub(crate) bed: i64,
    pub(crate) meals: Vec<(i64, f64)>,
    /// Start, end, intensity 0..1, and whether it is running (else cycling or a brisk walk).
    pub(crate) exercise: Option<(i64, i64, f64, bool)>,
    pub(crate) walks: Vec<(i64, i64, f64)>,
    /// The CGM loses signal / the watch is off charging.
    pub(crate) cgm_gap: Option<(i64, i64)>,
    pub(crate) watch_gap: Option<(i64, i64)>,
    /// Start, end and depth (mg/dL) of low-glucose episodes.
    pub(crate) hypos: Vec<(i64, i64, f64)>,
    /// A night out: alcohol lowers glucose for hours after this time.
    pub(crate) drink: Option<i64>,
    pub(crate) seizures: Vec<Seizure>,
    /// What looks like a seizure but is not (`Options::confounders`, epilepsy only).
    pub(crate) confounders: Vec<crate::confounder::Confounder>,
}

/// What `DayPlan::draw` takes from the simulation's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw {
    pub(crate) seizures_per_day: f64,
    pub(crate) seizure_kinds: bool,
    pub(crate) confounders: bool,
}

impl DayPlan {
    pub(crate) fn draw(patient_key: u64, mix: &Mix, t: &Traits, day: i64, o: Draw) -> DayPlan {
        let mut d = Draws::new(key(&[patient_key, purpose::DAY, day as u64]));
        let at = |min: f64| day * DAY + (min * MINUTE as f64) as i64;
        let wake_min = t.wake_min + d.normal(0.0, 20.0);
        let bed_min = t.bed_min + d.normal(0.0, 25.0);
        let (wake, bed) = (at(wake_min), at(bed_min));
        let party = mix.has(Profile::PartyGoer);
        let carbs = if mix.has(Profile::Elderly) {
            0.8
        } else if mix.has(Profile::Athlete) {
            1.3
        } else {
            1.0
        };
        let mut meals = vec![
            (at(wake_min + d.range(20.0, 60.0)), carbs * d.range(30.0, 60.0)),
            (at(d.range(720.0, 810.0)), carbs * d.range(40.0, 80.0)),
            (at(d.range(1080.0, 1200.0)), carbs * d.range(50.0, 90.0)),
        ];
        let mut drink = None;
        if party && d.chance(0.6) {
            meals.push((at(bed_min - d.range(30.0, 90.0)), d.range(40.0, 100.0)));
            drink = Some(at(bed_min - d.range(150.0, 240.0)));
        }
        let exercise = if mix.has(Profile::Athlete) {
            let start = if d.chance(0.5) { d.range(wake_min + 15.0, wake_min + 60.0) } else { d.range(1020.0, 1140.0) };
            let dur = d.range(60.0, 100.0);
            Some((at(start), at(start + dur), d.range(0.7, 1.0), true))
        } else if d.chance(if mix.has(Profile::Elderly) { 0.3 } else { 0.4 }) {
            let start = d.range(1020.0, 1140.0);
            let dur = d.range(30.0, 60.0);
            let intensity = if mix.has(Profile::Elderly) { 0.3 } else { d.range(0.5, 0.8) };
            Some((at(start), at(start + dur), intensity, d.chance(0.5)))
        } else {
            None
        };
        let walks = (0..d.range(3.0, 7.0) as usize)
            .map(|_| {
                let start = d.range(wake_min + 30.0, (bed_min - 60.0).max(wake_min + 60.0));
                let dur = d.range(5.0, 25.0);
                let cadence = if mix.has(Profile::Elderly) { d.range(80.0, 100.0) } else { d.range(95.0, 120.0) };
                (at(start), at(start + dur), cadence)
            })
            .collect();
        let cgm_gap = d.chance(0.25).then(|| {
            let s = d.range(0.0, 1380.0);
            (at(s), at(s + d.range(20.0, 60.0)))
        });
        let watch_gap = {
            let s = wake_min + d.range(10.0, 40.0);
            Some((at(s), at(s + d.range(30.0, 60.0))))
        };
        let hypos = if mix.has(Profile::LowGlucose) {
            (0..1 + usize::from(d.chance(0.5)))
                .map(|_| {
                    let s = d.range(0.0, 1380.0);
                    (at(s), at(s + d.range(30.0, 75.0)), d.range(25.0, 40.0))
                })
                .collect()
        } else {
            Vec::new()
        };
        let seizures = if mix.has(Profile::Epilepsy) {
            let mut v: Vec<Seizure> = (0..d.poisson(o.seizures_per_day))
                .map(|_| {
                    let start = at(d.range(0.0, 1435.0));
                    let dur = d.range(30.0, 120.0);
                    Seizure {
                        kind: SeizureKind::Hypermotor,
                        start,
                        end: start + (dur * SECOND as f64) as i64,
                        f0: d.range(5.5, 8.0),
                        f1: d.range(3.0, 4.5),
                        amp_g: d.range(0.6, 1.4),
                        hr_gain: d.range(0.35, 0.6),
                        eda_delay_ms: (d.range(5.0, 30.0) * SECOND as f64) as i64,
                        eda_us: d.range(2.0, 8.0),
                    }
                })
                .collect();
            v.sort_by_key(|s| s.start);
            // Episodes that would overlap merge into the first.
            v.dedup_by(|later, first| later.start < first.end + 10 * MINUTE);
            if o.seizure_kinds {
                for s in &mut v {
                    // From a draw of its own: the rest of the plan is the same either way.
                    let mut k = Draws::new(key(&[patient_key, purpose::SEIZURE_KIND, s.start as u64]));
                    let r = k.range(0.0, 1.0);
                    if r < 0.25 {
                        s.kind = SeizureKind::Autonomic;
                        s.amp_g = 0.0;
                        s.hr_gain = k.range(0.3, 0.5);
                    } else if r < 0.4 {
                        s.kind = SeizureKind::Short;
                        s.end = s.start + (k.range(10.0, 25.0) * SECOND as f64) as i64;
                        s.amp_g = k.range(0.4, 0.8);
                        s.hr_gain = k.range(0.15, 0.3);
                        s.eda_us = k.range(0.8, 2.0);
                    }
                }
            }
            v
        } else {
            Vec::new()
        };
        let confounders = if o.confounders && mix.has(Profile::Epilepsy) {
            crate::confounder::draw(patient_key, day, wake, bed)
        } else {
            Vec::new()
        };
        DayPlan { wake, bed, meals, exercise, walks, cgm_gap, watch_gap, hypos, drink, seizures, confounders }
    }
}

/// A multi-day illness: resting heart rate rises, plateaus and recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Illness {
    pub(crate) start: i64,
    pub(crate) peak_from: i64,
    pub(crate) peak_to: i64,
    pub(crate) end: i64,
    /// bpm above baseline at the peak (at night; about 60% of it by day).
    pub(crate) peak_bpm: f64,
}

/// Illnesses come one per block of days (days since the epoch; 10 by default and at
/// least), starting on its day 2 to `block - 5` and lasting 2.5 to 4 days: with 10-day
/// blocks ill about a third of the time, for anomaly detection demos.
pub(crate) const ILLNESS_BLOCK_DAYS: i64 = 10;

impl Illness {
    pub(crate) fn of_block(patient_key: u64, block: i64, block_days: i64) -> Illness {
        let mut d = Draws::new(key(&[patient_key, purpose::ILLNESS, block as u64]));
        let start = block * block_days * DAY + (d.range(2.0, block_days as f64 - 5.0) * DAY as f64) as i64;
        let rise = (d.range(1.0, 1.5) * DAY as f64) as i64;
        let plateau = (d.range(0.5, 1.0) * DAY as f64) as i64;
        let fall = (d.range(1.0, 1.5) * DAY as f64) as i64;
        Illness {
            start,
            peak_from: start + rise,
            peak_to: start + rise + plateau,
            end: start + rise + plateau + fall,
            peak_bpm: d.range(6.0, 10.0),
        }
    }

    /// Elevation (bpm) at `t`, 0 outside the episode.
    pub(crate) fn elevation(&self, t: i64) -> f64 {
        if t <= self.start || t >= self.end {
            0.0
        } else if t < self.peak_from {
            self.peak_bpm * (t - self.start) as f64 / (self.peak_from - self.start) as f64
        } else if t <= self.peak_to {
            self.peak_bpm
        } else {
            self.peak_bpm * (self.end - t) as f64 / (self.end - self.peak_to) as f64
        }
    }
}
