//! The lake's checks on object storage (feature `conformance`), run on one node (the
//! store with its bucket, in this crate's tests) and on a cluster (two nodes' stores
//! sharing one bucket through a [`SharedLake`], in `vitals-postgres`' tests): every node
//! reads every settled day back from the bucket, which holds one copy of it; late samples
//! are seen at once and replace the object; an erasure leaves nothing in the bucket.
//!
//! Each node's store gets the same samples, as cluster mode's tail gives every node the
//! whole log. Node 0 writes every patient's part of the lake until a check moves it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vitals_core::time::MS_PER_DAY;
use vitals_core::{Catalog, ManualClock, PatientId, Sample};

use super::{Remote, RemoteError, RemoteObject, SharedLake};
use crate::{ReadRequest, Store, StoreConfig, StoreError};

/// A bucket in a directory (a stand-in for object storage: same keys, whole-object puts),
/// which can be told to fail.
#[derive(Debug)]
pub struct DirBucket {
    pub root: PathBuf,
    pub failing: AtomicBool,
}

impl DirBucket {
    pub fn new(root: &Path) -> Arc<DirBucket> {
        std::fs::create_dir_all(root).expect("the bucket's directory");
        Arc::new(DirBucket { root: root.to_owned(), failing: AtomicBool::new(false) })
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), RemoteError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(self.error(op, key, "connection refused".into(), false));
        }
        Ok(())
    }

    fn error(&self, op: &'static str, key: &str, reason: String, not_found: bool) -> RemoteError {
        RemoteError { op, key: key.into(), location: self.location(), reason, not_found }
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.list().expect("list").into_iter().map(|o| o.key).collect();
        keys.sort();
        keys
    }
}

impl Remote for DirBucket {
    fn location(&self) -> String {
        format!("dir://{}", self.root.display())
    }

    fn put(&self, key: &str, file: &Path) -> Result<(), RemoteError> {
        self.check("put", key)?;
        let dest = self.root.join(key);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(file, &dest)
            .map(|_| ())
            .map_err(|e| self.error("put", key, e.to_string(), e.kind() == std::io::ErrorKind::NotFound))
    }

    fn get(&self, key: &str, dest: &Path) -> Result<(), RemoteError> {
        self.check("get", key)?;
        std::fs::copy(self.root.join(key), dest)
            .map(|_| ())
            .map_err(|e| self.error("get", key, e.to_string(), e.kind() == std::io::ErrorKind::NotFound))
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        self.check("delete", key)?;
        let _ = std::fs::remove_file(self.root.join(key));
        Ok(())
    }

    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError> {
        self.check("list", "")?;
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let key = p.strip_prefix(&self.root).expect("under").to_string_lossy().into_owned();
                    out.push(RemoteObject { key, bytes: e.metadata().expect("meta").len(), modified_ms: 0 });
                }
            }
        }
        Ok(out)
    }
}

/// Which node writes every patient's part of the lake (the cluster's owner of every
/// bucket), changed by the checks.
#[derive(Debug, Default)]
pub struct Writer(AtomicUsize);

impl Writer {
    pub fn is(&self, node: usize) -> bool {
        self.0.load(Ordering::SeqCst) == node
    }
}

/// One installation under test.
pub trait Fixture {
    /// How many nodes: 1 (one node, no shared lake) or more (a cluster).
    fn nodes(&self) -> usize;
    /// Node `node`'s shared lake (`None` on one node): it writes a patient's part while
    /// `writer.is(node)`, and node 0 deletes what the catalog gave up. Every node's lake
    /// of one fixture shares one catalog, with no grace before deletion.
    fn shared(&self, node: usize, writer: Arc<Writer>) -> Option<Arc<dyn SharedLake>>;
}

const DAY: i64 = 1_763_683_200_000; // 2025-11-21T00:00:00Z

/// A check of the lake's contract.
pub type Check = fn(&dyn Fixture);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("settled_days_are_in_the_bucket_once_and_every_node_reads_them_from_there", settled_days),
    ("late_samples_are_seen_at_once_and_replace_the_days_object", late_samples),
    ("an_erasure_leaves_nothing_of_the_patient_in_the_bucket", erasure),
    ("a_new_writer_takes_the_published_days_instead_of_uploading_them_again", new_writer),
];

