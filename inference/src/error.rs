//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::device::DeviceChoice;

/// Everything that can go wrong while loading, saving, scoring or training a model.
///
/// Each variant names the file, feature, row or option it is about, so that the message
/// alone tells an operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// A model file is not a regular file (a FIFO, a device, a directory): reading it could
    /// block forever or never end, so it is refused before it is opened for reading.
    #[error("model file {path} is not a regular file ({what}); a model directory holds plain files only")]
    NotARegularFile {
        /// The file refused.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },

    /// A model file larger than any model this crate writes; refused instead of read into
    /// memory.
    #[error("model file {path} is {size} bytes, over the limit of {limit} bytes for this file")]
    TooLarge {
        /// The file refused.
        path: PathBuf,
        /// Its size in bytes (at least; it may still be growing).
        size: u64,
        /// The most this file may hold.
        limit: u64,
    },

    /// A model file could not be written or moved into place.
    #[error("cannot write model file {path}: {source}")]
    Write {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// `metadata.json` is not valid JSON or does not have the expected fields.
    #[error("{path} is not valid model metadata: {source}")]
    MetadataJson {
        /// The metadata file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },

    /// `metadata.json` parses but its content is inconsistent or out of range.
    #[error("{path}: {reason}")]
    InvalidMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// `model.safetensors` is corrupt, truncated or does not match the metadata.
    #[error("{path}: {reason}")]
    InvalidWeights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        reason: String,
    },

    /// `metadata.json` holds no canary, so the model cannot be checked before it is used.
    #[error(
        "{path} has no canary: a model is checked by scoring the canary rows in its metadata \
         before it is used. Write one from a labelled data set with \
         `riskstream model canary --model {dir} --data DATA_DIR` (`riskstream gen` makes a \
         data set; `riskstream train` writes a canary with every model it trains)"
    )]
    MissingCanary {
        /// The metadata file.
        path: PathBuf,
        /// The model directory.
        dir: PathBuf,
    },

    /// The model scored its canary rows degenerately or not as expected; it is not used.
    #[error("model {dir} refused: {reason}")]
    CanaryFailed {
        /// The model directory.
        dir: PathBuf,
        /// What was wrong with the scores, with the expected ones.
        reason: String,
    },

    /// No canary could be chosen for a model: too few labelled rows, or a model that scores
    /// them degenerately.
    #[error("cannot write a canary: {reason}")]
    CanaryRows {
        /// What is wrong.
        reason: String,
    },

    /// A model assembled in memory (by training) failed the checks a loaded model must pass.
    #[error("the trained model is inconsistent: {reason}")]
    InvalidTrainedModel {
        /// What is wrong.
        reason: String,
    },

    /// Decision thresholds that do not satisfy `0 < review < block < 1`.
    #[error(
        "invalid thresholds review={review} block={block}: they must satisfy 0 < review < block < 1"
    )]
    InvalidThresholds {
        /// The review threshold given.
        review: f32,
        /// The block threshold given.
        block: f32,
    },

    /// The requested compute device cannot be used.
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        device: DeviceChoice,
        /// Why it cannot be used and what to do.
        reason: String,
    },

    /// A feature batch whose length does not match `n_rows * n_features`.
    #[error(
        "feature batch has {got} values but {n_rows} rows x {n_features} features need {expected}"
    )]
    InputShape {
        /// Values supplied.
        got: usize,
        /// Values needed.
        expected: usize,
        /// Rows the caller said the batch holds.
        n_rows: usize,
        /// Features per row the model expects.
        n_features: usize,
    },

    /// A feature value that is NaN or infinite; the model cannot score it meaningfully.
    #[error("feature {feature} of row {row} is not finite ({value}); feature assembly must produce finite values")]
    NonFiniteInput {
        /// Row index within the batch.
        row: usize,
        /// Feature name.
        feature: String,
        /// The offending value.
        value: f32,
    },

    /// A baseline value for explanations that is NaN or infinite.
    #[error("baseline value for feature {feature} is not finite ({value})")]
    NonFiniteBaseline {
        /// Feature name.
        feature: String,
        /// The offending value.
        value: f32,
    },

    /// Training data that cannot be trained on.
    #[error("invalid training data: {0}")]
    InvalidDataset(String),

    /// Training options out of range.
    #[error("invalid training option {option}: {reason}")]
    InvalidOptions {
        /// The option's field name in `TrainOptions`.
        option: &'static str,
        /// What is wrong and the accepted range.
        reason: String,
    },

    /// A tensor operation failed; with validated inputs this points at the device or a bug.
    #[error("tensor operation failed while {context}: {source}")]
    Tensor {
        /// What the crate was doing.
        context: &'static str,
        /// The candle error.
        source: candle_core::Error,
    },
}

/// Attaches what the crate was doing to a candle error.
pub(crate) trait TensorContext<T> {
    fn during(self, context: &'static str) -> Result<T, ModelError>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn during(self, context: &'static str) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Tensor { context, source })
    }
}
