//! The riskstream scoring model.
//!
//! A small multi-layer perceptron (candle) that turns a row of named `f32` features into a
//! fraud score in `[0, 1]`. This crate knows nothing about events, Kafka or graphs: callers
//! assemble feature rows in the order of [`Model::feature_names`] and get scores back.
//!
//! A model lives in a directory holding two files:
//!
//! * `model.safetensors` — the layer weights (`layers.{i}.weight` `[out, in]`,
//!   `layers.{i}.bias` `[out]`, F32);
//! * `metadata.json` — [`ModelMetadata`]: version, feature names, normalisation constants,
//!   hidden sizes, decision thresholds, training metrics and history, and the model's
//!   [`Canary`]: feature rows with the scores expected for them.
//!
//! [`Model::load`] refuses a model whose canary rows do not score as expected (within
//! [`CANARY_TOLERANCE`]) or score degenerately (all alike, only 0 and 1, not finite), and a
//! model without a canary: a finite but absurd constant in the metadata or the weights
//! passes every other check and can make a model allow everything.
//!
//! ```no_run
//! use std::path::Path;
//! use riskstream_inference::{DeviceChoice, Model};
//!
//! # fn main() -> Result<(), riskstream_inference::ModelError> {
//! let model = Model::load(Path::new("models/riskstream-v1"), DeviceChoice::Cpu)?;
//! let rows = vec![0.0f32; 2 * model.n_features()];
//! let scores = model.score(&rows, 2)?;
//! let why = model.contributions(&rows[..model.n_features()], model.baseline())?;
//! # let _ = (scores, why);
//! # Ok(()) }
//! ```
//!
//! [`train`] fits a model on a [`Dataset`], chooses thresholds on a held-out split and
//! reports [`Metrics`]; it is reproducible bit for bit from its seed.
//!
//! # Two implementations of the forward pass
//!
//! [`Model::score`] and [`Model::contributions`] run the network in plain Rust when the model
//! is on the CPU ([`Backend::Plain`]: one thread, the caller's; register-blocked AVX kernels
//! with fused multiply-add where the CPU has both) and in candle when it is on a GPU
//! ([`Backend::Candle`]). [`Model::score_with`] picks one explicitly;
//! [`Model::score_on_threads`] splits a large batch (1 024 rows or more) across threads.
//! `cargo bench -p riskstream-inference --bench scoring` measures them in the same run
//! (figures in `docs/performance.md`).
//!
//! # Threads: set `RAYON_NUM_THREADS`
//!
//! candle's CPU backend (training, and [`Backend::Candle`] on the CPU) asks for its thread
//! count on every matrix multiplication. When `RAYON_NUM_THREADS` is unset it answers by
//! parsing `/proc/cpuinfo` each time (tens of microseconds per layer) and then uses every
//! *physical* core of the host, ignoring CPU quotas, which oversubscribes a container badly.
//! A process embedding this crate should set `RAYON_NUM_THREADS` (1 or 2 is plenty for this
//! model) before it starts any thread. The plain backend never uses a thread pool: it scores
//! on the calling thread, and [`Model::score_on_threads`] starts its helper threads for the
//! one call.
//!
//! # Determinism
//!
//! With the plain backend a row's score is bit-identical across runs, batch sizes, worker
//! and thread counts and machines: every row goes through the same sequence of f32
//! operations (fused multiply-adds in a fixed order; a CPU without the instruction computes
//! the same bits in software, slowly). The same training run gives bit-identical
//! weights regardless of the thread count (candle's CPU matmul parallelises over output
//! blocks, not within dot products); candle's CPU scores can change in the last bits with
//! the batch size, and CPU and CUDA agree within 1e-4.

mod canary;
mod device;
mod dropout;
mod error;
mod metadata;
mod metrics;
mod model;
mod plain;
mod train;
mod weights;

pub use canary::{
    Canary, CanaryRow, CANARY_ROWS_PER_LABEL, CANARY_TOLERANCE, MAX_CANARY_ROWS, MIN_CANARY_ROWS,
    MIN_CANARY_SPREAD,
};
pub use device::{DeviceChoice, UnknownDevice};
pub use dropout::FeatureDropout;
pub use error::ModelError;
pub use metadata::{
    ModelMetadata, Thresholds, TrainingInfo, FORMAT_VERSION, METADATA_FILE, STD_FLOOR, WEIGHTS_FILE,
};
pub use metrics::{
    at_precision_by_group, choose_thresholds, evaluate, evaluate_by_group, recall_at_precision,
    AtPrecision, GroupAtPrecision, Metrics, PrecisionRecall, ThresholdChoice,
};
pub use model::{Backend, Model};
pub use train::{train, Dataset, TrainOptions, TrainReport};
