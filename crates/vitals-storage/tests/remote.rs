//! The remote tier of the lake, through the `Remote` trait with a directory as the bucket
//! (the object-store implementations are tested against real S3 and Azure servers in the
//! `vitals` crate's tests): uploads of settled days, the hot tier, fetches through the
//! cache, deletion by compaction, retention and erasure, a failing bucket, the sweep.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vitals_core::time::MS_PER_DAY;
use vitals_core::{Catalog, ManualClock, PatientId};
use vitals_storage::remote::Remote;
use vitals_storage::remote::conformance::{DirBucket, a_day_of, hr, points};
use vitals_storage::{Store, StoreConfig, StoreError};

const DAY: i64 = 1_763_683_200_000; // 2025-11-21T00:00:00Z

struct Fixture {
    dir: tempfile::TempDir,
    bucket: Arc<DirBucket>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let bucket = DirBucket::new(&dir.path().join("bucket"));
        std::fs::create_dir_all(&bucket.root).expect("bucket");
        // Two days after DAY: uploaded (1 h after the day ended), still in the hot tier.
        let clock = Arc::new(ManualClock::new(DAY + 2 * MS_PER_DAY));
        Fixture { dir, bucket, clock }
    }

    fn config(&self) -> StoreConfig {
        StoreConfig {
            background: false,
            remote: Some(Arc::clone(&self.bucket) as Arc<dyn Remote>),
            hot_for: Duration::from_secs(3 * 86_400),
            orphan_grace: Duration::ZERO,
            ..StoreConfig::default()
        }
    }

    fn open(&self) -> Store {
        self.open_with(self.config())
    }

    fn open_with(&self, cfg: StoreConfig) -> Store {
        Store::open(&self.dir.path().join("data"), cfg, Arc::clone(&self.clock) as _).expect("open")
    }
}

#[test]
fn settled_days_are_uploaded_leave_the_disk_past_the_hot_tier_and_are_read_back() {
    let f = Fixture::new();
    let store = f.open();
    store.write(a_day_of("p", DAY, 50.0)).expect("write");
    // Today's data is not settled: it stays local only.
    store.write(vec![hr("p", DAY + 2 * MS_PER_DAY, 1.0)]).expect("today");
    store.flush().expect("flush");
    let want = points(&store, "p").expect("read");
    assert_eq!(want.len(), 101);

    let r = store.tier().expect("tier");
    assert_eq!((r.uploaded, r.made_cold), (1, 0), "{r:?}");
    let segs = store.segments();
    let old = segs.iter().find(|s| s.day_ms == DAY).expect("old day");
    assert!(old.remote && !old.cold, "uploaded, still hot: {old:?}");
    assert!(!segs.iter().find(|s| s.day_ms != DAY).expect("today").remote, "today is not uploaded");
    assert_eq!(f.bucket.keys(), vec![old.path.clone()]);
    let local = store.lake_dir().join(&old.path);
    assert!(local.exists());
    assert_eq!(std::fs::read(&local).expect("local"), std::fs::read(f.bucket.root.join(&old.path)).expect("object"));

    // Past the hot tier: the local copy goes, reads fetch the object.
    f.clock.advance(2 * MS_PER_DAY);
    let r = store.tier().expect("tier");
    assert_eq!(r.made_cold, 1, "{r:?}");
    assert!(!local.exists(), "the local copy is deleted");
    assert!(store.segments().iter().any(|s| s.day_ms == DAY && s.cold));
    assert_eq!(points(&store, "p").expect("read cold"), want);
    assert_eq!(store.stats().fetches.load(Ordering::Relaxed), 1);
    assert_eq!(points(&store, "p").expect("again"), want);
    assert_eq!(store.stats().fetches.load(Ordering::Relaxed), 1, "the second read uses the cache");

    // After a restart the manifest still knows where the segment lives.
    drop(store);
    let store = f.open();
    assert_eq!(points(&store, "p").expect("read after restart"), want);
    drop(store);
    // Without the remote lake, a store whose data is partly remote refuses to open.
    let cfg = StoreConfig { remote: None, ..f.config() };
    let err = Store::open(&f.dir.path().join("data"), cfg, Arc::clone(&f.clock) as _).expect_err("refused");
    assert!(err.to_string().contains("lake.url"), "{err}");
}

