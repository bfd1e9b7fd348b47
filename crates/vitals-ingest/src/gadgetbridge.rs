//! Gadgetbridge database exports: the SQLite file the open-source Android app writes
//! ("Export database" in its settings) for the Xiaomi, Amazfit, Huawei, Pebble, Fossil and
//! other bands it syncs without the vendors' clouds.
//!
//! Every device family has its own sample table, all shaped alike (`TIMESTAMP`,
//! `DEVICE_ID`, `USER_ID` and value columns), so tables are read by their columns rather
//! than by a list of names that each Gadgetbridge release grows:
//!
//! | column | in tables | Vitals metric |
//! | --- | --- | --- |
//! | `HEART_RATE` | `*_SAMPLE` (`*RESTING*`: resting, `*MAX*`: maximum) | `heart_rate`, `resting_heart_rate`, `heart_rate_max` |
//! | `STEPS` | `*_ACTIVITY_SAMPLE` | `step_count` (minutes with steps) |
//! | `SPO2`, `SPO` | `*_SAMPLE` | `spo2` |
//! | `STRESS` | `*_SAMPLE` | `stress_level` |
//! | `LEVEL` | `BATTERY_LEVEL` | `battery_level` |
//!
//! `TIMESTAMP` is seconds in activity tables and milliseconds in the newer ones (told by
//! size). The values a band writes for "no reading" (0, 255, -1, beyond the scale) are not
//! readings and are skipped, not refused. The device is `<manufacturer>-<identifier>` from
//! the `DEVICE` table (the identifier is the band's Bluetooth address).

use std::borrow::Cow;
use std::collections::HashMap;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use vitals_core::{RawSample, RawTime, Validator};

use crate::Batch;

/// Whether `head` is an SQLite database file.
pub fn is_sqlite(head: &[u8]) -> bool {
    head.starts_with(b"SQLite format 3\0")
}

#[derive(Debug, thiserror::Error)]
pub enum GadgetbridgeError {
    #[error("not a Gadgetbridge database: {0}")]
    NotGadgetbridge(String),
    #[error("reading the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What was read, beside the batches handed over.
#[derive(Debug, Default)]
pub struct Summary {
    /// Tables read, with their rows.
    pub tables: Vec<(String, usize)>,
    /// What the database says of each device: (device id, model, newest firmware and since
    /// when, UNIX ms).
    pub devices: Vec<DeviceInfo>,
}

/// A device as the `DEVICE` and `DEVICE_ATTRIBUTES` tables describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub device: String,
    pub model: Option<String>,
    pub firmware: Option<(String, i64)>,
}

/// A value column and what it becomes.
struct Column {
    name: &'static str,
    metric: &'static str,
    /// Values outside this range are "no reading" and skipped.
    valid: (f64, f64),
}

fn columns_of(table: &str, present: &[String]) -> Vec<Column> {
    let has = |c: &str| present.iter().any(|p| p.eq_ignore_ascii_case(c));
    let mut out = Vec::new();
    if table == "BATTERY_LEVEL" {
        if has("LEVEL") {
            out.push(Column { name: "LEVEL", metric: "battery_level", valid: (0.0, 100.0) });
        }
        return out;
    }
    if !table.ends_with("_SAMPLE") {
        return out;
    }
    if has("HEART_RATE") {
        let metric = if table.contains("RESTING") {
            "resting_heart_rate"
        } else if table.contains("MAX") {
            "heart_rate_max"
        } else {
            "heart_rate"
        };
        out.push(Column { name: "HEART_RATE", metric, valid: (1.0, 254.0) });
    }
    if has("STEPS") && table.ends_with("_ACTIVITY_SAMPLE") {
        out.push(Column { name: "STEPS", metric: "step_count", valid: (1.0, 100_000.0) });
    }
    for c in ["SPO2", "SPO"] {
        if has(c) {
            out.push(Column { name: c, metric: "spo2", valid: (1.0, 100.0) });
            break;
        }
    }
    if has("STRESS") {
        out.push(Column { name: "STRESS", metric: "stress_level", valid: (0.0, 100.0) });
    }
    out
}

