//! `riskstream replay`: re-runs a time range of the input for incident analysis and writes
//! `report.json` and `report.html` comparing the replay with what the job published.
//!
//! The command builds the engine, graph and model exactly as `riskstream run` does (same
//! configuration file, same setup code), reads with a consumer of its own that never
//! commits, and prints a summary with the replay's throughput.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use riskstream_config::{Config, GraphKind};
use riskstream_pipeline::engine::now_ms;
use riskstream_pipeline::event::format_ts;
use riskstream_pipeline::metrics::Metrics;
use riskstream_pipeline::progress::{Progress, Unit};
use riskstream_pipeline::replay::report::{self, ReportContext};
use riskstream_pipeline::replay::{
    self as replay_lib, original, FileReader, KafkaReader, ReadProgress, ReplayError,
    ReplayOptions, ReplayReader,
};
use riskstream_pipeline::time::{parse_period, parse_time};

use riskstream_pipeline::job;

/// Options of `riskstream replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The configuration file of the job under investigation (TOML): windows, snapshot
    /// interval, thresholds, graph and `[kafka]` settings must match what it ran with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers (default: kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Input topic to replay (default: the first of kafka.input_topics).
    #[arg(long, conflicts_with = "input")]
    pub topic: Option<String>,
    /// Replay a JSONL events file instead of a topic.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Start of the range, inclusive (RFC 3339, or relative like -15m).
    #[arg(long)]
    pub from: String,
    /// End of the range, exclusive (RFC 3339, or relative like -5m).
    #[arg(long)]
    pub to: String,
    /// Results topic to compare with (default for Kafka input: kafka.results_topic).
    #[arg(long = "results-topic", conflicts_with = "results")]
    pub results_topic: Option<String>,
    /// Results file (JSON lines) to compare with instead of a topic.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Only report this account's events (repeat for several); every event still builds
    /// the window state.
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Model directory to score with (default: model.path, the current model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Graph file for the in-memory graph (default: graph.path).
    #[arg(long, conflicts_with = "neo4j")]
    pub graph: Option<PathBuf>,
    /// Enrich from this Neo4j server instead (sets graph.kind = "neo4j" and graph.uri).
    #[arg(long)]
    pub neo4j: Option<String>,
    /// How much to read before --from to rebuild the window state: a period (`30h`) or
    /// `all` (default: the longest window). Window aggregates need no more than the
    /// default; first-seen times, the previous payment and country, and the running
    /// amount baselines reach further back, and match the job's exactly only with `all`.
    #[arg(long = "warm-up")]
    pub warm_up: Option<String>,
    /// Directory for report.json and report.html (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What the command prints when it is done.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    pub report: report::Report,
    pub seconds: f64,
    pub records_per_second: f64,
}

