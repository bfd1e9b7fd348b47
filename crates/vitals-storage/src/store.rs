//! The store: ties the log, the buffer, segments and the manifest together.
//!
//! Write path: [`Store::submit`] queues a request for the single writer thread, which
//! drains every queued request, appends them to the WAL with one fdatasync (group commit),
//! inserts them into the buffer, and only then completes each request.
//! Background: a maintenance thread freezes the buffer into segments (flush), compacts small
//! or overlapping segments of a partition, and applies retention.
//!
//! This file holds the public API and the shared state; the work is in `store/`: `writer`
//! (group commit), `read`, `flush` (and the maintenance thread), `compaction`, `retention`,
//! `erasure`. They extend the private `Inner` with their own `impl` blocks.

mod archive;
mod compaction;
mod erasure;
mod flush;
mod index;
mod read;
mod retention;
mod shared;
mod tiering;
mod writer;

use compaction::non_overlapping;
use flush::{maintenance_loop, remove_orphans};
use index::Index;
pub use tiering::TierReport;
use tiering::{Cache, tiering_loop};
use writer::{metric_mask, note_patients, writer_loop};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use vitals_core::time::{MS_PER_DAY, civil_day, day_start};
use vitals_core::{Catalog, Clock, DeviceId, MetricId, PatientId, Sample, Source};

use crate::buffer::{Buffer, Point, merge_dedup};
use crate::data_dir::DataDir;
use crate::fs::FsRef;
use crate::manifest::{Edit, LastPoint, Manifest, ManifestError, SegmentMeta};
use crate::remote::{Remote, RemoteError, SharedLake};
use crate::segment::{self, DeviceRollup, Extra, HourAgg, SegmentError, SeriesRows};
use crate::wal::{Wal, WalError};

/// Tuning of the store; every limit says what happens when it is reached.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Flush the buffer to segments once it holds this many samples.
    pub flush_max_samples: usize,
    /// ... or once this much time passed since the last flush.
    pub flush_interval: Duration,
    /// Start a new WAL file past this size.
    pub wal_max_file_bytes: u64,
    /// Samples accepted but not yet durable; past it, writes fail with `Overloaded` (HTTP 503).
    pub max_inflight_samples: usize,
    /// Samples in memory (buffer + frozen buffers being flushed); past it, writes fail with
    /// `Overloaded` until a flush catches up.
    pub max_buffered_samples: usize,
    /// Merge a run of this many small segments of one partition.
    pub compact_min_segments: usize,
    /// A compaction merges at most this many rows at once (it holds them in memory, about
    /// 120 bytes each); a partition with more keeps several segments.
    pub compact_max_rows: u64,
    /// Per metric: delete day partitions older than this.
    pub retention: HashMap<MetricId, Duration>,
    /// Keep records before a corrupt WAL record and set the damaged file aside.
    pub repair_wal: bool,
    /// Run the maintenance thread (tests may drive [`Store::flush`] themselves).
    pub background: bool,
    /// A request's samples go into WAL records of at most this many, so that no record
    /// comes near the size replay accepts ([`crate::record::MAX_RECORD_LEN`]: 256 MiB,
    /// against at most ~300 bytes a sample).
    pub max_samples_per_record: usize,
    /// The file system the store changes ([`crate::fs::RealFs`]; tests simulate power cuts
    /// with [`crate::fs::sim::SimFs`]).
    pub fs: FsRef,
    /// The remote lake (object storage), if any: settled segments are uploaded to it.
    pub remote: Option<Arc<dyn Remote>>,
    /// A day's segments are uploaded once the day ended this long ago (and compaction has
    /// nothing left to merge in it).
    pub upload_after: Duration,
    /// Uploaded segments keep their local copy until their day ended this long ago (the
    /// hot tier); older ones are read from the remote lake through the cache.
    pub hot_for: Duration,
    /// Bytes of fetched segments kept in the local cache.
    pub cache_bytes: u64,
    /// Objects under the remote prefix that no manifest entry names are deleted once they
    /// are older than this (an upload is committed within seconds).
    pub orphan_grace: Duration,
    /// Compaction across days: a month's segments are merged into archive segments once the
    /// month ended this long ago (`None`: never; the lake keeps day partitions only).
    pub archive_after: Option<Duration>,
    /// Rows one archive segment holds at most (a merge holds them in memory).
    pub archive_max_rows: u64,
    /// Cluster mode: the shared lake (with `remote`): this node uploads, merges across days
    /// and publishes only the patients it writes, and adopts the others' published days.
    pub shared: Option<Arc<dyn SharedLake>>,
    /// How often the remote lake is tended (uploads, the hot tier, the shared lake's
    /// catalog) when nothing wakes it sooner.
    pub tier_interval: Duration,
    /// Cluster mode: a tag (the node's name) in every new segment's file name, so that two
    /// nodes' object keys never collide in the shared lake.
    pub segment_tag: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            flush_max_samples: 1_000_000,
            flush_interval: Duration::from_secs(300),
            wal_max_file_bytes: 64 << 20,
            max_inflight_samples: 1_000_000,
            max_buffered_samples: 4_000_000,
            compact_min_segments: 4,
            compact_max_rows: 1_000_000,
            retention: HashMap::new(),
            repair_wal: false,
            background: true,
            max_samples_per_record: 500_000,
            fs: crate::fs::real(),
            remote: None,
            upload_after: Duration::from_secs(3600),
            hot_for: Duration::from_secs(7 * 86_400),
            cache_bytes: 1 << 30,
            orphan_grace: Duration::from_secs(3600),
            archive_after: Some(Duration::from_secs(86_400)),
            archive_max_rows: 2_000_000,
            shared: None,
            tier_interval: Duration::from_secs(10),
            segment_tag: None,
        }
    }
}