/// The newest firmware of each device (`DEVICE_ATTRIBUTES.FIRMWARE_VERSION1`, by
/// `VALID_FROM_UTC`), where the table exists.
fn firmware(db: &Connection) -> HashMap<i64, (String, i64)> {
    let mut out: HashMap<i64, (String, i64)> = HashMap::new();
    let Ok(mut st) = db.prepare("SELECT DEVICE_ID, FIRMWARE_VERSION1, VALID_FROM_UTC FROM DEVICE_ATTRIBUTES") else {
        return out;
    };
    let Ok(mut rows) = st.query([]) else { return out };
    while let Ok(Some(r)) = rows.next() {
        let (Ok(ValueRef::Integer(d)), Ok(ValueRef::Text(f))) = (r.get_ref(0), r.get_ref(1)) else { continue };
        let since = r.get_ref(2).ok().and_then(number).map_or(0, |t| t as i64);
        let f = String::from_utf8_lossy(f).chars().take(64).collect::<String>();
        if out.get(&d).is_none_or(|(_, t)| *t <= since) {
            out.insert(d, (f, since));
        }
    }
    out
}

/// What the `DEVICE` table (and `DEVICE_ATTRIBUTES`) says of each device, by row id.
fn described(db: &Connection) -> Result<HashMap<i64, DeviceInfo>, rusqlite::Error> {
    let firmware = firmware(db);
    let mut out = HashMap::new();
    let mut st = db.prepare("SELECT _id, MANUFACTURER, IDENTIFIER, NAME FROM DEVICE")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let text = |i: usize| -> String {
            match r.get_ref(i) {
                Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                _ => String::new(),
            }
        };
        let (maker, ident, name) = (text(1), text(2), text(3));
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == ':' { c.to_ascii_lowercase() } else { '-' })
                .collect()
        };
        let model = (!name.is_empty()).then(|| name.chars().take(64).collect::<String>());
        let unit = if ident.is_empty() { name } else { ident };
        let maker = if maker.is_empty() { "gadgetbridge".to_owned() } else { maker };
        let mut dev = format!("{}-{}", clean(&maker), clean(&unit));
        dev.truncate(vitals_core::id::MAX_ID_LEN);
        out.insert(id, DeviceInfo { device: dev, model, firmware: firmware.get(&id).cloned() });
    }
    Ok(out)
}

fn number(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(f) if f.is_finite() => Some(f),
        _ => None,
    }
}

