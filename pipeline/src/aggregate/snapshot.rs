//! Immutable aggregate snapshots, swapped in atomically so readers never lock or wait.
//!
//! A new snapshot shares the previous one's maps and adds one small layer holding only the
//! keys drained as changed ([`LayeredMap`]), so its cost grows with the keys changed; now
//! and then a publish folds the layers into a new base, which costs O(all keys) but is
//! amortised over the publishes between (see the `layered` module for the policy). It
//! becomes visible with one `ArcSwap::store`: a reader sees either the whole previous
//! snapshot or the whole new one.
//!
//! Map keys are plain data (ids up to 22 bytes inline) and values are stored inline, so
//! building a layer or a base copies memory without touching per-key allocations, and
//! freeing a replaced snapshot releases a few shared layers rather than a node per key.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use riskstream_graph::EntityKind;

use super::layered::{LayeredMap, COMPACTION};
use super::sharded::{kind_index, Aggregator, AmountBaseline, ChangeSet};
use super::values::KeySnapshot;

/// Longest id stored inline in a [`SnapshotId`].
const INLINE_ID: usize = 22;

/// An entity id as a snapshot map key. Ids up to 22 bytes are stored inline; longer ones
/// share the live map's allocation. Hashes and compares as the `str` it holds.
#[derive(Clone)]
pub struct SnapshotId(IdRepr);

#[derive(Clone)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Shared(Arc<str>),
}

impl SnapshotId {
    pub(crate) fn new(id: Arc<str>) -> SnapshotId {
        if id.len() > INLINE_ID {
            return SnapshotId(IdRepr::Shared(id));
        }
        let mut bytes = [0; INLINE_ID];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        SnapshotId(IdRepr::Inline {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            IdRepr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("inline id bytes are a whole str copied at construction"),
            IdRepr::Shared(id) => id,
        }
    }
}

impl Borrow<str> for SnapshotId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for SnapshotId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must equal `str`'s hash so lookups by `&str` find the key.
        self.as_str().hash(state);
    }
}

impl PartialEq for SnapshotId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SnapshotId {}

impl std::fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every key's values in a snapshot, one map per entity kind.
#[derive(Debug, Clone)]
pub struct SnapshotKeys {
    maps: [LayeredMap<KeySnapshot>; 4],
}

impl SnapshotKeys {
    fn empty() -> SnapshotKeys {
        SnapshotKeys {
            maps: std::array::from_fn(|_| LayeredMap::new()),
        }
    }

    /// One key's values; `None` if the key was not seen before this snapshot's drain.
    pub fn get(&self, kind: EntityKind, id: &str) -> Option<&KeySnapshot> {
        self.maps[kind_index(kind)].get(id)
    }

    /// All keys of one kind.
    pub fn of_kind(&self, kind: EntityKind) -> &LayeredMap<KeySnapshot> {
        &self.maps[kind_index(kind)]
    }

    /// Keys over all kinds.
    pub fn len(&self) -> usize {
        self.maps.iter().map(LayeredMap::len).sum()
    }

    /// Whether the snapshot holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(LayeredMap::is_empty)
    }
}

/// Population baselines the scorer compares single events against.
#[derive(Debug, Clone)]
pub struct Baselines {
    /// All events' amounts, weighted towards about the last thousand
    /// ([`GLOBAL_EW_ALPHA`](super::GLOBAL_EW_ALPHA)).
    pub global: AmountBaseline,
    /// Events the global baseline has seen.
    pub global_events: u64,
    /// Each merchant's amounts (its key's EW mean and std); empty unless merchant keys
    /// are aggregated.
    pub merchants: LayeredMap<AmountBaseline>,
}

impl Baselines {
    /// One merchant's amount baseline.
    pub fn merchant(&self, id: &str) -> Option<&AmountBaseline> {
        self.merchants.get(id)
    }
}

/// A consistent, immutable view of the aggregates at one batch boundary.
#[derive(Debug, Clone)]
pub struct AggregateSnapshot {
    /// 0 for the empty initial snapshot, then 1, 2, ... in publication order.
    pub id: u64,
    /// Event-time watermark the publisher declared for this cut.
    pub watermark_ms: i64,
    /// Input positions the publisher declared for this cut (e.g. `"topic/partition"` to
    /// the next offset to read).
    pub source_offsets: BTreeMap<String, i64>,
    /// The windows, in the order of each key's window values.
    pub windows: Arc<[Duration]>,
    /// Every key seen up to the cut.
    pub keys: SnapshotKeys,
    /// Population amount baselines.
    pub baselines: Baselines,
    /// Time spent draining the changes plus building this snapshot.
    pub built_in: Duration,
    /// Keys changed since the previous snapshot.
    pub changed_keys: usize,
}

