//! Event-time alignment of several partitions: the merge the Kafka source is to hand the
//! job its records through, so that a backlog read from several partitions is processed in
//! event-time order, as replay merges partitions.
//!
//! Each assigned partition has a lane: the records read from it but not yet handed out, in
//! partition order. [`Aligner::pop`] hands out the smallest head by (timestamp, partition,
//! offset), but only once no other lane could still bring a smaller one: a lane that is
//! empty in memory holds the merge back while its partition has data on the broker, unless
//! it is at its high watermark ([`Aligner::at_end`]) or has been empty for the idle timeout.
//! Records within one lane always leave in the order they came, so nothing is reordered
//! within a partition; the merge only chooses which partition goes next.
//!
//! The skew tolerance lets a head go out without waiting for a lane that ran dry in memory
//! when the head is at most `skew` ahead of the newest timestamp that lane handed out.
//! Zero (the default) makes the order a function of the data alone; any tolerance above
//! zero trades that for less waiting, since whether a lane is dry at a given moment
//! depends on fetch timing. `None` turns alignment off: records go out in arrival order.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One partition's records read but not yet handed out.
#[derive(Debug)]
struct Lane<T> {
    records: VecDeque<(i64, i64, T)>,
    /// The partition was read up to its high watermark: nothing more on the broker.
    at_end: bool,
    /// When the lane last became empty (or was assigned empty).
    empty_since: Option<Instant>,
    /// The newest timestamp this lane handed out, for the skew tolerance.
    last_out: Option<i64>,
}

impl<T> Lane<T> {
    fn new(now: Instant) -> Self {
        Lane {
            records: VecDeque::new(),
            at_end: false,
            empty_since: Some(now),
            last_out: None,
        }
    }
}

/// Why [`Aligner::pop`] handed nothing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting<K> {
    /// No lane holds a record.
    Empty,
    /// The smallest head waits for this lane, empty in memory but not at its end.
    For(K),
}

/// The merge over the lanes of the assigned partitions, keyed by `K` (topic and partition;
/// its order breaks timestamp ties).
#[derive(Debug)]
pub struct Aligner<K, T> {
    lanes: BTreeMap<K, Lane<T>>,
    skew_ms: Option<i64>,
    idle_timeout: Duration,
    /// Arrival order of the lanes' records when alignment is off.
    arrivals: VecDeque<K>,
}

