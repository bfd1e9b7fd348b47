//! `vitals ingest`: files into a data directory (through the server's ingest pipeline, as
//! `cli/ingest`) or to a running server over HTTP; native files are streamed in chunks of
//! whole lines.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use vitals_core::{PatientId, Rejection};
use vitals_ingest::Format;
use vitals_ingest::health_auto_export::Unsupported;
use vitals_server::config::Config;
use vitals_server::source::file::{for_each_chunk, ingest_path};
use vitals_server::source::pipeline::{Pipeline, Report, Submission};
use vitals_server::source::wire_format::WireFormat;

use super::{remote, url_escape};

/// The dead-letter source name of `vitals ingest` into a data directory.
const SOURCE: &str = "cli/ingest";
use crate::cli::IngestArgs;
use crate::client::Client;

/// Totals of an ingest run.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

const MAX_PRINTED_REJECTIONS: usize = 50;

pub(crate) fn ingest(config: &Config, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let client = remote(&a.remote)?;
    let local = if client.is_none() { Some(vitals_server::stores::open_pipeline(config)?) } else { None };
    let pipeline = local.as_ref().map(|(_, p)| p);
    let total_bytes: u64 = a.files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(total_bytes) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut all = Tally::default();
    let mut printed = 0usize;
    let patient = a.patient.as_deref().map(PatientId::new).transpose().map_err(|e| anyhow::anyhow!("--patient {e}"))?;
    let mut done_bytes = 0u64;
    for file in &a.files {
        if !is_native_file(file)? {
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let o = match (&client, pipeline) {
                (None, Some(p)) => {
                    let base = done_bytes;
                    let mut progress = |b: u64| bar.set_position(base + b);
                    ingest_path(p, SOURCE, file, patient.as_ref(), &mut progress)
                        .with_context(|| format!("ingesting {}", file.display()))?
                }
                (Some(c), _) => post_export(c, file, patient.as_ref())?,
                (None, None) => bail!("no target"),
            };
            done_bytes += size;
            bar.set_position(done_bytes);
            for r in o.rejected.iter().take(MAX_PRINTED_REJECTIONS.saturating_sub(printed)) {
                bar.suspend(|| eprintln!("{}: item {}: {}: {}", file.display(), r.index + 1, r.code, r.message));
                printed += 1;
            }
            let extra = if o.unsupported.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = o.unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
                format!("; not stored yet: {}", parts.join(", "))
            };
            bar.suspend(|| {
                eprintln!(
                    "{}: {} accepted, {} rejected, {} events{extra}",
                    file.display(),
                    o.accepted,
                    o.refused,
                    o.events
                )
            });
            all.accepted += o.accepted;
            all.rejected += o.refused;
            continue;
        }
        let mut tally = Tally::default();
        let mut report = |offset: usize, rejections: Vec<Rejection>, refused: usize, accepted: usize| {
            tally.accepted += accepted;
            tally.rejected += refused;
            for r in rejections {
                if printed < MAX_PRINTED_REJECTIONS {
                    bar.suspend(|| eprintln!("{}:{}: {}: {}", file.display(), r.index + offset + 1, r.code, r.message));
                    printed += 1;
                }
            }
        };
        let base = done_bytes;
        let mut progress = |b: u64| bar.set_position(base + b);
        for_each_chunk(file, a.batch_lines, &mut progress, |format, first_line, chunk| {
            let r = match (&client, pipeline) {
                (Some(c), _) => post_chunk(c, format, chunk)?,
                (None, Some(p)) => write_chunk(p, format, chunk)?,
                (None, None) => bail!("no target"),
            };
            report(first_line, r.rejected, r.refused, r.accepted);
            Ok(())
        })
        .with_context(|| format!("ingesting {}", file.display()))?;
        done_bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        bar.suspend(|| eprintln!("{}: {} accepted, {} rejected", file.display(), tally.accepted, tally.rejected));
        all.accepted += tally.accepted;
        all.rejected += tally.rejected;
    }
    bar.finish_and_clear();
    if printed < all.rejected {
        eprintln!("({} more rejections not shown)", all.rejected - printed);
    }
    println!("{} accepted, {} rejected", all.accepted, all.rejected);
    if let Some((store, _)) = local {
        store.close()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a file is native NDJSON/CSV/JSON (streamed in chunks) rather than a format
/// that needs a patient (Health Auto Export, Apple Health, Empatica E4).
/// Whether a file is Vitals' own JSON, NDJSON or CSV (streamed in chunks), told from its
/// name and first bytes as the file drop tells it; folders and every other kind go whole.
fn is_native_file(path: &Path) -> anyhow::Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut head = vec![0u8; vitals_ingest::file_kind::HEAD_BYTES];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let kind = vitals_ingest::file_kind::detect(&name, &head[..n]);
    Ok(matches!(kind, vitals_ingest::file_kind::FileKind::Native(_)))
}

