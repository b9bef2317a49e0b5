//! The live aggregate state: one `scc::HashMap` per entity kind, updated in batches by a
//! fixed set of workers that each own a share of the keys.
//!
//! Every worker scans the whole batch in order and applies only the updates whose key
//! hashes to it, so one key's events are applied in arrival order by one thread while
//! different keys proceed in parallel. Batches are applied one after another (a lock
//! serialises them), so per-key order also holds across batches.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use riskstream_graph::EntityKind;

use crate::event::Event;

use super::idle::IdleQueue;
use super::options::{AggregateError, AggregateOptions};
use super::state::{AggregateState, KindState, MerchantCut, RestoreError, StateLayout};
use super::values::{KeySnapshot, KeyValues};
use super::window::{ew_step, KeyState, Layout, Update};

/// Weight of the newest event in the global amount baseline: about the last 1000 events
/// dominate, stable enough to compare one amount against.
pub const GLOBAL_EW_ALPHA: f64 = 0.001;

const KIND_COUNT: usize = 4;

/// Every kind in index order (see [`kind_index`]).
const ALL_KINDS: [EntityKind; KIND_COUNT] = [
    EntityKind::Account,
    EntityKind::Device,
    EntityKind::Ip,
    EntityKind::Merchant,
];

/// A stable array index per kind, so per-kind data lives in fixed arrays.
pub(crate) fn kind_index(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Account => 0,
        EntityKind::Device => 1,
        EntityKind::Ip => 2,
        EntityKind::Merchant => 3,
    }
}

/// The event's id for a kind; `None` when the event does not name one (or names it empty).
pub(crate) fn key_of(event: &Event, kind: EntityKind) -> Option<&str> {
    let id = match kind {
        EntityKind::Account => Some(event.account_id.as_str()),
        EntityKind::Device => event.device_id.as_deref(),
        EntityKind::Ip => event.ip.as_deref(),
        EntityKind::Merchant => event.merchant_id.as_deref(),
    };
    id.filter(|id| !id.is_empty())
}

/// Fixed seeds: a key must belong to the same worker in every batch.
const OWNER_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
);

/// What one event sees after it was applied: one entry per configured kind whose key the
/// event names.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EventAggregates {
    by_kind: [Option<KeyValues>; KIND_COUNT],
    merchant_baseline: Option<AmountBaseline>,
}

impl EventAggregates {
    /// Aggregates of the given values, for tests of what is built on them.
    #[cfg(test)]
    pub(crate) fn with(mut self, kind: EntityKind, values: Option<KeyValues>) -> Self {
        self.by_kind[kind_index(kind)] = values;
        self
    }

    /// The values for one kind; `None` when the kind is not configured or the event has no
    /// such key (e.g. no `device_id`).
    pub fn get(&self, kind: EntityKind) -> Option<&KeyValues> {
        self.by_kind[kind_index(kind)].as_ref()
    }

    /// The event's merchant's amount baseline as it stood at the last event-time boundary
    /// (a multiple of [`AggregateOptions::baseline_interval`]) before the event; `None`
    /// before the merchant's first boundary, when the event names no merchant, or when
    /// merchant keys are not aggregated.
    pub fn merchant_baseline(&self) -> Option<&AmountBaseline> {
        self.merchant_baseline.as_ref()
    }

    /// Whether the event was late for any of its keys.
    pub fn is_late(&self) -> bool {
        self.by_kind.iter().flatten().any(|values| values.late)
    }

    /// The kinds present, in the order account, device, ip, merchant.
    pub fn iter(&self) -> impl Iterator<Item = (EntityKind, &KeyValues)> {
        ALL_KINDS
            .iter()
            .zip(&self.by_kind)
            .filter_map(|(kind, values)| values.as_ref().map(|values| (*kind, values)))
    }

    fn set(&mut self, kind_index: usize, values: KeyValues) {
        self.by_kind[kind_index] = Some(values);
    }
}

/// Counters the job exports as metrics, updated once per batch (keys: once per new key
/// and per eviction). All monotonic except the live key counts.
#[derive(Debug, Default)]
pub struct AggregatorMetrics {
    keys: [AtomicU64; KIND_COUNT],
    keys_evicted: [AtomicU64; KIND_COUNT],
    late_events: AtomicU64,
    events_applied: AtomicU64,
}

impl AggregatorMetrics {
    /// Keys held in the live state, over all kinds.
    pub fn keys_tracked(&self) -> u64 {
        ALL_KINDS.iter().map(|kind| self.keys(*kind)).sum()
    }

    /// Keys of one kind held in the live state.
    pub fn keys(&self, kind: EntityKind) -> u64 {
        self.keys[kind_index(kind)].load(Ordering::Relaxed)
    }

    /// Keys of one kind dropped from the live state after `idle_key_ttl` without an event.
    pub fn keys_evicted(&self, kind: EntityKind) -> u64 {
        self.keys_evicted[kind_index(kind)].load(Ordering::Relaxed)
    }

    /// Keys dropped after `idle_key_ttl` without an event, over all kinds.
    pub fn keys_evicted_total(&self) -> u64 {
        ALL_KINDS.iter().map(|kind| self.keys_evicted(*kind)).sum()
    }

    /// Events that were late for at least one of their keys.
    pub fn late_events(&self) -> u64 {
        self.late_events.load(Ordering::Relaxed)
    }

    /// Events applied, late ones included.
    pub fn events_applied(&self) -> u64 {
        self.events_applied.load(Ordering::Relaxed)
    }
}

/// An amount baseline: exponentially weighted mean and standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AmountBaseline {
    pub mean: f64,
    pub std: f64,
}

/// An event time too far ahead of the watermark to be admitted (see [`Aggregator::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureTimestamp {
    /// The event's time, ms since the epoch.
    pub ts_ms: i64,
    /// The newest event time admitted before it.
    pub watermark_ms: i64,
    /// `aggregate.max_future_skew`.
    pub max_skew: Duration,
}

/// A key named in a dirty list (changed since the last drain), the idle queue or an
/// eviction list.
pub(crate) type DirtyKey = (EntityKind, Arc<str>);

/// One changed key's values, copied at the drain.
pub(crate) type ChangedKey = (EntityKind, Arc<str>, KeySnapshot);

