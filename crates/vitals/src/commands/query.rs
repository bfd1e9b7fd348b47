//! `vitals query`: one patient's metric, raw or bucketed, from a data directory or a
//! running server, as a table, CSV or JSON.

use std::process::ExitCode;

use anyhow::Context;
use vitals_core::time::{format_time, parse_time};
use vitals_core::{Catalog, Clock, DeviceId, DurationMs, PatientId, SystemClock};
use vitals_query::{Agg, QueryResult, SeriesQuery};
use vitals_server::api::series_api::{ParsedSeries, render_csv, render_json};
use vitals_server::config::Config;
use vitals_server::stores;

use super::{remote, url_escape};
use crate::cli::{OutputFormat, QueryArgs};

pub(crate) fn query(config: &Config, a: &QueryArgs) -> anyhow::Result<ExitCode> {
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
    let store = stores::open_store(config)?;
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
