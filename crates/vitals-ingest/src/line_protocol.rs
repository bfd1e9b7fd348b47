//! InfluxDB line protocol (1.x `/write`, 2.x `/api/v2/write`), mapped onto samples.
//!
//! `<measurement>[,<tag>=<value>...] <field>=<value>[,<field>=<value>...] [<timestamp>]`
//! per line. The parser is a hand-written byte scanner that borrows from the body unless
//! a token has escapes. Mapping: a measurement named in [`Mapping::rules`] uses its rule
//! (the epilepsy platform's `heart`, `temperature`, `electro_dermal_activity` by default);
//! any other measurement is read generically: the measurement is the metric code, tags
//! `patient`, `device`, `id` and `unit`, field `value` is the sample, and a field `f` is
//! metric `<measurement>_<f>` when the catalog has it (e.g. `heart_rate min=58` ->
//! `heart_rate_min`).

use std::borrow::Cow;
use std::str::FromStr;

use vitals_core::{RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;

/// Units of the timestamps in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        Ok(match s {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => return Err(format!("precision {other:?} must be one of ns, u, ms, s, m, h")),
        })
    }
}

impl Precision {
    fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Precision::Microseconds => Some(t.div_euclid(1_000)),
            Precision::Milliseconds => Some(t),
            Precision::Seconds => t.checked_mul(1_000),
            Precision::Minutes => t.checked_mul(60_000),
            Precision::Hours => t.checked_mul(3_600_000),
        }
    }
}

/// How one measurement maps onto samples.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementRule {
    /// The measurement name this rule applies to.
    pub measurement: String,
    /// The catalog metric code the values become.
    pub metric: String,
    /// The tag holding the patient pseudonym.
    pub patient_tag: String,
    /// The tag holding the device id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_tag: Option<String>,
    /// The tag holding a per-sample id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_tag: Option<String>,
    /// The field holding the value; if absent from a line and the line has exactly one
    /// numeric field, that field is used.
    #[serde(default = "default_field")]
    pub field: String,
    /// The unit the values are in (converted through the catalog); canonical if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

fn default_field() -> String {
    "value".into()
}

/// Measurement rules; measurements without a rule are read generically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub rules: Vec<MeasurementRule>,
}

impl Mapping {
    /// The epilepsy-alert platform's schema: tags `uuid` (sample id), `user` (patient),
    /// `type`, `device_adress` (sic); millisecond timestamps are the client's choice.
    pub fn epilepsy_platform() -> Vec<MeasurementRule> {
        [("heart", "rr_interval"), ("temperature", "skin_temperature"), ("electro_dermal_activity", "eda")]
            .into_iter()
            .map(|(m, metric)| MeasurementRule {
                measurement: m.into(),
                metric: metric.into(),
                patient_tag: "user".into(),
                device_tag: Some("device_adress".into()),
                id_tag: Some("uuid".into()),
                field: "value".into(),
                unit: None,
            })
            .collect()
    }

    fn rule(&self, measurement: &str) -> Option<&MeasurementRule> {
        self.rules.iter().find(|r| r.measurement == measurement)
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping { rules: Mapping::epilepsy_platform() }
    }
}

/// A field value as written.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    Str(Cow<'a, str>),
    Bool(bool),
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
struct Point<'a> {
    measurement: Cow<'a, str>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    timestamp: Option<i64>,
}

impl Point<'_> {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

/// Decodes a body. Rejections are indexed by 0-based line; lines that fail to parse are
/// `malformed` with the column.
pub fn decode(
    body: &[u8],
    precision: Precision,
    mapping: &Mapping,
    validator: &mut Validator<'_>,
    now_ms: i64,
) -> Batch {
    let mut batch = Batch::with_capacity(body.len() / 48);
    for (line_no, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = trim_start(line);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        let point = match std::str::from_utf8(line).map_err(|e| (e.valid_up_to(), "invalid UTF-8")).and_then(parse_line)
        {
            Ok(p) => p,
            Err((col, why)) => {
                batch.items += 1;
                batch.reject(Rejection::new(line_no, RejectCode::Malformed, format!("{why} at column {}", col + 1)));
                continue;
            }
        };
        map_point(&point, line_no, precision, mapping, validator, now_ms, &mut batch);
    }
    batch
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    &b[n..]
}

