//! A deliberately simple sequential model of the aggregator, and property tests that the
//! sharded, multi-worker aggregator and its snapshots agree with it exactly.
//!
//! The model keeps every accepted event per key in a `std::collections::HashMap` and
//! recomputes each window from that list, so it shares nothing with the packed rings but
//! the documented rules (bucket width, distinct bit and estimate, EW recurrence).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use riskstream_graph::EntityKind;

use super::sharded::kind_index;
use super::window::{
    counterparty_bit, estimate_distinct, ew_step, saturating_add, Ring, DISTINCT_BUCKETS,
    WINDOW_BUCKETS,
};
use super::WindowValues;
use super::{AggregateOptions, Aggregator, CountryCode, KeySnapshot, KeyValues, Snapshots};
use crate::event::Event;

struct ModelKey {
    /// Non-late events: (time, amount, counterparty bit).
    accepted: Vec<(i64, f64, Option<u64>)>,
    first_seen: i64,
    last_seen: i64,
    mean: f64,
    var: f64,
    country: Option<CountryCode>,
}

struct Model {
    kinds: Vec<EntityKind>,
    windows: Vec<Ring>,
    distinct: Ring,
    longest: Ring,
    alpha: f64,
    keys: HashMap<(EntityKind, String), ModelKey>,
    late_events: u64,
    /// The newest event time applied.
    watermark: i64,
    /// `idle_key_ttl` in ms: a key older than the watermark by more is forgotten.
    ttl: i64,
}

impl Model {
    fn new(options: &AggregateOptions) -> Model {
        let windows: Vec<Ring> = options
            .windows
            .iter()
            .map(|w| Ring::covering(*w, WINDOW_BUCKETS))
            .collect();
        let distinct = Ring::covering(options.distinct_window, DISTINCT_BUCKETS);
        let longest = windows
            .iter()
            .copied()
            .chain([distinct])
            .max_by_key(|ring| ring.span_ms())
            .unwrap();
        Model {
            kinds: options.kinds.clone(),
            windows,
            distinct,
            longest,
            alpha: options.amount_ew_alpha,
            keys: HashMap::new(),
            late_events: 0,
            watermark: i64::MIN,
            ttl: i64::try_from(options.effective_idle_key_ttl().as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Whether a drain now may have evicted the key (it is idle) and whether it must have
    /// (idle for longer than the TTL plus the idle queue's granule, 1/64 of the TTL).
    fn evictable(&self, key: &ModelKey) -> (bool, bool) {
        let idle_for = self.watermark.saturating_sub(key.last_seen);
        (
            idle_for > self.ttl,
            idle_for > self.ttl.saturating_add(self.ttl / 64 + 1),
        )
    }

    /// Keys a snapshot taken now holds at least and at most.
    fn snapshot_len_range(&self) -> (usize, usize) {
        let must_go = self
            .keys
            .values()
            .filter(|key| self.evictable(key).1)
            .count();
        let may_go = self
            .keys
            .values()
            .filter(|key| self.evictable(key).0)
            .count();
        (self.keys.len() - may_go, self.keys.len() - must_go)
    }

    fn id_of(event: &Event, kind: EntityKind) -> Option<&String> {
        let id = match kind {
            EntityKind::Account => Some(&event.account_id),
            EntityKind::Device => event.device_id.as_ref(),
            EntityKind::Ip => event.ip.as_ref(),
            EntityKind::Merchant => event.merchant_id.as_ref(),
        };
        id.filter(|id| !id.is_empty())
    }

    fn apply(&mut self, event: &Event) -> [Option<KeyValues>; 4] {
        let mut out = [None; 4];
        let cp_bit = event
            .counterparty_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(counterparty_bit);
        let country = event.country.as_deref().and_then(CountryCode::from_name);
        self.watermark = self.watermark.max(event.ts_ms);
        let cutoff = self.watermark.saturating_sub(self.ttl);
        for kind in self.kinds.clone() {
            let Some(id) = Self::id_of(event, kind) else {
                continue;
            };
            // An idle key's next event finds it new.
            if self
                .keys
                .get(&(kind, id.clone()))
                .is_some_and(|key| key.last_seen < cutoff)
            {
                self.keys.remove(&(kind, id.clone()));
            }
            let ts = event.ts_ms;
            let longest = self.longest;
            let alpha = self.alpha;
            let values = match self.keys.get_mut(&(kind, id.clone())) {
                None => {
                    let key = ModelKey {
                        accepted: vec![(ts, event.amount, cp_bit)],
                        first_seen: ts,
                        last_seen: ts,
                        mean: event.amount,
                        var: 0.0,
                        country,
                    };
                    let values = self.values(&key, None, None, false);
                    self.keys.insert((kind, id.clone()), key);
                    values
                }
                Some(key) => {
                    let previous_last = key.last_seen;
                    let previous_country = key.country;
                    let head = longest.bucket_of(previous_last.max(ts));
                    let late = !longest.holds(head, longest.bucket_of(ts));
                    if !late {
                        key.accepted.push((ts, event.amount, cp_bit));
                        key.last_seen = key.last_seen.max(ts);
                        if country.is_some() {
                            key.country = country;
                        }
                    }
                    key.first_seen = key.first_seen.min(ts);
                    (key.mean, key.var) = ew_step(key.mean, key.var, event.amount, alpha);
                    let key = &self.keys[&(kind, id.clone())];
                    self.values(key, Some(previous_last), previous_country, late)
                }
            };
            out[kind_index(kind)] = Some(values);
        }
        if out.iter().flatten().any(|values| values.late) {
            self.late_events += 1;
        }
        out
    }

    fn window_values(&self, key: &ModelKey) -> WindowValues {
        let mut values = WindowValues::zeroed(self.windows.len());
        for (index, ring) in self.windows.iter().enumerate() {
            let head = ring.bucket_of(key.last_seen);
            let inside = key
                .accepted
                .iter()
                .filter(|(ts, _, _)| ring.holds(head, ring.bucket_of(*ts)));
            let (count, sum) = inside.fold((0, 0.0), |(c, s), (_, amount, _)| {
                (c + 1, saturating_add(s, *amount))
            });
            values.set(index, count, sum);
        }
        values
    }

    fn distinct(&self, key: &ModelKey) -> u32 {
        let head = self.distinct.bucket_of(key.last_seen);
        let union = key
            .accepted
            .iter()
            .filter(|(ts, _, _)| self.distinct.holds(head, self.distinct.bucket_of(*ts)))
            .filter_map(|(_, _, bit)| *bit)
            .fold(0, |acc, bit| acc | bit);
        estimate_distinct(union)
    }

    fn values(
        &self,
        key: &ModelKey,
        previous_last_seen_ms: Option<i64>,
        previous_country: Option<CountryCode>,
        late: bool,
    ) -> KeyValues {
        KeyValues {
            windows: self.window_values(key),
            distinct_counterparties: self.distinct(key),
            first_seen_ms: key.first_seen,
            previous_last_seen_ms,
            previous_country,
            late,
            amount_mean: key.mean,
            amount_std: key.var.max(0.0).sqrt(),
        }
    }

    fn snapshot(&self, key: &ModelKey) -> KeySnapshot {
        KeySnapshot {
            windows: self.window_values(key),
            distinct_counterparties: self.distinct(key),
            first_seen_ms: key.first_seen,
            last_seen_ms: key.last_seen,
            country: key.country,
            amount_mean: key.mean,
            amount_std: key.var.max(0.0).sqrt(),
        }
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// How far an event's time is behind the stream's clock: mostly on time, sometimes out of
/// order within the rings, sometimes late.
fn lag() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        3 => 0..2 * MINUTE,
        2 => 0..3 * HOUR,
        1 => 20 * HOUR..50 * HOUR,
    ]
}

/// How far the clock moves between events: small steps, sometimes a long gap.
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0..20_000i64,
        3 => 0..20 * MINUTE,
        1 => 0..30 * HOUR,
    ]
}

fn pooled(prefix: &'static str, pool: usize) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => (0..pool).prop_map(move |i| Some(format!("{prefix}-{i}"))),
        1 => Just(None),
        1 => Just(Some(String::new())),
    ]
}

