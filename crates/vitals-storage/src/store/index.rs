//! The index of segments: per series (patient, metric), per UTC day, the segments holding
//! rows of that day (an archive segment under each day it spans), with the lake's sizes.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) series: HashMap<SeriesKey, Days>,
    pub(super) sizes: StoreSizes,
}

impl Index {
    /// Adds a segment under every day it holds (an archive segment under each of its days).
    pub(super) fn add(&mut self, key: (PatientId, MetricId), meta: Arc<SegmentMeta>) {
        self.sizes.segments += 1;
        self.sizes.segment_bytes += meta.bytes;
        self.sizes.segment_rows += meta.rows;
        let days = self.series.entry(key).or_default();
        for day in meta.days() {
            days.entry(day).or_default().push(Arc::clone(&meta));
        }
    }

    pub(super) fn remove(&mut self, key: &(PatientId, MetricId), meta: &SegmentMeta) {
        let Some(days) = self.series.get_mut(key) else { return };
        let mut found = false;
        for day in meta.days() {
            let Some(segs) = days.get_mut(&day) else { continue };
            if let Some(pos) = segs.iter().position(|s| s.id == meta.id) {
                segs.remove(pos);
                found = true;
            }
            if segs.is_empty() {
                days.remove(&day);
            }
        }
        if found {
            self.sizes.segments -= 1;
            self.sizes.segment_bytes -= meta.bytes;
            self.sizes.segment_rows -= meta.rows;
        }
        if days.is_empty() {
            self.series.remove(key);
        }
    }

    /// Swaps in the new metadata of a segment (same id, days and size; another tier).
    pub(super) fn replace(&mut self, key: &(PatientId, MetricId), meta: Arc<SegmentMeta>) {
        let Some(days) = self.series.get_mut(key) else { return };
        for day in meta.days() {
            if let Some(s) = days.get_mut(&day).and_then(|segs| segs.iter_mut().find(|s| s.id == meta.id)) {
                *s = Arc::clone(&meta);
            }
        }
    }
}
