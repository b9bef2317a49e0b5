//! One key's sliding-window state: rings of time buckets by event time, packed into a
//! single allocation so a tracked key stays under 512 bytes.
//!
//! A count/sum window of length `W` is a ring of [`WINDOW_BUCKETS`] buckets of
//! `ceil(W / WINDOW_BUCKETS)` ms; the distinct-counterparty window is a ring of
//! [`DISTINCT_BUCKETS`] buckets. A ring's newest ("head") bucket is the bucket of the key's
//! newest event time; the ring holds the head bucket and the buckets just before it. When a
//! newer event moves the head forward, the buckets it passes over are cleared before their
//! slots are reused.

use std::time::Duration;

use crate::event::Event;

use super::values::{CountryCode, KeySnapshot, KeyValues, WindowValues, MAX_WINDOWS};

/// Buckets per count/sum window: bounds the approximation to one eighth of the window.
pub(crate) const WINDOW_BUCKETS: usize = 8;

/// Buckets of the distinct-counterparty ring: six 64-bit bitmaps (one sixth of the window
/// each) keep the default state at 376 bytes, inside a 384-byte allocation.
pub(crate) const DISTINCT_BUCKETS: usize = 6;

/// The geometry of one ring: how many buckets, and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ring {
    bucket_ms: i64,
    buckets: i64,
}

impl Ring {
    /// The ring of `buckets` buckets whose total span is at least `window`. The window
    /// must be at least `buckets` ms and fit in an `i64` of milliseconds (options
    /// validation guarantees both).
    pub(crate) fn covering(window: Duration, buckets: usize) -> Ring {
        let window_ms = i64::try_from(window.as_millis())
            .expect("window fits in i64 milliseconds; options validation bounds it");
        let buckets = buckets as i64;
        assert!(
            window_ms >= buckets,
            "window of {window_ms} ms is shorter than one ms per bucket; validation rejects it"
        );
        Ring {
            bucket_ms: (window_ms + buckets - 1) / buckets,
            buckets,
        }
    }

    /// Event time the ring covers: buckets times bucket width.
    pub(crate) fn span_ms(self) -> i64 {
        self.bucket_ms * self.buckets
    }

    /// The absolute bucket number of an event time (floor division, also before 1970).
    pub(crate) fn bucket_of(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.bucket_ms)
    }

    /// Whether `bucket` is inside the ring when its head is `head`.
    pub(crate) fn holds(self, head: i64, bucket: i64) -> bool {
        bucket <= head && bucket > head - self.buckets
    }

    fn slot(self, bucket: i64) -> usize {
        bucket.rem_euclid(self.buckets) as usize
    }

    /// The buckets the head moves over from `from_ms` to the later `to_ms` (excluding the
    /// old head, including the new one), at most one lap since older ones share slots.
    fn passed(self, from_ms: i64, to_ms: i64) -> std::ops::RangeInclusive<i64> {
        let to = self.bucket_of(to_ms);
        let from = self.bucket_of(from_ms).max(to - self.buckets);
        from + 1..=to
    }
}

/// Where each value lives in a key's packed state, shared by all keys of one aggregator.
///
/// Word layout: a 5-word header (first seen, last seen, EW mean, EW variance, flags),
/// then one `f64` sum per window bucket, then the `u32` counts two to a word (an even
/// number per window), then one 64-bit counterparty bitmap per distinct-ring bucket.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    windows: [Ring; MAX_WINDOWS],
    window_count: usize,
    distinct: Ring,
    /// The ring with the longest span: events before it are late.
    longest: Ring,
    alpha: f64,
    words: usize,
}

const FIRST_SEEN: usize = 0;
const LAST_SEEN: usize = 1;
const EW_MEAN: usize = 2;
const EW_VAR: usize = 3;
/// Low 16 bits: the last country ([`CountryCode::to_bits`], 0 for none); bit 16: dirty.
const FLAGS: usize = 4;
const HEADER_WORDS: usize = 5;
const DIRTY_BIT: u64 = 1 << 16;
const COUNTRY_MASK: u64 = 0xffff;

