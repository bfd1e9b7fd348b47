//! Empatica E4-style per-signal CSV files (research wristbands, as used in epilepsy
//! studies): `EDA.csv`, `TEMP.csv`, `HR.csv`, `BVP.csv`, `ACC.csv` have the session start
//! (UNIX seconds) on the first row and the sample rate (Hz) on the second, then one row
//! per sample (ACC: x, y, z in 1/64 g); `IBI.csv` has `<start>, IBI` then rows of
//! `<seconds since start>, <interval in seconds>`. `tags.csv` (button presses) holds events,
//! which are not stored yet. Rejections are indexed by 0-based line.

use std::borrow::Cow;

use vitals_core::{Event, RawSample, RawTime, RejectCode, Rejection, Validator};

use crate::batch::Batch;

/// The signal files of a session this decoder reads, by file name.
pub const SIGNAL_FILES: [&str; 6] = ["EDA.csv", "TEMP.csv", "HR.csv", "BVP.csv", "ACC.csv", "IBI.csv"];

/// Why a whole file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmpaticaError {
    #[error("{file}: {reason}")]
    Header { file: String, reason: String },
}

fn header_error(file: &str, reason: impl Into<String>) -> EmpaticaError {
    EmpaticaError::Header { file: file.to_owned(), reason: reason.into() }
}

fn first_number(line: &str) -> Option<f64> {
    line.split(',').next()?.trim().parse().ok()
}

/// Decodes `tags.csv` (one UNIX timestamp in seconds per line: the wearer pressed the
/// button) into `tag` events; lines that are not timestamps are refused by 0-based line.
pub fn decode_tags(text: &str, patient: &str, device: &str) -> (Vec<Event>, Vec<Rejection>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (line, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match l.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=vitals_core::time::MAX_TIME_MS as f64 / 1000.0).contains(&s) => {
                let t = (s * 1000.0).round() as i64;
                let mut attributes = std::collections::BTreeMap::new();
                attributes.insert("device".to_owned(), serde_json::Value::String(device.to_owned()));
                events.push(Event {
                    id: Event::content_id(patient, "tag", t, t, device),
                    patient: patient.to_owned(),
                    kind: "tag".into(),
                    start_ms: t,
                    end_ms: t,
                    source: "empatica".into(),
                    attributes,
                });
            }
            _ => bad.push(Rejection::new(
                line,
                RejectCode::InvalidTime,
                format!("tags.csv line {}: {l:?} is not a UNIX time", line + 1),
            )),
        }
    }
    (events, bad)
}

