//! The native formats: a JSON array, `{"samples": [...]}`, NDJSON, and CSV
//! `patient,metric,time,value[,unit,device]`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use vitals_core::{RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;

/// Which native encoding a body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of samples or an object `{"samples": [...]}`.
    Json,
    /// One JSON sample per line.
    Ndjson,
    /// `patient,metric,time,value[,unit,device]`, with or without that header row.
    Csv,
}

impl Format {
    /// Picks the format from a `Content-Type` value (parameters ignored); JSON by default.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        let mime = ct.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonlines" | "application/x-jsonlines" => {
                Format::Ndjson
            }
            "text/csv" | "application/csv" => Format::Csv,
            _ => Format::Json,
        }
    }

    /// Guesses the format of a file from its first non-blank bytes.
    pub fn sniff(bytes: &[u8]) -> Format {
        let first = bytes.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &bytes[i..]).unwrap_or(&[]);
        match first.first() {
            Some(b'[') => Format::Json,
            Some(b'{') => {
                // `{"samples": [` is one JSON document; `{"patient"...}\n{...}` is NDJSON.
                let head = &first[..first.len().min(64)];
                let compact: Vec<u8> = head.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
                if compact.starts_with(b"{\"samples\":") { Format::Json } else { Format::Ndjson }
            }
            _ => Format::Csv,
        }
    }
}

/// A body that cannot be decoded at all (as opposed to single bad items).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("expected a JSON array of samples or an object {{\"samples\": [...]}}, found {found}")]
    Shape { found: String },
    #[error("the body is not UTF-8 text (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
}

/// Decodes and validates a native body.
pub fn decode(body: &[u8], format: Format, validator: &mut Validator<'_>) -> Result<Batch, DecodeError> {
    match format {
        Format::Json => decode_json(body, validator),
        Format::Ndjson => Ok(decode_ndjson(body, validator)),
        Format::Csv => decode_csv(body, validator),
    }
}

fn decode_json(body: &[u8], validator: &mut Validator<'_>) -> Result<Batch, DecodeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let items: Vec<Item<'_>> = match first {
        Some(b'[') => serde_json::from_slice(body).map_err(syntax)?,
        Some(b'{') => {
            let env: Envelope<'_> = serde_json::from_slice(body).map_err(syntax)?;
            env.samples.ok_or_else(|| DecodeError::Shape { found: "an object without \"samples\"".into() })?
        }
        Some(b) => return Err(DecodeError::Shape { found: format!("{:?}", char::from(b)) }),
        None => return Err(DecodeError::Shape { found: "an empty body".into() }),
    };
    let mut batch = Batch::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        push(&mut batch, validator, i, item);
    }
    Ok(batch)
}

fn decode_ndjson(body: &[u8], validator: &mut Validator<'_>) -> Batch {
    let mut batch = Batch::with_capacity(body.len() / 96);
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Item<'_>>(line) {
            Ok(item) => push(&mut batch, validator, i, item),
            Err(e) => {
                batch.items += 1;
                batch.reject(Rejection::new(
                    i,
                    RejectCode::Malformed,
                    format!("invalid JSON at column {}: {e}", e.column()),
                ));
            }
        }
    }
    batch
}

