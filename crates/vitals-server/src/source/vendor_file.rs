//! Vendor files through the pipeline: FIT files (alone, or in a Garmin Connect zip), a
//! Gadgetbridge database, the Fitbit per-day files of a Google Takeout (alone, or in the
//! Takeout zip). Each file (each chunk of a database) is a part of its own, durable before
//! the next is read; refused items are dead letters with the file's name.

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use vitals_core::PatientId;
use vitals_ingest::file_kind::is_fit_name;
use vitals_ingest::session_zip::SessionZip;
use vitals_ingest::{fit, fitbit_takeout, gadgetbridge};

use super::file::{MAX_WHOLE_FILE_BYTES, durable};
use super::pipeline::{Pipeline, Report, Submission};
use super::wire_format::WireFormat;

/// Items per part of a database.
const CHUNK: usize = 50_000;

/// Where a file comes from and whose it is.
pub(crate) struct Ctx<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) source: &'a str,
    pub(crate) patient: &'a PatientId,
    /// The file's (or archive's) name, for messages and dead letters.
    pub(crate) name: &'a str,
}

impl Ctx<'_> {
    fn submission(&self, format: WireFormat, body: &[u8]) -> Submission {
        Submission::new(self.source, format, body.to_vec())
            .patient(Some(self.patient.clone()))
            .only(Some(self.patient.clone()))
    }
}

/// One FIT file; a file that is not FIT at all is kept as a dead letter and fails.
pub(crate) fn fit(ctx: &Ctx<'_>, file: &str, bytes: &[u8]) -> anyhow::Result<Report> {
    let sub = ctx.submission(WireFormat::Fit, &[]);
    let mut v = ctx.pipeline.validator(Some(ctx.patient.clone()), WireFormat::Fit);
    match fit::decode(bytes, ctx.patient.as_str(), &mut v) {
        Ok(d) => {
            let context = [("file", file.to_owned())];
            let accepted = ctx.pipeline.accept(&sub, bytes, d.batch, d.events, Vec::new(), &context);
            durable(ctx.pipeline, accepted)
        }
        Err(e) => {
            let why = format!("{file}: {e}");
            ctx.pipeline.refuse(&ctx.submission(WireFormat::Fit, bytes), &why);
            bail!(why)
        }
    }
}

/// The FIT files of an archive (a Garmin Connect export), each a part of its own.
pub(crate) fn fit_zip(ctx: &Ctx<'_>, path: &Path) -> anyhow::Result<Report> {
    let mut zip = SessionZip::open_matching(fs::File::open(path)?, |_, base| is_fit_name(base))?;
    let names: Vec<String> = zip.names().map(str::to_owned).collect();
    if names.is_empty() {
        bail!("{}: the archive holds no .fit file", ctx.name);
    }
    let mut report = Report::default();
    for (i, n) in names.iter().enumerate() {
        let bytes = zip.read_bytes(i, MAX_WHOLE_FILE_BYTES)?;
        report.absorb(fit(ctx, n, &bytes)?);
    }
    Ok(report)
}

/// One per-day file of a Fitbit Takeout, known by its name (`steps-2024-01-15.json`).
pub(crate) fn fitbit_day(ctx: &Ctx<'_>, file: &str, bytes: &[u8]) -> anyhow::Result<Report> {
    let Some(kind) = fitbit_takeout::kind_of(file) else {
        bail!(
            "{file}: a Fitbit per-day file is known by its name, as the Takeout writes it (heart_rate-, steps- or resting_heart_rate-YYYY-MM-DD.json)"
        );
    };
    let sub = ctx.submission(WireFormat::FitbitTakeout, &[]);
    let mut v = ctx.pipeline.validator(Some(ctx.patient.clone()), WireFormat::FitbitTakeout);
    let context = [("file", file.to_owned())];
    match fitbit_takeout::decode(kind, file, bytes, ctx.patient.as_str(), &mut v) {
        Ok(batch) => {
            let accepted = ctx.pipeline.accept(&sub, bytes, batch, Vec::new(), Vec::new(), &context);
            durable(ctx.pipeline, accepted)
        }
        Err(e) => {
            // One unreadable day does not stop the others: it is a dead letter.
            let why = e.to_string();
            let dead_letter = ctx.pipeline.refuse(&ctx.submission(WireFormat::FitbitTakeout, bytes), &why);
            let rejected = vec![vitals_core::Rejection::new(0, vitals_core::RejectCode::Malformed, why)];
            Ok(Report { rejected, refused: 1, dead_letter, ..Report::default() })
        }
    }
}

