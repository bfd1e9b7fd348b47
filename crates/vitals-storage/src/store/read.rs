//! The read path: a snapshot of the buffered points and the segment lists under the read
//! lock, then files read without it (row groups pruned by time), with caches of segment
//! footers and hourly rollups.

use super::*;

pub(super) fn to_points(s: &SeriesRows) -> Vec<Point> {
    s.times
        .iter()
        .zip(&s.values)
        .enumerate()
        .map(|(i, (&t, &v))| Point {
            time_ms: t,
            value: v,
            id: 0,
            source: s.sources.get(i).copied().unwrap_or(Source::Unknown),
        })
        .collect()
}

impl Inner {
    pub(super) fn rollup_of(&self, meta: &SegmentMeta) -> Result<Arc<Vec<DeviceRollup>>, StoreError> {
        if let Some(r) = self.rollups.lock().get(&meta.id) {
            return Ok(Arc::clone(r));
        }
        let r = Arc::new(segment::read_rollup(&self.segment_file(meta)?)?);
        self.cache_rollup(meta.id, Arc::clone(&r));
        Ok(r)
    }

    pub(super) fn footer_of(&self, meta: &SegmentMeta) -> Result<ArrowReaderMetadata, StoreError> {
        if let Some(m) = self.footers.lock().get(&meta.id) {
            return Ok(m.clone());
        }
        let m = segment::load_metadata(&self.segment_file(meta)?)?;
        let mut c = self.footers.lock();
        if c.len() >= FOOTER_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(meta.id, m.clone());
        Ok(m)
    }

    /// Forgets cached footers and rollups of segments that no longer exist.
    pub(super) fn forget(&self, id: u64) {
        self.rollups.lock().remove(&id);
        self.footers.lock().remove(&id);
    }

    pub(super) fn cache_rollup(&self, id: u64, r: Arc<Vec<DeviceRollup>>) {
        let mut c = self.rollups.lock();
        if c.len() >= ROLLUP_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(id, r);
    }

