//! `riskstream train`: featurise a generated data set with the job's own engine, train the
//! model, evaluate it on held-out data and write it where `run` can load it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use riskstream_config::Config;
use riskstream_graph::GraphEnricher;
use riskstream_inference::{
    at_precision_by_group, evaluate, evaluate_by_group, train as fit, AtPrecision, Dataset,
    FeatureDropout, Metrics as ModelMetrics, Model, TrainOptions,
};
use riskstream_pipeline::dataset::featurize;
use riskstream_pipeline::features::{FeatureLayout, Stage};
use riskstream_pipeline::gen::{FraudPattern, EVENTS_FILE, GRAPH_FILE, LABELS_FILE};
use riskstream_pipeline::metrics::Metrics;

use riskstream_pipeline::job;

/// Options of `riskstream train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Data set written by `riskstream gen` (events.jsonl, labels.jsonl, graph.jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder to write (model.safetensors, metadata.json with the model's canary,
    /// metrics.json).
    #[arg(long)]
    pub out: PathBuf,
    /// A second data set, generated with another seed, to report held-out metrics on.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Configuration (aggregate windows, graph hops) the features are computed with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training seed: same data and seed give the same weights and metrics.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Version string written into the model's metadata and every result.
    #[arg(long, default_value = "riskstream-v1")]
    pub version: String,
    /// Precision the block threshold must reach on the validation split.
    #[arg(long, default_value_t = 0.9)]
    pub block_precision: f64,
    /// Share of fraud that must score at or above the review threshold on the validation
    /// split (review catches what block, tuned for precision, lets through). A good model's
    /// block threshold alone can reach 99 %, which would leave review next to no band, so the
    /// default asks for more.
    #[arg(long, default_value_t = 0.999)]
    pub review_recall: f64,
    /// Share of the training rows (of fraud and benign alike) that read the graph features
    /// as an event without a graph answer does (`graph_unavailable` = 1), so that the model
    /// learns to score when the graph is down; 0 to 1 (exclusive). Chosen by seed.
    #[arg(long, default_value_t = DEFAULT_GRAPH_DROPOUT)]
    pub graph_dropout: f64,
}

/// 0.2: on the held-out set (seed 2) scored with no graph answer for any event, a model
/// trained with 0 blocks 5.3 times as many events as with the graph; with 0.1 to 0.5 it
/// blocks 1.3 to 1.8 times as many (0.2: 1.4), at the same ROC AUC with the graph (model
/// card, "Graph outage").
pub const DEFAULT_GRAPH_DROPOUT: f64 = 0.2;

/// Featurises one data set folder with a fresh engine (fresh window state).
pub fn featurize_dir(config: &Config, dir: &Path) -> anyhow::Result<Dataset> {
    let graph = job::memory_graph(&dir.join(GRAPH_FILE), config.graph.max_hops)?;
    let enricher: Arc<dyn GraphEnricher> = Arc::new(graph);
    let metrics = Arc::new(Metrics::default());
    let engine = job::engine(config, None, Some(enricher), metrics.clone(), true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let data = runtime
        .block_on(featurize(
            &engine,
            &dir.join(EVENTS_FILE),
            &dir.join(LABELS_FILE),
            config.pipeline.batch_size.max(1),
            config.source.max_event_bytes,
        ))
        .with_context(|| format!("cannot featurise the data set in `{}`", dir.display()))?;
    let dead = Metrics::get(&metrics.dead_letters);
    if dead > 0 {
        tracing::warn!(
            dead_letters = dead,
            "records of the data set did not decode and were skipped"
        );
    }
    Ok(data)
}

fn by_pattern(groups: &BTreeMap<u8, ModelMetrics>) -> BTreeMap<&'static str, ModelMetrics> {
    groups
        .iter()
        .filter_map(|(g, m)| {
            FraudPattern::ALL
                .get(usize::from(*g))
                .map(|p| (p.as_str(), m.clone()))
        })
        .collect()
}

