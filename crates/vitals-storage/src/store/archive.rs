//! Compaction across days. Once a month ended `archive_after` ago, the segments of each
//! (patient, metric) in it are merged into archive segments of consecutive days, at most
//! `archive_max_rows` rows each, under
//! `archive/metric=<code>/year=<yyyy>/month=<mm>/patient=<id>/part-<id>.parquet`: fewer and
//! larger files (fewer objects in a bucket, less per-file overhead, longer delta runs) for
//! data that no longer changes. Day partitions keep the months not yet archived.
//!
//! An archive segment is listed in the index under every day it spans; reads take each day's
//! part of it (row groups pruned by time) and its rollups' hours of that day. Late samples
//! for an archived day go to an ordinary day segment with a higher order (last write wins);
//! the next pass merges them into a new archive segment. Retention deletes an archive
//! segment whose last day is out, and rewrites one that is partly out without those days.

use super::*;

/// Archive merges per maintenance round.
pub(super) const MAX_ARCHIVES_PER_ROUND: usize = 4;

/// The start of the UTC month after the one holding `day_ms`.
fn next_month_start(day_ms: i64) -> i64 {
    let (_, month, d) = civil_day(day_ms);
    let first = day_ms - (i64::from(d) - 1) * MS_PER_DAY;
    let mut t = first + 27 * MS_PER_DAY;
    while civil_day(t).1 == month {
        t += MS_PER_DAY;
    }
    t
}

/// Groups the segments of one month into archive merges: segments whose days overlap stay
/// together (a late day segment with the archive segment holding its day), and clusters of
/// consecutive days are packed up to `max_rows`. Only groups of two or more segments are
/// merged, so a month already archived is left alone; a cluster larger than twice
/// `max_rows` (a re-import over an archived month) is left as it is.
pub(super) fn archive_groups(mut segs: Vec<Arc<SegmentMeta>>, max_rows: u64) -> Vec<Vec<Arc<SegmentMeta>>> {
    segs.sort_by_key(|s| (s.day_ms, s.precedence()));
    let mut clusters: Vec<(i64, Vec<Arc<SegmentMeta>>)> = Vec::new();
    for s in segs {
        match clusters.last_mut() {
            Some((end, members)) if s.day_ms <= *end => {
                *end = (*end).max(s.last_day_ms());
                members.push(s);
            }
            _ => clusters.push((s.last_day_ms(), vec![s])),
        }
    }
    let rows = |v: &[Arc<SegmentMeta>]| v.iter().map(|s| s.rows).sum::<u64>();
    let mut groups: Vec<Vec<Arc<SegmentMeta>>> = Vec::new();
    let mut current: Vec<Arc<SegmentMeta>> = Vec::new();
    for (_, members) in clusters {
        let n = rows(&members);
        if n > max_rows.saturating_mul(2) {
            groups.push(std::mem::take(&mut current));
            continue;
        }
        if !current.is_empty() && rows(&current) + n > max_rows {
            groups.push(std::mem::take(&mut current));
        }
        current.extend(members);
    }
    groups.push(current);
    groups.retain(|g| g.len() >= 2);
    groups
}

