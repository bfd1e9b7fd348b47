//! Immutable Parquet segments: one file per flush or compaction of one lake partition.
//!
//! Columns: `time` (timestamp ms UTC, delta-encoded), `value` (decimal(18, scale) with the
//! metric's catalog scale, so quantized readings become small delta-encoded integers that
//! every Parquet reader still sees as exact decimals), `device`, `sample_id` and `source`
//! (nullable strings, dictionary-encoded; segments written before sources have no `source`
//! column and read as source unknown). Rows are sorted by (device, time), unique per
//! (device, time).
//! Hourly rollups per device ride in the footer's key-value metadata (`vitals.rollup.v1`),
//! so aggregate queries over whole days never decode the rows.

use std::fs::File;

use crate::fs::Fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Decimal128Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use vitals_core::time::MS_PER_HOUR;
use vitals_core::{DeviceId, SampleId, Source};

const ROLLUP_KEY: &str = "vitals.rollup.v1";
/// Rows per row group: about 2 h of a 4 Hz signal, so a read of recent minutes decodes one
/// small group (groups are pruned by their `time` statistics) at little cost in size.
const MAX_ROW_GROUP_ROWS: usize = 32 * 1024;

/// Errors reading or writing a segment file.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: parquet: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{path}: arrow: {source}")]
    Arrow { path: PathBuf, source: arrow_schema::ArrowError },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// The rows of one device in a segment, time-sorted and unique by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRows {
    pub device: Option<DeviceId>,
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    pub ids: Vec<Option<SampleId>>,
    /// Per row, when read ([`Extra::sources`]) or to be written; empty otherwise.
    pub sources: Vec<Source>,
}

/// The optional columns a [`read`] decodes besides time, value and device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// Sample ids (compaction needs them, queries do not).
    pub ids: bool,
    /// Sources (compaction and SQL need them, the REST API does not).
    pub sources: bool,
}

impl Extra {
    /// Everything a segment holds, as compaction rewrites it.
    pub const ALL: Extra = Extra { ids: true, sources: true };
    /// Time, value and device only.
    pub const NONE: Extra = Extra { ids: false, sources: false };
}

/// Aggregates of one device over one UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HourAgg {
    pub hour_ms: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first_ms: i64,
    pub first: f64,
    pub last_ms: i64,
    pub last: f64,
}

impl HourAgg {
    fn start(hour_ms: i64, t: i64, v: f64) -> Self {
        HourAgg { hour_ms, count: 1, sum: v, min: v, max: v, first_ms: t, first: v, last_ms: t, last: v }
    }

    fn add(&mut self, t: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if t < self.first_ms {
            (self.first_ms, self.first) = (t, v);
        }
        if t >= self.last_ms {
            (self.last_ms, self.last) = (t, v);
        }
    }
}

/// Hourly rollups of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRollup {
    pub device: Option<String>,
    pub hours: Vec<HourAgg>,
}

/// What a written segment holds, for the manifest and the index.
#[derive(Debug, Clone)]
pub struct WrittenSegment {
    pub rows: u64,
    pub bytes: u64,
    pub min_ms: i64,
    pub max_ms: i64,
    pub rollup: Vec<DeviceRollup>,
}

/// Computes hourly rollups of time-sorted rows.
pub fn rollup(series: &[SeriesRows]) -> Vec<DeviceRollup> {
    series
        .iter()
        .map(|s| {
            let mut hours: Vec<HourAgg> = Vec::new();
            for (&t, &v) in s.times.iter().zip(&s.values) {
                let h = t.div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
                match hours.last_mut() {
                    Some(last) if last.hour_ms == h => last.add(t, v),
                    _ => hours.push(HourAgg::start(h, t, v)),
                }
            }
            DeviceRollup { device: s.device.as_ref().map(|d| d.as_str().to_owned()), hours }
        })
        .collect()
}

fn schema(scale: u8) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Decimal128(18, scale as i8), false),
        Field::new("device", DataType::Utf8, true),
        Field::new("sample_id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
    ]))
}

