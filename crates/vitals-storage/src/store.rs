//! The store: ties the log, the buffer, segments and the manifest together.
//!
//! Write path: [`Store::submit`] queues a request for the single writer thread, which
//! drains every queued request, appends them to the WAL with one fdatasync (group commit),
//! inserts them into the buffer, and only then completes each request.
//! Background: a maintenance thread freezes the buffer into segments (flush), compacts small
//! or overlapping segments of a partition, and applies retention.

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
use vitals_core::{Catalog, Clock, DeviceId, MetricId, PatientId, Sample};

use crate::buffer::{Buffer, Point, merge_dedup};
use crate::manifest::{Edit, LastPoint, Manifest, ManifestError, SegmentMeta};
use crate::segment::{self, DeviceRollup, HourAgg, SegmentError, SeriesRows};
use crate::wal::{Wal, WalError, sync_dir};

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
    /// Per metric: delete day partitions older than this.
    pub retention: HashMap<MetricId, Duration>,
    /// Keep records before a corrupt WAL record and set the damaged file aside.
    pub repair_wal: bool,
    /// Run the maintenance thread (tests may drive [`Store::flush`] themselves).
    pub background: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            flush_max_samples: 4_000_000,
            flush_interval: Duration::from_secs(300),
            wal_max_file_bytes: 64 << 20,
            max_inflight_samples: 4_000_000,
            max_buffered_samples: 16_000_000,
            compact_min_segments: 4,
            retention: HashMap::new(),
            repair_wal: false,
            background: true,
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
/// Most samples one group commit takes from the queue.
const MAX_GROUP_SAMPLES: usize = 1_000_000;
/// Rollups kept in memory (entries are per segment, a few KiB each).
const ROLLUP_CACHE_ENTRIES: usize = 50_000;
/// Parsed segment footers kept in memory (a few KiB each).
const FOOTER_CACHE_ENTRIES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write path overloaded: {what} (limit {limit}); retry shortly")]
    Overloaded { what: &'static str, limit: usize },
    #[error("data directory {path} is in use by another process (a running server? use --url)")]
    Locked { path: PathBuf },
    #[error("the store is shut down")]
    Closed,
    #[error("the store stopped accepting writes after a failure: {0}")]
    Failed(String),
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
    pub maintenance_errors: AtomicU64,
    pub segments_deleted_by_retention: AtomicU64,
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
type SeriesKey = (PatientId, MetricId);
/// Segments of a series by UTC day.
type Days = BTreeMap<i64, Vec<Arc<SegmentMeta>>>;
/// Work for one compaction: the series, the day and the segments to merge.
type CompactionJob = (SeriesKey, i64, Vec<Arc<SegmentMeta>>);
/// Per device: merged points, and the sample ids their `id` fields index.
type MergedRows = BTreeMap<Option<DeviceId>, (Vec<Point>, Vec<Option<vitals_core::SampleId>>)>;

#[derive(Debug, Default)]
struct Index {
    series: HashMap<SeriesKey, Days>,
    sizes: StoreSizes,
}

impl Index {
    fn add(&mut self, key: (PatientId, MetricId), meta: Arc<SegmentMeta>) {
        self.sizes.segments += 1;
        self.sizes.segment_bytes += meta.bytes;
        self.sizes.segment_rows += meta.rows;
        self.series.entry(key).or_default().entry(meta.day_ms).or_default().push(meta);
    }

    fn remove(&mut self, key: &(PatientId, MetricId), day: i64, id: u64) {
        let Some(days) = self.series.get_mut(key) else { return };
        let Some(segs) = days.get_mut(&day) else { return };
        if let Some(pos) = segs.iter().position(|s| s.id == id) {
            let m = segs.remove(pos);
            self.sizes.segments -= 1;
            self.sizes.segment_bytes -= m.bytes;
            self.sizes.segment_rows -= m.rows;
        }
        if segs.is_empty() {
            days.remove(&day);
        }
        if days.is_empty() {
            self.series.remove(key);
        }
    }
}

#[derive(Debug, Default)]
struct ReadState {
    active: Buffer,
    frozen: Vec<Arc<Buffer>>,
    index: Index,
    patients: HashMap<PatientId, i64>,
}

struct Inner {
    lake: PathBuf,
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
    failed: Mutex<Option<String>>,
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
        fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let lock_path = data_dir.join("LOCK");
        let lock =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked { path: data_dir.to_owned() });
        }
        let lake = data_dir.join("lake");
        fs::create_dir_all(&lake).map_err(io(&lake))?;
        let manifest = Manifest::open(&data_dir.join("manifest"))?;
        remove_orphans(&lake, &manifest)?;
        let mut state = ReadState::default();
        for meta in manifest.state.segments.values() {
            let (Ok(patient), Some(metric)) = (PatientId::new(&meta.patient), catalog.id(&meta.metric)) else {
                tracing::warn!(path = %meta.path, "segment of an unknown metric or bad patient id is ignored");
                continue;
            };
            let last = state.patients.entry(patient.clone()).or_insert(i64::MIN);
            *last = (*last).max(meta.max_ms);
            state.index.add((patient, metric), Arc::new(meta.clone()));
        }
        let flushed = manifest.state.flushed_seq;
        let mut replayed_samples = 0usize;
        let wal = Wal::open(&data_dir.join("wal"), config.repair_wal, catalog, flushed + 1, |r| {
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
        let store = Store { inner, tx, writer: Mutex::new(Some(writer)), maintainer: Mutex::new(None) };
        if store.inner.config.background {
            let m = Arc::clone(&store.inner);
            let tx = store.tx.clone();
            let handle = std::thread::Builder::new()
                .name("vitals-maintenance".into())
                .spawn(move || maintenance_loop(&m, &tx))
                .map_err(|e| StoreError::Io { path: data_dir.to_owned(), source: e })?;
            *store.maintainer.lock() = Some(handle);
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
        if let Some(why) = self.inner.failed.lock().clone() {
            return Err(StoreError::Failed(why));
        }
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
    /// batch. The channel holds `capacity` batches; when it is full the writer waits, so a
    /// slow subscriber slows ingest rather than missing samples. One subscriber at a time.
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

    /// Deletes partitions older than each metric's retention; returns segments deleted.
    pub fn apply_retention(&self) -> Result<usize, StoreError> {
        self.inner.apply_retention()
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
        self.inner.manifest.lock().state.segments.values().cloned().collect()
    }

    pub fn lake_dir(&self) -> &Path {
        &self.inner.lake
    }

    /// A failure that stopped the write path, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failed.lock().clone()
    }

    /// Flushes what the buffer holds into segments and stops the threads.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.wake_maintenance();
        if let Some(h) = self.maintainer.lock().take() {
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

impl Drop for Store {
    fn drop(&mut self) {
        if self.writer.lock().is_some()
            && let Err(e) = self.close()
        {
            tracing::error!(error = %e, "closing the store");
        }
    }
}

fn note_patients(patients: &mut HashMap<PatientId, i64>, samples: &[Sample]) {
    let mut i = 0;
    while i < samples.len() {
        let p = &samples[i].patient;
        let mut max = samples[i].time_ms;
        let mut j = i + 1;
        while j < samples.len() && &samples[j].patient == p {
            max = max.max(samples[j].time_ms);
            j += 1;
        }
        match patients.get_mut(p) {
            Some(t) => *t = (*t).max(max),
            None => {
                patients.insert(p.clone(), max);
            }
        }
        i = j;
    }
}

fn writer_loop(inner: &Inner, mut wal: Wal, rx: &Receiver<WriterMsg>) {
    let mut writes: Vec<(Vec<Sample>, Done)> = Vec::new();
    let mut controls: Vec<WriterMsg> = Vec::new();
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut total = 0usize;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                WriterMsg::Write { samples, done } => {
                    total += samples.len();
                    writes.push((samples, done));
                }
                other => controls.push(other),
            }
            // A control message ends the group so that it sees every write queued before it.
            if total < MAX_GROUP_SAMPLES && controls.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            commit_group(inner, &mut wal, std::mem::take(&mut writes));
        }
        for c in controls.drain(..) {
            match c {
                WriterMsg::Write { .. } => {}
                WriterMsg::Freeze { reply } => {
                    let r = freeze(inner, &mut wal);
                    let _ = reply.send(r);
                }
                WriterMsg::RemoveWalThrough(seq) => {
                    if let Err(e) = wal.remove_through(seq) {
                        tracing::error!(error = %e, "deleting flushed WAL files");
                    }
                    inner.stats.wal_bytes.store(wal.size_bytes(), Ordering::Relaxed);
                }
                WriterMsg::Barrier { reply } => {
                    let _ = reply.send(());
                }
                WriterMsg::Stop => return,
            }
        }
    }
}