/// A segment whose row count is below this is "small" for compaction.
const SMALL_SEGMENT_ROWS: u64 = 200_000;
/// Partitions compacted per maintenance round (a round runs about every second while
/// there is work), so one round never holds the maintenance lock for long.
const MAX_COMPACTIONS_PER_ROUND: usize = 16;
/// How often compaction looks for work when nothing was flushed.
const COMPACTION_SCAN_INTERVAL: Duration = Duration::from_secs(300);
/// How often the archive pass (compaction across days) looks for months to merge.
const ARCHIVE_SCAN_INTERVAL: Duration = Duration::from_secs(3600);
/// Most samples in one batch handed to the durable-sample subscriber.
pub const FEED_BATCH_SAMPLES: usize = 8192;
/// Most samples one group commit takes from the queue.
const MAX_GROUP_SAMPLES: usize = 1_000_000;
/// Rollups kept in memory (entries are per segment, a few KiB each: at most about 25 MB).
/// A year of one patient's chart needs some thousands; a soak at 700,000 samples/s showed
/// 50,000 entries holding 150 MB once full.
const ROLLUP_CACHE_ENTRIES: usize = 8_000;
/// Parsed segment footers kept in memory (a few KiB each: at most about 10 MB).
const FOOTER_CACHE_ENTRIES: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("remote lake: {0}")]
    Remote(#[from] RemoteError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write path overloaded: {what} (limit {limit}); retry shortly")]
    Overloaded { what: &'static str, limit: usize },
    #[error("data directory {path} is in use by another process (a running server? use --url)")]
    Locked { path: PathBuf },
    #[error("the store is shut down")]
    Closed,
    #[error("storage failed ({0}); writes are refused until it works again (tried with each write)")]
    Failed(String),
    #[error("the disk is full ({0}); writes are refused until space is freed (tried with each write)")]
    NoSpace(String),
    /// A read would hold more raw points than its request allows (found from the segments'
    /// row counts before reading, or while reading).
    #[error("the range holds more than {limit} points")]
    TooManyPoints { limit: usize },
}

/// Why the last WAL write failed; cleared by the next one that succeeds.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    no_space: bool,
}

