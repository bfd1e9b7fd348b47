//! The signals: each value is a function of the patient, the day plans around it and the
//! time, plus keyed noise, so a window is generated the same whatever came before.

use std::f64::consts::{PI, TAU};

use serde::Serialize;

use crate::plan::{DAY, DayPlan, HOUR, ILLNESS_BLOCK_DAYS, Illness, MINUTE, SECOND, Seizure, Traits, purpose};
use crate::profile::{Mix, Profile};
use crate::rng::{Draws, gauss, key, str_key, unit};

/// Simulation settings shared by every patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Mean seizures per day of an `epilepsy` patient (Poisson).
    pub seizures_per_day: f64,
    /// Fraction of CGM readings lost at random (besides whole signal-loss gaps).
    pub cgm_dropout: f64,
    /// An `illness` patient falls ill once in every block of this many days (at least 10;
    /// 10 is ill about a third of the time, for demos; 60 is nearer real life, for
    /// scoring anomaly detection).
    pub illness_every_days: i64,
    /// Seizures of several kinds (a quarter autonomic-only, without rhythmic motion, 15 %
    /// short) instead of all hypermotor; labels say which.
    pub seizure_kinds: bool,
    /// Epilepsy patients also brush their teeth, clap, shake things, get stressed, hot and
    /// feverish (`confounder`): what a seizure detector must not take for a seizure.
    pub confounders: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seizures_per_day: 1.0,
            cgm_dropout: 0.02,
            illness_every_days: ILLNESS_BLOCK_DAYS,
            seizure_kinds: false,
            confounders: false,
        }
    }
}

/// Which device a reading comes from (its id is `<patient>-<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// A continuous glucose monitor (with its uploader's telemetry).
    Cgm,
    /// A smartwatch.
    Watch,
    /// A research wristband (E4-like).
    Wristband,
}

impl Device {
    pub fn code(self) -> &'static str {
        match self {
            Device::Cgm => "cgm",
            Device::Watch => "watch",
            Device::Wristband => "wristband",
        }
    }
}

/// One generated reading, in the catalog's canonical unit, quantized as the device reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub metric: &'static str,
    pub time_ms: i64,
    pub value: f64,
    pub device: Device,
}

/// Which streams to generate: dense ones are the wristband's 4 Hz EDA and 32 Hz motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    Sparse,
    Dense,
}

/// Ground truth beside the data, for scoring detectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub patient: String,
    /// `seizure`, `illness` or `hypoglycemia`.
    pub kind: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Illnesses: when symptoms begin (the resting heart rate has risen to its peak; it
    /// began to rise at `start_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_ms: Option<i64>,
    /// Seizures with `Options::seizure_kinds`: `hypermotor`, `autonomic` or `short`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtype: Option<&'static str>,
}

/// Sleep periods and workouts, as Health Auto Export would send them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimEvent {
    pub patient: String,
    /// `sleep` or `workout`.
    pub kind: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The workout's name (`running`, `cycling`), empty for sleep.
    pub name: &'static str,
}

/// A synthetic patient.
#[derive(Debug, Clone)]
pub struct Patient {
    pub id: String,
    pub mix: Mix,
    key: u64,
    traits: Traits,
}

impl Patient {
    pub fn device_id(&self, d: Device) -> String {
        format!("{}-{}", self.id, d.code())
    }
}

/// The generator.
#[derive(Debug, Clone)]
pub struct Simulator {
    seed: u64,
    options: Options,
}

/// How a stream is sampled.
#[derive(Debug, Clone, Copy)]
enum Grid {
    /// Every `period_us` microseconds from the epoch, shifted by `offset_ms`.
    Every { period_us: i64, offset_ms: i64 },
    /// Heart beats (RR intervals), laid out minute by minute.
    Beats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Glucose,
    Battery,
    SignalStrength,
    HeartRate,
    Rr,
    SkinTemp,
    Eda,
    Motion,
    Steps,
    RestingHr,
    Hrv,
    Spo2,
    RespRate,
}

/// The plans of the days a window touches.
struct Plans {
    first_day: i64,
    days: Vec<DayPlan>,
}

impl Plans {
    fn get(&self, day: i64) -> &DayPlan {
        let i = (day - self.first_day).clamp(0, self.days.len() as i64 - 1);
        &self.days[i as usize]
    }
}

fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY)
}

fn hour_of_day(t: i64) -> f64 {
    t.rem_euclid(DAY) as f64 / HOUR as f64
}

fn clamp01(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

fn round_to(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

fn round_dp(v: f64, dp: i32) -> f64 {
    let m = 10f64.powi(dp);
    (v * m).round() / m
}

/// What the patient is doing at a time.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    asleep: bool,
    /// Steps per minute of a walk in progress.
    walk_cadence: Option<f64>,
    /// Exercise intensity 0..1 (ramps in and out) and whether it is running.
    exercise: f64,
    running: bool,
    /// Just finished exercising: 1 right after, decaying over minutes.
    recovery: f64,
}

impl Simulator {
    pub fn new(seed: u64, options: Options) -> Simulator {
        Simulator { seed, options }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn patient(&self, id: &str, mix: Mix) -> Patient {
        let key = key(&[self.seed, str_key(id)]);
        let traits = Traits::draw(key, &mix);
        Patient { id: id.to_owned(), mix, key, traits }
    }

    fn plans(&self, p: &Patient, from: i64, to: i64) -> Plans {
        let first_day = day_of(from) - 2;
        let last_day = day_of(to.max(from)) + 1;
        let days = (first_day..=last_day)
            .map(|d| {
                let o = crate::plan::Draw {
                    seizures_per_day: self.options.seizures_per_day,
                    seizure_kinds: self.options.seizure_kinds,
                    confounders: self.options.confounders,
                };
                DayPlan::draw(p.key, &p.mix, &p.traits, d, o)
            })
            .collect();
        Plans { first_day, days }
    }

    fn streams(p: &Patient) -> Vec<(Stream, Grid, Device)> {
        let every = |ms: i64| Grid::Every { period_us: ms * 1000, offset_ms: 0 };
        let mut v = Vec::new();
        if p.mix.glucose().is_some() {
            let offset_ms = p.traits.cgm_offset_ms;
            v.push((Stream::Glucose, Grid::Every { period_us: 5 * MINUTE * 1000, offset_ms }, Device::Cgm));
            v.push((Stream::Battery, Grid::Every { period_us: 15 * MINUTE * 1000, offset_ms }, Device::Cgm));
            v.push((Stream::SignalStrength, Grid::Every { period_us: 15 * MINUTE * 1000, offset_ms }, Device::Cgm));
        }
        if p.mix.wristband() {
            let d = Device::Wristband;
            v.push((Stream::HeartRate, every(SECOND), d));
            v.push((Stream::Rr, Grid::Beats, d));
            v.push((Stream::SkinTemp, every(SECOND), d));
            v.push((Stream::Eda, every(250), d));
            v.push((Stream::Motion, Grid::Every { period_us: 31_250, offset_ms: 0 }, d));
        } else if p.mix.wearable() {
            let d = Device::Watch;
            v.push((Stream::HeartRate, every(5 * SECOND), d));
            v.push((Stream::SkinTemp, every(MINUTE), d));
            v.push((Stream::Eda, every(10 * SECOND), d));
        }
        if p.mix.wearable() {
            let d = if p.mix.wristband() { Device::Wristband } else { Device::Watch };
            v.push((Stream::Steps, every(MINUTE), d));
            v.push((Stream::RestingHr, every(HOUR), d));
            v.push((Stream::Hrv, every(HOUR), d));
            v.push((Stream::Spo2, every(HOUR), d));
            v.push((Stream::RespRate, every(30 * MINUTE), d));
        }
        v
    }

    /// Generates the patient's readings with times in `[from, to)`, stream by stream in
    /// time order.
    pub fn generate(&self, p: &Patient, from: i64, to: i64, which: Which, out: &mut dyn FnMut(Reading)) {
        if to <= from {
            return;
        }
        let plans = self.plans(p, from, to);
        for (stream, grid, device) in Self::streams(p) {
            let dense = matches!(stream, Stream::Motion) || (matches!(stream, Stream::Eda) && p.mix.wristband());
            match which {
                Which::Dense if !dense => continue,
                Which::Sparse if dense => continue,
                _ => {}
            }
            match grid {
                Grid::Every { period_us, offset_ms } => {
                    // Times t_k = offset + floor(k * period_us / 1000), the same for any window.
                    let lo = (from - offset_ms).saturating_mul(1000);
                    let hi = (to - offset_ms).saturating_mul(1000);
                    let k0 = lo.div_euclid(period_us) + i64::from(lo.rem_euclid(period_us) != 0);
                    let k1 = hi.div_euclid(period_us) + i64::from(hi.rem_euclid(period_us) != 0);
                    for k in k0..k1 {
                        let t = offset_ms + (k * period_us).div_euclid(1000);
                        self.emit(p, &plans, stream, device, t, out);
                    }
                }
                Grid::Beats => self.beats(p, &plans, from, to, device, out),
            }
        }
    }

    fn watch_off(plans: &Plans, device: Device, t: i64) -> bool {
        device == Device::Watch && plans.get(day_of(t)).watch_gap.is_some_and(|(s, e)| (s..e).contains(&t))
    }

    fn emit(&self, p: &Patient, plans: &Plans, stream: Stream, device: Device, t: i64, out: &mut dyn FnMut(Reading)) {
        let mut put = |metric: &'static str, value: f64| out(Reading { metric, time_ms: t, value, device });
        if stream != Stream::Glucose
            && stream != Stream::Battery
            && stream != Stream::SignalStrength
            && Self::watch_off(plans, device, t)
        {
            return;
        }
        let act = activity(plans, t);
        match stream {
            Stream::Glucose => {
                if let Some(g) = self.glucose(p, plans, t) {
                    put("blood_glucose", g);
                }
            }
            Stream::Battery => put("battery_level", battery(plans, t)),
            Stream::SignalStrength => {
                if !cgm_gap(plans, t) {
                    let v = -68.0 + 6.0 * smooth(p, t, 0.3) + 3.0 * gauss(key(&[p.key, purpose::NOISE, 11, t as u64]));
                    put("signal_strength", v.round().clamp(-120.0, -30.0));
                }
            }
            Stream::HeartRate => put("heart_rate", self.heart_rate(p, plans, &act, t).round().clamp(35.0, 220.0)),
            Stream::Rr => {}
            Stream::SkinTemp => {
                let ill = self.illness(p, t);
                let v = p.traits.skin_base + if act.asleep { 0.9 } else { 0.0 } - 0.6 * act.exercise
                    + 0.25 * smooth(p, t, 1.7)
                    + 0.04 * ill
                    + 0.02 * gauss(key(&[p.key, purpose::NOISE, 12, t as u64]));
                put("skin_temperature", round_dp(v, 2));
            }
            Stream::Eda => put("eda", round_dp(self.eda(p, plans, &act, t).max(0.01), 3)),
            Stream::Motion => {
                let [x, y, z] = self.motion(p, plans, &act, t);
                let q = |v: f64| round_to(v.clamp(-8.0, 8.0), 1.0 / 64.0);
                put("acceleration_x", q(x));
                put("acceleration_y", q(y));
                put("acceleration_z", q(z));
            }
            Stream::Steps => {
                let steps = steps_per_minute(p, &act, t);
                put("step_count", steps);
                put("walking_running_distance", round_dp(steps * p.traits.step_len_m, 2));
                let kcal = if act.asleep {
                    0.0
                } else if act.exercise > 0.0 {
                    (8.0 + 4.0 * act.exercise) * act.exercise.max(0.3)
                } else if act.walk_cadence.is_some() {
                    3.5
                } else {
                    0.25
                };
                put("active_energy", round_dp(kcal, 3));
                put("resting_energy", round_dp(p.traits.bmr_kcal / 1440.0, 3));
            }
            Stream::RestingHr => {
                // Once a day, the morning summary (after the watch's charging break): the
                // night's resting rate.
                let wake = plans.get(day_of(t)).wake;
                if t >= wake + 2 * HOUR && t < wake + 3 * HOUR {
                    let night = wake - 2 * HOUR;
                    let v = p.traits.rest_hr - 4.0
                        + self.strain(p, night)
                        + gauss(key(&[p.key, purpose::NOISE, 13, t as u64]));
                    put("resting_heart_rate", v.round());
                }
            }
            Stream::Hrv if act.asleep => {
                let v = p.traits.hrv_ms * (1.0 - 0.03 * self.strain(p, t))
                    + 6.0 * gauss(key(&[p.key, purpose::NOISE, 14, t as u64]));
                put("hrv_sdnn", round_dp(v.max(5.0), 2));
            }
            Stream::Spo2 if act.asleep => {
                let v =
                    p.traits.spo2 - 0.2 * self.illness(p, t) + 0.8 * gauss(key(&[p.key, purpose::NOISE, 15, t as u64]));
                put("spo2", v.round().clamp(85.0, 100.0));
            }
            Stream::RespRate if act.asleep => {
                let v = p.traits.resp_rate
                    + 0.3 * self.illness(p, t)
                    + 0.6 * gauss(key(&[p.key, purpose::NOISE, 16, t as u64]));
                put("respiratory_rate", round_dp(v, 1));
            }
            Stream::Hrv | Stream::Spo2 | Stream::RespRate => {}
        }
    }

    fn illness_every_days(&self) -> i64 {
        self.options.illness_every_days.max(ILLNESS_BLOCK_DAYS)
    }

    /// What raises the night's heart rate (bpm) at `t`: an illness, or for one night a
    /// rough night (alcohol, a late meal, hard training; `illness` wearers only, so that
    /// anomaly detection is scored against one-night rises too): on about 8% of nights,
    /// 3 to 7 bpm.
    fn strain(&self, p: &Patient, t: i64) -> f64 {
        self.illness(p, t) + self.rough_night(p, t)
    }

    fn rough_night(&self, p: &Patient, t: i64) -> f64 {
        if !p.mix.has(Profile::Illness) {
            return 0.0;
        }
        let night = day_of(t + 12 * HOUR);
        let mut d = Draws::new(key(&[p.key, purpose::ROUGH_NIGHT, night as u64]));
        if d.range(0.0, 1.0) < 0.08 { d.range(3.0, 7.0) } else { 0.0 }
    }

    /// Illness elevation of the resting heart rate (bpm) at `t`.
    fn illness(&self, p: &Patient, t: i64) -> f64 {
        if !p.mix.has(Profile::Illness) {
            return 0.0;
        }
        let every = self.illness_every_days();
        let block = day_of(t).div_euclid(every);
        (block - 1..=block).map(|b| Illness::of_block(p.key, b, every).elevation(t)).fold(0.0, f64::max)
    }

    fn glucose(&self, p: &Patient, plans: &Plans, t: i64) -> Option<f64> {
        let g = p.traits.glucose?;
        if cgm_gap(plans, t) || unit(key(&[p.key, purpose::DROPOUT, t as u64])) < self.options.cgm_dropout {
            return None;
        }
        let mut v = g.base + g.amplitude * (TAU * (hour_of_day(t) - 5.0) / 24.0).cos();
        let today = day_of(t);
        for day in [today - 1, today] {
            let plan = plans.get(day);
            for &(at, carbs) in &plan.meals {
                let tau = (t - at) as f64 / (g.peak_min * MINUTE as f64);
                if tau > 0.0 {
                    v += g.gain * carbs * tau * (1.0 - tau).exp();
                }
            }
            if let Some((s, e, intensity, _)) = plan.exercise
                && t > s
            {
                let ramp = clamp01((t - s) as f64 / (20 * MINUTE) as f64);
                // Muscles keep taking up glucose for hours after training.
                let after = if t > e { (-((t - e) as f64) / (150 * MINUTE) as f64).exp() } else { 1.0 };
                v -= g.exercise_drop * intensity * ramp * after;
            }
            for &(s, e, depth) in &plan.hypos {
                if t > s && t < e {
                    v -= depth * (PI * (t - s) as f64 / (e - s) as f64).sin().powi(2);
                }
            }
            if let Some(at) = plan.drink
                && t > at
            {
                let h = (t - at) as f64 / HOUR as f64;
                v -= 15.0 * (h / 3.0) * (1.0 - h / 3.0).exp();
            }
        }
        v += g.smooth_sd * smooth(p, t, 0.0);
        v += g.noise_sd * gauss(key(&[p.key, purpose::NOISE, 1, t as u64]));
        Some(v.round().clamp(40.0, 400.0))
    }

    fn heart_rate(&self, p: &Patient, plans: &Plans, act: &Activity, t: i64) -> f64 {
        let circadian = 3.0 * (TAU * (hour_of_day(t) - 16.0) / 24.0).cos();
        let mut hr = p.traits.rest_hr + circadian;
        if act.asleep {
            hr -= 4.0;
        } else {
            hr += 10.0;
            if let Some(c) = act.walk_cadence {
                hr += 20.0 * c / 110.0;
            }
            hr += 75.0 * act.exercise + 30.0 * act.recovery;
        }
        hr += if act.asleep { self.strain(p, t) } else { 0.6 * self.illness(p, t) };
        if let Some(s) = seizure_at(plans, t, 90 * SECOND) {
            let rise = clamp01((t - s.start) as f64 / (20 * SECOND) as f64);
            let decay = if t > s.end { (-((t - s.end) as f64) / (40 * SECOND) as f64).exp() } else { 1.0 };
            hr *= 1.0 + s.hr_gain * rise * decay;
        }
        for c in confounders_at(plans, t) {
            hr = c.heart_rate(hr, t);
        }
        hr + 2.5 * smooth(p, t, 2.9) + 1.2 * gauss(key(&[p.key, purpose::NOISE, 2, t as u64]))
    }

    fn eda(&self, p: &Patient, plans: &Plans, act: &Activity, t: i64) -> f64 {
        let mut v = p.traits.eda_tonic * if act.asleep { 0.6 } else { 1.0 } * (1.0 + 0.2 * smooth(p, t, 4.1));
        v += 1.2 * act.exercise;
        // Skin conductance responses: a few per minute awake, a few per hour asleep.
        let m = t.div_euclid(MINUTE);
        for block in [m - 1, m] {
            let mut d = Draws::new(key(&[p.key, purpose::SCR, block as u64]));
            let n = d.poisson(if act.asleep { 0.1 } else { 1.5 });
            for _ in 0..n {
                let at = block * MINUTE + d.range(0.0, MINUTE as f64) as i64;
                let amp = d.range(0.05, 0.4) * p.traits.eda_tonic;
                if t > at {
                    let s = (t - at) as f64 / SECOND as f64;
                    v += amp * (1.0 - (-s).exp()) * (-s / 6.0).exp();
                }
            }
        }
        // The surge of a seizure: mostly after onset.
        if let Some(sz) = seizure_at(plans, t, 15 * MINUTE) {
            let start = sz.start + sz.eda_delay_ms;
            if t > start {
                let s = (t - start) as f64 / SECOND as f64;
                v += sz.eda_us * 1.6 * (1.0 - (-s / 20.0).exp()) * (-s / 300.0).exp();
            }
        }
        v += confounders_at(plans, t).map(|c| c.eda(t)).sum::<f64>();
        v + 0.005 * gauss(key(&[p.key, purpose::NOISE, 3, t as u64]))
    }

    fn motion(&self, p: &Patient, plans: &Plans, act: &Activity, t: i64) -> [f64; 3] {
        let ts = t as f64 / SECOND as f64;
        let ph = p.traits.phases;
        let (theta, phi) = if act.asleep {
            // Lying still, turning over now and then.
            let mut d = Draws::new(key(&[p.key, purpose::POSTURE, t.div_euclid(40 * MINUTE) as u64]));
            (d.range(0.3, 2.8), d.range(0.0, TAU))
        } else {
            (
                1.2 + 0.6 * (TAU * ts / 780.0 + ph[0]).sin() + 0.3 * (TAU * ts / 246.0 + ph[1]).sin(),
                TAU * ts / 1740.0 + ph[2],
            )
        };
        let mut v = [theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()];
        let n = |axis: u64| gauss(key(&[p.key, purpose::NOISE, 20 + axis, t as u64]));
        let jitter = if act.asleep { 0.004 } else { 0.03 };
        for (i, a) in v.iter_mut().enumerate() {
            *a += jitter * n(i as u64);
        }
        if let Some(c) = act.walk_cadence {
            v[0] += 0.25 * (TAU * c / 120.0 * ts).sin();
            v[2] += 0.15 * (TAU * c / 60.0 * ts + 1.0).sin();
        }
        if act.exercise > 0.0 {
            let f = if act.running { 1.4 } else { 0.9 };
            v[0] += 0.6 * act.exercise * (TAU * f * ts).sin();
            v[1] += 0.3 * act.exercise * (TAU * 2.0 * f * ts + 0.5).sin();
        }
        for c in confounders_at(plans, t) {
            for (a, m) in v.iter_mut().zip(c.motion(t)) {
                *a += m;
            }
        }
        if let Some(s) = seizure_at(plans, t, 0)
            && t < s.end
            && s.amp_g > 0.0
        {
            // Rhythmic jerks whose frequency falls from f0 to f1 over the episode.
            let d = (s.end - s.start) as f64 / SECOND as f64;
            let tau = (t - s.start) as f64 / SECOND as f64;
            let phase = TAU * (s.f0 * tau + (s.f1 - s.f0) * tau * tau / (2.0 * d));
            let env = clamp01(tau / 3.0) * clamp01((d - tau) / 3.0);
            for (i, (w, off)) in [(0.8, 0.0), (0.6, 1.1), (0.5, 2.3)].into_iter().enumerate() {
                v[i] += s.amp_g * env * w * (phase + off).sin();
            }
        }
        v
    }

    fn beats(&self, p: &Patient, plans: &Plans, from: i64, to: i64, device: Device, out: &mut dyn FnMut(Reading)) {
        let (m0, m1) = (from.div_euclid(MINUTE), (to - 1).div_euclid(MINUTE));
        for m in m0..=m1 {
            let mut t = m * MINUTE + (unit(key(&[p.key, purpose::BEATS, m as u64])) * 800.0) as i64;
            let mut first = true;
            while t < (m + 1) * MINUTE {
                let act = activity(plans, t);
                let hr = self.heart_rate(p, plans, &act, t).clamp(35.0, 220.0);
                let sinus = 1.0 + 0.04 * (TAU * t as f64 / 4000.0).sin();
                let rr =
                    (60_000.0 / hr * sinus * (1.0 + 0.02 * gauss(key(&[p.key, purpose::BEATS, t as u64])))).round();
                let rr = rr.clamp(250.0, 2000.0);
                t += rr as i64;
                // The first beat of a block has no interval before it.
                if !first && t >= from && t < to && t < (m + 1) * MINUTE {
                    out(Reading { metric: "rr_interval", time_ms: t, value: rr, device });
                }
                first = false;
            }
        }
    }

    /// Seizure, illness and low-glucose episodes starting in `[from, to)`.
    pub fn labels(&self, p: &Patient, from: i64, to: i64) -> Vec<Label> {
        let mut v = Vec::new();
        let label = |kind, start_ms, end_ms| Label {
            patient: p.id.clone(),
            kind,
            start_ms,
            end_ms,
            onset_ms: None,
            subtype: None,
        };
        let plans = self.plans(p, from, to);
        for day in day_of(from)..=day_of(to - 1) {
            let plan = plans.get(day);
            for s in &plan.seizures {
                let subtype = self.options.seizure_kinds.then(|| s.kind.code());
                v.push(Label { subtype, ..label("seizure", s.start, s.end) });
            }
            for &(s, e, _) in &plan.hypos {
                v.push(label("hypoglycemia", s, e));
            }
        }
        if p.mix.has(Profile::Illness) {
            let every = self.illness_every_days();
            let (b0, b1) = (day_of(from).div_euclid(every), day_of(to - 1).div_euclid(every));
            for b in b0..=b1 {
                let i = Illness::of_block(p.key, b, every);
                v.push(Label { onset_ms: Some(i.peak_from), ..label("illness", i.start, i.end) });
            }
        }
        v.retain(|l| l.start_ms >= from && l.start_ms < to);
        v.sort_by(|a, b| (a.start_ms, a.kind).cmp(&(b.start_ms, b.kind)));
        v
    }

    /// Sleep periods (by the night's bedtime) and workouts starting in `[from, to)`.
    pub fn events(&self, p: &Patient, from: i64, to: i64) -> Vec<SimEvent> {
        if !p.mix.wearable() {
            return Vec::new();
        }
        let plans = self.plans(p, from, to);
        let mut v = Vec::new();
        for day in day_of(from) - 1..=day_of(to - 1) {
            let plan = plans.get(day);
            let ev = |kind, start_ms, end_ms, name| SimEvent { patient: p.id.clone(), kind, start_ms, end_ms, name };
            v.push(ev("sleep", plan.bed, plans.get(day + 1).wake, ""));
            if let Some((s, e, _, running)) = plan.exercise {
                v.push(ev("workout", s, e, if running { "running" } else { "cycling" }));
            }
        }
        v.retain(|e| e.start_ms >= from && e.start_ms < to);
        v.sort_by_key(|e| e.start_ms);
        v
    }
}

fn cgm_gap(plans: &Plans, t: i64) -> bool {
    plans.get(day_of(t)).cgm_gap.is_some_and(|(s, e)| (s..e).contains(&t))
}

/// The seizure in progress at `t` (or ended less than `after` ago).
/// The confounders that may change a signal at `t` (yesterday's too: a fever crosses
/// midnight).
fn confounders_at(plans: &Plans, t: i64) -> impl Iterator<Item = &crate::confounder::Confounder> {
    let today = day_of(t);
    [today - 1, today].into_iter().flat_map(|d| plans.get(d).confounders.iter()).filter(move |c| c.active(t))
}

fn seizure_at(plans: &Plans, t: i64, after: i64) -> Option<&Seizure> {
    let today = day_of(t);
    [today, today - 1]
        .into_iter()
        .flat_map(|d| plans.get(d).seizures.iter())
        .find(|s| t >= s.start && t < s.end + after)
}

fn activity(plans: &Plans, t: i64) -> Activity {
    let today = day_of(t);
    let mut a = Activity::default();
    for d in [today - 1, today] {
        if plans.get(d).bed <= t && t < plans.get(d + 1).wake {
            a.asleep = true;
        }
    }
    if a.asleep {
        return a;
    }
    let plan = plans.get(today);
    a.walk_cadence = plan.walks.iter().find(|(s, e, _)| (*s..*e).contains(&t)).map(|w| w.2);
    for d in [today - 1, today] {
        if let Some((s, e, intensity, running)) = plans.get(d).exercise {
            if t >= s && t < e {
                let ramp =
                    clamp01((t - s) as f64 / (5 * MINUTE) as f64) * clamp01((e - t) as f64 / (3 * MINUTE) as f64);
                a.exercise = intensity * ramp.max(0.2);
                a.running = running;
            } else if t >= e {
                a.recovery = a.recovery.max(intensity * (-((t - e) as f64) / (4 * MINUTE) as f64).exp());
            }
        }
    }
    a
}

/// The uploader phone's battery: drains while awake, charges overnight.
fn battery(plans: &Plans, t: i64) -> f64 {
    let today = day_of(t);
    for d in [today - 1, today] {
        let (bed, wake) = (plans.get(d).bed, plans.get(d + 1).wake);
        if bed <= t && t < wake {
            return (30.0 + (t - bed) as f64 / MINUTE as f64).min(100.0).round();
        }
    }
    let (wake, bed) = (plans.get(today).wake, plans.get(today).bed);
    let f = clamp01((t - wake) as f64 / (bed - wake).max(1) as f64);
    (100.0 - 70.0 * f).round()
}

fn steps_per_minute(p: &Patient, act: &Activity, t: i64) -> f64 {
    let g = gauss(key(&[p.key, purpose::NOISE, 30, t as u64]));
    if act.asleep {
        0.0
    } else if act.exercise > 0.0 && act.running {
        (155.0 + 6.0 * g).round()
    } else if let Some(c) = act.walk_cadence {
        (c + 4.0 * g).round().max(0.0)
    } else if unit(key(&[p.key, purpose::NOISE, 31, t as u64])) < 0.3 {
        (8.0 + 5.0 * g).round().max(0.0)
    } else {
        0.0
    }
}

/// Slow variation with unit variance, smooth in time, different per patient and channel.
fn smooth(p: &Patient, t: i64, channel: f64) -> f64 {
    let m = t as f64 / MINUTE as f64;
    let ph = p.traits.phases;
    ((TAU * m / 47.0 + ph[0] + channel).sin()
        + (TAU * m / 113.0 + ph[1] + channel * 1.3).sin()
        + (TAU * m / 271.0 + ph[2] + channel * 1.7).sin()
        + (TAU * m / 29.0 + ph[3] + channel * 2.1).sin())
        / 2f64.sqrt()
}