fn print_metrics(label: &str, m: &ModelMetrics) {
    eprintln!(
        "{label:<12} rows {:>8}  fraud {:>6}  ROC AUC {}  review ≥{:.3}: precision {:.3} recall {:.3}  block ≥{:.3}: precision {:.3} recall {:.3}",
        m.rows,
        m.positives,
        m.roc_auc.map_or("n/a".to_string(), |a| format!("{a:.4}")),
        m.review.threshold,
        m.review.precision,
        m.review.recall,
        m.block.threshold,
        m.block.precision,
        m.block.recall,
    );
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.graph_dropout) {
        anyhow::bail!(
            "--graph-dropout {} is not a share of the training rows; give a value from 0 \
             (no dropout) up to but excluding 1",
            args.graph_dropout
        );
    }
    let config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    let layout = FeatureLayout::new(&config.aggregate.windows, config.graph.max_hops);
    eprintln!("featurising {} ...", args.data.display());
    let data = featurize_dir(&config, &args.data)?;
    eprintln!(
        "{} rows x {} features, {} fraud",
        data.n_rows(),
        data.n_features(),
        data.labels.iter().filter(|l| **l > 0.5).count()
    );
    let mut opts = TrainOptions {
        seed: args.seed,
        version: args.version.clone(),
        target_block_precision: args.block_precision,
        target_review_recall: args.review_recall,
        dropout: FeatureDropout {
            share: args.graph_dropout,
            features: layout.graph_unavailable_inputs(),
        },
        ..TrainOptions::default()
    };
    if let Some(epochs) = args.epochs {
        opts.epochs = epochs;
    }
    let (model, report) = fit(&data, &opts).context("training failed")?;
    eprintln!("trained in {:.1} s", report.seconds);
    print_metrics("train", &report.train);
    print_metrics("validation", &report.validation);

    let mut metrics = serde_json::json!({
        "version": args.version,
        "seed": args.seed,
        "train": report.train,
        "validation": report.validation,
        "validation_by_pattern": by_pattern(&report.validation_by_group),
        "thresholds": report.thresholds,
        "epochs_loss": report.epochs_loss,
    });
    let held = match &args.eval_data {
        Some(eval_dir) => {
            eprintln!("featurising held-out {} ...", eval_dir.display());
            Some(featurize_dir(&config, eval_dir)?)
        }
        None => None,
    };
    if let (Some(eval_dir), Some(held)) = (&args.eval_data, &held) {
        let heldout = evaluate_model(&model, held)?;
        print_metrics("held-out", &heldout.0);
        for (pattern, m) in &heldout.1 {
            eprintln!(
                "  {pattern:<10} events {:>7}  recall at block {:.3}  at review {:.3}",
                m.rows, m.block.recall, m.review.recall
            );
        }
        metrics["heldout"] = serde_json::json!({
            "data": eval_dir.display().to_string(),
            "overall": heldout.0,
            "by_pattern": heldout.1,
        });
    }

    // The same architecture, seed and events without the graph features, compared with
    // the full model at the precision the block threshold is chosen for. That model is
    // trained without dropout: it measures what the graph adds, not how an outage reads.
    let graph_features: Vec<&str> = layout
        .describe()
        .iter()
        .filter(|f| f.stage == Stage::Graph)
        .map(|f| f.name.as_str())
        .collect();
    let no_graph_data = data.select_features(|name| !graph_features.contains(&name));
    eprintln!(
        "training the same model without the {} graph features ...",
        graph_features.len()
    );
    let no_graph_opts = TrainOptions {
        version: format!("{}-no-graph", opts.version),
        dropout: FeatureDropout::default(),
        ..opts.clone()
    };
    let (no_graph, no_graph_report) =
        fit(&no_graph_data, &no_graph_opts).context("training without graph features failed")?;
    let (lift_on, lift_data) = match (&args.eval_data, &held) {
        (Some(dir), Some(held)) => (format!("held-out ({})", dir.display()), held),
        // Without a held-out set, the training data: optimistic for both models alike.
        _ => ("training data (no --eval-data)".to_owned(), &data),
    };
    let lift_no_graph = lift_data.select_features(|name| !graph_features.contains(&name));
    // "Equal precision" is the precision the full model's block threshold reaches on this
    // data: the full model's recall there is its block recall, and the no-graph model is
    // held to the same precision.
    let full_scores = model
        .score(&lift_data.features, lift_data.n_rows())
        .context("scoring failed")?;
    let at_block = evaluate(&full_scores, &lift_data.labels, model.thresholds()).block;
    let precision = if at_block.flagged > 0 {
        at_block.precision
    } else {
        args.block_precision
    };
    let full_at = at_precision_by_group(
        &full_scores,
        &lift_data.labels,
        &lift_data.groups,
        precision,
    );
    let no_graph_at = compare_at(&no_graph, &lift_no_graph, precision)?;
    print_lift(&lift_on, &full_at, &no_graph_at);
    metrics["graph_lift"] = serde_json::json!({
        "data": lift_on,
        "precision": precision,
        "precision_is": "precision of the full model at its block threshold on this data",
        "graph_features": graph_features,
        "full": lift_json(&full_at, model.n_features()),
        "no_graph": lift_json(&no_graph_at, no_graph.n_features()),
        "no_graph_validation": no_graph_report.validation,
    });
    let outage = outage(&model, lift_data, &layout)?;
    print_outage(&lift_on, &outage);
    metrics["outage"] = serde_json::json!({
        "data": lift_on,
        "graph_dropout": args.graph_dropout,
        "with_graph": outage.with_graph,
        "without_graph": outage.without_graph,
        "block_rate_ratio": outage.block_rate_ratio(),
        "review_recall_ratio": outage.review_recall_ratio(),
    });
    model
        .save(&args.out)
        .with_context(|| format!("cannot write the model to `{}`", args.out.display()))?;
    let metrics_path = args.out.join("metrics.json");
    let mut text = serde_json::to_string_pretty(&metrics).context("cannot encode metrics")?;
    text.push('\n');
    std::fs::write(&metrics_path, text)
        .with_context(|| format!("cannot write `{}`", metrics_path.display()))?;
    eprintln!("model written to {}", args.out.display());
    Ok(())
}

