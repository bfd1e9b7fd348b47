//! Compaction: per partition, overlapping segments or runs of small ones are merged into
//! one, swapped in by one manifest edit.

use super::*;

/// The longest run of consecutive segments (by order) holding at most `max_rows` rows
/// together, if it has at least two: a compaction holds its rows in memory, so what it
/// merges at once is bounded by configuration, not by how dense a day was.
pub(super) fn longest_run_within(by_order: &[Arc<SegmentMeta>], max_rows: u64) -> &[Arc<SegmentMeta>] {
    let (mut best, mut start, mut rows) = ((0, 0), 0, 0u64);
    for (end, s) in by_order.iter().enumerate() {
        rows += s.rows;
        while rows > max_rows && start <= end {
            rows -= by_order[start].rows;
            start += 1;
        }
        if end + 1 - start > best.1 - best.0 {
            best = (start, end + 1);
        }
    }
    if best.1 - best.0 >= 2 { &by_order[best.0..best.1] } else { &[] }
}

/// The order of a merge's output: the highest of this node's inputs (an adopted segment's
/// order is another node's numbering: counted as below all of ours).
pub(super) fn merged_order(inputs: &[Arc<SegmentMeta>]) -> u64 {
    inputs.iter().filter(|s| !s.foreign).map(|s| s.order).max().unwrap_or(0)
}

pub(super) fn non_overlapping(segs: &[Arc<SegmentMeta>]) -> bool {
    let mut ranges: Vec<(i64, i64)> = segs.iter().map(|s| (s.min_ms, s.max_ms)).collect();
    ranges.sort();
    ranges.windows(2).all(|w| w[0].1 < w[1].0)
}

impl Inner {
    /// Picks the segments of a partition to merge, if any: all of them when they overlap in
    /// time or the day is over, else the longest run (by order) of small segments. Merging a
    /// run that is contiguous in order keeps last-write-wins intact.
    pub(super) fn compaction_pick(&self, segs: &[Arc<SegmentMeta>], day: i64, now: i64) -> Vec<Arc<SegmentMeta>> {
        // Archive segments span days: only the archive pass merges them. Cluster mode: only
        // the node that writes a patient's part of the shared lake merges adopted segments.
        let segs: Vec<Arc<SegmentMeta>> =
            segs.iter().filter(|s| !s.is_archive() && (!s.foreign || self.writes(&s.patient))).cloned().collect();
        if segs.len() < 2 {
            return Vec::new();
        }
        let mut by_order = segs.clone();
        by_order.sort_by_key(|s| s.precedence());
        let day_over = day + MS_PER_DAY + 3_600_000 <= now;
        if day_over || !non_overlapping(&segs) {
            return longest_run_within(&by_order, self.config.compact_max_rows).to_vec();
        }
        let mut best: &[Arc<SegmentMeta>] = &[];
        let mut start = 0;
        for i in 0..=by_order.len() {
            if i == by_order.len() || by_order[i].rows >= SMALL_SEGMENT_ROWS {
                if i - start > best.len() {
                    best = &by_order[start..i];
                }
                start = i + 1;
            }
        }
        let best = longest_run_within(best, self.config.compact_max_rows);
        if best.len() >= self.config.compact_min_segments.max(2) { best.to_vec() } else { Vec::new() }
    }

    /// The rows of `inputs` (oldest order first) merged with last write wins, from
    /// `keep_from` on, sample ids and sources kept.
    pub(super) fn merged_series(
        &self,
        inputs: &[Arc<SegmentMeta>],
        keep_from: i64,
    ) -> Result<Vec<SeriesRows>, StoreError> {
        let mut merged: MergedRows = BTreeMap::new();
        for s in inputs {
            for rows in segment::read(&self.segment_file(s)?, None, keep_from, i64::MAX, None, Extra::ALL)? {
                // Sample ids ride along by index into a side table while points are merged.
                let e = merged.entry(rows.device.clone()).or_default();
                let base = e.1.len() as u32;
                let pts: Vec<Point> = rows
                    .times
                    .iter()
                    .zip(&rows.values)
                    .enumerate()
                    .map(|(i, (&t, &v))| Point {
                        time_ms: t,
                        value: v,
                        id: base + i as u32,
                        source: rows.sources.get(i).copied().unwrap_or(Source::Unknown),
                    })
                    .collect();
                e.1.extend(rows.ids.iter().cloned());
                e.0 = if e.0.is_empty() { pts } else { merge_dedup(&e.0, &pts) };
            }
        }
        Ok(merged
            .into_iter()
            .map(|(device, (pts, ids))| SeriesRows {
                device,
                times: pts.iter().map(|p| p.time_ms).collect(),
                values: pts.iter().map(|p| p.value).collect(),
                ids: pts.iter().map(|p| ids.get(p.id as usize).cloned().flatten()).collect(),
                sources: pts.iter().map(|p| p.source).collect(),
            })
            .filter(|s| !s.times.is_empty())
            .collect())
    }

