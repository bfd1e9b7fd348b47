//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use vitals_server::auth::Role;

#[derive(Debug, Parser)]
#[command(name = "vitals", version, about = "Vitals: wearable health data, stored safely, watched in real time")]
pub(crate) struct Cli {
    /// Config file (TOML); see config/vitals.example.toml.
    #[arg(long, global = true, env = "VITALS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Query one series of one patient.
    Query(QueryArgs),
    /// Run SQL over the data (tables samples, rollups_hourly, events, alerts, patients,
    /// cohorts, metrics; see docs/analytics.md).
    Sql(SqlArgs),
    /// The lake: DDL for engines that read it directly.
    Lake {
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// Ingest NDJSON, JSON or CSV files.
    Ingest(IngestArgs),
    /// Administration: users, care teams, tokens, patients, audit log, vault keys, outboxes.
    Admin(AdminArgs),
    /// Benchmark ingest, storage size and queries on a generated wearable dataset.
    Bench(crate::commands::bench::BenchArgs),
    /// The demo: the server with 20 synthetic patients, 7 days of history, then live data.
    Demo(crate::commands::demo::DemoArgs),
    /// Synthetic patients: backfill, live streaming or load, to files or a server.
    Simulate(crate::commands::simulate::SimulateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Start even if the WAL has a corrupt record in the middle (keeps what precedes it).
    #[arg(long)]
    pub(crate) repair_wal: bool,
}

/// Where a command acts: a running server (`--url`) or a data directory (`--data-dir`).
#[derive(Debug, Args, Clone)]
pub(crate) struct RemoteArgs {
    /// Base URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "VITALS_URL")]
    pub(crate) url: Option<String>,
    /// API token for --url.
    #[arg(long, env = "VITALS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[arg(long)]
    pub(crate) patient: String,
    #[arg(long)]
    pub(crate) metric: String,
    /// Start (RFC 3339 or ms since epoch); default: the beginning.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// End, exclusive; default: now.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Bucket width, e.g. 1h; omit for raw points.
    #[arg(long)]
    pub(crate) every: Option<String>,
    /// Aggregates per bucket: mean,min,max,count,sum,first,last.
    #[arg(long)]
    pub(crate) agg: Option<String>,
    /// Only this device.
    #[arg(long)]
    pub(crate) device: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LakeCommand {
    /// Print SQL that creates tables over the lake as it is (one per metric, and a samples view).
    Ddl {
        /// duckdb, athena (Presto/Trino) or spark.
        #[arg(long = "for")]
        engine: String,
        /// Where the engine finds the lake (a path or s3://bucket/prefix); default: this data
        /// directory's lake.
        #[arg(long)]
        location: Option<String>,
    },
    /// Compact the lake now: every day partition, then every month that ended (merged
    /// across days into archive segments), as the server does over time.
    Compact,
    /// Export samples as FHIR R4 bulk data: Patient, Device and Observation NDJSON files
    /// and a manifest.json (the shape of FHIR Bulk Data $export).
    Fhir {
        /// The directory to write (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Only these patients (repeat the flag); default: every patient.
        #[arg(long)]
        patient: Vec<String>,
        /// Only these metrics (repeat the flag); default: every metric.
        #[arg(long)]
        metric: Vec<String>,
        /// Start of the range (RFC 3339 or ms); default: the beginning.
        #[arg(long)]
        from: Option<String>,
        /// End of the range (exclusive); default: no end.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The query, e.g. "SELECT metric, count(*) FROM samples GROUP BY metric"; - reads stdin.
    pub(crate) query: String,
    /// table, csv, json, arrow (IPC stream) or parquet.
    #[arg(long, default_value = "table")]
    pub(crate) format: String,
    /// Write the answer to this file instead of stdout.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Files: NDJSON, a JSON array or {"samples": [...]}, CSV patient,metric,time,value[,unit,device];
    /// with --patient also a Health Auto Export JSON export, an Apple Health export.xml, or
    /// Empatica E4 signal files and session folders.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// The patient of files that carry no patient ids (Health Auto Export, Apple Health, E4).
    #[arg(long)]
    pub(crate) patient: Option<String>,
    /// Lines per request or write batch.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) batch_lines: usize,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// People who sign in.
    User {
        #[command(subcommand)]
        command: crate::commands::admin::UserCommand,
    },
    /// Care teams: clinicians and caregivers with the patients they look after.
    Team {
        #[command(subcommand)]
        command: crate::commands::admin::TeamCommand,
    },
    /// Patients: pseudonyms and identities.
    Patient {
        #[command(subcommand)]
        command: crate::commands::admin::PatientCommand,
    },
    /// Devices' client certificates (mTLS on HTTPS and the MQTT listener).
    Device {
        #[command(subcommand)]
        command: crate::commands::admin::DeviceCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: crate::commands::admin::AuditCommand,
    },
    /// The identity vault's keys.
    Vault {
        #[command(subcommand)]
        command: crate::commands::admin::VaultCommand,
    },
    /// Refused input kept for inspection and replay.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// The notification outbox and its dead-letter list (notices given up on).
    Notifications {
        #[command(subcommand)]
        command: NotificationCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NotificationCommand {
    /// List notices, newest first.
    List {
        /// pending, delivered, dead or withdrawn (default: all).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one notice with its last error.
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Put a dead notice back into the outbox (after fixing the contact or the channel).
    Replay {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        /// Only entries with a larger id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one dead letter with its raw input.
    Show {
        id: u64,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Decode a dead letter again with today's rules and store what passes; the entry is
    /// removed when nothing is refused any more.
    Replay {
        id: u64,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Delete every dead letter.
    Purge {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        /// admin or device, for tokens without --user.
        #[arg(long)]
        role: Option<Role>,
        #[arg(long)]
        name: String,
        /// The user the token acts for (their role and care teams apply).
        #[arg(long)]
        user: Option<String>,
        /// The device a device token belongs to.
        #[arg(long)]
        device: Option<String>,
        /// Bind a device token to one patient: it may only write that patient's samples.
        #[arg(long)]
        patient: Option<String>,
        /// Lifetime, e.g. 90d (default: until revoked).
        #[arg(long)]
        expires_in: Option<vitals_core::DurationMs>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}