impl Failure {
    fn error(&self) -> StoreError {
        if self.no_space { StoreError::NoSpace(self.reason.clone()) } else { StoreError::Failed(self.reason.clone()) }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

type Done = Box<dyn FnOnce(Result<u64, StoreError>) + Send>;

enum WriterMsg {
    Write {
        samples: Vec<Sample>,
        done: Done,
    },
    Freeze {
        reply: SyncSender<Result<(), StoreError>>,
    },
    RemoveWalThrough(u64),
    /// Answers once every message before it was handled.
    Barrier {
        reply: SyncSender<()>,
    },
    Stop,
}

/// What [`Store::erase_patient`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub segments: usize,
    pub rows: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub wal_bytes: AtomicU64,
    pub group_commits: AtomicU64,
    pub samples_written: AtomicU64,
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    /// Merges across days into archive segments (and retention's rewrites of them).
    pub archived: AtomicU64,
    pub maintenance_errors: AtomicU64,
    pub segments_deleted_by_retention: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub fetches: AtomicU64,
    pub remote_deletes: AtomicU64,
    pub remote_errors: AtomicU64,
    /// Cluster mode: series-days adopted from the shared lake's catalog, and published to it.
    pub adopted: AtomicU64,
    pub published: AtomicU64,
}

/// A snapshot of sizes, for `/metrics` and the CLI.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSizes {
    pub segments: usize,
    pub segment_bytes: u64,
    pub segment_rows: u64,
    pub buffered_samples: usize,
}

/// One device's points, sorted by time and unique per time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawSeries {
    pub device: Option<DeviceId>,
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    /// Per point, if the read asked for sources ([`ReadRequest::sources`]); else empty.
    pub sources: Vec<Source>,
}

/// What a read returns: raw points, plus hourly rollups for whole days that qualified.
/// A time is covered by exactly one of the two.
#[derive(Debug, Clone, Default)]
pub struct SeriesRead {
    pub raw: Vec<RawSeries>,
    pub hours: Vec<HourAgg>,
}

/// A request for one (patient, metric) over `[from, to)`.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub patient: PatientId,
    pub metric: MetricId,
    pub device: Option<DeviceId>,
    pub from: i64,
    pub to: i64,
    /// May whole days be answered from hourly rollups?
    pub rollups: bool,
    /// The most raw points the read may hold (after merging devices' and segments'
    /// duplicates it may return fewer); past it the read stops with `TooManyPoints`, so
    /// its memory follows this, not the range.
    pub max_points: usize,
    /// Return each raw point's source too (SQL's `source` column; the REST API has none).
    pub sources: bool,
}

/// The newest value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub metric: MetricId,
    pub device: Option<DeviceId>,
    pub time_ms: i64,
    pub value: f64,
}

/// A series of the index: one patient's one metric.
pub type SeriesKey = (PatientId, MetricId);
/// Segments of a series by UTC day.
type Days = BTreeMap<i64, Vec<Arc<SegmentMeta>>>;
/// Work for one compaction: the series, the day and the segments to merge.
type CompactionJob = (SeriesKey, i64, Vec<Arc<SegmentMeta>>);
/// Per device: merged points, and the sample ids their `id` fields index.
type MergedRows = BTreeMap<Option<DeviceId>, (Vec<Point>, Vec<Option<vitals_core::SampleId>>)>;

#[derive(Debug, Default)]
struct ReadState {
    active: Buffer,
    frozen: Vec<Arc<Buffer>>,
    index: Index,
    patients: HashMap<PatientId, i64>,
}

