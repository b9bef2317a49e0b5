//! Whether the job is ready to take traffic: the answer of `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

/// What the graph enrichment can do right now, as far as readiness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GraphHealth {
    /// Not known yet (before the first look-up or health check).
    Unknown = 0,
    /// The graph answers, or no graph is configured.
    Answering = 1,
    /// The graph does not answer and the job scores events
    /// without it: ready, degraded.
    Degraded = 2,
    /// The graph does not answer and the policy does not allow scoring without it.
    Unavailable = 3,
}

impl GraphHealth {
    fn from_bits(bits: u8) -> GraphHealth {
        match bits {
            1 => GraphHealth::Answering,
            2 => GraphHealth::Degraded,
            3 => GraphHealth::Unavailable,
            _ => GraphHealth::Unknown,
        }
    }

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphHealth::Unknown => "unknown",
            GraphHealth::Answering => "answering",
            GraphHealth::Degraded => "degraded",
            GraphHealth::Unavailable => "unavailable",
        }
    }
}

/// Why the job is not ready; its `Display` is the one line `/readyz` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error(
        "the job is not processing events (starting, warming up the graph cache, or draining)"
    )]
    NotRunning,
    #[error("model not loaded yet")]
    ModelNotLoaded,
    #[error("graph has not answered yet")]
    GraphUnknown,
    #[error("graph unavailable and this job does not score without it")]
    GraphUnavailable,
    #[error("no Kafka partitions assigned to this consumer")]
    NoPartitions,
    #[error("source stalled: no input read although partitions are assigned")]
    SourceStalled,
}

/// Readiness = the model is loaded AND the graph answers (or is degraded by policy) AND,
/// with Kafka, partitions are assigned and the source is not stalled.
///
/// A handle of atomics: the job sets each part when it changes, `/readyz` reads them, and
/// neither waits for the other.
#[derive(Debug)]
pub struct Readiness {
    uses_kafka: bool,
    /// The job is in its running phase; true from the start for an observer without a job.
    running: AtomicBool,
    model_loaded: AtomicBool,
    graph: AtomicU8,
    partitions_assigned: AtomicBool,
    source_stalled: AtomicBool,
}

impl Readiness {
    /// Nothing ready yet. With `uses_kafka`, partitions must also be assigned.
    pub fn new(uses_kafka: bool) -> Readiness {
        Readiness {
            uses_kafka,
            running: AtomicBool::new(true),
            model_loaded: AtomicBool::new(false),
            graph: AtomicU8::new(GraphHealth::Unknown as u8),
            partitions_assigned: AtomicBool::new(false),
            source_stalled: AtomicBool::new(false),
        }
    }

    /// Whether the job is reading and processing events (a job sets this as it goes
    /// through its phases: not before the graph cache is warm, not while draining).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Relaxed);
    }

    pub fn set_model_loaded(&self, loaded: bool) {
        self.model_loaded.store(loaded, Relaxed);
    }

    pub fn set_graph(&self, health: GraphHealth) {
        self.graph.store(health as u8, Relaxed);
    }

    /// The graph's health as last set.
    pub fn graph(&self) -> GraphHealth {
        GraphHealth::from_bits(self.graph.load(Relaxed))
    }

    pub fn set_partitions_assigned(&self, assigned: bool) {
        self.partitions_assigned.store(assigned, Relaxed);
    }

    pub fn set_source_stalled(&self, stalled: bool) {
        self.source_stalled.store(stalled, Relaxed);
    }

    /// `Ok` when ready, else the first reason it is not, in the order of the definition.
    pub fn check(&self) -> Result<(), NotReady> {
        if !self.running.load(Relaxed) {
            return Err(NotReady::NotRunning);
        }
        if !self.model_loaded.load(Relaxed) {
            return Err(NotReady::ModelNotLoaded);
        }
        match self.graph() {
            GraphHealth::Answering | GraphHealth::Degraded => {}
            GraphHealth::Unknown => return Err(NotReady::GraphUnknown),
            GraphHealth::Unavailable => return Err(NotReady::GraphUnavailable),
        }
        if self.uses_kafka {
            if !self.partitions_assigned.load(Relaxed) {
                return Err(NotReady::NoPartitions);
            }
            if self.source_stalled.load(Relaxed) {
                return Err(NotReady::SourceStalled);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_job_is_ready_once_the_model_is_loaded_and_the_graph_answers_or_is_degraded() {
        let r = Readiness::new(false);
        assert_eq!(r.check(), Err(NotReady::ModelNotLoaded));
        r.set_model_loaded(true);
        assert_eq!(r.check(), Err(NotReady::GraphUnknown));
        r.set_graph(GraphHealth::Unavailable);
        assert_eq!(r.check(), Err(NotReady::GraphUnavailable));
        r.set_graph(GraphHealth::Degraded);
        assert_eq!(r.check(), Ok(()));
        r.set_graph(GraphHealth::Answering);
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn a_kafka_job_also_needs_assigned_partitions_and_a_source_that_is_not_stalled() {
        let r = Readiness::new(true);
        r.set_model_loaded(true);
        r.set_graph(GraphHealth::Answering);
        assert_eq!(r.check(), Err(NotReady::NoPartitions));
        r.set_partitions_assigned(true);
        assert_eq!(r.check(), Ok(()));
        r.set_source_stalled(true);
        assert_eq!(r.check(), Err(NotReady::SourceStalled));
        r.set_source_stalled(false);
        r.set_partitions_assigned(false);
        assert_eq!(r.check(), Err(NotReady::NoPartitions));
    }

    #[test]
    fn a_job_that_is_not_running_is_not_ready_whatever_else_holds() {
        let r = Readiness::new(false);
        r.set_model_loaded(true);
        r.set_graph(GraphHealth::Answering);
        assert_eq!(r.check(), Ok(()));
        r.set_running(false);
        assert_eq!(r.check(), Err(NotReady::NotRunning));
        r.set_running(true);
        assert_eq!(r.check(), Ok(()));
    }
}
