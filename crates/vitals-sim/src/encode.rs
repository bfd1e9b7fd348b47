//! Wire encodings of generated readings: native NDJSON and CSV, and InfluxDB line protocol
//! (the generic form: measurement = metric, tags patient and device, field value, ms).

use std::fmt::Write as _;

use crate::model::Reading;

/// Output encodings for files and for the native and line-protocol ingest paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ndjson,
    Csv,
    Line,
}

impl Encoding {
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Ndjson => "ndjson",
            Encoding::Csv => "csv",
            Encoding::Line => "lp",
        }
    }

    /// Text that starts a file (the CSV header).
    pub fn header(self) -> &'static str {
        match self {
            Encoding::Csv => "patient,metric,time,value,unit,device\n",
            _ => "",
        }
    }

    /// Appends one reading as one line.
    pub fn push(self, buf: &mut String, patient: &str, device: &str, r: &Reading) {
        // Patient and device ids are pseudonyms of [A-Za-z0-9._:-]: nothing to escape.
        let _ = match self {
            Encoding::Ndjson => writeln!(
                buf,
                r#"{{"patient":"{patient}","metric":"{}","time":{},"value":{},"device":"{device}"}}"#,
                r.metric, r.time_ms, r.value
            ),
            Encoding::Csv => writeln!(buf, "{patient},{},{},{},,{device}", r.metric, r.time_ms, r.value),
            Encoding::Line => {
                writeln!(buf, "{},patient={patient},device={device} value={} {}", r.metric, r.value, r.time_ms)
            }
        };
    }
}