/// Reads every sample table of an open Gadgetbridge database for `patient`, handing over
/// batches of about `chunk` items (`f` may stop the reading with its error). A table that
/// cannot be read is one refused item; the others are still read.
pub fn read<E>(
    db: &Connection,
    patient: &str,
    v: &mut Validator<'_>,
    chunk: usize,
    mut f: impl FnMut(Batch) -> Result<(), E>,
) -> Result<Result<Summary, E>, GadgetbridgeError> {
    let tables: Vec<String> = {
        let mut st = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
        st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?
    };
    if !tables.iter().any(|t| t == "DEVICE") {
        return Err(GadgetbridgeError::NotGadgetbridge("it has no DEVICE table".into()));
    }
    let described = described(db)?;
    let devices: HashMap<i64, String> = described.iter().map(|(id, d)| (*id, d.device.clone())).collect();
    let mut summary = Summary { devices: described.into_values().collect(), ..Summary::default() };
    summary.devices.sort_by(|a, b| a.device.cmp(&b.device));
    let mut batch = Batch::default();
    let mut index = 0usize;
    for table in &tables {
        let present: Vec<String> = {
            let quoted = table.replace('"', "\"\"");
            let mut st = db.prepare(&format!("PRAGMA table_info(\"{quoted}\")"))?;
            st.query_map([], |r| r.get::<_, String>(1))?.collect::<Result<_, _>>()?
        };
        let has = |c: &str| present.iter().any(|p| p.eq_ignore_ascii_case(c));
        let cols = columns_of(table, &present);
        if cols.is_empty() || !has("TIMESTAMP") || !has("DEVICE_ID") {
            continue;
        }
        let list: Vec<&str> = cols.iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT TIMESTAMP, DEVICE_ID, {} FROM \"{}\" ORDER BY TIMESTAMP",
            list.join(", "),
            table.replace('"', "\"\"")
        );
        let mut rows_read = 0usize;
        let outcome = (|| -> Result<(), Halt<E>> {
            let mut st = db.prepare(&sql)?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                rows_read += 1;
                index += 1;
                let ts = number(r.get_ref(0)?);
                let Some(ts) = ts.filter(|t| *t > 0.0) else {
                    batch.malformed(index, format!("{table} row {rows_read}: TIMESTAMP is not a time"));
                    continue;
                };
                // Seconds in activity tables, milliseconds in the newer ones.
                let t_ms = if ts > 1e11 { ts as i64 } else { (ts * 1000.0) as i64 };
                let device = match r.get_ref(1)? {
                    ValueRef::Integer(d) => devices.get(&d).map(String::as_str),
                    _ => None,
                };
                for (i, c) in cols.iter().enumerate() {
                    let Some(x) = number(r.get_ref(2 + i)?) else { continue };
                    if x < c.valid.0 || x > c.valid.1 {
                        continue;
                    }
                    let raw = RawSample {
                        patient: Cow::Borrowed(patient),
                        metric: Cow::Borrowed(c.metric),
                        time: RawTime::Ms(t_ms),
                        value: x,
                        unit: None,
                        device: device.map(Cow::Borrowed),
                        id: None,
                    };
                    batch.items += 1;
                    match v.validate(index, &raw) {
                        Ok(s) => batch.samples.push(s),
                        Err(mut r) => {
                            r.message = format!("{table} row {rows_read} ({}): {}", c.name, r.message);
                            batch.reject(r);
                        }
                    }
                }
                if batch.items >= chunk.max(1) {
                    let full = std::mem::take(&mut batch);
                    f(full).map_err(Halt::Caller)?;
                }
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {}
            Err(Halt::Caller(e)) => return Ok(Err(e)),
            Err(Halt::Sqlite(e)) => {
                batch.malformed(index, format!("{table}: {e}; the rows after row {rows_read} were not read"))
            }
        }
        summary.tables.push((table.clone(), rows_read));
    }
    if batch.items > 0
        && let Err(e) = f(batch)
    {
        return Ok(Err(e));
    }
    Ok(Ok(summary))
}

/// Why reading a table stopped: the database, or the caller's error.
enum Halt<E> {
    Sqlite(rusqlite::Error),
    Caller(E),
}

