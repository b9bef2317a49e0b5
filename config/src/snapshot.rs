//! `[snapshot]`: how often the aggregate state is published as an immutable snapshot.

use std::time::Duration;

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{Report, Section};

/// `[snapshot]`: the snapshot schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotConfig {
    /// Time between two published snapshots; longer than zero.
    pub interval: Duration,
}

/// 2 seconds: population baselines move slowly, and a snapshot's cost is then spread over
/// thousands of events.
pub(crate) fn default_interval() -> Duration {
    Duration::from_secs(2)
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            interval: default_interval(),
        }
    }
}

impl SnapshotConfig {
    pub(crate) fn read(mut s: Section<'_>) -> SnapshotConfig {
        let config = SnapshotConfig {
            interval: s.duration("interval", default_interval()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("snapshot");
        section.set("interval", format_duration(self.interval));
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require_positive(self.interval, "snapshot.interval", default_interval());
    }
}
