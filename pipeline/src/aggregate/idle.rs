//! The queue that finds idle keys without scanning the whole map: every live key sits in
//! it once, filed under the time of its newest event as it was when the key was queued.
//!
//! A pass pops the keys filed before the cutoff (the watermark minus the idle-key TTL),
//! oldest first and at most a budget of them; the caller evicts each one that is still
//! idle and files the others again under their newer time. A key active for a long time
//! is therefore looked at about once per TTL of event time, and the work of a pass is
//! bounded by its budget whatever the number of keys.

use std::collections::BTreeMap;

use super::sharded::DirtyKey;

/// Keys filed by event time in granules of 1/64 of the TTL: a key is evicted at most that
/// much (1/64) later than its TTL allows, and the queue holds few granules.
const GRANULES_PER_TTL: i64 = 64;

#[derive(Debug)]
pub(crate) struct IdleQueue {
    granule_ms: i64,
    granules: BTreeMap<i64, Vec<DirtyKey>>,
}

impl IdleQueue {
    pub(crate) fn new(ttl_ms: i64) -> IdleQueue {
        IdleQueue {
            granule_ms: (ttl_ms / GRANULES_PER_TTL).max(1),
            granules: BTreeMap::new(),
        }
    }

    /// Keys queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.granules.values().map(Vec::len).sum()
    }

    /// Files a key under its newest event time.
    pub(crate) fn push(&mut self, key: DirtyKey, last_seen_ms: i64) {
        let granule = last_seen_ms.div_euclid(self.granule_ms);
        self.granules.entry(granule).or_default().push(key);
    }

    /// Pops up to `budget` keys filed wholly before `cutoff_ms`, oldest granule first, and
    /// hands each to `visit`, which evicts it (returns `None`) or returns its current newest
    /// time to file it again. Returns how many keys were visited.
    pub(crate) fn pop_due(
        &mut self,
        cutoff_ms: i64,
        budget: usize,
        mut visit: impl FnMut(&DirtyKey) -> Option<i64>,
    ) -> usize {
        let mut visited = 0;
        let mut again = Vec::new();
        while visited < budget {
            let Some(mut entry) = self.granules.first_entry() else {
                break;
            };
            let end_ms = entry
                .key()
                .saturating_add(1)
                .saturating_mul(self.granule_ms);
            if end_ms > cutoff_ms {
                break;
            }
            let keys = entry.get_mut();
            while visited < budget {
                let Some(key) = keys.pop() else {
                    break;
                };
                visited += 1;
                if let Some(last_seen_ms) = visit(&key) {
                    again.push((key, last_seen_ms));
                }
            }
            if keys.is_empty() {
                entry.remove();
            }
        }
        // Filed again only after the pass: a key still active is newer than the cutoff, so
        // it lands in a granule this pass does not reach.
        for (key, last_seen_ms) in again {
            self.push(key, last_seen_ms);
        }
        visited
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use riskstream_graph::EntityKind;

    use super::*;

    fn key(id: &str) -> DirtyKey {
        (EntityKind::Account, Arc::from(id))
    }

    #[test]
    fn only_keys_filed_before_the_cutoff_are_visited_oldest_first() {
        let mut queue = IdleQueue::new(6_400); // granules of 100 ms
        queue.push(key("old"), 50);
        queue.push(key("mid"), 250);
        queue.push(key("new"), 1_000);
        let mut seen = Vec::new();
        let visited = queue.pop_due(300, 10, |(_, id)| {
            seen.push(id.to_string());
            None
        });
        assert_eq!(visited, 2);
        assert_eq!(seen, ["old", "mid"]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_pass_stops_at_its_budget_and_the_next_one_goes_on() {
        let mut queue = IdleQueue::new(6_400);
        for i in 0..10 {
            queue.push(key(&format!("k{i}")), i);
        }
        assert_eq!(queue.pop_due(10_000, 4, |_| None), 4);
        assert_eq!(queue.len(), 6);
        assert_eq!(queue.pop_due(10_000, 100, |_| None), 6);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_key_still_active_is_filed_again_under_its_newer_time() {
        let mut queue = IdleQueue::new(6_400);
        queue.push(key("busy"), 0);
        assert_eq!(queue.pop_due(500, 10, |_| Some(900)), 1);
        assert_eq!(queue.len(), 1);
        // Not due again until the cutoff passes its new time.
        assert_eq!(queue.pop_due(900, 10, |_| None), 0);
        assert_eq!(queue.pop_due(1_000, 10, |_| None), 1);
    }
}
