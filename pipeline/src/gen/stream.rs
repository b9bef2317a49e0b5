//! The event stream: benign traffic merged with episodes in time order.
//!
//! Benign events come from [`SortedTimes`] already in time order. Episode events are
//! generated when their episode starts and wait in a priority queue; an episode is
//! expanded before any event later than its start is emitted, so the merged stream is in
//! time order. At equal times benign events go first, then episode events in the order
//! they were generated, so ties are broken the same way on every run. The queue only
//! holds events of episodes in progress (at most a few hours long), so memory does not
//! grow with the number of events.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::benign::{self, AccountState, Draft};
use super::catalog;
use super::clock::{DailyCycle, SortedTimes};
use super::entities::World;
use super::fraud::{self, Episode, Schedule, BURST_SHARE};
use super::{FraudPattern, GenRng, LabeledEvent, PatternCounts};

/// An episode event waiting for its time.
struct Pending {
    draft: Draft,
    pattern: FraudPattern,
    /// Generation order: breaks ties between equal times deterministically.
    seq: u64,
}

impl Pending {
    fn key(&self) -> (i64, u64) {
        (self.draft.ts_ms, self.seq)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// All generated events in time order, with labels; see [`super::Generator::events`].
///
/// Yields exactly the planned number of events of each pattern, then `None`.
pub struct EventStream {
    world: Arc<World>,
    cycle: DailyCycle,
    state: AccountState,
    benign_rng: GenRng,
    fraud_rng: GenRng,
    times: SortedTimes,
    next_benign: Option<i64>,
    schedules: Vec<Schedule>,
    queue: BinaryHeap<Pending>,
    scratch: Vec<Draft>,
    seq: u64,
    emitted: u64,
    total: u64,
}

impl EventStream {
    pub(crate) fn new(
        world: Arc<World>,
        plan: PatternCounts,
        start_ms: i64,
        span_ms: i64,
        mut benign_rng: GenRng,
        mut fraud_rng: GenRng,
    ) -> EventStream {
        let cycle = DailyCycle::new();
        let bursts = (plan.none as f64 * BURST_SHARE) as u64;
        let mut times = SortedTimes::new(&cycle, plan.none - bursts, start_ms, start_ms + span_ms);
        let next_benign = times.next(&cycle, &mut benign_rng);
        let schedules = Episode::ALL
            .iter()
            .map(|&kind| {
                let budget = match kind.pattern() {
                    FraudPattern::None => bursts,
                    pattern => plan.get(pattern),
                };
                Schedule::new(
                    kind,
                    budget,
                    start_ms,
                    span_ms,
                    &cycle,
                    &world,
                    &mut fraud_rng,
                )
            })
            .collect();
        EventStream {
            state: AccountState::new(&world),
            world,
            cycle,
            benign_rng,
            fraud_rng,
            times,
            next_benign,
            schedules,
            queue: BinaryHeap::new(),
            scratch: Vec::new(),
            seq: 0,
            emitted: 0,
            total: plan.total(),
        }
    }

    /// Events not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.total - self.emitted
    }

    /// Expands every episode that starts no later than the earliest event ready to go.
    fn expand_due_episodes(&mut self) {
        loop {
            let ready = match (self.next_benign, self.queue.peek()) {
                (Some(b), Some(q)) => Some(b.min(q.draft.ts_ms)),
                (b, q) => b.or(q.map(|q| q.draft.ts_ms)),
            };
            let due = self
                .schedules
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.next_start().map(|start| (start, i)))
                .min();
            let Some((start, i)) = due else { return };
            if ready.is_some_and(|r| start > r) {
                return;
            }
            let schedule = &mut self.schedules[i];
            let kind = schedule.kind;
            let Some(episode) = schedule.take(&self.cycle, &self.world, &mut self.fraud_rng) else {
                return;
            };
            fraud::expand(
                kind,
                episode,
                &self.world,
                &mut self.state,
                &mut self.fraud_rng,
                &mut self.scratch,
            );
            for draft in self.scratch.drain(..) {
                self.queue.push(Pending {
                    draft,
                    pattern: kind.pattern(),
                    seq: self.seq,
                });
                self.seq += 1;
            }
        }
    }
}

impl Iterator for EventStream {
    type Item = LabeledEvent;

    fn next(&mut self) -> Option<LabeledEvent> {
        self.expand_due_episodes();
        let queued = self.queue.peek().map(|p| p.draft.ts_ms);
        let take_queued = match (self.next_benign, queued) {
            (Some(b), Some(q)) => q < b,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let (draft, pattern) = if take_queued {
            let pending = self.queue.pop()?;
            (pending.draft, pending.pattern)
        } else {
            let ts_ms = self.next_benign?;
            let account = self.world.pick_active(&mut self.benign_rng);
            let draft = benign::event(
                &self.world,
                &mut self.state,
                account,
                ts_ms,
                &mut self.benign_rng,
            );
            self.next_benign = self.times.next(&self.cycle, &mut self.benign_rng);
            (draft, FraudPattern::None)
        };
        let event = draft.into_event(catalog::event_id(self.emitted));
        self.emitted += 1;
        Some(LabeledEvent {
            event,
            fraud: pattern.is_fraud(),
            pattern,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_events_pop_earliest_first_then_in_generation_order() {
        let draft = |ts_ms| Draft {
            ts_ms,
            account: 0,
            counterparty: None,
            merchant: None,
            device: None,
            ip: None,
            amount: 1.0,
            channel: catalog::CARD,
            country: 0,
            currency: "EUR",
        };
        let mut queue = BinaryHeap::new();
        for (seq, ts) in [(0, 50), (1, 10), (2, 50), (3, 10)] {
            queue.push(Pending {
                draft: draft(ts),
                pattern: FraudPattern::Ring,
                seq,
            });
        }
        let order: Vec<(i64, u64)> = std::iter::from_fn(|| queue.pop().map(|p| p.key())).collect();
        assert_eq!(order, vec![(10, 1), (10, 3), (50, 0), (50, 2)]);
    }

    #[test]
    fn waiting_episode_events_stay_few_however_long_the_stream() {
        let generator = super::super::Generator::new(super::super::GenOptions {
            events: 300_000,
            accounts: 2_000,
            fraud_rate: 0.2,
            ..Default::default()
        })
        .unwrap();
        let mut stream = generator.events();
        let mut most_waiting = 0;
        let mut yielded = 0;
        while stream.next().is_some() {
            most_waiting = most_waiting.max(stream.queue.len());
            yielded += 1;
        }
        assert_eq!(yielded, 300_000);
        // Only episodes in progress wait: a few dozen events, not a share of the stream.
        assert!(most_waiting < 200, "{most_waiting} events waited at once");
    }
}
