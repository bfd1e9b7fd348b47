//! The durable log of accepted samples as a contract: the embedded write-ahead log
//! ([`WalLog`]) and, in cluster mode, a replicated JetStream stream (`vitals-jetstream`)
//! keep it the same way, and [`conformance`] checks both with one suite.
//!
//! A record is one write request's samples. [`SampleLog::append`] returns only once every
//! record is durable: fsynced here, acknowledged by a quorum of replicas there. Positions
//! increase along the log; a reader catches up with [`SampleLog::read_after`] from the last
//! position it holds (a restart, or another node). A log may split a record into several
//! (by patient, into partitions; by size, as a stream's messages have a limit), but never
//! reorders one patient's samples: within a patient, the log's order is the order of
//! appends and, inside a record, the order of its samples. That is the order last-write-wins
//! needs (a replaced reading is always the same patient's).

use std::path::Path;

use vitals_core::{Catalog, Sample};

use crate::fs::FsRef;
use crate::wal::{Replayed, Wal, WalError};

/// What went wrong with a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The replicated log did not answer or refused (the write is not acknowledged).
    #[error("{log}: {reason}")]
    Remote { log: String, reason: String },
    /// A record that does not decode (written by a newer build, or damaged).
    #[error("{log}: record at position {position} does not decode: {reason}")]
    BadRecord { log: String, position: u64, reason: String },
}

/// The durable, ordered log of accepted samples.
pub trait SampleLog: Send {
    /// Appends one record per batch (empty batches too); when this returns `Ok`, every
    /// record is durable. Returns the position of each batch's last record, increasing.
    fn append(&mut self, batches: &[&[Sample]]) -> Result<Vec<u64>, LogError>;
    /// Records after position `after`, in order, at most `max` of them.
    fn read_after(&mut self, after: u64, max: usize) -> Result<Vec<Replayed>, LogError>;
    /// Lets the log forget records up to `through` (they are in the lake). Later reads
    /// from `through` on still return every record after it.
    fn trim_through(&mut self, through: u64) -> Result<(), LogError>;
    /// Position of the last record (0 for an empty log).
    fn last(&mut self) -> Result<u64, LogError>;
}

/// The embedded log: the write-ahead log's files in one directory.
#[derive(Debug)]
pub struct WalLog {
    wal: Wal,
    catalog: &'static Catalog,
}

impl WalLog {
    /// Opens the log in `dir` (replay is the caller's business through `read_after`).
    /// `min_next` is a floor for the next position: what the lake already holds + 1, as
    /// every file may have been trimmed.
    pub fn open(fs: &FsRef, dir: &Path, catalog: &'static Catalog, min_next: u64) -> Result<WalLog, LogError> {
        let wal = Wal::open(fs, dir, false, catalog, min_next, |_| {})?;
        Ok(WalLog { wal, catalog })
    }
}

impl SampleLog for WalLog {
    fn append(&mut self, batches: &[&[Sample]]) -> Result<Vec<u64>, LogError> {
        let first = self.wal.append(batches, self.catalog)?;
        Ok((0..batches.len() as u64).map(|i| first + i).collect())
    }

    fn read_after(&mut self, after: u64, max: usize) -> Result<Vec<Replayed>, LogError> {
        Ok(self.wal.read_after(after, max, self.catalog)?)
    }

    fn trim_through(&mut self, through: u64) -> Result<(), LogError> {
        self.wal.rotate()?;
        Ok(self.wal.remove_through(through)?)
    }

    fn last(&mut self) -> Result<u64, LogError> {
        Ok(self.wal.last_seq())
    }
}