impl Layout {
    /// The layout for validated options: `windows` non-empty, increasing, at most
    /// [`MAX_WINDOWS`]; `alpha` in (0, 1].
    pub(crate) fn new(windows: &[Duration], distinct_window: Duration, alpha: f64) -> Layout {
        assert!(
            !windows.is_empty() && windows.len() <= MAX_WINDOWS,
            "1..=MAX_WINDOWS windows; options validation guarantees it"
        );
        let distinct = Ring::covering(distinct_window, DISTINCT_BUCKETS);
        let mut rings = [distinct; MAX_WINDOWS];
        for (ring, window) in rings.iter_mut().zip(windows) {
            *ring = Ring::covering(*window, WINDOW_BUCKETS);
        }
        let longest = rings[..windows.len()]
            .iter()
            .copied()
            .chain([distinct])
            .max_by_key(|ring| ring.span_ms())
            .unwrap_or(distinct);
        let window_buckets = windows.len() * WINDOW_BUCKETS;
        Layout {
            windows: rings,
            window_count: windows.len(),
            distinct,
            longest,
            alpha,
            words: HEADER_WORDS + window_buckets + window_buckets / 2 + DISTINCT_BUCKETS,
        }
    }

    /// The rings of the count/sum windows, shortest first.
    pub(crate) fn windows(&self) -> &[Ring] {
        &self.windows[..self.window_count]
    }

    pub(crate) fn distinct(&self) -> Ring {
        self.distinct
    }

    pub(crate) fn longest(&self) -> Ring {
        self.longest
    }

    pub(crate) fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Bytes of one key's packed state (excluding allocator rounding).
    pub(crate) fn state_bytes(&self) -> usize {
        self.words * std::mem::size_of::<u64>()
    }

    fn sum_word(&self, window: usize, slot: usize) -> usize {
        HEADER_WORDS + window * WINDOW_BUCKETS + slot
    }

    /// The word and bit shift of a bucket's count.
    fn count_word(&self, window: usize, slot: usize) -> (usize, u32) {
        let index = window * WINDOW_BUCKETS + slot;
        let base = HEADER_WORDS + self.window_count * WINDOW_BUCKETS;
        (base + index / 2, (index % 2) as u32 * 32)
    }

    fn distinct_word(&self, slot: usize) -> usize {
        HEADER_WORDS + self.window_count * WINDOW_BUCKETS * 3 / 2 + slot
    }
}

/// The parts of an event one key's state needs, extracted once per event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Update {
    pub(crate) ts_ms: i64,
    pub(crate) amount: f64,
    /// The counterparty's bit in a distinct bitmap.
    pub(crate) counterparty_bit: Option<u64>,
    pub(crate) country: Option<CountryCode>,
}

impl Update {
    pub(crate) fn from_event(event: &Event) -> Update {
        Update {
            ts_ms: event.ts_ms,
            amount: event.amount,
            counterparty_bit: event
                .counterparty_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(counterparty_bit),
            country: event.country.as_deref().and_then(CountryCode::from_name),
        }
    }
}

/// Fixed seeds: a counterparty must map to the same bit for every key and every batch.
const COUNTERPARTY_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
);

/// The single bit a counterparty sets in a 64-bit distinct bitmap.
pub(crate) fn counterparty_bit(id: &str) -> u64 {
    1u64 << (COUNTERPARTY_HASHER.hash_one(id) % 64)
}

/// Estimated distinct counterparties from the union of a ring's bitmaps (linear counting,
/// rounded down). All 64 bits set means "at least 266".
pub(crate) fn estimate_distinct(bitmap: u64) -> u32 {
    const BITS: f64 = 64.0;
    match bitmap.count_zeros() {
        64 => 0,
        0 => (BITS * BITS.ln()) as u32,
        zeros => (-BITS * (f64::from(zeros) / BITS).ln()) as u32,
    }
}

