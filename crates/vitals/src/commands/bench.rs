//! `vitals bench`: the benchmarks, one file each: `ingest` (the default: durable ingest over
//! HTTP, bytes on disk, reference queries, optionally against InfluxDB 1.x), `seizures`
//! (scores the seizure detector), `anomalies` (scores the anomaly detector on simulated
//! illnesses), `alerts` (`alert_latency`: sample-to-notification latency
//! under load), `security` (what authentication and auditing cost), `nightscout` (the
//! Nightscout way in next to the native one).

pub(crate) mod alert_latency;
pub(crate) mod anomalies;
mod ingest;
pub(crate) mod nightscout;
pub(crate) mod security;
pub(crate) mod seizures;

use std::path::PathBuf;
use std::process::ExitCode;

use vitals_server::config::Config;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchKind {
    /// Score the seizure detector on the simulator's labelled epilepsy patients.
    Seizures(seizures::SeizureArgs),
    /// Score the anomaly detector on simulated wearers who fall ill now and then.
    Anomalies(anomalies::AnomalyArgs),
    /// Time from a sample's acknowledgement to the notifier's HTTP request, under load.
    Alerts(alert_latency::AlertLatencyArgs),
    /// What authentication and auditing cost: token lookups, audit appends, audited reads.
    Security(security::SecurityArgs),
    /// Nightscout entries uploads and follower reads next to the native way in.
    Nightscout(nightscout::NightscoutArgs),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) kind: Option<BenchKind>,
    /// Patients in the dataset.
    #[arg(long, default_value_t = 4)]
    pub(crate) patients: usize,
    /// Days per patient (ending at the start of today, UTC).
    #[arg(long, default_value_t = 30)]
    pub(crate) days: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub(crate) clients: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) batch: usize,
    /// Wire format Vitals receives: `native` (NDJSON to /api/v1/samples) or `line`
    /// (InfluxDB line protocol to /write, the same bytes InfluxDB gets).
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) protocol: Protocol,
    /// Repetitions of each query (the median is reported).
    #[arg(long, default_value_t = 30)]
    pub(crate) repeat: usize,
    /// Also run InfluxDB 1.x at this URL (e.g. http://127.0.0.1:8086) and print ratios.
    #[arg(long)]
    pub(crate) influx_url: Option<String>,
    /// InfluxDB's data directory, to measure its bytes on disk.
    #[arg(long)]
    pub(crate) influx_dir: Option<PathBuf>,
    /// Keep the Vitals data here instead of a temporary directory.
    #[arg(long)]
    pub(crate) keep_data: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    Native,
    Line,
}

/// `f` for every id, on as many threads as there are cores; the results in no set order.
pub(crate) fn per_patient<T: Send>(
    ids: &[String],
    f: &(dyn Fn(&str) -> anyhow::Result<T> + Sync),
) -> anyhow::Result<Vec<T>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(ids.len().max(1));
    let chunks: Vec<Vec<&String>> = (0..workers).map(|w| ids.iter().skip(w).step_by(workers).collect()).collect();
    let results: Vec<anyhow::Result<T>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            chunks.iter().map(|chunk| s.spawn(move || chunk.iter().map(|id| f(id)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let out: Vec<T> = results.into_iter().collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(out.len() == ids.len(), "a worker thread failed");
    Ok(out)
}

pub(crate) fn run(config: &Config, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    match &a.kind {
        Some(BenchKind::Seizures(s)) => seizures::run(config, s),
        Some(BenchKind::Anomalies(s)) => anomalies::run(s),
        Some(BenchKind::Alerts(l)) => alert_latency::run(config, l),
        Some(BenchKind::Security(a)) => security::run(config, a),
        Some(BenchKind::Nightscout(a)) => nightscout::run(config, a),
        None => ingest::run(a),
    }
}
