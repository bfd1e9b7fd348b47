//! Store behaviour that the model test does not reach: retention, orphans, the lock,
//! recovery from the WAL.

use std::sync::Arc;
use std::time::Duration;

use vitals_core::time::MS_PER_DAY;
use vitals_core::{Catalog, ManualClock, PatientId, Sample};

use super::*;

const NOW: i64 = 1_763_780_400_000; // 2025-11-22T03:00:00Z

fn hr(patient: &str, metric: &str, t: i64, v: f64) -> Sample {
    Sample {
        patient: PatientId::new(patient).expect("id"),
        metric: Catalog::standard().id(metric).expect("metric"),
        time_ms: t,
        value: v,
        device: None,
        id: None,
        source: vitals_core::Source::Native,
    }
}

fn open(dir: &Path, cfg: StoreConfig) -> Store {
    Store::open(dir, StoreConfig { background: false, ..cfg }, Arc::new(ManualClock::new(NOW))).expect("open")
}

fn count(store: &Store, metric: &str) -> usize {
    let r = store
        .read(&ReadRequest {
            patient: PatientId::new("p").expect("id"),
            metric: Catalog::standard().id(metric).expect("m"),
            device: None,
            from: 0,
            to: NOW + 1,
            rollups: false,
            max_points: usize::MAX,
            sources: false,
        })
        .expect("read");
    r.raw.iter().map(|s| s.times.len()).sum()
}

#[test]
fn retention_deletes_whole_partitions_older_than_the_metric_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let hr_id = Catalog::standard().id("heart_rate").expect("m");
    let cfg = StoreConfig {
        retention: HashMap::from([(hr_id, Duration::from_millis(2 * MS_PER_DAY as u64))]),
        ..StoreConfig::default()
    };
    let store = open(dir.path(), cfg);
    let samples: Vec<Sample> = (0..5)
        .flat_map(|d| [hr("p", "heart_rate", NOW - d * MS_PER_DAY, 60.0), hr("p", "eda", NOW - d * MS_PER_DAY, 1.0)])
        .collect();
    store.write(samples).expect("write");
    store.flush().expect("flush");
    assert_eq!(store.segments().len(), 10);
    let old_dir = store.lake_dir().join("metric=heart_rate/year=2025/month=11/day=18");
    assert!(old_dir.exists());
    // Cutoff is NOW - 2 days = 11-20 03:00: days 11-18 and 11-19 ended before it.
    assert_eq!(store.apply_retention().expect("retention"), 2);
    assert_eq!(count(&store, "heart_rate"), 3);
    assert_eq!(count(&store, "eda"), 5, "other metrics keep everything");
    assert!(!old_dir.exists(), "empty partition directories are removed");
    drop(store);
    let store = open(dir.path(), StoreConfig::default());
    assert_eq!(count(&store, "heart_rate"), 3, "the deletion is durable");
}

#[test]
fn orphan_segment_files_are_removed_and_a_second_process_is_locked_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    store.write(vec![hr("p", "heart_rate", NOW, 60.0)]).expect("write");
    store.flush().expect("flush");
    let orphan = store.lake_dir().join("metric=heart_rate/part-00000000000000000099.parquet.tmp");
    std::fs::write(&orphan, b"half a file").expect("write");
    match Store::open(dir.path(), StoreConfig::default(), Arc::new(ManualClock::new(NOW))) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    store.close().expect("close");
    drop(store);
    let store = open(dir.path(), StoreConfig::default());
    assert!(!orphan.exists());
    assert_eq!(count(&store, "heart_rate"), 1);
}

#[test]
fn unflushed_samples_come_back_from_the_wal_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = open(dir.path(), StoreConfig::default());
        store.write(vec![hr("p", "heart_rate", NOW - 1000, 60.0)]).expect("write");
        store.flush().expect("flush");
        store.write(vec![hr("p", "heart_rate", NOW, 61.0), hr("p", "heart_rate", NOW - 1000, 62.0)]).expect("write");
        // Simulate a crash: stop the threads without flushing by leaking the store's close.
        store.inner.shutdown.store(true, Ordering::SeqCst);
        let _ = store.tx.send(WriterMsg::Stop);
        if let Some(h) = store.writer.lock().take() {
            h.join().expect("writer");
        }
    }
    let store = open(dir.path(), StoreConfig::default());
    let r = store
        .read(&ReadRequest {
            patient: PatientId::new("p").expect("id"),
            metric: Catalog::standard().id("heart_rate").expect("m"),
            device: None,
            from: 0,
            to: NOW + 1,
            rollups: false,
            max_points: usize::MAX,
            sources: false,
        })
        .expect("read");
    assert_eq!(r.raw[0].times, vec![NOW - 1000, NOW]);
    assert_eq!(r.raw[0].values, vec![62.0, 61.0], "the replayed write beats the flushed one");
    assert_eq!(store.sizes().buffered_samples, 2);
}