#[test]
fn late_samples_for_a_cold_day_are_merged_and_the_old_object_is_deleted() {
    let f = Fixture::new();
    let store = f.open();
    store.write(a_day_of("p", DAY, 50.0)).expect("write");
    store.flush().expect("flush");
    store.tier().expect("upload");
    f.clock.advance(2 * MS_PER_DAY);
    store.tier().expect("cold");
    let first = f.bucket.keys();
    assert_eq!(first.len(), 1);

    // A late sample overwrites one time and adds another.
    store.write(vec![hr("p", DAY, 999.0), hr("p", DAY + 30, 7.0)]).expect("late");
    store.flush().expect("flush");
    assert_eq!(store.compact().expect("compact"), 1, "the cold segment and the late one merge");
    let got = points(&store, "p").expect("read");
    assert_eq!(got.len(), 101);
    assert_eq!(got[0], (DAY, 999.0), "last write wins over the cold segment");
    let r = store.tier().expect("tier");
    assert_eq!((r.deleted, r.uploaded), (1, 1), "{r:?}");
    let now = f.bucket.keys();
    assert_eq!(now.len(), 1);
    assert_ne!(now, first, "the merged segment replaced the old object");
    assert_eq!(points(&store, "p").expect("read"), got);
}

#[test]
fn retention_and_erasure_delete_objects_in_the_bucket() {
    let f = Fixture::new();
    let mut cfg = f.config();
    cfg.retention.insert(Catalog::standard().id("heart_rate").expect("m"), Duration::from_secs(30 * 86_400));
    let store = f.open_with(cfg);
    for p in ["keep", "erase"] {
        store.write(a_day_of(p, DAY, 60.0)).expect("write");
        store.write(a_day_of(p, DAY - 40 * MS_PER_DAY, 60.0)).expect("old");
    }
    store.flush().expect("flush");
    assert_eq!(store.tier().expect("tier").uploaded, 4);
    assert_eq!(f.bucket.keys().len(), 4);

    let erased = store.erase_patient(&PatientId::new("erase").expect("id")).expect("erase");
    assert_eq!(erased.segments, 2);
    let keys = f.bucket.keys();
    assert_eq!(keys.len(), 2, "erasure deletes the objects at once: {keys:?}");
    assert!(keys.iter().all(|k| k.contains("patient=keep/")), "{keys:?}");

    assert_eq!(store.apply_retention().expect("retention"), 1);
    store.tier().expect("tier");
    let keys = f.bucket.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].contains("day=21"), "{keys:?}");
}

#[test]
fn a_failing_bucket_holds_up_nothing_but_the_upload_and_recovers() {
    let f = Fixture::new();
    let store = f.open();
    store.write(a_day_of("p", DAY, 50.0)).expect("write");
    store.flush().expect("flush");
    f.bucket.failing.store(true, Ordering::SeqCst);
    let err = store.tier().expect_err("the bucket fails");
    assert!(matches!(err, StoreError::Remote(_)), "{err}");
    assert!(store.segments().iter().all(|s| !s.remote), "nothing is marked uploaded");
    // Writes, flushes and reads go on.
    store.write(vec![hr("p", DAY + 3 * MS_PER_DAY, 1.0)]).expect("write while the bucket fails");
    store.flush().expect("flush");
    assert_eq!(points(&store, "p").expect("read").len(), 101);
    f.bucket.failing.store(false, Ordering::SeqCst);
    assert_eq!(store.tier().expect("recovered").uploaded, 1);

    // A cold segment cannot be read while the bucket fails: a clear error, then a read.
    f.clock.advance(2 * MS_PER_DAY);
    assert_eq!(store.tier().expect("cold").made_cold, 1);
    f.bucket.failing.store(true, Ordering::SeqCst);
    let err = points(&store, "p").expect_err("cold and unreachable");
    assert!(err.to_string().contains("connection refused"), "{err}");
    f.bucket.failing.store(false, Ordering::SeqCst);
    assert_eq!(points(&store, "p").expect("read").len(), 101);
}

