//! Feature dropout: a share of the training rows read some features as missing, so that the
//! model learns to score without them.
//!
//! A feature that is never missing in training teaches the model nothing about the rows
//! where it is: its missing-value indicator is constant (and so ignored, see
//! [`crate::train`]), and the encoding of "missing" lands wherever the network happens to
//! put it. The graph features are the case in point: an outage of the graph takes all of
//! them away at once, and a model that never saw that scores the whole stream as if every
//! entity were unknown.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Features that a share of the training rows read as missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureDropout {
    /// Share of the training rows, of each class alike, whose `features` are replaced, in
    /// [0, 1). 0 (the default) drops nothing.
    pub share: f64,
    /// Each dropped feature by name, with the value the model reads when it is missing: the
    /// encoding the feature code writes for that case, so that a dropped row looks exactly
    /// like a row whose value really was missing.
    pub features: Vec<(String, f32)>,
}

impl FeatureDropout {
    pub(crate) fn check(&self) -> Result<(), ModelError> {
        if !(self.share >= 0.0 && self.share < 1.0) {
            return Err(ModelError::InvalidOptions {
                option: "dropout.share",
                reason: format!("is {}; it must lie in [0, 1)", self.share),
            });
        }
        if let Some((name, value)) = self.features.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::InvalidOptions {
                option: "dropout.features",
                reason: format!("the missing value of `{name}` is {value}; it must be finite"),
            });
        }
        if self.share > 0.0 && self.features.is_empty() {
            return Err(ModelError::InvalidOptions {
                option: "dropout.features",
                reason: "names no feature while dropout.share is above 0".to_owned(),
            });
        }
        Ok(())
    }

    /// Whether training rows are changed at all.
    pub fn is_active(&self) -> bool {
        self.share > 0.0 && !self.features.is_empty()
    }

    /// The dropped features as (column in `names`, missing value).
    pub(crate) fn columns(&self, names: &[String]) -> Result<Vec<(usize, f32)>, ModelError> {
        columns_of(&self.features, names)
    }

    /// The rows of `rows` to drop features from: `share` of each class, rounded, chosen by
    /// `rng`; in ascending order.
    pub(crate) fn choose(
        &self,
        labels: &[f32],
        rows: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> Vec<usize> {
        let (mut positives, mut negatives): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&r| labels[r] == 1.0);
        let mut chosen = Vec::new();
        for class in [&mut positives, &mut negatives] {
            class.shuffle(rng);
            let take = (class.len() as f64 * self.share).round() as usize;
            chosen.extend_from_slice(&class[..take.min(class.len())]);
        }
        chosen.sort_unstable();
        chosen
    }
}

/// `(name, value)` pairs as (column in `names`, value); a name not in `names` is an error.
pub(crate) fn columns_of(
    values: &[(String, f32)],
    names: &[String],
) -> Result<Vec<(usize, f32)>, ModelError> {
    values
        .iter()
        .map(|(name, value)| {
            names
                .iter()
                .position(|n| n == name)
                .map(|j| (j, *value))
                .ok_or_else(|| ModelError::InvalidOptions {
                    option: "dropout.features",
                    reason: format!("`{name}` is not a feature of the data set"),
                })
        })
        .collect()
}

/// Sets each column of `columns` in `row` to its value.
pub(crate) fn set_columns(row: &mut [f32], columns: &[(usize, f32)]) {
    for &(j, value) in columns {
        row[j] = value;
    }
}
