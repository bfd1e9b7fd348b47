//! `vitals sql`: SQL over a data directory (as the operator: every pseudonym) or a running
//! server (`--url`, as the token's user), written as a table, CSV, JSON, Arrow IPC or
//! Parquet to stdout or a file; and `vitals lake ddl`: tables over the lake for DuckDB,
//! Athena and Spark.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use vitals_server::app::App;
use vitals_server::config::Config;
use vitals_sql::Scope;
use vitals_sql::answer::{self, Format};

use super::admin::cli_audit;
use super::{remote, url_escape};
use crate::cli::{LakeCommand, SqlArgs};

pub(crate) fn sql(config: Config, a: &SqlArgs) -> anyhow::Result<ExitCode> {
    let text = if a.query == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the query from stdin")?;
        s
    } else {
        a.query.clone()
    };
    let format: Format = a.format.parse().map_err(anyhow::Error::msg)?;
    let bytes = match remote(&a.remote)? {
        Some(client) => {
            // The server writes every format but the terminal table, which is drawn here.
            let wire = if format == Format::Table { Format::Arrow } else { format };
            let body = client.post_bytes(
                &format!("/api/v1/sql?format={}", url_escape(wire.name())),
                "application/sql",
                text.as_bytes(),
            )?;
            if format == Format::Table { table_of_arrow(&body)? } else { body }
        }
        None => {
            let app = App::open_data_dir(config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the query runtime")?;
            let answer = runtime.block_on(app.sql.query(&text, &Scope::All));
            cli_audit(&app.directory, "sql.query", None, &format!("sql {text}"))?;
            let answer = answer?;
            app.store.close()?;
            answer::encode(&answer, format)?
        }
    };
    match &a.output {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            if format == Format::Json {
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws an Arrow IPC stream as a text table.
fn table_of_arrow(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let reader = vitals_sql::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    Ok(answer::encode(&vitals_sql::Answer { schema, batches, rows }, Format::Table)?)
}

pub(crate) fn lake(config: &Config, command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Ddl { engine, location } => {
            use vitals_storage::lake_ddl;
            let engine: lake_ddl::Engine = engine.parse().map_err(anyhow::Error::msg)?;
            let lake = config.data_dir().lake();
            let location = match location {
                Some(l) => l,
                None => std::path::absolute(&lake)?.to_string_lossy().into_owned(),
            };
            let mut metrics = lake_ddl::metrics_in(&lake);
            // Months compacted across days (see docs/lake.md).
            let archived = lake_ddl::metrics_in(&lake.join("archive"));
            if metrics.is_empty() && archived.is_empty() {
                metrics = vitals_core::Catalog::standard().all().map(|(_, m)| m.code).collect();
            }
            print!("{}", lake_ddl::ddl(engine, &location, &metrics, &archived));
            Ok(ExitCode::SUCCESS)
        }
        LakeCommand::Compact => {
            let store = vitals_server::stores::open_store(config)?;
            let before = store.segments().len();
            let merges = store.compact_all()?;
            let after = store.segments().len();
            store.close()?;
            println!("{merges} merges: {before} segments before, {after} after");
            Ok(ExitCode::SUCCESS)
        }
        LakeCommand::Fhir { out, patient, metric, from, to } => {
            use vitals_core::time::parse_time;
            let patients = patient
                .iter()
                .map(|p| vitals_core::PatientId::new(p).map_err(|e| anyhow::anyhow!("patient {p:?} {e}")))
                .collect::<anyhow::Result<std::collections::BTreeSet<_>>>()?;
            let catalog = vitals_core::Catalog::standard();
            let metrics = metric
                .iter()
                .map(|m| catalog.id(m).ok_or_else(|| anyhow::anyhow!("unknown metric {m:?}")))
                .collect::<anyhow::Result<std::collections::BTreeSet<_>>>()?;
            let time = |t: &Option<String>, default: i64| -> anyhow::Result<i64> {
                t.as_deref().map_or(Ok(default), |s| parse_time(s).map_err(|e| anyhow::anyhow!("{s:?}: {e}")))
            };
            let sel = vitals_server::fhir::Selection {
                patients: (!patients.is_empty()).then_some(patients),
                metrics: (!metrics.is_empty()).then_some(metrics),
                from: time(&from, 0)?,
                to: time(&to, i64::MAX)?,
            };
            let app = App::open_data_dir(config.clone())?;
            let request = format!("vitals lake fhir {patient:?} {metric:?} from {from:?} to {to:?}");
            let manifest = vitals_server::fhir::bulk_to_dir(&app, &out, &sel, &request)?;
            let single = (patient.len() == 1).then(|| patient[0].as_str());
            cli_audit(&app.directory, "fhir.export", single, &format!("fhir export to {}: {request}", out.display()))?;
            app.store.close()?;
            for o in manifest["output"].as_array().into_iter().flatten() {
                println!(
                    "{} {} in {}",
                    o["count"],
                    o["type"].as_str().unwrap_or(""),
                    out.join(o["url"].as_str().unwrap_or("")).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