#[allow(clippy::too_many_arguments)] // reason: one call site; the pieces are all needed
fn map_point(
    p: &Point<'_>,
    line: usize,
    precision: Precision,
    mapping: &Mapping,
    validator: &mut Validator<'_>,
    now_ms: i64,
    batch: &mut Batch,
) {
    let time = match p.timestamp {
        None => RawTime::Ms(now_ms),
        Some(t) => match precision.to_ms(t) {
            Some(ms) => RawTime::Ms(ms),
            None => {
                batch.items += 1;
                batch.reject(Rejection::new(line, RejectCode::InvalidTime, format!("timestamp {t} overflows")));
                return;
            }
        },
    };
    if let Some(rule) = mapping.rule(&p.measurement) {
        let field = p.fields.iter().find(|(k, _)| *k == rule.field).or_else(|| {
            let mut numeric = p.fields.iter().filter(|(_, v)| matches!(v, FieldValue::Float(_) | FieldValue::Int(_)));
            match (numeric.next(), numeric.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        });
        let Some((name, value)) = field else {
            batch.items += 1;
            batch.reject(Rejection::new(line, RejectCode::MissingField, format!("no field {:?}", rule.field)));
            return;
        };
        let who = Who {
            patient: p.tag(&rule.patient_tag),
            device: rule.device_tag.as_deref().and_then(|t| p.tag(t)),
            id: rule.id_tag.as_deref().and_then(|t| p.tag(t)),
            unit: rule.unit.as_deref(),
        };
        emit(batch, validator, line, &time, Cow::Borrowed(rule.metric.as_str()), name, value, &who);
        return;
    }
    let catalog = validator.catalog();
    for (name, value) in &p.fields {
        let metric: Cow<'_, str> = if name == "value" {
            Cow::Borrowed(&*p.measurement)
        } else {
            let combined = format!("{}_{name}", p.measurement);
            if catalog.id(&combined).is_none() {
                batch.items += 1;
                batch.reject(Rejection::new(
                    line,
                    RejectCode::UnknownMetric,
                    format!("field {name:?} of measurement {:?}: no metric {combined:?}", p.measurement),
                ));
                continue;
            }
            Cow::Owned(combined)
        };
        let who = Who { patient: p.tag("patient"), device: p.tag("device"), id: p.tag("id"), unit: p.tag("unit") };
        emit(batch, validator, line, &time, metric, name, value, &who);
    }
}

/// Whose sample a field is, read from the tags.
struct Who<'a> {
    patient: Option<&'a str>,
    device: Option<&'a str>,
    id: Option<&'a str>,
    unit: Option<&'a str>,
}

#[allow(clippy::too_many_arguments)] // reason: a private step of map_point
fn emit(
    batch: &mut Batch,
    validator: &mut Validator<'_>,
    line: usize,
    time: &RawTime<'_>,
    metric: Cow<'_, str>,
    field: &str,
    value: &FieldValue<'_>,
    who: &Who<'_>,
) {
    batch.items += 1;
    let value = match value {
        FieldValue::Float(v) => *v,
        FieldValue::Int(v) => *v as f64,
        FieldValue::Str(_) | FieldValue::Bool(_) => {
            batch.reject(Rejection::new(line, RejectCode::InvalidField, format!("field {field:?} is not a number")));
            return;
        }
    };
    let Some(patient) = who.patient else {
        batch.reject(Rejection::new(line, RejectCode::MissingField, "no patient tag"));
        return;
    };
    let raw = RawSample {
        patient: Cow::Borrowed(patient),
        metric,
        time: time.clone(),
        value,
        unit: who.unit.map(Cow::Borrowed),
        device: who.device.map(Cow::Borrowed),
        id: who.id.map(Cow::Borrowed),
    };
    match validator.validate(line, &raw) {
        Ok(s) => batch.samples.push(s),
        Err(r) => batch.reject(r),
    }
}