/// Runs every check on a fixture of its own; panics naming the check that failed.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Fixture>) {
    crate::checks::run("lake", CHECKS, fresh);
}

/// The nodes of one check: their stores over one bucket and one clock.
struct Nodes {
    _dir: tempfile::TempDir,
    bucket: Arc<DirBucket>,
    clock: Arc<ManualClock>,
    writer: Arc<Writer>,
    stores: Vec<Store>,
}

impl Nodes {
    fn open(f: &dyn Fixture) -> Nodes {
        let dir = tempfile::tempdir().expect("tmp");
        let bucket = DirBucket::new(&dir.path().join("bucket"));
        // Two days after DAY: settled (an hour after the day ended), still hot.
        let clock = Arc::new(ManualClock::new(DAY + 2 * MS_PER_DAY));
        let writer = Arc::new(Writer::default());
        let stores = (0..f.nodes())
            .map(|i| {
                let config = StoreConfig {
                    background: false,
                    remote: Some(Arc::clone(&bucket) as Arc<dyn Remote>),
                    hot_for: Duration::from_secs(3 * 86_400),
                    orphan_grace: Duration::ZERO,
                    shared: f.shared(i, Arc::clone(&writer)),
                    segment_tag: (f.nodes() > 1).then(|| format!("n{i}")),
                    ..StoreConfig::default()
                };
                Store::open(&dir.path().join(format!("node-{i}")), config, Arc::clone(&clock) as _).expect("open")
            })
            .collect();
        Nodes { _dir: dir, bucket, clock, writer, stores }
    }

    /// What the log gives every node.
    fn write(&self, samples: Vec<Sample>) {
        for s in &self.stores {
            s.write(samples.clone()).expect("write");
            s.flush().expect("flush");
        }
    }

    /// Tiering rounds on every node until none has anything left to do.
    fn settle(&self) {
        for _ in 0..6 {
            let mut busy = false;
            for s in &self.stores {
                let r = s.tier().expect("tier");
                busy |= r.uploaded + r.made_cold + r.deleted + r.adopted + r.published > 0;
            }
            if !busy {
                return;
            }
        }
        panic!("tiering does not settle");
    }

    /// Parquet files on node `i`'s own disk (its lake, not the cache).
    fn local_files(&self, i: usize) -> usize {
        let lake = self.stores[i].lake_dir().to_owned();
        let mut n = 0;
        let mut stack = vec![lake];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else if e.path().extension().is_some_and(|x| x == "parquet") {
                    n += 1;
                }
            }
        }
        n
    }
}

/// A heart rate sample of `patient`.
pub fn hr(patient: &str, t: i64, v: f64) -> Sample {
    Sample {
        patient: PatientId::new(patient).expect("id"),
        metric: Catalog::standard().id("heart_rate").expect("metric"),
        time_ms: t,
        value: v,
        device: None,
        id: None,
        source: vitals_core::Source::Native,
    }
}

/// A hundred heart rate samples of `patient`, a minute apart from `day` on.
pub fn a_day_of(patient: &str, day: i64, base: f64) -> Vec<Sample> {
    (0..100).map(|i| hr(patient, day + i * 60_000, base + i as f64)).collect()
}

/// A patient's heart rate as a node reads it.
pub fn points(store: &Store, patient: &str) -> Result<Vec<(i64, f64)>, StoreError> {
    let r = store.read(&ReadRequest {
        patient: PatientId::new(patient).expect("id"),
        metric: Catalog::standard().id("heart_rate").expect("m"),
        device: None,
        from: 0,
        to: i64::MAX / 2,
        rollups: false,
        max_points: usize::MAX,
        sources: false,
    })?;
    Ok(r.raw.iter().flat_map(|s| s.times.iter().copied().zip(s.values.iter().copied())).collect())
}

fn every_node_reads(n: &Nodes, patient: &str, want: &[(i64, f64)]) {
    for (i, s) in n.stores.iter().enumerate() {
        assert_eq!(points(s, patient).expect("read"), want, "node {i} reads {patient}");
    }
}

