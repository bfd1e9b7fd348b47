//! Flushing: the maintenance thread writes frozen buffers as Parquet segments (fsynced,
//! their directories too) and commits them in one manifest edit; it also runs compaction
//! compaction across days and retention on schedule, and removes orphaned files at start.

use super::*;

/// How long the maintenance thread sleeps before its next round (a write past the flush
/// threshold wakes it sooner). Not at all while the last compaction round left work: with
/// a second's pause between rounds of [`MAX_COMPACTIONS_PER_ROUND`], a soak at 700,000
/// samples/s fell behind (after 10 minutes, 31,000 segments for some 25,600 partitions,
/// the excess growing; with no pause, 50 extra). Flushes are not held up: each round is
/// bounded and a due flush runs first.
pub(super) fn maintenance_wait(round_left_work: bool) -> Duration {
    if round_left_work { Duration::ZERO } else { Duration::from_secs(1) }
}

pub(super) fn maintenance_loop(inner: &Inner, tx: &SyncSender<WriterMsg>) {
    let mut last_flush = Instant::now();
    let mut last_retention: Option<Instant> = None;
    // Compaction scans the whole index, so it runs after flushes, while a round left work,
    // and every few minutes (to merge days that have just ended), not every tick.
    let mut compact_pending = true;
    let mut last_compaction = Instant::now();
    let mut round_left_work = false;
    let mut last_archive: Option<Instant> = None;
    let mut archive_pending = false;
    loop {
        {
            let (lock, cv) = &inner.wake;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut woken, _) = cv
                .wait_timeout_while(guard, maintenance_wait(round_left_work), |w| !*w)
                .unwrap_or_else(|e| e.into_inner());
            *woken = false;
        }
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if inner.failed.lock().is_some() {
            // An empty write: the writer tries to recover with it, so that the store (and
            // `/healthz`) recovers once space returns even when no sender is writing.
            let _ = tx.try_send(WriterMsg::Write { samples: Vec::new(), done: Box::new(|_| ()) });
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
            inner.wake_tiering();
        }
        if compact_pending || last_compaction.elapsed() >= COMPACTION_SCAN_INTERVAL {
            last_compaction = Instant::now();
            match inner.compact(MAX_COMPACTIONS_PER_ROUND) {
                Ok(n) => {
                    compact_pending = n >= MAX_COMPACTIONS_PER_ROUND;
                    round_left_work = compact_pending;
                }
                Err(e) => {
                    // Tried again after a second (a failing disk is not spun on).
                    round_left_work = false;
                    errors.push(e);
                }
            }
        } else {
            round_left_work = false;
        }
        // Compaction across days: at start, then hourly (a backfill of old months is merged
        // once an hour, not at every flush), in rounds of a few merges while there is work.
        if inner.config.archive_after.is_some()
            && (archive_pending || last_archive.is_none_or(|t| t.elapsed() >= ARCHIVE_SCAN_INTERVAL))
        {
            last_archive = Some(Instant::now());
            match inner.archive(super::archive::MAX_ARCHIVES_PER_ROUND) {
                Ok(n) => {
                    archive_pending = n >= super::archive::MAX_ARCHIVES_PER_ROUND;
                    round_left_work |= archive_pending;
                }
                Err(e) => {
                    archive_pending = false;
                    errors.push(e);
                }
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

/// How many segment files (`part-*`) the lake holds.
pub(super) fn segment_files(lake: &Path) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut stack = vec![lake.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for e in entries {
            let e = e.map_err(io(&dir))?;
            if e.file_type().map_err(io(&e.path()))?.is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with("part-") {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Deletes segment files that no manifest entry names as local (left by a crash mid-flush,
/// mid-compaction or while a segment left the hot tier).
pub(super) fn remove_orphans(fs: &dyn crate::fs::Fs, lake: &Path, manifest: &Manifest) -> Result<(), StoreError> {
    // A cold segment's local copy was being deleted (after the edit that made it cold).
    let known: BTreeSet<&str> = manifest.state.segments.values().filter(|s| !s.cold).map(|s| s.path.as_str()).collect();
    let mut stack = vec![lake.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
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
                fs.remove_file(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

pub(super) fn partition_dir(metric: &str, patient: &PatientId, day_ms: i64) -> String {
    let (y, m, d) = civil_day(day_ms);
    format!("metric={metric}/year={y:04}/month={m:02}/day={d:02}/patient={patient}")
}

/// Where archive segments (compacted across the days of a month) of a series live.
pub(super) fn archive_dir(metric: &str, patient: &PatientId, day_ms: i64) -> String {
    let (y, m, _) = civil_day(day_ms);
    format!("archive/metric={metric}/year={y:04}/month={m:02}/patient={patient}")
}

impl Inner {
    pub(super) fn wake_maintenance(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    pub(super) fn flush(&self, tx: &SyncSender<WriterMsg>) -> Result<(), StoreError> {
        let _m = self.maintenance.lock();
        let (reply, rx) = mpsc::sync_channel(1);
        tx.send(WriterMsg::Freeze { reply }).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)??;
        loop {
            let Some(b) = self.read.read().frozen.first().cloned() else { return Ok(()) };
            self.flush_frozen(&b, tx)?;
        }
    }

    pub(super) fn flush_frozen(&self, b: &Arc<Buffer>, tx: &SyncSender<WriterMsg>) -> Result<(), StoreError> {
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
                        sources: chunk.iter().map(|p| p.source).collect(),
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
            match self.write_segment(id, metric, &patient, (day, None), order, &series, &mut dirs) {
                Ok((meta, rollup)) => {
                    metas.push((patient, metric, meta));
                    rollups.push((id, rollup));
                }
                Err(e) => {
                    self.discard(metas.iter().map(|m| &m.2));
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.sync_dirs(&dirs) {
            self.discard(metas.iter().map(|m| &m.2));
            return Err(e);
        }
        manifest.commit(Edit {
            add: metas.iter().map(|m| m.2.clone()).collect(),
            flushed_seq: Some(order),
            ..Edit::default()
        })?;
        // The index shares the manifest's copy of each segment's metadata.
        let metas: Vec<_> = metas
            .into_iter()
            .map(|(patient, metric, meta)| {
                let shared = manifest.state.segments.get(&meta.id).cloned().unwrap_or_else(|| Arc::new(meta));
                (patient, metric, shared)
            })
            .collect();
        drop(manifest);
        for (id, r) in rollups {
            self.cache_rollup(id, Arc::new(r));
        }
        let rows: u64 = metas.iter().map(|m| m.2.rows).sum();
        let segments = metas.len();
        {
            let mut g = self.read.write();
            for (patient, metric, meta) in metas {
                g.index.add((patient, metric), meta);
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
    pub(super) fn write_segment(
        &self,
        id: u64,
        metric: MetricId,
        patient: &PatientId,
        (day, until_day): (i64, Option<i64>),
        order: u64,
        series: &[SeriesRows],
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<(SegmentMeta, Vec<DeviceRollup>), StoreError> {
        let m = self.catalog.get(metric);
        let rel_dir = match until_day {
            None => partition_dir(m.code, patient, day),
            Some(_) => archive_dir(m.code, patient, day),
        };
        let dir = self.lake.join(&rel_dir);
        self.config.fs.create_dir_all(&dir).map_err(io(&dir))?;
        // Cluster mode: the node's tag keeps object keys apart in the shared lake.
        let name = match &self.config.segment_tag {
            Some(tag) => format!("part-{tag}-{id:020}.parquet"),
            None => format!("part-{id:020}.parquet"),
        };
        let tmp = dir.join(format!("{name}.tmp"));
        let path = dir.join(&name);
        let written = segment::write(self.config.fs.as_ref(), &tmp, m.scale, series)
            .map_err(StoreError::from)
            .and_then(|w| self.config.fs.rename(&tmp, &path).map(|()| w).map_err(io(&tmp)));
        let w = match written {
            Ok(w) => w,
            Err(e) => {
                // A full disk must not fill up further with the parts of failed attempts.
                let _ = self.config.fs.remove_file(&tmp);
                return Err(e);
            }
        };
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
            until_day_ms: until_day,
            path: format!("{rel_dir}/{name}"),
            rows: w.rows,
            bytes: w.bytes,
            min_ms: w.min_ms,
            max_ms: w.max_ms,
            order,
            last,
            remote: false,
            cold: false,
            foreign: false,
        };
        Ok((meta, w.rollup))
    }

    /// Deletes segments written by a flush or compaction that failed before its manifest
    /// edit: no manifest names them, and a retry writes new ones (on a disk that is nearly
    /// full, they would otherwise take its last room until the next start).
    pub(super) fn discard<'m>(&self, written: impl Iterator<Item = &'m SegmentMeta>) {
        for meta in written {
            let _ = self.config.fs.remove_file(&self.lake.join(&meta.path));
        }
    }

    /// Fsyncs each partition directory and its ancestors up to the lake, so new files and
    /// directories survive a crash before the manifest names them.
    pub(super) fn sync_dirs(&self, dirs: &BTreeSet<PathBuf>) -> Result<(), StoreError> {
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
            self.config.fs.sync_dir(d).map_err(io(d))?;
        }
        Ok(())
    }
}
