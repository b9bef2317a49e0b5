//! The job's events, one struct each. `emit` writes the event's log line and updates its
//! counters together, so the log and `/metrics` never tell different stories.
//!
//! Levels: events that happen per input or per micro-batch log at `debug` or `trace`, so the
//! default `info` level writes nothing per event; changes of state (model, graph, partitions,
//! source) log at `info`, and those that degrade the job at `warn`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{GraphHealth, Observer, Stage};
use crate::result::Decision;

/// An event of the job: `emit` logs it and counts it.
pub trait Emit {
    fn emit(self, observer: &Observer);
}

/// A micro-batch of input records was read from the source (good and bad alike).
#[derive(Debug, Clone, Copy)]
pub struct InputRead {
    pub records: u64,
}

impl Emit for InputRead {
    fn emit(self, observer: &Observer) {
        observer.metrics().inputs.fetch_add(self.records, Relaxed);
        tracing::trace!(records = self.records, "input read");
    }
}

/// The sink delivered the results of one micro-batch. `latencies` are read → delivered,
/// one per result (may be empty when the caller does not measure them).
#[derive(Debug, Clone, Copy)]
pub struct ResultsDelivered<'a> {
    pub decisions: &'a [Decision],
    pub latencies: &'a [Duration],
}

impl Emit for ResultsDelivered<'_> {
    fn emit(self, observer: &Observer) {
        observer.metrics().count_delivered(self.decisions);
        for latency in self.latencies {
            observer.event_latency(*latency);
        }
        tracing::trace!(results = self.decisions.len(), "results delivered");
    }
}

/// One input became a dead letter. `kind` is one of
/// [`DEAD_LETTER_KINDS`](crate::metrics::DEAD_LETTER_KINDS).
#[derive(Debug, Clone, Copy)]
pub struct DeadLettered<'a> {
    pub kind: &'static str,
    pub reason: &'a str,
}

impl Emit for DeadLettered<'_> {
    fn emit(self, observer: &Observer) {
        observer.metrics().count_dead_letter(self.kind);
        tracing::debug!(
            kind = self.kind,
            reason = self.reason,
            "input dead-lettered"
        );
    }
}

/// Events of one micro-batch were older than their key's longest window ring.
#[derive(Debug, Clone, Copy)]
pub struct LateEvents {
    pub count: u64,
}

impl Emit for LateEvents {
    fn emit(self, observer: &Observer) {
        if self.count == 0 {
            return;
        }
        observer
            .metrics()
            .late_events
            .fetch_add(self.count, Relaxed);
        tracing::debug!(count = self.count, "late events");
    }
}

/// Events of one micro-batch were scored without graph features.
#[derive(Debug, Clone, Copy)]
pub struct GraphUnavailable {
    pub events: u64,
}

impl Emit for GraphUnavailable {
    fn emit(self, observer: &Observer) {
        if self.events == 0 {
            return;
        }
        observer
            .metrics()
            .graph_unavailable
            .fetch_add(self.events, Relaxed);
        tracing::debug!(events = self.events, "events scored without graph features");
    }
}

/// A micro-batch spent `took` in `stage`.
#[derive(Debug, Clone, Copy)]
pub struct StageTimed {
    pub stage: Stage,
    pub took: Duration,
}

impl Emit for StageTimed {
    fn emit(self, observer: &Observer) {
        observer.stage_took(self.stage, self.took);
    }
}

/// An aggregate snapshot was published. [`Engine::publish`](crate::engine::Engine::publish)
/// returns it (and counts it in `Metrics::snapshots`, which the summary reads too).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPublished {
    pub id: u64,
    pub changed_keys: usize,
    pub built_in: Duration,
}

impl Emit for SnapshotPublished {
    fn emit(self, observer: &Observer) {
        let values = observer.values();
        values.snapshot_id.store(self.id, Relaxed);
        let now = u64::try_from(values.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        values.snapshot_published_ns.store(now, Relaxed);
        tracing::debug!(
            id = self.id,
            changed_keys = self.changed_keys,
            built_in_ms = self.built_in.as_secs_f64() * 1000.0,
            "snapshot published"
        );
    }
}

/// The model that scores was loaded at start.
#[derive(Debug, Clone, Copy)]
pub struct ModelLoaded<'a> {
    pub version: &'a str,
}

impl Emit for ModelLoaded<'_> {
    fn emit(self, observer: &Observer) {
        let values = observer.values();
        values
            .model_version
            .store(Some(Arc::new(self.version.to_owned())));
        values.readiness.set_model_loaded(true);
        tracing::info!(version = self.version, "model loaded");
    }
}

