//! Ingesting one file or folder by its content, through the pipeline: an Empatica E4
//! session folder, zip or signal file, an Apple Health `export.xml` or `export.zip`
//! (streamed), a Health Auto Export JSON or CSV export, a FIT file, a Gadgetbridge
//! database, a Fitbit Google Takeout (these need the patient; see `vendor_file`), or native
//! NDJSON/CSV/JSON. Shared by the file drop, the upload route and `vitals ingest`.

use std::fs;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, bail};
use vitals_core::{PatientId, Validator};
use vitals_ingest::file_kind::{self, FileKind, ZipContent, is_e4_session_file, is_e4_signal};
use vitals_ingest::health_auto_export::{self, Unsupported};
use vitals_ingest::session_zip::SessionZip;
use vitals_ingest::{Batch, Format, apple_health, empatica};
use vitals_storage::StoreError;

use super::pipeline::{Accepted, IngestError, Pipeline, Report, Submission};
use super::vendor_file;
use super::wire_format::WireFormat;

/// Items per part when streaming a large export into the store.
const CHUNK: usize = 50_000;
/// Lines per part of a native NDJSON or CSV file.
pub const LINES_PER_PART: usize = 50_000;
/// The largest file read whole (an E4 signal file, a JSON document, a Health Auto Export,
/// a zip entry): larger ones fail with this named, rather than filling memory.
pub const MAX_WHOLE_FILE_BYTES: u64 = 256 << 20;
/// The longest line of a native file.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads a whole file of at most [`MAX_WHOLE_FILE_BYTES`] (a zip entry too).
pub(crate) fn read_capped(mut r: impl std::io::Read, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::take(&mut r, MAX_WHOLE_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {what}"))?;
    if out.len() as u64 > MAX_WHOLE_FILE_BYTES {
        bail!("{what} is larger than {} MiB; split it", MAX_WHOLE_FILE_BYTES >> 20);
    }
    Ok(out)
}

fn read_text_capped(r: impl std::io::Read, what: &str) -> anyhow::Result<String> {
    String::from_utf8(read_capped(r, what)?).map_err(|_| anyhow::anyhow!("{what}: not UTF-8 text"))
}

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
    ingest_path_as(pipeline, source, path, patient, None, progress)
}

/// The file formats a caller may name (the upload route's `format`), instead of letting
/// the content tell.
pub const NAMED_FORMATS: [&str; 11] = [
    "fit",
    "gadgetbridge",
    "fitbit_takeout",
    "apple_health",
    "e4",
    "health_auto_export",
    "health_auto_export_csv",
    "json",
    "ndjson",
    "csv",
    "garmin_zip",
];

/// The kind a named format gives a file whose content looks like `detected` (an archive
/// stays an archive, of the named content).
fn named_kind(format: &str, detected: FileKind) -> anyhow::Result<(FileKind, Option<ZipContent>)> {
    let zip = detected == FileKind::Zip;
    let pick = |content, plain| if zip { (FileKind::Zip, Some(content)) } else { (plain, None) };
    Ok(match format {
        "fit" => (FileKind::Fit, None),
        "gadgetbridge" => (FileKind::Gadgetbridge, None),
        "fitbit_takeout" => pick(ZipContent::FitbitTakeout, FileKind::FitbitDay),
        "apple_health" => pick(ZipContent::AppleHealth, FileKind::AppleHealthXml),
        "e4" => pick(ZipContent::E4Session, FileKind::E4Signal),
        "garmin_zip" => (FileKind::Zip, Some(ZipContent::Fit)),
        "health_auto_export" => (FileKind::HealthAutoExport, None),
        "health_auto_export_csv" => (FileKind::HealthAutoExportCsv, None),
        "json" => (FileKind::Native(Format::Json), None),
        "ndjson" => (FileKind::Native(Format::Ndjson), None),
        "csv" => (FileKind::Native(Format::Csv), None),
        other => bail!("unknown format {other:?}; one of {}", NAMED_FORMATS.join(", ")),
    })
}

