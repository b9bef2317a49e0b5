//! One key's sliding-window state: rings of time buckets by event time, packed into a
//! single allocation so a tracked key stays under 512 bytes.
//!
//! A count/sum window of length `W` is a ring of [`WINDOW_BUCKETS`] buckets of
//! `ceil(W / WINDOW_BUCKETS)` ms; the distinct-counterparty window is a ring of
//! [`DISTINCT_BUCKETS`] buckets. A ring's newest ("head") bucket is the bucket of the key's
//! newest event time; the ring holds the head bucket and the buckets just before it. When a
//! newer event moves the head forward, the buckets it passes over are cleared before their
//! slots are reused.
//!
//! Where an event falls in each ring ([`Update`]) is worked out once per event and shared
//! by its keys; a key then only compares its newest time with that place, which takes no
//! division in the common cases (same bucket, or a gap longer than the ring).

use std::time::Duration;

use crate::event::Event;

use super::values::{CountryCode, KeySnapshot, KeyValues, WindowValues, MAX_WINDOWS};

/// Buckets per count/sum window: bounds the approximation to one eighth of the window.
pub(crate) const WINDOW_BUCKETS: usize = 8;

/// Buckets of the distinct-counterparty ring: six 64-bit bitmaps (one sixth of the window
/// each) keep the default state at 376 bytes, inside a 384-byte allocation.
pub(crate) const DISTINCT_BUCKETS: usize = 6;

/// Rings per layout: the count/sum windows, then the distinct ring.
const MAX_RINGS: usize = MAX_WINDOWS + 1;

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
    #[cfg(test)]
    pub(crate) fn holds(self, head: i64, bucket: i64) -> bool {
        bucket <= head && bucket > head - self.buckets
    }

    /// Where `ts_ms` falls in this ring.
    fn place(self, ts_ms: i64) -> Place {
        let bucket = self.bucket_of(ts_ms);
        Place {
            slot: bucket.rem_euclid(self.buckets) as usize,
            offset_ms: ts_ms.rem_euclid(self.bucket_ms),
        }
    }

    /// How many buckets the event's bucket (`place`, of `ts_ms`) lies after the bucket of
    /// `newest_ms`, clamped to one lap either way: `buckets` means the event passes over
    /// the whole ring, `-buckets` that the ring no longer holds it.
    fn lag(self, place: Place, ts_ms: i64, newest_ms: i64) -> i64 {
        // The newest time measured from the start of the event's bucket. Saturation only
        // happens far beyond any ring's span, where the clamped answer is the same.
        let from_start = newest_ms
            .saturating_sub(ts_ms)
            .saturating_add(place.offset_ms);
        if from_start >= 0 {
            if from_start < self.bucket_ms {
                0
            } else if from_start >= self.span_ms() {
                -self.buckets
            } else {
                -(from_start / self.bucket_ms)
            }
        } else {
            let before = from_start.unsigned_abs();
            let bucket_ms = self.bucket_ms as u64;
            if before > (self.buckets as u64 - 1) * bucket_ms {
                self.buckets
            } else {
                before.div_ceil(bucket_ms) as i64
            }
        }
    }
}

/// Where one event time falls in one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Place {
    /// The ring slot of the event's bucket.
    slot: usize,
    /// Milliseconds from the start of the event's bucket to the event.
    offset_ms: i64,
}

/// Where each value lives in a key's packed state, shared by all keys of one aggregator.
///
/// Word layout: a 5-word header (first seen, last seen, EW mean, EW variance, flags),
/// then one `f64` sum per window bucket, then the `u32` counts two to a word (an even
/// number per window), then one 64-bit counterparty bitmap per distinct-ring bucket.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The count/sum windows' rings, then the distinct ring.
    rings: [Ring; MAX_RINGS],
    window_count: usize,
    /// Index in `rings` of the ring with the longest span: events before it are late.
    longest: usize,
    alpha: f64,
    words: usize,
    /// [`estimate_distinct`] by number of zero bits, so reading a key takes no logarithm.
    distinct_estimates: [u32; 65],
}