    /// Runs one round: at most `max_partitions` partitions, those with the most segments
    /// first, so that under a sustained load every partition gets its turn (a scan that
    /// stopped at the first partitions found left the others to pile up segments).
    pub(super) fn compact(&self, max_partitions: usize) -> Result<usize, StoreError> {
        let _m = self.maintenance.lock();
        let now = self.clock.now_ms();
        let jobs: Vec<CompactionJob> = {
            let g = self.read.read();
            let mut jobs: Vec<(usize, CompactionJob)> = Vec::new();
            for (key, days) in &g.index.series {
                for (day, segs) in days {
                    let pick = self.compaction_pick(segs, *day, now);
                    if !pick.is_empty() {
                        jobs.push((segs.len(), (key.clone(), *day, pick)));
                    }
                }
            }
            if jobs.len() > max_partitions {
                jobs.select_nth_unstable_by(max_partitions, |a, b| b.0.cmp(&a.0));
                jobs.truncate(max_partitions);
            }
            jobs.into_iter().map(|(_, job)| job).collect()
        };
        let count = jobs.len();
        for ((patient, metric), day, inputs) in jobs {
            let series = self.merged_series(&inputs, i64::MIN)?;
            let order = merged_order(&inputs);
            let mut manifest = self.manifest.lock();
            let id = manifest.allocate_ids(1);
            let mut dirs = BTreeSet::new();
            let (meta, rollup) = self.write_segment(id, metric, &patient, (day, None), order, &series, &mut dirs)?;
            if let Err(e) = self.sync_dirs(&dirs) {
                self.discard(std::iter::once(&meta));
                return Err(e);
            }
            manifest.commit(Edit {
                add: vec![meta.clone()],
                remove: inputs.iter().map(|s| s.id).collect(),
                ..Edit::default()
            })?;
            let meta = manifest.state.segments.get(&id).cloned().unwrap_or_else(|| Arc::new(meta));
            drop(manifest);
            self.cache_rollup(id, Arc::new(rollup));
            {
                let mut g = self.read.write();
                let key = (patient.clone(), metric);
                for s in &inputs {
                    g.index.remove(&key, s);
                }
                g.index.add(key, meta);
            }
            for s in &inputs {
                self.delete_files(s)?;
            }
            self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(order: u64, rows: u64) -> Arc<SegmentMeta> {
        Arc::new(SegmentMeta {
            id: order,
            metric: "heart_rate".into(),
            patient: "p-1".into(),
            day_ms: 0,
            until_day_ms: None,
            path: format!("{order}.parquet"),
            rows,
            bytes: rows * 8,
            min_ms: order as i64 * 1000,
            max_ms: order as i64 * 1000 + 999,
            order,
            last: Vec::new(),
            remote: false,
            cold: false,
            foreign: false,
        })
    }

    fn orders(run: &[Arc<SegmentMeta>]) -> Vec<u64> {
        run.iter().map(|s| s.order).collect()
    }

    #[test]
    fn a_compaction_merges_at_most_the_configured_rows() {
        let segs: Vec<_> =
            [(1, 600), (2, 300), (3, 300), (4, 300), (5, 900), (6, 50)].into_iter().map(|(o, r)| seg(o, r)).collect();
        // Everything fits: the whole partition.
        assert_eq!(orders(longest_run_within(&segs, 10_000)), vec![1, 2, 3, 4, 5, 6]);
        // 1,000 rows: the longest consecutive run within it.
        assert_eq!(orders(longest_run_within(&segs, 1_000)), vec![2, 3, 4]);
        // No two neighbours fit together: nothing to do.
        assert!(longest_run_within(&segs, 100).is_empty());
        assert!(longest_run_within(&[], 100).is_empty());
    }
}
