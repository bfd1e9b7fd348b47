//! Opening the stores of a data directory (each path named by [`DataDir`]), with the context
//! an operator needs when one cannot be opened. The server opens them all through
//! `App::open`; the command line opens single ones for offline work.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use vitals_core::SystemClock;
use vitals_ingest::line_protocol::Mapping;
use vitals_storage::dead_letter::DeadLetters;
use vitals_storage::event_store::EventStore;
use vitals_storage::{Store, StoreConfig};
use vitals_vault::{Keyring, Vault};

use crate::alert_store::AlertStore;
use crate::campaign_store::CampaignStore;
use crate::cohort_store::CohortStore;
use crate::config::Config;
use crate::connection_store::ConnectionStore;
use crate::rule_store::RuleStore;
use crate::source::pipeline::Pipeline;
use crate::telemetry::Telemetry;

/// Opens the sample store (WAL, buffer, lake) with the system clock; it takes the data
/// directory's lock.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    open_store_in(config, None)
}

/// [`open_store`] on a node of `cluster`: with `lake.url`, it writes the shared lake's part
/// of the patients it owns.
pub fn open_store_in(config: &Config, cluster: Option<&crate::cluster::Cluster>) -> anyhow::Result<Arc<Store>> {
    let dir = config.data_dir();
    let store = Store::open(dir.root(), store_config_in(config, cluster)?, Arc::new(SystemClock))
        .with_context(|| format!("opening the data directory {}", dir.root().display()))?;
    Ok(Arc::new(store))
}

/// The store's settings with the remote lake, when `lake.url` is set. A bad URL or option
/// stops the start; a bucket that does not answer only warns (a device whose network is
/// down at boot must still take samples and raise alerts; uploads wait for the bucket).
pub fn store_config(config: &Config) -> anyhow::Result<StoreConfig> {
    store_config_in(config, None)
}

/// [`store_config`] on a node of `cluster`. In cluster mode the bucket is the cluster's
/// shared lake, its catalog in PostgreSQL: a node writes (uploads, merges across days,
/// publishes) the part of the patients whose bucket it owns and deletes what the catalog
/// gave up if it owns bucket 0; the command line (no `cluster`) only reads and adopts.
pub fn store_config_in(config: &Config, cluster: Option<&crate::cluster::Cluster>) -> anyhow::Result<StoreConfig> {
    let mut sc = config.store_config();
    if let Some(b) = config.lake.bucket() {
        let bucket = vitals_bucket::Bucket::open(&b)?;
        if let Err(e) = bucket.check() {
            tracing::warn!(error = %e, "the remote lake does not answer yet; uploads and reads of cold days wait for it");
        }
        sc.remote = Some(Arc::new(bucket));
        if config.cluster.enabled {
            // A node reads adopted objects until it sees the catalog's new list (it looks
            // again within ten minutes): they are kept at least that long after being dropped.
            sc.orphan_grace = sc.orphan_grace.max(MIN_SHARED_GRACE);
            sc.shared = Some(shared_lake(config, cluster, sc.orphan_grace)?);
            sc.segment_tag = Some(config.cluster.node.clone());
        }
    }
    Ok(sc)
}

/// The shortest `orphan_grace` of the shared lake.
const MIN_SHARED_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn shared_lake(
    config: &Config,
    cluster: Option<&crate::cluster::Cluster>,
    grace: std::time::Duration,
) -> anyhow::Result<Arc<dyn vitals_storage::remote::SharedLake>> {
    let (pool, writes, deletes): (_, vitals_postgres::lake::Writes, vitals_postgres::lake::Deletes) = match cluster {
        Some(c) => {
            let (mine, first) = (Arc::clone(&c.ownership), Arc::clone(&c.ownership));
            (Arc::clone(&c.pool), Arc::new(move |p: &str| mine.owns(p)), Arc::new(move || first.owns_bucket(0)))
        }
        None => (crate::cluster::connect(&config.cluster)?, Arc::new(|_: &str| false), Arc::new(|| false)),
    };
    let lake = vitals_postgres::PgLake::open(pool, &config.cluster.schema, grace, writes, deletes)
        .context("cluster: the shared lake's catalog")?;
    Ok(Arc::new(lake))
}

/// Opens the event store of a data directory.
pub fn open_events(config: &Config) -> anyhow::Result<Arc<EventStore>> {
    let dir = config.data_dir().events();
    Ok(Arc::new(EventStore::open(&dir).with_context(|| format!("opening the event store {}", dir.display()))?))
}

