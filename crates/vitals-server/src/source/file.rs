//! Ingesting one file or folder by its content, through the pipeline: an Empatica E4
//! session folder, zip or signal file, an Apple Health `export.xml` (streamed), a Health
//! Auto Export JSON or CSV export (these need the patient), or native NDJSON/CSV/JSON.
//! Shared by the file drop and `vitals ingest` against a data directory.

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use vitals_core::{PatientId, Validator};
use vitals_ingest::health_auto_export::{self, Unsupported};
use vitals_ingest::{Batch, Format, apple_health, empatica};
use vitals_storage::StoreError;

use super::pipeline::{Accepted, IngestError, Pipeline, Report, Submission};
use super::wire_format::WireFormat;

/// Items per part when streaming a large export into the store.
const CHUNK: usize = 50_000;

/// Takes one file or folder in, as `source` (the dead letters' name for the way in);
/// `progress` gets the bytes read so far of large files. Each part is durable before the
/// next is read.
pub fn ingest_path(
    pipeline: &Pipeline,
    source: &str,
    path: &Path,
    patient: Option<&PatientId>,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Report> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let need_patient = || {
        patient.cloned().context("this format has no patient ids: drop it into inbox/<patient>/ (or pass --patient)")
    };
    let sub = |format: WireFormat, body: Vec<u8>| {
        Submission::new(source, format, body).patient(patient.cloned()).only(patient.cloned())
    };
    if path.is_dir() {
        let p = need_patient()?;
        let mut files = Vec::new();
        for e in fs::read_dir(path)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && (is_signal(&n) || n.eq_ignore_ascii_case("tags.csv")) {
                let text =
                    fs::read_to_string(e.path()).with_context(|| format!("{}: not UTF-8 text", e.path().display()))?;
                files.push((n, text));
            }
        }
        return e4_session(pipeline, source, &p, &name, files);
    }
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut fs::File::open(path)?, &mut magic)?;
    if n == 4 && &magic == b"PK\x03\x04" {
        let p = need_patient()?;
        let mut archive = zip::ZipArchive::new(fs::File::open(path)?).context("reading the zip archive")?;
        let mut files = Vec::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).context("reading the zip archive")?;
            let base = f.name().context("a zip entry name")?.rsplit('/').next().unwrap_or_default().to_owned();
            if f.is_file() && (is_signal(&base) || base.eq_ignore_ascii_case("tags.csv")) {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text)
                    .with_context(|| format!("{base} in the zip: not UTF-8 text"))?;
                files.push((base, text));
            }
        }
        let stem = name.strip_suffix(".zip").unwrap_or(&name).to_owned();
        return e4_session(pipeline, source, &p, &stem, files);
    }
    if is_signal(&name) {
        let p = need_patient()?;
        let text = fs::read_to_string(path).context("not UTF-8 text")?;
        return e4_session(pipeline, source, &p, "e4", vec![(name, text)]);
    }
    let mut head = vec![0u8; 512];
    let n = std::io::Read::read(&mut fs::File::open(path)?, &mut head)?;
    let head: String = String::from_utf8_lossy(&head[..n]).chars().filter(|c| !c.is_whitespace()).collect();
    if head.starts_with("<?xml") || head.starts_with("<HealthData") || head.starts_with("<!DOCTYPEHealthData") {
        let p = need_patient()?;
        return apple_health_export(pipeline, sub(WireFormat::AppleHealth, Vec::new()), &p, path, progress);
    }
    let bytes = fs::read(path)?;
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let hae_csv = first_line.len() > 4 && first_line[..4].eq_ignore_ascii_case(b"date") && first_line.contains(&b'(');
    let format = if head.starts_with("{\"data\":") {
        need_patient()?;
        WireFormat::HealthAutoExport
    } else if hae_csv {
        // Health Auto Export's CSV export: `Date/Time,Active Energy (kcal),...`.
        need_patient()?;
        WireFormat::HealthAutoExportCsv
    } else {
        WireFormat::Native(Format::sniff(&bytes))
    };
    let s = sub(format, bytes);
    let accepted = pipeline.decode(&s)?;
    durable(pipeline, accepted)
}

/// Stores what a part gave and waits until it is durable; an overloaded store is an error
/// the file drop retries later.
fn durable(pipeline: &Pipeline, accepted: Accepted) -> anyhow::Result<Report> {
    let result = pipeline.submit(accepted).and_then(|p| p.wait());
    match result {
        Ok(r) => Ok(r),
        Err(IngestError::Store(StoreError::Overloaded { .. })) => bail!("the store is overloaded; try again later"),
        Err(e) => Err(e.into()),
    }
}

fn is_signal(name: &str) -> bool {
    empatica::SIGNAL_FILES.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// An Empatica E4 session (a folder, a zip, or one signal file): its signal files and
/// `tags.csv`, each file a part of its own.
fn e4_session(
    pipeline: &Pipeline,
    source: &str,
    patient: &PatientId,
    session: &str,
    files: Vec<(String, String)>,
) -> anyhow::Result<Report> {
    let device = if session == "e4" {
        "e4".to_owned()
    } else {
        format!("e4-{}", health_auto_export::device_from_source(session).unwrap_or_else(|| "session".into()))
    };
    if !files.iter().any(|(n, _)| is_signal(n)) {
        bail!("holds none of {}", empatica::SIGNAL_FILES.join(", "));
    }
    let mut v: Validator<'static> = pipeline.validator(Some(patient.clone()));
    let mut report = Report::default();
    for (f, text) in files {
        let sub = Submission::new(source, WireFormat::Empatica, Vec::new()).patient(Some(patient.clone()));
        let context = [("file", f.clone()), ("device", device.clone())];
        let accepted = if f.eq_ignore_ascii_case("tags.csv") {
            let (evs, bad) = empatica::decode_tags(&text, patient.as_str(), &device);
            let mut batch = Batch { items: evs.len() + bad.len(), ..Batch::default() };
            for r in bad {
                batch.reject(r);
            }
            pipeline.accept(&sub, text.as_bytes(), batch, evs, Vec::new(), &context)
        } else {
            let mut b = empatica::decode(&f, &text, patient.as_str(), &device, &mut v)?;
            for r in &mut b.rejections {
                r.message = format!("{f} line {}: {}", r.index + 1, r.message);
            }
            pipeline.accept(&sub, text.as_bytes(), b, Vec::new(), Vec::new(), &context)
        };
        report.absorb(durable(pipeline, accepted)?);
    }
    Ok(report)
}

/// An Apple Health `export.xml`, streamed in parts of [`CHUNK`] items.
fn apple_health_export(
    pipeline: &Pipeline,
    sub: Submission,
    patient: &PatientId,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Report> {
    let mut v = pipeline.validator(Some(patient.clone()));
    let reader = std::io::BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    let mut report = Report::default();
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let context = [("file", file)];
    let summary = apple_health::stream(reader, patient.as_str(), &mut v, CHUNK, |batch, evs, bytes| {
        progress(bytes);
        // Records are not lines: the dead letter describes the refused ones, without an excerpt.
        let accepted = pipeline.accept(&sub, b"", batch, evs, Vec::new(), &context);
        report.absorb(durable(pipeline, accepted)?);
        Ok::<(), anyhow::Error>(())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    report.unsupported =
        summary.not_stored.iter().map(|(k, n)| Unsupported { section: k.clone(), count: *n as usize }).collect();
    Ok(report)
}