/// The contract's checks, run by each implementation's tests (feature `conformance`).
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use vitals_core::{Catalog, DeviceId, PatientId, Sample, SampleId, Source};

    use super::SampleLog;

    /// One fresh, empty log under test.
    pub trait Fixture {
        /// A new handle onto the same log (a restarted process, or another node).
        fn open(&self) -> Box<dyn SampleLog>;
    }

    /// A check of the contract.
    pub type Check = fn(&dyn Fixture);

    /// Every check, by name: run each on a fresh fixture.
    pub const CHECKS: &[(&str, Check)] = &[
        ("appended_records_read_back_in_order_with_every_field", round_trip),
        ("reads_start_after_a_position_and_stop_at_the_maximum", read_from),
        ("what_was_acknowledged_survives_a_new_handle", reopen),
        ("trimming_keeps_every_later_record", trim),
        ("a_large_record_reads_back_whole_and_in_order", large),
    ];

    /// Runs every check, each on a fixture of its own; panics naming the check that failed.
    pub fn run_all(fresh: &dyn Fn() -> Box<dyn Fixture>) {
        crate::checks::run("log", CHECKS, fresh);
    }

    /// Sample `i` of a varied stream: several patients, metrics, devices, ids and sources.
    pub fn sample(i: usize) -> Sample {
        let c = Catalog::standard();
        let metric = ["heart_rate", "blood_glucose", "skin_temperature", "eda"][i % 4];
        Sample {
            patient: PatientId::new(&format!("p-{}", i % 7)).expect("patient"),
            metric: c.id(metric).expect("metric"),
            time_ms: 1_700_000_000_000 + i as i64 * 1000,
            value: 50.0 + (i % 97) as f64 * 0.5,
            device: (!i.is_multiple_of(3)).then(|| DeviceId::new(&format!("dev-{}", i % 5)).expect("device")),
            id: i.is_multiple_of(11).then(|| SampleId::new(&format!("s-{i}")).expect("id")),
            source: [Source::Native, Source::Nightscout, Source::HealthAutoExport, Source::LineProtocol][i % 4],
        }
    }

    fn batch(from: usize, n: usize) -> Vec<Sample> {
        (from..from + n).map(sample).collect()
    }

    fn all_samples(log: &mut dyn SampleLog, after: u64) -> (Vec<u64>, Vec<Sample>) {
        let (mut positions, mut samples, mut at) = (Vec::new(), Vec::new(), after);
        loop {
            let got = log.read_after(at, 100).expect("read");
            let Some(last) = got.last() else { break };
            at = last.seq;
            for r in got {
                positions.push(r.seq);
                samples.extend(r.samples);
            }
        }
        (positions, samples)
    }

    /// The samples of each patient, in order: what a log must keep.
    fn by_patient(samples: &[Sample]) -> std::collections::BTreeMap<String, Vec<Sample>> {
        let mut out: std::collections::BTreeMap<String, Vec<Sample>> = Default::default();
        for s in samples {
            out.entry(s.patient.as_str().to_owned()).or_default().push(s.clone());
        }
        out
    }

    fn same(got: &[Sample], want: &[Sample]) -> bool {
        got.len() == want.len() && by_patient(got) == by_patient(want)
    }

    fn round_trip(f: &dyn Fixture) {
        let mut log = f.open();
        assert_eq!(log.last().expect("last"), 0, "a new log is empty");
        assert!(log.read_after(0, 10).expect("read").is_empty());
        let (a, b, c) = (batch(0, 40), batch(40, 1), batch(41, 25));
        let p1 = log.append(&[&a, &b]).expect("append");
        let p2 = log.append(&[&c]).expect("append");
        let positions: Vec<u64> = p1.iter().chain(&p2).copied().collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
        assert_eq!(log.last().expect("last"), positions[2]);
        let (read, samples) = all_samples(log.as_mut(), 0);
        assert!(read.windows(2).all(|w| w[0] < w[1]), "read in order: {read:?}");
        assert!(same(&samples, &batch(0, 66)), "every field of every sample, in each patient's order");
    }

    fn read_from(f: &dyn Fixture) {
        let mut log = f.open();
        let mut positions = Vec::new();
        for i in 0..10 {
            positions.extend(log.append(&[&batch(i * 3, 3)]).expect("append"));
        }
        let tail = log.read_after(positions[6], 100).expect("read");
        assert_eq!(tail.last().map(|r| r.seq), Some(positions[9]));
        assert!(tail.iter().all(|r| r.seq > positions[6]));
        let tail: Vec<Sample> = tail.into_iter().flat_map(|r| r.samples).collect();
        assert!(same(&tail, &batch(21, 9)), "{} samples after the 7th record", tail.len());
        let some = log.read_after(positions[0], 4).expect("read");
        assert_eq!(some.len(), 4, "at most the maximum");
        assert!(some.iter().all(|r| r.seq > positions[0]));
        assert!(log.read_after(positions[9], 10).expect("read past the end").is_empty());
    }

    fn reopen(f: &dyn Fixture) {
        let positions = {
            let mut log = f.open();
            let mut p = log.append(&[&batch(0, 5), &batch(5, 5)]).expect("append");
            p.extend(log.append(&[&batch(10, 5)]).expect("append"));
            p
        };
        let mut again = f.open();
        assert_eq!(again.last().expect("last"), positions[2]);
        assert!(same(&all_samples(again.as_mut(), 0).1, &batch(0, 15)));
        let more = again.append(&[&batch(15, 5)]).expect("append after reopening");
        assert!(more[0] > positions[2], "positions go on increasing");
        assert!(same(&all_samples(f.open().as_mut(), 0).1, &batch(0, 20)));
    }

    fn trim(f: &dyn Fixture) {
        let mut log = f.open();
        let mut positions = Vec::new();
        for i in 0..6 {
            positions.extend(log.append(&[&batch(i * 4, 4)]).expect("append"));
        }
        log.trim_through(positions[2]).expect("trim");
        assert!(same(&all_samples(log.as_mut(), positions[2]).1, &batch(12, 12)));
        let later = log.append(&[&batch(24, 4)]).expect("append after a trim");
        assert!(later[0] > positions[5]);
        assert_eq!(log.last().expect("last"), later[0]);
        assert!(same(&all_samples(f.open().as_mut(), positions[2]).1, &batch(12, 16)));
    }

    fn large(f: &dyn Fixture) {
        let mut log = f.open();
        // About 2.5 MB encoded: more than a NATS message may carry by default.
        let big = batch(0, 60_000);
        let small = batch(60_000, 3);
        let p = log.append(&[&big, &small]).expect("append");
        assert!(p[0] < p[1]);
        let (positions, samples) = all_samples(log.as_mut(), 0);
        assert_eq!(positions.last(), Some(&p[1]));
        assert_eq!(samples.len(), 60_003);
        assert!(same(&samples, &batch(0, 60_003)), "the large record comes back whole, each patient in order");
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::{self, Fixture};
    use super::*;

    struct Dir(tempfile::TempDir);

    impl Fixture for Dir {
        fn open(&self) -> Box<dyn SampleLog> {
            Box::new(WalLog::open(&crate::fs::real(), self.0.path(), Catalog::standard(), 1).expect("open"))
        }
    }

    #[test]
    fn the_write_ahead_log_keeps_the_log_contract() {
        conformance::run_all(&|| Box::new(Dir(tempfile::tempdir().expect("tmp"))));
    }
}
