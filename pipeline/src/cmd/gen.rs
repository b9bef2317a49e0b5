//! `riskstream gen`: writes a synthetic data set (events, graph, labels, manifest).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use riskstream_pipeline::decode::parse_ts;
use riskstream_pipeline::gen::{write_dataset, GenOptions};
use riskstream_pipeline::progress::{Progress, Unit};

/// Options of `riskstream gen`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Output folder: events.jsonl, graph.jsonl, labels.jsonl and manifest.json go here.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: the same options and seed give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Number of accounts (devices, IPs and merchants scale with it).
    #[arg(long, default_value_t = 20_000)]
    pub accounts: u64,
    /// Fraction of events that are fraud (0 to 0.5).
    #[arg(long, default_value_t = 0.02)]
    pub fraud_rate: f64,
    /// Start of the event time span (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    pub start: String,
}

pub fn gen(args: GenArgs) -> anyhow::Result<()> {
    let start_ms = parse_ts(&args.start).map_err(|e| anyhow::anyhow!("--start: {e}"))?;
    let opts = GenOptions {
        seed: args.seed,
        events: args.events,
        accounts: args.accounts,
        fraud_rate: args.fraud_rate,
        start_ms,
    };
    let started = Instant::now();
    let progress = Progress::stderr(
        "generating",
        Some(args.events),
        Unit::Count("events"),
        false,
    );
    let summary = write_dataset(&opts, &args.out, |written| progress.set(written))
        .with_context(|| format!("cannot generate the data set into `{}`", args.out.display()))?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote events.jsonl, graph.jsonl, labels.jsonl, manifest.json to {} in {:.1} s ({:.0} events/s)\n{}",
        args.out.display(),
        seconds,
        args.events as f64 / seconds.max(1e-9),
        serde_json::to_string_pretty(&summary).context("cannot print the summary")?
    );
    Ok(())
}
