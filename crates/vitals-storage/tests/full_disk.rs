//! A full disk for real: a small tmpfs (mounted here; the test suite runs as root, as
//! `.ci/run` does) filled until writes fail with ENOSPC. The logs refuse the record that did
//! not fit, stay readable, and take records again once space returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use vitals_storage::json_log::JsonLog;

/// A tmpfs of `kib` KiB mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: usize) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmp");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root (scripts/test runs as root, as .ci/run does)");
        Tmpfs { dir }
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
fn the_store_on_a_full_disk_refuses_writes_and_reopens_with_everything_acknowledged() {
    use std::sync::Arc;

    use vitals_core::{Catalog, ManualClock, PatientId, Sample};
    use vitals_storage::{Store, StoreConfig};

    const NOW: i64 = 1_763_780_400_000;
    let fs = Tmpfs::mount(2048);
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
    };
    let mut acknowledged = 0usize;
    {
        let store = Store::open(&data, config.clone(), Arc::new(ManualClock::new(NOW))).expect("open");
        store.write((0..100).map(|i| sample(NOW - 100_000 + i)).collect()).expect("room for this");
        acknowledged += 100;
        store.flush().expect("flush");
        let filler = fs.fill();
        let refused = store.write((0..5000).map(|i| sample(NOW - 50_000 + i)).collect());
        assert!(refused.is_err(), "no space for the WAL record");
        assert!(store.failure().is_some(), "a failed fsync stops writes until a restart");
        std::fs::remove_file(filler).expect("space returns");
        let _ = store.close();
    }
    let store = Store::open(&data, config, Arc::new(ManualClock::new(NOW))).expect("reopens after the full disk");
    let read = store
        .read(&vitals_storage::ReadRequest {
            patient: PatientId::new("p").expect("id"),
            metric: hr,
            device: None,
            from: 0,
            to: NOW + 1,
            rollups: false,
            max_points: usize::MAX,
        })
        .expect("read");
    let n: usize = read.raw.iter().map(|s| s.times.len()).sum();
    assert_eq!(n, acknowledged, "every acknowledged sample, and none of the refused write");
    store.write(vec![sample(NOW)]).expect("writes again after the restart");
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
        path: format!("metric=heart_rate/part-{id:020}.parquet"),
        rows: 1,
        bytes: 1,
        min_ms: 0,
        max_ms: 0,
        order: id,
        last: Vec::new(),
    };
    let mut m = Manifest::open(&dir).expect("open");
    m.commit(Edit { add: vec![seg(1)], ..Edit::default() }).expect("room for this");
    let filler = fs.fill();
    let big = Edit { add: (2..400).map(seg).collect(), ..Edit::default() };
    assert!(m.commit(big.clone()).is_err(), "no space");
    assert!(m.commit(big).is_err(), "still no space");
    std::fs::remove_file(filler).expect("space returns");
    m.commit(Edit { add: vec![seg(500)], ..Edit::default() }).expect("commits again");
    drop(m);
    let m = Manifest::open(&dir).expect("reopens: no partial edit");
    assert_eq!(m.state.segments.keys().copied().collect::<Vec<_>>(), vec![1, 500]);
}
