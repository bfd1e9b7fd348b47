//! What every fuzz target checks, as plain functions: `fuzz_targets/*.rs` hand them
//! libFuzzer's inputs (`cargo fuzz run <target>`), and `tests/smoke.rs` runs each over a
//! few thousand generated and mutated inputs in every test run (`scripts/test`).
//!
//! Each check feeds untrusted bytes to one parser and asserts it neither panics nor breaks
//! its own accounting.

use std::collections::BTreeMap;
use std::str::FromStr;

use vitals_core::time::{DurationMs, parse_time};
use vitals_core::{Catalog, Validator};
use vitals_ingest::line_protocol::{self, Mapping, Precision};
use vitals_ingest::{
    Batch, Format, apple_health, empatica, fit, fitbit_takeout, gadgetbridge, health_auto_export, native, nightscout,
};
use vitals_rules::eval::{points, truths};

const NOW: i64 = 1_763_780_400_000;

fn validator() -> Validator<'static> {
    Validator::new(Catalog::standard(), NOW, 600_000, None)
}

/// Every item is accepted or refused, and the kept refusals are the first of them.
fn accounted(b: &Batch) {
    assert_eq!(b.samples.len() + b.refused, b.items);
    assert!(b.rejections.len() <= b.refused);
    assert_eq!(b.refused_by_code.iter().sum::<usize>(), b.refused);
}

/// What a fuzz target runs on each input.
pub type Check = fn(&[u8]);

/// The pairs of (target name, check), for the smoke test and the targets.
pub const CHECKS: &[(&str, Check)] = &[
    ("native_json", native_json),
    ("native_ndjson", native_ndjson),
    ("native_csv", native_csv),
    ("line_protocol", line_protocol),
    ("health_auto_export", health_auto_export),
    ("nightscout", nightscout),
    ("apple_health", apple_health),
    ("rule", rule),
    ("vault_input", vault_input),
    ("record_files", record_files),
    ("time_params", time_params),
    ("mqtt_packet", mqtt_packet),
    ("file_drop", file_drop),
    ("sql_catalog", sql_catalog),
    ("log_message", log_message),
    ("campaign_input", campaign_input),
    ("fit", fit_file),
    ("gadgetbridge", gadgetbridge_db),
    ("fitbit_takeout", fitbit_takeout_file),
    ("cloud", cloud),
];

/// A FIT file as a watch or an upload gives it: every message is a sample, a refusal or
/// skipped, and every event ends after it starts.
pub fn fit_file(data: &[u8]) {
    let mut v = validator();
    if let Ok(d) = fit::decode(data, "p", &mut v) {
        accounted(&d.batch);
        assert!(d.events.iter().all(|e| e.end_ms > e.start_ms || e.kind == fit::DEVICE_INFO));
    }
}

