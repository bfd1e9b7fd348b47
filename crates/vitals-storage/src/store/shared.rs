//! Cluster mode's shared lake (`StoreConfig::shared`): one copy of the lake in the bucket
//! for every node, each node's disk holding only its hot days and a cache.
//!
//! Every node builds its own store from the replicated log, so every node holds the same
//! samples. The node that writes a patient (the owner of the patient's bucket) uploads the
//! patient's settled days as on one node and publishes each to the catalog (segments and a
//! [`Fingerprint`] of the day's content). Another node compares its own copy of a
//! published day with the catalog's: when the content is the same (same fingerprint) it
//! adopts the catalog's segments (`foreign`: remote, cold, read through the cache) and
//! deletes its local files; until then it keeps its own. Segments a node adopted follow
//! the catalog (a writer that merged or rewrote a day publishes it again), and any segment
//! of the node's own takes precedence over them (a late sample is seen at once).
//!
//! Nothing is deleted from the bucket here: objects the catalog no longer lists are
//! deleted after a grace period by the one node the catalog names (`SharedLake::due`), so
//! a node still reading an object has time to see the new list.

use super::*;
use crate::remote::{Fingerprint, LakeDay};

/// Series-days looked up in the catalog per round at most.
const MAX_CHECKS_PER_ROUND: usize = 2048;
/// When a series-day that matches the catalog is looked up again (one that does not yet
/// is looked up every round, and read again only when it or its catalog entry changed).
const RECHECK_ALIGNED: Duration = Duration::from_secs(600);
/// Objects deleted per round at most.
const MAX_DELETES_PER_ROUND: usize = 1000;

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// The fingerprint of a series-day's points: the same points give the same, in any order.
pub(crate) fn fingerprint(raw: &[RawSeries]) -> Fingerprint {
    let mut f = Fingerprint::default();
    for s in raw {
        let device = s.device.as_ref().map_or("", |d| d.as_str());
        for (t, v) in s.times.iter().zip(&s.values) {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            fnv(&mut h, device.as_bytes());
            fnv(&mut h, &[0]);
            fnv(&mut h, &t.to_le_bytes());
            fnv(&mut h, &v.to_bits().to_le_bytes());
            f.rows += 1;
            f.hash = f.hash.wrapping_add(h);
        }
    }
    f
}

/// Which segments a series-day has (their ids, which change with any rewrite, and whether
/// each is uploaded), and whether this node writes it: a change of any is compared again.
fn signature(segs: &[Arc<SegmentMeta>], writer: bool) -> u64 {
    let mut ids: Vec<(u64, bool)> = segs.iter().map(|s| (s.id, s.remote)).collect();
    ids.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    fnv(&mut h, &[u8::from(writer)]);
    for (id, remote) in ids {
        fnv(&mut h, &id.to_le_bytes());
        fnv(&mut h, &[u8::from(remote)]);
    }
    h
}

/// What a series-day's last comparison with the catalog saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checked {
    /// The day's [`signature`] then.
    sig: u64,
    /// A hash of the catalog's entry then.
    entry: Option<u64>,
    /// The day matched the catalog (or cannot be compared: too large).
    aligned: bool,
    at: Instant,
}

/// A series-day to compare with the catalog.
struct Candidate {
    key: SeriesKey,
    day: i64,
    segs: Vec<Arc<SegmentMeta>>,
    sig: u64,
    writer: bool,
    prev: Option<Checked>,
}

/// A hash of a catalog entry: its objects and fingerprint.
fn entry_hash(e: &LakeDay) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in e.keys() {
        fnv(&mut h, k.as_bytes());
        fnv(&mut h, &[0]);
    }
    fnv(&mut h, &e.fingerprint.rows.to_le_bytes());
    fnv(&mut h, &e.fingerprint.hash.to_le_bytes());
    h
}

