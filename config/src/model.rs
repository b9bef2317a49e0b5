//! `[model]`: which model scores events, where it runs and the decision thresholds.

use std::time::Duration;

use toml::Value;

use crate::document::Document;
use crate::duration::format_duration;
use crate::error::KeyError;
use crate::read::{KeyPath, Report, Section};

/// The word a threshold key holds when the threshold comes from the model's metadata.
pub const FROM_METADATA: &str = "metadata";

choice_enum! {
    /// Where the model runs.
    pub enum ModelDevice {
        /// The CPU; always available.
        Cpu = "cpu",
        /// The first CUDA GPU; needs a binary built with the `cuda` feature.
        Cuda = "cuda",
    }
}

/// `[model]`: the model directory, its device and optional threshold overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Directory with the model's weights (safetensors) and metadata.
    pub path: String,
    /// Where scoring runs.
    pub device: ModelDevice,
    /// Scores at or above this are `review`; `None` takes the value from the model metadata.
    pub review_threshold: Option<f64>,
    /// Scores at or above this are `block`; `None` takes the value from the model metadata.
    pub block_threshold: Option<f64>,
    /// How often the running job looks at `path` for a new model (hot swap); zero turns
    /// polling off, leaving SIGHUP as the only trigger.
    pub reload_interval: Duration,
}

/// The model shipped in the repository, relative to the working directory.
pub(crate) fn default_model_path() -> String {
    "models/riskstream-v1".to_owned()
}

/// The CPU: works on every machine and build.
pub(crate) fn default_device() -> ModelDevice {
    ModelDevice::Cpu
}

/// Unset: thresholds are tuned with the model when it is trained and kept in its metadata.
pub(crate) fn default_review_threshold() -> Option<f64> {
    None
}

/// Unset: thresholds are tuned with the model when it is trained and kept in its metadata.
pub(crate) fn default_block_threshold() -> Option<f64> {
    None
}

/// 2 seconds: a new model is picked up quickly, and looking costs two `stat` calls.
pub(crate) fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: default_model_path(),
            device: default_device(),
            review_threshold: default_review_threshold(),
            block_threshold: default_block_threshold(),
            reload_interval: default_reload_interval(),
        }
    }
}

fn threshold_value(threshold: Option<f64>) -> Value {
    match threshold {
        Some(t) => Value::Float(t),
        None => Value::from(FROM_METADATA),
    }
}

impl ModelConfig {
    pub(crate) fn read(mut s: Section<'_>) -> ModelConfig {
        let config = ModelConfig {
            path: s.string("path", default_model_path()),
            device: s.choice("device", default_device()),
            review_threshold: s.optional_number(
                "review_threshold",
                default_review_threshold(),
                FROM_METADATA,
                0.5,
            ),
            block_threshold: s.optional_number(
                "block_threshold",
                default_block_threshold(),
                FROM_METADATA,
                0.9,
            ),
            reload_interval: s.duration("reload_interval", default_reload_interval()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("model");
        section.set("path", self.path.as_str());
        section.set("device", self.device.as_str());
        section.set("review_threshold", threshold_value(self.review_threshold));
        section.set("block_threshold", threshold_value(self.block_threshold));
        section.set("reload_interval", format_duration(self.reload_interval));
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            !self.path.trim().is_empty(),
            "model.path",
            "the model directory",
            "nothing",
            default_model_path(),
        );
        for (key, threshold, example) in [
            ("model.review_threshold", self.review_threshold, 0.5),
            ("model.block_threshold", self.block_threshold, 0.9),
        ] {
            if let Some(t) = threshold {
                r.require(
                    t > 0.0 && t < 1.0,
                    key,
                    "between 0 and 1 (exclusive), or \"metadata\"",
                    t,
                    example,
                );
            }
        }
        if let (Some(review), Some(block)) = (self.review_threshold, self.block_threshold) {
            if review >= block {
                let path = KeyPath::of("model.review_threshold");
                let env_var = r.env_for(&path).map(|o| o.var.clone());
                r.push(KeyError {
                    key: path.to_string(),
                    env_var,
                    message: format!(
                        "`model.review_threshold` ({review}) must be lower than `model.block_threshold` ({block}); swap them, or set one to \"metadata\" to take it from the model"
                    ),
                });
            }
        }
    }
}