#[derive(Debug, Clone)]
struct RawEvent {
    advance: i64,
    lag: i64,
    account: usize,
    counterparty: Option<String>,
    merchant: Option<String>,
    device: Option<String>,
    ip: Option<String>,
    quarters: u32,
    country: Option<&'static str>,
}

fn raw_event() -> impl Strategy<Value = RawEvent> {
    (
        (advance(), lag(), 0..5usize),
        pooled("A", 6),
        pooled("M", 3),
        pooled("D", 3),
        pooled("I", 3),
        0..16_000u32,
        prop::option::of(prop::sample::select(vec!["DE", "fr", "US", "Atlantis"])),
    )
        .prop_map(
            |((advance, lag, account), counterparty, merchant, device, ip, quarters, country)| {
                RawEvent {
                    advance,
                    lag,
                    account,
                    counterparty,
                    merchant,
                    device,
                    ip,
                    quarters,
                    country,
                }
            },
        )
}

/// Turns generated steps into events; amounts are multiples of 0.25 so sums are exact in
/// any order.
fn to_events(raw: &[RawEvent]) -> Vec<Event> {
    let mut clock = 1_700_000_000_000i64;
    raw.iter()
        .enumerate()
        .map(|(index, raw)| {
            clock += raw.advance;
            Event {
                event_id: format!("e-{index}"),
                ts_ms: clock - raw.lag,
                account_id: format!("A-{}", raw.account),
                counterparty_id: raw.counterparty.clone(),
                merchant_id: raw.merchant.clone(),
                device_id: raw.device.clone(),
                ip: raw.ip.clone(),
                amount: f64::from(raw.quarters) / 4.0,
                currency: None,
                channel: None,
                country: raw.country.map(str::to_string),
            }
        })
        .collect()
}

