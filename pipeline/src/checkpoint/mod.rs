//! Durable window state: checkpoints of the whole aggregate state with the input position
//! of the same cut, in a local state directory (`state.dir`).
//!
//! Every `state.checkpoint_interval` the aggregate stage copies the state at a snapshot
//! drain (a batch boundary: [`Aggregator::capture_state`](crate::aggregate::Aggregator::capture_state))
//! together with the next input position of every topic/partition it has read, and hands
//! the copy to the checkpoint thread ([`writer`]). That thread encodes it ([`format`]),
//! writes it under a temporary name and syncs it ([`store`]), waits until every result up
//! to the cut is delivered, and then renames it into place: a checkpoint on disk is
//! complete, or it is ignored. Only then may a Kafka consumer group commit up to it.
//!
//! At start the job restores the newest complete checkpoint into its aggregator and reads
//! its input from the checkpoint's positions, so every event after the cut is processed
//! from the same state as the first time and gets the same result; events between the cut
//! and a crash are processed again (at-least-once duplicates with the same `event_id`,
//! score and decision). A checkpoint made with other windows, keys or another state format
//! is refused, naming the configuration key; `riskstream run --fresh-state` starts empty.
//!
//! This first form writes the whole state each time: its cost grows with all keys, not
//! with the keys changed since the last checkpoint.

pub mod format;
pub mod store;
pub mod writer;

use std::path::PathBuf;

pub use format::{Checkpoint, FormatError, SourcePosition};
pub use store::{CheckpointStore, StoreError};
pub use writer::{CheckpointListener, CheckpointSender, Cut, Delivered, Written};

use crate::aggregate::RestoreError;

/// Why a job cannot start from its state directory. Each names `state.dir` and the way out.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "checkpoint `{}` (state.dir) cannot be restored: {source}; set the configuration back, \
         or start over with `riskstream run --fresh-state` (the window state is then empty)",
        path.display()
    )]
    Incompatible { path: PathBuf, source: RestoreError },
    #[error(
        "checkpoint `{}` (state.dir) was taken reading {taken}, but this job reads {reading}; \
         read the same input, use another state.dir, or start over with \
         `riskstream run --fresh-state`",
        path.display()
    )]
    OtherInput {
        path: PathBuf,
        taken: String,
        reading: String,
    },
}

/// Checks that every position of a checkpoint is on one of the topics this job reads.
pub fn check_input(
    path: &std::path::Path,
    positions: &[SourcePosition],
    topics: &[&str],
) -> Result<(), CheckpointError> {
    let foreign: Vec<&str> = positions
        .iter()
        .map(|p| p.topic.as_str())
        .filter(|t| !topics.contains(t))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let list = |names: &[&str]| {
        let mut names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        names.sort();
        names.dedup();
        names.join(", ")
    };
    Err(CheckpointError::OtherInput {
        path: path.to_path_buf(),
        taken: list(&foreign),
        reading: list(topics),
    })
}
