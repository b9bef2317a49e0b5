//! The map behind each snapshot: one large immutable base shared by many snapshots, plus a
//! few small layers holding the keys changed since that base was built.
//!
//! Publishing adds one layer built from the changed keys only, so its cost grows with the
//! keys changed, and consecutive snapshots share the base and every older layer through
//! `Arc`s. Dropping a replaced snapshot releases a handful of `Arc`s; a layer or base is
//! freed only when the last snapshot holding it goes.
//!
//! Two things keep lookups short and memory bounded:
//!
//! * Layers are merged while the newest is at least as large as the one below it (and
//!   whenever there are more than [`Compaction::max_layers`]), like carries in a binary
//!   counter: sizes fall geometrically, so there are about log2(layered / changed) layers,
//!   every other publish merges nothing, and each changed key is copied a few times at
//!   most before compaction.
//! * Once the layers hold more entries than a fraction of the base
//!   ([`Compaction::base_divisor`], default 1/8, and at least
//!   [`Compaction::min_layered`]), the publish that crosses the line compacts: it builds a
//!   new base from the old one and the layers. That costs O(all keys) — a copy of the
//!   values array, plus a copy of the index when new keys arrived — but happens once per
//!   base/8 changed keys (every 13th publish when 1 % of the keys change each time).
//!
//! Keys evicted from the live state are removed the same way: a layer holds a tombstone
//! for each, and the next compaction leaves them out of the new base.
//!
//! The base stores values inline in one array and maps ids to positions in a separate
//! index, so a compaction copies memory sequentially, freeing a base is a few large
//! deallocations rather than one per key, and a compaction without new keys reuses the
//! index as is. Layer entries remember the base position of keys the base already has,
//! which lets a compaction write them without looking them up again.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use ahash::AHashMap;

use super::snapshot::SnapshotId;

/// When a [`LayeredMap`] merges layers and folds them into a new base.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compaction {
    /// Compact once the layers hold more than `base length / base_divisor` entries.
    pub(crate) base_divisor: usize,
    /// ... and more than this many, so small maps do not rebuild their base every publish.
    pub(crate) min_layered: usize,
    /// Merge the two newest layers while there are more than this many, bounding the
    /// hash probes of a lookup that ends in the base.
    pub(crate) max_layers: usize,
}

/// The policy snapshots use: compaction after changes worth 1/8 of the base, so between
/// compactions lookups see at most 4 small layers and memory stays within 1/8 of the base
/// (plus the replaced snapshots readers still hold).
pub(crate) const COMPACTION: Compaction = Compaction {
    base_divisor: 8,
    min_layered: 1024,
    max_layers: 4,
};

/// Marks a layer entry whose key the base does not hold.
const NOT_IN_BASE: usize = usize::MAX;

/// A changed key's value in a layer (`None`: removed), with its position in the base when
/// the base has it.
#[derive(Debug, Clone, Copy)]
struct LayerEntry<V> {
    value: Option<V>,
    base_slot: usize,
}

/// Keys changed between two compactions. Values sit in a dense array and the hash index
/// holds only positions, so building or merging a layer writes one small index entry per
/// key at a random place and the values sequentially.
#[derive(Debug, Clone)]
struct Layer<V> {
    index: AHashMap<SnapshotId, usize>,
    entries: Vec<LayerEntry<V>>,
}