/// Decodes one signal file of a session.
pub fn decode(
    file_name: &str,
    text: &str,
    patient: &str,
    device: &str,
    validator: &mut Validator<'_>,
) -> Result<Batch, EmpaticaError> {
    let mut lines = text.lines();
    let start_line = lines.next().ok_or_else(|| header_error(file_name, "empty file"))?;
    let start_s = first_number(start_line)
        .ok_or_else(|| header_error(file_name, "line 1 must be the session start (UNIX seconds)"))?;
    let start_ms = (start_s * 1000.0).round() as i64;
    let mut batch = Batch::default();
    let mut push =
        |batch: &mut Batch, line: usize, metric: &'static str, t_ms: i64, value: f64, unit: Option<&'static str>| {
            batch.items += 1;
            let raw = RawSample {
                patient: Cow::Borrowed(patient),
                metric: Cow::Borrowed(metric),
                time: RawTime::Ms(t_ms),
                value,
                unit: unit.map(Cow::Borrowed),
                device: Some(Cow::Borrowed(device)),
                id: None,
            };
            match validator.validate(line, &raw) {
                Ok(s) => batch.samples.push(s),
                Err(r) => batch.reject(r),
            }
        };
    let bad = |batch: &mut Batch, line: usize, why: String| {
        batch.items += 1;
        batch.reject(Rejection::new(line, RejectCode::Malformed, why));
    };
    if file_name.eq_ignore_ascii_case("IBI.csv") {
        for (i, l) in lines.enumerate() {
            let line = i + 1;
            if l.trim().is_empty() {
                continue;
            }
            let mut cols = l.split(',').map(|c| c.trim().parse::<f64>());
            match (cols.next(), cols.next()) {
                (Some(Ok(offset)), Some(Ok(ibi))) => {
                    push(
                        &mut batch,
                        line,
                        "rr_interval",
                        start_ms.saturating_add((offset * 1000.0).round() as i64),
                        ibi,
                        Some("s"),
                    );
                }
                _ => bad(&mut batch, line, format!("expected <seconds>, <interval>, got {l:?}")),
            }
        }
        return Ok(batch);
    }
    let (metrics, unit): (&[&'static str], Option<&'static str>) = match file_name.to_ascii_uppercase().as_str() {
        "EDA.CSV" => (&["eda"], None),
        "TEMP.CSV" => (&["skin_temperature"], Some("degC")),
        "HR.CSV" => (&["heart_rate"], None),
        "BVP.CSV" => (&["bvp"], None),
        "ACC.CSV" => (&["acceleration_x", "acceleration_y", "acceleration_z"], Some("1/64g")),
        _ => return Err(header_error(file_name, "not an E4 signal file")),
    };
    let rate_line = lines.next().ok_or_else(|| header_error(file_name, "no sample rate on line 2"))?;
    let rate = first_number(rate_line)
        .filter(|r| *r > 0.0 && r.is_finite())
        .ok_or_else(|| header_error(file_name, "line 2 must be the sample rate in Hz"))?;
    for (i, l) in lines.enumerate() {
        let line = i + 2;
        if l.trim().is_empty() {
            continue;
        }
        let t = start_ms.saturating_add((i as f64 * 1000.0 / rate).round() as i64);
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        if cols.len() < metrics.len() {
            bad(&mut batch, line, format!("expected {} columns, got {l:?}", metrics.len()));
            continue;
        }
        for (m, c) in metrics.iter().zip(&cols) {
            match c.parse::<f64>() {
                Ok(v) => push(&mut batch, line, m, t, v, unit),
                Err(_) => bad(&mut batch, line, format!("{c:?} is not a number")),
            }
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    const NOW: i64 = 1_763_780_400_000;

    fn run(name: &str, text: &str) -> Result<Batch, EmpaticaError> {
        let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
        decode(name, text, "p-1", "e4-a01", &mut v)
    }

    #[test]
    fn sampled_signals_get_times_from_start_and_rate() {
        let b = run("EDA.csv", "1763780000.000000\n4.000000\n0.000000\n0.137643\nabc\n0.200000\n").expect("eda");
        let got: Vec<(i64, f64)> = b.samples.iter().map(|s| (s.time_ms, s.value)).collect();
        assert_eq!(got, vec![(1_763_780_000_000, 0.0), (1_763_780_000_250, 0.138), (1_763_780_000_750, 0.2)]);
        assert_eq!((b.rejections[0].index, b.rejections[0].code), (4, RejectCode::Malformed));
        let b = run("ACC.csv", "1763780000, 1763780000, 1763780000\n32, 32, 32\n-64, 0, 32\n").expect("acc");
        let got: Vec<f64> = b.samples.iter().map(|s| s.value).collect();
        assert_eq!(got, vec![-1.0, 0.0, 0.5]);
        let b = run("TEMP.csv", "1763780000\n4\n33.41\n").expect("temp");
        assert_eq!(b.samples[0].value, 33.41);
    }

    #[test]
    fn ibi_rows_are_offsets_and_intervals_in_seconds() {
        let b = run("IBI.csv", "1763780000.000000, IBI\n10.234, 0.812\n11.046, 0.812\nbad\n").expect("ibi");
        let got: Vec<(i64, f64)> = b.samples.iter().map(|s| (s.time_ms, s.value)).collect();
        assert_eq!(got, vec![(1_763_780_010_234, 812.0), (1_763_780_011_046, 812.0)]);
        assert_eq!(b.rejections.len(), 1);
    }

    #[test]
    fn tags_are_button_press_events() {
        let (events, bad) = decode_tags("1763780000.5\n\nnope\n1763780100\n", "p-1", "e4-a01");
        assert_eq!(events.iter().map(|e| e.start_ms).collect::<Vec<_>>(), vec![1_763_780_000_500, 1_763_780_100_000]);
        assert_eq!(events[0].kind, "tag");
        assert_eq!((bad.len(), bad[0].index), (1, 2));
    }

    #[test]
    fn huge_offsets_never_overflow() {
        // Found by the fuzzer: an IBI offset far beyond the session start.
        let b = run("IBI.csv", "1763780000, IBI\n1e300, 0.8\n").expect("ibi");
        assert_eq!(b.rejections[0].code, RejectCode::InvalidTime);
    }

    #[test]
    fn files_without_their_header_fail_as_a_whole() {
        for (name, text) in [
            ("EDA.csv", ""),
            ("EDA.csv", "soon\n4\n"),
            ("HR.csv", "1763780000\n"),
            ("HR.csv", "1763780000\n0\n"),
            ("notes.csv", "1\n1\n"),
        ] {
            assert!(run(name, text).is_err(), "{name}: {text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(text in "[0-9.,e\\- \n]{0,200}", which in 0usize..6) {
            let mut v = Validator::new(Catalog::standard(), NOW, 600_000, None);
            if let Ok(b) = decode(SIGNAL_FILES[which], &text, "p", "e4", &mut v) {
                proptest::prop_assert_eq!(b.items, b.samples.len() + b.rejections.len());
            }
        }
    }
}
