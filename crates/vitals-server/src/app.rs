//! The application's shared state: the open stores of a data directory and what every
//! request handler and source needs (the ingest pipeline, who is who, the auditor, the
//! configuration, the clock, telemetry).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use vitals_core::{Catalog, Clock, SystemClock};
use vitals_ingest::line_protocol::Mapping;
use vitals_storage::Store;
use vitals_storage::dead_letter::DeadLetters;
use vitals_storage::event_store::EventStore;
use vitals_storage::ledger::Ledger;
use vitals_vault::Vault;

use crate::alert_store::AlertStore;
use crate::alerting::ErasedPatients;
use crate::audit::Auditor;
use crate::auth::Directory;
use crate::auth::login_limiter::LoginLimiter;
use crate::campaign_store::CampaignStore;
use crate::cluster::Cluster;
use crate::cohort_store::CohortStore;
use crate::config::Config;
use crate::connection_store::ConnectionStore;
use crate::rule_store::RuleStore;
use crate::source::pipeline::Pipeline;
use crate::source::sink::{EventSink, SampleSink};
use crate::stores;
use crate::telemetry::Telemetry;

/// Everything a handler needs.
pub struct App {
    pub store: Arc<Store>,
    pub directory: Directory,
    /// Patients' identities, sealed (see `vitals-vault`).
    pub vault: Arc<Vault>,
    /// Appends audit entries (group commit).
    pub auditor: Auditor,
    /// Every way in hands its bodies to this.
    pub pipeline: Arc<Pipeline>,
    /// The file-drop ledger, once the watcher runs (the admin view lists it).
    pub file_ledger: OnceLock<Arc<dyn Ledger>>,
    /// Where the embedded MQTT listener listens, once started.
    pub mqtt_listener_addr: OnceLock<SocketAddr>,
    /// Where the PostgreSQL protocol listens, once it does (`sql.pg_listen`).
    pub pg_listen_addr: OnceLock<SocketAddr>,
    /// Patients erased while this process runs (the live engine forgets them).
    pub erased: Arc<ErasedPatients>,
    /// Sign-in attempts per client address (rate limit).
    pub login_limiter: LoginLimiter,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<Telemetry>,
    pub catalog: &'static Catalog,
    /// Permits for write requests in progress (see `server.max_concurrent_writes`).
    pub write_permits: Arc<Semaphore>,
    /// Permits for reads whose work grows with the data (`server.max_concurrent_heavy`).
    pub heavy_permits: Arc<Semaphore>,
    /// Permits for open live streams (`server.max_live_streams`).
    pub live_permits: Arc<Semaphore>,
    /// Permits for sign-ins being checked (Argon2 takes memory and a core each;
    /// `auth.max_concurrent_logins`).
    pub login_permits: Arc<Semaphore>,
    pub dead_letters: Arc<DeadLetters>,
    pub events: Arc<EventStore>,
    pub rules: Arc<RuleStore>,
    pub alerts: Arc<AlertStore>,
    pub cohorts: Arc<CohortStore>,
    /// Connections to vendor clouds (`connections.rs` pulls them).
    pub connections: Arc<ConnectionStore>,
    /// Campaigns, consent to them and what was sent (`campaign_store.rs`).
    pub campaigns: Arc<CampaignStore>,
    /// SQL over the store and the small stores (`sql.rs`).
    pub sql: Arc<vitals_sql::Engine>,
    /// FHIR `$export` jobs over HTTP (`fhir_export.rs`).
    pub bulk_exports: Arc<crate::fhir_export::BulkExports>,
    /// Cluster mode: this node's part (`[cluster]`); `None` on one node.
    pub cluster: Option<Arc<Cluster>>,
    /// Device telemetry: when each device was last heard, its battery and signal.
    pub devices: Arc<crate::devices::DeviceBook>,
}

impl App {
    /// The application over the data directory of `config`, with the system clock: the
    /// sample store (its lock taken), people and tokens, and every other store.
    /// In cluster mode (`[cluster] enabled`), the metadata is the cluster's, in PostgreSQL,
    /// and writes go to the cluster's log.
    pub fn open_data_dir(config: Config) -> anyhow::Result<App> {
        if config.cluster.enabled {
            let cluster = Arc::new(Cluster::open(&config)?);
            let store = stores::open_store_in(&config, Some(&cluster))?;
            let meta = vitals_postgres::PgMeta::open(cluster.pool.clone(), &config.cluster.schema)?;
            let directory = Directory::open_shared(Arc::new(meta), &Directory::key_file(&config))?;
            return App::open_in(store, directory, config, Arc::new(SystemClock), Some(cluster));
        }
        let store = stores::open_store(&config)?;
        let directory = Directory::open_for(&config)?;
        App::open(store, directory, config, Arc::new(SystemClock))
    }

