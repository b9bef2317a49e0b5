//! Training: fit the MLP on labelled feature rows, choose thresholds, report metrics.
//!
//! Everything random (the train/validation split, the initial weights, the batch order)
//! comes from ChaCha8 streams derived from [`TrainOptions::seed`], never from a global RNG,
//! so the same data and options give bit-identical weights and metrics on the same machine.
//! Training always runs on the CPU.
//!
//! Steps:
//! 1. Stratified split: positives and negatives are shuffled separately and
//!    `validation_fraction` of each is held out, so both splits contain both classes.
//! 2. Feature dropout ([`TrainOptions::dropout`]): a seeded share of each class of the
//!    training rows reads the dropped features as missing (validation rows never do, so
//!    thresholds and metrics describe normal operation).
//! 3. Normalisation constants from the training split (after dropout) (mean and population standard
//!    deviation, accumulated in f64). A feature whose spread is below [`STD_FLOOR`] is
//!    *constant*: its std is written as 1 (centring only) and its first-layer weights are
//!    zeroed after training, so a value never seen in training cannot swing the score.
//! 4. He-uniform initial weights for hidden layers, Glorot-uniform for the output layer,
//!    zero biases.
//! 5. AdamW (weight decay on weight matrices only) on binary cross-entropy with logits,
//!    in its numerically stable form, with positive rows weighted by
//!    [`TrainOptions::positive_weight`] because fraud is rare.
//! 6. Thresholds chosen on the validation split by [`choose_thresholds`]; metrics on both
//!    splits computed with the final model exactly as it will score in production.
//! 7. The canary ([`crate::Canary`]) chosen from all rows of the data set by the final
//!    model's scores, so that the saved model can be checked whenever it is loaded; a model
//!    that scores the chosen rows degenerately is an error, not a model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dropout::{columns_of, set_columns, FeatureDropout};
use crate::error::{ModelError, TensorContext};
use crate::metadata::{ModelMetadata, Thresholds, TrainingInfo, FORMAT_VERSION, STD_FLOOR};
use crate::metrics::{choose_thresholds, evaluate, evaluate_by_group, Metrics, ThresholdChoice};
use crate::model::{forward_logits, transpose, Model};
use crate::weights::{layer_dims, LayerParams};

/// RNG stream for the train/validation split.
const SPLIT_STREAM: u64 = 1;
/// RNG stream for initial weights.
const INIT_STREAM: u64 = 2;
/// RNG stream for the order of mini-batches.
const BATCH_STREAM: u64 = 3;
/// RNG stream for the rows whose features are dropped.
const DROPOUT_STREAM: u64 = 4;

/// Labelled feature rows to train on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Feature names, in column order; become the model's feature names.
    pub feature_names: Vec<String>,
    /// Raw feature values, row-major, `labels.len() × feature_names.len()`.
    pub features: Vec<f32>,
    /// 1 for a positive (fraud) row, 0 otherwise.
    pub labels: Vec<f32>,
    /// Optional per-row tag (for example the fraud pattern) used only to report per-group
    /// validation metrics; empty when not needed.
    pub groups: Vec<u8>,
}

impl Dataset {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.labels.len()
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The same rows with only the features `keep` accepts (by name), in their order;
    /// labels and groups unchanged. Used to train an ablated model (for example without
    /// graph features) on exactly the same events.
    pub fn select_features(&self, keep: impl Fn(&str) -> bool) -> Dataset {
        let kept: Vec<usize> = (0..self.n_features())
            .filter(|&j| keep(&self.feature_names[j]))
            .collect();
        let n = self.n_features().max(1);
        let mut features = Vec::with_capacity(self.n_rows() * kept.len());
        for row in self.features.chunks_exact(n) {
            features.extend(kept.iter().map(|&j| row[j]));
        }
        Dataset {
            feature_names: kept
                .iter()
                .map(|&j| self.feature_names[j].clone())
                .collect(),
            features,
            labels: self.labels.clone(),
            groups: self.groups.clone(),
        }
    }

