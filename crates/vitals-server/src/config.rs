//! Configuration: file (TOML) + environment (`VITALS_*`) + flags -> validated structs.
//!
//! Precedence: flag > env > file > default. Every option `key` of section `[section]` is
//! also the env var `VITALS_<SECTION>_<KEY>` (upper case); retention per metric is
//! `VITALS_RETENTION_<METRIC>`. This is the only module that reads env or config files.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vitals_core::{Catalog, DurationMs};
use vitals_ingest::line_protocol::{Mapping, MeasurementRule};
use vitals_storage::StoreConfig;
use vitals_storage::data_dir::DataDir;

pub use vitals_alerts::NotifyConfig;

mod cluster;
pub use cluster::ClusterConfig;
pub use vitals_cloud::ConnectionsConfig;
pub use vitals_ingest::nightscout_site::NightscoutConfig;
pub use vitals_kafka::KafkaConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub lake: LakeConfig,
    pub ingest: IngestConfig,
    /// Metric code -> how long to keep its data, e.g. `eda = "90d"`. Unlisted: forever.
    pub retention: BTreeMap<String, DurationMs>,
    pub line_protocol: LineProtocolConfig,
    pub mqtt: MqttConfig,
    pub mqtt_listener: MqttListenerConfig,
    pub kafka: KafkaConfig,
    pub connections: ConnectionsConfig,
    pub file_drop: FileDropConfig,
    pub alerting: AlertingConfig,
    pub notify: NotifyConfig,
    pub auth: AuthConfig,
    pub vault: VaultConfig,
    pub sql: SqlConfig,
    pub cluster: ClusterConfig,
    pub nightscout: NightscoutConfig,
    pub log: LogConfig,
}

/// SQL for analysts (`POST /api/v1/sql`, `vitals sql`, and the PostgreSQL protocol).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Rows one answer may hold; more is an error that asks for a LIMIT or an aggregate.
    pub max_rows: usize,
    /// Memory one query's sorts, joins and aggregates may hold (MiB).
    pub memory_mb: usize,
    /// How long one query may run.
    pub timeout: DurationMs,
    /// Queries running at once; more are refused (503 with Retry-After), not queued.
    pub max_concurrent: usize,
    /// Address of the PostgreSQL protocol listener (e.g. `127.0.0.1:5433`); empty: off.
    /// TLS with `server.tls_cert` when set.
    pub pg_listen: String,
    /// Open PostgreSQL protocol connections at once; more are refused (SQLSTATE 53300).
    pub pg_max_connections: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            memory_mb: 512,
            timeout: DurationMs(60_000),
            max_concurrent: 4,
            pg_listen: String::new(),
            pg_max_connections: 64,
        }
    }
}

impl SqlConfig {
    pub fn limits(&self) -> vitals_sql::Limits {
        vitals_sql::Limits {
            max_rows: self.max_rows,
            memory_bytes: self.memory_mb.saturating_mul(1 << 20),
            timeout: Duration::from_millis(u64::try_from(self.timeout.0).unwrap_or(0)),
            max_concurrent: self.max_concurrent,
        }
    }
}

/// The embedded MQTT listener (TLS; devices authenticate by client certificate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttListenerConfig {
    pub enabled: bool,
    /// Address to listen on (MQTT over TLS; 8883 is the usual port).
    pub listen: String,
    /// PEM certificate chain and key; empty: the server's (`server.tls_cert`/`tls_key`).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// PEM CA certificate(s) that sign device certificates; empty: `server.tls_client_ca`.
    pub client_ca: PathBuf,
    /// Only certificate-authenticated devices (otherwise a device token as the CONNECT
    /// password is accepted too).
    pub require_client_cert: bool,
    /// Topics are `<topic_prefix>/<patient>/samples` and `.../health-auto-export`.
    pub topic_prefix: String,
    /// Connections open at once; more are closed as they come.
    pub max_connections: usize,
}

impl Default for MqttListenerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8883".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            client_ca: PathBuf::new(),
            require_client_cert: true,
            topic_prefix: "vitals".into(),
            max_connections: 1024,
        }
    }
}