const FIRST_SEEN: usize = 0;
const LAST_SEEN: usize = 1;
const EW_MEAN: usize = 2;
const EW_VAR: usize = 3;
/// Low 16 bits: the last country ([`CountryCode::to_bits`], 0 for none); bit 16: dirty;
/// bit 17: queued for the idle-key check.
const FLAGS: usize = 4;
const HEADER_WORDS: usize = 5;
const DIRTY_BIT: u64 = 1 << 16;
const QUEUED_BIT: u64 = 1 << 17;
const COUNTRY_MASK: u64 = 0xffff;
/// Words of packed `u32` counts per window.
const COUNT_WORDS: usize = WINDOW_BUCKETS / 2;

impl Layout {
    /// The layout for validated options: `windows` non-empty, increasing, at most
    /// [`MAX_WINDOWS`]; `alpha` in (0, 1].
    pub(crate) fn new(windows: &[Duration], distinct_window: Duration, alpha: f64) -> Layout {
        assert!(
            !windows.is_empty() && windows.len() <= MAX_WINDOWS,
            "1..=MAX_WINDOWS windows; options validation guarantees it"
        );
        let distinct = Ring::covering(distinct_window, DISTINCT_BUCKETS);
        let mut rings = [distinct; MAX_RINGS];
        for (ring, window) in rings.iter_mut().zip(windows) {
            *ring = Ring::covering(*window, WINDOW_BUCKETS);
        }
        // Ties go to the later ring, as `max_by_key` picks and the sequential model does.
        let longest = (0..=windows.len())
            .max_by_key(|&index| rings[index].span_ms())
            .unwrap_or(windows.len());
        let window_buckets = windows.len() * WINDOW_BUCKETS;
        Layout {
            rings,
            window_count: windows.len(),
            longest,
            alpha,
            words: HEADER_WORDS + window_buckets + window_buckets / 2 + DISTINCT_BUCKETS,
            distinct_estimates: std::array::from_fn(|zeros| {
                estimate_distinct(u64::MAX.checked_shr(zeros as u32).unwrap_or(0))
            }),
        }
    }

    /// The rings of the count/sum windows, shortest first.
    fn windows(&self) -> &[Ring] {
        &self.rings[..self.window_count]
    }

    fn distinct(&self) -> Ring {
        self.rings[self.window_count]
    }

    /// Bytes of one key's packed state (excluding allocator rounding).
    pub(crate) fn state_bytes(&self) -> usize {
        self.words * std::mem::size_of::<u64>()
    }

    /// Words of one key's packed state: what a checkpoint stores per key.
    pub(crate) fn words(&self) -> usize {
        self.words
    }

    fn sums_at(&self, window: usize) -> usize {
        HEADER_WORDS + window * WINDOW_BUCKETS
    }

    fn counts_at(&self, window: usize) -> usize {
        HEADER_WORDS + self.window_count * WINDOW_BUCKETS + window * COUNT_WORDS
    }

    fn distinct_at(&self) -> usize {
        HEADER_WORDS + self.window_count * (WINDOW_BUCKETS + COUNT_WORDS)
    }
}

/// The parts of an event one key's state needs, worked out once per event and shared by
/// all of its keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Update {
    pub(crate) ts_ms: i64,
    pub(crate) amount: f64,
    /// The counterparty's bit in a distinct bitmap.
    pub(crate) counterparty_bit: Option<u64>,
    pub(crate) country: Option<CountryCode>,
    /// The event's place in each ring of the layout it was made for, in `Layout::rings`
    /// order.
    places: [Place; MAX_RINGS],
}

impl Update {
    /// The update for an event time and its values; only valid with `layout`.
    pub(crate) fn new(
        layout: &Layout,
        ts_ms: i64,
        amount: f64,
        counterparty_bit: Option<u64>,
        country: Option<CountryCode>,
    ) -> Update {
        let mut places = [Place::default(); MAX_RINGS];
        for (place, ring) in places.iter_mut().zip(&layout.rings[..=layout.window_count]) {
            *place = ring.place(ts_ms);
        }
        Update {
            ts_ms,
            amount,
            counterparty_bit,
            country,
            places,
        }
    }

