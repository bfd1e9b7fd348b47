//! `vitals bench anomalies`: the anomaly detector scored on simulated cohorts of
//! smartwatch wearers who fall ill now and then (resting heart rate, HRV, skin
//! temperature, respiratory rate and SpO2 drift for 2.5 to 4 days; the simulator's
//! `illness` profile). Each night's values come from the simulated readings exactly as the
//! server makes them (5-minute means, then `vitals_rules::night`), and the detector is the live one
//! (`vitals_rules::anomaly`). Reported per sensitivity, with every signal and with the
//! resting heart rate alone: the share of illnesses warned of, how many days before
//! symptom onset, and false alerts per person-month.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use vitals_rules::anomaly::{AnomalyConfig, NightValues, Sensitivity, detect};
use vitals_rules::baseline::Signal;
use vitals_rules::night;
use vitals_sim::{Mix, Options, Simulator, Which};

const DAY: i64 = vitals_core::time::MS_PER_DAY;
const HOUR: i64 = 3_600_000;

#[derive(Debug, clap::Args)]
pub(crate) struct AnomalyArgs {
    /// Simulated wearers.
    #[arg(long, default_value_t = 20)]
    pub(crate) patients: usize,
    /// Days per wearer (the first 28 build the baseline and are not scored).
    #[arg(long, default_value_t = 240)]
    pub(crate) days: usize,
    /// One illness in every block of this many days.
    #[arg(long, default_value_t = 60)]
    pub(crate) illness_every_days: i64,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
}

/// One wearer's nights and illnesses `(start, symptom onset, end)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wearer {
    pub(crate) nights: BTreeMap<i64, NightValues>,
    /// The resting heart rate derived from heart rate alone (as for a band that reports
    /// no resting rate of its own), the only signal.
    pub(crate) derived: BTreeMap<i64, NightValues>,
    pub(crate) illnesses: Vec<(i64, i64, i64)>,
}

/// Simulates one wearer over the days `[first_day, last_day)`: each night from the 36
/// hours before its noon (the previous day's steps included).
pub(crate) fn simulate(sim: &Simulator, id: &str, first_day: i64, last_day: i64) -> anyhow::Result<Wearer> {
    let mix: Mix = "illness".parse()?;
    let p = sim.patient(id, mix);
    let mut w = Wearer::default();
    let mut readings: Vec<(&'static str, i64, f64)> = Vec::new();
    for day in first_day..last_day {
        readings.clear();
        sim.generate(&p, (day - 1) * DAY, day * DAY + 12 * HOUR, Which::Sparse, &mut |r| {
            if night::METRICS.contains(&r.metric) {
                readings.push((r.metric, r.time_ms, r.value));
            }
        });
        // As the server reads them: 5-minute means.
        readings = night::five_minute_means(&readings);
        for (d, signal, v) in night::night_values(&readings) {
            if d == day {
                w.nights.entry(d).or_insert([None; 7])[signal.index()] = Some(v);
            }
        }
        readings.retain(|r| r.0 == "heart_rate");
        for (d, signal, v) in night::night_values(&readings) {
            if d == day && signal == Signal::RestingHeartRate {
                w.derived.entry(d).or_insert([None; 7])[signal.index()] = Some(v);
            }
        }
    }
    w.illnesses = sim
        .labels(&p, first_day * DAY, last_day * DAY)
        .into_iter()
        .filter(|l| l.kind == "illness")
        .map(|l| (l.start_ms, l.onset_ms.unwrap_or(l.start_ms), l.end_ms))
        .collect();
    Ok(w)
}

/// How the detector did over a cohort.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Score {
    pub(crate) illnesses: usize,
    pub(crate) detected: usize,
    /// Days from the warning to symptom onset (positive: before), per detected illness.
    pub(crate) warning_days: Vec<f64>,
    pub(crate) false_alerts: usize,
    pub(crate) person_months: f64,
}

impl Score {
    /// Scores the anomalies of a wearer's nights from `scored_from_day` on. An anomaly
    /// warns of an illness when it fires (at noon of its night, when the night is
    /// complete) between the illness's start and a day after its end; any other is false.
    pub(crate) fn add(&mut self, w: &Wearer, config: &AnomalyConfig, scored_from_day: i64, last_day: i64) {
        let fired: Vec<i64> = detect(&w.nights, config).iter().map(|a| a.fired_day * DAY + 12 * HOUR).collect();
        let scored = |t: i64| t >= scored_from_day * DAY;
        for &(start, onset, end) in w.illnesses.iter().filter(|i| scored(i.0)) {
            self.illnesses += 1;
            if let Some(t) = fired.iter().find(|t| (start..=end + DAY).contains(t)) {
                self.detected += 1;
                self.warning_days.push((onset - t) as f64 / DAY as f64);
            }
        }
        self.false_alerts += fired
            .iter()
            .filter(|t| scored(**t) && !w.illnesses.iter().any(|&(s, _, e)| (s..=e + DAY).contains(*t)))
            .count();
        self.person_months += (last_day - scored_from_day) as f64 / 30.0;
    }