impl Inner {
    /// One round: at most `max_jobs` merges of months that ended `archive_after` ago.
    pub(super) fn archive(&self, max_jobs: usize) -> Result<usize, StoreError> {
        let Some(after) = self.config.archive_after else { return Ok(0) };
        let _m = self.maintenance.lock();
        let now = self.clock.now_ms();
        let after = after.as_millis() as i64;
        let jobs: Vec<(SeriesKey, Vec<Arc<SegmentMeta>>)> = {
            let g = self.read.read();
            let mut jobs = Vec::new();
            'series: for (key, days) in &g.index.series {
                // Cluster mode: the writer of the patient's part of the shared lake archives.
                if !self.writes(key.0.as_str()) {
                    continue;
                }
                let mut months: BTreeMap<i64, BTreeMap<u64, Arc<SegmentMeta>>> = BTreeMap::new();
                for (day, segs) in days {
                    let end = next_month_start(*day);
                    if end.saturating_add(after) > now {
                        break; // this month and every later one are still open
                    }
                    for s in segs {
                        months.entry(end).or_default().insert(s.id, Arc::clone(s));
                    }
                }
                for segs in months.into_values() {
                    for group in archive_groups(segs.into_values().collect(), self.config.archive_max_rows) {
                        jobs.push((key.clone(), group));
                        if jobs.len() >= max_jobs {
                            break 'series;
                        }
                    }
                }
            }
            jobs
        };
        let count = jobs.len();
        for (key, inputs) in jobs {
            self.rewrite_archive(&key, inputs, i64::MIN)?;
        }
        Ok(count)
    }

    /// Replaces `inputs` by one archive segment of their rows from `keep_from` on (none if
    /// no row is left), by one manifest edit; then deletes their files.
    pub(super) fn rewrite_archive(
        &self,
        key: &SeriesKey,
        mut inputs: Vec<Arc<SegmentMeta>>,
        keep_from: i64,
    ) -> Result<(), StoreError> {
        let (patient, metric) = key;
        // Oldest first: equal times resolve to the newest.
        inputs.sort_by_key(|s| s.precedence());
        let series = self.merged_series(&inputs, keep_from)?;
        let first = inputs.iter().map(|s| s.day_ms).min().unwrap_or(0).max(day_start(keep_from.max(0)));
        let last = inputs.iter().map(|s| s.last_day_ms()).max().unwrap_or(first);
        let order = super::compaction::merged_order(&inputs);
        let mut manifest = self.manifest.lock();
        let mut added: Option<(Arc<SegmentMeta>, Vec<DeviceRollup>)> = None;
        if !series.is_empty() {
            let id = manifest.allocate_ids(1);
            let mut dirs = BTreeSet::new();
            let (meta, rollup) =
                self.write_segment(id, *metric, patient, (first, Some(last)), order, &series, &mut dirs)?;
            if let Err(e) = self.sync_dirs(&dirs) {
                self.discard(std::iter::once(&meta));
                return Err(e);
            }
            added = Some((Arc::new(meta), rollup));
        }
        manifest.commit(Edit {
            add: added.iter().map(|(m, _)| SegmentMeta::clone(m)).collect(),
            remove: inputs.iter().map(|s| s.id).collect(),
            ..Edit::default()
        })?;
        let added = added.map(|(m, r)| (manifest.state.segments.get(&m.id).cloned().unwrap_or(m), r));
        drop(manifest);
        {
            let mut g = self.read.write();
            for s in &inputs {
                g.index.remove(key, s);
            }
            if let Some((meta, _)) = &added {
                g.index.add(key.clone(), Arc::clone(meta));
            }
        }
        if let Some((meta, rollup)) = added {
            self.cache_rollup(meta.id, Arc::new(rollup));
        }
        for s in &inputs {
            self.delete_files(s)?;
            self.remove_empty_parents(&self.lake.join(&s.path));
        }
        self.stats.archived.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MS_PER_DAY;

    fn seg(id: u64, day: i64, until: Option<i64>, rows: u64) -> Arc<SegmentMeta> {
        Arc::new(SegmentMeta {
            id,
            metric: "heart_rate".into(),
            patient: "p-1".into(),
            day_ms: day * DAY,
            until_day_ms: until.map(|d| d * DAY),
            path: format!("{id}.parquet"),
            rows,
            bytes: rows,
            min_ms: day * DAY,
            max_ms: until.unwrap_or(day) * DAY + DAY - 1,
            order: id,
            last: Vec::new(),
            remote: false,
            cold: false,
            foreign: false,
        })
    }

    fn ids(groups: &[Vec<Arc<SegmentMeta>>]) -> Vec<Vec<u64>> {
        groups.iter().map(|g| g.iter().map(|s| s.id).collect()).collect()
    }

    #[test]
    fn months_end_where_the_calendar_says() {
        // 2024-02-10 (a leap year) -> 2024-03-01; 2025-12-31 -> 2026-01-01.
        assert_eq!(next_month_start(19_763 * DAY), 19_783 * DAY);
        assert_eq!(civil_day(next_month_start(20_453 * DAY)), (2026, 1, 1));
        assert_eq!(civil_day(next_month_start(19_783 * DAY)), (2024, 4, 1));
    }

    #[test]
    fn days_are_packed_up_to_the_row_limit_and_late_data_stays_with_its_archive() {
        // Ten days of 300 rows: groups of three days under 1,000 rows; the lone last day
        // is left as it is.
        let days: Vec<_> = (0..10).map(|d| seg(d as u64 + 1, d, None, 300)).collect();
        assert_eq!(ids(&archive_groups(days, 1000)), vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        // An archive of days 0-2 and a late segment of day 1: merged together.
        let late = vec![seg(1, 0, Some(2), 900), seg(5, 1, None, 10), seg(2, 3, Some(5), 900)];
        assert_eq!(ids(&archive_groups(late, 1000)), vec![vec![1, 5]]);
        // An archived month alone is left alone.
        assert!(archive_groups(vec![seg(1, 0, Some(30), 50)], 1000).is_empty());
        // Small archives next to each other are packed into one.
        assert_eq!(
            ids(&archive_groups(vec![seg(1, 0, Some(9), 50), seg(2, 10, Some(19), 50)], 1000)),
            vec![vec![1, 2]]
        );
        // A cluster far over the limit is not held in memory.
        assert!(archive_groups(vec![seg(1, 0, Some(2), 5000), seg(2, 1, None, 10)], 1000).is_empty());
    }
}