impl AggregateSnapshot {
    /// The snapshot readers see before the first publication: no keys.
    pub fn empty(windows: &[Duration]) -> AggregateSnapshot {
        AggregateSnapshot {
            id: 0,
            watermark_ms: i64::MIN,
            source_offsets: BTreeMap::new(),
            windows: windows.iter().copied().collect(),
            keys: SnapshotKeys::empty(),
            baselines: Baselines {
                global: AmountBaseline::default(),
                global_events: 0,
                merchants: LayeredMap::new(),
            },
            built_in: Duration::ZERO,
            changed_keys: 0,
        }
    }
}

/// Why a change set could not be published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error(
        "aggregate change set {got} cannot follow change set {last}: publish every drained change set exactly once, in drain order, to the Snapshots of the aggregator that drained it"
    )]
    OutOfOrder { last: u64, got: u64 },
}

/// The current snapshot, shared with any number of readers.
///
/// Readers call [`load`](Self::load) and never block. One publisher at a time builds the
/// next snapshot; concurrent `publish` calls queue on an internal lock that readers never
/// touch. Replaced snapshots are freed by the publisher, not by whichever reader happens
/// to drop the last reference, so a reader never pays for freeing one.
#[derive(Debug)]
pub struct Snapshots {
    current: ArcSwap<AggregateSnapshot>,
    publisher: Mutex<Publisher>,
}

/// State only the publisher touches.
#[derive(Debug, Default)]
struct Publisher {
    /// The sequence number of the last change set published.
    last_seq: u64,
    /// Replaced snapshots that readers may still hold; freed here once they do not.
    retired: Vec<Arc<AggregateSnapshot>>,
}

impl Snapshots {
    /// Starts with the empty snapshot (id 0) for this aggregator's windows.
    pub fn new(aggregator: &Aggregator) -> Snapshots {
        Snapshots {
            current: ArcSwap::from_pointee(AggregateSnapshot::empty(aggregator.windows())),
            publisher: Mutex::new(Publisher::default()),
        }
    }

    /// Continues the snapshot ids of an earlier run restored from a checkpoint: the
    /// current (empty) snapshot takes `id`, so that the next one published is `id + 1`.
    /// Only before the first publication; `false` (nothing changed) after it.
    pub fn resume_ids_at(&self, id: u64) -> bool {
        let publisher = lock(&self.publisher);
        if publisher.last_seq != 0 {
            return false;
        }
        let mut empty = AggregateSnapshot::empty(&self.current.load().windows);
        empty.id = id;
        self.current.store(Arc::new(empty));
        true
    }

    /// The current snapshot, lock-free. Hold the guard briefly; use
    /// [`load_full`](Self::load_full) to keep a snapshot for longer.
    pub fn load(&self) -> arc_swap::Guard<Arc<AggregateSnapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<AggregateSnapshot> {
        self.current.load_full()
    }

    /// Drains the aggregator's changes and publishes the next snapshot.
    ///
    /// The drain waits for the running batch to finish and holds the next one back only
    /// while it copies the changed keys; building the persistent maps runs without holding
    /// up `apply_batch`, so this can be called from any thread. `watermark_ms` and
    /// `source_offsets` are recorded as given: pass the positions of the last batch
    /// applied, which is exact when the caller also drives `apply_batch` (otherwise use
    /// [`Aggregator::drain_changes`] between batches and
    /// [`publish_changes`](Self::publish_changes) elsewhere).
    pub fn publish(
        &self,
        aggregator: &Aggregator,
        watermark_ms: i64,
        source_offsets: BTreeMap<String, i64>,
    ) -> Result<Arc<AggregateSnapshot>, SnapshotError> {
        let mut publisher = lock(&self.publisher);
        let changes = aggregator.drain_changes();
        self.build_and_store(&mut publisher, changes, watermark_ms, source_offsets)
    }

    /// Publishes a change set drained earlier with [`Aggregator::drain_changes`], e.g.
    /// drained between batches on the aggregating thread and published on another.
    /// Change sets must arrive exactly once each, in drain order.
    pub fn publish_changes(
        &self,
        changes: ChangeSet,
        watermark_ms: i64,
        source_offsets: BTreeMap<String, i64>,
    ) -> Result<Arc<AggregateSnapshot>, SnapshotError> {
        let mut publisher = lock(&self.publisher);
        self.build_and_store(&mut publisher, changes, watermark_ms, source_offsets)
    }