#[test]
fn subscribers_hear_durable_samples_of_their_metrics_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    let c = Catalog::standard();
    let rx = store.subscribe_durable(&[c.id("heart_rate").expect("hr")], 4);
    store.write(vec![hr("p", "heart_rate", NOW - 3_000, 60.0), hr("p", "eda", NOW - 3_000, 0.5)]).expect("write");
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("a batch").samples;
    assert_eq!(got, vec![hr("p", "heart_rate", NOW - 3_000, 60.0)]);
    store.write(vec![hr("p", "eda", NOW - 2_000, 0.6)]).expect("write");
    store.set_durable_metrics(&[c.id("eda").expect("eda"), c.id("heart_rate").expect("hr")]);
    store.write(vec![hr("p", "heart_rate", NOW - 1_000, 61.0), hr("p", "eda", NOW - 1_000, 0.7)]).expect("write");
    // The eda-only write before the change sent nothing: the next batch is this one.
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("a batch").samples;
    assert_eq!(got, vec![hr("p", "heart_rate", NOW - 1_000, 61.0), hr("p", "eda", NOW - 1_000, 0.7)]);
    // Samples are readable by the time the subscriber hears of them.
    assert_eq!(count(&store, "eda"), 3);
}

#[test]
fn a_large_write_reaches_subscribers_in_bounded_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    let c = Catalog::standard();
    let rx = store.subscribe_durable(&[c.id("heart_rate").expect("hr")], 2);
    let n = 2 * FEED_BATCH_SAMPLES + 10;
    let samples: Vec<Sample> = (0..n).map(|i| hr("p", "heart_rate", NOW - 100_000 + i as i64, 60.0)).collect();
    // The channel holds two batches: the writer waits for the subscriber rather than
    // queueing the whole write at once.
    let writer = std::thread::spawn(move || store.write(samples).map(|_| ()));
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < n {
        sizes.push(rx.recv_timeout(Duration::from_secs(10)).expect("a batch").samples.len());
    }
    writer.join().expect("writer").expect("write");
    assert_eq!(sizes, vec![FEED_BATCH_SAMPLES, FEED_BATCH_SAMPLES, 10]);
}

/// Every file under `dir` (recursively), with its bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p).expect("read");
                out.push((p, bytes));
            }
        }
    }
    out
}

#[test]
fn erasing_a_patient_leaves_no_sample_segment_log_record_or_directory_of_theirs() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    let erased = "erase-me-7f3a";
    // Flushed data over several days, then more in the buffer and the WAL only.
    let mut old: Vec<Sample> = (0..3).map(|d| hr(erased, "heart_rate", NOW - d * MS_PER_DAY, 61.0)).collect();
    old.push(hr("p", "heart_rate", NOW - 1000, 70.0));
    store.write(old).expect("write");
    store.flush().expect("flush");
    store.write(vec![hr(erased, "eda", NOW - 500, 2.0), hr("p", "heart_rate", NOW - 400, 71.0)]).expect("write");
    assert!(all_files(dir.path()).iter().any(|(_, b)| b.windows(erased.len()).any(|w| w == erased.as_bytes())));

    let report = store.erase_patient(&PatientId::new(erased).expect("id")).expect("erase");
    assert_eq!(report.segments, 4, "3 days of heart rate + the buffered eda");
    for (path, bytes) in all_files(dir.path()) {
        let name = path.display().to_string();
        assert!(!name.contains(erased), "{name} is left");
        assert!(!bytes.windows(erased.len()).any(|w| w == erased.as_bytes()), "{name} still holds the patient");
    }
    assert!(!store.has_patient(&PatientId::new(erased).expect("id")));
    assert_eq!(count(&store, "heart_rate"), 2, "the other patient keeps everything");
    drop(store);
    let store = open(dir.path(), StoreConfig::default());
    assert!(!store.has_patient(&PatientId::new(erased).expect("id")), "not back after a restart");
    assert_eq!(count(&store, "heart_rate"), 2);
}

