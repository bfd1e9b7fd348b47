//! The in-memory buffer: acknowledged samples not yet in segments, queryable at once.
//!
//! Per series the points are a sorted, de-duplicated prefix plus an arrival-order tail for
//! out-of-order writes; the tail is merged in when it grows past a quarter of the prefix,
//! which keeps inserts amortised O(1) even for imports that arrive backwards.

use std::collections::HashMap;

use vitals_core::{DeviceId, MetricId, PatientId, Sample, SampleId, Source};

/// One stored point. `id` is 0 for none, else 1 + an index into the buffer's id table.
/// (24 bytes: the source sits in what would be padding.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time_ms: i64,
    pub value: f64,
    pub id: u32,
    pub source: Source,
}

const MIN_TAIL: usize = 1024;

#[derive(Debug, Default)]
struct SeriesBuf {
    points: Vec<Point>,
    sorted_len: usize,
}

impl SeriesBuf {
    fn push(&mut self, p: Point) {
        if self.points.len() == self.sorted_len {
            match self.points.last_mut() {
                Some(last) if p.time_ms == last.time_ms => {
                    *last = p;
                    return;
                }
                Some(last) if p.time_ms < last.time_ms => {
                    self.points.push(p);
                    return;
                }
                _ => {}
            }
            self.points.push(p);
            self.sorted_len += 1;
        } else {
            self.points.push(p);
            if self.points.len() - self.sorted_len > MIN_TAIL.max(self.sorted_len / 4) {
                self.merge_tail();
            }
        }
    }

    fn merge_tail(&mut self) {
        let mut tail = self.points.split_off(self.sorted_len);
        tail.sort_by_key(|p| p.time_ms); // stable: later arrivals stay after earlier ones
        let head = std::mem::take(&mut self.points);
        self.points = merge_dedup(&head, &tail);
        self.sorted_len = self.points.len();
    }

    /// Sorted, de-duplicated points with `from <= time < to`.
    fn range(&self, from: i64, to: i64) -> Vec<Point> {
        let main = &self.points[..self.sorted_len];
        let lo = main.partition_point(|p| p.time_ms < from);
        let hi = main.partition_point(|p| p.time_ms < to);
        let mut tail: Vec<Point> =
            self.points[self.sorted_len..].iter().filter(|p| p.time_ms >= from && p.time_ms < to).copied().collect();
        if tail.is_empty() {
            return main[lo..hi].to_vec();
        }
        tail.sort_by_key(|p| p.time_ms);
        merge_dedup(&main[lo..hi], &tail)
    }

    /// The earliest and latest time held (written points, overwritten ones included).
    fn span(&self) -> Option<(i64, i64)> {
        let main = &self.points[..self.sorted_len];
        let mut span = main.first().zip(main.last()).map(|(a, b)| (a.time_ms, b.time_ms));
        for p in &self.points[self.sorted_len..] {
            span = Some(match span {
                None => (p.time_ms, p.time_ms),
                Some((lo, hi)) => (lo.min(p.time_ms), hi.max(p.time_ms)),
            });
        }
        span
    }

    fn latest(&self) -> Option<Point> {
        let main = self.points[..self.sorted_len].last().copied();
        self.points[self.sorted_len..].iter().copied().fold(main, |best, p| match best {
            Some(b) if b.time_ms > p.time_ms => Some(b),
            _ => Some(p),
        })
    }
}