/// A file that is not native (Health Auto Export, Apple Health, FIT, Gadgetbridge, Fitbit
/// Takeout, E4...) sent to the server's upload route, streamed from disk.
fn post_export(client: &Client, path: &Path, patient: Option<&PatientId>) -> anyhow::Result<Report> {
    if path.is_dir() {
        bail!("{}: a folder cannot be sent to --url; zip it, or use --data-dir or the file-drop inbox", path.display());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut query = format!("/api/v1/ingest/file?name={}", url_escape(&name));
    if let Some(p) = patient {
        query.push_str(&format!("&patient={}", url_escape(p.as_str())));
    }
    let text = client.post_file(&query, path)?;
    let v: serde_json::Value = serde_json::from_str(&text).context("reading the server's answer")?;
    let mut report = answer(&v);
    report.events = v["events"].as_u64().unwrap_or(0) as usize;
    report.unsupported = v["unsupported"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| Unsupported {
                    section: u["section"].as_str().unwrap_or("?").to_owned(),
                    count: u["count"].as_u64().unwrap_or(0) as usize,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(report)
}

/// The accepted count and refusals of a server's answer to a write.
fn answer(v: &serde_json::Value) -> Report {
    let rejected: Vec<Rejection> = v["rejected"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let code = vitals_core::RejectCode::ALL
                .into_iter()
                .find(|c| Some(c.as_str()) == r["code"].as_str())
                .unwrap_or(vitals_core::RejectCode::Malformed);
            Rejection::new(r["index"].as_u64().unwrap_or(0) as usize, code, r["message"].as_str().unwrap_or(""))
        })
        .collect();
    let refused = v["rejected_total"].as_u64().map_or(rejected.len(), |n| n as usize);
    Report { accepted: v["accepted"].as_u64().unwrap_or(0) as usize, rejected, refused, ..Report::default() }
}

/// Writes a chunk of a native file into the data directory through the pipeline.
fn write_chunk(pipeline: &Pipeline, format: Format, chunk: &[u8]) -> anyhow::Result<Report> {
    if chunk.iter().all(u8::is_ascii_whitespace) || is_only_header(chunk) {
        return Ok(Report::default());
    }
    let sub = Submission::new(SOURCE, WireFormat::Native(format), chunk.to_vec());
    Ok(pipeline.ingest_blocking(&sub)?)
}

fn is_only_header(chunk: &[u8]) -> bool {
    chunk.starts_with(b"patient") && chunk.iter().filter(|b| **b == b'\n').count() <= 1
}

fn post_chunk(client: &Client, format: Format, chunk: &[u8]) -> anyhow::Result<Report> {
    if chunk.iter().all(u8::is_ascii_whitespace) || is_only_header(chunk) {
        return Ok(Report::default());
    }
    let ct = match format {
        Format::Json => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv",
    };
    let text = client.post("/api/v1/samples", ct, chunk)?;
    let v: serde_json::Value = serde_json::from_str(&text).context("reading the server's answer")?;
    Ok(answer(&v))
}