    /// The same rows with each feature of `values` (name, value) set to its value in every
    /// row: for example every row as it reads when the graph gives no answer.
    pub fn with_values(&self, values: &[(String, f32)]) -> Result<Dataset, ModelError> {
        let columns = columns_of(values, &self.feature_names)?;
        let mut data = self.clone();
        for row in data.features.chunks_exact_mut(self.n_features().max(1)) {
            set_columns(row, &columns);
        }
        Ok(data)
    }

    fn check(&self) -> Result<(), ModelError> {
        let n = self.n_features();
        if n == 0 {
            return Err(ModelError::InvalidDataset("no feature names".to_owned()));
        }
        if self.features.len() != self.n_rows() * n {
            return Err(ModelError::InvalidDataset(format!(
                "{} feature values for {} rows x {n} features",
                self.features.len(),
                self.n_rows()
            )));
        }
        if !self.groups.is_empty() && self.groups.len() != self.n_rows() {
            return Err(ModelError::InvalidDataset(format!(
                "{} group tags for {} rows; give one per row or none",
                self.groups.len(),
                self.n_rows()
            )));
        }
        if let Some(row) = self.labels.iter().position(|&l| l != 0.0 && l != 1.0) {
            return Err(ModelError::InvalidDataset(format!(
                "label of row {row} is {}; labels must be 0 or 1",
                self.labels[row]
            )));
        }
        if let Some(k) = self.features.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::InvalidDataset(format!(
                "feature {} of row {} is not finite ({})",
                self.feature_names[k % n],
                k / n,
                self.features[k]
            )));
        }
        let positives = self.labels.iter().filter(|&&l| l == 1.0).count();
        let negatives = self.n_rows() - positives;
        if positives < 2 || negatives < 2 {
            return Err(ModelError::InvalidDataset(format!(
                "{positives} positive and {negatives} negative rows; training needs at least \
                 two of each so that both splits contain both classes"
            )));
        }
        Ok(())
    }
}

/// How to train; every field has a documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    /// Seed of every random choice. Default 42.
    pub seed: u64,
    /// Passes over the training split. Default 15.
    pub epochs: usize,
    /// Hidden layer sizes. Default `[32, 16]`.
    pub hidden: Vec<usize>,
    /// AdamW learning rate. Default 0.003.
    pub learning_rate: f64,
    /// AdamW weight decay on weight matrices. Default 0.0001.
    pub weight_decay: f64,
    /// Rows per optimiser step. Default 512: large enough that per-step overhead stays small
    /// on two CPU cores, small enough for about a thousand steps per epoch on 500k rows.
    pub batch_size: usize,
    /// Share of rows held out for thresholds and metrics, in (0, 1). Default 0.2.
    pub validation_fraction: f64,
    /// Version string of the trained model. Default `riskstream-v1`.
    pub version: String,
    /// Precision the block threshold must reach on validation, in (0, 1]. Default 0.9.
    pub target_block_precision: f64,
    /// Recall the review threshold must keep on validation, in (0, 1]. Default 0.9.
    pub target_review_recall: f64,
    /// Loss weight of a positive row. `None` (the default) balances the classes: the number
    /// of negative training rows divided by the number of positive ones. Weighting makes the
    /// rare class matter to the optimiser; the scores are then not calibrated probabilities,
    /// but thresholds are chosen on the same scale, so decisions are consistent.
    pub positive_weight: Option<f64>,
    /// Features a share of the training rows read as missing. Default: none.
    pub dropout: FeatureDropout,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 42,
            epochs: 15,
            hidden: vec![32, 16],
            learning_rate: 0.003,
            weight_decay: 1e-4,
            batch_size: 512,
            validation_fraction: 0.2,
            version: "riskstream-v1".to_owned(),
            target_block_precision: 0.9,
            target_review_recall: 0.9,
            positive_weight: None,
            dropout: FeatureDropout::default(),
        }
    }
}