    /// The application over an open store: the other stores of the data directory (dead
    /// letters, events, rules, alerts and their outbox, cohorts, the vault) are opened here.
    pub fn open(store: Arc<Store>, directory: Directory, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        App::open_in(store, directory, config, clock, None)
    }

    /// [`open`](Self::open) as a node of `cluster`, if any.
    pub fn open_in(
        store: Arc<Store>,
        directory: Directory,
        config: Config,
        clock: Arc<dyn Clock>,
        cluster: Option<Arc<Cluster>>,
    ) -> anyhow::Result<App> {
        let dead_letters = stores::open_dead_letters(&config)?;
        let events = stores::open_events(&config)?;
        let rules = match &cluster {
            Some(c) => {
                Arc::new(RuleStore::open_shared(c.records.clone(), &config.alerting.rules, &config.alerting.packs)?)
            }
            None => stores::open_rules(&config)?,
        };
        // Cluster mode: alerts and their outbox are the cluster's, shared in PostgreSQL.
        let alerts = match &cluster {
            Some(c) => Arc::new(AlertStore::open_shared(c.records.clone())?),
            None => stores::open_alerts(&config)?,
        };
        let cohorts = match &cluster {
            Some(c) => Arc::new(CohortStore::open_shared(c.records.clone())?),
            None => stores::open_cohorts(&config)?,
        };
        let connections = match &cluster {
            Some(c) => Arc::new(ConnectionStore::open_shared(c.records.clone())?),
            None => stores::open_connections(&config)?,
        };
        let campaigns = match &cluster {
            Some(c) => Arc::new(CampaignStore::open_shared(c.records.clone())?),
            None => stores::open_campaigns(&config)?,
        };
        let vault = Arc::new(match &cluster {
            Some(c) => stores::open_shared_vault(&config, Arc::clone(&c.pool))?,
            None => stores::open_vault(&config)?,
        });
        let auditor = Auditor::start(directory.meta_arc())?;
        let write_permits = Arc::new(Semaphore::new(config.server.max_concurrent_writes));
        let heavy_permits = Arc::new(Semaphore::new(config.server.max_concurrent_heavy));
        let live_permits = Arc::new(Semaphore::new(config.server.max_live_streams));
        let login_permits = Arc::new(Semaphore::new(config.auth.max_concurrent_logins));
        let telemetry = Arc::new(Telemetry::new());
        let devices = Arc::new(crate::devices::DeviceBook::open(&config.storage.data_dir, clock.now_ms()));
        // Cluster mode: the tail notes devices as it writes the log into this node's store.
        let (sink, event_sink): (Arc<dyn SampleSink>, Arc<dyn EventSink>) = match &cluster {
            Some(c) => (c.publisher.clone(), c.publisher.clone()),
            None => {
                let booked =
                    crate::devices::BookedStore { store: store.clone(), book: devices.clone(), clock: clock.clone() };
                let booked_events = crate::devices::BookedEvents {
                    events: events.clone(),
                    book: devices.clone(),
                    clock: clock.clone(),
                };
                (Arc::new(booked), Arc::new(booked_events))
            }
        };
        let pipeline = Arc::new(Pipeline::new(
            sink,
            event_sink,
            dead_letters.clone(),
            telemetry.clone(),
            config.ingest.clone(),
            Mapping { rules: config.line_protocol.measurements.clone() },
            clock.clone(),
        ));
        let sql = Arc::new(vitals_sql::Engine::new(
            vitals_sql::Sources {
                store: store.clone(),
                events: events.clone(),
                records: Arc::new(crate::sql::StoreRecords {
                    meta: directory.meta_arc(),
                    cohorts: cohorts.clone(),
                    alerts: alerts.clone(),
                }),
            },
            config.sql.limits(),
        ));
        let bulk_exports =
            Arc::new(crate::fhir_export::BulkExports::new(config.storage.data_dir.join("exports").join("fhir")));
        Ok(App {
            cluster,
            devices,
            bulk_exports,
            sql,
            store,
            directory,
            vault,
            pipeline,
            login_limiter: LoginLimiter::default(),
            erased: Arc::default(),
            mqtt_listener_addr: OnceLock::new(),
            pg_listen_addr: OnceLock::new(),
            file_ledger: OnceLock::new(),
            auditor,
            config,
            clock,
            telemetry,
            catalog: Catalog::standard(),
            write_permits,
            heavy_permits,
            live_permits,
            login_permits,
            dead_letters,
            events,
            rules,
            alerts,
            cohorts,
            connections,
            campaigns,
        })
    }
}

pub type AppState = Arc<App>;