#[test]
fn a_lost_manifest_is_refused_instead_of_deleting_every_segment() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    store.write(vec![hr("p", "heart_rate", NOW - 1000, 60.0)]).expect("write");
    store.flush().expect("flush");
    let segments = store.segments().len();
    assert!(segments > 0);
    store.close().expect("close");
    drop(store);
    let manifest = dir.path().join("manifest");
    // (what is lost, what the refusal says)
    for (lose, want) in [("CURRENT", "segment file(s)"), ("the whole directory", "segment file(s)")] {
        if lose == "CURRENT" {
            std::fs::remove_file(manifest.join("CURRENT")).expect("remove CURRENT");
        } else {
            std::fs::remove_dir_all(&manifest).expect("remove the manifest");
        }
        let err = Store::open(
            dir.path(),
            StoreConfig { background: false, ..StoreConfig::default() },
            Arc::new(ManualClock::new(NOW)),
        )
        .expect_err("refused");
        assert!(err.to_string().contains(want), "{lose}: {err}");
        assert_eq!(flush::segment_files(&dir.path().join("lake")).expect("count"), segments, "{lose}: nothing deleted");
    }
}

#[test]
fn a_read_over_its_point_budget_stops_before_or_while_reading() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    let samples: Vec<Sample> = (0..3000).map(|i| hr("p", "heart_rate", NOW - 3_000_000 + i * 1000, 60.0)).collect();
    store.write(samples).expect("write");
    store.flush().expect("flush");
    store.write(vec![hr("p", "heart_rate", NOW - 500, 61.0)]).expect("buffered");
    let req = |from: i64, max_points: usize| ReadRequest {
        patient: PatientId::new("p").expect("id"),
        metric: Catalog::standard().id("heart_rate").expect("m"),
        device: None,
        from,
        to: NOW + 1,
        rollups: false,
        max_points,
        sources: false,
    };
    // (from, budget, points read or refused)
    let cases = [
        (0, 5000, Some(3001)),
        (0, 3000, None),                  // the segment wholly inside: refused before reading
        (NOW - 100_500, 1000, Some(101)), // the last 100 s of the segment and the buffer
        (NOW - 2_000_500, 1000, None),    // partly inside: refused while reading
    ];
    for (from, budget, want) in cases {
        let got = match store.read(&req(from, budget)) {
            Ok(r) => Some(r.raw.iter().map(|s| s.times.len()).sum::<usize>()),
            Err(StoreError::TooManyPoints { limit }) => {
                assert_eq!(limit, budget);
                None
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(got, want, "from {from}, budget {budget}");
    }
    // The estimate is an upper bound from the metadata, close for evenly spaced data.
    let e = store.estimate(&req(NOW - 100_500, 0));
    assert!((101..=110).contains(&e), "{e}");
    assert_eq!(store.estimate(&req(0, 0)), 3001);
}

fn store_segments(dir: &Path) -> usize {
    flush::segment_files(&dir.join("lake")).expect("count")
}

#[test]
fn a_large_request_goes_into_several_wal_records_that_all_replay() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = StoreConfig { max_samples_per_record: 1000, ..StoreConfig::default() };
    let store = open(dir.path(), cfg.clone());
    let seq = store
        .write((0..2500).map(|i| hr("p", "heart_rate", NOW - 3_000_000 + i * 1000, 60.0)).collect())
        .expect("write");
    assert_eq!(seq, 3, "answered with the seq of its last record: 1000 + 1000 + 500");
    let next = store.write(vec![hr("p", "heart_rate", NOW, 61.0)]).expect("write");
    assert_eq!(next, 4);
    // A crash before any flush: the WAL's records are all there is.
    store.inner.shutdown.store(true, Ordering::SeqCst);
    let _ = store.tx.send(WriterMsg::Stop);
    if let Some(h) = store.writer.lock().take() {
        h.join().expect("writer");
    }
    drop(store);
    assert!(store_segments(dir.path()) == 0, "nothing was flushed");
    let store = open(dir.path(), cfg);
    assert_eq!(count(&store, "heart_rate"), 2501);
}