type ParseError = (usize, &'static str);

/// Parses one line (without its newline).
fn parse_line(line: &str) -> Result<Point<'_>, ParseError> {
    let b = line.as_bytes();
    let mut i = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    let (measurement, next) = token(line, i, b", ")?;
    if measurement.is_empty() {
        return Err((i, "missing measurement"));
    }
    i = next;
    let mut tags = Vec::new();
    while i < b.len() && b[i] == b',' {
        let (k, n) = token(line, i + 1, b"=, ")?;
        if k.is_empty() || n >= b.len() || b[n] != b'=' {
            return Err((n, "expected tag key=value"));
        }
        let (v, n2) = token(line, n + 1, b", ")?;
        if v.is_empty() {
            return Err((n + 1, "empty tag value"));
        }
        tags.push((k, v));
        i = n2;
    }
    if i >= b.len() || b[i] != b' ' {
        return Err((i, "expected a space before the fields"));
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let mut fields = Vec::new();
    loop {
        let (k, n) = token(line, i, b"=, ")?;
        if k.is_empty() || n >= b.len() || b[n] != b'=' {
            return Err((n.min(b.len()), "expected field key=value"));
        }
        let (v, n2) = field_value(line, n + 1)?;
        fields.push((k, v));
        i = n2;
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let timestamp = if i < b.len() {
        let rest = line[i..].trim_end();
        Some(rest.parse::<i64>().map_err(|_| (i, "invalid timestamp"))?)
    } else {
        None
    };
    Ok(Point { measurement, tags, fields, timestamp })
}

/// Reads a token up to an unescaped stop byte; `\` escapes the next byte.
fn token<'a>(line: &'a str, start: usize, stops: &[u8]) -> Result<(Cow<'a, str>, usize), ParseError> {
    let b = line.as_bytes();
    let mut i = start;
    let mut escaped = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            escaped = true;
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        i += 1;
    }
    let raw = &line[start..i];
    if !escaped {
        return Ok((Cow::Borrowed(raw), i));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '=' | ' ' | '"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok((Cow::Owned(out), i))
}

fn field_value(line: &str, start: usize) -> Result<(FieldValue<'_>, usize), ParseError> {
    let b = line.as_bytes();
    if start >= b.len() {
        return Err((start, "missing field value"));
    }
    if b[start] == b'"' {
        let mut i = start + 1;
        let mut escaped = false;
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                escaped = true;
                i += 1;
            }
            i += 1;
        }
        if i >= b.len() {
            return Err((start, "unterminated string field"));
        }
        let raw = &line[start + 1..i];
        let s = if escaped { Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\")) } else { Cow::Borrowed(raw) };
        return Ok((FieldValue::Str(s), i + 1));
    }
    let end = start + b[start..].iter().take_while(|c| **c != b',' && **c != b' ').count();
    let raw = &line[start..end];
    let v = match raw {
        "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Bool(true),
        "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Bool(false),
        _ if raw.ends_with('i') => {
            FieldValue::Int(raw[..raw.len() - 1].parse().map_err(|_| (start, "invalid integer field"))?)
        }
        _ if raw.ends_with('u') => {
            FieldValue::Int(raw[..raw.len() - 1].parse().map_err(|_| (start, "invalid unsigned field"))?)
        }
        _ => {
            let f: f64 = raw.parse().map_err(|_| (start, "invalid field value"))?;
            if raw.eq_ignore_ascii_case("nan") || raw.to_ascii_lowercase().contains("inf") {
                return Err((start, "invalid field value"));
            }
            FieldValue::Float(f)
        }
    };
    Ok((v, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_763_780_400_000;

    fn run(body: &str, precision: Precision) -> Batch {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        decode(body.as_bytes(), precision, &Mapping::default(), &mut v, NOW)
    }

    #[test]
    fn parses_the_syntax_with_escapes_and_every_field_type() {
        let p =
            parse_line(r#"my\ meas\,x,tag\=k=v\ 1,t2=x f=1.5,i=-3i,u=7u,s="a \"q\" \\ b",b=true 1700000000000000000"#)
                .expect("parse");
        assert_eq!(p.measurement, "my meas,x");
        assert_eq!(p.tags, vec![(Cow::from("tag=k"), Cow::from("v 1")), (Cow::from("t2"), Cow::from("x"))]);
        assert_eq!(
            p.fields,
            vec![
                (Cow::from("f"), FieldValue::Float(1.5)),
                (Cow::from("i"), FieldValue::Int(-3)),
                (Cow::from("u"), FieldValue::Int(7)),
                (Cow::from("s"), FieldValue::Str(Cow::from("a \"q\" \\ b"))),
                (Cow::from("b"), FieldValue::Bool(true)),
            ]
        );
        assert_eq!(p.timestamp, Some(1_700_000_000_000_000_000));
        assert_eq!(parse_line("m v=1").expect("no tags, no time").timestamp, None);
    }

    #[test]
    fn malformed_lines_say_where() {
        let cases = [
            ("", "missing measurement"),
            ("m", "expected a space"),
            ("m,t v=1", "expected tag key=value"),
            ("m,t= v=1", "empty tag value"),
            ("m v", "expected field key=value"),
            ("m v=", "missing field value"),
            ("m v=abc", "invalid field value"),
            ("m v=1x", "invalid field value"),
            ("m v=\"open", "unterminated string"),
            ("m v=1 12:00", "invalid timestamp"),
            ("m v=NaN", "invalid field value"),
        ];
        for (line, want) in cases {
            let (_, why) = parse_line(line).expect_err(line);
            assert!(why.contains(want), "{line:?}: {why}");
        }
    }

    #[test]
    fn generic_lines_become_samples_with_precision_and_derived_metrics() {
        let body = "heart_rate,patient=p-17,device=w1 value=72 1763780400000\n\
                    heart_rate,device=e4-22,patient=p-17 min=58i,max=71i,avg=63.5 1763780400000\n\
                    blood_glucose,patient=p-17,unit=mmol/L value=5.5 1763780400\n\
                    # a comment\n\
                    \n\
                    note,patient=p-17 text=\"meal\" 1763780400000\n\
                    eda,patient=p-17 value=0.412";
        let b = run(body, Precision::Milliseconds);
        let codes: Vec<(usize, RejectCode)> = b.rejections.iter().map(|r| (r.index, r.code)).collect();
        // Line 1: avg has no metric; line 2 is in seconds but sent with ms precision (1970: not
        // rejected, it is a valid old time) ...
        assert!(codes.contains(&(1, RejectCode::UnknownMetric)), "{codes:?}");
        assert!(codes.contains(&(5, RejectCode::UnknownMetric)), "{codes:?}");
        let metrics: Vec<&str> = b.samples.iter().map(|s| Catalog::standard().get(s.metric).code).collect();
        assert_eq!(metrics, vec!["heart_rate", "heart_rate_min", "heart_rate_max", "blood_glucose", "eda"]);
        assert_eq!(b.samples[0].device.as_ref().map(|d| d.as_str()), Some("w1"));
        assert_eq!(b.samples[3].value, 99.1);
        assert_eq!(b.samples[4].time_ms, NOW, "no timestamp: server time");
        let b = run("blood_glucose,patient=p value=100 1763780400", Precision::Seconds);
        assert_eq!(b.samples[0].time_ms, NOW);
        let b = run("blood_glucose,patient=p value=100 1763780400000000000", Precision::Nanoseconds);
        assert_eq!(b.samples[0].time_ms, NOW);
        assert_eq!(b.items, b.samples.len() + b.rejections.len());
    }

    #[test]
    fn the_epilepsy_platform_schema_is_read_as_it_is() {
        let body = "heart,uuid=5f2c-01,user=0b9f5c2e-6d55-4d4a-9a43-6f1f5d9e2c11,type=rr,device_adress=AA:BB value=812 1763780400000\n\
                    temperature,uuid=5f2c-02,user=0b9f5c2e-6d55-4d4a-9a43-6f1f5d9e2c11,type=temp,device_adress=AABB value=33.41 1763780400250\n\
                    electro_dermal_activity,uuid=5f2c-03,user=0b9f5c2e-6d55-4d4a-9a43-6f1f5d9e2c11,type=eda,device_adress=AABB eda=0.25 1763780400500\n\
                    heart,uuid=5f2c-04,type=rr value=800 1763780400000";
        let b = run(body, Precision::Milliseconds);
        let metrics: Vec<&str> = b.samples.iter().map(|s| Catalog::standard().get(s.metric).code).collect();
        assert_eq!(metrics, vec!["rr_interval", "skin_temperature", "eda"], "{:?}", b.rejections);
        assert_eq!(b.samples[0].device.as_ref().map(|d| d.as_str()), Some("AA:BB"), "MAC addresses are device ids");
        assert_eq!(b.rejections.len(), 1);
        assert_eq!((b.rejections[0].index, b.rejections[0].code), (3, RejectCode::MissingField));
        assert_eq!(b.samples[1].id.as_ref().map(|i| i.as_str()), Some("5f2c-02"));
        assert_eq!(b.samples[2].value, 0.25, "a single numeric field is the value");
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_and_accounts_for_every_item(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
            let b = decode(&bytes, Precision::Milliseconds, &Mapping::default(), &mut v, NOW);
            proptest::prop_assert_eq!(b.items, b.samples.len() + b.rejections.len());
        }

        #[test]
        fn written_points_parse_back(m in "[a-z_]{1,8}", p in "[a-z0-9-]{1,8}", v in -1e6f64..1e6, t in 0i64..4_000_000_000_000) {
            let line = format!("{m},patient={p} value={v} {t}");
            let point = parse_line(&line).expect("parses");
            proptest::prop_assert_eq!(point.tag("patient"), Some(p.as_str()));
            proptest::prop_assert_eq!(&point.fields[0].1, &FieldValue::Float(v));
            proptest::prop_assert_eq!(point.timestamp, Some(t));
        }
    }
}
