//! The write-ahead log: every acknowledged sample is here, fsynced, until it is in a segment.
//!
//! Files `wal/wal-<first seq, 20 digits>.log` in the record format of [`crate::record`]
//! (magic `VWAL`, version 2). One record per write request:
//! `seq u64 | groups u32 | group*`, a group being one series' points from one source:
//! `patient str8 | metric code str8 | device str8 (empty = none) | source u8 | n u32 | (time i64, value f64, id str8)*`
//! where `str8` is a length byte and UTF-8 bytes, `source` a [`Source`] code; all integers
//! little-endian. Files of version 1 (no source byte) are still replayed, as source unknown.
//!
//! Fsync policy: [`Wal::append`] writes all records of a group commit with one `write` and
//! one `fdatasync`; nothing is acknowledged before that returns. New files are created with
//! their header fsynced and the directory fsynced.

use std::io::Write;
use std::path::{Path, PathBuf};

use vitals_core::{Catalog, DeviceId, PatientId, Sample, SampleId, Source};

use crate::fs::{Fs, FsFile, FsRef};
use crate::record::{self, Tail};

const MAGIC: [u8; 4] = *b"VWAL";
const VERSION: u32 = 2;
/// Versions replayed: 1 had no source byte.
const VERSIONS: [u32; 2] = [1, VERSION];

/// What went wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error(
        "{path}: corrupt record at offset {offset} ({reason}); refusing to start so that no acknowledged data is silently dropped. Start with --repair-wal to keep the records before it and set the damaged file aside"
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: record at offset {offset} does not decode: {reason}")]
    BadPayload { path: PathBuf, offset: u64, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_owned(), source }
}

/// A record read back at start-up.
#[derive(Debug)]
pub struct Replayed {
    pub seq: u64,
    pub samples: Vec<Sample>,
}

/// The open log.
#[derive(Debug)]
pub struct Wal {
    fs: FsRef,
    dir: PathBuf,
    file: FsFile,
    path: PathBuf,
    /// Closed and current files: (first seq, path, size).
    files: Vec<(u64, PathBuf, u64)>,
    next_seq: u64,
    buf: Vec<u8>,
    /// The last append failed: the current file may end in a torn record until
    /// [`recover`](Wal::recover) cuts it.
    torn: bool,
}