#[test]
fn compaction_takes_the_most_fragmented_partitions_first() {
    // Under a sustained load a round of compaction cannot reach every partition; one that
    // took the first partitions it found left the others to pile up segments without end.
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path(), StoreConfig::default());
    let segments_of = |patient: &str| -> usize {
        let g = store.inner.read.read();
        let key = (PatientId::new(patient).expect("id"), Catalog::standard().id("heart_rate").expect("m"));
        g.index.series.get(&key).map_or(0, |days| days.values().map(Vec::len).sum())
    };
    for round in 0..12i64 {
        let t = NOW - 3_000_000 + round * 10_000;
        let mut batch = vec![hr("busy", "heart_rate", t, 60.0)];
        if round < 4 {
            batch.extend((0..60).map(|i| hr(&format!("p{i}"), "heart_rate", t, 60.0)));
        }
        store.write(batch).expect("write");
        store.flush().expect("flush");
    }
    assert_eq!(segments_of("busy"), 12);
    assert_eq!(segments_of("p7"), 4);
    // 61 partitions have work; a round of one takes the one with 12 segments.
    assert_eq!(store.inner.compact(1).expect("compact"), 1);
    assert_eq!(segments_of("busy"), 1);
    assert_eq!((0..60).map(|i| segments_of(&format!("p{i}"))).sum::<usize>(), 240, "nothing else merged");
    // A round of 16 then merges 16 of the others, and the rounds after it the rest.
    assert_eq!(store.inner.compact(16).expect("compact"), 16);
    assert_eq!((0..60).filter(|i| segments_of(&format!("p{i}")) == 1).count(), 16);
    while store.inner.compact(16).expect("compact") > 0 {}
    assert!((0..60).all(|i| segments_of(&format!("p{i}")) == 1));
    assert_eq!(store.sizes().segment_rows, 12 + 240, "every row kept");
}

/// A sample's source survives the buffer, the WAL replay, a flush and compaction, and an
/// overwrite takes the overwriting sample's source.
#[test]
fn sources_survive_replay_flush_and_compaction_and_follow_the_last_write() {
    use vitals_core::Source;
    let dir = tempfile::tempdir().expect("tmp");
    let with = |t: i64, v: f64, source: Source| Sample { source, ..hr("p", "heart_rate", t, v) };
    let sources = |store: &Store| -> Vec<(i64, f64, Source)> {
        let r = store
            .read(&ReadRequest {
                patient: PatientId::new("p").expect("id"),
                metric: Catalog::standard().id("heart_rate").expect("m"),
                device: None,
                from: 0,
                to: NOW + 1,
                rollups: false,
                max_points: usize::MAX,
                sources: true,
            })
            .expect("read");
        assert_eq!(r.raw.len(), 1);
        let s = &r.raw[0];
        assert_eq!(s.sources.len(), s.times.len());
        s.times.iter().zip(&s.values).zip(&s.sources).map(|((t, v), x)| (*t, *v, *x)).collect()
    };
    let want = vec![
        (NOW - 3000, 60.0, Source::Native),
        (NOW - 2000, 62.0, Source::Nightscout),
        (NOW - 1000, 63.0, Source::LineProtocol),
    ];
    {
        let store = open(dir.path(), StoreConfig::default());
        store.write(vec![with(NOW - 3000, 60.0, Source::Native), with(NOW - 2000, 61.0, Source::Native)]).expect("w");
        store.flush().expect("flush");
        store.write(vec![with(NOW - 2000, 62.0, Source::Nightscout)]).expect("w");
        store.write(vec![with(NOW - 1000, 63.0, Source::LineProtocol)]).expect("w");
        assert_eq!(sources(&store), want, "buffered over flushed");
    }
    // Reopened: the buffered part comes back from the WAL with its sources.
    let store = open(dir.path(), StoreConfig::default());
    assert_eq!(sources(&store), want, "replayed");
    store.flush().expect("flush");
    assert_eq!(sources(&store), want, "flushed");
    while store.inner.compact(16).expect("compact") > 0 {}
    assert_eq!(store.segments().len(), 1);
    assert_eq!(sources(&store), want, "compacted");
}