/// A segment as the catalog lists it: the writer's own numbering, where an adopted one
/// (another writer's before) ranks below all of this writer's.
fn as_published(s: &SegmentMeta) -> SegmentMeta {
    SegmentMeta {
        id: 0,
        order: if s.foreign { 0 } else { s.order },
        remote: true,
        cold: false,
        foreign: false,
        ..s.clone()
    }
}

/// Whether a catalog's segment may be adopted into the series-day `key`: the same patient
/// and metric, a key that is a segment's path in the lake.
fn fits(s: &SegmentMeta, patient: &PatientId, code: &str, day: i64) -> bool {
    let name = s.path.rsplit('/').next().unwrap_or("");
    s.patient == patient.as_str()
        && s.metric == code
        && s.day_ms <= day
        && s.last_day_ms() >= day
        && (s.path.starts_with("metric=") || s.path.starts_with("archive/metric="))
        && !s.path.split('/').any(|c| c == ".." || c == "." || c.is_empty())
        && name.starts_with("part-")
        && name.ends_with(".parquet")
}

impl Inner {
    /// Whether this node writes `patient`'s part of the lake (always, but in cluster mode).
    pub(super) fn writes(&self, patient: &str) -> bool {
        self.config.shared.as_ref().is_none_or(|s| s.writes(patient))
    }

    /// The fingerprint of a series-day as this node reads it (segments and buffer), and
    /// whether the buffer holds any of it.
    fn day_view(&self, key: &SeriesKey, day: i64) -> Result<(Fingerprint, bool), StoreError> {
        let end = day.saturating_add(MS_PER_DAY);
        let buffered = {
            let g = self.read.read();
            g.frozen
                .iter()
                .map(|b| &**b)
                .chain(std::iter::once(&g.active))
                .any(|b| b.read(&key.0, key.1, None, day, end).iter().any(|d| !d.points.is_empty()))
        };
        let req = ReadRequest {
            patient: key.0.clone(),
            metric: key.1,
            device: None,
            from: day,
            to: end,
            rollups: false,
            max_points: usize::try_from(self.config.archive_max_rows.max(self.config.compact_max_rows) * 2)
                .unwrap_or(usize::MAX),
            sources: false,
        };
        Ok((fingerprint(&self.read_once(&req)?.raw), buffered))
    }

