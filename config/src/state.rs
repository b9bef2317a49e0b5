//! `[state]`: durable window state, checkpointed to a local directory.

use std::time::Duration;

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{Report, Section};

/// `[state]`: where and how often the aggregate state is checkpointed.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Directory the job keeps its checkpoints in (created if missing); `""` keeps the
    /// window state in memory only, so that a restarted job starts with every key unknown.
    /// With a directory, each checkpoint holds the whole aggregate state and the input
    /// position of the same batch boundary; the job restores the newest complete one at
    /// start and reads its input from that position (`riskstream run --fresh-state`
    /// removes them and starts empty instead). The last two checkpoints are kept.
    pub dir: String,
    /// Time between two checkpoints; longer than zero. A checkpoint is written off the
    /// hot path, and counts as complete (and, with Kafka, lets the group's offsets move
    /// up to it) once every result up to its position is delivered.
    pub checkpoint_interval: Duration,
}

/// Off: a job keeps no files unless asked to.
pub(crate) fn default_dir() -> String {
    String::new()
}

/// 10 seconds: a restart redoes at most about this much input, and a full checkpoint's
/// cost is spread over it.
pub(crate) fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_dir(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

impl StateConfig {
    pub(crate) fn read(mut s: Section<'_>) -> StateConfig {
        let config = StateConfig {
            dir: s.string("dir", default_dir()),
            checkpoint_interval: s.duration("checkpoint_interval", default_checkpoint_interval()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("state");
        section.set("dir", self.dir.clone());
        section.set(
            "checkpoint_interval",
            format_duration(self.checkpoint_interval),
        );
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require_positive(
            self.checkpoint_interval,
            "state.checkpoint_interval",
            default_checkpoint_interval(),
        );
    }
}
