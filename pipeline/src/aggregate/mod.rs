//! Sharded sliding-window aggregation and snapshots.
//!
//! [`Aggregator`] keeps per-key state for the configured entity kinds (account, device,
//! ip, merchant) and applies events in batches; [`Snapshots`] publishes immutable
//! [`AggregateSnapshot`]s of that state for lock-free readers.
//!
//! # What is kept per key
//!
//! * count and sum per window (default 1 min, 1 h, 24 h) by event time;
//! * distinct counterparties over `distinct_window` (default 1 h), approximate;
//! * first seen (earliest event time) and last seen (newest event time);
//! * the last country seen, so an event can be compared with the previous one;
//! * an exponentially weighted (EW) amount mean and variance: with `a` =
//!   `amount_ew_alpha`, `d = x - mean`, `mean += a·d`, `var = (1 - a)·(var + a·d²)`; the
//!   first event sets the mean and a variance of 0.
//!
//! Sums and EW statistics saturate at ±`f64::MAX` instead of overflowing: amounts are
//! finite but unbounded, and one infinite value would make the key's features non-finite
//! for good. A saturated sum reads as "at least this much".
//!
//! # Windows are rings of buckets
//!
//! Each window of length `W` is a ring of 8 buckets of `ceil(W / 8)` ms. A key's window
//! value covers the bucket of its newest event (partly filled) plus the 7 full buckets
//! before it: between 7/8 of `W` and `W` of event time (1 min: 52.5–60 s; 1 h:
//! 52.5–60 min; 24 h: 21–24 h). Values are relative to the key's newest event, not to
//! wall-clock time: in a snapshot, a key idle for longer than a window still shows that
//! window's last value, and readers compare `last_seen_ms` with the watermark.
//!
//! An event older than the key's newest event goes to its own bucket in every ring that
//! still holds it (it may be too old for the 1 min ring yet inside the 24 h ring). An
//! event too old for the longest ring (the one spanning the most time among the windows
//! and the distinct window) is **late**: it is flagged ([`KeyValues::late`]), counted
//! ([`AggregatorMetrics::late_events`]) and still gets aggregates (the key's current
//! windows, without it), but leaves the rings, last seen and country untouched. It does
//! count towards first seen and the EW amount statistics, which do not depend on time.
//! A key's first event is never late.
//!
//! # Events from the future
//!
//! The opposite mistake, one event far ahead of the others (a clock set to year 9999),
//! would move its keys' rings to that time, so that every later event of those keys is
//! late and their windows freeze. [`Aggregator::admit`] guards against it: the job admits
//! each decoded event before aggregating it, and one more than
//! [`AggregateOptions::max_future_skew`] ahead of the watermark (the newest event time
//! admitted so far) becomes a dead letter instead. The first event admitted sets the
//! watermark.
//!
//! # Distinct counterparties
//!
//! The distinct window is a ring of 6 buckets of `ceil(W / 6)` ms, so it covers between
//! 5/6 of `W` and `W` (1 h: 50–60 min). Each bucket is one 64-bit bitmap; a counterparty id
//! sets one hashed bit, and the estimate is linear counting over the union of the ring,
//! `floor(-64·ln(zero bits / 64))`. Measured accuracy: exact for 1; exact in ≥ 95 % of
//! cases up to 3 and ≥ 63 % up to 8 (mean relative error ≤ 5.3 % up to 8); mean relative
//! error ≤ 9 % up to 64 and ≤ 15 % up to 200; all bits set reads 266 ("266 or more").
//!
//! # Memory per key
//!
//! With the default windows one key's state is a single 376-byte allocation (a 40-byte
//! header, 24 sums, 24 counts, 6 bitmaps; 384 bytes from malloc). The map entry is 32
//! bytes (the `Arc<str>` id and the boxed state) and the id (48 bytes from malloc for ids
//! of 9 to 24 bytes, 32 up to 8) is shared with dirty lists and snapshots, not copied.
//! Measured with a counting allocator that rounds like glibc malloc: 477–503 bytes per
//! key between 50 k and 1 M keys with 9-byte ids; the spread is the map's spare capacity,
//! which depends on where the key count falls between two growth steps.
//! A snapshot costs about 213 bytes per key on top (measured at 1 M keys: the base's
//! inline [`KeySnapshot`] and its index entry); consecutive snapshots share every
//! unchanged key. Keys idle for longer than `idle_key_ttl` are evicted (below), so memory
//! follows the keys active within that span rather than every key ever seen.
//!
//! # Idle keys
//!
//! A key whose newest event is older than the watermark minus
//! [`AggregateOptions::idle_key_ttl`] (default: the longest window plus a day, 48 h with
//! the default windows) is idle. Its next event starts it again as a new key, and the
//! snapshot drains evict it from the live state, from the merchant baselines and from the
//! next snapshot. Both follow event time only: the watermark here is the newest event
//! time applied so far, in the order events are applied, so the results of the same input
//! do not depend on batch sizes, on when drains run, or on whether a drain got to a key
//! before its next event.
//!
//! Since the TTL is at least the longest window, an idle key's windows and distinct count
//! are empty anyway: a key that comes back gets exactly the window values it would have
//! got without eviction. What it loses is what has no window: first seen, its previous
//! event time (it reads as new), its last country, its EW amount statistics, and for a
//! merchant its amount baseline. An event more than `idle_key_ttl` minus the longest
//! window behind the watermark (a day by default) may meet an idle key's restarted state
//! where the old one would still have held it in a window.
//!
//! Each worker keeps its keys in an idle queue filed by event time; a drain examines at
//! most a fixed budget plus twice the keys it copied, oldest first, so eviction never costs
//! more than a small multiple of the drain, whatever the number of keys.
//!
//! # Order and parallelism
//!
//! Events of one key are applied in batch order by the one worker that owns the key
//! (`hash(kind, id) % workers`); different keys proceed in parallel. Batches are applied
//! one after another, so per-key order also holds across batches. The result of a batch
//! does not depend on the number of workers.
//!
//! # Snapshot consistency
//!
//! [`Aggregator::drain_changes`] runs between batches (it shares a lock with
//! `apply_batch`), so every snapshot is a consistent cut: each key as of the end of the
//! same batch, nothing from a later batch, no update lost (a key changed after the drain
//! goes into the next one). Only that copy of the changed keys holds up `apply_batch`;
//! the persistent maps are built afterwards. [`Snapshots::publish`] does both and may
//! run on any thread; the watermark and offsets it records are the caller's, so pass the
//! positions of the last batch applied, or drain on the aggregating thread between
//! batches and hand the [`ChangeSet`] to [`Snapshots::publish_changes`] elsewhere.
//! Readers ([`Snapshots::load`]) never lock, and never free a snapshot either: replaced
//! snapshots are freed by the publisher once no reader holds them.
//!
//! Cost: a snapshot is a [`LayeredMap`] per kind — an immutable base plus a few small
//! layers of the keys changed since the base was built. Publishing adds one layer built
//! from the changed keys only (cost proportional to them); when the layers hold more than
//! an eighth of the base they are compacted into a new base (cost proportional to all
//! keys, every ~13th publish at 1 % changed). The `snapshot` benchmark prints both, and
//! `docs/performance.md` gives the measured figures.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use riskstream_graph::EntityKind;
//! use riskstream_pipeline::aggregate::{AggregateOptions, Aggregator, Snapshots};
//! use riskstream_pipeline::event::Event;
//!
//! let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
//! let snapshots = Snapshots::new(&aggregator);
//! let event = Event {
//!     event_id: "e-1".into(),
//!     ts_ms: 1_700_000_000_000,
//!     account_id: "A-1".into(),
//!     counterparty_id: Some("A-2".into()),
//!     merchant_id: None,
//!     device_id: Some("D-1".into()),
//!     ip: None,
//!     amount: 12.5,
//!     currency: None,
//!     channel: None,
//!     country: Some("DE".into()),
//! };
//! let results = aggregator.apply_batch(&[event]);
//! let account = results[0].get(EntityKind::Account).unwrap();
//! assert_eq!(account.windows.count(0), 1);
//! assert!(results[0].get(EntityKind::Ip).is_none());
//!
//! let snapshot = snapshots
//!     .publish(&aggregator, 1_700_000_000_000, BTreeMap::new())
//!     .unwrap();
//! assert_eq!(snapshot.keys.get(EntityKind::Device, "D-1").unwrap().windows.sum(0), 12.5);
//! ```

mod idle;
mod layered;
mod options;
mod sharded;
mod snapshot;
mod state;
mod values;
mod window;

#[cfg(test)]
mod reference;

pub use layered::LayeredMap;
pub use options::{
    default_amount_ew_alpha, default_baseline_interval, default_distinct_window, default_kinds,
    default_max_future_skew, default_windows, AggregateError, AggregateOptions, MAX_WORKERS,
};
pub use sharded::{
    Aggregator, AggregatorMetrics, AmountBaseline, ChangeSet, EventAggregates, FutureTimestamp,
    GLOBAL_EW_ALPHA,
};
pub use snapshot::{
    AggregateSnapshot, Baselines, SnapshotError, SnapshotId, SnapshotKeys, Snapshots,
};
pub use state::{
    AggregateState, KindState, LayoutMismatch, MerchantCut, RestoreError, StateLayout,
};
pub use values::{CountryCode, KeySnapshot, KeyValues, WindowValues, MAX_WINDOWS};