/// Writes `series` to `path` (fsynced), storing values with `scale` decimal digits.
pub fn write(fs: &dyn Fs, path: &Path, scale: u8, series: &[SeriesRows]) -> Result<WrittenSegment, SegmentError> {
    let perr = |source| SegmentError::Parquet { path: path.to_owned(), source };
    let aerr = |source| SegmentError::Arrow { path: path.to_owned(), source };
    let rows: usize = series.iter().map(|s| s.times.len()).sum();
    let p = 10f64.powi(i32::from(scale));
    let mut times = Vec::with_capacity(rows);
    let mut values = Vec::with_capacity(rows);
    let mut devices: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut ids: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut sources: Vec<Option<&str>> = Vec::with_capacity(rows);
    let (mut min_ms, mut max_ms) = (i64::MAX, i64::MIN);
    for s in series {
        let dev = s.device.as_ref().map(|d| d.as_str());
        for (i, (&t, &v)) in s.times.iter().zip(&s.values).enumerate() {
            times.push(t);
            values.push((v * p).round() as i128);
            devices.push(dev);
            ids.push(s.ids.get(i).and_then(|x| x.as_ref()).map(|x| x.as_str()));
            sources.push(s.sources.get(i).and_then(|x| x.name()));
            min_ms = min_ms.min(t);
            max_ms = max_ms.max(t);
        }
    }
    let rollup = rollup(series);
    let rollup_json = serde_json::to_string(&rollup).map_err(|e| SegmentError::Format {
        path: path.to_owned(),
        reason: format!("rollup does not serialize: {e}"),
    })?;
    let schema = schema(scale);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
        Arc::new(Decimal128Array::from(values).with_precision_and_scale(18, scale as i8).map_err(aerr)?),
        Arc::new(StringArray::from(devices)),
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(sources)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(aerr)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(perr)?))
        .set_column_dictionary_enabled(ColumnPath::from("time"), false)
        .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::DELTA_BINARY_PACKED)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(ROLLUP_KEY.to_owned(), rollup_json)]))
        .build();
    let file = fs.create(path).map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(perr)?;
    w.write(&batch).map_err(perr)?;
    let mut file = w.into_inner().map_err(perr)?;
    file.sync_all().map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    let bytes = file.len().map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    Ok(WrittenSegment { rows: rows as u64, bytes, min_ms, max_ms, rollup })
}

/// Reads and parses a segment's footer, for [`read`] to reuse across queries.
pub fn load_metadata(path: &Path) -> Result<ArrowReaderMetadata, SegmentError> {
    let file = File::open(path).map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
        .map_err(|source| SegmentError::Parquet { path: path.to_owned(), source })
}

/// Reads the rows of a segment with `from <= time < to`, optionally of one device, with
/// the `extra` columns asked for.
/// `metadata` is the footer from [`load_metadata`] if the caller cached it.
pub fn read(
    path: &Path,
    metadata: Option<&ArrowReaderMetadata>,
    from: i64,
    to: i64,
    device: Option<&DeviceId>,
    extra: Extra,
) -> Result<Vec<SeriesRows>, SegmentError> {
    let perr = |source| SegmentError::Parquet { path: path.to_owned(), source };
    let ferr = |reason: &str| SegmentError::Format { path: path.to_owned(), reason: reason.to_owned() };
    let file = File::open(path).map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    let builder = match metadata {
        Some(m) => ParquetRecordBatchReaderBuilder::new_with_metadata(file, m.clone()),
        None => ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?,
    };
    // Skip row groups whose time statistics lie outside the range.
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(0).statistics() {
            Some(Statistics::Int64(st)) => match (st.min_opt(), st.max_opt()) {
                (Some(lo), Some(hi)) => *hi >= from && *lo < to,
                _ => true,
            },
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    let wanted = |name: &str| match name {
        "time" | "value" | "device" => true,
        "sample_id" => extra.ids,
        "source" => extra.sources,
        _ => false,
    };
    let columns: Vec<usize> = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted(f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
    let reader =
        builder.with_row_groups(groups).with_projection(mask).with_batch_size(64 * 1024).build().map_err(perr)?;
    let mut out: Vec<SeriesRows> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| SegmentError::Arrow { path: path.to_owned(), source })?;
        let t = batch
            .column_by_name("time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| ferr("no time column"))?;
        let v = batch
            .column_by_name("value")
            .and_then(|c| c.as_any().downcast_ref::<Decimal128Array>())
            .ok_or_else(|| ferr("no decimal value column"))?;
        let d = batch
            .column_by_name("device")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| ferr("no device column"))?;
        let ids = batch.column_by_name("sample_id").and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let sources = batch.column_by_name("source").and_then(|c| c.as_any().downcast_ref::<StringArray>());
        // Sources repeat: name lookups are remembered for the run of equal names.
        let mut last_source: (Option<&str>, Source) = (None, Source::Unknown);
        let div = 10f64.powi(i32::from(v.scale()));
        for i in 0..batch.num_rows() {
            let time = t.value(i);
            if time < from || time >= to {
                continue;
            }
            let dev = if d.is_null(i) { None } else { Some(d.value(i)) };
            if let Some(want) = device
                && dev != Some(want.as_str())
            {
                continue;
            }
            let same = out.last().is_some_and(|s| s.device.as_ref().map(|x| x.as_str()) == dev);
            if !same {
                let device = match dev {
                    None => None,
                    Some(s) => Some(DeviceId::new(s).map_err(|e| ferr(&format!("device {s:?} {e}")))?),
                };
                out.push(SeriesRows { device, ..SeriesRows::default() });
            }
            let s = out.last_mut().ok_or_else(|| ferr("unreachable: no series"))?;
            s.times.push(time);
            s.values.push(v.value(i) as f64 / div);
            if let Some(ids) = ids {
                s.ids.push(if ids.is_null(i) { None } else { SampleId::new(ids.value(i)).ok() });
            }
            if extra.sources {
                let name = sources.and_then(|a| if a.is_null(i) { None } else { Some(a.value(i)) });
                if name != last_source.0 {
                    last_source = (name, name.map(Source::from_name).unwrap_or(Source::Unknown));
                }
                s.sources.push(last_source.1);
            }
        }
    }
    Ok(out)
}

