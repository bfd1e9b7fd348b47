//! The remote tier: settled segments are uploaded to the remote lake, leave the local disk
//! once their day is older than the hot tier, and are fetched back into a bounded cache
//! when read. Runs on its own thread, so a slow or unreachable bucket never holds up
//! flushes; it takes the maintenance lock only to commit what it did.
//!
//! Every step is ordered so that a crash at any point loses nothing and leaves at most
//! garbage that the next start or sweep removes:
//! - upload, then a manifest edit marks the segment `remote` (a crash between: uploaded
//!   again, the object overwritten with the same bytes);
//! - an edit marks it `cold`, then the local file is deleted (a crash between: the start's
//!   orphan scan deletes the file no entry claims);
//! - an edit removes a segment, then its object is deleted (a crash or a failing bucket in
//!   between: the sweep deletes objects no entry names once older than the grace period).

use super::*;
use crate::remote::RemoteError;

/// Most segments uploaded in one round (the next round follows at once while there is
/// more to do).
const MAX_UPLOADS_PER_ROUND: usize = 256;
/// How often the bucket is listed to delete orphaned objects.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Keys of objects waiting for deletion kept in memory; past it they are left to the sweep.
const MAX_DOOMED: usize = 100_000;

/// Fetched cold segments on the local disk, least recently used evicted first.
#[derive(Debug, Default)]
pub(super) struct Cache {
    /// Segment id -> (bytes, last use).
    entries: HashMap<u64, (u64, u64)>,
    bytes: u64,
    tick: u64,
}

/// What one tiering round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierReport {
    pub uploaded: usize,
    pub made_cold: usize,
    pub deleted: usize,
    /// Cluster mode: series-days adopted from the shared lake's catalog, and published.
    pub adopted: usize,
    pub published: usize,
    /// More work is waiting than one round takes.
    pub more: bool,
}

pub(super) fn tiering_loop(inner: &Inner) {
    let mut last_sweep: Option<Instant> = None;
    let mut more = false;
    loop {
        if !more {
            let (lock, cv) = &inner.tier_wake;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut woken, _) =
                cv.wait_timeout_while(guard, inner.config.tier_interval, |w| !*w).unwrap_or_else(|e| e.into_inner());
            *woken = false;
        }
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        more = match inner.tier_round() {
            Ok(r) => r.more,
            Err(e) => {
                inner.stats.remote_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "remote lake");
                false
            }
        };
        if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_INTERVAL) {
            last_sweep = Some(Instant::now());
            if let Err(e) = inner.sweep_remote(inner.config.orphan_grace, None) {
                inner.stats.remote_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "sweeping the remote lake");
            }
        }
    }
}