    fn sensitivity(&self) -> f64 {
        self.detected as f64 / self.illnesses.max(1) as f64
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// Which nights' values are scored.
#[derive(Debug, Clone, Copy)]
enum Signals {
    All,
    /// The device's resting heart rate alone.
    RestingRate,
    /// A resting rate derived from heart rate alone.
    Derived,
}

impl Signals {
    fn label(self) -> &'static str {
        match self {
            Signals::All => "all",
            Signals::RestingRate => "the watch's resting heart rate only",
            Signals::Derived => "resting rate derived from heart rate only",
        }
    }

    fn of(self, w: &Wearer) -> Wearer {
        let i = Signal::RestingHeartRate.index();
        let nights = match self {
            Signals::All => w.nights.clone(),
            Signals::RestingRate => {
                w.nights.iter().map(|(d, v)| (*d, std::array::from_fn(|k| if k == i { v[i] } else { None }))).collect()
            }
            Signals::Derived => w.derived.clone(),
        };
        Wearer { nights, derived: BTreeMap::new(), illnesses: w.illnesses.clone() }
    }
}

pub(crate) fn run(a: &AnomalyArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.days > 35, "--days: more than 35 (28 build the baseline)");
    let sim = Simulator::new(a.seed, Options { illness_every_days: a.illness_every_days, ..Options::default() });
    // Whole UTC days ending at the start of 2025-11-22 (fixed, so runs compare).
    let last_day = 1_763_769_600_000 / DAY;
    let first_day = last_day - a.days as i64;
    let scored_from = first_day + 28;
    let started = Instant::now();
    let ids: Vec<String> = (0..a.patients).map(|i| format!("p-illness-{i:03}")).collect();
    let wearers = super::per_patient(&ids, &|id| simulate(&sim, id, first_day, last_day))?;
    let simulated = started.elapsed().as_secs_f64();
    println!(
        "anomaly detector on {} simulated wearers x {} days (seed {}, an illness every {} days; the first 28 days build the baseline and are not scored)",
        a.patients, a.days, a.seed, a.illness_every_days
    );
    println!(
        "| sensitivity setting | signals | illnesses | warned | sensitivity | days of warning before symptom onset: median (p25, p75) | warned before onset | false alerts per person-month |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for sensitivity in [Sensitivity::Low, Sensitivity::Normal, Sensitivity::High] {
        let config = AnomalyConfig { sensitivity, ..AnomalyConfig::default() };
        for signals in [Signals::All, Signals::RestingRate, Signals::Derived] {
            let label = signals.label();
            let mut score = Score::default();
            for w in &wearers {
                score.add(&signals.of(w), &config, scored_from, last_day);
            }
            score.warning_days.sort_by(f64::total_cmp);
            let days = |q| quantile(&score.warning_days, q).map_or("-".to_owned(), |d| format!("{d:+.1}"));
            let before = score.warning_days.iter().filter(|d| **d > 0.0).count();
            println!(
                "| {} | {label} | {} | {} | {:.1}% | {} ({}, {}) | {before} | {:.2} |",
                serde_json::to_value(sensitivity)?.as_str().unwrap_or("?"),
                score.illnesses,
                score.detected,
                100.0 * score.sensitivity(),
                days(0.5),
                days(0.25),
                days(0.75),
                score.false_alerts as f64 / score.person_months.max(f64::MIN_POSITIVE),
            );
        }
    }
    println!("simulated in {simulated:.1} s, scored in {:.1} s", started.elapsed().as_secs_f64() - simulated);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On simulated wearers the detector warns of most illnesses with few false alerts;
    /// the scoring itself is checked on hand-made nights.
    #[test]
    fn the_detector_warns_of_simulated_illnesses() {
        let sim = Simulator::new(7, Options { illness_every_days: 30, ..Options::default() });
        let last_day = 1_763_769_600_000 / DAY;
        let first_day = last_day - 100;
        let w = simulate(&sim, "p-test-1", first_day, last_day).expect("simulated");
        assert!(w.nights.len() >= 95, "a night's values nearly every day: {}", w.nights.len());
        assert!(w.derived.len() >= 95, "a resting rate from heart rate nearly every night: {}", w.derived.len());
        assert!(
            w.nights.values().all(|n| n[Signal::RestingHeartRate.index()].is_some() || n.iter().any(Option::is_some))
        );
        let mut s = Score::default();
        s.add(&w, &AnomalyConfig::default(), first_day + 28, last_day);
        assert!(s.illnesses >= 2, "{s:?} {:?}", w.illnesses);
        assert!(s.detected >= 1, "{s:?}");
        assert!(s.false_alerts <= 1, "{s:?}");
    }

    #[test]
    fn an_alert_warns_of_the_illness_it_falls_in_and_any_other_is_false() {
        // Resting rate 60, raised to 68 on days 40-42 (an illness 39.5 to 43, onset 41),
        // and on days 60-61 (no illness).
        let mut w = Wearer::default();
        for d in 0..80 {
            let v = if (40..=42).contains(&d) || (60..=61).contains(&d) { 68.0 } else { 60.0 + (d % 3) as f64 };
            w.nights.entry(d).or_insert([None; 7])[0] = Some(v);
        }
        w.illnesses = vec![(39 * DAY + 12 * HOUR, 41 * DAY + 18 * HOUR, 43 * DAY)];
        let mut s = Score::default();
        s.add(&w, &AnomalyConfig::default(), 28, 80);
        assert_eq!((s.illnesses, s.detected, s.false_alerts), (1, 1, 1), "{s:?}");
        // Fired at noon of night 41: 6 hours before onset.
        assert_eq!(s.warning_days, vec![0.25]);
        assert!((s.person_months - 52.0 / 30.0).abs() < 1e-12);
    }
}