fn metric_mask(catalog: &Catalog, metrics: &[MetricId]) -> Vec<bool> {
    let mut mask = vec![false; catalog.len()];
    for m in metrics {
        if let Some(b) = mask.get_mut(usize::from(m.0)) {
            *b = true;
        }
    }
    mask
}

fn commit_group(inner: &Inner, wal: &mut Wal, writes: Vec<(Vec<Sample>, Done)>) {
    let n: usize = writes.iter().map(|w| w.0.len()).sum();
    if let Some(why) = inner.failed.lock().clone() {
        inner.in_flight.fetch_sub(n, Ordering::AcqRel);
        for (_, done) in writes {
            done(Err(StoreError::Failed(why.clone())));
        }
        return;
    }
    let batches: Vec<&[Sample]> = writes.iter().map(|w| &w.0[..]).collect();
    match wal.append(&batches, inner.catalog) {
        Ok(first_seq) => {
            {
                let mut g = inner.read.write();
                for (samples, _) in &writes {
                    g.active.insert(samples);
                    note_patients(&mut g.patients, samples);
                }
                g.active.last_seq = first_seq + writes.len() as u64 - 1;
            }
            inner.buffered.fetch_add(n, Ordering::Relaxed);
            inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            inner.stats.group_commits.fetch_add(1, Ordering::Relaxed);
            inner.stats.samples_written.fetch_add(n as u64, Ordering::Relaxed);
            let feed: Option<(Vec<Sample>, SyncSender<DurableBatch>)> = inner.feed.read().as_ref().map(|f| {
                let picked = writes
                    .iter()
                    .flat_map(|w| w.0.iter())
                    .filter(|s| f.metrics.get(usize::from(s.metric.0)).copied().unwrap_or(false))
                    .cloned()
                    .collect();
                (picked, f.tx.clone())
            });
            for (i, (_, done)) in writes.into_iter().enumerate() {
                done(Ok(first_seq + i as u64));
            }
            if let Some((picked, tx)) = feed
                && !picked.is_empty()
                && tx.send(DurableBatch { at: std::time::Instant::now(), samples: picked }).is_err()
            {
                // The subscriber is gone.
                *inner.feed.write() = None;
            }
            if wal.current_file_bytes() > inner.config.wal_max_file_bytes
                && let Err(e) = wal.rotate()
            {
                tracing::error!(error = %e, "rotating the WAL");
            }
            inner.stats.wal_bytes.store(wal.size_bytes(), Ordering::Relaxed);
            if inner.buffered.load(Ordering::Relaxed) >= inner.config.flush_max_samples {
                inner.wake_maintenance();
            }
        }
        Err(e) => {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good fsync can be trusted, so stop accepting writes (fsyncgate).
            let why = e.to_string();
            tracing::error!(error = %why, "WAL write failed; the store stops accepting writes");
            *inner.failed.lock() = Some(why.clone());
            inner.in_flight.fetch_sub(n, Ordering::AcqRel);
            for (_, done) in writes {
                done(Err(StoreError::Failed(why.clone())));
            }
        }
    }
}

