//! A circuit breaker for a remote graph: after repeated failures it stops sending queries
//! for a back-off period, then lets one probe through, so that a database that is down is
//! not hammered by every micro-batch and the stream pays nothing while it waits.
//!
//! States: **closed** (queries flow; consecutive failures are counted), **open** (queries are
//! refused until the back-off ends), **probing** (one query is in flight to test the server;
//! others are refused). A successful probe closes the breaker; a failed one reopens it with
//! twice the back-off, up to a maximum.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive failed queries that open the breaker.
    pub failures_to_open: u32,
    /// The first back-off after the breaker opens.
    pub min_backoff: Duration,
    /// The longest back-off, reached by doubling after each failed probe.
    pub max_backoff: Duration,
}

impl Default for BreakerOptions {
    /// Three failures in a row: one lost query is not an outage. Half a second to ten
    /// seconds of back-off: a restarted server is used again within ten seconds of being
    /// ready, and a dead one costs one probe query every ten seconds.
    fn default() -> Self {
        BreakerOptions {
            failures_to_open: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What the breaker allows a caller to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send the query; report its outcome with [`Breaker::record`].
    Query,
    /// Send the query as the probe of an open breaker; report its outcome.
    Probe,
    /// Do not send anything: the breaker is open or a probe is already in flight.
    Refused,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, backoff: Duration },
    Probing { backoff: Duration },
}

/// The breaker's state behind a mutex that is only held for a few instructions and never
/// across an `.await`; it is taken once per micro-batch, not per event.
#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    state: Mutex<State>,
    opened: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions) -> Self {
        Breaker {
            options,
            state: Mutex::new(State::Closed { failures: 0 }),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value that is always valid, so a panic elsewhere while the
        // lock was held leaves nothing half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a query may be sent now.
    pub(crate) fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Query,
            State::Open { until, backoff } if now >= until => {
                *state = State::Probing { backoff };
                Admission::Probe
            }
            State::Open { .. } | State::Probing { .. } => Admission::Refused,
        }
    }

    /// Reports the outcome of an admitted query.
    pub(crate) fn record(&self, admission: Admission, ok: bool) {
        self.record_at(admission, ok, Instant::now());
    }

    fn record_at(&self, admission: Admission, ok: bool, now: Instant) {
        let mut state = self.lock();
        let next = match (*state, ok) {
            (State::Probing { .. } | State::Open { .. }, true) => {
                tracing::info!("graph backend answering again: circuit breaker closed");
                State::Closed { failures: 0 }
            }
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.options.failures_to_open {
                    self.open(now, self.options.min_backoff)
                } else {
                    State::Closed { failures }
                }
            }
            (State::Probing { backoff }, false) if admission == Admission::Probe => {
                let backoff = (backoff * 2).min(self.options.max_backoff);
                self.open(now, backoff)
            }
            // A query admitted before the breaker opened failed late: the breaker already
            // knows the server is failing.
            (state @ (State::Open { .. } | State::Probing { .. }), false) => state,
        };
        *state = next;
    }

    fn open(&self, now: Instant, backoff: Duration) -> State {
        self.opened.fetch_add(1, Relaxed);
        tracing::warn!(
            backoff_ms = backoff.as_millis() as u64,
            "graph backend failing: circuit breaker open, no queries until the back-off ends"
        );
        State::Open {
            until: now + backoff,
            backoff,
        }
    }

    /// How often the breaker has opened (including reopenings after failed probes).
    pub(crate) fn times_opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Whether queries are currently refused or limited to a probe.
    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerOptions {
            failures_to_open: 2,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        })
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        b.record_at(Admission::Query, false, t);
        b.record_at(Admission::Query, true, t);
        b.record_at(Admission::Query, false, t);
        assert_eq!(b.admit_at(t), Admission::Query, "a success reset the count");
        b.record_at(Admission::Query, false, t);
        assert_eq!(b.admit_at(t), Admission::Refused);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn open_breaker_lets_one_probe_through_after_the_backoff() {
        let b = breaker();
        let t = Instant::now();
        b.record_at(Admission::Query, false, t);
        b.record_at(Admission::Query, false, t);
        assert_eq!(
            b.admit_at(t + Duration::from_millis(999)),
            Admission::Refused
        );
        let later = t + Duration::from_secs(1);
        assert_eq!(b.admit_at(later), Admission::Probe);
        assert_eq!(b.admit_at(later), Admission::Refused, "one probe at a time");
        b.record_at(Admission::Probe, true, later);
        assert_eq!(b.admit_at(later), Admission::Query);
        assert!(!b.is_open());
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_maximum() {
        let b = breaker();
        let mut t = Instant::now();
        b.record_at(Admission::Query, false, t);
        b.record_at(Admission::Query, false, t);
        for expected in [2, 3, 3] {
            t += Duration::from_secs(10);
            assert_eq!(b.admit_at(t), Admission::Probe);
            b.record_at(Admission::Probe, false, t);
            let secs = Duration::from_secs(expected);
            assert_eq!(
                b.admit_at(t + secs - Duration::from_millis(1)),
                Admission::Refused
            );
            assert_eq!(b.admit_at(t + secs), Admission::Probe);
            // Put it back to open for the next round.
            b.record_at(Admission::Probe, false, t);
        }
    }

    #[test]
    fn late_failure_of_an_old_query_does_not_extend_an_open_breaker() {
        let b = breaker();
        let t = Instant::now();
        b.record_at(Admission::Query, false, t);
        b.record_at(Admission::Query, false, t);
        b.record_at(Admission::Query, false, t + Duration::from_millis(900));
        assert_eq!(b.admit_at(t + Duration::from_secs(1)), Admission::Probe);
    }
}