impl<K: Ord + Clone, T> Aligner<K, T> {
    /// `skew`: how far ahead of a dry lane's newest timestamp a head may go out without
    /// waiting for it (`None`: alignment off). `idle_timeout`: how long a lane may stay
    /// empty before it no longer holds the others back.
    pub fn new(skew: Option<Duration>, idle_timeout: Duration) -> Self {
        Aligner {
            lanes: BTreeMap::new(),
            skew_ms: skew.map(|s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)),
            idle_timeout,
            arrivals: VecDeque::new(),
        }
    }

    /// A partition was assigned: until it brings data, reaches its end or idles, it holds
    /// the others back.
    pub fn assign(&mut self, key: K, now: Instant) {
        self.lanes.entry(key).or_insert_with(|| Lane::new(now));
    }

    /// A partition was revoked: its unhanded records are dropped (its next owner reads them
    /// again from the committed offset) and it no longer holds the others back.
    pub fn revoke(&mut self, key: &K) {
        self.lanes.remove(key);
        self.arrivals.retain(|k| k != key);
    }

    /// A record read from `key`'s partition, in partition order. A missing timestamp should
    /// be passed as the lane's previous one (or `i64::MIN`), so that it neither waits nor
    /// holds others back.
    pub fn push(&mut self, key: K, timestamp: i64, offset: i64, record: T, now: Instant) {
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| Lane::new(now));
        lane.records.push_back((timestamp, offset, record));
        lane.at_end = false;
        lane.empty_since = None;
        if self.skew_ms.is_none() {
            self.arrivals.push_back(key);
        }
    }

    /// `key`'s partition was read up to its high watermark: once its buffered records are
    /// out it holds nobody back, until a new record arrives for it.
    pub fn at_end(&mut self, key: &K) {
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.at_end = true;
        }
    }

    /// Records buffered for `key` (the source pauses a partition whose lane is full).
    pub fn buffered(&self, key: &K) -> usize {
        self.lanes.get(key).map_or(0, |lane| lane.records.len())
    }

    /// Where each lane stands in event time, for the metrics: its head's timestamp, or
    /// when it holds nothing the newest timestamp it handed out (`None` before its first).
    pub fn event_times(&self) -> impl Iterator<Item = (&K, Option<i64>)> {
        self.lanes.iter().map(|(k, lane)| {
            let head = lane.records.front().map(|(ts, _, _)| *ts);
            (k, head.or(lane.last_out))
        })
    }

    /// The keys of every lane, assigned or with records.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.lanes.keys()
    }

    /// The next record to hand out, with its partition key and timestamp and offset, or
    /// why there is none yet.
    pub fn pop(&mut self, now: Instant) -> Result<(K, i64, i64, T), Waiting<K>> {
        let Some(skew_ms) = self.skew_ms else {
            let key = self.arrivals.pop_front().ok_or(Waiting::Empty)?;
            return self.take(&key, now).ok_or(Waiting::Empty);
        };
        let Some((key, ts)) = self
            .lanes
            .iter()
            .filter_map(|(k, lane)| lane.records.front().map(|(ts, off, _)| ((*ts, k, *off), k)))
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|((ts, _, _), k)| (k.clone(), ts))
        else {
            return Err(Waiting::Empty);
        };
        let idle = self.idle_timeout;
        let blocker = self.lanes.iter().find(|(_, lane)| {
            lane.records.is_empty()
                && !lane.at_end
                && lane
                    .empty_since
                    .is_none_or(|since| now.saturating_duration_since(since) < idle)
                && lane
                    .last_out
                    .is_none_or(|last| ts > last.saturating_add(skew_ms) || skew_ms == 0)
        });
        if let Some((waiting_for, _)) = blocker {
            return Err(Waiting::For(waiting_for.clone()));
        }
        self.take(&key, now).ok_or(Waiting::Empty)
    }

    fn take(&mut self, key: &K, now: Instant) -> Option<(K, i64, i64, T)> {
        let lane = self.lanes.get_mut(key)?;
        let (ts, offset, record) = lane.records.pop_front()?;
        lane.last_out = Some(lane.last_out.map_or(ts, |last| last.max(ts)));
        if lane.records.is_empty() {
            lane.empty_since = Some(now);
        }
        Some((key.clone(), ts, offset, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    fn exact() -> Aligner<i32, &'static str> {
        Aligner::new(Some(Duration::ZERO), IDLE)
    }

    fn drain(a: &mut Aligner<i32, &'static str>, now: Instant) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Ok((_, _, _, r)) = a.pop(now) {
            out.push(r);
        }
        out
    }

    #[test]
    fn heads_leave_in_timestamp_then_partition_then_offset_order() {
        let now = Instant::now();
        let mut a = exact();
        a.push(1, 10, 0, "p1-10", now);
        a.push(1, 30, 1, "p1-30", now);
        a.push(0, 20, 0, "p0-20", now);
        a.push(0, 30, 1, "p0-30", now);
        a.at_end(&0);
        a.at_end(&1);
        assert_eq!(drain(&mut a, now), ["p1-10", "p0-20", "p0-30", "p1-30"]);
    }

    #[test]
    fn a_dry_partition_with_data_on_the_broker_holds_the_others_back() {
        let now = Instant::now();
        let mut a = exact();
        a.assign(0, now);
        a.push(1, 50, 0, "p1-50", now);
        assert_eq!(a.pop(now).unwrap_err(), Waiting::For(0));
        a.push(0, 40, 0, "p0-40", now);
        assert_eq!(a.pop(now).unwrap().3, "p0-40");
        // Partition 0 is dry again: partition 1's head still waits for it.
        assert_eq!(a.pop(now).unwrap_err(), Waiting::For(0));
        a.at_end(&0);
        assert_eq!(a.pop(now).unwrap().3, "p1-50");
    }

    #[test]
    fn a_partition_empty_for_the_idle_timeout_no_longer_holds_the_others_back() {
        let start = Instant::now();
        let mut a = exact();
        a.assign(2, start);
        a.push(0, 7, 0, "p0", start);
        assert!(a.pop(start + IDLE - Duration::from_millis(1)).is_err());
        assert_eq!(a.pop(start + IDLE).unwrap().3, "p0");
    }

    #[test]
    fn records_of_one_partition_keep_their_order_even_when_timestamps_go_back() {
        let now = Instant::now();
        let mut a = exact();
        a.push(0, 100, 0, "first", now);
        a.push(0, 5, 1, "second", now);
        a.push(1, 50, 0, "p1", now);
        a.at_end(&0);
        a.at_end(&1);
        assert_eq!(drain(&mut a, now), ["p1", "first", "second"]);
    }

    #[test]
    fn a_revoked_partition_loses_its_records_and_stops_holding_back() {
        let now = Instant::now();
        let mut a = exact();
        a.assign(3, now);
        a.push(0, 1, 0, "p0", now);
        a.push(1, 0, 0, "p1", now);
        a.revoke(&1);
        assert_eq!(a.buffered(&1), 0);
        assert_eq!(a.pop(now).unwrap_err(), Waiting::For(3));
        a.revoke(&3);
        assert_eq!(drain(&mut a, now), ["p0"]);
    }

    #[test]
    fn a_far_future_head_waits_without_freezing_the_other_partitions() {
        let now = Instant::now();
        let mut a = exact();
        a.push(0, i64::MAX - 1, 0, "future", now);
        a.push(1, 10, 0, "p1-a", now);
        a.push(1, 11, 1, "p1-b", now);
        assert_eq!(a.pop(now).unwrap().3, "p1-a");
        assert_eq!(a.pop(now).unwrap().3, "p1-b");
        // Partition 1 is dry but has more on the broker: the future head waits for it.
        assert_eq!(a.pop(now).unwrap_err(), Waiting::For(1));
        a.at_end(&1);
        assert_eq!(a.pop(now).unwrap().3, "future");
    }

    #[test]
    fn the_skew_tolerance_lets_a_head_close_to_a_dry_partition_go_out() {
        let now = Instant::now();
        let mut a: Aligner<i32, &str> = Aligner::new(Some(Duration::from_millis(1000)), IDLE);
        a.push(0, 1_000, 0, "p0", now);
        a.push(1, 1_500, 0, "p1-near", now);
        a.push(1, 9_000, 1, "p1-far", now);
        assert_eq!(a.pop(now).unwrap().3, "p0");
        assert_eq!(a.pop(now).unwrap().3, "p1-near");
        assert_eq!(a.pop(now).unwrap_err(), Waiting::For(0));
    }

    #[test]
    fn with_alignment_off_records_leave_in_arrival_order() {
        let now = Instant::now();
        let mut a: Aligner<i32, &str> = Aligner::new(None, IDLE);
        a.assign(2, now);
        a.push(1, 50, 0, "p1", now);
        a.push(0, 10, 0, "p0", now);
        assert_eq!(a.pop(now).unwrap().3, "p1");
        assert_eq!(a.pop(now).unwrap().3, "p0");
        assert_eq!(a.pop(now).unwrap_err(), Waiting::Empty);
    }
}
