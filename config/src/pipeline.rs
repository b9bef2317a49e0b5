//! `[pipeline]`: micro-batching and parallelism between the stages.

use std::time::Duration;

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{whole_value, Report, Section};

/// The largest `pipeline.batch_size`: the job reserves room for a whole batch up front, in
/// every stage, so a larger value asks for gigabytes before the first event.
pub const MAX_BATCH_SIZE: usize = 1_000_000;

/// The most batches in flight between two stages (`pipeline.channel_capacity`); each can
/// hold `batch_size` events.
pub const MAX_CHANNEL_CAPACITY: usize = 1_024;

/// The most aggregation workers (`pipeline.workers`); more only add scheduling overhead,
/// since every worker scans the whole batch.
pub const MAX_WORKERS: usize = 64;

/// `[pipeline]`: how events are grouped into micro-batches and how much work runs at once.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// A batch is closed when it holds this many events...
    pub batch_size: usize,
    /// ...or when its first event has waited this long, whichever comes first.
    pub batch_timeout: Duration,
    /// Batches in flight between two stages; a full channel slows the source down.
    pub channel_capacity: usize,
    /// Aggregation workers, at most [`MAX_WORKERS`]; 0 means one per CPU (at most
    /// [`MAX_WORKERS`]).
    pub workers: usize,
}

/// 512 events: large enough to amortise graph look-ups and model calls, small enough to
/// keep per-batch latency in the low milliseconds.
pub(crate) fn default_batch_size() -> usize {
    512
}

/// 5 ms: bounds the latency a quiet stream adds while a batch fills.
pub(crate) fn default_batch_timeout() -> Duration {
    Duration::from_millis(5)
}

/// 8 batches: keeps every stage busy without queueing seconds of events.
pub(crate) fn default_channel_capacity() -> usize {
    8
}

/// 1: the aggregation runs inline on its stage's thread. The job's other stages already
/// keep the cores busy, and on 2 cores 1 worker measured faster end to end than 2
/// (about 233 k against 194 k events/s); more workers pay off on machines with spare cores.
pub(crate) fn default_workers() -> usize {
    1
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: default_batch_size(),
            batch_timeout: default_batch_timeout(),
            channel_capacity: default_channel_capacity(),
            workers: default_workers(),
        }
    }
}

impl PipelineConfig {
    /// The number of aggregation workers to start: `workers`, or the number of CPUs the
    /// process may use when `workers` is 0 (1 when that cannot be determined), never more
    /// than [`MAX_WORKERS`].
    pub fn effective_workers(&self) -> usize {
        let workers = if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        workers.min(MAX_WORKERS)
    }

    pub(crate) fn read(mut s: Section<'_>) -> PipelineConfig {
        let config = PipelineConfig {
            batch_size: s.whole("batch_size", default_batch_size()),
            batch_timeout: s.duration("batch_timeout", default_batch_timeout()),
            channel_capacity: s.whole("channel_capacity", default_channel_capacity()),
            workers: s.whole("workers", default_workers()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("pipeline");
        section.set("batch_size", whole_value(self.batch_size));
        section.set("batch_timeout", format_duration(self.batch_timeout));
        section.set("channel_capacity", whole_value(self.channel_capacity));
        section.set("workers", whole_value(self.workers));
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            (1..=MAX_BATCH_SIZE).contains(&self.batch_size),
            "pipeline.batch_size",
            &format!("between 1 and {MAX_BATCH_SIZE}"),
            self.batch_size,
            whole_value(default_batch_size()),
        );
        r.require_positive(
            self.batch_timeout,
            "pipeline.batch_timeout",
            default_batch_timeout(),
        );
        r.require(
            (1..=MAX_CHANNEL_CAPACITY).contains(&self.channel_capacity),
            "pipeline.channel_capacity",
            &format!("between 1 and {MAX_CHANNEL_CAPACITY}"),
            self.channel_capacity,
            whole_value(default_channel_capacity()),
        );
        r.require(
            self.workers <= MAX_WORKERS,
            "pipeline.workers",
            &format!("between 0 (one per CPU) and {MAX_WORKERS}"),
            self.workers,
            whole_value(default_workers()),
        );
    }
}