    /// Deletes the objects the catalog gave up whose grace passed (on the one node that
    /// deletes). Returns how many.
    pub(super) fn delete_due(
        &self,
        shared: &Arc<dyn SharedLake>,
        remote: &Arc<dyn Remote>,
    ) -> Result<usize, StoreError> {
        // Nothing is deleted directly in cluster mode: the catalog decides.
        self.doomed.lock().clear();
        let due = shared.due(MAX_DELETES_PER_ROUND)?;
        let mut done = Vec::with_capacity(due.len());
        let mut failure = None;
        for key in due {
            match remote.delete(&key) {
                Ok(()) => done.push(key),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        shared.forget(&done)?;
        self.stats.remote_deletes.fetch_add(done.len() as u64, Ordering::Relaxed);
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(done.len()),
        }
    }

    /// One round of the shared lake: settled series-days compared with the catalog; a
    /// published day whose content this node holds too is adopted; segments adopted before
    /// follow the catalog; the days this node writes are published once every segment of
    /// theirs is uploaded and nothing of theirs is buffered. Returns (adopted, published).
    pub(super) fn share_round(&self, shared: &Arc<dyn SharedLake>) -> Result<(usize, usize), StoreError> {
        let now = self.clock.now_ms();
        let upload_after = self.config.upload_after.as_millis() as i64;
        let hot_for = self.config.hot_for.as_millis() as i64;
        let candidates: Vec<Candidate> = {
            let g = self.read.read();
            let checked = self.checked.lock();
            let mut v = Vec::new();
            'scan: for (key, days) in &g.index.series {
                let writer = shared.writes(key.0.as_str());
                for (day, segs) in days {
                    let ended = day + MS_PER_DAY;
                    // Settled as for uploads; another node's days once they leave the hot tier.
                    if ended + upload_after > now || !self.compaction_pick(segs, *day, now).is_empty() {
                        continue;
                    }
                    if !writer && ended + hot_for > now {
                        continue;
                    }
                    let sig = signature(segs, writer);
                    let prev = checked.get(&(key.clone(), *day)).copied();
                    if prev.is_some_and(|p| p.sig == sig && p.aligned && p.at.elapsed() < RECHECK_ALIGNED) {
                        continue;
                    }
                    v.push(Candidate { key: key.clone(), day: *day, segs: segs.clone(), sig, writer, prev });
                    if v.len() >= MAX_CHECKS_PER_ROUND {
                        break 'scan;
                    }
                }
            }
            v
        };
        if candidates.is_empty() {
            return Ok((0, 0));
        }
        let wanted: Vec<(String, String, i64)> = candidates
            .iter()
            .map(|c| (c.key.0.as_str().to_owned(), self.catalog.get(c.key.1).code.to_owned(), c.day))
            .collect();
        let listed: HashMap<(String, String, i64), LakeDay> =
            shared.lookup(&wanted)?.into_iter().map(|d| ((d.patient.clone(), d.metric.clone(), d.day_ms), d)).collect();
        let (mut adopted, mut publish, mut checks) = (0, Vec::new(), Vec::new());
        for (c, w) in candidates.iter().zip(&wanted) {
            let entry = listed.get(w);
            let eh = entry.map(entry_hash);
            // Nothing changed on either side since the last comparison: the same answer.
            if c.prev.is_some_and(|p| p.sig == c.sig && p.entry == eh) {
                continue;
            }
            let mut checked_as = |aligned: bool| {
                checks.push(((c.key.clone(), c.day), Checked { sig: c.sig, entry: eh, aligned, at: Instant::now() }));
            };
            let local: BTreeSet<&str> = c.segs.iter().map(|s| s.path.as_str()).collect();
            let mut aligned = entry.is_some_and(|e| e.keys() == local);
            let mut view: Option<(Fingerprint, bool)> = None;
            if let Some(e) = entry
                && !aligned
            {
                let v = match self.day_view(&c.key, c.day) {
                    Ok(v) => v,
                    // Too large a day to compare: this node keeps its own copy.
                    Err(StoreError::TooManyPoints { .. }) => {
                        checked_as(true);
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                view = Some(v);
                if v.0 == e.fingerprint {
                    adopted += usize::from(self.adopt(c, e, true)?);
                    aligned = true;
                } else if !c.writer {
                    // Not the same yet (this node or the writer is behind): adopted
                    // segments follow the catalog, this node's own stay.
                    adopted += usize::from(self.adopt(c, e, false)?);
                }
            }
            if c.writer && !aligned && c.segs.iter().all(|s| s.remote) {
                let (fp, buffered) = match view {
                    Some(v) => v,
                    None => match self.day_view(&c.key, c.day) {
                        Ok(v) => v,
                        Err(StoreError::TooManyPoints { .. }) => {
                            checked_as(true);
                            continue;
                        }
                        Err(err) => return Err(err),
                    },
                };
                if !buffered {
                    publish.push(LakeDay {
                        patient: w.0.clone(),
                        metric: w.1.clone(),
                        day_ms: c.day,
                        segments: c.segs.iter().map(|s| as_published(s)).collect(),
                        fingerprint: fp,
                    });
                    aligned = true;
                }
            }
            checked_as(aligned);
        }
        if !publish.is_empty() {
            shared.publish(&publish)?;
            self.stats.published.fetch_add(publish.len() as u64, Ordering::Relaxed);
        }
        let mut checked = self.checked.lock();
        checked.extend(checks);
        if checked.len() > 4 * MAX_CHECKS_PER_ROUND {
            let g = self.read.read();
            checked.retain(|(key, day), _| g.index.series.get(key).is_some_and(|d| d.contains_key(day)));
        }
        Ok((adopted, publish.len()))
    }

    /// Adopts a catalog's day: its segments join the manifest as `foreign` ones; adopted
    /// segments it no longer lists leave; with `replace_own`, so do this node's own segments
    /// of the day (their content is the catalog's: same fingerprint), but archive segments,
    /// which hold other days too. Nothing happens if the day changed since it was compared.
    fn adopt(&self, c: &Candidate, e: &LakeDay, replace_own: bool) -> Result<bool, StoreError> {
        let code = self.catalog.get(c.key.1).code;
        let _m = self.maintenance.lock();
        let current: Vec<Arc<SegmentMeta>> = {
            let g = self.read.read();
            g.index.series.get(&c.key).and_then(|d| d.get(&c.day)).cloned().unwrap_or_default()
        };
        if signature(&current, c.writer) != c.sig {
            return Ok(false);
        }
        if !e.segments.iter().all(|s| fits(s, &c.key.0, code, c.day)) {
            tracing::warn!(patient = %c.key.0, metric = code, day = c.day, "the shared lake's catalog lists a segment of another series-day; not adopted");
            return Ok(false);
        }
        let keys = e.keys();
        let remove: Vec<Arc<SegmentMeta>> = current
            .iter()
            .filter(|s| !keys.contains(s.path.as_str()))
            .filter(|s| s.foreign || (replace_own && !s.is_archive()))
            .cloned()
            .collect();
        let present: BTreeSet<&str> = current.iter().map(|s| s.path.as_str()).collect();
        let mut new: Vec<SegmentMeta> = e
            .segments
            .iter()
            .filter(|s| !present.contains(s.path.as_str()))
            .map(|s| SegmentMeta { id: 0, remote: true, cold: true, foreign: true, ..s.clone() })
            .collect();
        if remove.is_empty() && new.is_empty() {
            return Ok(false);
        }
        let mut manifest = self.manifest.lock();
        let first = manifest.allocate_ids(new.len() as u64);
        for (i, s) in new.iter_mut().enumerate() {
            s.id = first + i as u64;
        }
        let ids: Vec<u64> = new.iter().map(|s| s.id).collect();
        manifest.commit(Edit { add: new, remove: remove.iter().map(|s| s.id).collect(), ..Edit::default() })?;
        {
            let mut g = self.read.write();
            for s in &remove {
                g.index.remove(&c.key, s);
            }
            for id in &ids {
                if let Some(meta) = manifest.state.segments.get(id) {
                    g.index.add(c.key.clone(), Arc::clone(meta));
                }
            }
        }
        drop(manifest);
        for s in &remove {
            self.delete_files(s)?;
            if !s.cold {
                self.remove_empty_parents(&self.lake.join(&s.path));
            }
        }
        self.stats.adopted.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(device: Option<&str>, points: &[(i64, f64)]) -> RawSeries {
        RawSeries {
            device: device.map(|d| DeviceId::new(d).expect("device")),
            times: points.iter().map(|p| p.0).collect(),
            values: points.iter().map(|p| p.1).collect(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn fingerprints_see_every_point_and_nothing_else() {
        let a = [series(Some("w1"), &[(1, 60.0), (2, 61.0)]), series(None, &[(1, 60.0)])];
        let same_other_order = [series(None, &[(1, 60.0)]), series(Some("w1"), &[(1, 60.0), (2, 61.0)])];
        assert_eq!(fingerprint(&a), fingerprint(&same_other_order));
        assert_eq!(fingerprint(&a).rows, 3);
        let other_value = [series(Some("w1"), &[(1, 60.0), (2, 61.5)]), series(None, &[(1, 60.0)])];
        let other_device = [series(Some("w2"), &[(1, 60.0), (2, 61.0)]), series(None, &[(1, 60.0)])];
        let one_less = [series(Some("w1"), &[(1, 60.0), (2, 61.0)])];
        for other in [&other_value[..], &other_device[..], &one_less[..]] {
            assert_ne!(fingerprint(&a), fingerprint(other));
        }
    }
}