impl Wal {
    /// Opens the log in `dir`, handing every record found to `on_record` in order (streamed,
    /// so a large log is never held in memory as samples all at once).
    ///
    /// A torn last record is dropped (it was never acknowledged) and the file truncated.
    /// Corruption before the end fails unless `repair` is set.
    /// `min_next_seq` is a floor for the next seq (the manifest's flushed seq + 1), so seqs
    /// never go backwards even when every log file was deleted after a flush.
    pub fn open(
        fs: &FsRef,
        dir: &Path,
        repair: bool,
        catalog: &Catalog,
        min_next_seq: u64,
        mut on_record: impl FnMut(Replayed),
    ) -> Result<Wal, WalError> {
        crate::fs::create_dir_all_synced(fs.as_ref(), dir).map_err(io(dir))?;
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let seq = name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()?;
                Some((seq, e.path()))
            })
            .collect();
        names.sort();
        let mut files = Vec::new();
        let mut next_seq = min_next_seq.max(1);
        let count = names.len();
        // The files after each one, to tell a closed file from the last one that holds records.
        let later: Vec<PathBuf> = names.iter().map(|(_, p)| p.clone()).collect();
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            next_seq = next_seq.max(first_seq);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let scan = record::scan_versions(&bytes, MAGIC, &VERSIONS)
                .map_err(|e| WalError::Header { path: path.clone(), reason: e.to_string() })?;
            for r in decoded(&path, &scan, catalog) {
                let r = r?;
                next_seq = next_seq.max(r.seq + 1);
                on_record(r);
            }
            // Files after this one that hold no record are leftovers of rotations that failed
            // (a full disk): this is then the live file, whose tail may be torn.
            let is_last = i + 1 == count || later[i + 1..].iter().all(|p| holds_no_record(p));
            // A file cut inside its header holds nothing: the leftover of a creation that
            // failed (a full disk) or was cut off, wherever it sits.
            if scan.records.is_empty()
                && matches!(scan.tail, Tail::Torn { offset } if offset < record::HEADER_LEN as u64)
            {
                tracing::warn!(path = %path.display(), "removing a log file whose creation did not complete");
                fs.remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let keep_len = match scan.tail {
                Tail::Clean => bytes.len() as u64,
                Tail::Torn { offset } if is_last => {
                    tracing::warn!(path = %path.display(), offset, "dropping torn last record of the log (never acknowledged)");
                    offset
                }
                Tail::Torn { offset } | Tail::Corrupt { offset, .. } => {
                    let reason = match &scan.tail {
                        Tail::Corrupt { reason, .. } => reason.clone(),
                        _ => "damaged record at the end of a closed log file".to_owned(),
                    };
                    if !repair {
                        return Err(WalError::Corrupt { path, offset, reason });
                    }
                    let aside = path.with_extension("damaged");
                    tracing::error!(path = %path.display(), offset, %reason, aside = %aside.display(),
                        "repair: keeping records before the damage, setting the file aside");
                    fs.rename(&path, &aside).map_err(io(&path))?;
                    continue;
                }
            };
            if scan.records.is_empty() {
                fs.remove_file(&path).map_err(io(&path))?;
                continue;
            }
            // The last file may end in records that were written but never synced (a crash
            // between write and fsync): they are replayed now, so they are made durable now,
            // or a power cut later would tear them in what is then a closed file.
            if keep_len < bytes.len() as u64 || is_last {
                crate::fs::truncate(fs.as_ref(), &path, keep_len).map_err(io(&path))?;
            }
            files.push((first_seq, path, keep_len));
        }
        let (file, path) = create_file(fs.as_ref(), dir, next_seq)?;
        files.push((next_seq, path.clone(), record::HEADER_LEN as u64));
        Ok(Wal {
            fs: fs.clone(),
            dir: dir.to_owned(),
            file,
            path,
            files,
            next_seq,
            buf: Vec::with_capacity(1 << 20),
            torn: false,
        })
    }

    /// Appends one record per batch with one write and one fdatasync; returns the seq of
    /// the first record (the others follow consecutively).
    pub fn append(&mut self, batches: &[&[Sample]], catalog: &Catalog) -> Result<u64, WalError> {
        if self.torn {
            self.recover()?;
        }
        let first = self.next_seq;
        self.buf.clear();
        for batch in batches {
            let seq = self.next_seq;
            record::encode_with(&mut self.buf, |out| encode(out, seq, batch, catalog));
            self.next_seq += 1;
        }
        let res = self.file.write_all(&self.buf).and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // The file's tail is unknown after a failed write or fsync: cut before reuse.
            self.next_seq = first;
            self.torn = true;
            return Err(WalError::Io { path: self.path.clone(), source: e });
        }
        if let Some(last) = self.files.last_mut() {
            last.2 += self.buf.len() as u64;
        }
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(first)
    }

    /// Undoes a failed [`append`](Self::append): cuts the current file back to where the
    /// last successful append left it (all of it synced then) and syncs that, so the next
    /// append starts from a clean tail. After a failed fsync the kernel may have dropped
    /// the unsynced pages while still showing them, so they are cut, never reused.
    pub fn recover(&mut self) -> Result<(), WalError> {
        let good = self.current_file_bytes();
        self.file.set_len(good).and_then(|()| self.file.sync_all()).map_err(io(&self.path))?;
        self.torn = false;
        Ok(())
    }

    /// Starts a new file, so that every record so far is in closed files.
    pub fn rotate(&mut self) -> Result<(), WalError> {
        // A closed file must end cleanly: a torn tail there would read as corruption.
        if self.torn {
            self.recover()?;
        }
        // A current file without records is as good as a new one; creating it again would
        // truncate it and list it twice, and deleting the first entry (after a flush) would
        // delete the live file.
        if self.current_file_bytes() <= record::HEADER_LEN as u64 {
            return Ok(());
        }
        let (file, path) = create_file(self.fs.as_ref(), &self.dir, self.next_seq)?;
        self.file = file;
        self.path = path.clone();
        self.files.push((self.next_seq, path, record::HEADER_LEN as u64));
        Ok(())
    }

    /// Deletes closed files whose every record has a seq <= `seq`.
    pub fn remove_through(&mut self, seq: u64) -> Result<(), WalError> {
        while self.files.len() > 1 && self.files[1].0 <= seq + 1 {
            let (_, path, _) = self.files.remove(0);
            self.fs.remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Cuts a torn tail left by a failed append (when closing), so that the file holds only
    /// what was acknowledged.
    pub fn close(mut self) -> Result<(), WalError> {
        if self.torn { self.recover() } else { Ok(()) }
    }

    /// Records with a seq after `after`, at most `max`, read back from the files (the
    /// files hold every record since the last [`remove_through`](Self::remove_through)).
    pub fn read_after(&self, after: u64, max: usize, catalog: &Catalog) -> Result<Vec<Replayed>, WalError> {
        let mut out = Vec::new();
        for (i, (_, path, _)) in self.files.iter().enumerate() {
            // A file holds seqs below the next file's first: skip files wholly at or before `after`.
            if self.files.get(i + 1).is_some_and(|next| next.0 <= after + 1) {
                continue;
            }
            let bytes = std::fs::read(path).map_err(io(path))?;
            let scan = record::scan_versions(&bytes, MAGIC, &VERSIONS)
                .map_err(|e| WalError::Header { path: path.clone(), reason: e.to_string() })?;
            for r in decoded(path, &scan, catalog) {
                let r = r?;
                if r.seq > after {
                    out.push(r);
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Seq of the last record written (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes in all log files.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    /// Bytes in the current file.
    pub fn current_file_bytes(&self) -> u64 {
        self.files.last().map(|f| f.2).unwrap_or(0)
    }
}

/// A scanned file's records decoded in order; an error names the file and the offset.
fn decoded<'a>(
    path: &'a Path,
    scan: &'a record::Scan<'_>,
    catalog: &'a Catalog,
) -> impl Iterator<Item = Result<Replayed, WalError>> + 'a {
    scan.records.iter().map(move |(offset, payload)| {
        decode(payload, catalog, scan.version).map_err(|reason| WalError::BadPayload {
            path: path.to_owned(),
            offset: *offset,
            reason,
        })
    })
}

/// Whether a log file holds no complete record (read only if it is small).
fn holds_no_record(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= record::HEADER_LEN as u64 => true,
        Ok(m) if m.len() <= 1 << 20 => std::fs::read(path)
            .ok()
            .and_then(|b| record::scan_versions(&b, MAGIC, &VERSIONS).ok().map(|s| s.records.is_empty()))
            .unwrap_or(false),
        _ => false,
    }
}

fn create_file(fs: &dyn Fs, dir: &Path, first_seq: u64) -> Result<(FsFile, PathBuf), WalError> {
    let path = dir.join(format!("wal-{first_seq:020}.log"));
    let f = crate::fs::create_synced(fs, &path, &record::header(MAGIC, VERSION)).map_err(io(&path))?;
    fs.sync_dir(dir).map_err(io(dir))?;
    Ok((f, path))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&b[..n]);
}

/// Encodes one request: consecutive samples of the same series share a group header.
fn encode(out: &mut Vec<u8>, seq: u64, samples: &[Sample], catalog: &Catalog) {
    out.extend_from_slice(&seq.to_le_bytes());
    let groups_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut groups = 0u32;
    let mut i = 0;
    while i < samples.len() {
        let s = &samples[i];
        let mut j = i + 1;
        while j < samples.len()
            && samples[j].patient == s.patient
            && samples[j].metric == s.metric
            && samples[j].device == s.device
            && samples[j].source == s.source
        {
            j += 1;
        }
        put_str(out, s.patient.as_str());
        put_str(out, catalog.get(s.metric).code);
        put_str(out, s.device.as_ref().map(|d| d.as_str()).unwrap_or(""));
        out.push(s.source.code());
        out.extend_from_slice(&((j - i) as u32).to_le_bytes());
        for p in &samples[i..j] {
            out.extend_from_slice(&p.time_ms.to_le_bytes());
            out.extend_from_slice(&p.value.to_le_bytes());
            put_str(out, p.id.as_ref().map(|d| d.as_str()).unwrap_or(""));
        }
        groups += 1;
        i = j;
    }
    out[groups_at..groups_at + 4].copy_from_slice(&groups.to_le_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated payload".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn str8(&mut self) -> Result<&'a str, String> {
        let n = self.take(1)?[0] as usize;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }
}

/// The version of the record encoding written now, and the versions read.
pub const RECORD_VERSION: u32 = VERSION;
pub const RECORD_VERSIONS: [u32; 2] = VERSIONS;

/// Appends one record's payload (`seq`, then the samples in groups) as the log files hold
/// it, for a log kept elsewhere (cluster mode's stream).
pub fn encode_record(out: &mut Vec<u8>, seq: u64, samples: &[Sample], catalog: &Catalog) {
    encode(out, seq, samples, catalog)
}

/// Decodes a record's payload written by [`encode_record`] at `version`.
pub fn decode_record(payload: &[u8], catalog: &Catalog, version: u32) -> Result<Replayed, String> {
    decode(payload, catalog, version)
}

/// Decodes a record's payload of a file of `version` as replay does; the number of samples
/// it holds (for fuzzing the format: never panics, whatever the bytes).
pub fn decode_payload(payload: &[u8], catalog: &Catalog, version: u32) -> Result<usize, String> {
    decode(payload, catalog, version).map(|r| r.samples.len())
}

fn decode(payload: &[u8], catalog: &Catalog, version: u32) -> Result<Replayed, String> {
    let mut c = Cursor(payload);
    let seq = c.u64()?;
    let groups = c.u32()?;
    let mut samples = Vec::new();
    for _ in 0..groups {
        let patient = PatientId::new(c.str8()?).map_err(|e| format!("patient {e}"))?;
        let code = c.str8()?;
        let metric = catalog.id(code).ok_or_else(|| format!("metric {code:?} is not in this build's catalog"))?;
        let device = match c.str8()? {
            "" => None,
            d => Some(DeviceId::new(d).map_err(|e| format!("device {e}"))?),
        };
        let source = if version >= 2 { Source::from_code(c.take(1)?[0]) } else { Source::Unknown };
        let n = c.u32()? as usize;
        samples.reserve(n.min(1 << 20));
        for _ in 0..n {
            let time_ms = c.u64()? as i64;
            let value = f64::from_bits(c.u64()?);
            let id = match c.str8()? {
                "" => None,
                s => Some(SampleId::new(s).map_err(|e| format!("sample id {e}"))?),
            };
            samples.push(Sample {
                patient: patient.clone(),
                metric,
                time_ms,
                value,
                device: device.clone(),
                id,
                source,
            });
        }
    }
    if !c.0.is_empty() {
        return Err(format!("{} trailing bytes", c.0.len()));
    }
    Ok(Replayed { seq, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample(patient: &str, metric: &str, t: i64, v: f64, device: Option<&str>, id: Option<&str>) -> Sample {
        Sample {
            patient: PatientId::new(patient).expect("id"),
            metric: Catalog::standard().id(metric).expect("metric"),
            time_ms: t,
            value: v,
            device: device.map(|d| DeviceId::new(d).expect("device")),
            id: id.map(|d| SampleId::new(d).expect("id")),
            source: Source::Native,
        }
    }

    fn open(dir: &Path, repair: bool) -> Result<(Wal, Vec<Replayed>), WalError> {
        let mut replayed = Vec::new();
        let wal = Wal::open(&crate::fs::real(), dir, repair, Catalog::standard(), 1, |r| replayed.push(r))?;
        Ok((wal, replayed))
    }

    #[test]
    fn appended_records_replay_in_order_after_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let cat = Catalog::standard();
        let a = vec![
            sample("p1", "heart_rate", 1000, 60.0, Some("w"), None),
            sample("p1", "heart_rate", 2000, 61.0, Some("w"), Some("s-2")),
            sample("p2", "eda", 1000, 0.25, None, None),
            Sample { source: Source::Nightscout, ..sample("p2", "eda", 2000, 0.5, None, None) },
        ];
        let b = vec![sample("p1", "heart_rate", 1000, 62.0, Some("w"), None)];
        {
            let (mut wal, replayed) = open(dir.path(), false).expect("open");
            assert!(replayed.is_empty());
            assert_eq!(wal.append(&[&a, &b], cat).expect("append"), 1);
            wal.rotate().expect("rotate");
            assert_eq!(wal.append(&[&b], cat).expect("append"), 3);
        }
        let (mut wal, replayed) = open(dir.path(), false).expect("reopen");
        assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(replayed[0].samples, a);
        assert_eq!(replayed[1].samples, b);
        assert_eq!(wal.last_seq(), 3);
        wal.remove_through(2).expect("remove");
        drop(wal);
        let (_, replayed) = open(dir.path(), false).expect("reopen");
        assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    }

    /// Found by the power-loss simulation: a rotation of an empty current file (a flush
    /// right after a size rotation) created the same file again, and deleting the flushed
    /// files then deleted the live one with the records written after it.
    #[test]
    fn rotating_twice_then_removing_flushed_files_keeps_the_live_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let cat = Catalog::standard();
        let a = vec![sample("p1", "heart_rate", 1000, 60.0, None, None)];
        {
            let (mut wal, _) = open(dir.path(), false).expect("open");
            wal.append(&[&a], cat).expect("append");
            wal.rotate().expect("rotate after a full file");
            wal.rotate().expect("rotate for a flush");
            wal.remove_through(1).expect("remove flushed");
            wal.append(&[&a], cat).expect("append after");
        }
        let (_, replayed) = open(dir.path(), false).expect("reopen");
        assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2], "the record written after the flush");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

        /// A small real log cut at every offset opens and replays exactly its complete
        /// records; a byte flipped anywhere either fails the open (damage before the last
        /// record) or loses only the damaged last record, and never replays a wrong sample.
        #[test]
        fn small_log_survives_truncation_and_corruption_at_every_offset(
            sizes in proptest::collection::vec(1usize..4, 1..4),
        ) {
            let dir = tempfile::tempdir().expect("tmp");
            let cat = Catalog::standard();
            let batches: Vec<Vec<Sample>> = sizes
                .iter()
                .enumerate()
                .map(|(b, n)| (0..*n).map(|i| sample("p1", "heart_rate", (b * 10 + i) as i64, 60.0 + i as f64, Some("w"), None)).collect())
                .collect();
            let path = {
                let (mut wal, _) = open(dir.path(), false).expect("open");
                for b in &batches {
                    wal.append(&[b], cat).expect("append");
                }
                wal.path.clone()
            };
            let bytes = fs::read(&path).expect("read");
            let mut ends = Vec::new();
            let mut pos = record::HEADER_LEN;
            for _ in &batches {
                let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
                pos += record::FRAME_LEN + len;
                ends.push(pos);
            }
            for cut in 0..=bytes.len() {
                fs::write(&path, &bytes[..cut]).expect("write");
                let (_, replayed) = open(dir.path(), false).expect("a torn tail always opens");
                let complete = ends.iter().filter(|e| **e <= cut).count();
                let got: Vec<Vec<Sample>> = replayed.into_iter().map(|r| r.samples).collect();
                proptest::prop_assert_eq!(&got[..], &batches[..complete]);
                // Opening may have removed or truncated files: start each case afresh.
                for e in fs::read_dir(dir.path()).expect("ls").flatten() {
                    fs::remove_file(e.path()).expect("rm");
                }
            }
            for at in record::HEADER_LEN..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x40;
                fs::write(&path, &damaged).expect("write");
                let hit = ends.iter().position(|e| at < *e).expect("inside a record");
                match open(dir.path(), false) {
                    Ok((_, replayed)) => {
                        proptest::prop_assert_eq!(hit, batches.len() - 1, "damage at {} before the last record went unnoticed", at);
                        let got: Vec<Vec<Sample>> = replayed.into_iter().map(|r| r.samples).collect();
                        proptest::prop_assert_eq!(&got[..], &batches[..hit]);
                    }
                    Err(WalError::Corrupt { offset, .. }) => {
                        proptest::prop_assert!(hit < batches.len() - 1);
                        proptest::prop_assert!(offset as usize <= at);
                    }
                    Err(other) => proptest::prop_assert!(false, "unexpected error {}", other),
                }
                for e in fs::read_dir(dir.path()).expect("ls").flatten() {
                    fs::remove_file(e.path()).expect("rm");
                }
            }
        }
    }

    #[test]
    fn corrupt_middle_record_refuses_to_open_unless_repairing() {
        let dir = tempfile::tempdir().expect("tmp");
        let cat = Catalog::standard();
        let s = vec![sample("p1", "heart_rate", 1000, 60.0, None, None)];
        let path = {
            let (mut wal, _) = open(dir.path(), false).expect("open");
            wal.append(&[&s, &s, &s], cat).expect("append");
            wal.path.clone()
        };
        let mut bytes = fs::read(&path).expect("read");
        bytes[record::HEADER_LEN + record::FRAME_LEN + 2] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let err = open(dir.path(), false).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("offset 8"), "{msg}");
        let (_, replayed) = open(dir.path(), true).expect("repair opens");
        assert!(replayed.is_empty(), "the damaged first record and what followed it are set aside");
        assert!(path.with_extension("damaged").exists());
    }

    /// A log written by a build before sources (version 1, no source byte) still replays,
    /// its samples as source unknown, and new records go to a new file of version 2.
    #[test]
    fn version_1_files_replay_as_source_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut payload = Vec::new();
        payload.extend_from_slice(&7u64.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        put_str(&mut payload, "p1");
        put_str(&mut payload, "heart_rate");
        put_str(&mut payload, "w");
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&1000i64.to_le_bytes());
        payload.extend_from_slice(&60.0f64.to_le_bytes());
        put_str(&mut payload, "");
        let mut bytes = record::header(MAGIC, 1).to_vec();
        record::encode(&mut bytes, &payload);
        fs::write(dir.path().join(format!("wal-{:020}.log", 7)), &bytes).expect("write");
        let (mut wal, replayed) = open(dir.path(), false).expect("open");
        let want = Sample { source: Source::Unknown, ..sample("p1", "heart_rate", 1000, 60.0, Some("w"), None) };
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].seq, 7);
        assert_eq!(replayed[0].samples, vec![want]);
        let s = vec![sample("p1", "heart_rate", 2000, 61.0, None, None)];
        wal.append(&[&s], Catalog::standard()).expect("append");
        assert_eq!(fs::read(&wal.path).expect("read")[4..8], 2u32.to_le_bytes());
        drop(wal);
        let (_, replayed) = open(dir.path(), false).expect("reopen");
        assert_eq!(replayed.iter().map(|r| r.samples[0].source).collect::<Vec<_>>(), [Source::Unknown, Source::Native]);
    }
}