#[test]
fn the_sweep_deletes_orphaned_segment_objects_only() {
    let f = Fixture::new();
    let store = f.open();
    store.write(a_day_of("p", DAY, 50.0)).expect("write");
    store.flush().expect("flush");
    store.tier().expect("upload");
    let orphan = "metric=heart_rate/year=2025/month=11/day=20/patient=p/part-00000000000000000999.parquet";
    let other = "exports/readme.txt";
    for k in [orphan, other] {
        let p = f.bucket.root.join(k);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }
    assert_eq!(store.sweep_remote(Duration::ZERO).expect("sweep"), 1);
    let keys = f.bucket.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&other.to_owned()) && !keys.contains(&orphan.to_owned()));
}

#[test]
fn the_cache_stays_within_its_bound_and_a_crash_mid_tiering_leaves_no_stray_file() {
    let f = Fixture::new();
    let cfg = StoreConfig { cache_bytes: 1, ..f.config() };
    let store = f.open_with(cfg.clone());
    for p in ["a", "b", "c"] {
        store.write(a_day_of(p, DAY, 50.0)).expect("write");
    }
    store.flush().expect("flush");
    store.tier().expect("upload");
    f.clock.advance(2 * MS_PER_DAY);
    assert_eq!(store.tier().expect("cold").made_cold, 3);
    for p in ["a", "b", "c", "a"] {
        assert_eq!(points(&store, p).expect("read").len(), 100);
        let cached = std::fs::read_dir(f.dir.path().join("data/lake-cache")).expect("cache").count();
        assert_eq!(cached, 1, "a cache of 1 byte keeps only the segment just read");
    }
    // A crash after the edit that made a segment cold, before its local copy was deleted:
    // the next start deletes the file no entry claims.
    let seg = store.segments().into_iter().find(|s| s.patient == "a").expect("a");
    drop(store);
    let stray = f.dir.path().join("data/lake").join(&seg.path);
    std::fs::create_dir_all(stray.parent().expect("parent")).expect("mkdir");
    std::fs::copy(f.bucket.root.join(&seg.path), &stray).expect("stray copy");
    let store = f.open_with(cfg);
    assert!(!stray.exists(), "the stray local copy is removed at start");
    assert_eq!(points(&store, "a").expect("read").len(), 100);
}

/// Compaction across days on the bucket: the cold day objects of a month that ended are
/// merged (fetched through the cache) into one archive object under `archive/`, the day
/// objects are deleted, and the archive is read back cold after the hot tier.
#[test]
fn an_archived_month_replaces_its_day_objects_in_the_bucket() {
    let f = Fixture::new();
    let store = f.open();
    // The last three days of October (DAY is 2025-11-21).
    let oct_29 = DAY - 23 * MS_PER_DAY;
    for d in 0..3 {
        store.write(a_day_of("p", oct_29 + d * MS_PER_DAY, 50.0 + d as f64)).expect("write");
    }
    store.flush().expect("flush");
    let want = points(&store, "p").expect("read");
    assert_eq!(want.len(), 300);
    store.tier().expect("upload");
    store.tier().expect("cold");
    assert_eq!(f.bucket.keys().len(), 3);
    assert!(store.segments().iter().all(|s| s.cold), "past the hot tier");
    assert_eq!(store.compact_all().expect("archive"), 1);
    assert_eq!(points(&store, "p").expect("read"), want);
    // The archive goes up; the day objects are deleted.
    store.tier().expect("tier");
    let keys = f.bucket.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("archive/metric=heart_rate/year=2025/month=10/patient=p/part-"), "{keys:?}");
    store.tier().expect("cold");
    let seg = store.segments();
    assert!(seg.len() == 1 && seg[0].cold && seg[0].is_archive(), "{seg:?}");
    assert_eq!(points(&store, "p").expect("read cold"), want);
    // The sweep keeps it: the manifest names it.
    assert_eq!(store.sweep_remote(Duration::ZERO).expect("sweep"), 0);
    assert_eq!(f.bucket.keys(), keys);
}

/// The lake's shared checks (`remote::conformance`) on one node: the same ones cluster
/// mode's shared lake passes in `vitals-postgres`.
#[test]
fn one_node_keeps_the_lake_contract() {
    struct OneNode;
    impl vitals_storage::remote::conformance::Fixture for OneNode {
        fn nodes(&self) -> usize {
            1
        }
        fn shared(
            &self,
            _: usize,
            _: Arc<vitals_storage::remote::conformance::Writer>,
        ) -> Option<Arc<dyn vitals_storage::remote::SharedLake>> {
            None
        }
    }
    vitals_storage::remote::conformance::run_all(&|| Box::new(OneNode));
}