fn decode_csv(body: &[u8], validator: &mut Validator<'_>) -> Result<Batch, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::NotUtf8 { offset: e.valid_up_to() })?;
    let mut batch = Batch::with_capacity(text.len() / 48);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        // Items are numbered by their 0-based line in the body, header included.
        let index = reader.position().line().saturating_sub(1) as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                batch.items += 1;
                batch.reject(Rejection::new(index, RejectCode::Malformed, e.to_string()));
                continue;
            }
        }
        let index = record.position().map(|p| p.line().saturating_sub(1) as usize).unwrap_or(index);
        if std::mem::take(&mut first) && record.get(0).map(str::trim) == Some("patient") {
            continue; // the header row
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        batch.items += 1;
        if !(4..=6).contains(&record.len()) {
            batch.reject(Rejection::new(
                index,
                RejectCode::Malformed,
                format!("{} fields, expected patient,metric,time,value[,unit,device]", record.len()),
            ));
            continue;
        }
        let field = |i: usize| record.get(i).map(str::trim).filter(|s| !s.is_empty());
        let value = match field(3).map(str::parse::<f64>) {
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                batch.reject(Rejection::new(
                    index,
                    RejectCode::InvalidField,
                    format!("value {:?} is not a number", field(3).unwrap_or_default()),
                ));
                continue;
            }
            None => {
                batch.reject(Rejection::new(index, RejectCode::MissingField, "no value"));
                continue;
            }
        };
        let (Some(patient), Some(metric), Some(time)) = (field(0), field(1), field(2)) else {
            batch.reject(Rejection::new(index, RejectCode::MissingField, "patient, metric and time are required"));
            continue;
        };
        let raw = RawSample {
            patient: Cow::Borrowed(patient),
            metric: Cow::Borrowed(metric),
            time: RawTime::Text(Cow::Borrowed(time)),
            value,
            unit: field(4).map(Cow::Borrowed),
            device: field(5).map(Cow::Borrowed),
            id: None,
        };
        match validator.validate(index, &raw) {
            Ok(s) => batch.samples.push(s),
            Err(r) => batch.reject(r),
        }
    }
    Ok(batch)
}

fn push(batch: &mut Batch, validator: &mut Validator<'_>, index: usize, item: Item<'_>) {
    batch.items += 1;
    match item.into_raw(index).and_then(|raw| validator.validate(index, &raw)) {
        Ok(s) => batch.samples.push(s),
        Err(r) => batch.reject(r),
    }
}

fn syntax(e: serde_json::Error) -> DecodeError {
    DecodeError::Syntax { line: e.line(), column: e.column(), message: e.to_string() }
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    samples: Option<Vec<Item<'a>>>,
}

/// A JSON value of any type, kept without failing so that a wrong type rejects one item,
/// not the batch.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Null,
    Other(&'static str),
}