fn freeze(inner: &Inner, wal: &mut Wal) -> Result<(), StoreError> {
    let mut g = inner.read.write();
    if g.active.is_empty() {
        return Ok(());
    }
    wal.rotate()?;
    let last = g.active.last_seq;
    let frozen = std::mem::take(&mut g.active);
    g.active.last_seq = last;
    g.frozen.push(Arc::new(frozen));
    Ok(())
}

fn maintenance_loop(inner: &Inner, tx: &SyncSender<WriterMsg>) {
    let mut last_flush = Instant::now();
    let mut last_retention: Option<Instant> = None;
    // Compaction scans the whole index, so it runs after flushes, while a round left work,
    // and every few minutes (to merge days that have just ended), not every tick.
    let mut compact_pending = true;
    let mut last_compaction = Instant::now();
    loop {
        {
            let (lock, cv) = &inner.wake;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut woken, _) =
                cv.wait_timeout_while(guard, Duration::from_secs(1), |w| !*w).unwrap_or_else(|e| e.into_inner());
            *woken = false;
        }
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let buffered = inner.buffered.load(Ordering::Relaxed);
        let due = buffered >= inner.config.flush_max_samples
            || (buffered > 0 && last_flush.elapsed() >= inner.config.flush_interval);
        let mut errors = Vec::new();
        if due {
            last_flush = Instant::now();
            compact_pending = true;
            if let Err(e) = inner.flush(tx) {
                errors.push(e);
            }
        }
        if compact_pending || last_compaction.elapsed() >= COMPACTION_SCAN_INTERVAL {
            last_compaction = Instant::now();
            match inner.compact(MAX_COMPACTIONS_PER_ROUND) {
                Ok(n) => compact_pending = n >= MAX_COMPACTIONS_PER_ROUND,
                Err(e) => errors.push(e),
            }
        }
        if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_retention = Some(Instant::now());
            if let Err(e) = inner.apply_retention() {
                errors.push(e);
            }
        }
        for e in errors {
            inner.stats.maintenance_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "storage maintenance");
        }
    }
}