/// Merges two time-sorted runs; on equal times the later element wins (`newer` over `older`,
/// and within a run the later position).
pub fn merge_dedup(older: &[Point], newer: &[Point]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() || j < newer.len() {
        // On equal times the older point goes first so that the newer one overwrites it.
        let take_newer = j < newer.len() && (i == older.len() || newer[j].time_ms < older[i].time_ms);
        let p = if take_newer {
            j += 1;
            newer[j - 1]
        } else {
            i += 1;
            older[i - 1]
        };
        match out.last_mut() {
            Some(last) if last.time_ms == p.time_ms => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Points of one device of one series, for readers.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePoints {
    pub device: Option<DeviceId>,
    pub points: Vec<Point>,
}

/// Acknowledged samples in memory.
#[derive(Debug, Default)]
pub struct Buffer {
    series: HashMap<(PatientId, MetricId), HashMap<Option<DeviceId>, SeriesBuf>>,
    ids: Vec<SampleId>,
    len: usize,
    /// Highest WAL seq whose samples are in this buffer.
    pub last_seq: u64,
}

impl Buffer {
    pub fn insert(&mut self, samples: &[Sample]) {
        let mut i = 0;
        while i < samples.len() {
            let s = &samples[i];
            let devices = self.series.entry((s.patient.clone(), s.metric)).or_default();
            let series = devices.entry(s.device.clone()).or_default();
            let mut j = i;
            while j < samples.len()
                && samples[j].patient == s.patient
                && samples[j].metric == s.metric
                && samples[j].device == s.device
            {
                let p = &samples[j];
                let id = match &p.id {
                    None => 0,
                    Some(id) => {
                        self.ids.push(id.clone());
                        self.ids.len() as u32
                    }
                };
                series.push(Point { time_ms: p.time_ms, value: p.value, id, source: p.source });
                j += 1;
            }
            self.len += j - i;
            i = j;
        }
    }

    /// Points written (including ones later overwritten).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn sample_id(&self, id: u32) -> Option<&SampleId> {
        if id == 0 { None } else { self.ids.get(id as usize - 1) }
    }

    /// Every device's points of one series in `[from, to)`, sorted and de-duplicated.
    pub fn read(
        &self,
        patient: &PatientId,
        metric: MetricId,
        device: Option<&DeviceId>,
        from: i64,
        to: i64,
    ) -> Vec<DevicePoints> {
        let Some(devices) = self.series.get(&(patient.clone(), metric)) else {
            return Vec::new();
        };
        let mut out: Vec<DevicePoints> = devices
            .iter()
            .filter(|(d, _)| device.is_none() || d.as_ref() == device)
            .map(|(d, s)| DevicePoints { device: d.clone(), points: s.range(from, to) })
            .filter(|d| !d.points.is_empty())
            .collect();
        out.sort_by(|a, b| a.device.cmp(&b.device));
        out
    }

    /// The newest point of every (metric, device) of a patient.
    pub fn latest(&self, patient: &PatientId) -> Vec<(MetricId, Option<DeviceId>, Point)> {
        let mut out = Vec::new();
        for ((p, m), devices) in &self.series {
            if p == patient {
                for (d, s) in devices {
                    if let Some(pt) = s.latest() {
                        out.push((*m, d.clone(), pt));
                    }
                }
            }
        }
        out
    }

    /// Every series key present, for listing patients and flushing.
    pub fn series_keys(&self) -> impl Iterator<Item = (&PatientId, MetricId)> {
        self.series.keys().map(|(p, m)| (p, *m))
    }

    /// Every series with the earliest and latest time of its points (all devices).
    pub fn series_spans(&self) -> impl Iterator<Item = (&PatientId, MetricId, i64, i64)> {
        self.series.iter().filter_map(|((p, m), devices)| {
            let spans = devices.values().filter_map(SeriesBuf::span);
            spans.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1))).map(|(lo, hi)| (p, *m, lo, hi))
        })
    }

    /// Every patient with its newest sample time.
    pub fn patients_last_seen(&self) -> HashMap<PatientId, i64> {
        let mut out: HashMap<PatientId, i64> = HashMap::new();
        for ((p, _), devices) in &self.series {
            for s in devices.values() {
                if let Some(pt) = s.latest() {
                    let e = out.entry(p.clone()).or_insert(i64::MIN);
                    *e = (*e).max(pt.time_ms);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn pt(t: i64, v: f64) -> Point {
        Point { time_ms: t, value: v, id: 0, source: Source::Native }
    }

    #[test]
    fn a_point_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Point>(), 24);
    }

    proptest! {
        /// Whatever the arrival order, a series reads back as "last write per time wins".
        #[test]
        fn series_matches_last_write_wins_model(writes in prop::collection::vec((0i64..300, -1000i32..1000), 0..3000), from in 0i64..300, len in 0i64..300) {
            let mut s = SeriesBuf::default();
            let mut model = BTreeMap::new();
            for (t, v) in &writes {
                s.push(pt(*t, f64::from(*v)));
                model.insert(*t, f64::from(*v));
            }
            let to = from + len;
            let got: Vec<(i64, f64)> = s.range(from, to).iter().map(|p| (p.time_ms, p.value)).collect();
            let want: Vec<(i64, f64)> = model.range(from..to).map(|(t, v)| (*t, *v)).collect();
            prop_assert_eq!(got, want);
            let latest = s.latest().map(|p| (p.time_ms, p.value));
            prop_assert_eq!(latest, model.iter().next_back().map(|(t, v)| (*t, *v)));
        }
    }

    #[test]
    fn merge_prefers_newer_run_on_ties() {
        let got = merge_dedup(&[pt(1, 1.0), pt(2, 2.0)], &[pt(2, 20.0), pt(3, 30.0)]);
        assert_eq!(got, vec![pt(1, 1.0), pt(2, 20.0), pt(3, 30.0)]);
    }
}