struct Inner {
    lake: PathBuf,
    /// Segments fetched from the remote lake.
    cache_dir: PathBuf,
    cache: Mutex<Cache>,
    /// Keys of remote objects whose segments left the manifest, deleted by the tiering thread.
    doomed: Mutex<Vec<String>>,
    /// Cluster mode: when each series-day was last compared with the shared lake's catalog,
    /// and what its segments were then.
    checked: Mutex<HashMap<(SeriesKey, i64), shared::Checked>>,
    tier_wake: (std::sync::Mutex<bool>, Condvar),
    catalog: &'static Catalog,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    read: RwLock<ReadState>,
    manifest: Mutex<Manifest>,
    /// Serialises flush, compaction and retention.
    maintenance: Mutex<()>,
    rollups: Mutex<HashMap<u64, Arc<Vec<DeviceRollup>>>>,
    /// Parsed footers of segments, so reads of recent minutes skip re-parsing them.
    footers: Mutex<HashMap<u64, ArrowReaderMetadata>>,
    in_flight: AtomicUsize,
    buffered: AtomicUsize,
    failed: Mutex<Option<Failure>>,
    stats: StoreStats,
    wake: (std::sync::Mutex<bool>, Condvar),
    shutdown: AtomicBool,
    /// Who hears about durable samples (the live rule engine), and of which metrics.
    feed: RwLock<Option<Feed>>,
    /// Held (flock) for the life of the store: one process per data directory.
    _lock: fs::File,
}

/// A subscription to durable samples of some metrics.
struct Feed {
    metrics: Vec<bool>,
    tx: SyncSender<DurableBatch>,
}

/// Samples of one group commit, sent to the subscriber once durable and readable.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableBatch {
    /// When they became durable (for latency measurements).
    pub at: std::time::Instant,
    pub samples: Vec<Sample>,
}