/// Scores a data set and reports ROC AUC and recall at `precision`, overall and per pattern.
fn compare_at(model: &Model, data: &Dataset, precision: f64) -> anyhow::Result<AtPrecision> {
    let scores = model
        .score(&data.features, data.n_rows())
        .context("scoring failed")?;
    Ok(at_precision_by_group(
        &scores,
        &data.labels,
        &data.groups,
        precision,
    ))
}

fn pattern_name(group: u8) -> &'static str {
    FraudPattern::ALL
        .get(usize::from(group))
        .map_or("unknown", |p| p.as_str())
}

fn lift_json(at: &AtPrecision, features: usize) -> serde_json::Value {
    let by_pattern: BTreeMap<&str, _> = at
        .by_group
        .iter()
        .map(|(g, m)| (pattern_name(*g), m))
        .collect();
    serde_json::json!({
        "features": features,
        "threshold": at.threshold,
        "roc_auc": at.roc_auc,
        "recall": at.recall,
        "by_pattern": by_pattern,
    })
}

fn print_lift(data: &str, full: &AtPrecision, no_graph: &AtPrecision) {
    let auc = |a: Option<f64>| a.map_or("n/a".to_string(), |a| format!("{a:.4}"));
    eprintln!(
        "graph-feature lift on {data}, recall at the block threshold's precision {:.4}:",
        full.precision
    );
    eprintln!(
        "  {:<10} {:>14} {:>14} {:>12} {:>12}",
        "", "AUC full", "AUC no graph", "recall full", "no graph"
    );
    eprintln!(
        "  {:<10} {:>14} {:>14} {:>12.3} {:>12.3}",
        "overall",
        auc(full.roc_auc),
        auc(no_graph.roc_auc),
        full.recall,
        no_graph.recall
    );
    for (g, m) in &full.by_group {
        let other = no_graph.by_group.get(g);
        eprintln!(
            "  {:<10} {:>14} {:>14} {:>12.3} {:>12.3}",
            pattern_name(*g),
            auc(m.roc_auc),
            auc(other.and_then(|o| o.roc_auc)),
            m.recall,
            other.map_or(0.0, |o| o.recall)
        );
    }
}