impl<V: Copy> Layer<V> {
    fn with_capacity(capacity: usize) -> Layer<V> {
        Layer {
            index: AHashMap::with_capacity(capacity),
            entries: Vec::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, id: &str) -> Option<&LayerEntry<V>> {
        self.index.get(id).map(|&position| &self.entries[position])
    }

    fn contains_key(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Sets `id`'s entry; true when the layer did not hold `id` before.
    fn upsert(&mut self, id: SnapshotId, entry: LayerEntry<V>) -> bool {
        match self.index.entry(id) {
            Entry::Occupied(position) => {
                self.entries[*position.get()] = entry;
                false
            }
            Entry::Vacant(position) => {
                position.insert(self.entries.len());
                self.entries.push(entry);
                true
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&SnapshotId, &LayerEntry<V>)> + '_ {
        self.index
            .iter()
            .map(|(id, &position)| (id, &self.entries[position]))
    }
}

/// Every key as of one compaction: values inline, in the order keys first arrived.
#[derive(Debug)]
struct Base<V> {
    /// Shared between bases until a compaction brings new keys.
    index: Arc<AHashMap<SnapshotId, usize>>,
    values: Vec<V>,
}

/// An immutable map from entity id to `V` that consecutive snapshots share.
///
/// A lookup probes each layer, newest first, then the base. A new version is made with
/// [`with_changes`](Self::with_changes) without touching this one.
#[derive(Clone)]
pub struct LayeredMap<V> {
    base: Arc<Base<V>>,
    /// Newest first, each smaller than the one below it (see the module docs).
    layers: Vec<Arc<Layer<V>>>,
    len: usize,
}

impl<V: Copy> LayeredMap<V> {
    /// A map with no keys.
    pub(crate) fn new() -> LayeredMap<V> {
        LayeredMap {
            base: Arc::new(Base {
                index: Arc::new(AHashMap::new()),
                values: Vec::new(),
            }),
            layers: Vec::new(),
            len: 0,
        }
    }

    /// One key's value.
    pub fn get(&self, id: &str) -> Option<&V> {
        for layer in &self.layers {
            if let Some(entry) = layer.get(id) {
                return entry.value.as_ref();
            }
        }
        self.base.index.get(id).map(|&slot| &self.base.values[slot])
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layers over the base: 0 right after a compaction, at most a few between them.
    /// Exposed so benchmarks and metrics can see when compactions happen.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Every key with its current value, each once, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        let from_layers = self
            .layers
            .iter()
            .enumerate()
            .flat_map(move |(depth, layer)| {
                layer
                    .iter()
                    .filter(move |(id, _)| !self.in_layers_above(depth, id.as_str()))
                    .filter_map(|(id, entry)| {
                        entry.value.as_ref().map(|value| (id.as_str(), value))
                    })
            });
        let from_base = self
            .base
            .index
            .iter()
            .filter(move |(id, _)| !self.in_layers_above(self.layers.len(), id.as_str()))
            .map(move |(id, &slot)| (id.as_str(), &self.base.values[slot]));
        from_layers.chain(from_base)
    }

    /// Whether any of the `depth` newest layers holds `id`.
    fn in_layers_above(&self, depth: usize, id: &str) -> bool {
        self.layers[..depth]
            .iter()
            .any(|layer| layer.contains_key(id))
    }

    /// The next version: this one with `changes` applied (a later change of the same id
    /// wins), then the keys in `removed` taken out. Costs O(changes + removed) plus, now
    /// and then, a layer merge or a compaction as `policy` says; this version stays as it
    /// was.
    pub(crate) fn with_changes(
        &self,
        changes: Vec<(SnapshotId, V)>,
        removed: Vec<SnapshotId>,
        policy: &Compaction,
    ) -> LayeredMap<V> {
        if changes.is_empty() && removed.is_empty() {
            return self.clone();
        }
        let edits = changes
            .into_iter()
            .map(|(id, value)| (id, Some(value)))
            .chain(removed.into_iter().map(|id| (id, None)));
        let edit_count = edits.size_hint().0;
        let layered: usize = self.layers.iter().map(|layer| layer.len()).sum();
        let limit = (self.base.values.len() / policy.base_divisor.max(1)).max(policy.min_layered);
        if layered + edit_count > limit {
            // Straight into a new base: a layer this large would only be copied again.
            let base = compact(&self.base, &self.layers, edits);
            return LayeredMap {
                len: base.values.len(),
                base: Arc::new(base),
                layers: Vec::new(),
            };
        }
        let mut layer = Layer::with_capacity(edit_count);
        let mut len = self.len;
        for (id, value) in edits {
            let held_before = match layer.get(id.as_str()) {
                Some(entry) => entry.value.is_some(),
                None => self.get(id.as_str()).is_some(),
            };
            let held_after = value.is_some();
            let base_slot = self.base.index.get(id.as_str()).copied();
            let entry = LayerEntry {
                value,
                base_slot: base_slot.unwrap_or(NOT_IN_BASE),
            };
            layer.upsert(id, entry);
            match (held_before, held_after) {
                (false, true) => len += 1,
                (true, false) => len -= 1,
                _ => {}
            }
        }
        let mut layers = Vec::with_capacity(self.layers.len() + 1);
        layers.push(Arc::new(layer));
        layers.extend(self.layers.iter().cloned());
        while layers.len() >= 2
            && (layers.len() > policy.max_layers || layers[0].len() >= layers[1].len())
        {
            let newer = layers.remove(0);
            let merged = merge(&layers[0], &newer);
            layers[0] = Arc::new(merged);
        }
        LayeredMap {
            base: Arc::clone(&self.base),
            layers,
            len,
        }
    }
}

/// One layer holding both; `newer` wins where both hold a key.
fn merge<V: Copy>(older: &Layer<V>, newer: &Layer<V>) -> Layer<V> {
    // Cloning copies the older layer as laid out, without hashing it again.
    let mut merged = older.clone();
    merged.index.reserve(newer.len());
    merged.entries.reserve(newer.len());
    for (id, entry) in newer.iter() {
        merged.upsert(id.clone(), *entry);
    }
    merged
}

/// A new base holding `base` overwritten by `layers` (newest first), then by `edits`
/// (`None`: the key is removed).
fn compact<V: Copy>(
    base: &Base<V>,
    layers: &[Arc<Layer<V>>],
    edits: impl Iterator<Item = (SnapshotId, Option<V>)>,
) -> Base<V> {
    let most_new = layers.iter().map(|layer| layer.len()).sum::<usize>() + edits.size_hint().0;
    let mut values = Vec::with_capacity(base.values.len() + most_new);
    values.extend_from_slice(&base.values);
    // Only keys the base lacks need a new index; until one shows up the old one still fits.
    let mut new_index: Option<AHashMap<SnapshotId, usize>> = None;
    // Slots of removed keys, left out when the values are written out at the end.
    let mut removed_slots: ahash::AHashSet<usize> = ahash::AHashSet::new();
    let mut set = |id: &SnapshotId, base_slot: Option<usize>, value: Option<V>| {
        let slot = match base_slot {
            Some(slot) => Some(slot),
            None => match value {
                // A key the base lacks: only the index built so far can hold it.
                None => new_index
                    .as_ref()
                    .and_then(|index| index.get(id.as_str()).copied()),
                Some(new) => {
                    let index = new_index.get_or_insert_with(|| (*base.index).clone());
                    match index.entry(id.clone()) {
                        Entry::Occupied(slot) => Some(*slot.get()),
                        Entry::Vacant(slot) => {
                            slot.insert(values.len());
                            values.push(new);
                            None
                        }
                    }
                }
            },
        };
        if let Some(slot) = slot {
            match value {
                Some(value) => {
                    values[slot] = value;
                    removed_slots.remove(&slot);
                }
                None => {
                    removed_slots.insert(slot);
                }
            }
        }
    };
    for layer in layers.iter().rev() {
        for (id, entry) in layer.iter() {
            let base_slot = (entry.base_slot != NOT_IN_BASE).then_some(entry.base_slot);
            set(id, base_slot, entry.value);
        }
    }
    for (id, value) in edits {
        set(&id, base.index.get(id.as_str()).copied(), value);
    }
    let index = new_index.map_or_else(|| Arc::clone(&base.index), Arc::new);
    if removed_slots.is_empty() {
        values.shrink_to_fit();
        return Base { index, values };
    }
    // Keys went away: write the survivors out afresh, in their old order.
    let mut slots: Vec<(&SnapshotId, usize)> = index
        .iter()
        .filter(|(_, slot)| !removed_slots.contains(*slot))
        .map(|(id, &slot)| (id, slot))
        .collect();
    slots.sort_unstable_by_key(|&(_, slot)| slot);
    let mut kept = Vec::with_capacity(slots.len());
    let mut kept_index = AHashMap::with_capacity(slots.len());
    for (id, slot) in slots {
        kept_index.insert(id.clone(), kept.len());
        kept.push(values[slot]);
    }
    Base {
        index: Arc::new(kept_index),
        values: kept,
    }
}

impl<V> std::fmt::Debug for LayeredMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents can be millions of keys; the shape is what a log line needs.
        f.debug_struct("LayeredMap")
            .field("len", &self.len)
            .field("base_len", &self.base.values.len())
            .field(
                "layer_lens",
                &self
                    .layers
                    .iter()
                    .map(|layer| layer.entries.len())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn id(text: &str) -> SnapshotId {
        SnapshotId::new(Arc::from(text))
    }

    fn changes(pairs: &[(&str, u32)]) -> Vec<(SnapshotId, u32)> {
        pairs.iter().map(|&(key, value)| (id(key), value)).collect()
    }

    /// Compacts as soon as the layers hold more than half the base (and 1 entry).
    const EAGER: Compaction = Compaction {
        base_divisor: 2,
        min_layered: 1,
        max_layers: 2,
    };

    const NEVER: Compaction = Compaction {
        base_divisor: 1,
        min_layered: usize::MAX,
        max_layers: usize::MAX,
    };

    #[test]
    fn newest_layer_wins_over_older_layers_and_the_base() {
        let map = LayeredMap::new()
            .with_changes(changes(&[("a", 1), ("b", 1)]), Vec::new(), &EAGER)
            .with_changes(changes(&[("a", 2)]), Vec::new(), &NEVER)
            .with_changes(changes(&[("a", 3), ("c", 3)]), Vec::new(), &NEVER);
        assert_eq!(map.get("a"), Some(&3));
        assert_eq!(map.get("b"), Some(&1));
        assert_eq!(map.get("c"), Some(&3));
        assert_eq!(map.get("d"), None);
        assert_eq!(map.len(), 3);
        let mut all: Vec<_> = map.iter().map(|(key, &value)| (key, value)).collect();
        all.sort_unstable();
        assert_eq!(all, vec![("a", 3), ("b", 1), ("c", 3)]);
    }

    #[test]
    fn compaction_folds_layers_into_a_new_base_and_leaves_older_versions_alone() {
        let first =
            LayeredMap::new().with_changes(changes(&[("a", 1), ("b", 1)]), Vec::new(), &EAGER);
        assert_eq!(first.layer_count(), 0, "the first publish compacts");
        let second = first.with_changes(changes(&[("a", 2)]), Vec::new(), &EAGER);
        assert_eq!(second.layer_count(), 1, "one change stays layered");
        let third = second.with_changes(changes(&[("b", 3), ("c", 3)]), Vec::new(), &EAGER);
        assert_eq!(third.layer_count(), 0, "three layered entries exceed 2 / 2");
        assert_eq!(
            [third.get("a"), third.get("b"), third.get("c")],
            [Some(&2), Some(&3), Some(&3)]
        );
        assert_eq!(third.len(), 3);
        assert_eq!([first.get("a"), first.get("c")], [Some(&1), None]);
        assert_eq!(second.get("a"), Some(&2));
        assert_eq!(second.len(), 2);
    }

    #[test]
    fn layers_merge_so_lookups_probe_few_maps() {
        let mut map = LayeredMap::new();
        for round in 0..50u32 {
            let key = format!("k{round}");
            map = map.with_changes(changes(&[(&key, round)]), Vec::new(), &NEVER);
            // Each layer is larger than the one above it: like binary digits, 6 suffice for 50.
            assert!(map.layer_count() <= 6, "{map:?}");
        }
        let capped = Compaction {
            max_layers: 2,
            ..NEVER
        };
        let bounded = map.with_changes(changes(&[("k0", 7)]), Vec::new(), &capped);
        assert!(bounded.layer_count() <= 2, "{bounded:?}");
        assert_eq!(bounded.get("k0"), Some(&7));
        assert_eq!(map.len(), 50);
        assert_eq!(map.get("k0"), Some(&0));
        assert_eq!(map.get("k49"), Some(&49));
    }

    #[test]
    fn removed_keys_are_gone_from_layers_and_from_the_next_base() {
        let base =
            LayeredMap::new().with_changes(changes(&[("a", 1), ("b", 1)]), Vec::new(), &EAGER);
        let layered = base.with_changes(changes(&[("c", 2)]), vec![id("a")], &NEVER);
        assert_eq!(layered.get("a"), None);
        assert_eq!(layered.len(), 2);
        assert_eq!(layered.iter().count(), 2);
        assert_eq!(base.get("a"), Some(&1), "older versions keep the key");
        let compacted = layered.with_changes(Vec::new(), vec![id("c")], &EAGER);
        assert_eq!(compacted.layer_count(), 0);
        assert_eq!(compacted.len(), 1);
        assert_eq!(compacted.get("b"), Some(&1));
        assert_eq!([compacted.get("a"), compacted.get("c")], [None, None]);
        let back = compacted.with_changes(changes(&[("a", 5)]), Vec::new(), &NEVER);
        assert_eq!((back.get("a"), back.len()), (Some(&5), 2));
    }

    proptest! {
        #[test]
        fn every_version_reads_like_a_plain_map_of_its_changes(
            rounds in prop::collection::vec(
                (
                    prop::collection::vec((0..40u8, any::<u32>()), 0..12),
                    prop::collection::vec(0..40u8, 0..4),
                ),
                1..30,
            ),
            eager in any::<bool>(),
        ) {
            let policy = if eager { EAGER } else { COMPACTION };
            let mut model = BTreeMap::new();
            let mut map = LayeredMap::new();
            let mut versions = Vec::new();
            for (round, removals) in rounds {
                let batch: Vec<_> =
                    round.iter().map(|&(key, value)| (id(&format!("key-{key}")), value)).collect();
                for &(key, value) in &round {
                    model.insert(format!("key-{key}"), value);
                }
                let gone: Vec<String> =
                    removals.iter().map(|key| format!("key-{key}")).collect();
                for key in &gone {
                    model.remove(key);
                }
                map = map.with_changes(batch, gone.iter().map(|key| id(key)).collect(), &policy);
                versions.push((map.clone(), model.clone()));
            }
            for (map, model) in versions {
                prop_assert_eq!(map.len(), model.len());
                let all: BTreeMap<String, u32> =
                    map.iter().map(|(key, &value)| (key.to_string(), value)).collect();
                prop_assert_eq!(map.iter().count(), model.len());
                prop_assert_eq!(&all, &model);
                for key in 0..40u8 {
                    let key = format!("key-{key}");
                    prop_assert_eq!(map.get(&key), model.get(&key));
                }
            }
        }
    }
}
