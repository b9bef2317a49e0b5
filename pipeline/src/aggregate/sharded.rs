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

use super::options::{AggregateError, AggregateOptions};
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

/// Counters the job exports as metrics. Monotonic, updated once per batch (keys tracked:
/// once per new key).
#[derive(Debug, Default)]
pub struct AggregatorMetrics {
    keys_tracked: AtomicU64,
    late_events: AtomicU64,
    events_applied: AtomicU64,
}

impl AggregatorMetrics {
    /// Distinct keys held in the live state, over all kinds.
    pub fn keys_tracked(&self) -> u64 {
        self.keys_tracked.load(Ordering::Relaxed)
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

/// A key named in a dirty list: changed since the last drain.
type DirtyKey = (EntityKind, Arc<str>);

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

    /// Whether nothing changed since the previous drain.
    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(Vec::is_empty)
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
#[derive(Debug, Default)]
struct BatchState {
    global_mean: f64,
    global_var: f64,
    global_events: u64,
    drains: u64,
    /// Per merchant: its baseline at the last event-time boundary and its newest one.
    merchant_cuts: ahash::AHashMap<Arc<str>, BaselineCut>,
}

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
            pool,
            batch: Mutex::new(BatchState::default()),
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
        for event in events {
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
                self.run_worker(0, events, &mut dirty, |event, kind, values| {
                    out[event].set(kind, values);
                });
            }
            Some(pool) => {
                let parts = pool.broadcast(|context| {
                    let worker = context.index();
                    let mut part = Vec::with_capacity(events.len() * self.options.kinds.len());
                    let mut dirty = lock(&self.dirty[worker]);
                    self.run_worker(worker, events, &mut dirty, |event, kind, values| {
                        part.push((event, kind, values));
                    });
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
            if !batch.merchant_cuts.contains_key(id) {
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
    fn run_worker(
        &self,
        worker: usize,
        events: &[Event],
        dirty: &mut Vec<DirtyKey>,
        mut emit: impl FnMut(usize, usize, KeyValues),
    ) {
        for (index, event) in events.iter().enumerate() {
            let mut update = None;
            for &kind in &self.options.kinds {
                let Some(id) = key_of(event, kind) else {
                    continue;
                };
                if self.owner(kind, id) != worker {
                    continue;
                }
                let update = update.get_or_insert_with(|| Update::from_event(&self.layout, event));
                let values = self.apply_one(kind, id, update, dirty);
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

    fn apply_one(
        &self,
        kind: EntityKind,
        id: &str,
        update: &Update,
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
            let values = state.apply(layout, update);
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
                let values = entry.get_mut().apply(layout, update);
                let key = Arc::clone(entry.key());
                note_dirty(&key, entry.get_mut());
                values
            }
            scc::hash_map::Entry::Vacant(entry) => {
                let (mut state, values) = KeyState::new(layout, update);
                let key = Arc::clone(entry.key());
                note_dirty(&key, &mut state);
                entry.insert_entry(state);
                self.metrics.keys_tracked.fetch_add(1, Ordering::Relaxed);
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
    /// clean.
    ///
    /// Runs between batches (it takes the batch lock), so the change set is a consistent
    /// cut: every key as of the end of the same batch. Its cost grows with the keys
    /// changed, not with all keys, and it is the only part of publishing a snapshot that
    /// holds up `apply_batch`; with several workers each copies its own keys in parallel.
    pub fn drain_changes(&self) -> ChangeSet {
        let started = Instant::now();
        let mut batch = lock(&self.batch);
        batch.drains += 1;
        let keys = match &self.pool {
            None => vec![self.drain_worker(0)],
            Some(pool) => pool.broadcast(|context| self.drain_worker(context.index())),
        };
        ChangeSet {
            seq: batch.drains,
            keys,
            global: AmountBaseline {
                mean: batch.global_mean,
                std: batch.global_var.max(0.0).sqrt(),
            },
            global_events: batch.global_events,
            windows: Arc::clone(&self.windows),
            drained_in: started.elapsed(),
        }
    }

    fn drain_worker(&self, worker: usize) -> Vec<ChangedKey> {
        let dirty = std::mem::take(&mut *lock(&self.dirty[worker]));
        let mut changed = Vec::with_capacity(dirty.len());
        for (kind, id) in dirty {
            let values = self.maps[kind_index(kind)].update_sync(&*id, |_, state| {
                state.clear_dirty();
                state.snapshot(&self.layout)
            });
            // Keys are never removed, so a dirty key is always found.
            if let Some(values) = values {
                changed.push((kind, id, values));
            }
        }
        changed
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
            event_id: format!("e-{ts_ms}"),
            ts_ms,
            account_id: account.to_string(),
            counterparty_id: None,
            merchant_id: None,
            device_id: device.map(str::to_string),
            ip: None,
            amount,
            currency: None,
            channel: None,
            country: None,
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
}