/// One step of the exponentially weighted mean and variance (West's incremental form):
/// the newest value weighs `alpha`, older ones decay by `1 - alpha` per event.
pub(crate) fn ew_step(mean: f64, var: f64, value: f64, alpha: f64) -> (f64, f64) {
    let diff = value - mean;
    let increment = alpha * diff;
    (mean + increment, (1.0 - alpha) * (var + diff * increment))
}

/// One key's packed state. All accessors take the aggregator's [`Layout`]; a state must
/// only ever be used with the layout it was created with.
#[derive(Debug)]
pub(crate) struct KeyState {
    words: Box<[u64]>,
}

impl KeyState {
    /// A new key created by its first event; returns what that event sees.
    pub(crate) fn new(layout: &Layout, update: &Update) -> (KeyState, KeyValues) {
        let mut state = KeyState {
            words: vec![0; layout.words].into_boxed_slice(),
        };
        state.set_i64(FIRST_SEEN, update.ts_ms);
        state.set_i64(LAST_SEEN, update.ts_ms);
        state.set_f64(EW_MEAN, update.amount);
        state.set_f64(EW_VAR, 0.0);
        state.add_to_rings(layout, update);
        if let Some(country) = update.country {
            state.set_country(country);
        }
        let values = state.values(layout, None, None, false);
        (state, values)
    }

    /// Applies one more event of this key (in arrival order); returns what it sees.
    ///
    /// A late event (older than the longest ring allows) leaves the rings, the newest time
    /// and the country untouched; it still counts towards first seen and the EW amount
    /// statistics, which do not depend on time.
    pub(crate) fn apply(&mut self, layout: &Layout, update: &Update) -> KeyValues {
        let previous_last = self.i64_at(LAST_SEEN);
        let previous_country = self.country();
        let longest = layout.longest();
        let late = !longest.holds(
            longest.bucket_of(previous_last.max(update.ts_ms)),
            longest.bucket_of(update.ts_ms),
        );
        if !late {
            if update.ts_ms > previous_last {
                self.advance(layout, previous_last, update.ts_ms);
                self.set_i64(LAST_SEEN, update.ts_ms);
            }
            self.add_to_rings(layout, update);
            if let Some(country) = update.country {
                self.set_country(country);
            }
        }
        if update.ts_ms < self.i64_at(FIRST_SEEN) {
            self.set_i64(FIRST_SEEN, update.ts_ms);
        }
        let (mean, var) = ew_step(
            self.f64_at(EW_MEAN),
            self.f64_at(EW_VAR),
            update.amount,
            layout.alpha(),
        );
        self.set_f64(EW_MEAN, mean);
        self.set_f64(EW_VAR, var);
        self.values(layout, Some(previous_last), previous_country, late)
    }

    /// The key's current values for a snapshot.
    pub(crate) fn snapshot(&self, layout: &Layout) -> KeySnapshot {
        KeySnapshot {
            windows: self.window_values(layout),
            distinct_counterparties: self.distinct(layout),
            first_seen_ms: self.i64_at(FIRST_SEEN),
            last_seen_ms: self.i64_at(LAST_SEEN),
            country: self.country(),
            amount_mean: self.f64_at(EW_MEAN),
            amount_std: self.f64_at(EW_VAR).max(0.0).sqrt(),
        }
    }

    /// Marks the key as changed since the last snapshot drain; `true` if it was clean,
    /// i.e. the caller must add it to a dirty list.
    pub(crate) fn mark_dirty(&mut self) -> bool {
        let was_clean = self.words[FLAGS] & DIRTY_BIT == 0;
        self.words[FLAGS] |= DIRTY_BIT;
        was_clean
    }

    /// Called when a snapshot drain has copied this key.
    pub(crate) fn clear_dirty(&mut self) {
        self.words[FLAGS] &= !DIRTY_BIT;
    }

