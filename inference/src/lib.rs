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
//!   hidden sizes, decision thresholds, training metrics and history.
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
//! # Threads: set `RAYON_NUM_THREADS`
//!
//! candle's CPU backend asks for its thread count on every matrix multiplication. When
//! `RAYON_NUM_THREADS` is unset it answers by parsing `/proc/cpuinfo` each time (tens of
//! microseconds per layer) and then uses every *physical* core of the host, ignoring CPU
//! quotas, which oversubscribes a container badly. A process embedding this crate should set
//! `RAYON_NUM_THREADS` (1 or 2 is plenty for this model) before it starts any thread.
//! Measured on a shared 2-core machine, hidden `[32, 16]`, 30 features:
//!
//! | `RAYON_NUM_THREADS` | batch 1 | batch 512 | batch 4096 | training, 300k rows × 15 epochs |
//! |---|---|---|---|---|
//! | unset | 58 µs | 4.7 M rows/s | 0.4 M rows/s | 5.1 s |
//! | 1 | 2.8 µs | 13.6 M rows/s | 12.9 M rows/s | 3.3 s |
//! | 2 | 2.8 µs | 12.3 M rows/s | 12.3 M rows/s | 2.7 s |
//!
//! # Determinism
//!
//! On one machine, the same input gives bit-identical scores and the same training run gives
//! bit-identical weights regardless of the thread count (candle's CPU matmul parallelises
//! over output blocks, not within dot products). Different CPUs may pick different SIMD
//! kernels and differ in the last bits.

mod device;
mod error;
mod metadata;
mod metrics;
mod model;
mod train;
mod weights;

pub use device::{DeviceChoice, UnknownDevice};
pub use error::ModelError;
pub use metadata::{
    ModelMetadata, Thresholds, TrainingInfo, FORMAT_VERSION, METADATA_FILE, STD_FLOOR, WEIGHTS_FILE,
};
pub use metrics::{
    choose_thresholds, evaluate, evaluate_by_group, recall_at_precision, Metrics, PrecisionRecall,
    ThresholdChoice,
};
pub use model::Model;
pub use train::{train, Dataset, TrainOptions, TrainReport};
