//! `vitals bench seizures`: the seizure detectors scored on the simulator's labelled
//! epilepsy patients (the same detectors and thresholds as the live engine): the motion
//! detector, the autonomic detector (heart rate or RR and EDA, no accelerometer) and the
//! two combined, per seizure kind (hypermotor, autonomic-only, short), with and without
//! the simulator's confounders (tooth brushing, clapping, shaking, stress, heat, fever),
//! reporting sensitivity, false alarms per 24 h and detection latency.

use std::process::ExitCode;
use std::time::Instant;

use vitals_rules::autonomic::{AutonomicConfig, AutonomicDetector};
use vitals_rules::live::Change;
use vitals_rules::seizure::{Score, SeizureConfig, SeizureDetector};
use vitals_sim::{Mix, Options, Simulator, Which};

use vitals_server::config::Config;
#[derive(Debug, clap::Args)]
pub(crate) struct SeizureArgs {
    /// Epilepsy patients.
    #[arg(long, default_value_t = 10)]
    pub(crate) patients: usize,
    /// Days per patient.
    #[arg(long, default_value_t = 3)]
    pub(crate) days: usize,
    /// Mean seizures per day (Poisson).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) seizures_per_day: f64,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// A detection counts for a seizure if it fires during it or this many seconds after.
    #[arg(long, default_value_t = 60)]
    pub(crate) grace_s: i64,
}

/// Detections and labels of one patient.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatientRun {
    /// Seizures `(start, end, kind)`.
    pub(crate) labels: Vec<(i64, i64, &'static str)>,
    /// Firing times of the motion and the autonomic detector.
    pub(crate) motion: Vec<i64>,
    pub(crate) autonomic: Vec<i64>,
    pub(crate) samples: u64,
}

impl PatientRun {
    /// The combined detector: the first of the two to fire for an episode (a firing within
    /// two minutes of an earlier one is the same episode).
    pub(crate) fn combined(&self) -> Vec<i64> {
        let mut all: Vec<i64> = self.motion.iter().chain(&self.autonomic).copied().collect();
        all.sort_unstable();
        let mut out: Vec<i64> = Vec::new();
        for t in all {
            if out.last().is_none_or(|l| t - l > 120_000) {
                out.push(t);
            }
        }
        out
    }
}

