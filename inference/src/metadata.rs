//! `metadata.json`: everything about a model that is not a weight.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::canary::Canary;
use crate::error::ModelError;

/// The `format_version` this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the metadata inside a model directory.
pub const METADATA_FILE: &str = "metadata.json";

/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Smallest normalisation standard deviation a model may carry.
///
/// Dividing by anything smaller would turn rounding noise in a feature into huge first-layer
/// inputs. Training never writes a smaller value: a feature whose training spread is below
/// this floor is treated as constant (see [`crate::train`]).
pub const STD_FLOOR: f32 = 1e-6;

/// Score cut-offs that turn a score into a decision.
///
/// A score at or above `block` is blocked, at or above `review` (and below `block`) is sent
/// to review, anything lower is allowed. A valid pair satisfies `0 < review < block < 1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Lowest score sent to manual review.
    pub review: f32,
    /// Lowest score blocked outright.
    pub block: f32,
}

impl Thresholds {
    /// Builds a checked pair; fails unless `0 < review < block < 1`.
    pub fn new(review: f32, block: f32) -> Result<Self, ModelError> {
        let thresholds = Thresholds { review, block };
        if thresholds.is_ordered() {
            Ok(thresholds)
        } else {
            Err(ModelError::InvalidThresholds { review, block })
        }
    }

    /// Whether `0 < review < block < 1` holds (false for NaN).
    pub fn is_ordered(&self) -> bool {
        0.0 < self.review && self.review < self.block && self.block < 1.0
    }
}

/// How a model was trained; informational, written by training and shown to operators.
///
/// Every field has a default so that a hand-assembled model without training history still
/// loads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingInfo {
    /// Seed of every random choice in training (split, initial weights, batch order).
    pub seed: u64,
    /// Passes over the training split.
    pub epochs: usize,
    /// Rows in the whole dataset (training plus validation).
    pub rows: usize,
    /// Positive rows in the whole dataset.
    pub positives: usize,
    /// Rows used to fit the weights.
    pub train_rows: usize,
    /// Held-out rows used for thresholds and the reported metrics.
    pub validation_rows: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay applied to weight matrices (biases are not decayed).
    pub weight_decay: f64,
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// Share of the rows held out for validation.
    pub validation_fraction: f64,
    /// Loss weight of a positive row relative to a negative one.
    pub positive_weight: f64,
    /// Precision the block threshold was chosen to reach on validation.
    pub target_block_precision: f64,
    /// Recall the review threshold was chosen to keep on validation.
    pub target_review_recall: f64,
    /// Features that were constant in the training split; the model ignores them.
    pub constant_features: Vec<String>,
    /// Share of each class of the training rows that read `dropped_features` as missing.
    pub dropout_share: f64,
    /// Features read as missing by the dropped rows (empty when none were dropped).
    pub dropped_features: Vec<String>,
    /// Training rows whose features were dropped.
    pub dropped_rows: usize,
}

