//! `riskstream model`: tools for a model directory. `riskstream model canary` gives a model
//! its canary (the rows it must score as expected before it is used) from a labelled data
//! set, without touching its weights.

use std::path::PathBuf;

use anyhow::{bail, Context};

use riskstream_config::Config;
use riskstream_inference::{DeviceChoice, Model};

use super::train::featurize_dir;

/// The subcommands of `riskstream model`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Write a model's canary into its metadata.json: feature rows of both labels from a
    /// data set, with the scores the model gives them. `run` and hot swap refuse a model
    /// without one, or one that does not score its canary as expected.
    Canary(CanaryArgs),
}

/// Options of `riskstream model canary`.
#[derive(Debug, clap::Args)]
pub struct CanaryArgs {
    /// Model folder (metadata.json, model.safetensors); only metadata.json is rewritten.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data set written by `riskstream gen` (events.jsonl, labels.jsonl,
    /// graph.jsonl) to take the rows from. The data the model was trained on gives the
    /// canary `riskstream train` writes.
    #[arg(long)]
    pub data: PathBuf,
    /// Configuration (aggregate windows, graph hops) the features are computed with; the
    /// one the model was trained with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replace a canary the model fails. Only for a model known to be good: a failed canary
    /// is what shows that a model's weights or metadata changed.
    #[arg(long)]
    pub force: bool,
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Canary(args) => canary(args),
    }
}

fn canary(args: CanaryArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    let dir = &args.model;
    let mut model = Model::load_unverified(dir, DeviceChoice::Cpu)
        .with_context(|| format!("cannot load the model in `{}`", dir.display()))?;
    if model.canary().is_some() {
        match Model::load(dir, DeviceChoice::Cpu) {
            Ok(_) => eprintln!("the model passes its canary; writing a new one"),
            Err(err) if args.force => {
                eprintln!("warning: {err}; replacing its canary (--force)");
            }
            Err(err) => bail!(
                "{err}; a new canary is not written over one the model fails unless --force \
                 is given (only for a model known to be good)"
            ),
        }
    }
    eprintln!("featurising {} ...", args.data.display());
    let data = featurize_dir(&config, &args.data)?;
    if data.feature_names != model.feature_names() {
        bail!(
            "the data set gives {} features but model `{}` reads {}, or in another order; \
             featurise with the configuration the model was trained with (--config)",
            data.n_features(),
            model.version(),
            model.n_features()
        );
    }
    let canary = model
        .choose_canary(&data.features, &data.labels)
        .with_context(|| format!("no canary for the model in `{}`", dir.display()))?;
    let fraud = canary.rows.iter().filter(|r| r.label == 1).count();
    let (low, high) = canary
        .rows
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r.score), hi.max(r.score))
        });
    let rows = canary.rows.len();
    model
        .save_canary(dir)
        .with_context(|| format!("cannot write the canary into `{}`", dir.display()))?;
    Model::load(dir, DeviceChoice::Cpu)
        .with_context(|| format!("the model in `{}` fails its new canary", dir.display()))?;
    eprintln!(
        "canary of {rows} rows ({} benign, {fraud} fraud; expected scores {low:.4} to {high:.4}) \
         written to {}; the model passes it",
        rows - fraud,
        dir.join(riskstream_inference::METADATA_FILE).display()
    );
    Ok(())
}