fn settled_days(f: &dyn Fixture) {
    let n = Nodes::open(f);
    n.write(a_day_of("p", DAY, 50.0));
    n.settle();
    assert_eq!(n.bucket.keys().len(), 1, "one copy in the bucket: {:?}", n.bucket.keys());
    // Past the hot tier, every node reads the day from the bucket.
    n.clock.advance(2 * MS_PER_DAY);
    n.settle();
    assert_eq!(n.bucket.keys().len(), 1, "{:?}", n.bucket.keys());
    let want: Vec<(i64, f64)> = a_day_of("p", DAY, 50.0).iter().map(|s| (s.time_ms, s.value)).collect();
    every_node_reads(&n, "p", &want);
    for (i, s) in n.stores.iter().enumerate() {
        assert_eq!(n.local_files(i), 0, "node {i} keeps no copy of its own");
        assert!(s.stats().fetches.load(Ordering::Relaxed) >= 1, "node {i} fetched the object");
        assert!(s.segments().iter().all(|m| m.cold), "node {i}: {:?}", s.segments());
    }
    // What the nodes know survives a restart, and the sweep spares what they read.
    for s in &n.stores {
        assert_eq!(s.sweep_remote(Duration::ZERO).expect("sweep"), 0);
    }
    assert_eq!(n.bucket.keys().len(), 1);
}

fn late_samples(f: &dyn Fixture) {
    let n = Nodes::open(f);
    n.write(a_day_of("p", DAY, 50.0));
    n.settle();
    n.clock.advance(2 * MS_PER_DAY);
    n.settle();
    let first = n.bucket.keys();
    // A late sample overwrites one time and adds another: every node sees it at once.
    n.write(vec![hr("p", DAY, 999.0), hr("p", DAY + 30, 7.0)]);
    let mut want: Vec<(i64, f64)> = a_day_of("p", DAY, 50.0).iter().map(|s| (s.time_ms, s.value)).collect();
    want[0].1 = 999.0;
    want.insert(1, (DAY + 30, 7.0));
    every_node_reads(&n, "p", &want);
    for s in &n.stores {
        s.compact().expect("compact");
    }
    n.settle();
    let now = n.bucket.keys();
    assert_eq!(now.len(), 1, "the merged day replaced the old object: {now:?}");
    assert_ne!(now, first);
    every_node_reads(&n, "p", &want);
    for i in 0..n.stores.len() {
        assert_eq!(n.local_files(i), 0, "node {i}");
    }
}

fn erasure(f: &dyn Fixture) {
    let n = Nodes::open(f);
    n.write(a_day_of("p", DAY, 50.0));
    n.write(a_day_of("q", DAY, 60.0));
    n.settle();
    n.clock.advance(2 * MS_PER_DAY);
    n.settle();
    assert_eq!(n.bucket.keys().len(), 2);
    // The erasure reaches every node (in cluster mode, through the log).
    for s in &n.stores {
        s.erase_patient(&PatientId::new("p").expect("id")).expect("erase");
    }
    n.settle();
    let keys = n.bucket.keys();
    assert!(keys.iter().all(|k| !k.contains("patient=p/")), "{keys:?}");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let want: Vec<(i64, f64)> = a_day_of("q", DAY, 60.0).iter().map(|s| (s.time_ms, s.value)).collect();
    every_node_reads(&n, "q", &want);
    for s in &n.stores {
        assert!(points(s, "p").expect("read").is_empty());
    }
}

fn new_writer(f: &dyn Fixture) {
    let n = Nodes::open(f);
    n.write(a_day_of("p", DAY, 50.0));
    n.settle();
    let keys = n.bucket.keys();
    assert_eq!(keys.len(), 1);
    let Some(last) = n.stores.len().checked_sub(1).filter(|l| *l > 0) else { return };
    // The last node takes over the patient (node 0 died, say) while the day is still hot.
    n.writer.0.store(last, Ordering::SeqCst);
    n.settle();
    assert_eq!(n.stores[last].stats().uploads.load(Ordering::Relaxed), 0, "nothing uploaded twice");
    assert_eq!(n.bucket.keys(), keys);
    let want: Vec<(i64, f64)> = a_day_of("p", DAY, 50.0).iter().map(|s| (s.time_ms, s.value)).collect();
    every_node_reads(&n, "p", &want);
    // Its next days are its to upload.
    n.write(a_day_of("p", DAY + MS_PER_DAY, 70.0));
    n.clock.advance(MS_PER_DAY);
    n.settle();
    assert_eq!(n.stores[last].stats().uploads.load(Ordering::Relaxed), 1);
    assert_eq!(n.bucket.keys().len(), 2, "{:?}", n.bucket.keys());
}
