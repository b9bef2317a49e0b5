//! Job metrics: one place where counters live, so the progress line, the run summary and
//! the admin endpoint's `/metrics` ([`crate::observe`]) all read the same numbers. The
//! counters stay plain atomics: `/metrics` reads them when it is scraped, so counting costs
//! one relaxed add and nothing on the hot path knows about the exposition format.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::result::Decision;

/// The kinds of dead letter, in the order the summary lists them. Kept in step with
/// [`crate::decode::DecodeError::kind`] and the later stages' kinds
/// ([`crate::dead_letter::SCORING_FAILED`], [`crate::dead_letter::RESULT_UNDELIVERABLE`]).
pub const DEAD_LETTER_KINDS: [&str; 12] = [
    "oversize",
    "not_utf8",
    "not_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "empty_field",
    "non_finite_amount",
    "bad_timestamp",
    "future_timestamp",
    crate::dead_letter::SCORING_FAILED,
    crate::dead_letter::RESULT_UNDELIVERABLE,
];

/// Counters of one job run. Updated by the stages with relaxed atomics (each counter is
/// independent; readers want a recent value, not a consistent cut).
#[derive(Debug, Default)]
pub struct Metrics {
    pub inputs: AtomicU64,
    pub results: AtomicU64,
    pub dead_letters: AtomicU64,
    dead_by_kind: [AtomicU64; DEAD_LETTER_KINDS.len()],
    /// Results scored, by [`Decision::index`].
    pub decisions: [AtomicU64; 3],
    /// Results delivered by the sink, by [`Decision::index`]: what
    /// `riskstream_results_total{decision}` shows. See [`Metrics::count_delivered`].
    pub delivered: [AtomicU64; 3],
    pub late_events: AtomicU64,
    /// Keys dropped after `aggregate.idle_key_ttl` without an event, copied from the
    /// aggregator at the end of a run.
    pub keys_evicted: AtomicU64,
    pub snapshots: AtomicU64,
    pub graph_unavailable: AtomicU64,
    /// Latency percentiles of delivered results in microseconds, refreshed by the sink.
    pub latency_p50_us: AtomicU64,
    pub latency_p99_us: AtomicU64,
    /// Models swapped in while running (hot swap).
    pub model_swaps: AtomicU64,
    /// Candidate models rejected while running; the previous model kept serving.
    pub model_rejections: AtomicU64,
}

impl Metrics {
    /// Counts delivered results: the total and each decision.
    pub fn count_delivered(&self, decisions: &[Decision]) {
        let mut by_decision = [0u64; 3];
        for decision in decisions {
            by_decision[decision.index()] += 1;
        }
        for (counter, n) in self.delivered.iter().zip(by_decision) {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        self.results.fetch_add(decisions.len() as u64, Relaxed);
    }

    /// Dead letters of one kind so far; 0 for a kind not in [`DEAD_LETTER_KINDS`].
    pub fn dead_letters_of_kind(&self, kind: &str) -> u64 {
        DEAD_LETTER_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.dead_by_kind[i].load(Relaxed))
    }

    pub fn count_dead_letter(&self, kind: &str) {
        self.dead_letters.fetch_add(1, Relaxed);
        if let Some(i) = DEAD_LETTER_KINDS.iter().position(|k| *k == kind) {
            self.dead_by_kind[i].fetch_add(1, Relaxed);
        }
    }

    /// Dead letters by kind, kinds with none left out.
    pub fn dead_letters_by_kind(&self) -> Vec<(&'static str, u64)> {
        DEAD_LETTER_KINDS
            .iter()
            .zip(&self.dead_by_kind)
            .map(|(k, n)| (*k, n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decode_error_kind_has_a_dead_letter_counter() {
        use crate::decode::decode;
        let m = Metrics::default();
        for bad in [
            &b"x"[..],
            b"[]",
            b"{}",
            b"\xff",
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":"1"}"#,
        ] {
            let kind = decode(bad, 1024).unwrap_err().kind();
            assert!(DEAD_LETTER_KINDS.contains(&kind), "{kind} has no counter");
            m.count_dead_letter(kind);
        }
        let future = crate::decode::DecodeError::FutureTimestamp {
            ts: "9999-01-01T00:00:00Z".into(),
            watermark: "2026-11-22T10:00:00Z".into(),
            max_skew: "1h".into(),
        };
        assert!(DEAD_LETTER_KINDS.contains(&future.kind()));
        m.count_dead_letter(future.kind());
        // The score stage's kind, for events the model cannot score.
        let scoring = crate::dead_letter::SCORING_FAILED;
        assert!(
            DEAD_LETTER_KINDS.contains(&scoring),
            "{scoring} has no counter"
        );
        m.count_dead_letter(scoring);
        assert_eq!(m.dead_letters_of_kind(scoring), 1);
        // The sink's kind, for results the results topic refused.
        let undeliverable = crate::dead_letter::RESULT_UNDELIVERABLE;
        assert!(
            DEAD_LETTER_KINDS.contains(&undeliverable),
            "{undeliverable} has no counter"
        );
        m.count_dead_letter(undeliverable);
        assert_eq!(m.dead_letters_of_kind(undeliverable), 1);
        assert_eq!(Metrics::get(&m.dead_letters), 8);
        assert_eq!(
            m.dead_letters_by_kind().iter().map(|(_, n)| n).sum::<u64>(),
            8
        );
    }

    #[test]
    fn delivered_results_are_counted_in_total_and_by_decision() {
        let m = Metrics::default();
        m.count_delivered(&[Decision::Block, Decision::Allow, Decision::Block]);
        assert_eq!(Metrics::get(&m.results), 3);
        let delivered = m.delivered.each_ref().map(Metrics::get);
        assert_eq!(delivered, [1, 0, 2]);
    }
}
