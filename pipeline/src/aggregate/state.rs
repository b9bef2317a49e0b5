//! The whole live aggregate state in a serialisable form, for checkpoints: every key's
//! packed rings, the per-batch state (watermark, global amount baseline, merchant baseline
//! cuts) and the configuration it is only valid with.
//!
//! [`Aggregator::capture_state`](super::Aggregator::capture_state) copies it at a batch
//! boundary; [`Aggregator::restore_state`](super::Aggregator::restore_state) loads it into
//! a new aggregator before its first batch, which then gives every later event exactly
//! the aggregates the original aggregator would have given it.
//!
//! # Layout of a key's words
//!
//! Each key is stored as the words of its packed state (see `window.rs`), in order: first
//! seen (ms, `i64`), last seen (ms, `i64`), EW amount mean (`f64` bits), EW amount variance
//! (`f64` bits), the last country (low 16 bits), then for each window its 8 bucket sums
//! (`f64` bits, ring slot order: slot = bucket number mod 8), then for each window its
//! 8 bucket counts as `u32` two to a word (low half first), then the 6 distinct-ring
//! counterparty bitmaps. Ring slots follow from absolute bucket numbers of event time, and
//! counterparty bits from a fixed hash, so the words mean the same in every process with
//! the same [`StateLayout`]. A change of this layout must change
//! [`StateLayout::WORDS_FORMAT`].

use std::time::Duration;

use riskstream_graph::EntityKind;
use serde::{Deserialize, Serialize};

/// What a state's words and cuts are only valid with: the configuration that fixes the
/// ring geometry and the baseline epochs. A checkpoint with another layout is refused,
/// naming the key that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateLayout {
    /// [`StateLayout::WORDS_FORMAT`] of the writer.
    pub words_format: u32,
    /// `aggregate.keys`, in configuration order.
    pub kinds: Vec<EntityKind>,
    /// `aggregate.windows`, in ms.
    pub windows_ms: Vec<u64>,
    /// `aggregate.distinct_window`, in ms.
    pub distinct_window_ms: u64,
    /// The EW amount weight, as `f64` bits (compared exactly).
    pub amount_ew_alpha_bits: u64,
    /// `snapshot.interval` as the merchant baselines' cut interval, in ms.
    pub baseline_interval_ms: u64,
    /// Words per key.
    pub words_per_key: u32,
}

/// One configuration key whose value differs between a checkpoint and this job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutMismatch {
    /// The configuration key, e.g. `aggregate.windows`.
    pub key: &'static str,
    /// Its value in the checkpoint.
    pub checkpoint: String,
    /// Its value now.
    pub configured: String,
}

impl StateLayout {
    /// Version of the per-key word layout described in the module docs.
    pub const WORDS_FORMAT: u32 = 1;

    /// The first configuration key (in the order a user would check them) whose value
    /// differs from `configured`, or `None` when a state of this layout can be restored
    /// into an aggregator of the other.
    pub fn mismatch(&self, configured: &StateLayout) -> Option<LayoutMismatch> {
        let ms = |values: &[u64]| {
            let shown: Vec<String> = values
                .iter()
                .map(|ms| riskstream_config::format_duration(Duration::from_millis(*ms)))
                .collect();
            format!("[{}]", shown.join(", "))
        };
        let checks: [(&'static str, bool, String, String); 6] = [
            (
                "aggregate.keys",
                self.kinds == configured.kinds,
                format!("{:?}", names(&self.kinds)),
                format!("{:?}", names(&configured.kinds)),
            ),
            (
                "aggregate.windows",
                self.windows_ms == configured.windows_ms,
                ms(&self.windows_ms),
                ms(&configured.windows_ms),
            ),
            (
                "aggregate.distinct_window",
                self.distinct_window_ms == configured.distinct_window_ms,
                ms(&[self.distinct_window_ms]),
                ms(&[configured.distinct_window_ms]),
            ),
            (
                "snapshot.interval",
                self.baseline_interval_ms == configured.baseline_interval_ms,
                ms(&[self.baseline_interval_ms]),
                ms(&[configured.baseline_interval_ms]),
            ),
            (
                "aggregate.amount_ew_alpha",
                self.amount_ew_alpha_bits == configured.amount_ew_alpha_bits,
                f64::from_bits(self.amount_ew_alpha_bits).to_string(),
                f64::from_bits(configured.amount_ew_alpha_bits).to_string(),
            ),
            (
                "the state format (a different riskstream version)",
                self.words_format == configured.words_format
                    && self.words_per_key == configured.words_per_key,
                format!("{}/{}", self.words_format, self.words_per_key),
                format!("{}/{}", configured.words_format, configured.words_per_key),
            ),
        ];
        checks
            .into_iter()
            .find(|(_, same, _, _)| !same)
            .map(|(key, _, checkpoint, configured)| LayoutMismatch {
                key,
                checkpoint,
                configured,
            })
    }
}

fn names(kinds: &[EntityKind]) -> Vec<&'static str> {
    kinds.iter().map(|kind| kind.as_str()).collect()
}

/// Every key of one kind: ids back to back in one string (`id_lens` cut it), and
/// `words_per_key` words per key in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindState {
    pub kind: EntityKind,
    pub ids: String,
    pub id_lens: Vec<u32>,
    pub words: Vec<u64>,
}

impl KindState {
    /// Keys held.
    pub fn len(&self) -> usize {
        self.id_lens.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.id_lens.is_empty()
    }
}

/// One merchant's baseline cut (see `cut_merchant_baselines`): the interval it was cut
/// for, what events of that interval see, and the baseline after its newest event; each
/// baseline as (mean, std).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MerchantCut {
    pub id: String,
    pub epoch: i64,
    pub cut: Option<(f64, f64)>,
    pub latest: Option<(f64, f64)>,
}

/// The whole aggregate state at one batch boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateState {
    pub layout: StateLayout,
    /// The newest event time applied (`i64::MIN` before the first): idle keys are measured
    /// against it, and it is the far-future bound's watermark after a restore.
    pub watermark_ms: i64,
    /// The global amount baseline: EW mean, EW variance, events seen.
    pub global_mean: f64,
    pub global_var: f64,
    pub global_events: u64,
    /// One entry per configured kind, in configuration order.
    pub kinds: Vec<KindState>,
    pub merchant_cuts: Vec<MerchantCut>,
}

impl AggregateState {
    /// Keys held, over all kinds.
    pub fn keys(&self) -> usize {
        self.kinds.iter().map(KindState::len).sum()
    }
}

/// Why a state cannot be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error(
        "{}: the checkpoint was written with {}, this job is configured with {}",
        .0.key, .0.checkpoint, .0.configured
    )]
    Layout(LayoutMismatch),
    #[error("the state of {kind} keys is damaged: {problem}")]
    Damaged { kind: String, problem: String },
    #[error("an aggregator can only be restored before its first batch")]
    NotFresh,
}
