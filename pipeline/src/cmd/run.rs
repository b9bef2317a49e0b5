//! `riskstream run`: folds the command line into the configuration and the job's options,
//! runs the job ([`riskstream_pipeline::job`]) until its input ends or SIGINT/SIGTERM, with
//! SIGHUP reloading the model, and prints the run summary.

use std::path::PathBuf;

use anyhow::Context;

use riskstream_config::Config;
use riskstream_pipeline::job::{self, shutdown, Job, JobOptions, RunSummary};

/// Options of `riskstream run` that override the configuration file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see config/riskstream.toml for every key.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read events from this JSONL file instead of the configured source.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Graph file (JSONL) for the in-memory graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// Model directory (metadata.json + model.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Results file (JSONL); `-` for standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Dead-letter file (JSONL); `-` for standard output.
    #[arg(long = "dead-letter")]
    pub dead_letter: Option<PathBuf>,
    /// Stop after this many input records.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Workers for the aggregation stage (overrides pipeline.workers).
    #[arg(long)]
    pub workers: Option<usize>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Start with empty window state: remove the checkpoints in state.dir instead of
    /// restoring one, and read the input from where the source starts by itself.
    #[arg(long)]
    pub fresh_state: bool,
}

/// The job's options from the command line; `--workers` goes into the configuration.
fn fold(config: &mut Config, args: &RunArgs) -> anyhow::Result<JobOptions> {
    if let Some(workers) = args.workers {
        if workers > riskstream_config::MAX_WORKERS {
            anyhow::bail!(
                "--workers is {workers}: use 0 (one per CPU) to {}",
                riskstream_config::MAX_WORKERS
            );
        }
        config.pipeline.workers = workers;
    }
    Ok(JobOptions {
        input: args.input.clone(),
        graph: args.graph.clone(),
        model: args.model.clone(),
        results: args.output.clone(),
        dead_letters: args.dead_letter.clone(),
        max_events: args.max_events,
        summary: args.summary_json.clone(),
        fresh_state: args.fresh_state,
    })
}

/// Runs the job until the source ends, `--max-events` is reached, or SIGINT/SIGTERM.
pub async fn run(mut config: Config, args: RunArgs) -> anyhow::Result<RunSummary> {
    let options = fold(&mut config, &args)?;
    // Installed first, so that a signal during start-up stops the job instead of killing it.
    let stop = shutdown::signal_shutdown();
    let job = Job::build(&config, options).await?;
    shutdown::reload_on_hangup(
        args.config.clone(),
        job::threshold_overrides(&config),
        job.reloads(),
    );
    // With JSON logs stderr carries JSON lines only: no progress line.
    let quiet = args.quiet || riskstream_pipeline::logging::is_json();
    let progress = riskstream_pipeline::progress::job(job.metrics(), quiet);
    let finished = job.run(stop).await;
    progress.finish();
    let summary = finished?;
    if riskstream_pipeline::logging::is_json() {
        let json = serde_json::to_string(&summary).context("cannot encode the run summary")?;
        tracing::info!(summary = json, "riskstream run finished");
    } else {
        print_summary(&summary);
        print_graph_summary(&summary);
    }
    if let Some(path) = &args.summary_json {
        summary
            .write_json(path)
            .with_context(|| format!("cannot write the run summary to `{}`", path.display()))?;
    }
    Ok(summary)
}

/// The graph part of the summary: per-batch wait and, when cached, the cache's counters.
fn print_graph_summary(s: &RunSummary) {
    let w = &s.graph_wait_ms;
    eprintln!(
        "  graph wait ms per batch  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        w.p50, w.p90, w.p99, w.max
    );
    if let Some(c) = &s.graph_cache {
        eprintln!(
            "  graph cache   hit ratio {:.3}  (hits {}, misses {}, shared waits {}, expired {}, evictions {}, preloaded {})",
            c.hit_ratio, c.hits, c.misses, c.shared_waits, c.expired, c.evictions, c.preloaded
        );
    }
}

fn print_summary(s: &RunSummary) {
    let by_kind = if s.dead_letters_by_kind.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = s
            .dead_letters_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("  ({})", parts.join(", "))
    };
    eprintln!(
        "riskstream run finished in {:.2} s\n  inputs        {}\n  results       {}  (allow {}, review {}, block {})\n  dead letters  {}{}\n  late events   {}\n  snapshots     {}\n  graph unavailable {}\n  throughput    {:.0} events/s\n  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n  results       {}\n  dead letters  {}{}",
        s.seconds,
        s.inputs,
        s.results,
        s.decisions.allow,
        s.decisions.review,
        s.decisions.block,
        s.dead_letters,
        by_kind,
        s.late_events,
        s.snapshots,
        s.graph_unavailable,
        s.events_per_second,
        s.latency_ms.p50,
        s.latency_ms.p90,
        s.latency_ms.p99,
        s.latency_ms.max,
        s.results_path,
        s.dead_letter_path,
        if s.is_balanced() { "" } else { "\n  WARNING: inputs != results + dead letters" },
    );
}