/// Sign-in and sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Consecutive failed sign-ins that lock an account.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked.
    pub lockout: DurationMs,
    /// Sign-in attempts per client address per minute (beyond: 429).
    pub login_attempts_per_minute: u32,
    /// How long a dashboard session lasts.
    pub session_ttl: DurationMs,
    /// How long a session lasts when the sign-in asked to keep the screen signed in (a
    /// kiosk or mirror); its cookie also outlives a browser restart.
    pub kept_session_ttl: DurationMs,
    /// Sign-ins checked at once (each Argon2 check takes 19 MiB and a core for tens of ms);
    /// more get 503 with Retry-After.
    pub max_concurrent_logins: usize,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client for
    /// the sign-in rate limit. Empty: the peer's address is the client's.
    pub trusted_proxies: Vec<crate::auth::login_limiter::Network>,
    /// The audit chain's key (its entries are HMACs under it, so that whoever can write
    /// the database cannot rewrite history unnoticed). Empty: `<data_dir>/keys/audit.key`,
    /// created on first start; move it off the data disk.
    pub audit_key_file: std::path::PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_failed_logins: 5,
            lockout: DurationMs(15 * 60_000),
            login_attempts_per_minute: 20,
            session_ttl: DurationMs(12 * 3_600_000),
            kept_session_ttl: DurationMs(30 * 86_400_000),
            max_concurrent_logins: 4,
            trusted_proxies: Vec::new(),
            audit_key_file: std::path::PathBuf::new(),
        }
    }
}

/// The identity vault's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The key file (`<id> <base64 key>` lines, the first seals). Empty: the environment
    /// variable `VITALS_VAULT_KEY` if set, else `<data_dir>/keys/vault.key`, created on first
    /// start (move it off the data disk for real encryption at rest).
    pub key_file: PathBuf,
}

/// Live alerting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Evaluate rules on the stream of durable samples.
    pub enabled: bool,
    /// How late a reading may arrive and still change alerts (out-of-order tolerance).
    pub horizon: DurationMs,
    /// Alerts that fire on data older than this are recorded but page no one (backfills).
    pub fresh: DurationMs,
    /// The longest snooze.
    pub max_snooze: DurationMs,
    /// Built-in rule packs in force (see `vitals_rules::pack::PACK_NAMES`).
    pub packs: Vec<String>,
    /// Rules from the config file (read-only through the API).
    pub rules: Vec<vitals_rules::RuleSpec>,
    /// The seizure detector for wrist wearables.
    pub seizure: vitals_rules::seizure::SeizureConfig,
    /// The autonomic seizure detector (on with `seizure.enabled`).
    pub autonomic: vitals_rules::autonomic::AutonomicConfig,
    /// Personal baselines and anomaly scoring (`GET .../baselines`).
    pub anomaly: vitals_rules::anomaly::AnomalyConfig,
    /// The stale-device alarm.
    pub devices: DeviceAlarmConfig,
}

/// The stale-device alarm: an alert when the server has not heard from a device for
/// `stale_after` (timed by when its readings last arrived, not by their own times).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceAlarmConfig {
    pub enabled: bool,
    pub stale_after: DurationMs,
}

impl Default for DeviceAlarmConfig {
    fn default() -> Self {
        Self { enabled: false, stale_after: DurationMs(3_600_000) }
    }
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            horizon: DurationMs(3_600_000),
            fresh: DurationMs(600_000),
            max_snooze: DurationMs(4 * 3_600_000),
            packs: Vec::new(),
            rules: Vec::new(),
            seizure: vitals_rules::seizure::SeizureConfig::default(),
            anomaly: vitals_rules::anomaly::AnomalyConfig::default(),
            autonomic: vitals_rules::autonomic::AutonomicConfig::default(),
            devices: DeviceAlarmConfig::default(),
        }
    }
}

/// The watched staging directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileDropConfig {
    pub enabled: bool,
    /// The staging directory (`inbox/`, `processed/`, `failed/`); empty: `<data_dir>/drop`.
    pub dir: PathBuf,
    pub poll_interval: DurationMs,
}