/// Scores a data set with `model` in batches and evaluates it overall and per pattern.
fn evaluate_model(
    model: &Model,
    data: &Dataset,
) -> anyhow::Result<(ModelMetrics, BTreeMap<&'static str, ModelMetrics>)> {
    let n = data.n_features();
    let mut scores = Vec::with_capacity(data.n_rows());
    for chunk in data.features.chunks(4096 * n) {
        scores.extend(
            model
                .score(chunk, chunk.len() / n)
                .context("scoring failed")?,
        );
    }
    let thresholds = model.thresholds();
    let overall = evaluate(&scores, &data.labels, thresholds);
    let groups = evaluate_by_group(&scores, &data.labels, &data.groups, thresholds);
    Ok((overall, by_pattern(&groups)))
}

/// The model's decisions on the same events with the graph and with no graph answer for any
/// of them (every graph feature as [`FeatureLayout::graph_unavailable_inputs`] writes it).
struct Outage {
    with_graph: OutageSide,
    without_graph: OutageSide,
}

/// Decisions on one side of [`Outage`].
#[derive(serde::Serialize)]
struct OutageSide {
    rows: usize,
    /// Share of all events at or above the block threshold.
    block_rate: f64,
    /// Share of all events at or above the review threshold (blocked ones included).
    review_rate: f64,
    /// Share of fraud at or above the review threshold.
    fraud_recall_at_review: f64,
    fraud_recall_at_block: f64,
    roc_auc: Option<f64>,
}

impl OutageSide {
    fn of(m: &ModelMetrics) -> OutageSide {
        let rate = |flagged: usize| flagged as f64 / m.rows.max(1) as f64;
        OutageSide {
            rows: m.rows,
            block_rate: rate(m.block.flagged),
            review_rate: rate(m.review.flagged),
            fraud_recall_at_review: m.review.recall,
            fraud_recall_at_block: m.block.recall,
            roc_auc: m.roc_auc,
        }
    }
}

impl Outage {
    /// Block rate without the graph over the rate with it (the target is at most 1.5).
    fn block_rate_ratio(&self) -> f64 {
        self.without_graph.block_rate / self.with_graph.block_rate.max(f64::MIN_POSITIVE)
    }

    /// Fraud recall at review without the graph over the recall with it (at least 0.8).
    fn review_recall_ratio(&self) -> f64 {
        self.without_graph.fraud_recall_at_review
            / self
                .with_graph
                .fraud_recall_at_review
                .max(f64::MIN_POSITIVE)
    }
}

fn outage(model: &Model, data: &Dataset, layout: &FeatureLayout) -> anyhow::Result<Outage> {
    let without = data
        .with_values(&layout.graph_unavailable_inputs())
        .context("cannot remove the graph features")?;
    Ok(Outage {
        with_graph: OutageSide::of(&evaluate_model(model, data)?.0),
        without_graph: OutageSide::of(&evaluate_model(model, &without)?.0),
    })
}

fn print_outage(data: &str, outage: &Outage) {
    eprintln!("graph outage on {data} (every event without a graph answer):");
    for (label, side) in [
        ("with graph", &outage.with_graph),
        ("no graph", &outage.without_graph),
    ] {
        eprintln!(
            "  {label:<10} blocked {:.4}  reviewed or blocked {:.4}  fraud recall at review {:.3}  at block {:.3}",
            side.block_rate, side.review_rate, side.fraud_recall_at_review, side.fraud_recall_at_block
        );
    }
    eprintln!(
        "  block rate x{:.2} (target at most 1.5), recall at review x{:.3} (target at least 0.8)",
        outage.block_rate_ratio(),
        outage.review_recall_ratio()
    );
}
