//! What a wrist does that is not a seizure but looks like one (`Options::confounders`,
//! epilepsy patients): rhythmic motion in the clonic band (tooth brushing, clapping,
//! shaking), and the autonomic signs of everyday life (stress, heat, fever): heart rate up,
//! an electrodermal surge. Drawn per day from the patient's key, apart from every other
//! draw, so the rest of the data is the same with or without them.

use std::f64::consts::TAU;

use crate::plan::{DAY, HOUR, MINUTE, SECOND, purpose};
use crate::rng::{Draws, key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Two minutes at 4-5.5 Hz, 0.3-0.5 g: in the clonic band.
    ToothBrushing,
    /// 8-20 s at 3-4.5 Hz, 1-1.5 g, heart rate +8 %.
    Clapping,
    /// 5-15 s at 5-7 Hz, 0.4-0.8 g (shaking a bottle, a hand).
    Shaking,
    /// 3-10 minutes: heart rate +20-30 % over 90 s, an electrodermal rise of 1.5-4 µS.
    Stress,
    /// 30-60 minutes in the heat: sweat (+2-5 µS over 10 min), heart rate +8 %.
    Heat,
    /// 6-12 hours of fever: heart rate +15-25 bpm over an hour.
    Fever,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Confounder {
    pub(crate) kind: Kind,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Motion frequency (Hz) and amplitude (g), or the size of the autonomic change.
    pub(crate) hz: f64,
    pub(crate) size: f64,
}

fn one(kind: Kind, start: i64, secs: f64, hz: f64, size: f64) -> Confounder {
    Confounder { kind, start, end: start + (secs * SECOND as f64) as i64, hz, size }
}

/// The day's confounders, given its wake and bed times.
pub(crate) fn draw(patient_key: u64, day: i64, wake: i64, bed: i64) -> Vec<Confounder> {
    let mut d = Draws::new(key(&[patient_key, purpose::CONFOUNDER, day as u64]));
    let mut v = Vec::new();
    let awake = |d: &mut Draws| wake + (d.range(0.05, 0.95) * (bed - wake).max(HOUR) as f64) as i64;
    // Teeth, morning and evening.
    for base in [wake + 10 * MINUTE, bed - 30 * MINUTE] {
        let s = base + (d.range(0.0, 20.0) * MINUTE as f64) as i64;
        v.push(one(Kind::ToothBrushing, s, 120.0, d.range(4.0, 5.5), d.range(0.3, 0.5)));
    }
    if d.chance(0.3) {
        let s = awake(&mut d);
        v.push(one(Kind::Clapping, s, d.range(8.0, 20.0), d.range(3.0, 4.5), d.range(1.0, 1.5)));
    }
    for _ in 0..d.poisson(1.0) {
        let s = awake(&mut d);
        v.push(one(Kind::Shaking, s, d.range(5.0, 15.0), d.range(5.0, 7.0), d.range(0.4, 0.8)));
    }
    for _ in 0..d.poisson(1.0) {
        let s = awake(&mut d);
        v.push(one(Kind::Stress, s, d.range(3.0, 10.0) * 60.0, 0.0, d.range(0.2, 0.3)));
    }
    if d.chance(0.2) {
        let s = awake(&mut d);
        v.push(one(Kind::Heat, s, d.range(30.0, 60.0) * 60.0, 0.0, d.range(2.0, 5.0)));
    }
    if d.chance(0.05) {
        let s = day * DAY + (d.range(0.0, 18.0) * HOUR as f64) as i64;
        v.push(one(Kind::Fever, s, d.range(6.0, 12.0) * 3600.0, 0.0, d.range(15.0, 25.0)));
    }
    v
}

impl Confounder {
    /// 0 at the start rising to 1 over `ms`.
    fn up(&self, t: i64, ms: i64) -> f64 {
        ((t - self.start) as f64 / ms as f64).clamp(0.0, 1.0)
    }

    /// 1 until the end, then decaying with time constant `ms`.
    fn after(&self, t: i64, ms: i64) -> f64 {
        if t < self.end { 1.0 } else { (-((t - self.end) as f64) / ms as f64).exp() }
    }

    /// Acceleration added on the three axes at `t` (g).
    pub(crate) fn motion(&self, t: i64) -> [f64; 3] {
        if !matches!(self.kind, Kind::ToothBrushing | Kind::Clapping | Kind::Shaking) || t < self.start || t >= self.end
        {
            return [0.0; 3];
        }
        let ts = (t - self.start) as f64 / SECOND as f64;
        let env = self.up(t, SECOND).min(((self.end - t) as f64 / SECOND as f64).clamp(0.0, 1.0));
        let a = self.size * env;
        let s = (TAU * self.hz * ts).sin();
        match self.kind {
            // Back and forth along the forearm, a little sideways.
            Kind::ToothBrushing => [a * s, 0.4 * a * s, 0.0],
            // Hands meeting: sharp, mostly on one axis.
            Kind::Clapping => [a * s.powi(3), 0.2 * a * s, 0.1 * a * s],
            _ => [0.7 * a * s, 0.7 * a * (TAU * self.hz * ts + 0.5).sin(), 0.0],
        }
    }

    /// The heart rate at `t` given `hr` without it.
    pub(crate) fn heart_rate(&self, hr: f64, t: i64) -> f64 {
        if t < self.start {
            return hr;
        }
        match self.kind {
            Kind::ToothBrushing => hr + 5.0 * self.up(t, 20 * SECOND) * self.after(t, 60 * SECOND),
            Kind::Clapping => hr * (1.0 + 0.08 * self.up(t, 5 * SECOND) * self.after(t, 60 * SECOND)),
            Kind::Shaking => hr,
            Kind::Stress => hr * (1.0 + self.size * self.up(t, 90 * SECOND) * self.after(t, 90 * SECOND)),
            Kind::Heat => hr * (1.0 + 0.08 * self.up(t, 10 * MINUTE) * self.after(t, 10 * MINUTE)),
            Kind::Fever => hr + self.size * self.up(t, HOUR) * self.after(t, HOUR),
        }
    }

    /// Electrodermal activity added at `t` (µS).
    pub(crate) fn eda(&self, t: i64) -> f64 {
        if t < self.start {
            return 0.0;
        }
        match self.kind {
            // 1.5-4 µS, rising over a minute, fading over minutes.
            Kind::Stress => (1.5 + (self.size - 0.2) * 25.0) * self.up(t, 60 * SECOND) * self.after(t, 5 * MINUTE),
            Kind::Heat => self.size * self.up(t, 10 * MINUTE) * self.after(t, 10 * MINUTE),
            Kind::Fever => 0.5 * self.up(t, HOUR) * self.after(t, HOUR),
            _ => 0.0,
        }
    }

    /// Whether it may still change a signal at `t`.
    pub(crate) fn active(&self, t: i64) -> bool {
        t >= self.start && t < self.end + 2 * HOUR
    }
}