fn options_strategy() -> impl Strategy<Value = AggregateOptions> {
    let default_windows = AggregateOptions::default();
    // Short windows whose distinct ring is the longest ring, so it decides lateness.
    let short = AggregateOptions {
        windows: vec![Duration::from_secs(10), Duration::from_secs(120)],
        distinct_window: Duration::from_secs(30 * 60),
        kinds: vec![EntityKind::Merchant, EntityKind::Account, EntityKind::Ip],
        amount_ew_alpha: 0.3,
        ..AggregateOptions::default()
    };
    // Keys forgotten as soon as the longest ring allows, so the generated gaps and lags
    // (up to 30 h and 50 h) make keys idle, evicted and back again.
    let tight = AggregateOptions {
        idle_key_ttl: Some(Duration::from_secs(24 * 3600)),
        ..AggregateOptions::default()
    };
    let tight_short = AggregateOptions {
        idle_key_ttl: Some(Duration::from_secs(30 * 60)),
        ..short.clone()
    };
    (
        prop::sample::select(vec![default_windows, short, tight, tight_short]),
        1..=4usize,
    )
        .prop_map(|(options, workers)| AggregateOptions { workers, ..options })
}

fn check_against_model(
    options: AggregateOptions,
    raw: Vec<RawEvent>,
    batch_sizes: Vec<usize>,
    publish_after: Vec<bool>,
) -> Result<(), TestCaseError> {
    let events = to_events(&raw);
    let aggregator = Aggregator::new(options.clone()).unwrap();
    let snapshots = Snapshots::new(&aggregator);
    let mut model = Model::new(&options);

    let mut start = 0;
    let mut batch = 0;
    while start < events.len() {
        let size = batch_sizes[batch % batch_sizes.len()];
        let end = (start + size).min(events.len());
        let out = aggregator.apply_batch(&events[start..end]);
        prop_assert_eq!(out.len(), end - start);
        for (offset, result) in out.iter().enumerate() {
            let expected = model.apply(&events[start + offset]);
            for kind in [
                EntityKind::Account,
                EntityKind::Device,
                EntityKind::Ip,
                EntityKind::Merchant,
            ] {
                prop_assert_eq!(
                    result.get(kind).copied(),
                    expected[kind_index(kind)],
                    "event {} kind {:?}",
                    start + offset,
                    kind
                );
            }
        }
        if publish_after[batch % publish_after.len()] {
            let snapshot = snapshots
                .publish(&aggregator, events[end - 1].ts_ms, BTreeMap::new())
                .unwrap();
            let (least, most) = model.snapshot_len_range();
            prop_assert!((least..=most).contains(&snapshot.keys.len()));
        }
        start = end;
        batch += 1;
    }

    let snapshot = snapshots.publish(&aggregator, 0, BTreeMap::new()).unwrap();
    let mut held = 0;
    for ((kind, id), key) in &model.keys {
        let expected = model.snapshot(key);
        let (may_go, must_go) = model.evictable(key);
        if must_go || (may_go && aggregator.read(*kind, id).is_none()) {
            prop_assert_eq!(
                aggregator.read(*kind, id),
                None,
                "{:?} {} is idle",
                kind,
                id
            );
            prop_assert_eq!(
                snapshot.keys.get(*kind, id),
                None,
                "{:?} {} is idle",
                kind,
                id
            );
            if *kind == EntityKind::Merchant {
                prop_assert!(snapshot.baselines.merchant(id).is_none());
            }
            continue;
        }
        held += 1;
        prop_assert_eq!(
            aggregator.read(*kind, id),
            Some(expected),
            "{:?} {}",
            kind,
            id
        );
        prop_assert_eq!(
            snapshot.keys.get(*kind, id),
            Some(&expected),
            "{:?} {}",
            kind,
            id
        );
        if *kind == EntityKind::Merchant {
            let baseline = snapshot.baselines.merchant(id).unwrap();
            prop_assert_eq!(baseline.mean, expected.amount_mean);
        }
    }
    prop_assert_eq!(snapshot.keys.len(), held);
    prop_assert_eq!(
        snapshot.baselines.merchants.len(),
        snapshot.keys.of_kind(EntityKind::Merchant).len()
    );
    prop_assert_eq!(aggregator.metrics().keys_tracked(), held as u64);
    prop_assert_eq!(aggregator.metrics().late_events(), model.late_events);
    prop_assert_eq!(aggregator.metrics().events_applied(), events.len() as u64);
    prop_assert_eq!(snapshot.baselines.global_events, events.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn sharded_aggregator_matches_the_sequential_model(
        options in options_strategy(),
        raw in prop::collection::vec(raw_event(), 1..160),
        batch_sizes in prop::collection::vec(1..48usize, 1..6),
        publish_after in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        check_against_model(options, raw, batch_sizes, publish_after)?;
    }
}