/// Opens the rule store of a data directory (with the config file's rules).
pub fn open_rules(config: &Config) -> anyhow::Result<Arc<RuleStore>> {
    let dir = config.data_dir().rules();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let r = RuleStore::open(&dir, &config.alerting.rules, &config.alerting.packs)
        .with_context(|| format!("opening the rule store {}", dir.display()))?;
    Ok(Arc::new(r))
}

/// Opens the alert store of a data directory.
pub fn open_alerts(config: &Config) -> anyhow::Result<Arc<AlertStore>> {
    let dir = config.data_dir().alerts();
    let a = AlertStore::open(&dir).with_context(|| format!("opening the alert store {}", dir.display()))?;
    Ok(Arc::new(a))
}

/// Opens the cohort store of a data directory.
pub fn open_cohorts(config: &Config) -> anyhow::Result<Arc<CohortStore>> {
    let dir = config.data_dir().cohorts();
    let c = CohortStore::open(&dir).with_context(|| format!("opening the cohort store {}", dir.display()))?;
    Ok(Arc::new(c))
}

/// Opens the store of connections to vendor clouds of a data directory.
pub fn open_connections(config: &Config) -> anyhow::Result<Arc<ConnectionStore>> {
    let dir = config.data_dir().connections();
    let c = ConnectionStore::open(&dir).with_context(|| format!("opening the connection store {}", dir.display()))?;
    Ok(Arc::new(c))
}

pub fn open_campaigns(config: &Config) -> anyhow::Result<Arc<CampaignStore>> {
    let dir = config.data_dir().campaigns();
    let c = CampaignStore::open(&dir).with_context(|| format!("opening the campaign store {}", dir.display()))?;
    Ok(Arc::new(c))
}

/// Opens the dead-letter store of a data directory.
pub fn open_dead_letters(config: &Config) -> anyhow::Result<Arc<DeadLetters>> {
    let dir = config.data_dir().dead_letters();
    let d = DeadLetters::open(&dir, config.ingest.dead_letter_max_bytes)
        .with_context(|| format!("opening the dead-letter store {}", dir.display()))?;
    Ok(Arc::new(d))
}

/// Opens the identity vault with the configured key ring (see [`crate::config::VaultConfig`]):
/// its SQLite file in the data directory, or in cluster mode the cluster's (a connection
/// of its own: for the command line).
pub fn open_vault(config: &Config) -> anyhow::Result<Vault> {
    if config.cluster.enabled {
        return open_shared_vault(config, crate::cluster::connect(&config.cluster)?);
    }
    let keys = vault_keys(config)?;
    let path = config.data_dir().vault();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(Vault::open(&path, keys)?)
}

/// The identity vault of a cluster node: its sealed records in the cluster's PostgreSQL,
/// opened with the configured key ring (the same on every node).
pub fn open_shared_vault(config: &Config, pool: Arc<vitals_postgres::Pool>) -> anyhow::Result<Vault> {
    let backend =
        vitals_postgres::PgVault::open(pool, &config.cluster.schema).context("cluster: the vault's tables")?;
    Ok(Vault::with_backend(Box::new(backend), vault_keys(config)?)?)
}

/// The vault's key file: configured, or the default one in the data directory.
pub fn vault_key_file(config: &Config) -> PathBuf {
    if config.vault.key_file.as_os_str().is_empty() {
        config.data_dir().vault_key()
    } else {
        config.vault.key_file.clone()
    }
}

fn vault_keys(config: &Config) -> anyhow::Result<Keyring> {
    if config.vault.key_file.as_os_str().is_empty()
        && let Some(v) = crate::config::vault_key_env()
    {
        return Ok(Keyring::parse_env(&v)?);
    }
    let path = vault_key_file(config);
    if !path.exists() && config.vault.key_file.as_os_str().is_empty() {
        tracing::warn!(
            file = %path.display(),
            "created a new identity vault key next to the data; move it off the data disk (vault.key_file) and back it up"
        );
        return Ok(Keyring::create_file(&path, "k1")?);
    }
    Ok(Keyring::load(&path)?)
}

/// The ingest pipeline over a data directory, for offline work (`vitals ingest`, replaying
/// a dead letter): the store (its lock held; close it when done), events and dead letters,
/// the system clock.
pub fn open_pipeline(config: &Config) -> anyhow::Result<(Arc<Store>, Pipeline)> {
    let store = open_store(config)?;
    let pipeline = Pipeline::new(
        store.clone(),
        open_events(config)?,
        open_dead_letters(config)?,
        Arc::new(Telemetry::new()),
        config.ingest.clone(),
        Mapping { rules: config.line_protocol.measurements.clone() },
        Arc::new(SystemClock),
    );
    Ok((store, pipeline))
}