/// [`ingest_path`], with the file's format named (one of [`NAMED_FORMATS`]) rather than
/// told from its content.
pub fn ingest_path_as(
    pipeline: &Pipeline,
    source: &str,
    path: &Path,
    patient: Option<&PatientId>,
    format: Option<&str>,
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
            if e.path().is_file() && is_e4_session_file(&n) {
                files.push((n, e.path()));
            }
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        return e4_session(pipeline, source, &p, &name, &names, &mut |i| {
            let path = &files[i].1;
            read_text_capped(fs::File::open(path)?, &path.display().to_string())
        });
    }
    let mut head = Vec::with_capacity(file_kind::HEAD_BYTES);
    std::io::Read::take(fs::File::open(path)?, file_kind::HEAD_BYTES as u64).read_to_end(&mut head)?;
    let detected = file_kind::detect(&name, &head);
    let (kind, zip_content) = match format {
        Some(f) => named_kind(f, detected)?,
        None => (detected, None),
    };
    let p = if kind.needs_patient() { Some(need_patient()?) } else { None };
    let format = match (kind, p) {
        (FileKind::Zip, Some(p)) => {
            let content = match zip_content {
                Some(c) => c,
                None => {
                    let all = SessionZip::open_matching(fs::File::open(path)?, |_, _| true)?;
                    let names: Vec<String> = all.names().map(str::to_owned).collect();
                    file_kind::zip_content(names.iter().map(String::as_str))
                }
            };
            let ctx = vendor_file::Ctx { pipeline, source, patient: &p, name: &name };
            return match content {
                ZipContent::E4Session => {
                    let mut zip = SessionZip::open(fs::File::open(path)?)?;
                    let names: Vec<String> = zip.names().map(str::to_owned).collect();
                    let stem = name.strip_suffix(".zip").unwrap_or(&name).to_owned();
                    e4_session(pipeline, source, &p, &stem, &names, &mut |i| Ok(zip.read(i, MAX_WHOLE_FILE_BYTES)?))
                }
                ZipContent::AppleHealth => {
                    let mut zip = SessionZip::open_matching(fs::File::open(path)?, |_, base| base == "export.xml")?;
                    let entry = std::io::BufReader::with_capacity(1 << 20, zip.entry(0)?);
                    apple_health_stream(pipeline, sub(WireFormat::AppleHealth, Vec::new()), &p, entry, &name, progress)
                }
                ZipContent::FitbitTakeout => vendor_file::fitbit_zip(&ctx, path),
                ZipContent::Fit => vendor_file::fit_zip(&ctx, path),
                ZipContent::Unknown => bail!(
                    "the archive holds nothing Vitals reads (an E4 session, an Apple Health export.xml, Fitbit per-day files of a Google Takeout, FIT files)"
                ),
            };
        }
        (FileKind::Fit, Some(p)) => {
            let ctx = vendor_file::Ctx { pipeline, source, patient: &p, name: &name };
            let bytes = read_capped(fs::File::open(path)?, &name)?;
            return vendor_file::fit(&ctx, &name, &bytes);
        }
        (FileKind::Gadgetbridge, Some(p)) => {
            let ctx = vendor_file::Ctx { pipeline, source, patient: &p, name: &name };
            return vendor_file::gadgetbridge(&ctx, path);
        }
        (FileKind::FitbitDay, Some(p)) => {
            let ctx = vendor_file::Ctx { pipeline, source, patient: &p, name: &name };
            let bytes = read_capped(fs::File::open(path)?, &name)?;
            return vendor_file::fitbit_day(&ctx, &name, &bytes);
        }
        (FileKind::E4Signal, Some(p)) => {
            let text = read_text_capped(fs::File::open(path)?, &name)?;
            return e4_session(pipeline, source, &p, "e4", std::slice::from_ref(&name), &mut |_| Ok(text.clone()));
        }
        (FileKind::AppleHealthXml, Some(p)) => {
            return apple_health_export(pipeline, sub(WireFormat::AppleHealth, Vec::new()), &p, path, progress);
        }
        (FileKind::HealthAutoExport, _) => WireFormat::HealthAutoExport,
        (FileKind::HealthAutoExportCsv, _) => WireFormat::HealthAutoExportCsv,
        // Line-based native files go in parts of whole lines.
        (FileKind::Native(f @ (Format::Ndjson | Format::Csv)), _) => {
            let mut report = Report::default();
            for_each_chunk(path, LINES_PER_PART, progress, |format, first_line, chunk| {
                debug_assert_eq!(format, f);
                let context = [("first_line", (first_line + 1).to_string())];
                let mut part = sub(WireFormat::Native(format), chunk.to_vec());
                part.patient = None;
                let accepted = match pipeline.decode_with(&part, &context) {
                    Ok(a) => a,
                    Err(e) => return Err(e.into()),
                };
                let mut r = durable(pipeline, accepted)?;
                for x in &mut r.rejected {
                    x.index += first_line;
                }
                report.absorb(r);
                Ok(())
            })?;
            return Ok(report);
        }
        (FileKind::Native(f), _) => WireFormat::Native(f),
        (kind, None) => bail!("{kind:?} needs a patient"),
    };
    let bytes = read_capped(fs::File::open(path)?, &name)?;
    let s = sub(format, bytes);
    let accepted = pipeline.decode(&s)?;
    durable(pipeline, accepted)
}