/// Reads the hourly rollups from a segment's footer.
pub fn read_rollup(path: &Path) -> Result<Vec<DeviceRollup>, SegmentError> {
    let file = File::open(path).map_err(|source| SegmentError::Io { path: path.to_owned(), source })?;
    let reader =
        SerializedFileReader::new(file).map_err(|source| SegmentError::Parquet { path: path.to_owned(), source })?;
    let kv = reader.metadata().file_metadata().key_value_metadata();
    let json = kv
        .and_then(|kv| kv.iter().find(|e| e.key == ROLLUP_KEY))
        .and_then(|e| e.value.as_deref())
        .ok_or_else(|| SegmentError::Format { path: path.to_owned(), reason: format!("no {ROLLUP_KEY} metadata") })?;
    serde_json::from_str(json)
        .map_err(|e| SegmentError::Format { path: path.to_owned(), reason: format!("bad rollup: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_round_trips_rows_and_rollups() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("part.parquet");
        let series = vec![
            SeriesRows {
                device: None,
                times: vec![0, 1_000, MS_PER_HOUR + 5],
                values: vec![60.0, 61.5, 70.0],
                ids: vec![None, Some(SampleId::new("a").expect("id")), None],
                sources: vec![Source::Native, Source::Native, Source::Nightscout],
            },
            SeriesRows {
                device: Some(DeviceId::new("w1").expect("id")),
                times: vec![10],
                values: vec![0.125],
                ids: vec![None],
                sources: vec![Source::Unknown],
            },
        ];
        let w = write(&crate::fs::RealFs, &path, 3, &series).expect("write");
        assert_eq!((w.rows, w.min_ms, w.max_ms), (4, 0, MS_PER_HOUR + 5));
        let back = read(&path, None, i64::MIN, i64::MAX, None, Extra::ALL).expect("read");
        assert_eq!(back, series);
        let only = read(&path, Some(&load_metadata(&path).expect("footer")), 1_000, MS_PER_HOUR, None, Extra::NONE)
            .expect("range");
        assert!(only[0].ids.is_empty() && only[0].sources.is_empty(), "ids and sources are only read when asked");
        assert_eq!(only[0].times, vec![1_000]);
        let dev = read(&path, None, i64::MIN, i64::MAX, Some(&DeviceId::new("w1").expect("id")), Extra::NONE)
            .expect("device");
        assert_eq!(dev.len(), 1);
        assert_eq!(dev[0].values, vec![0.125]);
        let r = read_rollup(&path).expect("rollup");
        assert_eq!(r, w.rollup);
        assert_eq!(r[0].hours.len(), 2);
        assert_eq!((r[0].hours[0].count, r[0].hours[0].sum, r[0].hours[0].last), (2, 121.5, 61.5));
    }

    /// Segments written before sources existed have no `source` column: they read back
    /// with every row's source unknown.
    #[test]
    fn a_segment_without_a_source_column_reads_as_source_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("old.parquet");
        let old = Arc::new(Schema::new(
            schema(0).fields().iter().filter(|f| f.name() != "source").cloned().collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(vec![5, 6]).with_timezone("UTC")),
            Arc::new(Decimal128Array::from(vec![60, 61]).with_precision_and_scale(18, 0).expect("decimal")),
            Arc::new(StringArray::from(vec![None::<&str>, None])),
            Arc::new(StringArray::from(vec![None::<&str>, Some("x")])),
        ];
        let batch = RecordBatch::try_new(old.clone(), columns).expect("batch");
        let mut w = ArrowWriter::try_new(File::create(&path).expect("create"), old, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let back = read(&path, None, i64::MIN, i64::MAX, None, Extra::ALL).expect("read");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].values, vec![60.0, 61.0]);
        assert_eq!(back[0].sources, vec![Source::Unknown, Source::Unknown]);
        assert_eq!(back[0].ids, vec![None, Some(SampleId::new("x").expect("id"))]);
    }
}