    pub(super) fn read_once(&self, req: &ReadRequest) -> Result<SeriesRead, StoreError> {
        let key = (req.patient.clone(), req.metric);
        // Snapshot under the lock: buffered points (oldest buffer first) and segment lists.
        let mut buffered: BTreeMap<Option<DeviceId>, Vec<Point>> = BTreeMap::new();
        let days: Vec<(i64, Vec<Arc<SegmentMeta>>)> = {
            let g = self.read.read();
            for b in g.frozen.iter().map(|b| &**b).chain(std::iter::once(&g.active)) {
                for dp in b.read(&req.patient, req.metric, req.device.as_ref(), req.from, req.to) {
                    let e = buffered.entry(dp.device).or_default();
                    *e = if e.is_empty() { dp.points } else { merge_dedup(e, &dp.points) };
                }
            }
            match g.index.series.get(&key) {
                None => Vec::new(),
                Some(days) => days
                    .range(day_start(req.from)..req.to.max(day_start(req.from)))
                    .map(|(d, segs)| (*d, segs.clone()))
                    .collect(),
            }
        };
        let buffered_days: BTreeSet<i64> =
            buffered.values().flat_map(|ps| ps.iter().map(|p| day_start(p.time_ms))).collect();
        // The budget: buffered points (bounded by the buffer's own limit), then the rows of
        // segments wholly in the range before any file is read, then what reads give.
        let mut held: usize = buffered.values().map(Vec::len).sum();
        let over = |n: usize| {
            if n > req.max_points { Err(StoreError::TooManyPoints { limit: req.max_points }) } else { Ok(()) }
        };
        over(held)?;
        // (An archive segment, listed under each of its days, counts once.)
        let wholly_inside: u64 = days
            .iter()
            .filter(|(day, segs)| !self.answered_by_rollups(req, *day, segs, &buffered_days))
            .flat_map(|(_, segs)| segs.iter())
            .filter(|s| s.min_ms >= req.from && s.max_ms < req.to)
            .map(|s| (s.id, s.rows))
            .collect::<BTreeMap<u64, u64>>()
            .values()
            .sum();
        over(held.saturating_add(usize::try_from(wholly_inside).unwrap_or(usize::MAX)))?;
        let mut out = SeriesRead::default();
        let extra = Extra { ids: false, sources: req.sources };
        let mut from_segments: BTreeMap<Option<DeviceId>, Vec<Point>> = BTreeMap::new();
        for (day, mut segs) in days {
            // This day's part of the range: an archive segment holds other days too.
            let (from, to) = (req.from.max(day), req.to.min(day.saturating_add(MS_PER_DAY)));
            if self.answered_by_rollups(req, day, &segs, &buffered_days) {
                for s in &segs {
                    for dr in self.rollup_of(s)?.iter() {
                        if req.device.as_ref().is_none_or(|d| dr.device.as_deref() == Some(d.as_str())) {
                            out.hours.extend(dr.hours.iter().filter(|h| h.hour_ms >= from && h.hour_ms < to));
                        }
                    }
                }
                continue;
            }
            segs.sort_by_key(|s| s.precedence());
            for s in &segs {
                let footer = self.footer_of(s)?;
                for rows in segment::read(&self.segment_file(s)?, Some(&footer), from, to, req.device.as_ref(), extra)?
                {
                    held = held.saturating_add(rows.times.len());
                    over(held)?;
                    let pts = to_points(&rows);
                    let e = from_segments.entry(rows.device).or_default();
                    // Segments are visited oldest first, so equal times resolve to the newest.
                    *e = if e.is_empty() { pts } else { merge_dedup(e, &pts) };
                }
            }
        }
        for (device, pts) in buffered {
            let e = from_segments.entry(device).or_default();
            *e = if e.is_empty() { pts } else { merge_dedup(e, &pts) };
        }
        out.raw = from_segments
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(device, pts)| RawSeries {
                device,
                times: pts.iter().map(|p| p.time_ms).collect(),
                values: pts.iter().map(|p| p.value).collect(),
                sources: if req.sources { pts.iter().map(|p| p.source).collect() } else { Vec::new() },
            })
            .collect();
        Ok(out)
    }

    /// Whether a day of a read comes from its hourly rollups: a whole UTC day in the range,
    /// nothing of it buffered, and no two of its segments overlapping in time.
    fn answered_by_rollups(
        &self,
        req: &ReadRequest,
        day: i64,
        segs: &[Arc<SegmentMeta>],
        buffered: &BTreeSet<i64>,
    ) -> bool {
        let whole_day = day >= req.from && day.saturating_add(MS_PER_DAY) <= req.to;
        req.rollups && whole_day && !buffered.contains(&day) && non_overlapping(segs)
    }

    pub(super) fn estimate(&self, req: &ReadRequest) -> u64 {
        let key = (req.patient.clone(), req.metric);
        let g = self.read.read();
        let mut n: u64 = 0;
        for b in g.frozen.iter().map(|b| &**b).chain(std::iter::once(&g.active)) {
            for dp in b.read(&req.patient, req.metric, req.device.as_ref(), req.from, req.to) {
                n = n.saturating_add(dp.points.len() as u64);
            }
        }
        let Some(days) = g.index.series.get(&key) else { return n };
        for (day, segs) in days.range(day_start(req.from)..req.to.max(day_start(req.from))) {
            if self.answered_by_rollups(req, *day, segs, &BTreeSet::new()) {
                n = n.saturating_add(24);
                continue;
            }
            for s in segs {
                let (from, to) = (req.from.max(*day), req.to.min(day.saturating_add(MS_PER_DAY)));
                let (lo, hi) = (s.min_ms.max(from), s.max_ms.min(to.saturating_sub(1)));
                if lo > hi {
                    continue;
                }
                let span = s.max_ms.saturating_sub(s.min_ms).max(1) as u128;
                let part = (s.rows as u128 * (hi.saturating_sub(lo) as u128 + 1)).div_ceil(span + 1) as u64;
                n = n.saturating_add(part.min(s.rows));
            }
        }
        n
    }
}