/// Compaction across days: a month that ended is merged into one archive segment under
/// `archive/`, and reads answer as before, raw and from the hourly rollups; a late sample
/// for an archived day wins and the next pass merges it in; the manifest keeps the span
/// over a restart; retention rewrites an archive that is partly out; erasure removes it.
#[test]
fn months_that_ended_are_archived_across_days_and_read_as_before() {
    let dir = tempfile::tempdir().expect("tmp");
    const OCT_1: i64 = 1_759_276_800_000; // 2025-10-01T00:00:00Z; NOW is 2025-11-22
    let cfg = || StoreConfig { archive_max_rows: 3000, ..StoreConfig::default() };
    let read = |store: &Store, from: i64, to: i64, rollups: bool| {
        store
            .read(&ReadRequest {
                patient: PatientId::new("p").expect("id"),
                metric: Catalog::standard().id("heart_rate").expect("m"),
                device: None,
                from,
                to,
                rollups,
                max_points: usize::MAX,
                sources: false,
            })
            .expect("read")
    };
    let points = |store: &Store| -> Vec<(i64, f64)> {
        let r = read(store, 0, NOW + 1, false);
        r.raw.iter().flat_map(|s| s.times.iter().copied().zip(s.values.iter().copied())).collect()
    };
    let store = open(dir.path(), cfg());
    // October hourly (744 rows in 31 day segments) and 4 days of November.
    let samples: Vec<Sample> =
        (0..35 * 24).map(|h| hr("p", "heart_rate", OCT_1 + h * 3_600_000, 50.0 + (h % 40) as f64)).collect();
    store.write(samples).expect("write");
    store.flush().expect("flush");
    let before = points(&store);
    assert_eq!(before.len(), 35 * 24);
    assert_eq!(store.segments().len(), 35);
    assert_eq!(store.compact_all().expect("archive"), 1, "October is one merge");
    let segs = store.segments();
    assert_eq!(segs.len(), 5, "one archive segment and four days of November");
    let archive: Vec<&SegmentMeta> = segs.iter().filter(|s| s.is_archive()).collect();
    assert_eq!(archive.len(), 1);
    assert!(archive[0].path.starts_with("archive/metric=heart_rate/year=2025/month=10/patient=p/part-"), "{archive:?}");
    assert_eq!((archive[0].day_ms, archive[0].until_day_ms), (OCT_1, Some(OCT_1 + 30 * MS_PER_DAY)));
    assert!(dir.path().join("lake").join(&archive[0].path).exists());
    assert!(!dir.path().join("lake/metric=heart_rate/year=2025/month=10").exists(), "the day partitions went");
    assert_eq!(points(&store), before, "raw reads answer as before");
    // Two whole days from the rollups: their 48 hours only, not the archive's 744.
    let (from, to) = (OCT_1 + 9 * MS_PER_DAY, OCT_1 + 11 * MS_PER_DAY);
    let r = read(&store, from, to, true);
    assert!(r.raw.is_empty());
    assert_eq!(r.hours.len(), 48);
    let sum: f64 = before.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, v)| v).sum();
    assert_eq!(r.hours.iter().map(|h| h.sum).sum::<f64>(), sum);
    // A late sample for an archived day wins, and the next pass merges it in.
    let late = OCT_1 + 14 * MS_PER_DAY + 5 * 3_600_000;
    store.write(vec![hr("p", "heart_rate", late, 99.0)]).expect("late");
    store.flush().expect("flush");
    let mut want = before.clone();
    want.iter_mut().filter(|(t, _)| *t == late).for_each(|p| p.1 = 99.0);
    assert_eq!(points(&store), want, "last write wins over the archive");
    assert_eq!(store.compact_all().expect("archive"), 1);
    assert_eq!(store.segments().len(), 5);
    assert_eq!(points(&store), want);
    assert_eq!(store.compact_all().expect("archive"), 0, "an archived month is left alone");
    store.close().expect("close");
    drop(store);
    // Reopened with a retention that cuts October on the 20th at noon: the days before the
    // 20th go, the archive is rewritten with the rest.
    let hr_id = Catalog::standard().id("heart_rate").expect("m");
    let keep = NOW - (OCT_1 + 19 * MS_PER_DAY + 12 * 3_600_000);
    let store = open(
        dir.path(),
        StoreConfig { retention: HashMap::from([(hr_id, Duration::from_millis(keep as u64))]), ..cfg() },
    );
    assert_eq!(points(&store), want, "the span survives a restart");
    assert_eq!(store.apply_retention().expect("retention"), 1);
    let kept: Vec<(i64, f64)> = want.iter().copied().filter(|(t, _)| *t >= OCT_1 + 19 * MS_PER_DAY).collect();
    assert_eq!(points(&store), kept);
    let archive: Vec<SegmentMeta> = store.segments().into_iter().filter(|s| s.is_archive()).collect();
    assert_eq!(archive.len(), 1);
    assert_eq!(archive[0].day_ms, OCT_1 + 19 * MS_PER_DAY);
    store.erase_patient(&PatientId::new("p").expect("id")).expect("erase");
    assert!(store.segments().is_empty());
    assert!(points(&store).is_empty());
    assert!(!dir.path().join("lake/archive/metric=heart_rate/year=2025/month=10/patient=p").exists());
}