/// Everything that changed since the previous drain, copied at one batch boundary.
/// Produced by [`Aggregator::drain_changes`], consumed by
/// [`Snapshots::publish_changes`](super::Snapshots::publish_changes).
#[derive(Debug)]
pub struct ChangeSet {
    pub(crate) seq: u64,
    /// One list per worker, each worker's keys in the order they first changed.
    pub(crate) keys: Vec<Vec<ChangedKey>>,
    /// Keys evicted at this drain, after the changes above: snapshots drop them.
    pub(crate) evicted: Vec<DirtyKey>,
    pub(crate) global: AmountBaseline,
    pub(crate) global_events: u64,
    pub(crate) windows: Arc<[Duration]>,
    pub(crate) drained_in: Duration,
}

impl ChangeSet {
    /// Keys changed since the previous drain.
    pub fn len(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }

    /// Whether nothing changed since the previous drain (no key changed, none evicted).
    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(Vec::is_empty) && self.evicted.is_empty()
    }

    /// Keys evicted at this drain for having been idle longer than `idle_key_ttl`.
    pub fn evicted(&self) -> usize {
        self.evicted.len()
    }

    /// Position in the aggregator's sequence of drains, starting at 1; change sets must be
    /// published in this order.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How long the drain held up `apply_batch`.
    pub fn drained_in(&self) -> Duration {
        self.drained_in
    }
}

/// State only touched between batches, under the batch lock.
#[derive(Debug)]
struct BatchState {
    /// The newest event time applied so far, `i64::MIN` before the first: the watermark
    /// idle keys are measured against. It follows the order events are applied in, not
    /// batch sizes or wall-clock time, so eviction is the same in every replay.
    watermark_ms: i64,
    global_mean: f64,
    global_var: f64,
    global_events: u64,
    drains: u64,
    /// Per merchant: its baseline at the last event-time boundary and its newest one.
    merchant_cuts: ahash::AHashMap<Arc<str>, BaselineCut>,
}

impl BatchState {
    fn new() -> BatchState {
        BatchState {
            watermark_ms: i64::MIN,
            global_mean: 0.0,
            global_var: 0.0,
            global_events: 0,
            drains: 0,
            merchant_cuts: ahash::AHashMap::new(),
        }
    }
}

/// Idle keys a drain examines at least, per worker; it also examines twice as many as it
/// copied, so eviction keeps up with keys arriving while no pass costs more than a small
/// multiple of the drain itself, whatever the number of keys held.
const EVICTION_BUDGET: usize = 1024;

/// One merchant's amount baseline cut at event-time boundaries: `cut` is what events of
/// interval `epoch` see, `latest` the baseline after the merchant's newest event.
#[derive(Debug, Clone, Copy)]
struct BaselineCut {
    epoch: i64,
    cut: Option<AmountBaseline>,
    latest: Option<AmountBaseline>,
}

impl Default for BaselineCut {
    fn default() -> Self {
        BaselineCut {
            epoch: i64::MIN,
            cut: None,
            latest: None,
        }
    }
}