    fn build_and_store(
        &self,
        publisher: &mut Publisher,
        changes: ChangeSet,
        watermark_ms: i64,
        source_offsets: BTreeMap<String, i64>,
    ) -> Result<Arc<AggregateSnapshot>, SnapshotError> {
        if changes.seq != publisher.last_seq + 1 {
            return Err(SnapshotError::OutOfOrder {
                last: publisher.last_seq,
                got: changes.seq,
            });
        }
        let started = Instant::now();
        let previous = self.current.load_full();
        let changed_keys = changes.len();
        let mut per_kind = [0usize; 4];
        for (kind, _, _) in changes.keys.iter().flatten() {
            per_kind[kind_index(*kind)] += 1;
        }
        let mut changed: [Vec<(SnapshotId, KeySnapshot)>; 4] =
            std::array::from_fn(|kind| Vec::with_capacity(per_kind[kind]));
        let mut merchant_baselines = Vec::with_capacity(per_kind[kind_index(EntityKind::Merchant)]);
        for (kind, id, values) in changes.keys.into_iter().flatten() {
            let id = SnapshotId::new(id);
            if kind == EntityKind::Merchant {
                let baseline = AmountBaseline {
                    mean: values.amount_mean,
                    std: values.amount_std,
                };
                merchant_baselines.push((id.clone(), baseline));
            }
            changed[kind_index(kind)].push((id, values));
        }
        let mut removed: [Vec<SnapshotId>; 4] = std::array::from_fn(|_| Vec::new());
        for (kind, id) in changes.evicted {
            removed[kind_index(kind)].push(SnapshotId::new(id));
        }
        let removed_merchants = removed[kind_index(EntityKind::Merchant)].clone();
        let mut changed = changed.into_iter().zip(removed);
        let keys = SnapshotKeys {
            maps: std::array::from_fn(|kind| {
                let (changed, removed) = changed
                    .next()
                    .expect("one change list per kind, as many as maps");
                previous.keys.maps[kind].with_changes(changed, removed, &COMPACTION)
            }),
        };
        let merchants = previous.baselines.merchants.with_changes(
            merchant_baselines,
            removed_merchants,
            &COMPACTION,
        );
        let next = Arc::new(AggregateSnapshot {
            id: previous.id + 1,
            watermark_ms,
            source_offsets,
            windows: changes.windows,
            keys,
            baselines: Baselines {
                global: changes.global,
                global_events: changes.global_events,
                merchants,
            },
            built_in: changes.drained_in + started.elapsed(),
            changed_keys,
        });
        self.current.store(Arc::clone(&next));
        publisher.last_seq = changes.seq;
        // After the store no new reader can reach `previous`; readers holding it show in
        // its count. Dropping the ones only held here frees them on this thread.
        publisher.retired.push(previous);
        publisher
            .retired
            .retain(|snapshot| Arc::strong_count(snapshot) > 1);
        Ok(next)
    }
}

