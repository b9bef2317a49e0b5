//! Where a job is in its life, readable from outside while it runs (a readiness probe).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::observe::Observer;

/// The phases of a job, in the order it goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobState {
    /// Built (source open, model loaded and checked, sinks open), not yet running.
    Built,
    /// Filling the graph cache before the first event (`graph.cache_warm_up`).
    WarmingUp,
    /// Reading and processing events.
    Running,
    /// No more input is read (end of input, `max_events`, shutdown or an error); what was
    /// read is being finished and delivered.
    Draining,
    /// The run has returned.
    Stopped,
}

/// The job's current [`JobState`]; written by the job, read by anyone without locks.
/// Each change is also told to the job's observer, whose `/readyz` answers 200 only while
/// the job is [`JobState::Running`].
#[derive(Debug)]
pub struct Readiness {
    state: AtomicU8,
    observer: Option<Arc<Observer>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            state: AtomicU8::new(JobState::Built as u8),
            observer: None,
        }
    }
}

impl Readiness {
    /// Built, and telling `observer` whether the job is running.
    pub(super) fn observed(observer: Arc<Observer>) -> Readiness {
        observer.readiness().set_running(false);
        Readiness {
            observer: Some(observer),
            ..Readiness::default()
        }
    }

    pub fn state(&self) -> JobState {
        match self.state.load(Ordering::Acquire) {
            0 => JobState::Built,
            1 => JobState::WarmingUp,
            2 => JobState::Running,
            3 => JobState::Draining,
            _ => JobState::Stopped,
        }
    }

    pub(super) fn set(&self, state: JobState) {
        self.state.store(state as u8, Ordering::Release);
        if let Some(observer) = &self.observer {
            observer.readiness().set_running(state == JobState::Running);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_written() {
        let readiness = Readiness::default();
        assert_eq!(readiness.state(), JobState::Built);
        for state in [
            JobState::WarmingUp,
            JobState::Running,
            JobState::Draining,
            JobState::Stopped,
        ] {
            readiness.set(state);
            assert_eq!(readiness.state(), state);
        }
    }
}