    /// Clears the buckets the heads pass over when the newest time moves from `from_ms` to
    /// the later `to_ms`, so ring slots are reused only for their new bucket.
    fn advance(&mut self, layout: &Layout, from_ms: i64, to_ms: i64) {
        for (window, ring) in layout.windows().iter().enumerate() {
            for bucket in ring.passed(from_ms, to_ms) {
                let slot = ring.slot(bucket);
                let sum = layout.sum_word(window, slot);
                self.words[sum] = 0.0f64.to_bits();
                let (word, shift) = layout.count_word(window, slot);
                self.words[word] &= !(u64::from(u32::MAX) << shift);
            }
        }
        let distinct = layout.distinct();
        for bucket in distinct.passed(from_ms, to_ms) {
            self.words[layout.distinct_word(distinct.slot(bucket))] = 0;
        }
    }

    /// Adds the event to the bucket of every ring that still holds its time.
    fn add_to_rings(&mut self, layout: &Layout, update: &Update) {
        let newest = self.i64_at(LAST_SEEN);
        for (window, ring) in layout.windows().iter().enumerate() {
            let bucket = ring.bucket_of(update.ts_ms);
            if !ring.holds(ring.bucket_of(newest), bucket) {
                continue;
            }
            let slot = ring.slot(bucket);
            let sum = layout.sum_word(window, slot);
            self.words[sum] = (f64::from_bits(self.words[sum]) + update.amount).to_bits();
            let (word, shift) = layout.count_word(window, slot);
            let count = (self.words[word] >> shift) as u32;
            let count = u64::from(count.saturating_add(1));
            self.words[word] =
                (self.words[word] & !(u64::from(u32::MAX) << shift)) | count << shift;
        }
        let ring = layout.distinct();
        let bucket = ring.bucket_of(update.ts_ms);
        if let Some(bit) = update.counterparty_bit {
            if ring.holds(ring.bucket_of(newest), bucket) {
                self.words[layout.distinct_word(ring.slot(bucket))] |= bit;
            }
        }
    }

    fn values(
        &self,
        layout: &Layout,
        previous_last_seen_ms: Option<i64>,
        previous_country: Option<CountryCode>,
        late: bool,
    ) -> KeyValues {
        KeyValues {
            windows: self.window_values(layout),
            distinct_counterparties: self.distinct(layout),
            first_seen_ms: self.i64_at(FIRST_SEEN),
            previous_last_seen_ms,
            previous_country,
            late,
            amount_mean: self.f64_at(EW_MEAN),
            amount_std: self.f64_at(EW_VAR).max(0.0).sqrt(),
        }
    }

    /// Each window's value is the plain total of its ring: the head bucket plus the
    /// buckets before it, since passed buckets were cleared.
    fn window_values(&self, layout: &Layout) -> WindowValues {
        let mut values = WindowValues::zeroed(layout.windows().len());
        for window in 0..layout.windows().len() {
            let mut count = 0u32;
            let mut sum = 0.0;
            for slot in 0..WINDOW_BUCKETS {
                let (word, shift) = layout.count_word(window, slot);
                count = count.saturating_add((self.words[word] >> shift) as u32);
                sum += f64::from_bits(self.words[layout.sum_word(window, slot)]);
            }
            values.set(window, count, sum);
        }
        values
    }

    fn distinct(&self, layout: &Layout) -> u32 {
        let union =
            (0..DISTINCT_BUCKETS).fold(0, |acc, slot| acc | self.words[layout.distinct_word(slot)]);
        estimate_distinct(union)
    }

    fn country(&self) -> Option<CountryCode> {
        CountryCode::from_bits((self.words[FLAGS] & COUNTRY_MASK) as u16)
    }

    fn set_country(&mut self, country: CountryCode) {
        self.words[FLAGS] = (self.words[FLAGS] & !COUNTRY_MASK) | u64::from(country.to_bits());
    }

    fn i64_at(&self, word: usize) -> i64 {
        self.words[word] as i64
    }

    fn set_i64(&mut self, word: usize, value: i64) {
        self.words[word] = value as u64;
    }