/// The storage engine. Cheap to share behind an `Arc`; [`Store::close`] flushes and stops.
pub struct Store {
    inner: Arc<Inner>,
    tx: SyncSender<WriterMsg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    maintainer: Mutex<Option<JoinHandle<()>>>,
    tierer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("lake", &self.inner.lake).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, recovering from the WAL.
    pub fn open(data_dir: &Path, config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let catalog = Catalog::standard();
        let fsr = config.fs.clone();
        crate::fs::create_dir_all_synced(fsr.as_ref(), data_dir).map_err(io(data_dir))?;
        let paths = DataDir::new(data_dir);
        let lock_path = paths.lock_file();
        let lock =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked { path: data_dir.to_owned() });
        }
        let lake = paths.lake();
        crate::fs::create_dir_all_synced(fsr.as_ref(), &lake).map_err(io(&lake))?;
        refuse_a_lost_manifest(&paths)?;
        let manifest = Manifest::open(&fsr, &paths.manifest())?;
        remove_orphans(fsr.as_ref(), &lake, &manifest)?;
        if manifest.state.segments.values().any(|s| s.cold) && config.remote.is_none() {
            return Err(StoreError::Failed(
                "part of the lake is only in the remote lake, but no remote lake is configured (lake.url)".into(),
            ));
        }
        let cache_dir = paths.lake_cache();
        match fs::remove_dir_all(&cache_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&cache_dir)(e)),
            _ => fs::create_dir_all(&cache_dir).map_err(io(&cache_dir))?,
        }
        let mut state = ReadState::default();
        for meta in manifest.state.segments.values() {
            let (Ok(patient), Some(metric)) = (PatientId::new(&meta.patient), catalog.id(&meta.metric)) else {
                tracing::warn!(path = %meta.path, "segment of an unknown metric or bad patient id is ignored");
                continue;
            };
            let last = state.patients.entry(patient.clone()).or_insert(i64::MIN);
            *last = (*last).max(meta.max_ms);
            state.index.add((patient, metric), Arc::clone(meta));
        }
        let flushed = manifest.state.flushed_seq;
        let mut replayed_samples = 0usize;
        let wal = Wal::open(&fsr, &paths.wal(), config.repair_wal, catalog, flushed + 1, |r| {
            if r.seq > flushed {
                state.active.insert(&r.samples);
                note_patients(&mut state.patients, &r.samples);
                state.active.last_seq = r.seq;
                replayed_samples += r.samples.len();
            }
        })?;
        if state.active.last_seq == 0 {
            state.active.last_seq = flushed;
        }
        tracing::info!(segments = state.index.sizes.segments, replayed_samples, flushed_seq = flushed, "store opened");
        let inner = Arc::new(Inner {
            lake,
            cache_dir,
            cache: Mutex::new(Cache::default()),
            doomed: Mutex::new(Vec::new()),
            checked: Mutex::new(HashMap::new()),
            tier_wake: (std::sync::Mutex::new(false), Condvar::new()),
            catalog,
            buffered: AtomicUsize::new(state.active.len()),
            read: RwLock::new(state),
            manifest: Mutex::new(manifest),
            maintenance: Mutex::new(()),
            rollups: Mutex::new(HashMap::new()),
            footers: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            failed: Mutex::new(None),
            stats: StoreStats::default(),
            wake: (std::sync::Mutex::new(false), Condvar::new()),
            shutdown: AtomicBool::new(false),
            feed: RwLock::new(None),
            _lock: lock,
            clock,
            config,
        });
        inner.stats.wal_bytes.store(wal.size_bytes(), Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(4096);
        let w = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("vitals-wal".into())
            .spawn(move || writer_loop(&w, wal, &rx))
            .map_err(|e| StoreError::Io { path: data_dir.to_owned(), source: e })?;
        let store = Store {
            inner,
            tx,
            writer: Mutex::new(Some(writer)),
            maintainer: Mutex::new(None),
            tierer: Mutex::new(None),
        };
        if store.inner.config.background {
            let m = Arc::clone(&store.inner);
            let tx = store.tx.clone();
            let handle = std::thread::Builder::new()
                .name("vitals-maintenance".into())
                .spawn(move || maintenance_loop(&m, &tx))
                .map_err(|e| StoreError::Io { path: data_dir.to_owned(), source: e })?;
            *store.maintainer.lock() = Some(handle);
            if store.inner.config.remote.is_some() {
                let t = Arc::clone(&store.inner);
                let handle = std::thread::Builder::new()
                    .name("vitals-tiering".into())
                    .spawn(move || tiering_loop(&t))
                    .map_err(|e| StoreError::Io { path: data_dir.to_owned(), source: e })?;
                *store.tierer.lock() = Some(handle);
            }
        }
        Ok(store)
    }

    /// Queues samples for the durable write path; `done` runs once they are fsynced and
    /// visible to reads (or failed). Fails at once when a limit is reached.
    pub fn submit(
        &self,
        samples: Vec<Sample>,
        done: impl FnOnce(Result<u64, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        // After a failure the writer tries to recover with each write: none is refused here.
        if samples.is_empty() {
            done(Ok(0));
            return Ok(());
        }
        let n = samples.len();
        let cfg = &self.inner.config;
        if self.inner.buffered.load(Ordering::Relaxed) + n > cfg.max_buffered_samples {
            self.inner.wake_maintenance();
            return Err(StoreError::Overloaded { what: "samples buffered in memory", limit: cfg.max_buffered_samples });
        }
        let before = self.inner.in_flight.fetch_add(n, Ordering::AcqRel);
        if before + n > cfg.max_inflight_samples && before > 0 {
            self.inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            return Err(StoreError::Overloaded { what: "samples waiting for fsync", limit: cfg.max_inflight_samples });
        }
        match self.tx.try_send(WriterMsg::Write { samples, done: Box::new(done) }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inner.in_flight.fetch_sub(n, Ordering::AcqRel);
                match e {
                    TrySendError::Full(_) => Err(StoreError::Overloaded { what: "queued write requests", limit: 4096 }),
                    TrySendError::Disconnected(_) => Err(StoreError::Closed),
                }
            }
        }
    }

    /// Subscribes to durable samples of `metrics`: right after each group commit (WAL
    /// fsynced, samples readable), the committed samples of those metrics arrive as one
    /// batches of at most [`FEED_BATCH_SAMPLES`]. The channel holds `capacity` batches;
    /// when it is full the writer waits, so a slow subscriber slows ingest rather than
    /// missing samples, and what waits for it is at most `capacity` batches. One
    /// subscriber at a time.
    pub fn subscribe_durable(&self, metrics: &[MetricId], capacity: usize) -> Receiver<DurableBatch> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        *self.inner.feed.write() = Some(Feed { metrics: metric_mask(self.inner.catalog, metrics), tx });
        rx
    }

    /// Changes which metrics the subscriber hears about (rules changed).
    pub fn set_durable_metrics(&self, metrics: &[MetricId]) {
        if let Some(f) = self.inner.feed.write().as_mut() {
            f.metrics = metric_mask(self.inner.catalog, metrics);
        }
    }

    /// Writes samples and waits until they are durable.
    pub fn write(&self, samples: Vec<Sample>) -> Result<u64, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(samples, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Reads one series; see [`SeriesRead`].
    pub fn read(&self, req: &ReadRequest) -> Result<SeriesRead, StoreError> {
        let mut attempt = 0;
        loop {
            match self.inner.read_once(req) {
                // A compaction may delete a file between the snapshot and the open: retry.
                Err(StoreError::Segment(SegmentError::Io { source, .. }))
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// An upper estimate of the raw points a read of the range would hold, from the
    /// segments' row counts (those partly in the range scaled by their overlap) and the
    /// buffered points; days answered by rollups count their hours instead.
    pub fn estimate(&self, req: &ReadRequest) -> u64 {
        self.inner.estimate(req)
    }

    /// Whether any sample of this patient was ever stored.
    pub fn has_patient(&self, patient: &PatientId) -> bool {
        self.inner.read.read().patients.contains_key(patient)
    }

    /// Every patient with the time of their newest sample.
    pub fn patients(&self) -> Vec<(PatientId, i64)> {
        let g = self.inner.read.read();
        let mut v: Vec<(PatientId, i64)> = g.patients.iter().map(|(p, t)| (p.clone(), *t)).collect();
        v.sort();
        v
    }

    /// Every series (patient, metric) with the UTC days (their start) that hold data, in
    /// segments or buffered; a buffered series counts every day between its first and last
    /// point. For planning scans: a read of a day not listed finds nothing. With `patient`,
    /// only that patient's series (looked up, not scanned for).
    pub fn series_days(&self, patient: Option<&PatientId>) -> BTreeMap<SeriesKey, BTreeSet<i64>> {
        let g = self.inner.read.read();
        let mut out: BTreeMap<SeriesKey, BTreeSet<i64>> = BTreeMap::new();
        let mut add = |key: &SeriesKey, days: &Days| out.entry(key.clone()).or_default().extend(days.keys().copied());
        match patient {
            None => g.index.series.iter().for_each(|(key, days)| add(key, days)),
            Some(p) => {
                for (metric, _) in self.inner.catalog.all() {
                    let key = (p.clone(), metric);
                    if let Some(days) = g.index.series.get(&key) {
                        add(&key, days);
                    }
                }
            }
        }
        for b in g.frozen.iter().map(|b| &**b).chain(std::iter::once(&g.active)) {
            for (p, m, lo, hi) in b.series_spans().filter(|s| patient.is_none_or(|want| want == s.0)) {
                let e = out.entry((p.clone(), m)).or_default();
                let mut d = day_start(lo);
                // Validated times lie within decades; the bound only keeps a bad clock cheap.
                while d <= hi && e.len() < 1_000_000 {
                    e.insert(d);
                    d += MS_PER_DAY;
                }
            }
        }
        out
    }

    /// The newest value of every metric of a patient.
    pub fn latest(&self, patient: &PatientId) -> Vec<Latest> {
        let g = self.inner.read.read();
        let mut best: BTreeMap<MetricId, Latest> = BTreeMap::new();
        let mut offer = |l: Latest| match best.get(&l.metric) {
            Some(b) if b.time_ms >= l.time_ms => {}
            _ => {
                best.insert(l.metric, l);
            }
        };
        for (metric, _) in self.inner.catalog.all() {
            let Some(days) = g.index.series.get(&(patient.clone(), metric)) else { continue };
            let Some((_, segs)) = days.iter().next_back() else { continue };
            for s in segs {
                for lp in &s.last {
                    offer(Latest {
                        metric,
                        device: lp.device.as_deref().and_then(|d| DeviceId::new(d).ok()),
                        time_ms: lp.time_ms,
                        value: lp.value,
                    });
                }
            }
        }
        for b in g.frozen.iter().map(|b| &**b).chain(std::iter::once(&g.active)) {
            for (metric, device, p) in b.latest(patient) {
                offer(Latest { metric, device, time_ms: p.time_ms, value: p.value });
            }
        }
        best.into_values().collect()
    }

    /// Moves everything buffered into segments now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush(&self.tx)
    }

    /// Erases every sample of a patient: from the buffer and the write-ahead log (by
    /// flushing and deleting the flushed log files), from every lake partition, and from
    /// the manifest (rewritten as a snapshot so no old edit names the patient's segments).
    /// Stop the patient's senders first (revoke their tokens): a sample written during the
    /// erasure is erased too if it arrives before the last round, else it remains.
    pub fn erase_patient(&self, patient: &PatientId) -> Result<Erased, StoreError> {
        self.inner.erase_patient(patient, &self.tx)
    }

    /// Runs one round of compaction; returns how many partitions were compacted.
    pub fn compact(&self) -> Result<usize, StoreError> {
        self.inner.compact(usize::MAX)
    }

    /// Compacts every day partition, then merges every month that ended `archive_after` ago
    /// into archive segments (compaction across days); returns the merges done. What the
    /// maintenance thread does over time, at once (`vitals lake compact`).
    pub fn compact_all(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let round = self.inner.compact(usize::MAX)? + self.inner.archive(usize::MAX)?;
            if round == 0 {
                return Ok(n);
            }
            n += round;
        }
    }

    /// Deletes partitions older than each metric's retention; returns segments deleted.
    pub fn apply_retention(&self) -> Result<usize, StoreError> {
        self.inner.apply_retention()
    }

    /// Runs one round of the remote tier now (the tiering thread runs them every few
    /// seconds): uploads settled days, drops local copies past the hot tier, deletes
    /// objects of removed segments.
    pub fn tier(&self) -> Result<TierReport, StoreError> {
        self.inner.tier_round()
    }

    /// Deletes objects of the remote lake that no manifest entry names and that are older
    /// than `grace` (the tiering thread does this hourly with `orphan_grace`).
    pub fn sweep_remote(&self, grace: Duration) -> Result<usize, StoreError> {
        self.inner.sweep_remote(grace, None)
    }

    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    pub fn sizes(&self) -> StoreSizes {
        let g = self.inner.read.read();
        StoreSizes { buffered_samples: self.inner.buffered.load(Ordering::Relaxed), ..g.index.sizes }
    }

    /// Segments currently in the lake (for tests and tools).
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.inner.manifest.lock().state.segments.values().map(|s| SegmentMeta::clone(s)).collect()
    }

    pub fn lake_dir(&self) -> &Path {
        &self.inner.lake
    }

    /// A failure that stops the write path until a write succeeds again, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failed.lock().as_ref().map(|f| f.reason.clone())
    }

    /// Flushes what the buffer holds into segments and stops the threads.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.wake_maintenance();
        self.inner.wake_tiering();
        if let Some(h) = self.maintainer.lock().take() {
            let _ = h.join();
        }
        if let Some(h) = self.tierer.lock().take() {
            let _ = h.join();
        }
        let flushed = if self.writer.lock().is_some() { self.flush() } else { Ok(()) };
        let _ = self.tx.send(WriterMsg::Stop);
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        flushed
    }
}

/// A new manifest is only started over an empty lake: segment files without a manifest
/// mean it was lost, and starting afresh would take every one of them for an orphan.
fn refuse_a_lost_manifest(paths: &DataDir) -> Result<(), StoreError> {
    let current = paths.manifest().join("CURRENT");
    if current.exists() {
        return Ok(());
    }
    let segments = flush::segment_files(&paths.lake())?;
    if segments == 0 {
        return Ok(());
    }
    Err(StoreError::Manifest(ManifestError::Corrupt {
        path: current,
        reason: format!(
            "missing, but the lake holds {segments} segment file(s); restore the manifest directory from a \
             backup (nothing was changed)"
        ),
    }))
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.writer.lock().is_some()
            && let Err(e) = self.close()
        {
            tracing::error!(error = %e, "closing the store");
        }
    }
}

#[cfg(test)]
mod tests;