impl Inner {
    /// The file to read a segment from: its local copy, or (cold) the cached object,
    /// fetched first if needed.
    pub(super) fn segment_file(&self, meta: &SegmentMeta) -> Result<PathBuf, StoreError> {
        if !meta.cold {
            return Ok(self.lake.join(&meta.path));
        }
        let path = self.cache_dir.join(format!("part-{:020}.parquet", meta.id));
        {
            let mut c = self.cache.lock();
            c.tick += 1;
            let tick = c.tick;
            if let Some(e) = c.entries.get_mut(&meta.id) {
                e.1 = tick;
                return Ok(path);
            }
        }
        let Some(remote) = &self.config.remote else {
            return Err(StoreError::Failed(format!(
                "segment {} is only in the remote lake, and no remote lake is configured (lake.url)",
                meta.path
            )));
        };
        // A unique name per fetch: two readers may fetch the same object at once.
        let n = self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let tmp = self.cache_dir.join(format!("part-{:020}.{n}.tmp", meta.id));
        if let Err(e) = remote.get(&meta.path, &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        fs::rename(&tmp, &path).map_err(io(&tmp))?;
        let bytes = fs::metadata(&path).map_err(io(&path))?.len();
        let mut c = self.cache.lock();
        c.tick += 1;
        let tick = c.tick;
        if let Some(old) = c.entries.insert(meta.id, (bytes, tick)) {
            c.bytes -= old.0;
        }
        c.bytes += bytes;
        while c.bytes > self.config.cache_bytes && c.entries.len() > 1 {
            let Some((&victim, &(b, _))) = c.entries.iter().filter(|(id, _)| **id != meta.id).min_by_key(|(_, e)| e.1)
            else {
                break;
            };
            c.entries.remove(&victim);
            c.bytes -= b;
            let _ = fs::remove_file(self.cache_dir.join(format!("part-{victim:020}.parquet")));
        }
        Ok(path)
    }

    /// Removes what is left of segments that left the manifest: the local file (unless
    /// cold) now, the remote object (if uploaded) by the tiering thread.
    pub(super) fn delete_files(&self, s: &SegmentMeta) -> Result<(), StoreError> {
        self.forget(s.id);
        if self.cache.lock().entries.remove(&s.id).is_some() {
            let _ = fs::remove_file(self.cache_dir.join(format!("part-{:020}.parquet", s.id)));
        }
        // Cluster mode: the catalog of the shared lake decides what is deleted.
        if s.remote && self.config.shared.is_none() {
            let mut d = self.doomed.lock();
            if d.len() < MAX_DOOMED {
                d.push(s.path.clone());
            }
        }
        if !s.cold {
            let p = self.lake.join(&s.path);
            self.config.fs.remove_file(&p).map_err(io(&p))?;
        }
        Ok(())
    }

    pub(super) fn wake_tiering(&self) {
        let (lock, cv) = &self.tier_wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    /// One round: pending deletions, uploads of settled days, then local copies dropped
    /// past the hot tier.
    pub(super) fn tier_round(&self) -> Result<TierReport, StoreError> {
        let Some(remote) = self.config.remote.clone() else { return Ok(TierReport::default()) };
        let mut report = TierReport::default();
        let mut failure: Option<RemoteError> = None;
        if let Some(shared) = &self.config.shared {
            report.deleted = self.delete_due(shared, &remote)?;
            // Adopting before uploading: a node that just took over a patient uploads
            // only what the previous writer had not published.
            (report.adopted, report.published) = self.share_round(shared)?;
        }
        let doomed = std::mem::take(&mut *self.doomed.lock());
        let mut deleted = 0;
        for (i, key) in doomed.iter().enumerate() {
            match remote.delete(key) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    // The bucket is failing: keep the rest for the next round.
                    self.doomed.lock().extend(doomed[i..].iter().cloned());
                    failure = Some(e);
                    break;
                }
            }
        }
        self.stats.remote_deletes.fetch_add(deleted as u64, Ordering::Relaxed);
        report.deleted += deleted;
        if let Some(e) = failure {
            return Err(e.into());
        }
        let now = self.clock.now_ms();
        let upload_after = self.config.upload_after.as_millis() as i64;
        let hot_for = self.config.hot_for.as_millis() as i64;
        let (to_upload, to_chill) = {
            let g = self.read.read();
            let (mut up, mut chill) = (Vec::new(), Vec::new());
            // An archive segment is listed under each of its days: taken once.
            let mut seen = BTreeSet::new();
            for days in g.index.series.values() {
                for (day, segs) in days {
                    let ended = day + MS_PER_DAY;
                    // Settled: the day is over and compaction has nothing left to merge in it.
                    if ended + upload_after > now || !self.compaction_pick(segs, *day, now).is_empty() {
                        continue;
                    }
                    for s in segs {
                        let ended = s.last_day_ms() + MS_PER_DAY;
                        if ended + upload_after > now || !seen.insert(s.id) {
                            continue;
                        }
                        // Cluster mode: only the patient's writer uploads; another node's
                        // own segment stays on its disk until the catalog's copy is adopted.
                        if !s.remote {
                            if self.writes(&s.patient) {
                                up.push(Arc::clone(s));
                            }
                        } else if !s.cold && ended + hot_for <= now {
                            chill.push(Arc::clone(s));
                        }
                    }
                }
            }
            (up, chill)
        };
        report.more = to_upload.len() > MAX_UPLOADS_PER_ROUND;
        let mut uploaded: Vec<Arc<SegmentMeta>> = Vec::new();
        for s in to_upload.iter().take(MAX_UPLOADS_PER_ROUND) {
            if self.shutdown.load(Ordering::SeqCst) {
                break; // what was uploaded is still marked below; the rest waits for the next start
            }
            let path = self.lake.join(&s.path);
            if let Err(e) = remote.put(&s.path, &path) {
                if !path.exists() {
                    continue; // compacted away meanwhile
                }
                failure = Some(e);
                break;
            }
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
            self.stats.upload_bytes.fetch_add(s.bytes, Ordering::Relaxed);
            uploaded.push(Arc::clone(s));
        }
        let (n, gone) = self.mark(&uploaded, |m| m.remote = true)?;
        report.uploaded = n;
        // What was uploaded may leave the hot tier at once: look again now.
        report.more |= n > 0;
        // Uploaded, but compacted or erased before the edit: nothing will ever name them.
        self.doomed.lock().extend(gone.iter().map(|s| s.path.clone()));
        if let Some(e) = failure {
            return Err(e.into());
        }
        let (n, gone) = self.mark(&to_chill, |m| m.cold = true)?;
        report.made_cold = n;
        for s in to_chill.iter().filter(|s| !gone.iter().any(|g| g.id == s.id)) {
            let p = self.lake.join(&s.path);
            self.forget(s.id);
            match self.config.fs.remove_file(&p) {
                Ok(()) => self.remove_empty_parents(&p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(report)
    }

    /// Commits a change to segments in one manifest edit and the index. Returns how many
    /// were changed and those that left the manifest meanwhile (compacted, erased).
    fn mark(
        &self,
        segs: &[Arc<SegmentMeta>],
        change: impl Fn(&mut SegmentMeta),
    ) -> Result<(usize, Vec<Arc<SegmentMeta>>), StoreError> {
        if segs.is_empty() {
            return Ok((0, Vec::new()));
        }
        let _m = self.maintenance.lock();
        let mut manifest = self.manifest.lock();
        let (mut changed, mut gone) = (Vec::new(), Vec::new());
        for s in segs {
            match manifest.state.segments.get(&s.id) {
                Some(cur) => {
                    let mut m = SegmentMeta::clone(cur);
                    change(&mut m);
                    changed.push(m);
                }
                None => gone.push(Arc::clone(s)),
            }
        }
        if changed.is_empty() {
            return Ok((0, gone));
        }
        let ids: Vec<u64> = changed.iter().map(|m| m.id).collect();
        manifest.commit(Edit { remove: ids.clone(), add: changed, ..Edit::default() })?;
        let mut g = self.read.write();
        for id in &ids {
            let Some(meta) = manifest.state.segments.get(id) else { continue };
            if let (Ok(patient), Some(metric)) = (PatientId::new(&meta.patient), self.catalog.id(&meta.metric)) {
                g.index.replace(&(patient, metric), Arc::clone(meta));
            }
        }
        Ok((ids.len(), gone))
    }

    /// Deletes objects under the prefix that no manifest entry names and that are older
    /// than `grace` (a segment file the store wrote; anything else there is left alone);
    /// with `patient`, only that patient's objects. Returns how many were deleted.
    pub(super) fn sweep_remote(&self, grace: Duration, patient: Option<&PatientId>) -> Result<usize, StoreError> {
        let Some(remote) = &self.config.remote else { return Ok(0) };
        // Cluster mode: one node sweeps, sparing what the catalog lists or has yet to delete.
        let listed = match &self.config.shared {
            Some(shared) => match shared.known()? {
                Some(keys) => keys,
                None => return Ok(0),
            },
            None => BTreeSet::new(),
        };
        let objects = remote.list()?;
        let cutoff = self.clock.now_ms() - grace.as_millis() as i64;
        let wanted = patient.map(|p| format!("/patient={p}/"));
        let doomed: Vec<String> = {
            let _m = self.maintenance.lock();
            let manifest = self.manifest.lock();
            let known: BTreeSet<&str> = manifest.state.segments.values().map(|s| s.path.as_str()).collect();
            objects
                .into_iter()
                .filter(|o| {
                    (o.key.starts_with("metric=") || o.key.starts_with("archive/metric="))
                        && o.key.rsplit('/').next().is_some_and(is_segment_name)
                })
                .filter(|o| wanted.as_deref().is_none_or(|w| o.key.contains(w)))
                .filter(|o| o.modified_ms <= cutoff && !known.contains(o.key.as_str()) && !listed.contains(&o.key))
                .map(|o| o.key)
                .collect()
        };
        for key in &doomed {
            tracing::info!(key = %key, lake = %remote.location(), "deleting an orphaned object");
            remote.delete(key)?;
        }
        self.stats.remote_deletes.fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len())
    }
}

pub(super) fn is_segment_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}