/// Runs the replay and writes the reports.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ReplayOutcome> {
    let mut config = Config::load(args.config.as_deref())
        .map_err(anyhow::Error::from)
        .context("invalid configuration")?;
    if let Some(brokers) = &args.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(uri) = &args.neo4j {
        config.graph.kind = GraphKind::Neo4j;
        config.graph.uri = uri.clone();
    }
    let now = now_ms();
    let from_ms = parse_time(&args.from, now).context("--from")?;
    let to_ms = parse_time(&args.to, now).context("--to")?;
    if from_ms >= to_ms {
        return Err(ReplayError::EmptyRange {
            from: format_ts(from_ms),
            to: format_ts(to_ms),
        }
        .into());
    }
    let longest = config
        .aggregate
        .windows
        .iter()
        .copied()
        .chain(std::iter::once(config.aggregate.distinct_window))
        .max()
        .unwrap_or(Duration::ZERO);
    let warm_up_from_ms = match args.warm_up.as_deref() {
        // The whole retained input: every first-seen time and running baseline as the job
        // built them, at the cost of reading everything.
        Some("all") => 0.min(from_ms),
        Some(text) => {
            from_ms.saturating_sub(parse_period(text).context("--warm-up")?.as_millis() as i64)
        }
        None => from_ms.saturating_sub(longest.as_millis() as i64),
    };

    let job::ChosenGraph {
        enricher,
        warmer,
        description: graph_description,
        ..
    } = job::graph(&config, args.graph.as_deref(), args.input.as_deref(), None)?;
    // A replay is short: one warm-up, no refresh.
    if let Some(warmer) = warmer {
        warmer.warm_up(std::future::pending()).await;
    }
    let model = job::load_model(&config, args.model.as_deref())?;
    let metrics = Arc::new(Metrics::default());
    let engine = job::engine(&config, Some(&model), enricher, metrics, true)?;

    let max_bytes = config.source.max_event_bytes;
    let keep = config.dead_letter.max_payload_bytes;
    let (mut reader, results_topic): (Box<dyn ReplayReader>, Option<(String, bool)>) = match &args
        .input
    {
        Some(path) => (
            Box::new(
                FileReader::open(path, max_bytes, keep)
                    .with_context(|| format!("cannot open the events file `{}`", path.display()))?,
            ),
            args.results_topic.clone().map(|t| (t, true)),
        ),
        None => {
            let topic = match (&args.topic, config.kafka.input_topics.first()) {
                    (Some(topic), _) => topic.clone(),
                    (None, Some(topic)) => topic.clone(),
                    (None, None) => bail!(
                        "no input to replay: pass --topic EVENTS (or set kafka.input_topics) or --input FILE"
                    ),
                };
            let reader = tokio::task::block_in_place(|| {
                KafkaReader::open(
                    &config.kafka,
                    &topic,
                    warm_up_from_ms,
                    to_ms,
                    max_bytes,
                    keep,
                )
            })?;
            let results = match &args.results_topic {
                Some(t) => Some((t.clone(), true)),
                None if args.results.is_none() => Some((config.kafka.results_topic.clone(), false)),
                None => None,
            };
            (Box::new(reader), results)
        }
    };

    let options = ReplayOptions {
        from_ms,
        to_ms,
        warm_up_from_ms,
        accounts: args.accounts.iter().cloned().collect::<BTreeSet<_>>(),
        read_batch: config.pipeline.batch_size.max(1),
        score_batch: config.pipeline.batch_size.max(1),
    };
    let bar = read_progress(reader.progress(), args.quiet);
    let replayed = replay_lib::replay(&engine, &model, reader.as_mut(), &options, &mut |p| {
        bar.set_total(p.total);
        bar.set(p.done);
    })
    .await?;
    bar.finish();

    let wanted = replay_lib::event_ids(&replayed);
    let originals = match (&args.results, results_topic) {
        (Some(path), _) => Some(
            original::from_file(path, &wanted)
                .with_context(|| format!("cannot read the results file `{}`", path.display()))?,
        ),
        (None, Some((topic, explicit))) => {
            let read = tokio::task::block_in_place(|| {
                original::from_kafka(&config.kafka, &topic, from_ms, to_ms, &wanted)
            });
            match read {
                Ok(originals) => Some(originals),
                Err(ReplayError::MissingTopic(_)) if !explicit => {
                    eprintln!(
                        "warning: results topic `{topic}` (kafka.results_topic) does not exist; \
                         nothing to compare with (pass --results-topic or --results)"
                    );
                    None
                }
                Err(err) => return Err(err).context("cannot read the published results"),
            }
        }
        (None, None) => None,
    };

    let context = ReportContext {
        from_ms,
        to_ms,
        warm_up_from_ms,
        accounts: options.accounts.iter().cloned().collect(),
        input: reader.describe(),
        graph: graph_description,
        model_version: model.version().to_string(),
        thresholds: engine.options.thresholds,
    };
    let report = report::build(&context, &replayed, originals.as_ref());
    std::fs::create_dir_all(&args.out).with_context(|| {
        format!(
            "cannot create the output directory `{}`",
            args.out.display()
        )
    })?;
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, report.to_json())
        .with_context(|| format!("cannot write `{}`", json_path.display()))?;
    let html_path = args.out.join("report.html");
    std::fs::write(&html_path, replay_lib::html::render(&report))
        .with_context(|| format!("cannot write `{}`", html_path.display()))?;

    let outcome = ReplayOutcome {
        seconds: replayed.seconds,
        records_per_second: replayed.records_per_second(),
        report,
    };
    print_summary(&outcome, &json_path, &html_path)?;
    if args.warm_up.as_deref() != Some("all") {
        println!(
            "  note          window aggregates are rebuilt exactly; first-seen times, the previous \
             payment and country, and running amount means reach further back than the warm-up \
             and may differ from the job's: --warm-up all reproduces them"
        );
    }
    Ok(outcome)
}

/// The reading line: bytes of a file, records of a topic.
fn read_progress(start: ReadProgress, quiet: bool) -> Progress {
    let unit = match start.unit {
        "bytes" => Unit::Bytes,
        other => Unit::Count(other),
    };
    Progress::stderr("reading", Some(start.total), unit, quiet)
}

fn print_summary(
    outcome: &ReplayOutcome,
    json: &std::path::Path,
    html: &std::path::Path,
) -> anyhow::Result<()> {
    let r = &outcome.report;
    let s = &r.summary;
    let transitions = if s.transitions.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = s
            .transitions
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "riskstream replay {} → {} (warm-up from {})\n  \
         read          {} records in {:.2} s: {:.0} records/s ({} warm-up events)\n  \
         replayed      {} events: allow {}, review {}, block {}\n  \
         published     allow {}, review {}, block {}; no published result {}; duplicates {}\n  \
         changed       {} decisions{}; {} scores (max difference {:.6})\n  \
         dead letters  {}\n  \
         report        {}\n                {}",
        r.range.from,
        r.range.to,
        r.range.warm_up_from,
        s.records_read,
        outcome.seconds,
        outcome.records_per_second,
        s.warm_up_events,
        s.events,
        s.replayed.allow,
        s.replayed.review,
        s.replayed.block,
        s.published.allow,
        s.published.review,
        s.published.block,
        s.no_published_result,
        s.duplicate_results,
        s.changed_decisions,
        transitions,
        s.changed_scores,
        s.max_score_difference,
        s.dead_letters,
        json.display(),
        html.display(),
    )?;
    Ok(())
}