/// The publisher state stays valid even if a holder panicked: the sequence number is only
/// advanced after a successful store.
fn lock(mutex: &Mutex<Publisher>) -> std::sync::MutexGuard<'_, Publisher> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggregateOptions;
    use crate::event::Event;

    fn event(ts_ms: i64, account: &str, merchant: Option<&str>, amount: f64) -> Event {
        Event {
            merchant_id: merchant.map(str::to_string),
            ..Event::bare(&format!("e-{ts_ms}"), ts_ms, account, amount)
        }
    }

    fn offsets(offset: i64) -> BTreeMap<String, i64> {
        BTreeMap::from([("events/0".to_string(), offset)])
    }

    #[test]
    fn readers_see_the_empty_snapshot_before_the_first_publish() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let snapshots = Snapshots::new(&aggregator);
        let snapshot = snapshots.load();
        assert_eq!(snapshot.id, 0);
        assert!(snapshot.keys.is_empty());
        assert_eq!(snapshot.windows.len(), 3);
    }

    #[test]
    fn publish_carries_changed_keys_and_keeps_unchanged_ones() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let snapshots = Snapshots::new(&aggregator);
        aggregator.apply_batch(&[
            event(1, "A-1", Some("M-1"), 10.0),
            event(2, "A-2", None, 4.0),
        ]);
        let first = snapshots.publish(&aggregator, 2, offsets(2)).unwrap();
        assert_eq!((first.id, first.changed_keys, first.keys.len()), (1, 3, 3));
        assert_eq!(first.watermark_ms, 2);
        assert_eq!(first.source_offsets, offsets(2));
        assert_eq!(
            first.baselines.merchant("M-1"),
            Some(&AmountBaseline {
                mean: 10.0,
                std: 0.0
            })
        );
        assert_eq!(first.baselines.global_events, 2);

        aggregator.apply_batch(&[event(3, "A-1", None, 5.0)]);
        let second = snapshots.publish(&aggregator, 3, offsets(3)).unwrap();
        assert_eq!(
            (second.id, second.changed_keys, second.keys.len()),
            (2, 1, 3)
        );
        let account = second.keys.get(EntityKind::Account, "A-1").unwrap();
        assert_eq!(account.windows.sum(0), 15.0);
        // The earlier snapshot is immutable.
        assert_eq!(
            first
                .keys
                .get(EntityKind::Account, "A-1")
                .unwrap()
                .windows
                .sum(0),
            10.0
        );
        assert_eq!(snapshots.load().id, 2);
    }

    #[test]
    fn long_and_short_ids_are_found_by_str() {
        let short = SnapshotId::new(Arc::from("A-1"));
        let long_text = "account-with-a-rather-long-identifier-0001";
        let long = SnapshotId::new(Arc::from(long_text));
        assert!(matches!(short.0, IdRepr::Inline { .. }));
        assert!(matches!(long.0, IdRepr::Shared(_)));
        let map =
            LayeredMap::new().with_changes(vec![(short, 1u32), (long, 2)], Vec::new(), &COMPACTION);
        assert_eq!(map.get("A-1"), Some(&1));
        assert_eq!(map.get(long_text), Some(&2));
        assert_eq!(map.get("A-2"), None);
    }

    #[test]
    fn replaced_snapshots_held_by_readers_are_freed_by_the_publisher_later() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let snapshots = Snapshots::new(&aggregator);
        let held_by_reader = snapshots.load_full();
        snapshots.publish(&aggregator, 0, BTreeMap::new()).unwrap();
        // The publisher keeps its own reference while the reader holds one.
        assert_eq!(Arc::strong_count(&held_by_reader), 2);
        let weak = Arc::downgrade(&held_by_reader);
        drop(held_by_reader);
        assert!(
            weak.upgrade().is_some(),
            "the reader's drop must not free it"
        );
        snapshots.publish(&aggregator, 0, BTreeMap::new()).unwrap();
        assert!(weak.upgrade().is_none(), "the next publish frees it");
    }

    #[test]
    fn change_sets_out_of_order_are_rejected() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let snapshots = Snapshots::new(&aggregator);
        aggregator.apply_batch(&[event(1, "A-1", None, 1.0)]);
        let first = aggregator.drain_changes();
        aggregator.apply_batch(&[event(2, "A-2", None, 1.0)]);
        let second = aggregator.drain_changes();
        let error = snapshots
            .publish_changes(second, 2, BTreeMap::new())
            .unwrap_err();
        assert_eq!(error, SnapshotError::OutOfOrder { last: 0, got: 2 });
        assert_eq!(
            snapshots.load().id,
            0,
            "a rejected change set publishes nothing"
        );
        snapshots
            .publish_changes(first, 1, BTreeMap::new())
            .unwrap();
        assert_eq!(snapshots.load().keys.len(), 1);
    }

    #[test]
    fn readers_during_publishing_always_see_whole_snapshots() {
        let options = AggregateOptions {
            workers: 2,
            ..AggregateOptions::default()
        };
        let aggregator = Aggregator::new(options).unwrap();
        let snapshots = Snapshots::new(&aggregator);
        let rounds = 50i64;
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut last_id = 0;
                while last_id < rounds as u64 {
                    let snapshot = snapshots.load();
                    // Snapshot n holds accounts A-0..A-(n-1), each with exactly one event,
                    // all written in one cut.
                    assert_eq!(snapshot.keys.len() as u64, snapshot.id);
                    assert!(snapshot.id >= last_id, "snapshot ids never go back");
                    last_id = snapshot.id;
                }
            });
            for round in 0..rounds {
                aggregator.apply_batch(&[event(round, &format!("A-{round}"), None, 1.0)]);
                snapshots
                    .publish(&aggregator, round, BTreeMap::new())
                    .unwrap();
            }
            reader.join().unwrap();
        });
    }
}