    /// The update for one event; only valid with `layout`.
    pub(crate) fn from_event(layout: &Layout, event: &Event) -> Update {
        Update::new(
            layout,
            event.ts_ms,
            event.amount,
            event
                .counterparty_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(counterparty_bit),
            event.country.as_deref().and_then(CountryCode::from_name),
        )
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

/// Adds two amounts, saturating at ±[`f64::MAX`] instead of overflowing to infinity.
///
/// Amounts are finite (decoding rejects others) but may be as large as `f64::MAX`, so two
/// of them can overflow a plain sum; one infinite sum would make every later feature of
/// the key non-finite, which the model refuses. A saturated sum reads as "at least this
/// much", which is all a fraud feature needs.
pub(crate) fn saturating_add(a: f64, b: f64) -> f64 {
    (a + b).clamp(-f64::MAX, f64::MAX)
}

/// One step of the exponentially weighted mean and variance (West's incremental form):
/// the newest value weighs `alpha`, older ones decay by `1 - alpha` per event.
///
/// Every intermediate saturates at ±[`f64::MAX`] (see [`saturating_add`]): with finite
/// inputs the mean and variance stay finite, and never NaN (at `alpha` 1 an unsaturated
/// infinite variance times `1 - alpha` would be NaN).
pub(crate) fn ew_step(mean: f64, var: f64, value: f64, alpha: f64) -> (f64, f64) {
    let bound = |x: f64| x.clamp(-f64::MAX, f64::MAX);
    let diff = bound(value - mean);
    let increment = alpha * diff;
    let spread = bound(var + bound(diff * increment));
    (bound(mean + increment), (1.0 - alpha) * spread)
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
        let values = state.start(layout, update);
        (state, values)
    }

    /// Forgets everything about the key and starts it again from `update`, exactly as
    /// [`new`](Self::new) would: what an idle key's next event sees (see "Idle keys" in
    /// the module docs). Only the bookkeeping flags (dirty, queued) survive.
    pub(crate) fn restart(&mut self, layout: &Layout, update: &Update) -> KeyValues {
        let flags = self.words[FLAGS] & (DIRTY_BIT | QUEUED_BIT);
        self.words.fill(0);
        self.words[FLAGS] = flags;
        self.start(layout, update)
    }

    /// Fills an all-zero state from the key's first event.
    fn start(&mut self, layout: &Layout, update: &Update) -> KeyValues {
        let state = self;
        state.set_i64(FIRST_SEEN, update.ts_ms);
        state.set_i64(LAST_SEEN, update.ts_ms);
        state.set_f64(EW_MEAN, update.amount);
        state.set_f64(EW_VAR, 0.0);
        state.add_to_rings(layout, update, update.ts_ms);
        if let Some(country) = update.country {
            state.set_country(country);
        }
        state.values(layout, None, None, false)
    }

    /// Appends the key's packed state to `out` as a checkpoint stores it: every word as
    /// it is, less the bookkeeping flags (dirty, queued), which belong to this process.
    pub(crate) fn export(&self, out: &mut Vec<u64>) {
        let start = out.len();
        out.extend_from_slice(&self.words);
        out[start + FLAGS] &= COUNTRY_MASK;
    }

    /// The key whose packed state [`export`](Self::export) wrote with the same layout;
    /// `None` when `words` is not one key's worth. Bits outside the country in the flags
    /// word are dropped, so a restored key starts clean and unqueued.
    pub(crate) fn import(layout: &Layout, words: &[u64]) -> Option<KeyState> {
        if words.len() != layout.words {
            return None;
        }
        let mut words: Box<[u64]> = words.into();
        words[FLAGS] &= COUNTRY_MASK;
        Some(KeyState { words })
    }

    /// The key's newest event time.
    pub(crate) fn last_seen_ms(&self) -> i64 {
        self.i64_at(LAST_SEEN)
    }

    /// Applies one more event of this key (in arrival order); returns what it sees.
    ///
    /// A late event (older than the longest ring allows) leaves the rings, the newest time
    /// and the country untouched; it still counts towards first seen and the EW amount
    /// statistics, which do not depend on time.
    pub(crate) fn apply(&mut self, layout: &Layout, update: &Update) -> KeyValues {
        let previous_last = self.i64_at(LAST_SEEN);
        let previous_country = self.country();
        let longest = layout.rings[layout.longest];
        let late = longest.lag(update.places[layout.longest], update.ts_ms, previous_last)
            <= -longest.buckets;
        if !late {
            self.add_to_rings(layout, update, previous_last);
            if update.ts_ms > previous_last {
                self.set_i64(LAST_SEEN, update.ts_ms);
            }
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
            layout.alpha,
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

    /// Marks the key as having an entry in the idle-key queue; `true` if it had none, i.e.
    /// the caller must queue it.
    pub(crate) fn mark_queued(&mut self) -> bool {
        let was_unqueued = self.words[FLAGS] & QUEUED_BIT == 0;
        self.words[FLAGS] |= QUEUED_BIT;
        was_unqueued
    }

    /// Called when a snapshot drain has copied this key.
    pub(crate) fn clear_dirty(&mut self) {
        self.words[FLAGS] &= !DIRTY_BIT;
    }

    /// Adds a non-late event to every ring that still holds its bucket. When the event is
    /// newer than `newest_ms` (the key's newest time before it), each ring's head first
    /// moves to the event's bucket, clearing the buckets it passes over so their slots are
    /// reused only for their new bucket.
    fn add_to_rings(&mut self, layout: &Layout, update: &Update, newest_ms: i64) {
        for (window, ring) in layout.windows().iter().enumerate() {
            let place = update.places[window];
            let lag = ring.lag(place, update.ts_ms, newest_ms);
            if lag <= -ring.buckets {
                continue;
            }
            let sums: &mut [u64; WINDOW_BUCKETS] = self.ring_mut(layout.sums_at(window));
            for slot in passed_slots::<WINDOW_BUCKETS>(place.slot, lag) {
                sums[slot] = 0.0f64.to_bits();
            }
            let sum = &mut sums[place.slot % WINDOW_BUCKETS];
            *sum = saturating_add(f64::from_bits(*sum), update.amount).to_bits();

            let counts: &mut [u64; COUNT_WORDS] = self.ring_mut(layout.counts_at(window));
            for slot in passed_slots::<WINDOW_BUCKETS>(place.slot, lag) {
                counts[slot / 2] &= !(u64::from(u32::MAX) << count_shift(slot));
            }
            let word = &mut counts[place.slot % WINDOW_BUCKETS / 2];
            let shift = count_shift(place.slot);
            let count = u64::from(((*word >> shift) as u32).saturating_add(1));
            *word = (*word & !(u64::from(u32::MAX) << shift)) | count << shift;
        }

        let ring = layout.distinct();
        let place = update.places[layout.window_count];
        let lag = ring.lag(place, update.ts_ms, newest_ms);
        let bitmaps: &mut [u64; DISTINCT_BUCKETS] = self.ring_mut(layout.distinct_at());
        for slot in passed_slots::<DISTINCT_BUCKETS>(place.slot, lag) {
            bitmaps[slot] = 0;
        }
        if let Some(bit) = update.counterparty_bit {
            if lag > -ring.buckets {
                bitmaps[place.slot % DISTINCT_BUCKETS] |= bit;
            }
        }
    }

    /// The `N` words of one ring starting at word `at`.
    fn ring_mut<const N: usize>(&mut self, at: usize) -> &mut [u64; N] {
        (&mut self.words[at..at + N])
            .try_into()
            .expect("a ring's words lie inside the state the layout sized")
    }

    fn ring<const N: usize>(&self, at: usize) -> &[u64; N] {
        (&self.words[at..at + N])
            .try_into()
            .expect("a ring's words lie inside the state the layout sized")
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
    /// buckets before it, since passed buckets were cleared. Sums are added in slot order
    /// so a value never depends on how it was computed.
    fn window_values(&self, layout: &Layout) -> WindowValues {
        let mut values = WindowValues::zeroed(layout.window_count);
        for window in 0..layout.window_count {
            let sums: &[u64; WINDOW_BUCKETS] = self.ring(layout.sums_at(window));
            let mut sum = 0.0;
            for bits in sums {
                sum = saturating_add(sum, f64::from_bits(*bits));
            }
            let counts: &[u64; COUNT_WORDS] = self.ring(layout.counts_at(window));
            // Eight u32 counts cannot overflow a u64; saturate once, as adding in u32 would.
            let count: u64 = counts
                .iter()
                .map(|word| (word & u64::from(u32::MAX)) + (word >> 32))
                .sum();
            values.set(window, u32::try_from(count).unwrap_or(u32::MAX), sum);
        }
        values
    }

    fn distinct(&self, layout: &Layout) -> u32 {
        let bitmaps: &[u64; DISTINCT_BUCKETS] = self.ring(layout.distinct_at());
        let union = bitmaps.iter().fold(0, |acc, bitmap| acc | bitmap);
        layout.distinct_estimates[union.count_zeros() as usize]
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

/// The slots of an `N`-bucket ring whose head moves `lag` buckets forward onto `slot`: the
/// new head slot and the `lag - 1` before it, or every slot after a whole lap. None when
/// the head does not move (`lag <= 0`).
fn passed_slots<const N: usize>(slot: usize, lag: i64) -> impl Iterator<Item = usize> {
    let passed = lag.clamp(0, N as i64) as usize;
    (0..passed).map(move |back| (slot + N - back) % N)
}

/// The bit shift of a slot's count in its packed word.
fn count_shift(slot: usize) -> u32 {
    (slot % 2) as u32 * 32
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
        Update::new(&layout(), ts_ms, amount, None, None)
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
    fn two_huge_amounts_saturate_the_window_sums_and_ew_statistics_instead_of_overflowing() {
        let layout = layout();
        let (mut state, _) = KeyState::new(&layout, &update(0, 1e308));
        let values = state.apply(&layout, &update(1, 1e308));
        for (count, sum) in values.windows.iter() {
            assert_eq!((count, sum), (2, f64::MAX));
        }
        assert!(values.amount_mean.is_finite() && values.amount_std.is_finite());
        // Opposite extremes: every difference overflows, nothing becomes infinite or NaN.
        let values = state.apply(&layout, &update(2, -f64::MAX));
        assert!(values.windows.iter().all(|(_, sum)| sum.is_finite()));
        assert!(values.amount_mean.is_finite() && values.amount_std.is_finite());
        let snapshot = state.snapshot(&layout);
        assert!(snapshot.windows.iter().all(|(_, sum)| sum.is_finite()));
    }

    #[test]
    fn ew_step_stays_finite_at_alpha_one_with_extreme_values() {
        let (mean, var) = ew_step(-f64::MAX, f64::MAX, f64::MAX, 1.0);
        assert!(mean.is_finite() && var.is_finite(), "{mean} {var}");
        let (mean, var) = ew_step(0.0, 0.0, 1e308, 0.5);
        assert_eq!(mean, 5e307);
        assert!(var.is_finite(), "{var}");
        assert_eq!(ew_step(10.0, 0.0, 20.0, 0.5), (15.0, 25.0));
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
    fn an_exported_key_imports_to_the_same_state_without_its_bookkeeping_flags() {
        let layout = layout();
        let with = |ts, country: &str, cp: &str| Update {
            country: CountryCode::from_name(country),
            counterparty_bit: Some(counterparty_bit(cp)),
            ..update(ts, 3.5)
        };
        let (mut state, _) = KeyState::new(&layout, &with(0, "DE", "A-1"));
        state.apply(&layout, &with(MINUTE, "FR", "A-2"));
        state.mark_dirty();
        state.mark_queued();
        let mut words = Vec::new();
        state.export(&mut words);
        assert_eq!(words.len(), layout.words());
        let mut restored = KeyState::import(&layout, &words).unwrap();
        assert!(
            restored.mark_dirty() && restored.mark_queued(),
            "restored keys start clean"
        );
        // The next event sees exactly what it would have seen without the round trip.
        let next = with(2 * MINUTE, "BR", "A-3");
        assert_eq!(restored.apply(&layout, &next), state.apply(&layout, &next));
        assert!(KeyState::import(&layout, &words[1..]).is_none());
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
    #[test]
    fn lag_agrees_with_bucket_numbers_within_a_lap_and_clamps_beyond() {
        for ring in [
            Ring::covering(Duration::from_secs(60), WINDOW_BUCKETS),
            Ring::covering(Duration::from_millis(100), DISTINCT_BUCKETS),
        ] {
            let times = (-200_000..200_000)
                .step_by(997)
                .chain([0, 1, -1, 7_500, -7_500]);
            for ts in times.clone() {
                let place = ring.place(ts);
                assert_eq!(
                    place.slot as i64,
                    ring.bucket_of(ts).rem_euclid(ring.buckets)
                );
                for newest in times.clone().map(|t| t / 3) {
                    let expected = (ring.bucket_of(ts) - ring.bucket_of(newest))
                        .clamp(-ring.buckets, ring.buckets);
                    assert_eq!(
                        ring.lag(place, ts, newest),
                        expected,
                        "ts {ts} newest {newest}"
                    );
                }
            }
        }
        let ring = Ring::covering(Duration::from_secs(60), WINDOW_BUCKETS);
        assert_eq!(ring.lag(ring.place(i64::MAX), i64::MAX, i64::MIN), 8);
        assert_eq!(ring.lag(ring.place(i64::MIN), i64::MIN, i64::MAX), -8);
    }
}