/// The Fitbit per-day files of a Google Takeout archive, each a part of its own.
pub(crate) fn fitbit_zip(ctx: &Ctx<'_>, path: &Path) -> anyhow::Result<Report> {
    let mut zip = SessionZip::open_matching(fs::File::open(path)?, |_, base| fitbit_takeout::kind_of(base).is_some())?;
    let names: Vec<String> = zip.names().map(str::to_owned).collect();
    if names.is_empty() {
        bail!("{}: the archive holds no Fitbit per-day file Vitals reads", ctx.name);
    }
    let mut report = Report::default();
    for (i, n) in names.iter().enumerate() {
        let bytes = zip.read_bytes(i, MAX_WHOLE_FILE_BYTES)?;
        report.absorb(fitbit_day(ctx, n, &bytes)?);
    }
    Ok(report)
}

/// An SQLite URI that opens `path` read-only and immutable: no lock, no journal or WAL
/// file written beside it.
fn immutable_uri(path: &Path) -> String {
    let mut out = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out.push_str("?immutable=1");
    out
}

/// A Gadgetbridge database, read table by table in parts of [`CHUNK`] items.
pub(crate) fn gadgetbridge(ctx: &Ctx<'_>, path: &Path) -> anyhow::Result<Report> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = rusqlite::Connection::open_with_flags(immutable_uri(path), flags)
        .with_context(|| format!("{}: opening the database", ctx.name))?;
    let sub = ctx.submission(WireFormat::Gadgetbridge, &[]);
    let mut v = ctx.pipeline.validator(Some(ctx.patient.clone()), WireFormat::Gadgetbridge);
    let context = [("file", ctx.name.to_owned())];
    let mut report = Report::default();
    let read = gadgetbridge::read(&db, ctx.patient.as_str(), &mut v, CHUNK, |batch| {
        // Rows are not lines: the dead letter describes the refused ones, without an excerpt.
        let accepted = ctx.pipeline.accept(&sub, b"", batch, Vec::new(), Vec::new(), &context);
        report.absorb(durable(ctx.pipeline, accepted)?);
        Ok::<(), anyhow::Error>(())
    });
    let summary = match read {
        Ok(Ok(summary)) => summary,
        Ok(Err(e)) => return Err(e),
        Err(e) => bail!("{}: {e}", ctx.name),
    };
    // What the database says of each device (model, firmware), as `device_info` events.
    let infos: Vec<vitals_core::Event> = summary.devices.iter().map(|d| device_info(ctx.patient.as_str(), d)).collect();
    if !infos.is_empty() {
        let accepted = ctx.pipeline.accept(&sub, b"", vitals_ingest::Batch::default(), infos, Vec::new(), &context);
        report.absorb(durable(ctx.pipeline, accepted)?);
    }
    Ok(report)
}

/// A `device_info` event of a Gadgetbridge device, at the time its firmware was recorded.
fn device_info(patient: &str, d: &gadgetbridge::DeviceInfo) -> vitals_core::Event {
    use serde_json::Value;
    let t = d.firmware.as_ref().map_or(0, |f| f.1);
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("device".to_owned(), Value::String(d.device.clone()));
    if let Some((f, _)) = &d.firmware {
        attributes.insert("firmware".to_owned(), Value::String(f.clone()));
    }
    if let Some(m) = &d.model {
        attributes.insert("model".to_owned(), Value::String(m.clone()));
    }
    let extra = format!("{}/{}", d.device, d.firmware.as_ref().map_or("", |f| f.0.as_str()));
    vitals_core::Event {
        id: vitals_core::Event::content_id(patient, fit::DEVICE_INFO, t, t, &extra),
        patient: patient.to_owned(),
        kind: fit::DEVICE_INFO.to_owned(),
        start_ms: t,
        end_ms: t,
        source: "gadgetbridge".to_owned(),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_paths_are_escaped_in_the_uri() {
        assert_eq!(immutable_uri(Path::new("/d/a b%?#.db")), "file:/d/a b%25%3f%23.db?immutable=1");
    }
}