    fn f64_at(&self, word: usize) -> f64 {
        f64::from_bits(self.words[word])
    }

    fn set_f64(&mut self, word: usize, value: f64) {
        self.words[word] = value.to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn layout() -> Layout {
        Layout::new(
            &[Duration::from_secs(60), Duration::from_secs(3600)],
            Duration::from_secs(3600),
            0.5,
        )
    }

    fn update(ts_ms: i64, amount: f64) -> Update {
        Update {
            ts_ms,
            amount,
            counterparty_bit: None,
            country: None,
        }
    }

    #[test]
    fn first_event_sees_itself_and_no_previous_values() {
        let (_, values) = KeyState::new(&layout(), &update(10 * MINUTE, 5.0));
        assert_eq!(
            values.windows.iter().collect::<Vec<_>>(),
            vec![(1, 5.0), (1, 5.0)]
        );
        assert_eq!(values.previous_last_seen_ms, None);
        assert_eq!(values.first_seen_ms, 10 * MINUTE);
        assert!(!values.late);
    }

    #[test]
    fn events_leave_the_short_window_once_its_buckets_pass() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(0, 1.0));
        let values = state.apply(&layout, &update(30_000, 2.0));
        assert_eq!(values.windows.count(0), 2);
        assert_eq!(values.previous_last_seen_ms, Some(0));
        // 1 min in 8 buckets of 7.5 s: at 61 s the bucket holding t=0 has been reused.
        let values = state.apply(&layout, &update(61_000, 4.0));
        assert_eq!((values.windows.count(0), values.windows.sum(0)), (2, 6.0));
        assert_eq!((values.windows.count(1), values.windows.sum(1)), (3, 7.0));
    }

    #[test]
    fn a_long_gap_clears_every_bucket() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(0, 1.0));
        let values = state.apply(&layout, &update(5 * 3_600_000, 2.0));
        assert_eq!(
            values.windows.iter().collect::<Vec<_>>(),
            vec![(1, 2.0), (1, 2.0)]
        );
    }

    #[test]
    fn out_of_order_events_inside_the_ring_land_in_their_own_bucket() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(30 * MINUTE, 1.0));
        let values = state.apply(&layout, &update(10 * MINUTE, 2.0));
        assert!(!values.late);
        // Outside the 1 min ring, inside the 1 h ring.
        assert_eq!((values.windows.count(0), values.windows.count(1)), (1, 2));
        assert_eq!(values.previous_last_seen_ms, Some(30 * MINUTE));
        assert_eq!(values.first_seen_ms, 10 * MINUTE);
        // The newest time did not move back: the next event still sees both.
        let values = state.apply(&layout, &update(31 * MINUTE, 4.0));
        assert_eq!(values.previous_last_seen_ms, Some(30 * MINUTE));
        assert_eq!((values.windows.count(1), values.windows.sum(1)), (3, 7.0));
    }

    #[test]
    fn late_events_are_flagged_and_do_not_touch_the_rings() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(3 * 3_600_000, 1.0));
        let late = Update {
            country: CountryCode::from_name("FR"),
            ..update(3_600_000, 100.0)
        };
        let values = state.apply(&layout, &late);
        assert!(values.late);
        assert_eq!(
            values.windows.iter().collect::<Vec<_>>(),
            vec![(1, 1.0), (1, 1.0)]
        );
        assert_eq!(values.first_seen_ms, 3_600_000);
        let snapshot = state.snapshot(&layout);
        assert_eq!(snapshot.last_seen_ms, 3 * 3_600_000);
        assert_eq!(snapshot.country, None);
        // Amount statistics do include it: mean of 1 and 100 at alpha 0.5.
        assert_eq!(snapshot.amount_mean, 50.5);
    }

    #[test]
    fn previous_country_is_the_last_one_seen_before_the_event() {
        let layout = layout();
        let with_country = |ts, country: &str| Update {
            country: CountryCode::from_name(country),
            ..update(ts, 1.0)
        };
        let (mut state, first) = KeyState::new(&layout, &with_country(0, "DE"));
        assert_eq!(first.previous_country, None);
        let values = state.apply(&layout, &update(1, 1.0));
        assert_eq!(values.previous_country, CountryCode::from_name("DE"));
        let values = state.apply(&layout, &with_country(2, "BR"));
        assert_eq!(values.previous_country, CountryCode::from_name("DE"));
        let values = state.apply(&layout, &update(3, 1.0));
        assert_eq!(values.previous_country, CountryCode::from_name("BR"));
    }

    #[test]
    fn distinct_counterparties_count_each_counterparty_once_per_window() {
        let layout = layout();
        let with_cp = |ts, cp: &str| Update {
            counterparty_bit: Some(counterparty_bit(cp)),
            ..update(ts, 1.0)
        };
        let (mut state, _) = KeyState::new(&layout, &with_cp(0, "A-1"));
        state.apply(&layout, &with_cp(MINUTE, "A-1"));
        let values = state.apply(&layout, &with_cp(2 * MINUTE, "A-2"));
        assert_eq!(values.distinct_counterparties, 2);
        let values = state.apply(&layout, &with_cp(3 * 3_600_000, "A-3"));
        assert_eq!(values.distinct_counterparties, 1);
    }

    #[test]
    fn ew_statistics_follow_the_documented_recurrence() {
        let layout = layout();
        let (mut state, first) = KeyState::new(&layout, &update(0, 10.0));
        assert_eq!((first.amount_mean, first.amount_std), (10.0, 0.0));
        let values = state.apply(&layout, &update(1, 20.0));
        // alpha 0.5: mean 15, variance 0.5 * (0 + 10 * 5) = 25.
        assert_eq!((values.amount_mean, values.amount_std), (15.0, 5.0));
    }

    #[test]
    fn dirty_flag_is_reported_once_until_cleared() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(0, 1.0));
        assert!(state.mark_dirty());
        assert!(!state.mark_dirty());
        state.apply(&layout, &update(1, 1.0));
        assert!(!state.mark_dirty(), "applying must not clear the flag");
        state.clear_dirty();
        assert!(state.mark_dirty());
    }

    #[test]
    fn counts_of_neighbouring_buckets_do_not_bleed_into_each_other() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(0, 1.0));
        for i in 1..8 {
            state.apply(&layout, &update(i * 7_500, 1.0));
        }
        // Moving one bucket on clears exactly one slot (the one holding t=0).
        let values = state.apply(&layout, &update(8 * 7_500, 1.0));
        assert_eq!(values.windows.count(0), 8);
        assert_eq!(values.windows.count(1), 9);
    }

    #[test]
    fn default_state_fits_in_376_bytes() {
        let layout = Layout::new(
            &[
                Duration::from_secs(60),
                Duration::from_secs(3600),
                Duration::from_secs(86_400),
            ],
            Duration::from_secs(3600),
            0.05,
        );
        assert_eq!(layout.state_bytes(), 376);
    }

    #[test]
    fn distinct_estimate_is_exact_for_few_bits_and_saturates() {
        assert_eq!(estimate_distinct(0), 0);
        assert_eq!(estimate_distinct(0b1), 1);
        assert_eq!(estimate_distinct(0b1011), 3);
        assert_eq!(estimate_distinct(0xff), 8);
        assert_eq!(estimate_distinct(u64::MAX), 266);
    }

    #[test]
    fn bucket_numbers_floor_before_the_epoch() {
        let ring = Ring::covering(Duration::from_secs(60), WINDOW_BUCKETS);
        assert_eq!(ring.bucket_ms, 7_500);
        assert_eq!(ring.span_ms(), 60_000);
        assert_eq!(ring.bucket_of(-1), -1);
        assert_eq!(ring.bucket_of(7_499), 0);
        assert_eq!(ring.bucket_of(7_500), 1);
    }
}
