//! Where a job is in its life, readable from outside while it runs (a readiness probe).

use std::sync::atomic::{AtomicU8, Ordering};

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
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(AtomicU8::new(JobState::Built as u8))
    }
}

impl Readiness {
    pub fn state(&self) -> JobState {
        match self.0.load(Ordering::Acquire) {
            0 => JobState::Built,
            1 => JobState::WarmingUp,
            2 => JobState::Running,
            3 => JobState::Draining,
            _ => JobState::Stopped,
        }
    }

    pub(super) fn set(&self, state: JobState) {
        self.0.store(state as u8, Ordering::Release);
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