impl<E> From<rusqlite::Error> for Halt<E> {
    fn from(e: rusqlite::Error) -> Self {
        Halt::Sqlite(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_core::Catalog;

    /// The tables as Gadgetbridge's greenDAO schema creates them (a Mi Band, a Xiaomi
    /// watch's SpO2 table, the battery log).
    const SCHEMA: &str = "
        CREATE TABLE DEVICE (_id INTEGER PRIMARY KEY AUTOINCREMENT, NAME TEXT NOT NULL, MANUFACTURER TEXT NOT NULL,
            IDENTIFIER TEXT NOT NULL UNIQUE, TYPE INTEGER NOT NULL, MODEL TEXT, ALIAS TEXT);
        CREATE TABLE MI_BAND_ACTIVITY_SAMPLE (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, USER_ID INTEGER NOT NULL,
            RAW_INTENSITY INTEGER NOT NULL, STEPS INTEGER NOT NULL, RAW_KIND INTEGER NOT NULL, HEART_RATE INTEGER NOT NULL,
            PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
        CREATE TABLE XIAOMI_SPO2_SAMPLE (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, USER_ID INTEGER NOT NULL,
            SPO2 INTEGER NOT NULL, PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
        CREATE TABLE BATTERY_LEVEL (TIMESTAMP INTEGER NOT NULL, DEVICE_ID INTEGER NOT NULL, LEVEL INTEGER NOT NULL,
            BATTERY_INDEX INTEGER NOT NULL, PRIMARY KEY (TIMESTAMP, DEVICE_ID, BATTERY_INDEX)) WITHOUT ROWID;
        INSERT INTO DEVICE VALUES (1, 'Mi Band 5', 'Xiaomi', 'C8:0F:10:AA:BB:CC', 12, NULL, NULL);
        INSERT INTO MI_BAND_ACTIVITY_SAMPLE VALUES (1763700000, 1, 1, 20, 0, 1, 61), (1763700060, 1, 1, 90, 112, 1, 255),
            (1763700120, 1, 1, 10, 0, 1, 0), (1763700180, 1, 1, 10, 0, 1, 400), ('soon', 1, 1, 0, 0, 1, 70);
        INSERT INTO XIAOMI_SPO2_SAMPLE VALUES (1763700000000, 1, 1, 97), (1763700060000, 1, 1, 30);
        INSERT INTO BATTERY_LEVEL VALUES (1763700000, 1, 81, 0);
        CREATE TABLE DEVICE_ATTRIBUTES (_id INTEGER PRIMARY KEY AUTOINCREMENT, FIRMWARE_VERSION1 TEXT NOT NULL,
            FIRMWARE_VERSION2 TEXT, VALID_FROM_UTC INTEGER, VALID_TO_UTC INTEGER, DEVICE_ID INTEGER NOT NULL,
            VOLATILE_IDENTIFIER TEXT);
        INSERT INTO DEVICE_ATTRIBUTES (FIRMWARE_VERSION1, VALID_FROM_UTC, VALID_TO_UTC, DEVICE_ID)
            VALUES ('V1.0.9.60', 1760000000000, 1762000000000, 1), ('V1.0.9.66', 1762000000000, NULL, 1);
    ";

    #[test]
    fn sample_tables_are_read_by_their_columns() {
        let db = Connection::open_in_memory().expect("db");
        db.execute_batch(SCHEMA).expect("schema");
        let mut v = Validator::new(Catalog::standard(), 1_763_780_400_000, 0, None);
        let mut got = Vec::new();
        let mut refused = Vec::new();
        let summary = read(&db, "p-1", &mut v, 2, |b| {
            got.extend(b.samples.iter().map(|s| {
                let m = Catalog::standard().get(s.metric).code;
                (m, s.time_ms, s.value, s.device.as_ref().map(|d| d.as_str().to_owned()))
            }));
            refused.extend(b.rejections);
            Ok::<(), ()>(())
        })
        .expect("reads")
        .expect("not stopped");
        let dev = Some("xiaomi-c8:0f:10:aa:bb:cc".to_owned());
        got.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        assert_eq!(
            got,
            vec![
                ("battery_level", 1_763_700_000_000, 81.0, dev.clone()),
                ("heart_rate", 1_763_700_000_000, 61.0, dev.clone()),
                ("spo2", 1_763_700_000_000, 97.0, dev.clone()),
                ("step_count", 1_763_700_060_000, 112.0, dev.clone()),
            ]
        );
        // A text time is refused with its table and row; SpO2 30 % is refused by the catalog.
        let messages: Vec<&str> = refused.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(refused.len(), 2, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("MI_BAND_ACTIVITY_SAMPLE row 5")), "{messages:?}");
        assert_eq!(summary.tables.len(), 3);
        assert_eq!(
            summary.devices,
            vec![DeviceInfo {
                device: "xiaomi-c8:0f:10:aa:bb:cc".into(),
                model: Some("Mi Band 5".into()),
                firmware: Some(("V1.0.9.66".into(), 1_762_000_000_000)),
            }]
        );
        let plain = Connection::open_in_memory().expect("db");
        assert!(matches!(
            read(&plain, "p-1", &mut v, 10, |_| Ok::<(), ()>(())),
            Err(GadgetbridgeError::NotGadgetbridge(_))
        ));
    }
}