/// A Gadgetbridge export (an SQLite file of any content): read or refused, never a panic,
/// with every row accounted for.
pub fn gadgetbridge_db(data: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else { return };
    if std::io::Write::write_all(&mut file, data).is_err() {
        return;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(db) = rusqlite::Connection::open_with_flags(file.path(), flags) else { return };
    let mut v = validator();
    let _ = gadgetbridge::read(&db, "p", &mut v, 7, |b| -> Result<(), ()> {
        accounted(&b);
        Ok(())
    });
}

/// A Fitbit Takeout per-day file under each name Vitals reads.
pub fn fitbit_takeout_file(data: &[u8]) {
    use fitbit_takeout::FitbitFile;
    for kind in [FitbitFile::HeartRate, FitbitFile::Steps, FitbitFile::RestingHeartRate] {
        if let Ok(b) = fitbit_takeout::decode(kind, "f.json", data, "p", &mut validator()) {
            accounted(&b);
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = fitbit_takeout::kind_of(name);
    }
}

/// A campaign as a client sends it, and an unsubscribe link as anyone may open it: the
/// JSON decodes or is refused; a decoded campaign is checked and scheduled at any time
/// without a panic, never due again for an occurrence sent; a link verifies only when it
/// is the key's own token for its notice, and the key's token for a notice verifies.
pub fn campaign_input(data: &[u8]) {
    use vitals_alerts::campaign::{Campaign, UnsubscribeKey};
    if let Ok(c) = serde_json::from_slice::<Campaign>(data) {
        let _ = c.check();
        for now in [i64::MIN, -1, 0, c.start_ms, c.start_ms.saturating_add(1), NOW, i64::MAX] {
            for last in [None, Some(0), Some(7), Some(u32::MAX)] {
                if let Some(run) = c.due(last, now) {
                    assert!(last.is_none_or(|l| run > l), "occurrence {run} due again after {last:?}");
                }
                let _ = c.next_at(last);
                let _ = c.at(last.unwrap_or(0));
            }
        }
    }
    let key = UnsubscribeKey::new([7; 32]);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(notice) = key.verify(text)
    {
        assert_eq!(key.token(notice), text, "only the key's own token verifies");
    }
    let notice = format!("nt-{}", data.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(key.verify(&key.token(&notice)), Some(notice.as_str()));
}

/// A message of cluster mode's log as a node reads it from the stream (another build, or
/// damaged bytes): decodes or is refused with a reason, never panics; what decodes encodes
/// back to messages that decode to the same samples or events.
pub fn log_message(data: &[u8]) {
    let catalog = Catalog::standard();
    for (magic, version) in [(b"VLG", 1u8), (b"VLG", 2), (b"VLG", 3), (b"VLE", 1), (b"VLX", 1)] {
        let mut body = magic.to_vec();
        body.push(version);
        body.extend_from_slice(data);
        for bytes in [data, &body[..]] {
            match vitals_jetstream::decode_any(bytes, catalog) {
                Ok(vitals_jetstream::Message::Samples(samples)) => {
                    let again = vitals_jetstream::encode_message(&samples, catalog);
                    assert_eq!(vitals_jetstream::decode_message(&again, catalog).as_ref(), Ok(&samples));
                }
                Ok(vitals_jetstream::Message::Events(events)) => {
                    let again = vitals_jetstream::encode_events(&events);
                    // (Counted, not compared: JSON floats may come back one ulp off.)
                    let back = vitals_jetstream::decode_any(&again, catalog);
                    assert!(matches!(back, Ok(vitals_jetstream::Message::Events(e)) if e.len() == events.len()));
                }
                Ok(vitals_jetstream::Message::Erase { patient }) => {
                    let again = vitals_jetstream::encode_erasure(&patient);
                    let back = vitals_jetstream::decode_any(&again, catalog);
                    assert_eq!(back, Ok(vitals_jetstream::Message::Erase { patient }));
                }
                Err(_) => {}
            }
        }
    }
}

/// SQL text as an analyst's client sends it, through the nesting limit and the PostgreSQL
/// catalog's rewrite of the parsed statement: parses or is refused in bounded time, never
/// panics, and what it rewrites is SQL that parses again.
pub fn sql_catalog(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    for rewritten in vitals_sql::pg_catalog::rewrite_sql(sql) {
        // (`x::regclass::regclass...` becomes nested CASTs, which may pass the nesting limit.)
        if vitals_sql::too_deep(&rewritten).is_ok() {
            assert!(!vitals_sql::pg_catalog::rewrite_sql(&rewritten).is_empty(), "{rewritten}");
        }
    }
}

pub fn native_json(data: &[u8]) {
    if let Ok(b) = native::decode(data, Format::Json, &mut validator()) {
        accounted(&b);
    }
}

pub fn native_ndjson(data: &[u8]) {
    if let Ok(b) = native::decode(data, Format::Ndjson, &mut validator()) {
        accounted(&b);
    }
}

pub fn native_csv(data: &[u8]) {
    if let Ok(b) = native::decode(data, Format::Csv, &mut validator()) {
        accounted(&b);
    }
}

pub fn line_protocol(data: &[u8]) {
    let b = line_protocol::decode(data, Precision::Milliseconds, &Mapping::default(), &mut validator(), NOW);
    accounted(&b);
}

pub fn health_auto_export(data: &[u8]) {
    for decode in [health_auto_export::decode, health_auto_export::decode_csv] {
        if let Ok(d) = decode(data, "p", &mut validator()) {
            accounted(&d.batch);
            // Every event is the patient's, with an id to replace it by.
            assert!(d.events.iter().all(|e| e.patient == "p" && !e.id.is_empty()));
        }
    }
}

/// What a vendor cloud answers (Dexcom Share readings, a LibreLinkUp graph): every item a
/// sample or a refusal, every sample the patient's, from the vendor's source.
pub fn cloud(data: &[u8]) {
    for vendor in vitals_cloud::Vendor::ALL {
        let mut v = validator().source(vendor.source());
        if let Ok(b) = vitals_cloud::decode(vendor, data, "p", &mut v) {
            accounted(&b);
            assert!(b.samples.iter().all(|s| s.patient.as_str() == "p" && s.source == vendor.source()));
        }
    }
}

pub fn nightscout(data: &[u8]) {
    for decode in [
        nightscout::decode_entries,
        nightscout::decode_devicestatus,
        nightscout::decode_treatments,
        nightscout::decode_profile,
        nightscout::decode_activity,
        nightscout::decode_food,
    ] {
        if let Ok(d) = decode(data, "p", &mut validator()) {
            accounted(&d.batch);
            // Every kept document is the patient's, with an id to replace it by.
            assert!(d.events.iter().all(|e| e.patient == "p" && !e.id.is_empty()));
        }
    }
    nightscout_v3_query(data);
}

/// An API v3 query (`a$gt=1&b=x`, before a newline) and a document (JSON, after it): a
/// query is read or refused with a reason, its limit stays in bounds, its conditions and
/// `fields` apply to any document.
fn nightscout_v3_query(data: &[u8]) {
    use vitals_ingest::nightscout_query::{MAX_LIMIT, equality_find, project, search_of, time_bounds};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (query, doc) = text.split_once('\n').unwrap_or((text, "{}"));
    let q: std::collections::HashMap<String, String> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (from, to) = time_bounds(&q, &["date", "created_at"], (0, i64::MAX));
    assert!(from >= 0 && to <= i64::MAX);
    if let Err(why) = equality_find(&q) {
        assert!(why.starts_with("find["));
    }
    match search_of(&q) {
        Ok(s) => {
            assert!((1..=MAX_LIMIT).contains(&s.limit), "{}", s.limit);
            if let Ok(doc) = serde_json::from_str::<serde_json::Value>(doc) {
                for c in &s.conditions {
                    let _ = c.holds(&doc);
                }
                let _ = project(doc, s.fields.as_deref());
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
}

pub fn apple_health(data: &[u8]) {
    let mut v = validator();
    let _ = apple_health::stream(data, "p", &mut v, 7, |b, _, _| -> Result<(), ()> {
        accounted(&b);
        Ok(())
    });
    if let Ok(text) = std::str::from_utf8(data) {
        for f in empatica::SIGNAL_FILES {
            if let Ok(b) = empatica::decode(f, text, "p", "e4", &mut v) {
                accounted(&b);
            }
        }
        let _ = empatica::decode_tags(text, "p", "e4");
    }
}

/// The rule language, at any depth and length: errors point inside the rule, and what
/// parses evaluates.
pub fn rule(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match vitals_rules::parse(src) {
        Err(e) => assert!(e.pos <= src.len(), "{e:?} beyond {}", src.len()),
        Ok(expr) => {
            let mut data = BTreeMap::new();
            let mut metrics = Vec::new();
            expr.metrics(&mut metrics);
            for (i, (m, _)) in metrics.iter().enumerate() {
                data.insert(m.clone(), vec![(0, 1.0 + i as f64), (60_000, -2.5), (61_000, 1e9)]);
            }
            let times = points(&[&expr], &data, -3_600_000, 7_200_000);
            assert_eq!(truths(&expr, &data, &times).len(), times.len());
        }
    }
}

pub fn vault_input(data: &[u8]) {
    use vitals_vault::{Identity, Keyring};
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ring) = Keyring::parse_file(text, "fuzz") {
        assert!(ring.get(ring.primary_id()).is_some());
    }
    if let Ok(ring) = Keyring::parse_env(text) {
        assert!(!ring.ids().is_empty());
    }
    if let Ok(identity) = serde_json::from_str::<Identity>(text) {
        let _ = identity.validate();
    }
}

/// The on-disk formats, as they are read back at start-up: record files of every kind
/// (WAL, manifest, JSON logs, dead letters) and the payloads of each.
pub fn record_files(data: &[u8]) {
    use vitals_storage::record;
    // Whatever the file, with each format's header in front or not.
    for magic in [*b"VWAL", *b"VMAN", *b"VEVT", *b"VDLQ"] {
        let mut with_header = record::header(magic, 1).to_vec();
        with_header.extend_from_slice(data);
        for bytes in [data, &with_header[..]] {
            if let Ok(scan) = record::scan(bytes, magic, 1) {
                for (offset, payload) in &scan.records {
                    assert!((*offset as usize) < bytes.len());
                    for version in [1, 2] {
                        let _ = vitals_storage::wal::decode_payload(payload, Catalog::standard(), version);
                    }
                    let _ = serde_json::from_slice::<vitals_storage::manifest::Edit>(payload);
                    let _ = serde_json::from_slice::<Vec<vitals_core::Event>>(payload);
                }
            }
        }
    }
    // The same bytes as the files the stores open.
    let dir = tempfile::tempdir().expect("tmp");
    let write = |rel: &str, magic: [u8; 4]| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut bytes = record::header(magic, 1).to_vec();
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).expect("write");
    };
    write("events/events.log", *b"VEVT");
    // A write-ahead log file of each version, opened as at start (repairing what is damaged).
    for version in [1u32, 2] {
        let wal = dir.path().join(format!("wal-v{version}"));
        std::fs::create_dir_all(&wal).expect("mkdir");
        let mut bytes = record::header(*b"VWAL", version).to_vec();
        bytes.extend_from_slice(data);
        std::fs::write(wal.join("wal-00000000000000000001.log"), bytes).expect("write");
        let fs = vitals_storage::fs::real();
        let _ = vitals_storage::wal::Wal::open(&fs, &wal, true, Catalog::standard(), 1, |_| {});
    }
    write("dead-letters/dlq-00000000000000000001.log", *b"VDLQ");
    write("manifest/MANIFEST-000001", *b"VMAN");
    std::fs::write(dir.path().join("manifest/CURRENT"), "MANIFEST-000001\n").expect("current");
    let _ = vitals_storage::event_store::EventStore::open(&dir.path().join("events"));
    let _ = vitals_storage::dead_letter::DeadLetters::open(&dir.path().join("dead-letters"), 1 << 30);
    let _ = vitals_storage::manifest::Manifest::open(&vitals_storage::fs::real(), &dir.path().join("manifest"));
}

/// Time and duration parameters of queries and config (`from`/`to`, durations, the
/// glucose view's `tz_offset_min`/`tz_changes`, Nightscout's `find[date][$gte]`): parse or
/// refuse, and what parses stays within the times Vitals stores (so arithmetic on it
/// cannot overflow).
pub fn time_params(data: &[u8]) {
    use vitals_query::glucose::{Offsets, agp};
    let in_range = |t: i64| (0..=vitals_core::time::MAX_TIME_MS).contains(&t);
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = parse_time(s) {
        assert!(in_range(t), "{t}");
    }
    if let Some(t) = vitals_ingest::nightscout::find_time(s) {
        assert!(in_range(t), "{t}");
    }
    let (base, changes) = s.split_once('|').unwrap_or(("0", s));
    if let Ok(offsets) = Offsets::parse(base.trim().parse().ok(), Some(changes)) {
        let readings: Vec<(i64, f64)> = offsets
            .changes
            .iter()
            .flat_map(|c| [(c.0, 100.0), (c.0.saturating_sub(1), 90.0)])
            .chain([(0, 80.0), (vitals_core::time::MAX_TIME_MS, 120.0)])
            .collect();
        let slots = agp(&readings, &offsets);
        assert_eq!(slots.iter().map(|s| s.readings).sum::<usize>(), readings.len());
    }
    if let Ok(d) = DurationMs::from_str(s) {
        assert!(d.as_ms() > 0, "{s:?} parsed as {d:?}");
        assert_eq!(DurationMs::from_str(&d.to_string()), Ok(d), "{s:?} does not round-trip");
    }
}

/// MQTT packets as the embedded listener reads them (before and after CONNECT).
pub fn mqtt_packet(data: &[u8]) {
    for max in [64 << 10, 1 << 20] {
        let mut buf = bytes::BytesMut::from(data);
        for _ in 0..64 {
            let before = buf.len();
            if rumqttc::Packet::read(&mut buf, max).is_err() {
                break;
            }
            // Every packet read consumes bytes, so a reader loop always ends.
            assert!(buf.len() < before);
        }
    }
}

/// A file as the file drop and `vitals ingest` see it: its kind from name and first bytes,
/// then, for a zip, what it holds and, as an E4 session, the archive's directory and each
/// session file (inflated with a cap, decoded). Tried under each name the file drop treats
/// specially.
pub fn file_drop(data: &[u8]) {
    use vitals_ingest::file_kind::{FileKind, detect, zip_content};
    use vitals_ingest::session_zip::SessionZip;
    for name in ["drop.bin", "EDA.csv", "export.xml", "steps-2025-11-20.json"] {
        let kind = detect(name, &data[..data.len().min(vitals_ingest::file_kind::HEAD_BYTES)]);
        assert_eq!(kind, detect(name, data), "the kind depends on the first bytes only");
        if kind == FileKind::Zip {
            if let Ok(all) = SessionZip::open_matching(std::io::Cursor::new(data), |_, _| true) {
                let names: Vec<String> = all.names().map(str::to_owned).collect();
                let _ = zip_content(names.iter().map(String::as_str));
            }
            let Ok(mut zip) = SessionZip::open(std::io::Cursor::new(data)) else { continue };
            let names: Vec<String> = zip.names().map(str::to_owned).collect();
            for (i, n) in names.iter().enumerate() {
                if let Ok(text) = zip.read(i, 1 << 20) {
                    assert!(text.len() <= 1 << 20);
                    if let Ok(b) = empatica::decode(n, &text, "p", "e4", &mut validator()) {
                        accounted(&b);
                    }
                }
            }
        }
    }
}
