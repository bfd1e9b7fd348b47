//! The commands: serve, query, ingest, admin.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use vitals_core::time::{format_time, parse_time};
use vitals_core::{Catalog, Clock, DeviceId, DurationMs, PatientId, Rejection, SystemClock, Validator};
use vitals_ingest::{Format, native};
use vitals_query::{Agg, QueryResult, SeriesQuery};
use vitals_storage::Store;
use vitals_storage::dead_letter::DeadLetters;
use vitals_storage::event_store::EventStore;

use crate::auth::{Directory, Role};
use crate::cli::{
    AdminCommand, Cli, Command, DeadLetterCommand, IngestArgs, NotificationCommand, OutputFormat, QueryArgs,
    RemoteArgs, ServeArgs, TokenCommand,
};
use crate::client::Client;
use crate::config::{Config, Overrides};
use crate::series_api::{ParsedSeries, render_csv, render_json};
use crate::server::{self, App};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides { data_dir: cli.data_dir.clone(), ..Overrides::default() };
    if let Command::Serve(a) = &cli.command {
        overrides.listen = a.listen.clone();
        overrides.repair_wal = a.repair_wal;
    }
    if let Command::Demo(a) = &cli.command {
        overrides.listen = a.listen.clone();
        overrides.data_dir = Some(cli.data_dir.clone().unwrap_or_else(crate::demo::default_data_dir));
    }
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    init_logging(&config, matches!(cli.command, Command::Serve(_)));
    match cli.command {
        Command::Serve(a) => serve(config, &a),
        Command::Query(a) => query(&config, &a),
        Command::Ingest(a) => ingest(&config, &a),
        Command::Admin(a) => match a.command {
            AdminCommand::Token { command } => token(&config, command),
            AdminCommand::User { command } => crate::admin::user(&config, command),
            AdminCommand::Team { command } => crate::admin::team(&config, command),
            AdminCommand::Patient { command } => crate::admin::patient(&config, command),
            AdminCommand::Audit { command } => crate::admin::audit(&config, command),
            AdminCommand::Device { command } => crate::admin::device(&config, command),
            AdminCommand::Vault { command } => crate::admin::vault(&config, command),
            AdminCommand::DeadLetters { command } => dead_letters(&config, command),
            AdminCommand::Notifications { command } => notifications(&config, command),
        },
        Command::Bench(a) => crate::bench::run(&config, &a),
        Command::Simulate(a) => crate::simulate::run(&a),
        Command::Demo(a) => crate::demo::run(config, &a),
    }
}