/// Calls `f(format, first line number (0-based), bytes)` for parts of `batch_lines` whole
/// lines of a native NDJSON or CSV file (a CSV header is repeated at the start of every part
/// and counts as its line -1), or once for a whole JSON document (at most
/// [`MAX_WHOLE_FILE_BYTES`]). A line longer than [`MAX_LINE_BYTES`] fails with its number.
/// `progress` gets the bytes read so far.
pub fn for_each_chunk(
    path: &Path,
    batch_lines: usize,
    progress: &mut dyn FnMut(u64),
    mut f: impl FnMut(Format, usize, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf()?.to_vec();
    let format = Format::sniff(&head);
    if format == Format::Json {
        let all = read_capped(reader, &path.display().to_string())?;
        f(format, 0, &all)?;
        progress(all.len() as u64);
        return Ok(());
    }
    let mut chunk = Vec::with_capacity(8 << 20);
    let mut header: Option<Vec<u8>> = None;
    let (mut first_line, mut lines, mut read) = (0usize, 0usize, 0u64);
    loop {
        let before = chunk.len();
        let n = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut chunk)?;
        if n > MAX_LINE_BYTES && !chunk.ends_with(b"\n") {
            bail!("line {} is longer than {} bytes", first_line + lines + 1, MAX_LINE_BYTES);
        }
        read += n as u64;
        if n > 0 && header.is_none() && format == Format::Csv && first_line == 0 && lines == 0 {
            // Remember a CSV header so that the decoder of every part can skip it.
            let line = &chunk[before..];
            header = Some(if line.starts_with(b"patient") { line.to_vec() } else { Vec::new() });
        }
        if n > 0 {
            lines += 1;
        }
        if (n == 0 && !chunk.is_empty()) || lines >= batch_lines.max(1) {
            f(format, first_line, &chunk)?;
            progress(read);
            first_line += lines;
            lines = 0;
            chunk.clear();
            // Later CSV parts start with the header again so line numbers stay exact:
            // the header takes line "-1" of the part.
            if let Some(h) = header.as_ref().filter(|h| !h.is_empty()) {
                chunk.extend_from_slice(h);
                first_line -= 1;
                lines = 1;
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Stores what a part gave and waits until it is durable; an overloaded store is an error
/// the file drop retries later.
pub(crate) fn durable(pipeline: &Pipeline, accepted: Accepted) -> anyhow::Result<Report> {
    let result = pipeline.submit(accepted).and_then(|p| p.wait());
    match result {
        Ok(r) => Ok(r),
        Err(IngestError::Store(StoreError::Overloaded { .. })) => bail!("the store is overloaded; try again later"),
        Err(e) => Err(e.into()),
    }
}

/// An Empatica E4 session (a folder, a zip, or one signal file): its signal files and
/// `tags.csv`, each file a part of its own.
fn e4_session(
    pipeline: &Pipeline,
    source: &str,
    patient: &PatientId,
    session: &str,
    files: &[String],
    read: &mut dyn FnMut(usize) -> anyhow::Result<String>,
) -> anyhow::Result<Report> {
    let device = if session == "e4" {
        "e4".to_owned()
    } else {
        format!("e4-{}", health_auto_export::device_from_source(session).unwrap_or_else(|| "session".into()))
    };
    if !files.iter().any(|n| is_e4_signal(n)) {
        bail!("holds none of {}", empatica::SIGNAL_FILES.join(", "));
    }
    let mut v: Validator<'static> = pipeline.validator(Some(patient.clone()), WireFormat::Empatica);
    let mut report = Report::default();
    // One file in memory at a time, each a part of its own.
    for (i, f) in files.iter().enumerate() {
        let text = read(i)?;
        let f = f.clone();
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
    let reader = std::io::BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    apple_health_stream(pipeline, sub, patient, reader, &file, progress)
}

/// An Apple Health `export.xml` from a reader (a file, or the entry of an `export.zip`).
fn apple_health_stream(
    pipeline: &Pipeline,
    sub: Submission,
    patient: &PatientId,
    reader: impl std::io::BufRead,
    file: &str,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Report> {
    let mut v = pipeline.validator(Some(patient.clone()), sub.format);
    let mut report = Report::default();
    let context = [("file", file.to_owned())];
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
