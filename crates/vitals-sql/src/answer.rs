//! Writing an [`Answer`] in the formats analysts' tools read: JSON (columns and rows of
//! values), CSV (RFC 4180, a header line, RFC 3339 times), Arrow IPC (stream), Parquet
//! (zstd) and a text table for terminals.

use std::str::FromStr;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type};
use datafusion::arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use crate::Answer;

/// An answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
    Table,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Json, Format::Csv, Format::Arrow, Format::Parquet, Format::Table];

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
            Format::Table => "table",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Table => "text/plain; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for, if it names one.
    pub fn from_media_type(accept: &str) -> Option<Format> {
        accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).find_map(|m| {
            Some(match m.as_str() {
                "application/json" => Format::Json,
                "text/csv" => Format::Csv,
                "application/vnd.apache.arrow.stream" => Format::Arrow,
                "application/vnd.apache.parquet" | "application/x-parquet" => Format::Parquet,
                "text/plain" => Format::Table,
                _ => return None,
            })
        })
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown format {s:?}; use json, csv, arrow, parquet or table"))
    }
}

/// Writes an answer in a format.
pub fn encode(answer: &Answer, format: Format) -> Result<Vec<u8>, ArrowError> {
    match format {
        Format::Json => serde_json::to_vec(&json(answer)?).map_err(|e| ArrowError::ExternalError(Box::new(e))),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                if answer.batches.is_empty() {
                    // The header alone: an empty batch of the schema.
                    w.write(&datafusion::arrow::record_batch::RecordBatch::new_empty(answer.schema.clone()))?;
                }
                for b in &answer.batches {
                    w.write(b)?;
                }
            }
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &answer.schema)?;
                for b in &answer.batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            Ok(out)
        }
        Format::Parquet => {
            use parquet::arrow::ArrowWriter;
            use parquet::basic::{Compression, ZstdLevel};
            use parquet::file::properties::WriterProperties;
            let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
            let mut out = Vec::new();
            let mut w = ArrowWriter::try_new(&mut out, answer.schema.clone(), Some(props))
                .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
            for b in &answer.batches {
                w.write(b).map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
            }
            w.close().map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
            Ok(out)
        }
        Format::Table => {
            let mut t = datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)?.to_string();
            if answer.batches.is_empty() {
                t = answer.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(" | ");
            }
            t.push_str(&format!("\n({} row{})\n", answer.rows, if answer.rows == 1 { "" } else { "s" }));
            Ok(t.into_bytes())
        }
    }
}

/// `{"columns": [{"name", "type"}], "rows": [[...]], "row_count": n}`: numbers and
/// booleans as JSON values (NaN and infinities as null), everything else as text.
pub fn json(answer: &Answer) -> Result<Value, ArrowError> {
    let columns: Vec<Value> = answer
        .schema
        .fields()
        .iter()
        .map(|f| {
            let mut m = Map::new();
            m.insert("name".into(), Value::String(f.name().clone()));
            m.insert("type".into(), Value::String(f.data_type().to_string()));
            Value::Object(m)
        })
        .collect();
    let mut rows: Vec<Value> = Vec::with_capacity(answer.rows);
    for b in &answer.batches {
        let cols: Vec<Vec<Value>> = b.columns().iter().map(values).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(Value::Array(cols.iter().map(|c| c[i].clone()).collect()));
        }
    }
    let mut m = Map::new();
    m.insert("columns".into(), Value::Array(columns));
    m.insert("row_count".into(), Value::from(answer.rows));
    m.insert("rows".into(), Value::Array(rows));
    Ok(Value::Object(m))
}

/// One column's values as JSON.
pub fn values(a: &ArrayRef) -> Result<Vec<Value>, ArrowError> {
    fn nums<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
        a: &ArrayRef,
        f: impl Fn(T::Native) -> Value,
    ) -> Vec<Value> {
        let p = a.as_primitive::<T>();
        (0..p.len()).map(|i| if p.is_null(i) { Value::Null } else { f(p.value(i)) }).collect()
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    Ok(match a.data_type() {
        DataType::Null => vec![Value::Null; a.len()],
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..b.len()).map(|i| if b.is_null(i) { Value::Null } else { Value::Bool(b.value(i)) }).collect()
        }
        DataType::Int8 => nums::<Int8Type>(a, Value::from),
        DataType::Int16 => nums::<Int16Type>(a, Value::from),
        DataType::Int32 => nums::<Int32Type>(a, Value::from),
        DataType::Int64 => nums::<Int64Type>(a, Value::from),
        DataType::UInt8 => nums::<UInt8Type>(a, Value::from),
        DataType::UInt16 => nums::<UInt16Type>(a, Value::from),
        DataType::UInt32 => nums::<UInt32Type>(a, Value::from),
        DataType::UInt64 => nums::<UInt64Type>(a, Value::from),
        DataType::Float32 => nums::<Float32Type>(a, |v| float(f64::from(v))),
        DataType::Float64 => nums::<Float64Type>(a, float),
        _ => {
            let opts = FormatOptions::default().with_null("");
            let f = ArrayFormatter::try_new(a.as_ref(), &opts)?;
            (0..a.len())
                .map(|i| if a.is_null(i) { Value::Null } else { Value::String(f.value(i).to_string()) })
                .collect()
        }
    })
}
