//! Runs every fuzz target's check over valid seeds, adversarial inputs and a few thousand
//! deterministic mutations of them, in every test run. Not a substitute for
//! `cargo fuzz run` (no coverage guidance), but it keeps the targets compiling and catches
//! a parser that panics on the obvious: cut, flipped, repeated or deeply nested input.

use vitals_fuzz::CHECKS;

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"",
    b"0",
    b"-1",
    b"1e308",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"NaN",
    b"null",
    b"\"",
    b"\\",
    b",",
    b"\n",
    b"\r\n",
    b"\0",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\xff\xfe",
    b"\xf0\x9f\x92\x93",
    b"=",
    b" ",
    b"9999-12-31T23:59:59.999Z",
    b"0000-01-01T00:00:00Z",
    b"(",
    b")",
    b"&&",
    b"avg(",
    b"1w",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let what = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, what.iter().copied());
            }
            4 => {
                // Repeat a chunk (long lines, many items).
                let end = (at + 1 + rng.below(64)).min(out.len());
                let chunk = out[at.min(end)..end].to_vec();
                for _ in 0..rng.below(50) {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            5 => {
                // Splice in part of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let part = other[from..(from + rng.below(64)).min(other.len())].to_vec();
                out.splice(at..at, part);
            }
            _ => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.next() as u8);
            }
        }
    }
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let text: &[&str] = match target {
        "native_json" => &[
            r#"{"samples":[{"patient":"p-1","metric":"heart_rate","time":"2025-11-22T02:00:00Z","value":72}]}"#,
            r#"[{"patient":"p-1","metric":"glucose","time":1763776800000,"value":5.5,"unit":"mmol/L","device":"cgm"}]"#,
        ],
        "native_ndjson" => &[
            "{\"patient\":\"p-1\",\"metric\":\"heart_rate\",\"time\":\"2025-11-22T02:00:00Z\",\"value\":72}\n{\"patient\":\"p-1\",\"metric\":\"skin_temp\",\"time\":\"2025-11-22T02:00:00Z\",\"value\":33.1}\n",
        ],
        "native_csv" => &[
            "patient,metric,time,value,unit,device\np-1,heart_rate,2025-11-22T02:00:00Z,72,bpm,band\np-1,\"eda\",1763776800000,0.4,,\n",
        ],
        "line_protocol" => &[
            "hr,patient=p-1,device=e4 value=72 1763776800000\nrr,patient=p-1 value=812i 1763776800001\neda,patient=p-1 value=0.41,quality=\"ok\" 1763776800002\n",
        ],
        "health_auto_export" => &[
            r#"{"data":{"metrics":[{"name":"heart_rate","units":"count/min","data":[{"date":"2025-11-22 03:00:00 +0100","Min":60,"Avg":70,"Max":80}]},{"name":"step_count","units":"count","data":[{"date":"2025-11-22 03:00:00 +0100","qty":120}]}],"workouts":[]}}"#,
            "Date/Time,Heart Rate [Min] (count/min),Heart Rate [Max] (count/min),Step Count (count)\n2025-11-22 03:00:00,60,80,120\n",
        ],
        "nightscout" => &[
            r#"[{"type":"sgv","sgv":120,"date":1763776800000,"dateString":"2025-11-22T02:00:00.000Z","direction":"Flat","device":"xDrip-DexcomG6"}]"#,
            r#"[{"eventType":"Correction Bolus","insulin":2.5,"created_at":"2025-11-22T02:00:00.000Z","_id":"abc"}]"#,
            r#"{"device":"xDrip","created_at":"2025-11-22T02:00:00Z","uploader":{"battery":87}}"#,
            "date$gt=1763776800000&type=sgv&sort$desc=date&limit=10&fields=sgv,date\n{\"sgv\":120,\"type\":\"sgv\"}",
        ],
        "apple_health" => &[
            "<?xml version=\"1.0\"?>\n<!DOCTYPE HealthData [<!ELEMENT HealthData ANY>]>\n<HealthData locale=\"en_US\"><Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"Watch\" unit=\"count/min\" startDate=\"2025-11-22 03:00:00 +0100\" endDate=\"2025-11-22 03:00:00 +0100\" value=\"72\"/></HealthData>",
            "1763776800.000000\n4.000000\n0.41\n0.43\n",
            "1763776800.000000, 1763776800.000000\n1.000000, 1.000000\n812, 798\n",
        ],
        "rule" => &[
            "avg(heart_rate, 5m) > 120 && min(spo2, 1m) < 90",
            "glucose < 3.9 || (glucose > 13.9 && delta(glucose, 15m) > 2)",
            "count(eda, 10m) >= 3 and not (skin_temp > 38)",
        ],
        "vault_input" => &[
            "# keys\nk1 = 0000000000000000000000000000000000000000000000000000000000000000\nprimary = k1\n",
            r#"{"name":"Ada Lovelace","birth_date":"1815-12-10","contact":{"email":"ada@example.org"}}"#,
        ],
        "record_files" => &["\x10\0\0\0\0\0\0\0{\"x\":1}\n", "[{\"id\":\"e1\",\"patient\":\"p-1\"}]"],
        "time_params" => &[
            "2025-11-22T02:00:00Z",
            "2025-11-22T03:00:00.123+01:00",
            "1763776800000",
            "15m",
            "7d",
            "2w",
            "2024-03-05",
            "60|1711846800000:120,1729990800000:60",
        ],
        "file_drop" => {
            &["[{\"patient\":\"p\"}]", "<?xml version=\"1.0\"?><HealthData/>", "Date/Time,Step Count (count)\n"]
        }
        "mqtt_packet" => &[],
        "sql_catalog" => &[
            "SELECT c.oid, c.* FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(samples)$' COLLATE pg_catalog.default",
            "SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid), a.attname::regtype FROM pg_attribute a",
            "SHOW search_path; SELECT (pg_catalog.current_schemas(true))[1], session_user, 'pg_class'::regclass",
        ],
        "log_message" => &[],
        "campaign_input" => &[
            r#"{"id":"cp-1","name":"Flu season","cohort":"ward-3","subject":"Your flu shot","message":"Free this month.","start_ms":1763776800000,"every":"7d","until_ms":1766368800000,"created_by":"u-1","created_ms":0}"#,
            r#"{"id":"cp-2","name":"x","cohort":"c","subject":"s","message":"m","start_ms":-9223372036854775808,"every":"1h","until_ms":9223372036854775807,"created_by":"u","created_ms":0,"cancelled_ms":5}"#,
            "nt-0123456789abcdef.00112233445566778899aabbccddeeff",
        ],
        "fit" => &[],
        "gadgetbridge" => &[],
        "fitbit_takeout" => &[
            r#"[{"dateTime":"01/15/24 07:00:05","value":{"bpm":62,"confidence":2}},{"dateTime":"01/15/24 07:01:00","value":"31"}]"#,
            r#"[{"dateTime":"01/15/24 00:00:00","value":{"date":"01/15/24","value":61.6,"error":6.9}}]"#,
        ],
        "cloud" => &[
            r#"[{"WT":"Date(1763776800000)","ST":"Date(1763776800000)","DT":"Date(1763776800000-0500)","Value":127,"Trend":"Flat"}]"#,
            r#"{"data":[{"bpm":61,"source":"awake","timestamp":"2025-11-22T01:55:00+00:00"}],"next_token":null}"#,
            r#"{"status":0,"body":{"measuregrps":[{"date":1763776800,"model":"Body+","measures":[{"value":72345,"type":1,"unit":-3}]}],"more":0,"offset":0}}"#,
            r#"{"status":0,"data":{"connection":{"sensor":{"sn":"0R8FDDJ820"},"glucoseMeasurement":{"FactoryTimestamp":"11/22/2025 1:59:00 AM","ValueInMgPerDl":104}},"graphData":[{"FactoryTimestamp":"11/22/2025 1:45:00 AM","ValueInMgPerDl":101,"type":0}]}}"#,
        ],
        other => panic!("no seeds for {other}"),
    };
    let mut out: Vec<Vec<u8>> = text.iter().map(|s| s.as_bytes().to_vec()).collect();
    if target == "file_drop" {
        out.push(e4_zip());
    }
    if target == "fit" {
        // Written by Garmin's encoder (`e2e/make-fit.mjs`): every message kind Vitals reads.
        out.push(include_bytes!("../seeds/monitoring.fit").to_vec());
        // What made `fitparser` panic under `cargo fuzz` (a cut chained header).
        out.push(include_bytes!("../seeds/fit-header-overflow.fit").to_vec());
        out.push(include_bytes!("../seeds/fit-overrun-header.fit").to_vec());
    }
    if target == "gadgetbridge" {
        out.push(gadgetbridge_db());
    }
    if target == "mqtt_packet" {
        // CONNECT (client id "d", user "u", password "p"), PUBLISH QoS 1, PINGREQ, DISCONNECT.
        out.push(b"\x10\x17\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01d\x00\x01u\x00\x01p".to_vec());
        out.push(b"\x32\x12\x00\x0cv/p-1/sample\x00\x01{}".to_vec());
        out.push(b"\xc0\x00\xe0\x00".to_vec());
    }
    if target == "log_message" {
        let samples: Vec<_> = (0..20).map(vitals_storage::log::conformance::sample).collect();
        out.push(vitals_jetstream::encode_message(&samples, vitals_core::Catalog::standard()));
    }
    // Deep nesting and long runs, for every target.
    out.push(b"[".repeat(100_000));
    out.push(b"{\"a\":".repeat(50_000));
    out.push(b"((".repeat(50_000));
    out.push(vec![b'9'; 10_000]);
    out
}