/// The sliding-window aggregator: live per-key state, applied in batches.
///
/// `apply_batch` and `drain_changes` serialise on one lock: batches never interleave and a
/// drain always sees whole batches. Reads ([`read`](Self::read), metrics) never wait for
/// that lock.
pub struct Aggregator {
    options: AggregateOptions,
    windows: Arc<[Duration]>,
    layout: Layout,
    configured: [bool; KIND_COUNT],
    maps: [scc::HashMap<Arc<str>, KeyState, ahash::RandomState>; KIND_COUNT],
    /// One dirty list per worker; a worker only pushes keys it owns.
    dirty: Vec<Mutex<Vec<DirtyKey>>>,
    /// One idle queue per worker, holding each of the worker's keys once; only touched by
    /// drains.
    idle: Vec<Mutex<IdleQueue>>,
    /// `idle_key_ttl` in ms.
    ttl_ms: i64,
    pool: Option<rayon::ThreadPool>,
    batch: Mutex<BatchState>,
    metrics: AggregatorMetrics,
    /// The newest event time admitted by [`Aggregator::admit`]; `i64::MIN` before the first.
    watermark_ms: AtomicI64,
    /// `max_future_skew` in ms.
    max_skew_ms: i64,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("options", &self.options)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// Validates the options and starts `workers - 1` worker threads (none for 1 worker:
    /// batches are then applied on the calling thread).
    pub fn new(options: AggregateOptions) -> Result<Aggregator, AggregateError> {
        options.validate()?;
        let layout = Layout::new(
            &options.windows,
            options.distinct_window,
            options.amount_ew_alpha,
        );
        let pool = if options.workers > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(options.workers)
                .thread_name(|index| format!("aggregate-{index}"))
                .build()
                .map_err(|error| AggregateError::WorkerPool {
                    workers: options.workers,
                    reason: error.to_string(),
                })?;
            Some(pool)
        } else {
            None
        };
        let ttl_ms =
            i64::try_from(options.effective_idle_key_ttl().as_millis()).unwrap_or(i64::MAX);
        let mut configured = [false; KIND_COUNT];
        for kind in &options.kinds {
            configured[kind_index(*kind)] = true;
        }
        Ok(Aggregator {
            windows: options.windows.iter().copied().collect(),
            layout,
            configured,
            maps: std::array::from_fn(|_| scc::HashMap::with_hasher(ahash::RandomState::new())),
            dirty: (0..options.workers)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            idle: (0..options.workers)
                .map(|_| Mutex::new(IdleQueue::new(ttl_ms)))
                .collect(),
            ttl_ms,
            pool,
            batch: Mutex::new(BatchState::new()),
            metrics: AggregatorMetrics::default(),
            watermark_ms: AtomicI64::new(i64::MIN),
            max_skew_ms: i64::try_from(options.max_future_skew.as_millis()).unwrap_or(i64::MAX),
            options,
        })
    }

    /// The options this aggregator was built with.
    pub fn options(&self) -> &AggregateOptions {
        &self.options
    }

    /// The configured windows, in the order of [`WindowValues`](super::WindowValues).
    pub fn windows(&self) -> &[Duration] {
        &self.windows
    }

    /// The counters to export.
    pub fn metrics(&self) -> &AggregatorMetrics {
        &self.metrics
    }

    /// Bytes of one key's packed window state with these options (before allocator
    /// rounding, map entry and key string).
    pub fn state_bytes_per_key(&self) -> usize {
        self.layout.state_bytes()
    }

    /// Admits an event time before its event is aggregated: refused when it lies more than
    /// `max_future_skew` ahead of both `now_ms` (the wall clock) and the watermark, the
    /// newest time admitted so far; otherwise the watermark moves up to it. The wall clock
    /// keeps a live stream that was quiet for longer than the skew from refusing its next
    /// event; the watermark lets a data set dated ahead of the clock (synthetic data) run.
    /// Before any time was admitted there is no watermark and the clock alone is the
    /// reference, so that a first event dated far ahead (year 9999) cannot set the
    /// watermark and make the bound useless; a source whose times lie ahead of the clock
    /// by construction (the generator) admits its start time first, `admit(start, start)`.
    ///
    /// [`apply_batch`](Self::apply_batch) does not call it: the caller admits each event
    /// in input order (the job does so as it decodes) and turns a refusal into a dead
    /// letter, so that a refused event never reaches a key's rings. Events in the past are
    /// always admitted; the rings deal with them (see "late" in the module docs).
    pub fn admit(&self, ts_ms: i64, now_ms: i64) -> Result<(), FutureTimestamp> {
        let watermark_ms = self.watermark_ms.load(Ordering::Relaxed);
        let reference_ms = watermark_ms.max(now_ms);
        if ts_ms > reference_ms.saturating_add(self.max_skew_ms) {
            return Err(FutureTimestamp {
                ts_ms,
                watermark_ms: reference_ms,
                max_skew: self.options.max_future_skew,
            });
        }
        self.watermark_ms.fetch_max(ts_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a batch in order and returns, per event, what each of its keys looks like
    /// right after that event (the event itself included).
    ///
    /// Blocks the calling thread until the whole batch is applied; call it from a blocking
    /// context (a dedicated thread or `spawn_blocking`), not from an async task.
    pub fn apply_batch(&self, events: &[Event]) -> Vec<EventAggregates> {
        let mut batch = lock(&self.batch);
        let watermark_ms = batch.watermark_ms;
        for event in events {
            batch.watermark_ms = batch.watermark_ms.max(event.ts_ms);
            batch.global_events += 1;
            if batch.global_events == 1 {
                batch.global_mean = event.amount;
            } else {
                let (mean, var) = ew_step(
                    batch.global_mean,
                    batch.global_var,
                    event.amount,
                    GLOBAL_EW_ALPHA,
                );
                batch.global_mean = mean;
                batch.global_var = var;
            }
        }

        let mut out = vec![EventAggregates::default(); events.len()];
        match &self.pool {
            None => {
                let mut dirty = lock(&self.dirty[0]);
                self.run_worker(
                    0,
                    events,
                    watermark_ms,
                    &mut dirty,
                    |event, kind, values| {
                        out[event].set(kind, values);
                    },
                );
            }
            Some(pool) => {
                let parts = pool.broadcast(|context| {
                    let worker = context.index();
                    let mut part = Vec::with_capacity(events.len() * self.options.kinds.len());
                    let mut dirty = lock(&self.dirty[worker]);
                    self.run_worker(
                        worker,
                        events,
                        watermark_ms,
                        &mut dirty,
                        |event, kind, values| {
                            part.push((event, kind, values));
                        },
                    );
                    part
                });
                for (event, kind, values) in parts.into_iter().flatten() {
                    out[event].set(kind, values);
                }
            }
        }
        if self.configured[kind_index(EntityKind::Merchant)] {
            self.cut_merchant_baselines(&mut batch, events, &mut out);
        }
        drop(batch);

        let late = out.iter().filter(|event| event.is_late()).count() as u64;
        self.metrics.late_events.fetch_add(late, Ordering::Relaxed);
        self.metrics
            .events_applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        out
    }

    /// Gives each event its merchant's baseline as of the last event-time boundary before
    /// it. Runs in batch order after the workers, so it sees each merchant's events in the
    /// order they were applied; the result depends on event times and that order only.
    fn cut_merchant_baselines(
        &self,
        batch: &mut BatchState,
        events: &[Event],
        out: &mut [EventAggregates],
    ) {
        let interval = (self.options.baseline_interval.as_millis() as i64).max(1);
        let merchant = kind_index(EntityKind::Merchant);
        for (event, aggregates) in events.iter().zip(out.iter_mut()) {
            let (Some(id), Some(values)) = (
                key_of(event, EntityKind::Merchant),
                aggregates.by_kind[merchant],
            ) else {
                continue;
            };
            // A merchant new to the state, or back after `idle_key_ttl` and started again,
            // starts its baseline again too, whether or not its old cut was evicted yet.
            let fresh = values.previous_last_seen_ms.is_none();
            if let Some(entry) = batch.merchant_cuts.get_mut(id) {
                if fresh {
                    *entry = BaselineCut::default();
                }
            } else {
                batch
                    .merchant_cuts
                    .insert(Arc::from(id), BaselineCut::default());
            }
            let Some(entry) = batch.merchant_cuts.get_mut(id) else {
                continue;
            };
            let epoch = event.ts_ms.div_euclid(interval);
            if epoch > entry.epoch {
                entry.cut = entry.latest;
                entry.epoch = epoch;
            }
            aggregates.merchant_baseline = entry.cut;
            entry.latest = Some(AmountBaseline {
                mean: values.amount_mean,
                std: values.amount_std,
            });
        }
    }

    /// One worker's pass over the batch: applies the updates of the keys it owns, in batch
    /// order, and hands each result to `emit(event index, kind index, values)`.
    /// `watermark_ms` is the newest event time applied before the batch; each event is
    /// measured against the newest time up to and including itself.
    fn run_worker(
        &self,
        worker: usize,
        events: &[Event],
        mut watermark_ms: i64,
        dirty: &mut Vec<DirtyKey>,
        mut emit: impl FnMut(usize, usize, KeyValues),
    ) {
        for (index, event) in events.iter().enumerate() {
            watermark_ms = watermark_ms.max(event.ts_ms);
            let idle_before_ms = watermark_ms.saturating_sub(self.ttl_ms);
            let mut update = None;
            for &kind in &self.options.kinds {
                let Some(id) = key_of(event, kind) else {
                    continue;
                };
                if self.owner(kind, id) != worker {
                    continue;
                }
                let update = update.get_or_insert_with(|| Update::from_event(&self.layout, event));
                let values = self.apply_one(kind, id, update, idle_before_ms, dirty);
                emit(index, kind_index(kind), values);
            }
        }
    }

    fn owner(&self, kind: EntityKind, id: &str) -> usize {
        let workers = self.options.workers as u64;
        if workers == 1 {
            return 0;
        }
        (OWNER_HASHER.hash_one((kind_index(kind) as u8, id)) % workers) as usize
    }

    /// Applies one event to one key. A key whose newest event is older than
    /// `idle_before_ms` (the watermark minus the TTL) starts again as a new key, exactly as
    /// if it had been evicted already: whether a drain evicted it in time then makes no
    /// difference to what the event sees.
    fn apply_one(
        &self,
        kind: EntityKind,
        id: &str,
        update: &Update,
        idle_before_ms: i64,
        dirty: &mut Vec<DirtyKey>,
    ) -> KeyValues {
        let map = &self.maps[kind_index(kind)];
        let layout = &self.layout;
        let mut note_dirty = |key: &Arc<str>, state: &mut KeyState| {
            if state.mark_dirty() {
                dirty.push((kind, Arc::clone(key)));
            }
        };
        // The common case looks the key up by `&str`, so a known key costs no allocation.
        let existing = map.update_sync(id, |key, state| {
            let values = if state.last_seen_ms() < idle_before_ms {
                state.restart(layout, update)
            } else {
                state.apply(layout, update)
            };
            note_dirty(key, state);
            values
        });
        if let Some(values) = existing {
            return values;
        }
        match map.entry_sync(Arc::from(id)) {
            scc::hash_map::Entry::Occupied(mut entry) => {
                // Unreachable while batches are serialised (only this worker inserts its
                // keys); applying here still keeps the event rather than dropping it.
                let state = entry.get_mut();
                let values = if state.last_seen_ms() < idle_before_ms {
                    state.restart(layout, update)
                } else {
                    state.apply(layout, update)
                };
                let key = Arc::clone(entry.key());
                note_dirty(&key, entry.get_mut());
                values
            }
            scc::hash_map::Entry::Vacant(entry) => {
                let (mut state, values) = KeyState::new(layout, update);
                let key = Arc::clone(entry.key());
                note_dirty(&key, &mut state);
                entry.insert_entry(state);
                self.metrics.keys[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
                values
            }
        }
    }

    /// The current values of one key, or `None` if it was never seen (or its kind is not
    /// configured). Never waits for a running batch except on that key's map bucket.
    pub fn read(&self, kind: EntityKind, id: &str) -> Option<KeySnapshot> {
        if !self.configured[kind_index(kind)] {
            return None;
        }
        self.maps[kind_index(kind)].read_sync(id, |_, state| state.snapshot(&self.layout))
    }

    /// Copies the values of every key changed since the previous drain and marks them
    /// clean, then evicts keys idle for longer than `idle_key_ttl` (see "Idle keys" in
    /// the module docs).
    ///
    /// Runs between batches (it takes the batch lock), so the change set is a consistent
    /// cut: every key as of the end of the same batch. Its cost grows with the keys
    /// changed, not with all keys, and it is the only part of publishing a snapshot that
    /// holds up `apply_batch`; with several workers each copies its own keys in parallel.
    /// Eviction examines at most [`EVICTION_BUDGET`] keys plus twice the keys copied per
    /// worker; idle keys beyond that wait for the next drain.
    pub fn drain_changes(&self) -> ChangeSet {
        let started = Instant::now();
        let mut batch = lock(&self.batch);
        batch.drains += 1;
        let idle_before_ms = batch.watermark_ms.saturating_sub(self.ttl_ms);
        let parts = match &self.pool {
            None => vec![self.drain_worker(0, idle_before_ms)],
            Some(pool) => {
                pool.broadcast(|context| self.drain_worker(context.index(), idle_before_ms))
            }
        };
        let mut keys = Vec::with_capacity(parts.len());
        let mut evicted = Vec::new();
        for (changed, gone) in parts {
            keys.push(changed);
            evicted.extend(gone);
        }
        for (kind, id) in &evicted {
            self.metrics.keys[kind_index(*kind)].fetch_sub(1, Ordering::Relaxed);
            self.metrics.keys_evicted[kind_index(*kind)].fetch_add(1, Ordering::Relaxed);
            if *kind == EntityKind::Merchant {
                batch.merchant_cuts.remove(&**id);
            }
        }
        ChangeSet {
            seq: batch.drains,
            keys,
            evicted,
            global: AmountBaseline {
                mean: batch.global_mean,
                std: batch.global_var.max(0.0).sqrt(),
            },
            global_events: batch.global_events,
            windows: Arc::clone(&self.windows),
            drained_in: started.elapsed(),
        }
    }

    /// One worker's share of a drain: copies its changed keys (queueing keys new to the
    /// idle queue), then evicts its keys whose newest event is older than `idle_before_ms`.
    fn drain_worker(&self, worker: usize, idle_before_ms: i64) -> (Vec<ChangedKey>, Vec<DirtyKey>) {
        let dirty = std::mem::take(&mut *lock(&self.dirty[worker]));
        let mut idle = lock(&self.idle[worker]);
        let mut changed = Vec::with_capacity(dirty.len());
        for (kind, id) in dirty {
            let values = self.maps[kind_index(kind)].update_sync(&*id, |_, state| {
                state.clear_dirty();
                (state.snapshot(&self.layout), state.mark_queued())
            });
            // Keys are only removed by drains, after this copy, so a dirty key is found.
            if let Some((values, unqueued)) = values {
                if unqueued {
                    idle.push((kind, Arc::clone(&id)), values.last_seen_ms);
                }
                changed.push((kind, id, values));
            }
        }
        let mut evicted = Vec::new();
        let budget = EVICTION_BUDGET.saturating_add(changed.len().saturating_mul(2));
        idle.pop_due(idle_before_ms, budget, |(kind, id)| {
            let map = &self.maps[kind_index(*kind)];
            if map
                .remove_if_sync(&**id, |state| state.last_seen_ms() < idle_before_ms)
                .is_some()
            {
                evicted.push((*kind, Arc::clone(id)));
                return None;
            }
            map.read_sync(&**id, |_, state| state.last_seen_ms())
        });
        (changed, evicted)
    }
}

impl Aggregator {
    /// What a captured state is only valid with (see [`StateLayout`]).
    pub fn state_layout(&self) -> StateLayout {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        StateLayout {
            words_format: StateLayout::WORDS_FORMAT,
            kinds: self.options.kinds.clone(),
            windows_ms: self.options.windows.iter().map(|w| ms(*w)).collect(),
            distinct_window_ms: ms(self.options.distinct_window),
            amount_ew_alpha_bits: self.options.amount_ew_alpha.to_bits(),
            baseline_interval_ms: ms(self.options.baseline_interval),
            words_per_key: self.layout.words() as u32,
        }
    }

    /// Copies the whole state at a batch boundary (it takes the batch lock, so no batch
    /// runs meanwhile): every key of every kind, the watermark, the global baseline and
    /// the merchant baseline cuts. Call it right after [`drain_changes`](Self::drain_changes)
    /// on the aggregating thread and the copy is the drain's cut. Costs one pass over all
    /// keys (a memory copy of their words), which holds up the next batch.
    pub fn capture_state(&self) -> AggregateState {
        let batch = lock(&self.batch);
        let words_per_key = self.layout.words();
        let kinds = self
            .options
            .kinds
            .iter()
            .map(|&kind| {
                let map = &self.maps[kind_index(kind)];
                let keys = map.len();
                let mut state = KindState {
                    kind,
                    ids: String::with_capacity(keys * 12),
                    id_lens: Vec::with_capacity(keys),
                    words: Vec::with_capacity(keys * words_per_key),
                };
                map.iter_sync(|id, key| {
                    state.ids.push_str(id);
                    state.id_lens.push(id.len() as u32);
                    key.export(&mut state.words);
                    true
                });
                state
            })
            .collect();
        let pair = |b: Option<AmountBaseline>| b.map(|b| (b.mean, b.std));
        let merchant_cuts = batch
            .merchant_cuts
            .iter()
            .map(|(id, cut)| MerchantCut {
                id: id.to_string(),
                epoch: cut.epoch,
                cut: pair(cut.cut),
                latest: pair(cut.latest),
            })
            .collect();
        AggregateState {
            layout: self.state_layout(),
            watermark_ms: batch.watermark_ms,
            global_mean: batch.global_mean,
            global_var: batch.global_var,
            global_events: batch.global_events,
            kinds,
            merchant_cuts,
        }
    }

    /// Loads a captured state into this aggregator, which must not have applied a batch
    /// yet. Every restored key counts as changed, so the next drain (and snapshot) holds
    /// all of them and queues them for the idle-key check. The far-future bound's
    /// watermark becomes the state's. Refused, leaving this aggregator as it was, when the
    /// state was captured with another layout (naming the configuration key) or is not
    /// whole.
    pub fn restore_state(&self, state: AggregateState) -> Result<(), RestoreError> {
        if let Some(mismatch) = state.layout.mismatch(&self.state_layout()) {
            return Err(RestoreError::Layout(mismatch));
        }
        let mut batch = lock(&self.batch);
        if batch.global_events != 0 || self.metrics.keys_tracked() != 0 {
            return Err(RestoreError::NotFresh);
        }
        let words_per_key = self.layout.words();
        // Everything is checked before anything is inserted.
        let mut parsed = Vec::with_capacity(state.kinds.len());
        for kind_state in &state.kinds {
            let damaged = |problem: String| RestoreError::Damaged {
                kind: kind_state.kind.to_string(),
                problem,
            };
            if !self.configured[kind_index(kind_state.kind)] {
                return Err(damaged("the kind is not configured".into()));
            }
            let keys = kind_state.id_lens.len();
            if kind_state.words.len() != keys.saturating_mul(words_per_key) {
                return Err(damaged(format!(
                    "{} words for {keys} keys of {words_per_key} words",
                    kind_state.words.len()
                )));
            }
            let mut ids = Vec::with_capacity(keys);
            let mut at = 0usize;
            for &len in &kind_state.id_lens {
                let end = at.saturating_add(len as usize);
                let id = kind_state
                    .ids
                    .get(at..end)
                    .ok_or_else(|| damaged(format!("id lengths overrun the ids at byte {at}")))?;
                ids.push(id);
                at = end;
            }
            if at != kind_state.ids.len() {
                return Err(damaged("ids left over after the last id".into()));
            }
            parsed.push((kind_state.kind, ids));
        }
        for ((kind, ids), kind_state) in parsed.into_iter().zip(&state.kinds) {
            let map = &self.maps[kind_index(kind)];
            for (id, words) in ids.into_iter().zip(kind_state.words.chunks(words_per_key)) {
                let Some(mut key) = KeyState::import(&self.layout, words) else {
                    continue;
                };
                key.mark_dirty();
                let id: Arc<str> = Arc::from(id);
                let owner = self.owner(kind, &id);
                if map.insert_sync(Arc::clone(&id), key).is_ok() {
                    lock(&self.dirty[owner]).push((kind, id));
                    self.metrics.keys[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let baseline =
            |pair: Option<(f64, f64)>| pair.map(|(mean, std)| AmountBaseline { mean, std });
        batch.merchant_cuts = state
            .merchant_cuts
            .into_iter()
            .map(|cut| {
                let value = BaselineCut {
                    epoch: cut.epoch,
                    cut: baseline(cut.cut),
                    latest: baseline(cut.latest),
                };
                (Arc::from(cut.id.as_str()), value)
            })
            .collect();
        batch.watermark_ms = state.watermark_ms;
        batch.global_mean = state.global_mean;
        batch.global_var = state.global_var;
        batch.global_events = state.global_events;
        self.watermark_ms
            .fetch_max(state.watermark_ms, Ordering::Relaxed);
        Ok(())
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked: the batch lock
/// guards plain counters and the dirty lists only ever grow by whole entries.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts_ms: i64, account: &str, device: Option<&str>, amount: f64) -> Event {
        Event {
            device_id: device.map(str::to_string),
            ..Event::bare(&format!("e-{ts_ms}"), ts_ms, account, amount)
        }
    }

    #[test]
    fn an_event_far_ahead_of_the_watermark_is_refused_and_leaves_the_windows_moving() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let start = 1_700_000_000_000;
        let far = 253_370_764_800_000; // 9999-01-01T00:00:00Z
        aggregator.admit(start, start).unwrap();
        aggregator.apply_batch(&[event(start, "V", None, 1.0)]);
        assert_eq!(
            aggregator.admit(far, 0),
            Err(FutureTimestamp {
                ts_ms: far,
                watermark_ms: start,
                max_skew: Duration::from_secs(3600),
            })
        );
        for i in 1..=20 {
            let ts = start + i * 1000;
            aggregator.admit(ts, 0).expect("a second later is admitted");
            let out = aggregator.apply_batch(&[event(ts, "V", None, 1.0)]);
            let account = out[0].get(EntityKind::Account).unwrap();
            assert_eq!(account.windows.count(0), i as u32 + 1);
            assert!(!account.late);
        }
        // Exactly the skew ahead is still admitted, and moves the watermark.
        aggregator.admit(start + 20_000 + 3_600_000, 0).unwrap();
        assert!(aggregator.admit(start + 20_001 + 2 * 3_600_000, 0).is_err());
        // The past is always admitted.
        aggregator.admit(0, 0).unwrap();
    }

    #[test]
    fn a_live_stream_quiet_for_longer_than_the_skew_admits_its_next_event() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let last = 1_700_000_000_000;
        let now = last + 5 * 3_600_000;
        aggregator.admit(last, now).unwrap();
        // Four hours of silence, then an event at the current time: admitted.
        aggregator
            .admit(now - 60_000, now)
            .expect("an event of now is admitted");
        // Still refused: more than the skew ahead of the clock as well.
        assert!(aggregator.admit(now + 3_600_001, now).is_err());
    }

    #[test]
    fn a_first_event_far_ahead_of_the_clock_is_refused_and_sets_no_watermark() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let now = 1_700_000_000_000;
        let far = 253_370_764_800_000; // 9999-01-01T00:00:00Z
        assert_eq!(
            aggregator.admit(far, now),
            Err(FutureTimestamp {
                ts_ms: far,
                watermark_ms: now,
                max_skew: Duration::from_secs(3600),
            })
        );
        for i in 1..=20 {
            let ts = now + i * 1000;
            aggregator
                .admit(ts, now)
                .expect("a second later is admitted");
            let out = aggregator.apply_batch(&[event(ts, "V", None, 1.0)]);
            let account = out[0].get(EntityKind::Account).unwrap();
            assert_eq!(account.windows.count(0), i as u32);
            assert!(!account.late);
        }
        assert!(aggregator.admit(far, now).is_err());
    }

    #[test]
    fn a_start_time_admitted_first_lets_times_ahead_of_the_clock_run() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let start = 253_370_764_800_000;
        aggregator.admit(start, start).unwrap();
        aggregator.admit(start + 1000, 0).unwrap();
        assert!(aggregator.admit(start + 1000 + 3_600_001, 0).is_err());
    }

    fn at_merchant(ts_ms: i64, amount: f64) -> Event {
        Event {
            merchant_id: Some("M-1".to_string()),
            ..event(ts_ms, "A-1", None, amount)
        }
    }

    fn baselines(batches: &[&[Event]]) -> Vec<Option<AmountBaseline>> {
        let aggregator = Aggregator::new(AggregateOptions {
            baseline_interval: Duration::from_secs(2),
            ..AggregateOptions::default()
        })
        .unwrap();
        batches
            .iter()
            .flat_map(|batch| aggregator.apply_batch(batch))
            .map(|aggregates| aggregates.merchant_baseline().copied())
            .collect()
    }

    #[test]
    fn merchant_baselines_are_cut_at_event_time_boundaries_whatever_the_batches() {
        let events: Vec<Event> = [
            (100, 10.0),
            (900, 20.0),
            (2_100, 30.0),
            (2_500, 40.0),
            (4_000, 50.0),
        ]
        .into_iter()
        .map(|(ts, amount)| at_merchant(ts, amount))
        .collect();
        let whole = baselines(&[&events]);
        let one_by_one: Vec<&[Event]> = events.chunks(1).collect();
        let uneven: Vec<&[Event]> = vec![&events[..3], &events[3..]];
        assert_eq!(whole, baselines(&one_by_one));
        assert_eq!(whole, baselines(&uneven));
        // Nothing before the merchant's first boundary; events of one interval see the
        // baseline of everything before that interval, not each other.
        assert_eq!(whole[0], None);
        assert_eq!(whole[1], None);
        assert!(whole[2].is_some());
        assert_eq!(whole[2], whole[3]);
        assert_ne!(whole[3], whole[4]);
    }

    #[test]
    fn each_event_sees_its_keys_including_itself() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let out = aggregator.apply_batch(&[
            event(1_000, "A-1", Some("D-1"), 10.0),
            event(2_000, "A-1", None, 5.0),
            event(3_000, "A-2", Some("D-1"), 1.0),
        ]);
        let account = |i: usize| out[i].get(EntityKind::Account).unwrap();
        assert_eq!(account(0).windows.count(0), 1);
        assert_eq!(account(1).windows.sum(0), 15.0);
        assert_eq!(account(1).previous_last_seen_ms, Some(1_000));
        assert_eq!(account(2).windows.count(0), 1);
        assert!(out[1].get(EntityKind::Device).is_none());
        assert_eq!(out[2].get(EntityKind::Device).unwrap().windows.sum(2), 11.0);
        assert!(out[0].get(EntityKind::Merchant).is_none());
        assert_eq!(aggregator.metrics().keys_tracked(), 3);
        assert_eq!(aggregator.metrics().events_applied(), 3);
    }

    #[test]
    fn unconfigured_kinds_are_neither_tracked_nor_reported() {
        let options = AggregateOptions {
            kinds: vec![EntityKind::Device],
            ..AggregateOptions::default()
        };
        let aggregator = Aggregator::new(options).unwrap();
        let out = aggregator.apply_batch(&[event(1, "A-1", Some("D-1"), 1.0)]);
        assert!(out[0].get(EntityKind::Account).is_none());
        assert!(out[0].get(EntityKind::Device).is_some());
        assert_eq!(aggregator.read(EntityKind::Account, "A-1"), None);
        assert_eq!(aggregator.metrics().keys_tracked(), 1);
    }

    #[test]
    fn per_key_order_holds_across_batches_with_several_workers() {
        let options = AggregateOptions {
            workers: 3,
            ..AggregateOptions::default()
        };
        let aggregator = Aggregator::new(options).unwrap();
        for batch in 0..5i64 {
            let events: Vec<Event> = (0..20)
                .map(|i| event(batch * 100 + i, &format!("A-{}", i % 4), None, 1.0))
                .collect();
            let out = aggregator.apply_batch(&events);
            for (i, result) in out.iter().enumerate() {
                let account = result.get(EntityKind::Account).unwrap();
                let expected = batch * 5 + i as i64 / 4 + 1;
                assert_eq!(i64::from(account.windows.count(0)), expected);
            }
        }
    }

    #[test]
    fn late_events_are_flagged_and_counted() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let day = 86_400_000;
        let out = aggregator.apply_batch(&[
            event(3 * day, "A-1", None, 1.0),
            event(day, "A-1", None, 1.0),
            event(day, "A-2", None, 1.0),
        ]);
        assert!(!out[0].is_late());
        assert!(out[1].is_late());
        assert_eq!(out[1].get(EntityKind::Account).unwrap().windows.count(2), 1);
        assert!(!out[2].is_late(), "a new key is never late");
        assert_eq!(aggregator.metrics().late_events(), 1);
    }

    #[test]
    fn drain_returns_each_changed_key_once_and_then_nothing() {
        let options = AggregateOptions {
            workers: 2,
            ..AggregateOptions::default()
        };
        let aggregator = Aggregator::new(options).unwrap();
        aggregator.apply_batch(&[
            event(1, "A-1", Some("D-1"), 1.0),
            event(2, "A-1", Some("D-1"), 2.0),
            event(3, "A-2", None, 3.0),
        ]);
        let changes = aggregator.drain_changes();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes.seq(), 1);
        let account = changes
            .keys
            .iter()
            .flatten()
            .find(|(kind, id, _)| *kind == EntityKind::Account && &**id == "A-1")
            .unwrap();
        assert_eq!(account.2.windows.sum(0), 3.0);
        assert!(aggregator.drain_changes().is_empty());
        aggregator.apply_batch(&[event(4, "A-2", None, 1.0)]);
        let changes = aggregator.drain_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes.seq(), 3);
    }

    const HOUR: i64 = 3_600_000;

    /// A day of traffic, then hours of silence, and so on: keys go idle for longer than
    /// every window (24 h) and come back, some events slightly out of order.
    fn idle_and_busy_stream() -> Vec<Event> {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut ts = 1_700_000_000_000;
        let mut events = Vec::new();
        for i in 0..3_000 {
            ts += if next(400) == 0 {
                30 * HOUR
            } else {
                next(120_000) as i64
            };
            let account = format!("A-{}", next(40));
            events.push(Event {
                event_id: format!("e-{i}"),
                // Up to a minute out of order.
                ts_ms: ts - next(60_000) as i64,
                counterparty_id: Some(format!("C-{}", next(30))),
                merchant_id: Some(format!("M-{}", next(4))),
                device_id: Some(format!("D-{}", next(12))),
                ip: Some(format!("10.0.0.{}", next(8))),
                country: Some(["DE", "FR", "NL"][next(3) as usize].to_string()),
                ..event(0, &account, None, 1.0 + next(500) as f64)
            });
        }
        events
    }

    fn with_ttl(ttl: Duration) -> Aggregator {
        Aggregator::new(AggregateOptions {
            idle_key_ttl: Some(ttl),
            workers: 2,
            ..AggregateOptions::default()
        })
        .unwrap()
    }

    /// Applies the events in batches of `batch`, draining after every `drain_every`
    /// batches (never when 0).
    fn run(
        aggregator: &Aggregator,
        events: &[Event],
        batch: usize,
        drain_every: usize,
    ) -> Vec<EventAggregates> {
        let mut out = Vec::new();
        for (i, chunk) in events.chunks(batch).enumerate() {
            out.extend(aggregator.apply_batch(chunk));
            if drain_every > 0 && i % drain_every == 0 {
                aggregator.drain_changes();
            }
        }
        out
    }

    #[test]
    fn a_key_idle_longer_than_every_window_gets_the_same_windows_with_or_without_eviction() {
        let events = idle_and_busy_stream();
        let evicting = with_ttl(Duration::from_secs(25 * 3_600));
        let keeping = with_ttl(Duration::from_secs(u64::MAX));
        let with = run(&evicting, &events, 16, 1);
        let without = run(&keeping, &events, 16, 1);
        assert!(
            evicting.metrics().keys_evicted_total() > 0,
            "the stream must make keys idle"
        );
        assert_eq!(keeping.metrics().keys_evicted_total(), 0);
        let mut restarted = 0;
        for (i, (with, without)) in with.iter().zip(&without).enumerate() {
            for ((kind, a), (_, b)) in with.iter().zip(without.iter()) {
                // What eviction may forget; everything with a window must agree.
                assert_eq!(
                    (a.windows, a.distinct_counterparties, a.late),
                    (b.windows, b.distinct_counterparties, b.late),
                    "event {i}, {kind:?}"
                );
                if a.previous_last_seen_ms.is_none() && b.previous_last_seen_ms.is_some() {
                    restarted += 1;
                }
            }
        }
        assert!(restarted > 0, "some keys must come back after eviction");
    }

    #[test]
    fn results_do_not_depend_on_when_or_whether_drains_evict() {
        let events = idle_and_busy_stream();
        let ttl = Duration::from_secs(25 * 3_600);
        let often = with_ttl(ttl);
        let never = with_ttl(ttl);
        let rarely = with_ttl(ttl);
        let a = run(&often, &events, 7, 1);
        let b = run(&never, &events, 64, 0);
        let c = run(&rarely, &events, 1, 500);
        assert!(often.metrics().keys_evicted_total() > 0);
        assert_eq!(never.metrics().keys_evicted_total(), 0);
        assert!(
            a == b,
            "draining and evicting must not change any event's aggregates"
        );
        assert!(
            a == c,
            "batch sizes and drain times must not change any event's aggregates"
        );
    }

    #[test]
    fn an_evicted_key_that_comes_back_is_indistinguishable_from_a_new_key() {
        let ttl = Duration::from_secs(48 * 3_600);
        let aggregator = with_ttl(ttl);
        let t0 = 1_700_000_000_000;
        let at = |ts: i64, account: &str, amount: f64| Event {
            merchant_id: Some("M-1".to_string()),
            counterparty_id: Some("C-1".to_string()),
            country: Some("DE".to_string()),
            device_id: Some("D-1".to_string()),
            ..event(ts, account, None, amount)
        };
        // A history for A-1 and M-1, with merchant baselines cut.
        for i in 0..20 {
            aggregator.apply_batch(&[at(t0 + i * 10_000, "A-1", 100.0 + i as f64)]);
        }
        // Another key keeps the watermark moving past A-1's TTL, then a drain evicts.
        aggregator.apply_batch(&[event(t0 + 50 * HOUR, "A-2", None, 1.0)]);
        aggregator.drain_changes();
        assert_eq!(aggregator.read(EntityKind::Account, "A-1"), None);
        assert_eq!(aggregator.read(EntityKind::Merchant, "M-1"), None);
        let back = at(t0 + 51 * HOUR, "A-1", 7.0);
        let seen = aggregator.apply_batch(std::slice::from_ref(&back));
        let fresh = with_ttl(ttl).apply_batch(&[back]);
        assert_eq!(seen, fresh);
    }

    #[test]
    fn keys_idle_past_the_ttl_are_evicted_and_the_live_key_count_drops() {
        let aggregator = with_ttl(Duration::from_secs(48 * 3_600));
        let t0 = 1_700_000_000_000;
        let batch: Vec<Event> = (0..3_000)
            .map(|i| Event {
                merchant_id: Some(format!("M-{}", i % 10)),
                ..event(
                    t0 + i,
                    &format!("A-{i}"),
                    Some(&format!("D-{}", i % 100)),
                    1.0,
                )
            })
            .collect();
        aggregator.apply_batch(&batch);
        aggregator.drain_changes();
        let metrics = aggregator.metrics();
        assert_eq!(metrics.keys(EntityKind::Account), 3_000);
        assert_eq!(metrics.keys_tracked(), 3_110);
        // A day later nothing is idle yet.
        aggregator.apply_batch(&[event(t0 + 24 * HOUR, "B-1", None, 1.0)]);
        assert_eq!(aggregator.drain_changes().evicted(), 0);
        // Past the TTL: each drain evicts a bounded share, until all old keys are gone.
        aggregator.apply_batch(&[event(t0 + 49 * HOUR, "B-2", None, 1.0)]);
        let first = aggregator.drain_changes().evicted();
        assert!(first > 0 && first < 3_110, "one pass is bounded: {first}");
        let mut drains = 1;
        while metrics.keys_evicted_total() < 3_110 {
            assert!(
                aggregator.drain_changes().evicted() > 0,
                "every drain makes progress"
            );
            drains += 1;
            assert!(drains < 10);
        }
        assert_eq!(metrics.keys_evicted(EntityKind::Account), 3_000);
        assert_eq!(metrics.keys_evicted(EntityKind::Device), 100);
        assert_eq!(metrics.keys_evicted(EntityKind::Merchant), 10);
        assert_eq!(metrics.keys(EntityKind::Account), 2, "B-1 and B-2 are live");
        assert_eq!(metrics.keys_tracked(), 2);
        assert_eq!(aggregator.read(EntityKind::Device, "D-5"), None);
        assert!(aggregator.read(EntityKind::Account, "B-2").is_some());
    }

    #[test]
    fn global_baseline_tracks_all_events() {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        aggregator.apply_batch(&[event(1, "A-1", None, 10.0), event(2, "A-2", None, 10.0)]);
        let changes = aggregator.drain_changes();
        assert_eq!(
            changes.global,
            AmountBaseline {
                mean: 10.0,
                std: 0.0
            }
        );
        assert_eq!(changes.global_events, 2);
    }

    #[test]
    fn a_restored_state_gives_the_later_events_exactly_the_aggregates_of_an_uninterrupted_run() {
        let events = idle_and_busy_stream();
        let (before, after) = events.split_at(1_700);
        let uninterrupted = with_ttl(Duration::from_secs(30 * 3600));
        run(&uninterrupted, before, 64, 3);
        let expected = run(&uninterrupted, after, 64, 3);

        let first = with_ttl(Duration::from_secs(30 * 3600));
        run(&first, before, 100, 2);
        first.drain_changes();
        let state = first.capture_state();
        assert!(state.keys() > 50 && !state.merchant_cuts.is_empty());
        // Another number of workers owns the keys differently; the results must not care.
        let restored = Aggregator::new(AggregateOptions {
            idle_key_ttl: Some(Duration::from_secs(30 * 3600)),
            workers: 3,
            ..AggregateOptions::default()
        })
        .unwrap();
        restored.restore_state(state.clone()).unwrap();
        assert_eq!(restored.metrics().keys_tracked() as usize, state.keys());
        // Every restored key is in the next drain, so the next snapshot holds them all.
        assert_eq!(restored.drain_changes().len(), state.keys());
        // The far-future bound starts from the restored watermark, not from nothing.
        let newest = before.iter().map(|e| e.ts_ms).max().unwrap();
        assert!(restored.admit(newest + 2 * HOUR, 0).is_err());
        assert!(restored.admit(newest + HOUR / 2, 0).is_ok());
        assert_eq!(run(&restored, after, 64, 3), expected);
        // A second restore into the same aggregator is refused.
        assert_eq!(restored.restore_state(state), Err(RestoreError::NotFresh));
    }

    #[test]
    fn a_state_captured_with_other_windows_is_refused_naming_the_key() {
        let first = Aggregator::new(AggregateOptions::default()).unwrap();
        first.apply_batch(&[event(1, "A-1", None, 1.0)]);
        let state = first.capture_state();
        let other = Aggregator::new(AggregateOptions {
            windows: vec![Duration::from_secs(60), Duration::from_secs(3600)],
            ..AggregateOptions::default()
        })
        .unwrap();
        let Err(RestoreError::Layout(mismatch)) = other.restore_state(state.clone()) else {
            panic!("restored a state of other windows");
        };
        assert_eq!(mismatch.key, "aggregate.windows");
        assert_eq!(mismatch.checkpoint, "[1m, 1h, 24h]");
        assert_eq!(other.metrics().keys_tracked(), 0, "nothing was restored");
        let fewer_keys = Aggregator::new(AggregateOptions {
            kinds: vec![EntityKind::Account],
            ..AggregateOptions::default()
        })
        .unwrap();
        let Err(RestoreError::Layout(mismatch)) = fewer_keys.restore_state(state) else {
            panic!("restored a state of other keys");
        };
        assert_eq!(mismatch.key, "aggregate.keys");
    }

    #[test]
    fn a_state_whose_ids_do_not_add_up_is_refused_and_nothing_restored() {
        let first = Aggregator::new(AggregateOptions::default()).unwrap();
        first.apply_batch(&[
            event(1, "A-1", Some("D-1"), 1.0),
            event(2, "A-2", None, 1.0),
        ]);
        let mut state = first.capture_state();
        state.kinds[0].id_lens[0] += 10;
        let other = Aggregator::new(AggregateOptions::default()).unwrap();
        assert!(matches!(
            other.restore_state(state),
            Err(RestoreError::Damaged { .. })
        ));
        assert_eq!(other.metrics().keys_tracked(), 0);
    }
}