/// The content of `metadata.json`.
///
/// Together with `model.safetensors` it fully describes a model: the order and names of the
/// features it expects, how raw values are normalised, the layer sizes, the decision
/// thresholds and how it was trained and evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// File format; this build reads [`FORMAT_VERSION`] only.
    pub format_version: u32,
    /// Model version reported with every result, e.g. `riskstream-v1`.
    pub version: String,
    /// Feature names in the order the model expects them.
    pub feature_names: Vec<String>,
    /// Per-feature mean subtracted before the first layer.
    pub norm_mean: Vec<f32>,
    /// Per-feature standard deviation divided by before the first layer (at least [`STD_FLOOR`]).
    pub norm_std: Vec<f32>,
    /// Hidden layer sizes; the output layer (size 1) is implied.
    pub hidden: Vec<usize>,
    /// Decision thresholds chosen on the validation split.
    pub thresholds: Thresholds,
    /// Training and validation metrics as written by training.
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// How the model was trained.
    #[serde(default)]
    pub training: TrainingInfo,
    /// Feature rows and the scores this model gave them, scored again before the model is
    /// used (see [`Canary`]). Written by training and by `riskstream model canary`; a model
    /// without one is refused by [`crate::Model::load`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl ModelMetadata {
    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Checks everything that can be checked without the weights; the error names the field.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version is {} but this build reads version {FORMAT_VERSION}; \
                 retrain the model or use a matching riskstream release",
                self.format_version
            ));
        }
        if self.version.trim().is_empty() {
            return Err("version is empty; it is reported with every result".to_owned());
        }
        let n = self.feature_names.len();
        if n == 0 {
            return Err("feature_names is empty".to_owned());
        }
        let mut seen = HashSet::with_capacity(n);
        for (i, name) in self.feature_names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(format!("feature_names[{i}] is empty"));
            }
            if !seen.insert(name.as_str()) {
                return Err(format!("feature_names lists {name:?} twice"));
            }
        }
        if self.norm_mean.len() != n {
            return Err(format!(
                "norm_mean has {} values but feature_names lists {n} features",
                self.norm_mean.len()
            ));
        }
        if self.norm_std.len() != n {
            return Err(format!(
                "norm_std has {} values but feature_names lists {n} features",
                self.norm_std.len()
            ));
        }
        for (i, (&mean, &std)) in self.norm_mean.iter().zip(&self.norm_std).enumerate() {
            let name = &self.feature_names[i];
            if !mean.is_finite() {
                return Err(format!(
                    "norm_mean for feature {name} is not finite ({mean})"
                ));
            }
            if !(std.is_finite() && std >= STD_FLOOR) {
                return Err(format!(
                    "norm_std for feature {name} is {std}; it must be finite and at least {STD_FLOOR}"
                ));
            }
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(format!(
                "hidden[{i}] is 0; every hidden layer needs at least one unit"
            ));
        }
        if !self.thresholds.is_ordered() {
            return Err(format!(
                "thresholds review={} block={} must satisfy 0 < review < block < 1",
                self.thresholds.review, self.thresholds.block
            ));
        }
        if let Some(canary) = &self.canary {
            canary.check(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid metadata value for tests across the crate.
    pub(crate) fn sample(n_features: usize, hidden: Vec<usize>) -> ModelMetadata {
        ModelMetadata {
            format_version: FORMAT_VERSION,
            version: "test-v1".to_owned(),
            feature_names: (0..n_features).map(|i| format!("f{i}")).collect(),
            norm_mean: vec![0.0; n_features],
            norm_std: vec![1.0; n_features],
            hidden,
            thresholds: Thresholds {
                review: 0.3,
                block: 0.8,
            },
            metrics: serde_json::Value::Null,
            training: TrainingInfo::default(),
            canary: None,
        }
    }

    #[test]
    fn sample_metadata_passes_the_checks() {
        assert_eq!(sample(3, vec![4]).check(), Ok(()));
    }

    #[test]
    fn thresholds_must_be_strictly_ordered_inside_the_unit_interval() {
        assert!(Thresholds::new(0.2, 0.9).is_ok());
        assert!(Thresholds::new(0.9, 0.2).is_err());
        assert!(Thresholds::new(0.5, 0.5).is_err());
        assert!(Thresholds::new(0.0, 0.5).is_err());
        assert!(Thresholds::new(0.5, 1.0).is_err());
        assert!(Thresholds::new(f32::NAN, 0.5).is_err());
    }

    #[test]
    fn out_of_order_thresholds_are_named_in_the_metadata_error() {
        let mut meta = sample(3, vec![4]);
        meta.thresholds = Thresholds {
            review: 0.9,
            block: 0.4,
        };
        let reason = meta.check().err().unwrap_or_default();
        assert!(reason.contains("review=0.9 block=0.4"), "{reason}");
    }

    #[test]
    fn norm_lengths_must_match_the_feature_count() {
        let mut meta = sample(3, vec![4]);
        meta.norm_std.pop();
        let reason = meta.check().err().unwrap_or_default();
        assert!(reason.contains("norm_std has 2 values"), "{reason}");
    }

    #[test]
    fn duplicate_feature_names_and_tiny_std_are_rejected() {
        let mut meta = sample(3, vec![4]);
        meta.feature_names[2] = "f0".to_owned();
        assert!(meta.check().is_err());
        let mut meta = sample(3, vec![4]);
        meta.norm_std[1] = 0.0;
        let reason = meta.check().err().unwrap_or_default();
        assert!(reason.contains("feature f1"), "{reason}");
    }

    #[test]
    fn unknown_format_version_is_rejected() {
        let mut meta = sample(3, vec![4]);
        meta.format_version = 2;
        assert!(meta.check().is_err());
    }

    #[test]
    fn normalisation_constants_survive_json_bit_for_bit() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut meta = sample(20_000, vec![]);
        for (i, (m, s)) in meta
            .norm_mean
            .iter_mut()
            .zip(&mut meta.norm_std)
            .enumerate()
        {
            let scale = 10f32.powi((i % 25) as i32 - 12);
            *m = (rng.random::<f32>() - 0.5) * scale;
            *s = rng.random::<f32>() * scale + STD_FLOOR;
        }
        let json = serde_json::to_string(&meta).expect("serialisable");
        let back: ModelMetadata = serde_json::from_str(&json).expect("parses");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.norm_mean), bits(&meta.norm_mean));
        assert_eq!(bits(&back.norm_std), bits(&meta.norm_std));
    }

    #[test]
    fn metadata_without_training_history_parses() {
        let json = r#"{"format_version":1,"version":"v","feature_names":["a"],
            "norm_mean":[0.0],"norm_std":[1.0],"hidden":[],
            "thresholds":{"review":0.1,"block":0.5}}"#;
        let meta: Result<ModelMetadata, _> = serde_json::from_str(json);
        assert!(matches!(meta, Ok(ref m) if m.check().is_ok()), "{meta:?}");
    }
}