impl Field<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Field::Str(_) => "a string",
            Field::Int(_) | Field::Float(_) => "a number",
            Field::Null => "null",
            Field::Other(k) => k,
        }
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<Field<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'a>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'a>, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Field<'a>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Field<'a>, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field<'a>, E> {
                Ok(i64::try_from(v).map(Field::Int).unwrap_or(Field::Float(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Field<'a>, E> {
                Ok(Field::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'a>, E> {
                Ok(Field::Other("a boolean"))
            }
            fn visit_unit<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other("an object"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One array element or NDJSON line: an object with whatever fields it had, or not an object.
#[derive(Debug, Default)]
struct Item<'a> {
    not_object: Option<&'static str>,
    patient: Option<Field<'a>>,
    metric: Option<Field<'a>>,
    time: Option<Field<'a>>,
    value: Option<Field<'a>>,
    unit: Option<Field<'a>>,
    device: Option<Field<'a>>,
    id: Option<Field<'a>>,
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Item<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<Item<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Item<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'a>, A::Error> {
                let mut item = Item::default();
                // Keys go through `Field` so they borrow from the body (serde's `Cow` always copies).
                while let Some(key) = map.next_key::<Field<'a>>()? {
                    let key = match &key {
                        Field::Str(k) => &**k,
                        _ => "",
                    };
                    let slot = match key {
                        "patient" => &mut item.patient,
                        "metric" => &mut item.metric,
                        "time" => &mut item.time,
                        "value" => &mut item.value,
                        "unit" => &mut item.unit,
                        "device" => &mut item.device,
                        "id" => &mut item.id,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Field<'a>>()?);
                }
                Ok(item)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item { not_object: Some("an array"), ..Item::default() })
            }
            fn visit_str<E>(self, _: &str) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("a string"), ..Item::default() })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("a number"), ..Item::default() })
            }
            fn visit_u64<E>(self, _: u64) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("a number"), ..Item::default() })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("a number"), ..Item::default() })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("a boolean"), ..Item::default() })
            }
            fn visit_unit<E>(self) -> Result<Item<'a>, E> {
                Ok(Item { not_object: Some("null"), ..Item::default() })
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Item<'a> {
    fn into_raw(self, index: usize) -> Result<RawSample<'a>, Rejection> {
        if let Some(kind) = self.not_object {
            return Err(Rejection::new(index, RejectCode::Malformed, format!("item {index} is {kind}, not an object")));
        }
        let missing =
            |name: &str| Rejection::new(index, RejectCode::MissingField, format!("item {index}: no {name:?}"));
        let wrong = |name: &str, want: &str, f: &Field<'_>| {
            Rejection::new(
                index,
                RejectCode::InvalidField,
                format!("item {index}: {name:?} must be {want}, not {}", f.kind()),
            )
        };
        let req_str = |name: &str, f: Option<Field<'a>>| match f {
            Some(Field::Str(s)) => Ok(s),
            None | Some(Field::Null) => Err(missing(name)),
            Some(other) => Err(wrong(name, "a string", &other)),
        };
        let opt_str = |name: &str, f: Option<Field<'a>>| match f {
            Some(Field::Str(s)) => Ok(Some(s)),
            None | Some(Field::Null) => Ok(None),
            Some(other) => Err(wrong(name, "a string", &other)),
        };
        let patient = req_str("patient", self.patient)?;
        let metric = req_str("metric", self.metric)?;
        let time = match self.time {
            Some(Field::Str(s)) => RawTime::Text(s),
            Some(Field::Int(ms)) => RawTime::Ms(ms),
            Some(Field::Float(ms)) => RawTime::FloatMs(ms),
            None | Some(Field::Null) => return Err(missing("time")),
            Some(other) => return Err(wrong("time", "an RFC 3339 string or milliseconds", &other)),
        };
        let value = match self.value {
            Some(Field::Int(v)) => v as f64,
            Some(Field::Float(v)) => v,
            None | Some(Field::Null) => return Err(missing("value")),
            Some(other) => return Err(wrong("value", "a number", &other)),
        };
        Ok(RawSample {
            patient,
            metric,
            time,
            value,
            unit: opt_str("unit", self.unit)?,
            device: opt_str("device", self.device)?,
            id: opt_str("id", self.id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_763_780_400_000;

    fn run(body: &str, format: Format) -> Result<Batch, DecodeError> {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        decode(body.as_bytes(), format, &mut v)
    }

    fn codes(b: &Batch) -> Vec<(usize, RejectCode)> {
        b.rejections.iter().map(|r| (r.index, r.code)).collect()
    }

    #[test]
    fn json_array_and_envelope_decode_the_same() {
        let items = r#"[{"patient":"p-1","metric":"heart_rate","time":"2025-11-22T03:00:00Z","value":72,"unit":"bpm","device":"w1","id":"s1"},
                        {"patient":"p-1","metric":"heart_rate","time":1763780401000,"value":73.0}]"#;
        let a = run(items, Format::Json).expect("array");
        let b = run(&format!("{{\"samples\": {items}, \"extra\": 1}}"), Format::Json).expect("envelope");
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.samples.len(), 2);
        assert_eq!(a.samples[0].time_ms, NOW);
        assert_eq!(a.samples[0].device.as_ref().map(|d| d.as_str()), Some("w1"));
        assert_eq!(a.samples[1].value, 73.0);
    }

    #[test]
    fn one_bad_item_never_fails_the_batch() {
        let body = r#"[
            {"patient":"p-1","metric":"heart_rate","time":1763780400000,"value":72},
            5,
            {"metric":"heart_rate","time":1763780400000,"value":72},
            {"patient":"p-1","metric":"heart_rate","time":true,"value":72},
            {"patient":"p-1","metric":"heart_rate","time":1763780400000,"value":"72"},
            {"patient":"p-1","metric":"heart_rate","time":1763780400000,"value":72,"device":7},
            {"patient":"p-1","metric":"nope","time":1763780400000,"value":72},
            {"patient":"p-1","metric":"heart_rate","time":1763780400000,"value":null}
        ]"#;
        let b = run(body, Format::Json).expect("decodes");
        assert_eq!(b.samples.len(), 1);
        assert_eq!(b.items, 8);
        assert_eq!(
            codes(&b),
            vec![
                (1, RejectCode::Malformed),
                (2, RejectCode::MissingField),
                (3, RejectCode::InvalidField),
                (4, RejectCode::InvalidField),
                (5, RejectCode::InvalidField),
                (6, RejectCode::UnknownMetric),
                (7, RejectCode::MissingField),
            ]
        );
    }

    #[test]
    fn unparseable_bodies_say_where() {
        let cases = [
            ("[{\"patient\": \"p\",\n \"metric\" }]", "line 2"),
            ("", "empty body"),
            ("42", "'4'"),
            ("{\"data\": []}", "without \"samples\""),
        ];
        for (body, want) in cases {
            let e = run(body, Format::Json).expect_err(body);
            assert!(e.to_string().contains(want), "{body:?}: {e}");
        }
    }

    #[test]
    fn ndjson_rejects_bad_lines_only() {
        let body = "{\"patient\":\"p-1\",\"metric\":\"eda\",\"time\":1763780400000,\"value\":0.25}\r\n\n{oops\n{\"patient\":\"p-1\",\"metric\":\"eda\",\"time\":1763780400250,\"value\":0.26}";
        let b = run(body, Format::Ndjson).expect("ndjson");
        assert_eq!(b.samples.len(), 2);
        assert_eq!(codes(&b), vec![(2, RejectCode::Malformed)]);
        assert!(b.rejections[0].message.contains("column"), "{}", b.rejections[0].message);
    }

    #[test]
    fn csv_with_and_without_header() {
        let body = "patient,metric,time,value,unit,device\np-1,blood_glucose,2025-11-22T03:00:00Z,5.5,mmol/L,cgm\np-1,blood_glucose,1763780100000,101\np-1,blood_glucose,x\np-1,blood_glucose,1763780100000,abc\n";
        let b = run(body, Format::Csv).expect("csv");
        assert_eq!(b.samples.len(), 2);
        assert_eq!(b.samples[0].value, 99.1);
        assert_eq!(codes(&b), vec![(3, RejectCode::Malformed), (4, RejectCode::InvalidField)]);
        let b = run("p-1,heart_rate,1763780100000,60\n", Format::Csv).expect("csv");
        assert_eq!(b.samples.len(), 1);
    }

    #[test]
    fn formats_are_chosen_by_content_type_and_sniffed_from_files() {
        assert_eq!(Format::from_content_type(Some("application/x-ndjson; charset=utf-8")), Format::Ndjson);
        assert_eq!(Format::from_content_type(Some("text/csv")), Format::Csv);
        assert_eq!(Format::from_content_type(None), Format::Json);
        assert_eq!(Format::sniff(b"  [{}]"), Format::Json);
        assert_eq!(Format::sniff(b"{ \"samples\" : []}"), Format::Json);
        assert_eq!(Format::sniff(b"{\"patient\":\"p\"}\n{}"), Format::Ndjson);
        assert_eq!(Format::sniff(b"patient,metric"), Format::Csv);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for f in [Format::Json, Format::Ndjson, Format::Csv] {
                let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
                let _ = decode(&bytes, f, &mut v);
            }
        }

        #[test]
        fn ndjson_counts_every_nonblank_line(lines in proptest::collection::vec("[ -~]{0,40}", 0..20)) {
            let body = lines.join("\n");
            let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
            let b = decode(body.as_bytes(), Format::Ndjson, &mut v).expect("ndjson never fails whole");
            let nonblank = lines.iter().filter(|l| !l.trim().is_empty()).count();
            proptest::prop_assert_eq!(b.samples.len() + b.rejections.len(), nonblank);
        }
    }
}