/// A new model was swapped in while running.
#[derive(Debug, Clone, Copy)]
pub struct ModelSwapped<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

impl Emit for ModelSwapped<'_> {
    fn emit(self, observer: &Observer) {
        let values = observer.values();
        values.metrics.model_swaps.fetch_add(1, Relaxed);
        values
            .model_version
            .store(Some(Arc::new(self.to.to_owned())));
        tracing::info!(from = self.from, to = self.to, "model swapped");
    }
}

/// A candidate model was refused; the previous one keeps scoring.
#[derive(Debug, Clone, Copy)]
pub struct ModelRejected<'a> {
    /// Where the candidate came from (its directory) or its version.
    pub candidate: &'a str,
    pub reason: &'a str,
}

impl Emit for ModelRejected<'_> {
    fn emit(self, observer: &Observer) {
        observer.metrics().model_rejections.fetch_add(1, Relaxed);
        tracing::warn!(
            candidate = self.candidate,
            reason = self.reason,
            "candidate model refused; the previous model keeps scoring"
        );
    }
}

/// The graph started or stopped answering. Emit it on changes only.
#[derive(Debug, Clone, Copy)]
pub struct GraphStatusChanged<'a> {
    pub health: GraphHealth,
    /// Why, when it stopped answering (the error, secrets already scrubbed).
    pub reason: Option<&'a str>,
}

impl Emit for GraphStatusChanged<'_> {
    fn emit(self, observer: &Observer) {
        let values = observer.values();
        let before = values.readiness.graph();
        values.readiness.set_graph(self.health);
        if before != self.health {
            values.graph_status_changes.fetch_add(1, Relaxed);
        }
        let reason = self.reason.unwrap_or("");
        match self.health {
            GraphHealth::Answering => {
                tracing::info!(status = self.health.as_str(), "graph answering")
            }
            GraphHealth::Degraded => tracing::warn!(
                status = self.health.as_str(),
                reason,
                "graph not answering; events are scored without graph features"
            ),
            GraphHealth::Unavailable | GraphHealth::Unknown => {
                tracing::warn!(status = self.health.as_str(), reason, "graph not answering")
            }
        }
    }
}

/// The graph cache was warmed up before the stream started.
#[derive(Debug, Clone, Copy)]
pub struct CacheWarmedUp {
    pub entries: u64,
    pub took: Duration,
}

impl Emit for CacheWarmedUp {
    fn emit(self, observer: &Observer) {
        observer.values().cache_warmed.store(self.entries, Relaxed);
        // The warm-up itself logs its outcome at info.
        tracing::debug!(
            entries = self.entries,
            took_ms = self.took.as_secs_f64() * 1000.0,
            "graph cache warmed up"
        );
    }
}

/// Whether partitions were assigned to or revoked from this consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceChange {
    Assigned,
    Revoked,
}

/// The consumer group rebalanced.
#[derive(Debug, Clone, Copy)]
pub struct Rebalanced<'a> {
    pub change: RebalanceChange,
    /// The partitions that changed, for the log (`events/0, events/3`).
    pub partitions: &'a str,
    /// Partitions assigned to this consumer after the change.
    pub assigned_now: usize,
}

impl Emit for Rebalanced<'_> {
    fn emit(self, observer: &Observer) {
        let values = observer.values();
        values.rebalances.fetch_add(1, Relaxed);
        values
            .readiness
            .set_partitions_assigned(self.assigned_now > 0);
        match self.change {
            RebalanceChange::Assigned => tracing::info!(
                partitions = self.partitions,
                assigned_now = self.assigned_now,
                "partitions assigned"
            ),
            RebalanceChange::Revoked => tracing::info!(
                partitions = self.partitions,
                assigned_now = self.assigned_now,
                "partitions revoked"
            ),
        }
    }
}

/// The source stopped giving input although partitions are assigned and not drained, or
/// started again. Emit it on changes only.
#[derive(Debug, Clone, Copy)]
pub struct SourceStalled {
    pub stalled: bool,
    /// How long nothing was read.
    pub idle: Duration,
}

impl Emit for SourceStalled {
    fn emit(self, observer: &Observer) {
        observer.readiness().set_source_stalled(self.stalled);
        if self.stalled {
            tracing::warn!(idle_s = self.idle.as_secs_f64(), "source stalled");
        } else {
            tracing::info!("source reading again");
        }
    }
}