/// Runs both detectors over `[from, to)` of one simulated patient, a minute at a time as a
/// wristband would upload it.
pub(crate) fn run_patient(
    sim: &Simulator,
    id: &str,
    from: i64,
    to: i64,
    config: &SeizureConfig,
    autonomic: &AutonomicConfig,
) -> anyhow::Result<PatientRun> {
    let mix: Mix = "epilepsy".parse()?;
    let p = sim.patient(id, mix);
    let mut d = SeizureDetector::new(config.clone());
    let mut a = AutonomicDetector::new(autonomic.clone());
    let (mut motion, mut auto) = (Vec::new(), Vec::new());
    let mut samples = 0u64;
    let mut t = from;
    let mut batch: Vec<(&'static str, i64, f64)> = Vec::new();
    let opened = |changes: Vec<Change>, into: &mut Vec<i64>| {
        into.extend(changes.into_iter().filter_map(|c| match c {
            Change::Opened { episode, .. } => Some(episode.fired),
            _ => None,
        }));
    };
    while t < to {
        let end = (t + 60_000).min(to);
        batch.clear();
        sim.generate(&p, t, end, Which::All, &mut |r| {
            if SeizureDetector::reads(r.metric) || AutonomicDetector::reads(r.metric) {
                batch.push((r.metric, r.time_ms, r.value));
            }
        });
        samples += batch.len() as u64;
        let motion_batch: Vec<_> = batch.iter().copied().filter(|r| SeizureDetector::reads(r.0)).collect();
        opened(d.ingest(id, &motion_batch), &mut motion);
        // The autonomic detector as for a band without an accelerometer: RR and EDA.
        let autonomic_batch: Vec<_> = batch.iter().copied().filter(|r| r.0 == "rr_interval" || r.0 == "eda").collect();
        opened(a.ingest(id, &autonomic_batch), &mut auto);
        t = end;
    }
    let labels = sim
        .labels(&p, from, to)
        .into_iter()
        .filter(|l| l.kind == "seizure")
        .map(|l| (l.start_ms, l.end_ms, l.subtype.unwrap_or("hypermotor")))
        .collect();
    Ok(PatientRun { labels, motion, autonomic: auto, samples })
}

const KINDS: [&str; 3] = ["hypermotor", "autonomic", "short"];

/// A detector's firing times in a patient's run.
type Fired = dyn Fn(&PatientRun) -> Vec<i64>;

/// One row of the table: a detector over every patient of a run.
fn row(name: &str, runs: &[PatientRun], fired: &Fired, hours: f64, grace_ms: i64) -> String {
    let mut cells = vec![name.to_owned()];
    let mut all = Score { seizures: 0, detected: 0, false_alarms: 0, hours: 0.0, latencies_ms: Vec::new() };
    for kind in KINDS {
        let (mut n, mut hit) = (0, 0);
        for r in runs {
            let labels: Vec<(i64, i64)> = r.labels.iter().filter(|l| l.2 == kind).map(|l| (l.0, l.1)).collect();
            let s = Score::of(&labels, &fired(r), hours, grace_ms);
            n += s.seizures;
            hit += s.detected;
        }
        cells.push(if n == 0 { "-".into() } else { format!("{:.0}% ({hit}/{n})", 100.0 * hit as f64 / n as f64) });
    }
    for r in runs {
        let labels: Vec<(i64, i64)> = r.labels.iter().map(|l| (l.0, l.1)).collect();
        let s = Score::of(&labels, &fired(r), hours, grace_ms);
        all.seizures += s.seizures;
        all.detected += s.detected;
        all.false_alarms += s.false_alarms;
        all.hours += s.hours;
        all.latencies_ms.extend(s.latencies_ms);
    }
    all.latencies_ms.sort_unstable();
    cells.push(format!("{:.0}%", 100.0 * all.sensitivity()));
    cells.push(format!("{:.2}", all.false_alarms_per_day()));
    cells.push(all.median_latency_ms().map_or("-".into(), |l| format!("{:.0} s", l as f64 / 1000.0)));
    format!("| {} |", cells.join(" | "))
}

pub(crate) fn run(config: &Config, a: &SeizureArgs) -> anyhow::Result<ExitCode> {
    let day = vitals_core::time::MS_PER_DAY;
    // Whole UTC days ending at the start of 2025-11-22 (fixed, so runs compare).
    let to = 1_763_769_600_000;
    let from = to - a.days as i64 * day;
    let cfg = SeizureConfig { enabled: true, ..config.alerting.seizure.clone() };
    let auto = AutonomicConfig::default();
    let hours = (to - from) as f64 / 3_600_000.0;
    println!(
        "seizure detectors on {} simulated epilepsy patients x {} days (seed {}, {} seizures/day: 60% hypermotor, 25% autonomic-only, 15% short; a detection counts within {} s after a seizure)",
        a.patients, a.days, a.seed, a.seizures_per_day, a.grace_s
    );
    println!("  motion thresholds: {}", serde_json::to_string(&cfg)?);
    println!("  autonomic thresholds: {}", serde_json::to_string(&auto)?);
    println!();
    println!(
        "| detector | confounders | hypermotor | autonomic-only | short | all kinds | false alarms / 24 h | median latency |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let started = Instant::now();
    let mut samples = 0;
    for confounders in [false, true] {
        let sim = Simulator::new(
            a.seed,
            Options { seizures_per_day: a.seizures_per_day, seizure_kinds: true, confounders, ..Options::default() },
        );
        let ids: Vec<String> = (0..a.patients).map(|i| format!("p-epilepsy-{i:03}")).collect();
        let runs = super::per_patient(&ids, &|id| run_patient(&sim, id, from, to, &cfg, &auto))?;
        samples += runs.iter().map(|r| r.samples).sum::<u64>();
        let with = if confounders { "with" } else { "without" };
        let grace = a.grace_s * 1000;
        let rows: [(&str, &Fired); 3] = [
            ("motion", &|r| r.motion.clone()),
            ("autonomic", &|r| r.autonomic.clone()),
            ("combined", &|r| r.combined()),
        ];
        for (name, fired) in rows {
            let line = row(name, &runs, fired, hours, grace);
            println!("{}", line.replacen(" |", &format!(" | {with} |"), 1));
        }
    }
    println!(
        "| published wrist devices (motion + EDA, tonic-clonic seizures) | real life | 0.92-0.94 of tonic-clonic seizures | - | - | - | 0.6-1.3 | about 37 s |"
    );
    let secs = started.elapsed().as_secs_f64();
    println!();
    println!("{samples} samples in {secs:.1} s ({:.0} samples/s, simulation included)", samples as f64 / secs);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the simulator's labelled seizures the default thresholds of both detectors find
    /// them within seconds, and raise no alarm at other times (exercise, walking, sleep
    /// included); the autonomic detector finds the seizures without rhythmic motion that
    /// the motion detector cannot.
    #[test]
    fn both_detectors_find_simulated_seizures_without_false_alarms() {
        let sim = Simulator::new(7, Options { seizures_per_day: 12.0, seizure_kinds: true, ..Options::default() });
        let cfg = SeizureConfig { enabled: true, ..SeizureConfig::default() };
        // 2025-11-21, 08:00-14:00 UTC: awake, with walks.
        let from = 1_763_712_000_000;
        let to = from + 6 * 3_600_000;
        let r = run_patient(&sim, "p-test-1", from, to, &cfg, &AutonomicConfig::default()).expect("run");
        let of =
            |kind: &str| -> Vec<(i64, i64)> { r.labels.iter().filter(|l| l.2 == kind).map(|l| (l.0, l.1)).collect() };
        let motor = of("hypermotor");
        let autonomic_only = of("autonomic");
        assert!(!motor.is_empty() && !autonomic_only.is_empty(), "the window should hold both kinds: {:?}", r.labels);
        let s = Score::of(&motor, &r.motion, 6.0, 60_000);
        assert_eq!(s.detected, s.seizures, "{s:?} {r:?}");
        assert!(s.latencies_ms.iter().all(|l| *l <= 40_000), "{s:?}");
        assert_eq!(Score::of(&autonomic_only, &r.motion, 6.0, 60_000).detected, 0, "no motion, no motion detection");
        let all: Vec<(i64, i64)> = r.labels.iter().map(|l| (l.0, l.1)).collect();
        let a = Score::of(&all, &r.autonomic, 6.0, 60_000);
        assert!(a.detected * 10 >= a.seizures * 7, "the autonomic detector finds most of every kind: {a:?}");
        assert_eq!(Score::of(&autonomic_only, &r.autonomic, 6.0, 60_000).sensitivity(), 1.0, "{r:?}");
        let c = Score::of(&all, &r.combined(), 6.0, 60_000);
        assert_eq!((c.false_alarms, Score::of(&all, &r.motion, 6.0, 60_000).false_alarms), (0, 0), "{r:?}");
    }
}