/// Deletes segment files that no manifest entry names (left by a crash mid-flush).
fn remove_orphans(lake: &Path, manifest: &Manifest) -> Result<(), StoreError> {
    let known: BTreeSet<&str> = manifest.state.segments.values().map(|s| s.path.as_str()).collect();
    let mut stack = vec![lake.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let path = e.path();
            let ft = e.file_type().map_err(io(&path))?;
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("part-") {
                continue;
            }
            let rel = path.strip_prefix(lake).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            if !known.contains(rel.as_str()) {
                tracing::info!(path = %path.display(), "removing orphan segment file");
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

fn partition_dir(metric: &str, patient: &PatientId, day_ms: i64) -> String {
    let (y, m, d) = civil_day(day_ms);
    format!("metric={metric}/year={y:04}/month={m:02}/day={d:02}/patient={patient}")
}

fn to_points(s: &SeriesRows) -> Vec<Point> {
    s.times.iter().zip(&s.values).map(|(&t, &v)| Point { time_ms: t, value: v, id: 0 }).collect()
}

fn non_overlapping(segs: &[Arc<SegmentMeta>]) -> bool {
    let mut ranges: Vec<(i64, i64)> = segs.iter().map(|s| (s.min_ms, s.max_ms)).collect();
    ranges.sort();
    ranges.windows(2).all(|w| w[0].1 < w[1].0)
}

impl Inner {
    fn wake_maintenance(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    fn segment_path(&self, meta: &SegmentMeta) -> PathBuf {
        self.lake.join(&meta.path)
    }

    fn rollup_of(&self, meta: &SegmentMeta) -> Result<Arc<Vec<DeviceRollup>>, StoreError> {
        if let Some(r) = self.rollups.lock().get(&meta.id) {
            return Ok(Arc::clone(r));
        }
        let r = Arc::new(segment::read_rollup(&self.segment_path(meta))?);
        self.cache_rollup(meta.id, Arc::clone(&r));
        Ok(r)
    }

    fn footer_of(&self, meta: &SegmentMeta) -> Result<ArrowReaderMetadata, StoreError> {
        if let Some(m) = self.footers.lock().get(&meta.id) {
            return Ok(m.clone());
        }
        let m = segment::load_metadata(&self.segment_path(meta))?;
        let mut c = self.footers.lock();
        if c.len() >= FOOTER_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(meta.id, m.clone());
        Ok(m)
    }

    /// Forgets cached footers and rollups of segments that no longer exist.
    fn forget(&self, id: u64) {
        self.rollups.lock().remove(&id);
        self.footers.lock().remove(&id);
    }

    fn cache_rollup(&self, id: u64, r: Arc<Vec<DeviceRollup>>) {
        let mut c = self.rollups.lock();
        if c.len() >= ROLLUP_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(id, r);
    }

    fn read_once(&self, req: &ReadRequest) -> Result<SeriesRead, StoreError> {
        let key = (req.patient.clone(), req.metric);
        // Snapshot under the lock: buffered points (oldest buffer first) and segment lists.
        let mut buffered: BTreeMap<Option<DeviceId>, Vec<Point>> = BTreeMap::new();
        let days: Vec<(i64, Vec<Arc<SegmentMeta>>)> = {
            let g = self.read.read();
            for b in g.frozen.iter().map(|b| &**b).chain(std::iter::once(&g.active)) {
                for dp in b.read(&req.patient, req.metric, req.device.as_ref(), req.from, req.to) {
                    let e = buffered.entry(dp.device).or_default();
                    *e = if e.is_empty() { dp.points } else { merge_dedup(e, &dp.points) };
                }
            }
            match g.index.series.get(&key) {
                None => Vec::new(),
                Some(days) => days
                    .range(day_start(req.from)..req.to.max(day_start(req.from)))
                    .map(|(d, segs)| (*d, segs.clone()))
                    .collect(),
            }
        };
        let buffered_days: BTreeSet<i64> =
            buffered.values().flat_map(|ps| ps.iter().map(|p| day_start(p.time_ms))).collect();
        let mut out = SeriesRead::default();
        let mut from_segments: BTreeMap<Option<DeviceId>, Vec<Point>> = BTreeMap::new();
        for (day, mut segs) in days {
            let whole_day = day >= req.from && day.saturating_add(MS_PER_DAY) <= req.to;
            if req.rollups && whole_day && !buffered_days.contains(&day) && non_overlapping(&segs) {
                for s in &segs {
                    for dr in self.rollup_of(s)?.iter() {
                        if req.device.as_ref().is_none_or(|d| dr.device.as_deref() == Some(d.as_str())) {
                            out.hours.extend_from_slice(&dr.hours);
                        }
                    }
                }
                continue;
            }
            segs.sort_by_key(|s| s.order);
            for s in &segs {
                let footer = self.footer_of(s)?;
                for rows in
                    segment::read(&self.segment_path(s), Some(&footer), req.from, req.to, req.device.as_ref(), false)?
                {
                    let pts = to_points(&rows);
                    let e = from_segments.entry(rows.device).or_default();
                    // Segments are visited oldest first, so equal times resolve to the newest.
                    *e = if e.is_empty() { pts } else { merge_dedup(e, &pts) };
                }
            }
        }
        for (device, pts) in buffered {
            let e = from_segments.entry(device).or_default();
            *e = if e.is_empty() { pts } else { merge_dedup(e, &pts) };
        }
        out.raw = from_segments
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(device, pts)| RawSeries {
                device,
                times: pts.iter().map(|p| p.time_ms).collect(),
                values: pts.iter().map(|p| p.value).collect(),
            })
            .collect();
        Ok(out)
    }

    fn flush(&self, tx: &SyncSender<WriterMsg>) -> Result<(), StoreError> {
        let _m = self.maintenance.lock();
        let (reply, rx) = mpsc::sync_channel(1);
        tx.send(WriterMsg::Freeze { reply }).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)??;
        loop {
            let Some(b) = self.read.read().frozen.first().cloned() else { return Ok(()) };
            self.flush_frozen(&b, tx)?;
        }
    }

    fn flush_frozen(&self, b: &Arc<Buffer>, tx: &SyncSender<WriterMsg>) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut parts: BTreeMap<(MetricId, PatientId, i64), Vec<SeriesRows>> = BTreeMap::new();
        let keys: Vec<(PatientId, MetricId)> = b.series_keys().map(|(p, m)| (p.clone(), m)).collect();
        for (patient, metric) in keys {
            for dp in b.read(&patient, metric, None, i64::MIN, i64::MAX) {
                let mut i = 0;
                while i < dp.points.len() {
                    let day = day_start(dp.points[i].time_ms);
                    let j = i + dp.points[i..].partition_point(|p| p.time_ms < day + MS_PER_DAY);
                    let chunk = &dp.points[i..j];
                    parts.entry((metric, patient.clone(), day)).or_default().push(SeriesRows {
                        device: dp.device.clone(),
                        times: chunk.iter().map(|p| p.time_ms).collect(),
                        values: chunk.iter().map(|p| p.value).collect(),
                        ids: chunk.iter().map(|p| b.sample_id(p.id).cloned()).collect(),
                    });
                    i = j;
                }
            }
        }
        let order = b.last_seq;
        let mut manifest = self.manifest.lock();
        let mut metas = Vec::with_capacity(parts.len());
        let mut dirs = BTreeSet::new();
        let mut rollups = Vec::with_capacity(parts.len());
        for ((metric, patient, day), series) in parts {
            let id = manifest.allocate_ids(1);
            let (meta, rollup) = self.write_segment(id, metric, &patient, day, order, &series, &mut dirs)?;
            metas.push((patient, metric, meta));
            rollups.push((id, rollup));
        }
        self.sync_dirs(&dirs)?;
        manifest.commit(Edit {
            add: metas.iter().map(|m| m.2.clone()).collect(),
            flushed_seq: Some(order),
            ..Edit::default()
        })?;
        drop(manifest);
        for (id, r) in rollups {
            self.cache_rollup(id, Arc::new(r));
        }
        let rows: u64 = metas.iter().map(|m| m.2.rows).sum();
        let segments = metas.len();
        {
            let mut g = self.read.write();
            for (patient, metric, meta) in metas {
                g.index.add((patient, metric), Arc::new(meta));
            }
            g.frozen.retain(|f| !Arc::ptr_eq(f, b));
        }
        self.buffered.fetch_sub(b.len().min(self.buffered.load(Ordering::Relaxed)), Ordering::Relaxed);
        let _ = tx.send(WriterMsg::RemoveWalThrough(order));
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            segments,
            rows,
            flushed_seq = order,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed buffer to segments"
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // reason: one call site each in flush and compaction
    fn write_segment(
        &self,
        id: u64,
        metric: MetricId,
        patient: &PatientId,
        day: i64,
        order: u64,
        series: &[SeriesRows],
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<(SegmentMeta, Vec<DeviceRollup>), StoreError> {
        let m = self.catalog.get(metric);
        let rel_dir = partition_dir(m.code, patient, day);
        let dir = self.lake.join(&rel_dir);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let name = format!("part-{id:020}.parquet");
        let tmp = dir.join(format!("{name}.tmp"));
        let w = segment::write(&tmp, m.scale, series)?;
        let path = dir.join(&name);
        fs::rename(&tmp, &path).map_err(io(&tmp))?;
        dirs.insert(dir);
        let last = series
            .iter()
            .filter_map(|s| {
                Some(LastPoint {
                    device: s.device.as_ref().map(|d| d.as_str().to_owned()),
                    time_ms: *s.times.last()?,
                    value: *s.values.last()?,
                })
            })
            .collect();
        let meta = SegmentMeta {
            id,
            metric: m.code.to_owned(),
            patient: patient.as_str().to_owned(),
            day_ms: day,
            path: format!("{rel_dir}/{name}"),
            rows: w.rows,
            bytes: w.bytes,
            min_ms: w.min_ms,
            max_ms: w.max_ms,
            order,
            last,
        };
        Ok((meta, w.rollup))
    }

    /// Fsyncs each partition directory and its ancestors up to the lake, so new files and
    /// directories survive a crash before the manifest names them.
    fn sync_dirs(&self, dirs: &BTreeSet<PathBuf>) -> Result<(), StoreError> {
        let mut all = BTreeSet::new();
        for d in dirs {
            let mut cur = Some(d.as_path());
            while let Some(p) = cur {
                if !p.starts_with(&self.lake) {
                    break;
                }
                all.insert(p.to_owned());
                cur = p.parent();
            }
        }
        for d in all.iter().rev() {
            sync_dir(d).map_err(io(d))?;
        }
        Ok(())
    }

    /// Picks the segments of a partition to merge, if any: all of them when they overlap in
    /// time or the day is over, else the longest run (by order) of small segments. Merging a
    /// run that is contiguous in order keeps last-write-wins intact.
    fn compaction_pick(&self, segs: &[Arc<SegmentMeta>], day: i64, now: i64) -> Vec<Arc<SegmentMeta>> {
        if segs.len() < 2 {
            return Vec::new();
        }
        let mut by_order = segs.to_vec();
        by_order.sort_by_key(|s| s.order);
        let day_over = day + MS_PER_DAY + 3_600_000 <= now;
        if day_over || !non_overlapping(segs) {
            return by_order;
        }
        let mut best: &[Arc<SegmentMeta>] = &[];
        let mut start = 0;
        for i in 0..=by_order.len() {
            if i == by_order.len() || by_order[i].rows >= SMALL_SEGMENT_ROWS {
                if i - start > best.len() {
                    best = &by_order[start..i];
                }
                start = i + 1;
            }
        }
        if best.len() >= self.config.compact_min_segments.max(2) { best.to_vec() } else { Vec::new() }
    }

    fn compact(&self, max_partitions: usize) -> Result<usize, StoreError> {
        let _m = self.maintenance.lock();
        let now = self.clock.now_ms();
        let jobs: Vec<CompactionJob> = {
            let g = self.read.read();
            let mut jobs = Vec::new();
            'outer: for (key, days) in &g.index.series {
                for (day, segs) in days {
                    let pick = self.compaction_pick(segs, *day, now);
                    if !pick.is_empty() {
                        jobs.push((key.clone(), *day, pick));
                        if jobs.len() >= max_partitions {
                            break 'outer;
                        }
                    }
                }
            }
            jobs
        };
        let count = jobs.len();
        for ((patient, metric), day, inputs) in jobs {
            let mut merged: MergedRows = BTreeMap::new();
            for s in &inputs {
                for rows in segment::read(&self.segment_path(s), None, i64::MIN, i64::MAX, None, true)? {
                    // Sample ids ride along by index into a side table while points are merged.
                    let e = merged.entry(rows.device.clone()).or_default();
                    let base = e.1.len() as u32;
                    let pts: Vec<Point> = rows
                        .times
                        .iter()
                        .zip(&rows.values)
                        .enumerate()
                        .map(|(i, (&t, &v))| Point { time_ms: t, value: v, id: base + i as u32 })
                        .collect();
                    e.1.extend(rows.ids.iter().cloned());
                    e.0 = if e.0.is_empty() { pts } else { merge_dedup(&e.0, &pts) };
                }
            }
            let series: Vec<SeriesRows> = merged
                .into_iter()
                .map(|(device, (pts, ids))| SeriesRows {
                    device,
                    times: pts.iter().map(|p| p.time_ms).collect(),
                    values: pts.iter().map(|p| p.value).collect(),
                    ids: pts.iter().map(|p| ids.get(p.id as usize).cloned().flatten()).collect(),
                })
                .collect();
            let order = inputs.iter().map(|s| s.order).max().unwrap_or(0);
            let mut manifest = self.manifest.lock();
            let id = manifest.allocate_ids(1);
            let mut dirs = BTreeSet::new();
            let (meta, rollup) = self.write_segment(id, metric, &patient, day, order, &series, &mut dirs)?;
            self.sync_dirs(&dirs)?;
            manifest.commit(Edit {
                add: vec![meta.clone()],
                remove: inputs.iter().map(|s| s.id).collect(),
                ..Edit::default()
            })?;
            drop(manifest);
            self.cache_rollup(id, Arc::new(rollup));
            {
                let mut g = self.read.write();
                let key = (patient.clone(), metric);
                for s in &inputs {
                    g.index.remove(&key, day, s.id);
                }
                g.index.add(key, Arc::new(meta));
            }
            for s in &inputs {
                let p = self.segment_path(s);
                fs::remove_file(&p).map_err(io(&p))?;
                self.forget(s.id);
            }
            self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(count)
    }

    fn erase_patient(&self, patient: &PatientId, tx: &SyncSender<WriterMsg>) -> Result<Erased, StoreError> {
        let mut erased = Erased::default();
        // A few rounds in case the patient's samples keep arriving while we flush.
        for _ in 0..3 {
            // Flush: the buffer's samples go to segments and the WAL files holding them
            // (closed at the freeze) are deleted.
            self.flush(tx)?;
            let (reply, rx) = mpsc::sync_channel(1);
            tx.send(WriterMsg::Barrier { reply }).map_err(|_| StoreError::Closed)?;
            rx.recv().map_err(|_| StoreError::Closed)?;
            let _m = self.maintenance.lock();
            let doomed: Vec<Arc<SegmentMeta>> = {
                let g = self.read.read();
                g.index
                    .series
                    .iter()
                    .filter(|(k, _)| &k.0 == patient)
                    .flat_map(|(_, days)| days.values().flatten().cloned())
                    .collect()
            };
            let mut manifest = self.manifest.lock();
            if !doomed.is_empty() {
                manifest.commit(Edit { remove: doomed.iter().map(|d| d.id).collect(), ..Edit::default() })?;
            }
            manifest.snapshot()?;
            drop(manifest);
            {
                let mut g = self.read.write();
                for s in &doomed {
                    if let Some(metric) = self.catalog.id(&s.metric) {
                        g.index.remove(&(patient.clone(), metric), s.day_ms, s.id);
                    }
                }
            }
            for s in &doomed {
                self.forget(s.id);
                let p = self.segment_path(s);
                fs::remove_file(&p).map_err(io(&p))?;
                erased.segments += 1;
                erased.rows += s.rows;
            }
            self.remove_patient_dirs(patient)?;
            let mut g = self.read.write();
            let still = g.active.series_keys().any(|(p, _)| p == patient) || !g.frozen.is_empty();
            if !still {
                g.patients.remove(patient);
                return Ok(erased);
            }
        }
        Err(StoreError::Failed(format!("samples of {patient} kept arriving during its erasure; stop its senders")))
    }

    /// Removes the now-empty directories above `path`, up to the lake (`remove_dir` fails on
    /// a directory that is not empty, which ends the walk).
    fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.lake || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// Removes `patient=<id>` partition directories (empty after an erasure) and the empty
    /// directories above them.
    fn remove_patient_dirs(&self, patient: &PatientId) -> Result<(), StoreError> {
        let wanted = format!("patient={patient}");
        let mut stack = vec![self.lake.clone()];
        let mut found = Vec::new();
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                if !path.is_dir() {
                    continue;
                }
                if e.file_name().to_string_lossy() == wanted {
                    found.push(path);
                } else {
                    stack.push(path);
                }
            }
        }
        for dir in found {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            self.remove_empty_parents(&dir);
        }
        sync_dir(&self.lake).map_err(io(&self.lake))?;
        Ok(())
    }

    fn apply_retention(&self) -> Result<usize, StoreError> {
        if self.config.retention.is_empty() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        let now = self.clock.now_ms();
        let doomed: Vec<((PatientId, MetricId), Arc<SegmentMeta>)> = {
            let g = self.read.read();
            let mut v = Vec::new();
            for (key, days) in &g.index.series {
                let Some(keep) = self.config.retention.get(&key.1) else { continue };
                let cutoff = now - keep.as_millis() as i64;
                for (_, segs) in days.range(..day_start(cutoff)) {
                    for s in segs {
                        if s.day_ms + MS_PER_DAY <= cutoff {
                            v.push((key.clone(), Arc::clone(s)));
                        }
                    }
                }
            }
            v
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        self.manifest.lock().commit(Edit { remove: doomed.iter().map(|d| d.1.id).collect(), ..Edit::default() })?;
        {
            let mut g = self.read.write();
            for (key, s) in &doomed {
                g.index.remove(key, s.day_ms, s.id);
            }
        }
        for (_, s) in &doomed {
            self.forget(s.id);
            let p = self.segment_path(s);
            fs::remove_file(&p).map_err(io(&p))?;
            self.remove_empty_parents(&p);
        }
        self.stats.segments_deleted_by_retention.fetch_add(doomed.len() as u64, Ordering::Relaxed);
        tracing::info!(segments = doomed.len(), "retention deleted old partitions");
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests;