impl TrainOptions {
    fn check(&self) -> Result<(), ModelError> {
        let invalid = |option, reason: &str| {
            Err(ModelError::InvalidOptions {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.epochs == 0 {
            return invalid("epochs", "must be at least 1");
        }
        if self.hidden.contains(&0) {
            return invalid("hidden", "every layer needs at least one unit");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("learning_rate", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid("weight_decay", "must be zero or a positive number");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be at least 1");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return invalid("validation_fraction", "must lie strictly between 0 and 1");
        }
        if self.version.trim().is_empty() {
            return invalid("version", "must not be empty");
        }
        if !(self.target_block_precision > 0.0 && self.target_block_precision <= 1.0) {
            return invalid("target_block_precision", "must lie in (0, 1]");
        }
        if !(self.target_review_recall > 0.0 && self.target_review_recall <= 1.0) {
            return invalid("target_review_recall", "must lie in (0, 1]");
        }
        if let Some(w) = self.positive_weight {
            if !(w.is_finite() && w > 0.0) {
                return invalid("positive_weight", "must be a positive number");
            }
        }
        self.dropout.check()
    }
}

/// What training measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Metrics on the rows the weights were fitted to.
    pub train: Metrics,
    /// Metrics on the held-out rows. AUC and average precision are honest estimates; the
    /// precision and recall at the thresholds are optimistic, since the thresholds were
    /// chosen on these same rows.
    pub validation: Metrics,
    /// Validation metrics per group tag (empty when the dataset has no groups).
    pub validation_by_group: BTreeMap<u8, Metrics>,
    /// The chosen thresholds and whether their targets were met.
    pub thresholds: ThresholdChoice,
    /// Weighted mean training loss of every epoch.
    pub epochs_loss: Vec<f32>,
    /// Wall-clock time of the whole call; the only field that differs between identical runs.
    pub seconds: f64,
}

/// Trains a model on `data` and evaluates it.
///
/// The returned model carries the chosen thresholds and, in `metadata.metrics`, everything
/// in the report except `seconds` (so two identical runs write identical files). Same data
/// and options give bit-identical weights and metrics on the same machine.
pub fn train(data: &Dataset, opts: &TrainOptions) -> Result<(Model, TrainReport), ModelError> {
    let started = Instant::now();
    opts.check()?;
    data.check()?;
    let n = data.n_features();

    let split = Split::stratified(&data.labels, opts.validation_fraction, opts.seed);
    let (features, dropped_rows) = drop_features(data, &opts.dropout, &split.train, opts.seed)?;
    let norm = Normalisation::fit(&features, n, &split.train);
    let positives = data.labels.iter().filter(|&&l| l == 1.0).count();
    let train_positives = split
        .train
        .iter()
        .filter(|&&r| data.labels[r] == 1.0)
        .count();
    let positive_weight = opts
        .positive_weight
        .unwrap_or((split.train.len() - train_positives) as f64 / train_positives as f64);

    let (mut params, epochs_loss) = fit(
        (&features, &data.labels, n),
        opts,
        &split.train,
        &norm,
        positive_weight,
    )?;
    for j in norm.constant.iter().copied() {
        for row in params[0].weight.chunks_exact_mut(n) {
            row[j] = 0.0;
        }
    }

    let metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        version: opts.version.clone(),
        feature_names: data.feature_names.clone(),
        norm_mean: norm.mean,
        norm_std: norm.std,
        hidden: opts.hidden.clone(),
        // Replaced below once validation scores exist; any valid pair will do until then.
        thresholds: Thresholds {
            review: 0.25,
            block: 0.75,
        },
        metrics: serde_json::Value::Null,
        training: TrainingInfo {
            seed: opts.seed,
            epochs: opts.epochs,
            rows: data.n_rows(),
            positives,
            train_rows: split.train.len(),
            validation_rows: split.validation.len(),
            learning_rate: opts.learning_rate,
            weight_decay: opts.weight_decay,
            batch_size: opts.batch_size,
            validation_fraction: opts.validation_fraction,
            positive_weight,
            target_block_precision: opts.target_block_precision,
            target_review_recall: opts.target_review_recall,
            constant_features: norm
                .constant
                .iter()
                .map(|&j| data.feature_names[j].clone())
                .collect(),
            dropout_share: opts.dropout.share,
            dropped_features: if dropped_rows > 0 {
                opts.dropout
                    .features
                    .iter()
                    .map(|(f, _)| f.clone())
                    .collect()
            } else {
                Vec::new()
            },
            dropped_rows,
        },
        // Chosen below, once the model exists to score the rows.
        canary: None,
    };
    let mut model = Model::from_parts(metadata, params, Device::Cpu)?;

    let scores = model.score(&data.features, data.n_rows())?;
    let pick = |rows: &[usize]| -> (Vec<f32>, Vec<f32>) {
        rows.iter().map(|&r| (scores[r], data.labels[r])).unzip()
    };
    let (val_scores, val_labels) = pick(&split.validation);
    let (train_scores, train_labels) = pick(&split.train);
    let choice = choose_thresholds(
        &val_scores,
        &val_labels,
        opts.target_block_precision,
        opts.target_review_recall,
    );
    let thresholds = choice.thresholds;
    let validation_by_group = if data.groups.is_empty() {
        BTreeMap::new()
    } else {
        let groups: Vec<u8> = split.validation.iter().map(|&r| data.groups[r]).collect();
        evaluate_by_group(&val_scores, &val_labels, &groups, thresholds)
    };
    let mut report = TrainReport {
        train: evaluate(&train_scores, &train_labels, thresholds),
        validation: evaluate(&val_scores, &val_labels, thresholds),
        validation_by_group,
        thresholds: choice,
        epochs_loss,
        seconds: 0.0,
    };
    let metrics = serde_json::json!({
        "train": report.train,
        "validation": report.validation,
        "validation_by_group": report.validation_by_group,
        "thresholds": report.thresholds,
        "epochs_loss": report.epochs_loss,
    });
    model.set_evaluation(thresholds, metrics);
    model.set_canary_from_scores(&data.features, &data.labels, &scores)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((model, report))
}

/// The feature values training fits to: `data`'s own, or, with dropout, a copy in which the
/// chosen training rows read the dropped features as missing; and how many rows were changed.
fn drop_features<'a>(
    data: &'a Dataset,
    dropout: &FeatureDropout,
    train_rows: &[usize],
    seed: u64,
) -> Result<(Cow<'a, [f32]>, usize), ModelError> {
    if !dropout.is_active() {
        return Ok((Cow::Borrowed(&data.features), 0));
    }
    let columns = dropout.columns(&data.feature_names)?;
    let rows = dropout.choose(&data.labels, train_rows, &mut rng(seed, DROPOUT_STREAM));
    let n = data.n_features();
    let mut features = data.features.clone();
    for &r in &rows {
        set_columns(&mut features[r * n..(r + 1) * n], &columns);
    }
    Ok((Cow::Owned(features), rows.len()))
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Row indices of the two splits, each in ascending order.
struct Split {
    train: Vec<usize>,
    validation: Vec<usize>,
}

impl Split {
    /// Holds out `fraction` of each class (at least one row of each, at most all but one).
    fn stratified(labels: &[f32], fraction: f64, seed: u64) -> Split {
        let mut rng = rng(seed, SPLIT_STREAM);
        let (mut positives, mut negatives): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&r| labels[r] == 1.0);
        let mut train = Vec::with_capacity(labels.len());
        let mut validation = Vec::new();
        for class in [&mut positives, &mut negatives] {
            class.shuffle(&mut rng);
            let held_out = ((class.len() as f64 * fraction).round() as usize)
                .clamp(1, class.len().saturating_sub(1).max(1));
            validation.extend_from_slice(&class[..held_out]);
            train.extend_from_slice(&class[held_out..]);
        }
        train.sort_unstable();
        validation.sort_unstable();
        Split { train, validation }
    }
}

/// Per-feature normalisation constants fitted on the training rows.
struct Normalisation {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Columns whose training spread is below [`STD_FLOOR`].
    constant: Vec<usize>,
}

impl Normalisation {
    fn fit(features: &[f32], n: usize, rows: &[usize]) -> Normalisation {
        let count = rows.len() as f64;
        let mut sum = vec![0.0f64; n];
        for &r in rows {
            for (s, &x) in sum.iter_mut().zip(&features[r * n..(r + 1) * n]) {
                *s += f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let mut squares = vec![0.0f64; n];
        for &r in rows {
            for ((sq, &x), m) in squares
                .iter_mut()
                .zip(&features[r * n..(r + 1) * n])
                .zip(&mean)
            {
                let d = f64::from(x) - m;
                *sq += d * d;
            }
        }
        let mut std = Vec::with_capacity(n);
        let mut constant = Vec::new();
        for (j, sq) in squares.iter().enumerate() {
            let s = (sq / count).sqrt() as f32;
            if s >= STD_FLOOR {
                std.push(s);
            } else {
                std.push(1.0);
                constant.push(j);
            }
        }
        Normalisation {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
            constant,
        }
    }

    fn apply(&self, row: &[f32], out: &mut Vec<f32>) {
        out.extend(
            row.iter()
                .zip(&self.mean)
                .zip(&self.std)
                .map(|((&x, &m), &s)| (x - m) / s),
        );
    }
}

/// Seeded initial parameters in the on-disk `[outputs, inputs]` layout.
fn initial_params(n_features: usize, hidden: &[usize], seed: u64) -> Vec<LayerParams> {
    let mut rng = rng(seed, INIT_STREAM);
    let dims = layer_dims(n_features, hidden);
    let last = dims.len() - 1;
    dims.into_iter()
        .enumerate()
        .map(|(i, (inputs, outputs))| {
            let bound = if i < last {
                (6.0 / inputs as f64).sqrt()
            } else {
                (6.0 / (inputs + outputs) as f64).sqrt()
            } as f32;
            let weight = (0..inputs * outputs)
                .map(|_| (2.0 * rng.random::<f32>() - 1.0) * bound)
                .collect();
            LayerParams {
                inputs,
                outputs,
                weight,
                bias: vec![0.0; outputs],
            }
        })
        .collect()
}

/// The optimisation loop; returns the trained parameters and the loss of every epoch.
/// `(features, labels, n)`: row-major feature values with `n` columns and one label per row.
fn fit(
    (features, all_labels, n): (&[f32], &[f32], usize),
    opts: &TrainOptions,
    train_rows: &[usize],
    norm: &Normalisation,
    positive_weight: f64,
) -> Result<(Vec<LayerParams>, Vec<f32>), ModelError> {
    let device = Device::Cpu;
    let init = initial_params(n, &opts.hidden, opts.seed);

    let mut weights = Vec::with_capacity(init.len());
    let mut biases = Vec::with_capacity(init.len());
    for layer in &init {
        let w = transpose(&layer.weight, layer.outputs, layer.inputs);
        weights.push(
            Var::from_vec(w, (layer.inputs, layer.outputs), &device)
                .during("creating layer weights")?,
        );
        biases.push(
            Var::from_vec(layer.bias.clone(), layer.outputs, &device)
                .during("creating layer biases")?,
        );
    }
    // Var::set writes into the shared storage, so these handles see every update.
    let layers: Vec<(Tensor, Tensor)> = weights
        .iter()
        .zip(&biases)
        .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
        .collect();
    let mut weight_opt = AdamW::new(
        weights.clone(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )
    .during("creating the optimiser")?;
    let mut bias_opt = AdamW::new(
        biases.clone(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .during("creating the optimiser")?;

    let mut normalised = Vec::with_capacity(train_rows.len() * n);
    for &r in train_rows {
        norm.apply(&features[r * n..(r + 1) * n], &mut normalised);
    }
    let labels: Vec<f32> = train_rows.iter().map(|&r| all_labels[r]).collect();

    let mut rng = rng(opts.seed, BATCH_STREAM);
    let mut order: Vec<usize> = (0..train_rows.len()).collect();
    let batch = opts.batch_size.min(train_rows.len());
    let mut xs = Vec::with_capacity(batch * n);
    let mut ys = Vec::with_capacity(batch);
    let mut ws = Vec::with_capacity(batch);
    let mut epochs_loss = Vec::with_capacity(opts.epochs);
    for _ in 0..opts.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut weight_sum) = (0.0f64, 0.0f64);
        for rows in order.chunks(batch) {
            xs.clear();
            ys.clear();
            ws.clear();
            for &r in rows {
                xs.extend_from_slice(&normalised[r * n..(r + 1) * n]);
                ys.push(labels[r]);
                ws.push(if labels[r] == 1.0 {
                    positive_weight as f32
                } else {
                    1.0
                });
            }
            let batch_weight: f64 = ws.iter().map(|&w| f64::from(w)).sum();
            let loss = step(&layers, &xs, &ys, &ws, batch_weight, &device)
                .and_then(|loss| {
                    let grads = loss.backward()?;
                    weight_opt.step(&grads)?;
                    bias_opt.step(&grads)?;
                    loss.to_scalar::<f32>()
                })
                .during("running an optimiser step")?;
            loss_sum += f64::from(loss) * batch_weight;
            weight_sum += batch_weight;
        }
        epochs_loss.push((loss_sum / weight_sum) as f32);
    }

    let mut params = Vec::with_capacity(init.len());
    for ((w, b), layer) in weights.iter().zip(&biases).zip(&init) {
        let w_t = w
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .during("reading trained weights")?;
        let bias = b
            .as_tensor()
            .to_vec1::<f32>()
            .during("reading trained biases")?;
        params.push(LayerParams {
            inputs: layer.inputs,
            outputs: layer.outputs,
            weight: transpose(&w_t, layer.inputs, layer.outputs),
            bias,
        });
    }
    Ok((params, epochs_loss))
}

/// The weighted mean loss of one mini-batch, as a graph ready for `backward`.
///
/// Binary cross-entropy with logits in the stable form
/// `max(z, 0) − z·y + ln(1 + e^−|z|)`, which never takes the log of 0 or overflows `exp`.
fn step(
    layers: &[(Tensor, Tensor)],
    xs: &[f32],
    ys: &[f32],
    ws: &[f32],
    batch_weight: f64,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let rows = ys.len();
    let x = Tensor::from_slice(xs, (rows, xs.len() / rows), device)?;
    let y = Tensor::from_slice(ys, rows, device)?;
    let w = Tensor::from_slice(ws, rows, device)?;
    let z = forward_logits(&x, layers)?.flatten_all()?;
    let softplus_tail = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let bce = ((z.relu()? - (&z * &y)?)? + softplus_tail)?;
    (bce * w)?.sum_all()?.affine(1.0 / batch_weight, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish classes separated along a few features, plus noise features.
    fn separable(rows: usize, seed: u64) -> Dataset {
        let mut rng = rng(seed, 99);
        let n = 6;
        let mut features = Vec::with_capacity(rows * n);
        let mut labels = Vec::with_capacity(rows);
        let mut groups = Vec::with_capacity(rows);
        for _ in 0..rows {
            let positive = rng.random::<f32>() < 0.05;
            let shift = if positive { 2.5 } else { 0.0 };
            let noise = |rng: &mut ChaCha8Rng| rng.random::<f32>() + rng.random::<f32>() - 1.0;
            features.push(100.0 + 40.0 * (noise(&mut rng) + shift));
            features.push(noise(&mut rng) + shift);
            features.push(noise(&mut rng) - shift * 0.5);
            features.push(noise(&mut rng));
            features.push(noise(&mut rng) * 1000.0);
            features.push(3.0);
            labels.push(if positive { 1.0 } else { 0.0 });
            groups.push(u8::from(positive) + u8::from(rng.random::<bool>()));
        }
        Dataset {
            feature_names: (0..n).map(|i| format!("x{i}")).collect(),
            features,
            labels,
            groups,
        }
    }

    fn quick() -> TrainOptions {
        TrainOptions {
            epochs: 5,
            hidden: vec![8, 4],
            batch_size: 128,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn selecting_features_keeps_rows_labels_and_column_order() {
        let data = separable(10, 3);
        let picked = data.select_features(|name| name == "x1" || name == "x4");
        assert_eq!(picked.feature_names, ["x1", "x4"]);
        assert_eq!(picked.labels, data.labels);
        assert_eq!(picked.groups, data.groups);
        for (r, row) in picked.features.chunks_exact(2).enumerate() {
            assert_eq!(row, [data.features[r * 6 + 1], data.features[r * 6 + 4]]);
        }
    }

    #[test]
    fn training_on_separable_data_reaches_high_auc() {
        let data = separable(6000, 1);
        let (model, report) = train(&data, &quick()).expect("training succeeds");
        let auc = report.validation.roc_auc.unwrap_or(0.0);
        assert!(auc > 0.95, "validation AUC {auc}: {report:?}");
        assert!(model.thresholds().is_ordered());
        assert!(report.thresholds.block_target_met, "{report:?}");
        assert!(report.validation.block.precision >= 0.9, "{report:?}");
        assert_eq!(report.epochs_loss.len(), 5);
        assert!(report.epochs_loss[4] < report.epochs_loss[0], "{report:?}");
        assert!(!report.validation_by_group.is_empty());
    }

    #[test]
    fn training_twice_with_the_same_seed_is_bit_identical() {
        let data = separable(2000, 2);
        let (a, report_a) = train(&data, &quick()).expect("training succeeds");
        let (b, report_b) = train(&data, &quick()).expect("training succeeds");
        assert_eq!(a.params(), b.params());
        assert_eq!(a.metadata(), b.metadata());
        assert_eq!(report_a.validation, report_b.validation);
        assert_eq!(report_a.epochs_loss, report_b.epochs_loss);

        let other_seed = TrainOptions { seed: 7, ..quick() };
        let (c, _) = train(&data, &other_seed).expect("training succeeds");
        assert_ne!(a.params(), c.params(), "the seed must matter");
    }

    #[test]
    fn constant_features_are_recorded_and_ignored() {
        let data = separable(1000, 3);
        let (model, _) = train(&data, &quick()).expect("training succeeds");
        let meta = model.metadata();
        assert_eq!(meta.training.constant_features, vec!["x5".to_owned()]);
        assert_eq!(meta.norm_std[5], 1.0);
        let mut row = data.features[..6].to_vec();
        let before = model.score(&row, 1).expect("valid row");
        row[5] = 1e6;
        assert_eq!(model.score(&row, 1).expect("valid row"), before);
    }

    #[test]
    fn metrics_in_metadata_match_the_report_and_survive_saving() {
        let data = separable(1500, 4);
        let (model, report) = train(&data, &quick()).expect("training succeeds");
        let meta = model.metadata();
        assert_eq!(meta.thresholds, report.thresholds.thresholds);
        assert_eq!(
            meta.metrics["validation"],
            serde_json::to_value(&report.validation).expect("serialisable")
        );
        assert_eq!(meta.training.rows, 1500);
        assert_eq!(
            meta.training.train_rows + meta.training.validation_rows,
            1500
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        model.save(dir.path()).expect("save");
        let loaded = Model::load(dir.path(), crate::DeviceChoice::Cpu).expect("load");
        // serde_json's default float parser may be one ulp off on 17-digit f64 metrics, so
        // those are compared with a tolerance; everything that affects scores is exact.
        let mut without_metrics = loaded.metadata().clone();
        without_metrics.metrics = meta.metrics.clone();
        assert_eq!(&without_metrics, meta);
        let auc = |m: &ModelMetadata| m.metrics["validation"]["roc_auc"].as_f64();
        let (saved_auc, loaded_auc) = (auc(meta), auc(loaded.metadata()));
        assert!(
            saved_auc
                .zip(loaded_auc)
                .is_some_and(|(a, b)| (a - b).abs() < 1e-12),
            "{saved_auc:?} vs {loaded_auc:?}"
        );
        let scores = loaded.score(&data.features, 1500).expect("valid batch");
        assert_eq!(
            scores,
            model.score(&data.features, 1500).expect("valid batch")
        );
    }

    /// `separable` data whose strongest feature, `x1`, reads 0 when "missing".
    fn dropping_x1(share: f64) -> TrainOptions {
        TrainOptions {
            dropout: FeatureDropout {
                share,
                features: vec![("x1".to_owned(), 0.0)],
            },
            ..quick()
        }
    }

    #[test]
    fn dropout_changes_the_chosen_share_of_each_class_and_is_recorded() {
        let data = separable(2000, 8);
        let (model, report) = train(&data, &dropping_x1(0.25)).expect("training succeeds");
        let info = &model.metadata().training;
        let train_rows = info.train_rows as f64;
        assert!(
            (info.dropped_rows as f64 - 0.25 * train_rows).abs() <= 2.0,
            "{info:?}"
        );
        assert_eq!(info.dropout_share, 0.25);
        assert_eq!(info.dropped_features, ["x1"]);
        // x1 is near 0 (mean about 0.1) unless dropped, when it reads 100 here: a quarter of
        // the rows dropped moves its training mean to about 25.
        let opts = TrainOptions {
            dropout: FeatureDropout {
                share: 0.25,
                features: vec![("x1".to_owned(), 100.0)],
            },
            ..quick()
        };
        let (far, _) = train(&data, &opts).expect("training succeeds");
        let mean = far.metadata().norm_mean[1];
        assert!((24.0..26.5).contains(&mean), "x1 mean {mean}");
        assert!(report.validation.roc_auc.unwrap_or(0.0) > 0.9, "{report:?}");
    }

    #[test]
    fn dropout_is_deterministic_with_the_seed() {
        let data = separable(1500, 9);
        let (a, _) = train(&data, &dropping_x1(0.3)).expect("training succeeds");
        let (b, _) = train(&data, &dropping_x1(0.3)).expect("training succeeds");
        assert_eq!(a.params(), b.params());
        assert_eq!(a.metadata(), b.metadata());
    }

    #[test]
    fn a_model_trained_with_dropout_scores_rows_missing_the_feature_more_like_their_class() {
        // Without dropout, a fraud row whose strongest feature reads as missing (0, the
        // benign side of x1) looks benign; with dropout the model leans on the others.
        let data = separable(6000, 10);
        let missing = data
            .with_values(&[("x1".to_owned(), 0.0)])
            .expect("x1 is a feature");
        let auc_missing = |opts: &TrainOptions| {
            let (model, _) = train(&data, opts).expect("training succeeds");
            let scores = model
                .score(&missing.features, missing.n_rows())
                .expect("valid rows");
            let t = model.thresholds();
            evaluate(&scores, &missing.labels, t).roc_auc.unwrap_or(0.0)
        };
        let (plain, dropped) = (auc_missing(&quick()), auc_missing(&dropping_x1(0.3)));
        assert!(dropped > plain, "AUC with x1 missing: {dropped} vs {plain}");
    }

    #[test]
    fn bad_dropout_options_name_the_option() {
        let data = separable(200, 11);
        for (opts, option) in [
            (dropping_x1(1.0), "dropout.share"),
            (dropping_x1(-0.1), "dropout.share"),
            (
                TrainOptions {
                    dropout: FeatureDropout {
                        share: 0.2,
                        features: vec![("no_such".to_owned(), 0.0)],
                    },
                    ..quick()
                },
                "dropout.features",
            ),
        ] {
            let err = train(&data, &opts).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(option)),
                "{option}: {err:?}"
            );
        }
    }

    #[test]
    fn with_values_sets_the_feature_in_every_row_and_nothing_else() {
        let data = separable(20, 12);
        let set = data
            .with_values(&[("x3".to_owned(), 7.0)])
            .expect("x3 is a feature");
        for (row, before) in set
            .features
            .chunks_exact(6)
            .zip(data.features.chunks_exact(6))
        {
            assert_eq!(row[3], 7.0);
            assert_eq!((&row[..3], &row[4..]), (&before[..3], &before[4..]));
        }
        assert!(data.with_values(&[("x9".to_owned(), 0.0)]).is_err());
    }

    #[test]
    fn the_split_is_stratified_and_disjoint() {
        let labels: Vec<f32> = (0..100)
            .map(|r| if r % 10 == 0 { 1.0 } else { 0.0 })
            .collect();
        let split = Split::stratified(&labels, 0.2, 5);
        assert_eq!(split.validation.len(), 20);
        let val_pos = split
            .validation
            .iter()
            .filter(|&&r| labels[r] == 1.0)
            .count();
        assert_eq!(val_pos, 2);
        let mut all: Vec<usize> = split
            .train
            .iter()
            .chain(&split.validation)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn bad_datasets_and_options_are_rejected_with_the_reason() {
        let mut data = separable(200, 6);
        data.labels[3] = 0.5;
        let err = train(&data, &quick()).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("row 3")),
            "{err:?}"
        );

        let data = separable(200, 6);
        let opts = TrainOptions {
            validation_fraction: 1.0,
            ..quick()
        };
        let err = train(&data, &opts).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("validation_fraction")),
            "{err:?}"
        );

        let mut data = separable(200, 6);
        data.labels.iter_mut().for_each(|l| *l = 0.0);
        assert!(matches!(
            train(&data, &quick()),
            Err(ModelError::InvalidDataset(_))
        ));
    }
}
