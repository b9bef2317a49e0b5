//! Whether a Kafka source is stalled: records wait behind its assigned partitions (consumer
//! lag above 0) and yet nothing has been read for [`STALL_AFTER`]. An idle topic is not a
//! stall. `/readyz` answers 503 while the source is stalled.

use std::time::{Duration, Instant};

/// How long input may wait unread before the source counts as stalled.
pub(super) const STALL_AFTER: Duration = Duration::from_secs(30);

/// How often the job looks.
pub(super) const STALL_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Follows the input counter and the backlog; says when the stalled state changes.
#[derive(Debug)]
pub(super) struct StallWatch {
    inputs: u64,
    progress_at: Instant,
    stalled: bool,
}

impl StallWatch {
    pub fn new(now: Instant) -> StallWatch {
        StallWatch {
            inputs: 0,
            progress_at: now,
            stalled: false,
        }
    }

    /// `inputs` read so far and `backlog` records waiting (the sum of the partitions'
    /// consumer lag) at `now`: the new state and how long nothing was read, when the
    /// state changed.
    pub fn check(&mut self, inputs: u64, backlog: i64, now: Instant) -> Option<(bool, Duration)> {
        if inputs != self.inputs || backlog <= 0 {
            self.inputs = inputs;
            self.progress_at = now;
        }
        let idle = now.saturating_duration_since(self.progress_at);
        let stalled = idle >= STALL_AFTER;
        (stalled != self.stalled).then(|| {
            self.stalled = stalled;
            (stalled, idle)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_left_unread_for_the_stall_period_is_a_stall_and_reading_again_ends_it() {
        let t0 = Instant::now();
        let mut watch = StallWatch::new(t0);
        assert_eq!(watch.check(100, 50, t0 + Duration::from_secs(5)), None);
        assert_eq!(watch.check(100, 50, t0 + Duration::from_secs(20)), None);
        let (stalled, idle) = watch.check(100, 50, t0 + Duration::from_secs(36)).unwrap();
        assert!(stalled);
        assert_eq!(idle, Duration::from_secs(31));
        assert_eq!(watch.check(100, 50, t0 + Duration::from_secs(40)), None);
        assert_eq!(
            watch.check(120, 30, t0 + Duration::from_secs(45)),
            Some((false, Duration::ZERO))
        );
    }

    #[test]
    fn an_idle_topic_with_nothing_to_read_is_never_a_stall() {
        let t0 = Instant::now();
        let mut watch = StallWatch::new(t0);
        for s in (5..600).step_by(5) {
            assert_eq!(watch.check(100, 0, t0 + Duration::from_secs(s)), None);
        }
    }
}