impl Default for FileDropConfig {
    fn default() -> Self {
        Self { enabled: false, dir: PathBuf::new(), poll_interval: DurationMs(2000) }
    }
}

/// MQTT client mode: subscribe to an external broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub enabled: bool,
    /// `host:port` of the broker.
    pub broker: String,
    /// The client id; the broker keeps this session's unacknowledged messages.
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// Topics are `<topic_prefix>/<patient>/samples` and `.../health-auto-export`.
    pub topic_prefix: String,
    /// Connect with TLS 1.2+ (what cloud IoT hubs require).
    pub tls: bool,
    /// PEM file of the CA certificates that may sign the broker's certificate; empty: the
    /// operating system's trust store.
    pub ca_file: PathBuf,
    /// PEM files of Vitals' own client certificate (chain) and private key, for brokers
    /// that authenticate clients by certificate; both or neither.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            broker: "127.0.0.1:1883".into(),
            client_id: "vitals".into(),
            username: String::new(),
            password: String::new(),
            topic_prefix: "vitals".into(),
            tls: false,
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LineProtocolConfig {
    /// Measurement rules; a measurement without a rule is read generically (measurement =
    /// metric code, tags `patient`, `device`, `id`, `unit`, field `value`).
    pub measurements: Vec<MeasurementRule>,
}

impl Default for LineProtocolConfig {
    fn default() -> Self {
        Self { measurements: Mapping::epilepsy_platform() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Largest file sent to `POST /api/v1/ingest/file` (streamed to disk, not held in
    /// memory: an Apple Health export runs to gigabytes); larger ones get 413.
    pub upload_limit_bytes: u64,
    /// Write requests handled at once; more get 503 with Retry-After before their body is
    /// read, so request bodies in memory stay below this times `body_limit_bytes`.
    pub max_concurrent_writes: usize,
    /// Reads whose work grows with the data (charts, glucose, backtests, exports) at once;
    /// more get 503 with Retry-After.
    pub max_concurrent_heavy: usize,
    /// Live streams (server-sent events) open at once; more get 503.
    pub max_live_streams: usize,
    /// A request body that sends nothing for this long ends with an error.
    pub body_idle_timeout: DurationMs,
    /// PEM certificate chain for HTTPS; empty: plain HTTP (for 127.0.0.1 or behind a proxy).
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// PEM CA certificates that sign device client certificates (mTLS); empty: none asked.
    pub tls_client_ca: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub flush_max_samples: usize,
    pub flush_interval: DurationMs,
    pub wal_max_file_bytes: u64,
    pub max_inflight_samples: usize,
    pub max_buffered_samples: usize,
    pub compact_min_segments: usize,
    pub compact_max_rows: u64,
    pub repair_wal: bool,
}

/// The lake's remote tier on object storage (`vitals-bucket`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix` or
    /// `file:///path`; empty: the lake stays on the local disk only.
    pub url: String,
    /// An S3-compatible server (MinIO, Ceph, Garage...) or an Azure account URL.
    pub endpoint: String,
    pub region: String,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
    /// Server-side encryption on S3: empty (the bucket's default), `s3` (SSE-S3) or `kms`.
    pub sse: String,
    /// The KMS key (id, ARN or alias) with `sse = "kms"`.
    pub sse_kms_key_id: String,
    /// Days whose segments keep a local copy after upload (the hot tier).
    pub hot_days: u32,
    /// A day's segments are uploaded this long after the day ended.
    pub upload_after: DurationMs,
    /// Local cache of segments fetched from the bucket (MiB).
    pub cache_mb: u64,
    /// How often uploads, the hot tier and (cluster mode) the shared lake's catalog are
    /// tended, when nothing wakes them sooner.
    pub tier_interval: DurationMs,
    /// Objects that no manifest entry names are deleted once this old.
    pub orphan_grace: DurationMs,
    /// Compaction across days: a month's day partitions are merged into archive segments
    /// (`archive/metric=/year=/month=/patient=/`) once the month ended `archive_after`
    /// ago; false: never (the lake keeps day partitions only). Local and remote lakes alike.
    pub archive: bool,
    pub archive_after: DurationMs,
    /// Rows one archive segment holds at most (a merge holds them in memory: about 100
    /// bytes each).
    pub archive_max_rows: u64,
    /// Passed to object_store as they are (`aws_access_key_id`, `azure_storage_account_key`,
    /// ...); credentials are better left to the environment.
    pub options: BTreeMap<String, String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            sse: String::new(),
            sse_kms_key_id: String::new(),
            hot_days: 7,
            upload_after: DurationMs(3_600_000),
            cache_mb: 1024,
            tier_interval: DurationMs(10_000),
            orphan_grace: DurationMs(3_600_000),
            archive: true,
            archive_after: DurationMs(86_400_000),
            archive_max_rows: 2_000_000,
            options: BTreeMap::new(),
        }
    }
}

