//! `vitals bench seizures`: the seizure detector scored on the simulator's labelled
//! epilepsy patients (the same detector and thresholds as the live engine), reporting
//! sensitivity, false alarms per 24 h and detection latency.

use std::process::ExitCode;
use std::time::Instant;

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
    pub(crate) labels: Vec<(i64, i64)>,
    pub(crate) fired: Vec<i64>,
    pub(crate) samples: u64,
}

/// Runs the detector over `[from, to)` of one simulated patient, a minute at a time as a
/// wristband would upload it.
pub(crate) fn run_patient(
    sim: &Simulator,
    id: &str,
    from: i64,
    to: i64,
    config: &SeizureConfig,
) -> anyhow::Result<PatientRun> {
    let mix: Mix = "epilepsy".parse()?;
    let p = sim.patient(id, mix);
    let mut d = SeizureDetector::new(config.clone());
    let mut fired = Vec::new();
    let mut samples = 0u64;
    let mut t = from;
    let mut batch: Vec<(&'static str, i64, f64)> = Vec::new();
    while t < to {
        let end = (t + 60_000).min(to);
        batch.clear();
        sim.generate(&p, t, end, Which::All, &mut |r| {
            if SeizureDetector::reads(r.metric) {
                batch.push((r.metric, r.time_ms, r.value));
            }
        });
        samples += batch.len() as u64;
        for c in d.ingest(id, &batch) {
            if let Change::Opened { episode, .. } = c {
                fired.push(episode.fired);
            }
        }
        t = end;
    }
    let labels =
        sim.labels(&p, from, to).into_iter().filter(|l| l.kind == "seizure").map(|l| (l.start_ms, l.end_ms)).collect();
    Ok(PatientRun { labels, fired, samples })
}

pub(crate) fn run(config: &Config, a: &SeizureArgs) -> anyhow::Result<ExitCode> {
    let sim = Simulator::new(a.seed, Options { seizures_per_day: a.seizures_per_day, ..Options::default() });
    let day = vitals_core::time::MS_PER_DAY;
    // Whole UTC days ending at the start of 2025-11-22 (fixed, so runs compare).
    let to = 1_763_769_600_000;
    let from = to - a.days as i64 * day;
    let cfg = SeizureConfig { enabled: true, ..config.alerting.seizure.clone() };
    let started = Instant::now();
    let ids: Vec<String> = (0..a.patients).map(|i| format!("p-epilepsy-{i:03}")).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(ids.len().max(1));
    let chunks: Vec<Vec<String>> =
        (0..workers).map(|w| ids.iter().skip(w).step_by(workers).cloned().collect()).collect();
    let runs: Vec<anyhow::Result<PatientRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| s.spawn(|| chunk.iter().map(|id| run_patient(&sim, id, from, to, &cfg)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut labels = Vec::new();
    let mut fired = Vec::new();
    let mut samples = 0;
    let mut total = Score { seizures: 0, detected: 0, false_alarms: 0, hours: 0.0, latencies_ms: Vec::new() };
    for r in runs {
        let r = r?;
        let s = Score::of(&r.labels, &r.fired, (to - from) as f64 / 3_600_000.0, a.grace_s * 1000);
        total.seizures += s.seizures;
        total.detected += s.detected;
        total.false_alarms += s.false_alarms;
        total.hours += s.hours;
        total.latencies_ms.extend(s.latencies_ms);
        labels.extend(r.labels);
        fired.extend(r.fired);
        samples += r.samples;
    }
    total.latencies_ms.sort_unstable();
    let secs = started.elapsed().as_secs_f64();
    let pct = |q: f64| -> String {
        let l = &total.latencies_ms;
        if l.is_empty() {
            return "-".into();
        }
        let i = ((l.len() - 1) as f64 * q).round() as usize;
        format!("{:.1} s", l[i] as f64 / 1000.0)
    };
    println!(
        "seizure detector on {} simulated epilepsy patients x {} days (seed {}, {} seizures/day; grace {} s)",
        a.patients, a.days, a.seed, a.seizures_per_day, a.grace_s
    );
    println!("  thresholds: {}", serde_json::to_string(&cfg)?);
    println!(
        "  sensitivity {:.1}% ({}/{}), false alarms {:.2} per 24 h ({} in {:.0} h)",
        100.0 * total.sensitivity(),
        total.detected,
        total.seizures,
        total.false_alarms_per_day(),
        total.false_alarms,
        total.hours
    );
    println!("  latency from onset: median {}, p90 {}, max {}", pct(0.5), pct(0.9), pct(1.0));
    println!("  {samples} samples in {secs:.1} s ({:.0} samples/s, simulation included)", samples as f64 / secs);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the simulator's labelled seizures the default thresholds find them all within
    /// seconds, and raise no alarm at other times (exercise, walking, sleep included).
    #[test]
    fn the_detector_finds_simulated_seizures_without_false_alarms() {
        let sim = Simulator::new(7, Options { seizures_per_day: 12.0, ..Options::default() });
        let cfg = SeizureConfig { enabled: true, ..SeizureConfig::default() };
        // 2025-11-21, 08:00-14:00 UTC: awake, with walks.
        let from = 1_763_712_000_000;
        let to = from + 6 * 3_600_000;
        let r = run_patient(&sim, "p-test-1", from, to, &cfg).expect("run");
        assert!(r.labels.len() >= 2, "the window should hold seizures: {:?}", r.labels);
        let s = Score::of(&r.labels, &r.fired, 6.0, 60_000);
        assert_eq!(s.detected, s.seizures, "{s:?} {r:?}");
        assert_eq!(s.false_alarms, 0, "{s:?} {r:?}");
        assert!(s.latencies_ms.iter().all(|l| *l <= 40_000), "{s:?}");
    }
}