/// A small Gadgetbridge database, as bytes.
fn gadgetbridge_db() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("Gadgetbridge");
    let db = rusqlite::Connection::open(&path).expect("db");
    db.execute_batch(
        "CREATE TABLE DEVICE (_id INTEGER PRIMARY KEY, NAME TEXT, MANUFACTURER TEXT, IDENTIFIER TEXT, TYPE INTEGER);
         CREATE TABLE XIAOMI_ACTIVITY_SAMPLE (TIMESTAMP INTEGER, DEVICE_ID INTEGER, USER_ID INTEGER, STEPS INTEGER,
            HEART_RATE INTEGER, STRESS INTEGER, SPO2 INTEGER, PRIMARY KEY (TIMESTAMP, DEVICE_ID)) WITHOUT ROWID;
         CREATE TABLE BATTERY_LEVEL (TIMESTAMP INTEGER, DEVICE_ID INTEGER, LEVEL INTEGER);
         INSERT INTO DEVICE VALUES (1, 'Band', 'Xiaomi', 'C8:0F:10:AA:BB:CC', 1);
         INSERT INTO XIAOMI_ACTIVITY_SAMPLE VALUES (1763700000, 1, 1, 12, 61, 40, 97), (1763700060, 1, 1, 0, 255, 255, 0);
         INSERT INTO BATTERY_LEVEL VALUES (1763700000, 1, 80);",
    )
    .expect("schema");
    drop(db);
    std::fs::read(&path).expect("bytes")
}