impl LakeConfig {
    /// The bucket's settings, if a remote lake is configured.
    pub fn bucket(&self) -> Option<vitals_bucket::BucketConfig> {
        if self.url.is_empty() {
            return None;
        }
        let sse = match self.sse.as_str() {
            "s3" => vitals_bucket::Sse::S3,
            "kms" => vitals_bucket::Sse::Kms { key_id: self.sse_kms_key_id.clone() },
            _ => vitals_bucket::Sse::None,
        };
        Some(vitals_bucket::BucketConfig {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
            sse,
            options: self.options.clone(),
            timeout: Duration::from_secs(30),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How far ahead of the server clock a sample may be.
    pub max_future: DurationMs,
    /// How old a sample may be; absent means any past time (historical imports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<DurationMs>,
    /// Bytes of refused input kept for inspection and replay; past it the oldest is dropped.
    pub dead_letter_max_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `vitals=debug,info`.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 64 << 20,
            upload_limit_bytes: 4 << 30,
            max_concurrent_writes: 32,
            max_concurrent_heavy: 4,
            max_live_streams: 256,
            body_idle_timeout: DurationMs(30_000),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_client_ca: PathBuf::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let s = StoreConfig::default();
        Self {
            data_dir: PathBuf::from("./vitals-data"),
            flush_max_samples: s.flush_max_samples,
            flush_interval: DurationMs(s.flush_interval.as_millis() as i64),
            wal_max_file_bytes: s.wal_max_file_bytes,
            max_inflight_samples: s.max_inflight_samples,
            max_buffered_samples: s.max_buffered_samples,
            compact_min_segments: s.compact_min_segments,
            compact_max_rows: s.compact_max_rows,
            repair_wal: false,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { max_future: DurationMs(10 * 60 * 1000), max_age: None, dead_letter_max_bytes: 256 << 20 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: "text".into(), level: "info".into() }
    }
}

/// Options given as flags (the highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub repair_wal: bool,
}

/// Keys that have no default value, so they cannot be discovered from the defaults.
const OPTIONAL_KEYS: [(&str, &str); 1] = [("ingest", "max_age")];

impl Config {
    /// Loads the config from an optional file, the process environment and flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("VITALS_")).collect();
        let text = match file {
            Some(p) => {
                Some(std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?)
            }
            None => None,
        };
        Config::from_parts(text.as_deref(), &env, overrides).with_context(|| {
            format!("invalid configuration{}", file.map(|p| format!(" ({})", p.display())).unwrap_or_default())
        })
    }

    /// Builds a config from file text, env vars and flags, reporting every problem at once.
    pub fn from_parts(
        file: Option<&str>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> anyhow::Result<Config> {
        let mut value = toml::Value::try_from(Config::default()).context("serializing defaults")?;
        if let Some(text) = file {
            let parsed: toml::Table = toml::from_str(text).context("parsing TOML")?;
            merge(&mut value, toml::Value::Table(parsed));
        }
        let mut problems = Vec::new();
        let mut keys: Vec<(String, String)> = Vec::new();
        if let toml::Value::Table(t) = &value {
            for (section, v) in t {
                if let toml::Value::Table(inner) = v {
                    for key in inner.keys() {
                        keys.push((section.clone(), key.clone()));
                    }
                }
            }
        }
        for (s, k) in OPTIONAL_KEYS {
            keys.push((s.into(), k.into()));
        }
        for (_, m) in Catalog::standard().all() {
            keys.push(("retention".into(), m.code.into()));
        }
        keys.sort();
        keys.dedup();
        for (section, key) in keys {
            let name = format!("VITALS_{}_{}", section.to_uppercase(), key.to_uppercase());
            if let Some(raw) = env.get(&name) {
                let v = parse_env_value(raw);
                if let toml::Value::Table(t) = &mut value {
                    let sec = t.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(st) = sec {
                        st.insert(key, v);
                    }
                }
            }
        }
        let mut config: Config = value.try_into().context("reading options")?;
        if let Some(l) = &overrides.listen {
            config.server.listen = l.clone();
        }
        if let Some(d) = &overrides.data_dir {
            config.storage.data_dir = d.clone();
        }
        if overrides.repair_wal {
            config.storage.repair_wal = true;
        }
        if config.server.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("server.listen {:?} is not an address like 127.0.0.1:8080", config.server.listen));
        }
        for (name, v) in [
            ("server.max_concurrent_writes", config.server.max_concurrent_writes),
            ("server.max_concurrent_heavy", config.server.max_concurrent_heavy),
            ("server.max_live_streams", config.server.max_live_streams),
            ("auth.max_concurrent_logins", config.auth.max_concurrent_logins),
            ("mqtt_listener.max_connections", config.mqtt_listener.max_connections),
            ("sql.max_rows", config.sql.max_rows),
            ("sql.memory_mb", config.sql.memory_mb),
            ("sql.max_concurrent", config.sql.max_concurrent),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be positive"));
            }
        }
        if config.server.body_limit_bytes < 1024 {
            problems.push("server.body_limit_bytes must be at least 1024".into());
        }
        if config.alerting.devices.stale_after.as_ms() < 60_000 {
            problems.push("alerting.devices.stale_after must be at least 1m".into());
        }
        if config.server.upload_limit_bytes < 1024 {
            problems.push("server.upload_limit_bytes must be at least 1024".into());
        }
        for (name, v) in [
            ("storage.flush_max_samples", config.storage.flush_max_samples),
            ("storage.max_inflight_samples", config.storage.max_inflight_samples),
            ("storage.max_buffered_samples", config.storage.max_buffered_samples),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be positive"));
            }
        }
        if config.storage.max_buffered_samples < config.storage.flush_max_samples {
            problems.push("storage.max_buffered_samples must be at least storage.flush_max_samples".into());
        }
        for r in &config.line_protocol.measurements {
            if Catalog::standard().id(&r.metric).is_none() {
                problems.push(format!("line_protocol.measurements {:?}: no metric {:?}", r.measurement, r.metric));
            }
        }
        if config.mqtt.enabled && config.mqtt.broker.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
            problems.push(format!("mqtt.broker {:?} must be host:port", config.mqtt.broker));
        }
        if config.mqtt.topic_prefix.is_empty() || config.mqtt.topic_prefix.contains(['+', '#']) {
            problems.push("mqtt.topic_prefix must be a plain topic level path".into());
        }
        let m = &config.mqtt;
        if m.cert_file.as_os_str().is_empty() != m.key_file.as_os_str().is_empty() {
            problems.push("mqtt.cert_file and mqtt.key_file go together".into());
        }
        if !m.tls && [&m.ca_file, &m.cert_file, &m.key_file].iter().any(|f| !f.as_os_str().is_empty()) {
            problems.push("mqtt.ca_file, cert_file and key_file need mqtt.tls = true".into());
        }
        problems.extend(config.kafka.problems());
        problems.extend(config.connections.problems());
        let mut names = std::collections::BTreeSet::new();
        for spec in &config.alerting.rules {
            if let Err(e) = vitals_rules::Rule::compile(spec.clone()) {
                problems.push(format!("alerting.rules {:?}: {e}", spec.name));
            }
            if !names.insert(spec.name.clone()) {
                problems.push(format!("alerting.rules: {:?} is defined twice", spec.name));
            }
        }
        for p in &config.alerting.packs {
            match vitals_rules::pack::pack(p) {
                None => problems.push(format!(
                    "alerting.packs: no pack {p:?} (there are {})",
                    vitals_rules::pack::PACK_NAMES.join(", ")
                )),
                Some(pack) => {
                    for r in pack.rules {
                        if !names.insert(r.name.clone()) {
                            problems.push(format!("alerting.rules: {:?} is the name of a rule of pack {p:?}", r.name));
                        }
                    }
                }
            }
        }
        for why in config.alerting.autonomic.problems() {
            problems.push(format!("alerting.autonomic.{why}"));
        }
        for why in config.alerting.anomaly.problems() {
            problems.push(format!("alerting.anomaly.{why}"));
        }
        for why in config.alerting.seizure.problems() {
            problems.push(format!("alerting.seizure.{why}"));
        }
        problems.extend(vitals_alerts::config::check_config(&config.notify));
        problems.extend(vitals_notify::email::problems(&config.notify));
        for code in config.retention.keys() {
            if Catalog::standard().id(code).is_none() {
                problems.push(format!("retention.{code}: no such metric"));
            }
        }
        if !config.sql.pg_listen.is_empty() && config.sql.pg_listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("sql.pg_listen {:?} is not an address like 127.0.0.1:5433", config.sql.pg_listen));
        }
        match (config.lake.sse.as_str(), config.lake.sse_kms_key_id.is_empty()) {
            ("" | "s3", true) | ("kms", false) => {}
            ("kms", true) => problems.push("lake.sse = \"kms\" needs lake.sse_kms_key_id".into()),
            (other, _) => {
                problems.push(format!("lake.sse {other:?} must be \"\", \"s3\" or \"kms\" (with sse_kms_key_id)"))
            }
        }
        if config.sql.timeout.0 < 1000 {
            problems.push("sql.timeout must be at least 1s".into());
        }
        let vault_key_given = !config.vault.key_file.as_os_str().is_empty() || vault_key_env().is_some();
        problems.extend(config.cluster.problems(&config.lake.url, vault_key_given));
        problems.extend(config.nightscout.problems());
        if !matches!(config.log.format.as_str(), "text" | "json") {
            problems.push(format!("log.format {:?} must be text or json", config.log.format));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(config)
    }

    /// The data directory and the paths in it.
    pub fn data_dir(&self) -> DataDir {
        DataDir::new(&self.storage.data_dir)
    }

    /// The file-drop staging directory (`file_drop.dir`, else `<data_dir>/drop`).
    pub fn file_drop_dir(&self) -> PathBuf {
        let d = &self.file_drop.dir;
        if d.as_os_str().is_empty() { self.data_dir().file_drop() } else { d.clone() }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn store_config(&self) -> StoreConfig {
        let catalog = Catalog::standard();
        StoreConfig {
            flush_max_samples: self.storage.flush_max_samples,
            flush_interval: Duration::from_millis(self.storage.flush_interval.as_ms() as u64),
            wal_max_file_bytes: self.storage.wal_max_file_bytes,
            max_inflight_samples: self.storage.max_inflight_samples,
            max_buffered_samples: self.storage.max_buffered_samples,
            compact_min_segments: self.storage.compact_min_segments,
            compact_max_rows: self.storage.compact_max_rows,
            retention: self
                .retention
                .iter()
                .filter_map(|(code, d)| Some((catalog.id(code)?, Duration::from_millis(d.as_ms() as u64))))
                .collect(),
            repair_wal: self.storage.repair_wal,
            hot_for: Duration::from_secs(u64::from(self.lake.hot_days) * 86_400),
            upload_after: Duration::from_millis(self.lake.upload_after.as_ms().max(0) as u64),
            cache_bytes: self.lake.cache_mb.saturating_mul(1 << 20),
            tier_interval: Duration::from_millis(self.lake.tier_interval.as_ms().max(100) as u64),
            orphan_grace: Duration::from_millis(self.lake.orphan_grace.as_ms().max(0) as u64),
            archive_after: self
                .lake
                .archive
                .then(|| Duration::from_millis(self.lake.archive_after.as_ms().max(0) as u64)),
            archive_max_rows: self.lake.archive_max_rows.max(1),
            ..StoreConfig::default()
        }
    }
}

