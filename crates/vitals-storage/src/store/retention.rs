//! Retention: whole day partitions that ended before `now - retention` of their metric
//! leave the manifest, then the disk.

use super::*;

impl Inner {
    pub(super) fn apply_retention(&self) -> Result<usize, StoreError> {
        if self.config.retention.is_empty() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        let now = self.clock.now_ms();
        let doomed: Vec<((PatientId, MetricId), Arc<SegmentMeta>)> = {
            let g = self.read.read();
            let mut v = Vec::new();
            let mut seen = BTreeSet::new();
            for (key, days) in &g.index.series {
                let Some(keep) = self.config.retention.get(&key.1) else { continue };
                let cutoff = now - keep.as_millis() as i64;
                for (_, segs) in days.range(..day_start(cutoff)) {
                    for s in segs {
                        // An archive segment goes once its last day is out (under that day);
                        // one that is partly out is rewritten by the archive pass.
                        if s.last_day_ms() + MS_PER_DAY <= cutoff && seen.insert(s.id) {
                            v.push((key.clone(), Arc::clone(s)));
                        }
                    }
                }
            }
            v
        };
        // Archive segments that are partly out: rewritten without the days that are out.
        let partial: Vec<((PatientId, MetricId), Arc<SegmentMeta>, i64)> = {
            let g = self.read.read();
            let mut v = Vec::new();
            let mut seen = BTreeSet::new();
            for (key, days) in &g.index.series {
                let Some(keep) = self.config.retention.get(&key.1) else { continue };
                let keep_from = day_start(now - keep.as_millis() as i64);
                for (_, segs) in days.range(..keep_from) {
                    for s in segs {
                        if s.is_archive() && s.last_day_ms() >= keep_from && seen.insert(s.id) {
                            v.push((key.clone(), Arc::clone(s), keep_from));
                        }
                    }
                }
            }
            v
        };
        for (key, s, keep_from) in &partial {
            self.rewrite_archive(key, vec![Arc::clone(s)], *keep_from)?;
        }
        // Cluster mode: the shared lake's catalog forgets those days too (every node's
        // retention does the same; the first one does it).
        if let Some(shared) = &self.config.shared
            && !(doomed.is_empty() && partial.is_empty())
        {
            for (metric, keep) in &self.config.retention {
                shared.expire(self.catalog.get(*metric).code, day_start(now - keep.as_millis() as i64))?;
            }
        }
        if doomed.is_empty() {
            return Ok(partial.len());
        }
        self.manifest.lock().commit(Edit { remove: doomed.iter().map(|d| d.1.id).collect(), ..Edit::default() })?;
        {
            let mut g = self.read.write();
            for (key, s) in &doomed {
                g.index.remove(key, s);
            }
        }
        for (_, s) in &doomed {
            self.delete_files(s)?;
            self.remove_empty_parents(&self.lake.join(&s.path));
        }
        self.stats.segments_deleted_by_retention.fetch_add(doomed.len() as u64, Ordering::Relaxed);
        tracing::info!(segments = doomed.len(), "retention deleted old partitions");
        Ok(doomed.len())
    }
}
