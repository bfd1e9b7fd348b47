//! A full disk for real: a small tmpfs (mounted here; the test suite runs as root, as
//! `.ci/run` does) filled until writes fail with ENOSPC. The logs refuse the record that did
//! not fit, stay readable, and take records again once space returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use vitals_storage::json_log::JsonLog;

/// A tmpfs of `kib` KiB mounted on a temporary directory, unmounted when dropped. The
/// tests of this file run one at a time (the mount is held for the test's life): a `mount`
/// forked by one test holds a copy of every open file until it execs, the store's lock file
/// of another test included, and a store reopened in that moment was refused as locked.
struct Tmpfs {
    dir: tempfile::TempDir,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Tmpfs {
    fn mount(kib: usize) -> Tmpfs {
        let one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tmp");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root (scripts/test runs as root, as .ci/run does)");
        Tmpfs { dir, _one_at_a_time: one_at_a_time }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file, returning its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

#[test]
fn a_json_log_on_a_full_disk_refuses_the_record_and_stays_readable() {
    let fs = Tmpfs::mount(256);
    let dir = fs.path().join("log");
    let (mut log, _) = JsonLog::open::<String>(&dir, "x.log", *b"VTST", 1).expect("open");
    log.append(&"before".to_owned()).expect("room for this");
    let filler = fs.fill();
    // A record larger than what is left: the write fails part-way.
    let big = "x".repeat(16 * 1024);
    assert!(log.append(&big).is_err(), "no space");
    assert!(log.append(&big).is_err(), "still no space");
    std::fs::remove_file(filler).expect("space returns");
    log.append(&"after".to_owned()).expect("appends again");
    drop(log);
    let (_, records) = JsonLog::open::<String>(&dir, "x.log", *b"VTST", 1).expect("reopens: no partial record");
    assert_eq!(records, ["before", "after"]);
}

#[test]
fn the_store_on_a_full_disk_refuses_writes_with_no_space_then_recovers_by_itself() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use vitals_core::{Catalog, ManualClock, PatientId, Sample};
    use vitals_storage::{Store, StoreConfig, StoreError};

    const NOW: i64 = 1_763_780_400_000;
    let fs = Tmpfs::mount(2048);
    let data = fs.path().join("data");
    // In the background: the maintenance thread's probe must bring the store back.
    let config = StoreConfig { flush_interval: Duration::from_secs(3600), ..StoreConfig::default() };
    let hr = Catalog::standard().id("heart_rate").expect("metric");
    let sample = |t: i64| Sample {
        patient: PatientId::new("p").expect("id"),
        metric: hr,
        time_ms: t,
        value: 60.0,
        device: None,
        id: None,
        source: vitals_core::Source::Native,
    };
    let read_all = |store: &Store| -> usize {
        let read = store
            .read(&vitals_storage::ReadRequest {
                patient: PatientId::new("p").expect("id"),
                metric: hr,
                device: None,
                from: 0,
                to: NOW + 1,
                rollups: false,
                max_points: usize::MAX,
                sources: false,
            })
            .expect("read");
        read.raw.iter().map(|s| s.times.len()).sum()
    };
    let mut acknowledged = 0usize;
    {
        let store = Store::open(&data, config.clone(), Arc::new(ManualClock::new(NOW))).expect("open");
        store.write((0..100).map(|i| sample(NOW - 100_000 + i)).collect()).expect("room for this");
        acknowledged += 100;
        store.flush().expect("flush");
        let filler = fs.fill();
        for round in 0..3 {
            let refused = store.write((0..5000).map(|i| sample(NOW - 50_000 + i)).collect());
            assert!(matches!(refused, Err(StoreError::NoSpace(_))), "round {round}: {refused:?}");
        }
        assert!(store.failure().is_some());
        assert_eq!(read_all(&store), acknowledged, "a refused write is not visible");
        std::fs::remove_file(filler).expect("space returns");
        // No write comes: the store finds out by itself that it can write again.
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.failure().is_some() {
            assert!(Instant::now() < deadline, "the store did not recover: {:?}", store.failure());
            #[allow(clippy::disallowed_methods)] // reason: the pause between polls of a condition with a deadline
            std::thread::sleep(Duration::from_millis(50));
        }
        store.write((0..5000).map(|i| sample(NOW - 50_000 + i)).collect()).expect("writes again, no restart");
        acknowledged += 5000;
        assert_eq!(read_all(&store), acknowledged);
        store.close().expect("close");
    }
    let store = Store::open(&data, config, Arc::new(ManualClock::new(NOW))).expect("reopens after the full disk");
    assert_eq!(read_all(&store), acknowledged, "every acknowledged sample, and none of the refused writes");
}

#[test]
fn a_store_closed_and_reopened_on_a_full_disk_keeps_what_it_acknowledged() {
    use std::sync::Arc;

    use vitals_core::{Catalog, ManualClock, PatientId, Sample};
    use vitals_storage::{Store, StoreConfig};

    const NOW: i64 = 1_763_780_400_000;
    let fs = Tmpfs::mount(1024);
    let data = fs.path().join("data");
    let config = StoreConfig { background: false, ..StoreConfig::default() };
    let hr = Catalog::standard().id("heart_rate").expect("metric");
    let sample = |t: i64| Sample {
        patient: PatientId::new("p").expect("id"),
        metric: hr,
        time_ms: t,
        value: 60.0,
        device: None,
        id: None,
        source: vitals_core::Source::Native,
    };
    {
        let store = Store::open(&data, config.clone(), Arc::new(ManualClock::new(NOW))).expect("open");
        store.write(vec![sample(NOW - 1)]).expect("room for this");
        let filler = fs.fill();
        // Frees a little room, less than the next record: it is written in part.
        let mut f = std::fs::OpenOptions::new().write(true).open(&filler).expect("filler");
        let len = f.metadata().expect("len").len();
        f.set_len(len - 8192).expect("shrink");
        std::io::Write::flush(&mut f).expect("flush");
        assert!(store.write((0..20_000).map(|i| sample(NOW - 50_000 + i)).collect()).is_err());
        // Closing rotates the WAL (flushing if there is room): the file it closes must not
        // end in the torn record, or the next start reads it as corruption.
        let _ = store.close();
    }
    // Still full: the store opens (replaying the WAL) without needing room.
    let store = Store::open(&data, config, Arc::new(ManualClock::new(NOW))).expect("reopens on the full disk");
    let read = store
        .read(&vitals_storage::ReadRequest {
            patient: PatientId::new("p").expect("id"),
            metric: hr,
            device: None,
            from: 0,
            to: NOW + 1,
            rollups: false,
            max_points: usize::MAX,
            sources: false,
        })
        .expect("read");
    assert_eq!(read.raw.iter().map(|s| s.times.len()).sum::<usize>(), 1);
}

#[test]
fn a_manifest_edit_that_does_not_fit_is_cut_off_and_the_manifest_reopens() {
    use vitals_storage::manifest::{Edit, Manifest, SegmentMeta};
    let fs = Tmpfs::mount(256);
    let dir = fs.path().join("manifest");
    let seg = |id: u64| SegmentMeta {
        id,
        metric: "heart_rate".into(),
        patient: "p".into(),
        day_ms: 0,
        until_day_ms: None,
        path: format!("metric=heart_rate/part-{id:020}.parquet"),
        rows: 1,
        bytes: 1,
        min_ms: 0,
        max_ms: 0,
        order: id,
        last: Vec::new(),
        remote: false,
        cold: false,
        foreign: false,
    };
    let mut m = Manifest::open(&vitals_storage::fs::real(), &dir).expect("open");
    m.commit(Edit { add: vec![seg(1)], ..Edit::default() }).expect("room for this");
    let filler = fs.fill();
    let big = Edit { add: (2..400).map(seg).collect(), ..Edit::default() };
    assert!(m.commit(big.clone()).is_err(), "no space");
    assert!(m.commit(big).is_err(), "still no space");
    std::fs::remove_file(filler).expect("space returns");
    m.commit(Edit { add: vec![seg(500)], ..Edit::default() }).expect("commits again");
    drop(m);
    let m = Manifest::open(&vitals_storage::fs::real(), &dir).expect("reopens: no partial edit");
    assert_eq!(m.state.segments.keys().copied().collect::<Vec<_>>(), vec![1, 500]);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

#[test]
fn flushes_that_fail_on_a_full_disk_leave_no_files_behind_and_succeed_once_space_returns() {
    use std::sync::Arc;

    use vitals_core::{Catalog, ManualClock, PatientId, Sample};
    use vitals_storage::{Store, StoreConfig};

    const NOW: i64 = 1_763_780_400_000;
    let fs = Tmpfs::mount(4096);
    let data = fs.path().join("data");
    let config = StoreConfig { background: false, ..StoreConfig::default() };
    let hr = Catalog::standard().id("heart_rate").expect("metric");
    let store = Store::open(&data, config, Arc::new(ManualClock::new(NOW))).expect("open");
    // Many patients: one flush writes many segments, and runs out of room part-way.
    let samples: Vec<Sample> = (0..400)
        .flat_map(|p| {
            (0..200).map(move |i| Sample {
                patient: PatientId::new(&format!("p-{p}")).expect("id"),
                metric: hr,
                time_ms: NOW - 200_000 + i * 1000,
                value: 50.0 + (i * 7 % 90) as f64,
                device: None,
                id: None,
                source: vitals_core::Source::Native,
            })
        })
        .collect();
    store.write(samples).expect("room for the WAL");
    let lake = data.join("lake");
    let before = files_under(&lake).len();
    let filler = fs.fill();
    // Room for a few segments, not for all of them.
    let f = std::fs::OpenOptions::new().write(true).open(&filler).expect("filler");
    f.set_len(f.metadata().expect("len").len() - (64 << 10)).expect("shrink");
    drop(f);
    for round in 0..5 {
        assert!(store.flush().is_err(), "round {round}: no room for the segments");
        assert_eq!(
            files_under(&lake).len(),
            before,
            "round {round}: a failed flush left files: {:?}",
            files_under(&lake)
        );
    }
    std::fs::remove_file(filler).expect("space returns");
    store.flush().expect("flushes once there is room");
    assert_eq!(store.segments().len(), 400);
}