fn init_logging(config: &Config, server: bool) {
    let default = if server { config.log.level.clone() } else { "warn".to_owned() };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log.format == "json" { builder.json().try_init() } else { builder.try_init() };
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    let dir = &config.storage.data_dir;
    let store = Store::open(dir, config.store_config(), Arc::new(SystemClock))
        .with_context(|| format!("opening the data directory {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens the event store of a data directory.
pub fn open_events(config: &Config) -> anyhow::Result<Arc<EventStore>> {
    let dir = config.storage.data_dir.join("events");
    Ok(Arc::new(EventStore::open(&dir).with_context(|| format!("opening the event store {}", dir.display()))?))
}

/// Opens the rule store of a data directory (with the config file's rules).
pub fn open_rules(config: &Config) -> anyhow::Result<Arc<crate::rules::RuleStore>> {
    let dir = config.storage.data_dir.join("rules");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let r = crate::rules::RuleStore::open(&dir, &config.alerting.rules, &config.alerting.packs)
        .with_context(|| format!("opening the rule store {}", dir.display()))?;
    Ok(Arc::new(r))
}

/// Opens the alert store of a data directory.
pub fn open_alerts(config: &Config) -> anyhow::Result<Arc<crate::alerts::AlertStore>> {
    let dir = config.storage.data_dir.join("alerts");
    let a =
        crate::alerts::AlertStore::open(&dir).with_context(|| format!("opening the alert store {}", dir.display()))?;
    Ok(Arc::new(a))
}

/// Opens the cohort store of a data directory.
/// Opens the identity vault with the configured key ring (see [`crate::config::VaultConfig`]).
pub fn open_vault(config: &Config) -> anyhow::Result<vitals_vault::Vault> {
    let keys = vault_keys(config)?;
    let dir = config.storage.data_dir.join("vault");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(vitals_vault::Vault::open(&dir.join("identity.sqlite"), keys)?)
}

/// The vault's key file: configured, or the default one in the data directory.
pub fn vault_key_file(config: &Config) -> std::path::PathBuf {
    if config.vault.key_file.as_os_str().is_empty() {
        config.storage.data_dir.join("keys").join("vault.key")
    } else {
        config.vault.key_file.clone()
    }
}

fn vault_keys(config: &Config) -> anyhow::Result<vitals_vault::Keyring> {
    if config.vault.key_file.as_os_str().is_empty()
        && let Some(v) = crate::config::vault_key_env()
    {
        return Ok(vitals_vault::Keyring::parse_env(&v)?);
    }
    let path = vault_key_file(config);
    if !path.exists() && config.vault.key_file.as_os_str().is_empty() {
        tracing::warn!(
            file = %path.display(),
            "created a new identity vault key next to the data; move it off the data disk (vault.key_file) and back it up"
        );
        return Ok(vitals_vault::Keyring::create_file(&path, "k1")?);
    }
    Ok(vitals_vault::Keyring::load(&path)?)
}

pub fn open_cohorts(config: &Config) -> anyhow::Result<Arc<crate::cohorts::CohortStore>> {
    let dir = config.storage.data_dir.join("cohorts");
    let c = crate::cohorts::CohortStore::open(&dir)
        .with_context(|| format!("opening the cohort store {}", dir.display()))?;
    Ok(Arc::new(c))
}

/// Opens the dead-letter store of a data directory.
pub fn open_dead_letters(config: &Config) -> anyhow::Result<Arc<DeadLetters>> {
    let dir = config.storage.data_dir.join("dead-letters");
    let d = DeadLetters::open(&dir, config.ingest.dead_letter_max_bytes)
        .with_context(|| format!("opening the dead-letter store {}", dir.display()))?;
    Ok(Arc::new(d))
}

fn serve(config: Config, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = open_store(&config)?;
        let tokens = Directory::open(&config.storage.data_dir)?;
        if tokens.is_empty()? {
            let preset = crate::config::initial_admin_token();
            let (_, secret) = tokens.create("initial admin", Role::Admin, preset.as_deref(), None, clock.now_ms())?;
            if preset.is_none() {
                println!("admin token (shown once, store it safely): {secret}");
            } else {
                println!("admin token set from VITALS_ADMIN_TOKEN");
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if crate::tls::enabled(&config) { "https" } else { "http" };
        println!("vitals listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.storage.data_dir.display(), "serving");
        let app = Arc::new(App::open(store.clone(), tokens, config, clock)?);
        server::serve(listener, app, server::shutdown_signal()).await?;
        tokio::task::spawn_blocking(move || store.close()).await?.context("flushing the store at shutdown")?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}

fn remote(r: &RemoteArgs) -> anyhow::Result<Option<Client>> {
    r.url.as_deref().map(|u| Client::new(u, r.token.as_deref())).transpose()
}

fn query(config: &Config, a: &QueryArgs) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::standard();
    let metric = catalog.id(&a.metric).with_context(|| format!("unknown metric {:?}", a.metric))?;
    let aggs: Vec<Agg> = match &a.agg {
        Some(s) => s.split(',').map(str::parse::<Agg>).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?,
        None => vec![Agg::Mean],
    };
    if let Some(client) = remote(&a.remote)? {
        let mut params = vec![];
        for (k, v) in [("from", &a.from), ("to", &a.to), ("every", &a.every), ("agg", &a.agg), ("device", &a.device)] {
            if let Some(v) = v {
                params.push(format!("{k}={}", url_escape(v)));
            }
        }
        if a.every.is_none() {
            params.push("include=device".into());
        }
        let path = format!(
            "/api/v1/patients/{}/series/{}?{}",
            url_escape(&a.patient),
            url_escape(&a.metric),
            params.join("&")
        );
        match a.format {
            OutputFormat::Csv => print!("{}", client.get(&path, "text/csv")?),
            OutputFormat::Json => println!("{}", client.get(&path, "application/json")?),
            OutputFormat::Table => {
                let v: serde_json::Value = serde_json::from_str(&client.get(&path, "application/json")?)?;
                print_table_json(&v, a.every.is_some(), &aggs);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let patient = PatientId::new(&a.patient).map_err(|e| anyhow::anyhow!("patient {:?} {e}", a.patient))?;
    let from = a.from.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    let to = a.to.as_deref().map(parse_time).transpose()?.unwrap_or_else(|| SystemClock.now_ms() + 1);
    let every_ms = a.every.as_deref().map(|s| s.parse::<DurationMs>()).transpose()?.map(|d| d.as_ms());
    let device = a.device.as_deref().map(DeviceId::new).transpose().map_err(|e| anyhow::anyhow!("device {e}"))?;
    let store = open_store(config)?;
    let q = SeriesQuery { patient, metric, device, from, to, every_ms, aggs: aggs.clone() };
    let result = vitals_query::run(&store, &q)?;
    let parsed = ParsedSeries::new(q, every_ms.is_none());
    match a.format {
        OutputFormat::Csv => print!("{}", render_csv(&parsed, &result)),
        OutputFormat::Json => println!("{}", render_json(catalog, &parsed, &result)),
        OutputFormat::Table => print_table(&result, &aggs),
    }
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(result: &QueryResult, aggs: &[Agg]) {
    match result {
        QueryResult::Raw(points) => {
            println!("{:<26} {:>12}  device", "time", "value");
            for p in points {
                println!(
                    "{:<26} {:>12}  {}",
                    format_time(p.time_ms),
                    p.value,
                    p.device.as_ref().map(|d| d.as_str()).unwrap_or("-")
                );
            }
        }
        QueryResult::Buckets(buckets) => {
            print!("{:<26}", "time");
            for a in aggs {
                print!(" {:>12}", a.as_str());
            }
            println!();
            for b in buckets {
                print!("{:<26}", format_time(b.time_ms));
                for v in &b.values {
                    print!(" {:>12}", format!("{v:.3}").trim_end_matches('0').trim_end_matches('.'));
                }
                println!();
            }
        }
    }
}

fn print_table_json(v: &serde_json::Value, bucketed: bool, aggs: &[Agg]) {
    let points = v.get("points").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    let cols: Vec<&str> = if bucketed { aggs.iter().map(|a| a.as_str()).collect() } else { vec!["value", "device"] };
    print!("{:<26}", "time");
    for c in &cols {
        print!(" {c:>12}");
    }
    println!();
    for p in points {
        print!("{:<26}", p.get("time").and_then(|t| t.as_str()).unwrap_or(""));
        for c in &cols {
            let cell = match p.get(*c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => "-".into(),
                Some(x) => x.to_string(),
            };
            print!(" {cell:>12}");
        }
        println!();
    }
}

/// Percent-encodes a URL path segment or query value.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Totals of an ingest run.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

const MAX_PRINTED_REJECTIONS: usize = 50;

fn ingest(config: &Config, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let client = remote(&a.remote)?;
    let store = if client.is_none() { Some(open_store(config)?) } else { None };
    let dead = if client.is_none() { Some(open_dead_letters(config)?) } else { None };
    let events = if client.is_none() { Some(open_events(config)?) } else { None };
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
            let o = match (&client, &store) {
                (None, Some(s)) => {
                    let base = done_bytes;
                    let mut progress = |b: u64| bar.set_position(base + b);
                    let evs = events.as_deref().context("no event store")?;
                    crate::file_drop::ingest_path(
                        config,
                        s,
                        evs,
                        SystemClock.now_ms(),
                        file,
                        patient.as_ref(),
                        &mut progress,
                    )
                    .with_context(|| format!("ingesting {}", file.display()))?
                }
                (Some(c), _) => post_export(c, file, patient.as_ref())?,
                (None, None) => bail!("no target"),
            };
            done_bytes += size;
            bar.set_position(done_bytes);
            for r in o.rejections.iter().take(MAX_PRINTED_REJECTIONS.saturating_sub(printed)) {
                bar.suspend(|| eprintln!("{}: item {}: {}: {}", file.display(), r.index + 1, r.code, r.message));
                printed += 1;
            }
            let extra = if o.not_stored.is_empty() {
                String::new()
            } else {
                format!("; not stored yet: {}", o.not_stored.join(", "))
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
            all.accepted += o.accepted as usize;
            all.rejected += o.refused as usize;
            continue;
        }
        let mut tally = Tally::default();
        let mut report = |offset: usize, rejections: Vec<Rejection>, accepted: usize| {
            tally.accepted += accepted;
            tally.rejected += rejections.len();
            for r in rejections {
                if printed < MAX_PRINTED_REJECTIONS {
                    bar.suspend(|| eprintln!("{}:{}: {}: {}", file.display(), r.index + offset + 1, r.code, r.message));
                    printed += 1;
                }
            }
        };
        for_each_chunk(file, a.batch_lines, &bar, |format, first_line, chunk| {
            let (accepted, rejections) = match (&client, &store) {
                (Some(c), _) => post_chunk(c, format, chunk)?,
                (None, Some(s)) => write_chunk(config, s, dead.as_deref(), format, chunk)?,
                (None, None) => bail!("no target"),
            };
            report(first_line, rejections, accepted);
            Ok(())
        })
        .with_context(|| format!("ingesting {}", file.display()))?;
        bar.suspend(|| eprintln!("{}: {} accepted, {} rejected", file.display(), tally.accepted, tally.rejected));
        all.accepted += tally.accepted;
        all.rejected += tally.rejected;
    }
    bar.finish_and_clear();
    if printed < all.rejected {
        eprintln!("({} more rejections not shown)", all.rejected - printed);
    }
    println!("{} accepted, {} rejected", all.accepted, all.rejected);
    if let Some(s) = store {
        s.close()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a file is native NDJSON/CSV/JSON (streamed in chunks) rather than a format
/// that needs a patient (Health Auto Export, Apple Health, Empatica E4).
fn is_native_file(path: &Path) -> anyhow::Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if vitals_ingest::empatica::SIGNAL_FILES.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
        return Ok(false);
    }
    let mut head = vec![0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let head: String = String::from_utf8_lossy(&head[..n]).chars().filter(|c| !c.is_whitespace()).collect();
    let hae_csv = head.len() > 4
        && head[..4].eq_ignore_ascii_case("date")
        && head.split(',').next().is_some_and(|_| head.contains('('));
    Ok(!(head.starts_with('<') || head.starts_with("{\"data\":") || hae_csv))
}

/// Sends a Health Auto Export file to a running server; other patient-less formats need
/// the data directory (or the server's file-drop inbox).
fn post_export(
    client: &Client,
    path: &Path,
    patient: Option<&PatientId>,
) -> anyhow::Result<crate::file_drop::FileOutcome> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_none_or(|b| *b != b'{') {
        bail!(
            "{}: only Health Auto Export files can be sent to --url; use --data-dir or the file-drop inbox",
            path.display()
        );
    }
    let patient = patient.context("Health Auto Export files need --patient")?;
    let text = client.post(
        &format!("/api/v1/ingest/health-auto-export?patient={}", url_escape(patient.as_str())),
        "application/json",
        &bytes,
    )?;
    let v: serde_json::Value = serde_json::from_str(&text).context("reading the server's answer")?;
    let rejections: Vec<Rejection> = serde_json::from_value::<Vec<serde_json::Value>>(v["rejected"].clone())
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
    let not_stored = v["unsupported"]
        .as_array()
        .map(|a| a.iter().map(|u| format!("{} ({})", u["section"].as_str().unwrap_or("?"), u["count"])).collect())
        .unwrap_or_default();
    Ok(crate::file_drop::FileOutcome {
        events: v["events"].as_u64().unwrap_or(0),
        accepted: v["accepted"].as_u64().unwrap_or(0),
        refused: rejections.len() as u64,
        rejections,
        not_stored,
    })
}

/// Calls `f(format, first line number (0-based), bytes)` for chunks of whole lines (NDJSON, CSV)
/// or once for a whole JSON document.
fn for_each_chunk(
    path: &Path,
    batch_lines: usize,
    bar: &ProgressBar,
    mut f: impl FnMut(Format, usize, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf()?.to_vec();
    let format = Format::sniff(&head);
    if format == Format::Json {
        let mut all = Vec::new();
        reader.read_to_end(&mut all)?;
        f(format, 0, &all)?;
        bar.inc(all.len() as u64);
        return Ok(());
    }
    let mut chunk = Vec::with_capacity(8 << 20);
    let mut header: Option<Vec<u8>> = None;
    let (mut first_line, mut lines) = (0usize, 0usize);
    loop {
        let before = chunk.len();
        let n = reader.read_until(b'\n', &mut chunk)?;
        if n > 0 && header.is_none() && format == Format::Csv && first_line == 0 && lines == 0 {
            // Remember a CSV header so that the decoder of every chunk can skip it.
            let line = &chunk[before..];
            header = Some(if line.starts_with(b"patient") { line.to_vec() } else { Vec::new() });
        }
        if n > 0 {
            lines += 1;
        }
        if (n == 0 && !chunk.is_empty()) || lines >= batch_lines {
            let len = chunk.len();
            f(format, first_line, &chunk)?;
            bar.inc(len as u64);
            first_line += lines;
            lines = 0;
            chunk.clear();
            // Later CSV chunks start with the header again so line numbers stay exact:
            // the header takes line "-1" of the chunk.
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

fn write_chunk(
    config: &Config,
    store: &Store,
    dead: Option<&DeadLetters>,
    format: Format,
    chunk: &[u8],
) -> anyhow::Result<(usize, Vec<Rejection>)> {
    if chunk.iter().all(u8::is_ascii_whitespace) || is_only_header(chunk) {
        return Ok((0, Vec::new()));
    }
    let mut v = Validator::new(
        Catalog::standard(),
        SystemClock.now_ms(),
        config.ingest.max_future.as_ms(),
        config.ingest.max_age.map(|d| d.as_ms()),
    );
    let batch = native::decode(chunk, format, &mut v)?;
    if let Some(d) = dead {
        let wire = crate::dead_letter_api::WireFormat::Native(format);
        let refused = crate::dead_letter_api::Refused { rejections: &batch.rejections, ..Default::default() };
        crate::dead_letter_api::keep(d, SystemClock.now_ms(), "cli/ingest", wire, chunk, &refused);
    }
    let n = batch.samples.len();
    store.write(batch.samples)?;
    Ok((n, batch.rejections))
}

fn is_only_header(chunk: &[u8]) -> bool {
    chunk.starts_with(b"patient") && chunk.iter().filter(|b| **b == b'\n').count() <= 1
}

fn post_chunk(client: &Client, format: Format, chunk: &[u8]) -> anyhow::Result<(usize, Vec<Rejection>)> {
    if chunk.iter().all(u8::is_ascii_whitespace) || is_only_header(chunk) {
        return Ok((0, Vec::new()));
    }
    let ct = match format {
        Format::Json => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv",
    };
    let text = client.post("/api/v1/samples", ct, chunk)?;
    #[derive(serde::Deserialize)]
    struct Resp {
        accepted: usize,
        rejected: Vec<RemoteRejection>,
    }
    #[derive(serde::Deserialize)]
    struct RemoteRejection {
        index: usize,
        code: String,
        message: String,
    }
    let r: Resp = serde_json::from_str(&text).context("reading the server's answer")?;
    let rejections = r
        .rejected
        .into_iter()
        .map(|x| {
            let code = vitals_core::RejectCode::ALL
                .into_iter()
                .find(|c| c.as_str() == x.code)
                .unwrap_or(vitals_core::RejectCode::Malformed);
            Rejection::new(x.index, code, x.message)
        })
        .collect();
    Ok((r.accepted, rejections))
}

fn token(config: &Config, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create { role, name, user, device, patient, expires_in, remote: r } => {
            if let Some(c) = remote(&r)? {
                let body = serde_json::json!({"name": name, "role": role, "user": user, "device": device,
                    "patient": patient, "expires_in": expires_in.map(|d| d.to_string())})
                .to_string();
                let v: serde_json::Value =
                    serde_json::from_str(&c.post("/api/v1/tokens", "application/json", body.as_bytes())?)?;
                println!("{}", v.get("token").and_then(|t| t.as_str()).unwrap_or_default());
            } else {
                let tokens = Directory::open(&config.storage.data_dir)?;
                let now = SystemClock.now_ms();
                let new = crate::auth::NewToken {
                    name: &name,
                    role,
                    user: user.as_deref(),
                    device: device.as_deref(),
                    patient: patient.as_deref(),
                    expires_ms: expires_in.map(|d| now + d.as_ms()),
                    secret: None,
                };
                let (rec, secret) = tokens.create_token(&new, now)?;
                crate::admin::cli_audit(&tokens, "token.create", None, &format!("token {}", rec.id))?;
                eprintln!("created {} token {} ({}); it is shown only this once:", rec.role.as_str(), rec.id, rec.name);
                println!("{secret}");
            }
        }
        TokenCommand::List { remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", c.get("/api/v1/tokens", "application/json")?);
            } else {
                let now = SystemClock.now_ms();
                for t in Directory::open(&config.storage.data_dir)?.list()? {
                    let state = if t.revoked_ms.is_some() {
                        "revoked"
                    } else if t.is_live(now) {
                        "live"
                    } else {
                        "expired"
                    };
                    let owner = t.user_id.clone().or_else(|| t.patient.clone().map(|p| format!("patient {p}")));
                    println!(
                        "{}  {:<9} {:<7} {}  {}  {}",
                        t.id,
                        t.role.as_str(),
                        state,
                        format_time(t.created_ms),
                        t.name,
                        owner.unwrap_or_default()
                    );
                }
            }
        }
        TokenCommand::Revoke { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                c.delete(&format!("/api/v1/tokens/{}", url_escape(&id)))?;
            } else {
                let d = Directory::open(&config.storage.data_dir)?;
                if !d.revoke(&id, SystemClock.now_ms())? {
                    bail!("no live token {id:?}");
                }
                crate::admin::cli_audit(&d, "token.revoke", None, &format!("token {id}"))?;
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON answer of the server, indented (other text as it is).
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn notifications(config: &Config, cmd: NotificationCommand) -> anyhow::Result<ExitCode> {
    use vitals_alerts::NoticeState;
    match cmd {
        NotificationCommand::List { state, limit, remote: r } => {
            let parsed = match &state {
                Some(s) => {
                    Some(NoticeState::parse(s).ok_or_else(|| anyhow::anyhow!("--state: pending, delivered or dead"))?)
                }
                None => None,
            };
            if let Some(c) = remote(&r)? {
                let q = state.map(|s| format!("&state={s}")).unwrap_or_default();
                println!("{}", pretty(&c.get(&format!("/api/v1/notifications?limit={limit}{q}"), "application/json")?));
            } else {
                let alerts = open_alerts(config)?;
                for n in alerts.notices(parsed, None, limit) {
                    let state = serde_json::to_value(n.state)?.as_str().unwrap_or_default().to_owned();
                    println!(
                        "{}  {}  {:<9} {:<8} {:<16} {:>2}  {}{}",
                        n.id,
                        format_time(n.created_ms),
                        state,
                        n.channel.as_str(),
                        n.contact,
                        n.attempts,
                        n.subject,
                        n.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        NotificationCommand::Show { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.get(&format!("/api/v1/notifications/{id}"), "application/json")?));
            } else {
                let n = open_alerts(config)?.notice(&id).ok_or_else(|| anyhow::anyhow!("no notice {id:?}"))?;
                println!("{}", serde_json::to_string_pretty(&crate::notifications_api::render(&n))?);
            }
        }
        NotificationCommand::Replay { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!(
                    "{}",
                    pretty(&c.post(&format!("/api/v1/notifications/{id}/replay"), "application/json", b"")?)
                );
            } else {
                // The data directory's lock: no server may be running on it meanwhile.
                let store = open_store(config)?;
                let n = open_alerts(config)?.replay_notice(&id, SystemClock.now_ms())?;
                println!("{}", serde_json::to_string_pretty(&crate::notifications_api::render(&n))?);
                eprintln!("back in the outbox; the server delivers it when it runs");
                store.close()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dead_letters(config: &Config, cmd: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeadLetterCommand::List { after, limit, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!(
                    "{}",
                    pretty(&c.get(&format!("/api/v1/dead-letters?after={after}&limit={limit}"), "application/json")?)
                );
            } else {
                let dead = open_dead_letters(config)?;
                for d in dead.list(after, limit) {
                    println!("{:>6}  {}  {:<14} {:<13} {}", d.id, format_time(d.time_ms), d.source, d.format, d.reason);
                }
                eprintln!("{} kept, {} dropped because the store was full", dead.len(), dead.dropped());
            }
        }
        DeadLetterCommand::Show { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.get(&format!("/api/v1/dead-letters/{id}"), "application/json")?));
            } else {
                let (meta, raw) = open_dead_letters(config)?.get(id)?;
                println!("{}", serde_json::to_string_pretty(&meta)?);
                println!("--- raw ({} bytes) ---", raw.len());
                println!("{}", String::from_utf8_lossy(&raw));
            }
        }
        DeadLetterCommand::Replay { id, remote: r } => {
            if let Some(c) = remote(&r)? {
                println!("{}", pretty(&c.post(&format!("/api/v1/dead-letters/{id}/replay"), "application/json", b"")?));
            } else {
                let store = open_store(config)?;
                let dead = open_dead_letters(config)?;
                let events = open_events(config)?;
                let r = crate::dead_letter_api::replay(config, &store, &events, &dead, SystemClock.now_ms(), id)?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                store.close()?;
            }
        }
        DeadLetterCommand::Purge { remote: r } => {
            if let Some(c) = remote(&r)? {
                c.delete("/api/v1/dead-letters")?;
                eprintln!("purged");
            } else {
                eprintln!("purged {} dead letters", open_dead_letters(config)?.purge()?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