/// An env value is read as a TOML value when it is one (`5`, `true`, `"x"`), else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// `VITALS_ADMIN_TOKEN`: the initial admin token of a new data directory, for automation.
pub fn initial_admin_token() -> Option<String> {
    std::env::var("VITALS_ADMIN_TOKEN").ok().filter(|s| !s.is_empty())
}

/// `VITALS_VAULT_KEY`: the identity vault's key ring, instead of a key file.
pub fn vault_key_env() -> Option<String> {
    std::env::var(vitals_vault::KEY_ENV).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn example_config_parses_and_documents_every_option() {
        let text = include_str!("../../../config/vitals.example.toml");
        let c = Config::from_parts(Some(text), &HashMap::new(), &Overrides::default()).expect("example parses");
        // Every option of the defaults appears in the example (so the example documents all).
        let defaults = toml::Value::try_from(Config::default()).expect("defaults");
        let example: toml::Table = toml::from_str(text).expect("toml");
        if let toml::Value::Table(t) = defaults {
            for (section, v) in t {
                if let toml::Value::Table(inner) = v {
                    for key in inner.keys() {
                        let documented = example.get(&section).and_then(|s| s.get(key)).is_some();
                        assert!(documented, "{section}.{key} is missing from config/vitals.example.toml");
                    }
                }
            }
        }
        for (s, k) in OPTIONAL_KEYS {
            assert!(text.contains(&format!("{k} =")), "{s}.{k} is not documented in the example");
        }
        assert!(!c.retention.is_empty(), "the example shows retention");
    }

    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let file = "[server]\nlisten = \"127.0.0.1:9000\"\nbody_limit_bytes = 2048\n[storage]\nflush_max_samples = 10\nmax_buffered_samples = 100\n";
        let c = Config::from_parts(Some(file), &HashMap::new(), &Overrides::default()).expect("file");
        assert_eq!((c.server.listen.as_str(), c.server.body_limit_bytes), ("127.0.0.1:9000", 2048));
        let e = env(&[
            ("VITALS_SERVER_LISTEN", "127.0.0.1:9001"),
            ("VITALS_STORAGE_FLUSH_INTERVAL", "1m"),
            ("VITALS_RETENTION_EDA", "30d"),
            ("VITALS_INGEST_MAX_AGE", "365d"),
        ]);
        let c = Config::from_parts(Some(file), &e, &Overrides::default()).expect("env");
        assert_eq!(c.server.listen, "127.0.0.1:9001");
        assert_eq!(c.storage.flush_interval, DurationMs(60_000));
        assert_eq!(c.retention.get("eda"), Some(&DurationMs(30 * 86_400_000)));
        assert_eq!(c.ingest.max_age, Some(DurationMs(365 * 86_400_000)));
        let o = Overrides { listen: Some("127.0.0.1:9002".into()), data_dir: Some("/tmp/x".into()), repair_wal: true };
        let c = Config::from_parts(Some(file), &e, &o).expect("flags");
        assert_eq!(c.server.listen, "127.0.0.1:9002");
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
        assert!(c.storage.repair_wal);
        assert_eq!(
            Config::from_parts(None, &HashMap::new(), &Overrides::default()).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = "[server]\nlisten = \"nowhere\"\n[retention]\nfoo = \"1d\"\n[log]\nformat = \"xml\"\n";
        let err = Config::from_parts(Some(file), &HashMap::new(), &Overrides::default()).expect_err("invalid");
        let msg = format!("{err:#}");
        for want in ["server.listen", "retention.foo", "log.format"] {
            assert!(msg.contains(want), "{msg}");
        }
        let err = Config::from_parts(Some("[server]\nlisen = 1\n"), &HashMap::new(), &Overrides::default())
            .expect_err("typo");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }
}