/// A small E4 session zip, stored (not deflated) so that mutations reach the file contents.
fn e4_zip() -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text, method) in [
        ("s/EDA.csv", "1600000000.0\n4.0\n0.5\n0.6\n", zip::CompressionMethod::Stored),
        ("s/IBI.csv", "1600000000.0, IBI\n1.5, 0.8\n", zip::CompressionMethod::Stored),
        ("s/tags.csv", "1600000001.5\n", zip::CompressionMethod::Deflated),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default().compression_method(method)).expect("start");
        w.write_all(text.as_bytes()).expect("write");
    }
    w.finish().expect("zip").into_inner()
}

#[test]
fn every_check_survives_its_seeds_adversarial_inputs_and_mutations() {
    let mut rng = Rng(0x005e_ed0f_7175);
    for &(target, check) in CHECKS {
        let seeds = seeds(target);
        // The record files and database checks open real files in a temporary directory:
        // fewer rounds.
        let rounds = match target {
            "record_files" => 200,
            "gadgetbridge" => 500,
            _ => 3_000,
        };
        for seed in &seeds {
            check(seed);
        }
        for i in 0..rounds {
            let input = mutate(&mut rng, &seeds);
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(
                outcome.is_ok(),
                "{target} panicked on mutation {i}; reproduce with `cargo fuzz run {target} --features libfuzzer <file>` on these bytes: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn every_fuzz_target_has_a_check_and_every_check_a_target() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz_targets")
        .map(|e| e.expect("entry").file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    files.sort();
    let mut checks: Vec<String> = CHECKS.iter().map(|(n, _)| (*n).to_owned()).collect();
    checks.sort();
    assert_eq!(files, checks);
    let manifest = std::fs::read_to_string(dir.with_file_name("Cargo.toml")).expect("Cargo.toml");
    for name in &checks {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name} is not a [[bin]] of fuzz/Cargo.toml");
    }
}
