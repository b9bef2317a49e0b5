//! The values the aggregator hands out: per event ([`KeyValues`]) and per key in a snapshot
//! ([`KeySnapshot`]). Both are plain fixed-size data, so producing them never allocates.

/// The most windows one aggregator keeps; window values live in fixed arrays of this size.
pub const MAX_WINDOWS: usize = 8;

/// Count and sum per configured window, in the order of `AggregateOptions::windows`.
///
/// Fixed-size arrays so an event's aggregates are produced without heap allocation; slots
/// past [`len`](Self::len) are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowValues {
    len: u8,
    counts: [u32; MAX_WINDOWS],
    sums: [f64; MAX_WINDOWS],
}

impl WindowValues {
    /// Values for `len` windows, all zero.
    pub(crate) fn zeroed(len: usize) -> WindowValues {
        assert!(
            len <= MAX_WINDOWS,
            "window count {len} exceeds MAX_WINDOWS; options validation must reject it"
        );
        WindowValues {
            len: len as u8,
            ..WindowValues::default()
        }
    }

    pub(crate) fn set(&mut self, index: usize, count: u32, sum: f64) {
        self.counts[index] = count;
        self.sums[index] = sum;
    }

    /// How many windows are configured.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no window is configured (never true for a validated aggregator).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events counted in window `index`; 0 for an index past [`len`](Self::len).
    pub fn count(&self, index: usize) -> u32 {
        self.counts.get(index).copied().unwrap_or(0)
    }

    /// Sum of the amounts in window `index`; 0 for an index past [`len`](Self::len).
    pub fn sum(&self, index: usize) -> f64 {
        self.sums.get(index).copied().unwrap_or(0.0)
    }

    /// `(count, sum)` per configured window, shortest window first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.counts[..self.len()]
            .iter()
            .copied()
            .zip(self.sums[..self.len()].iter().copied())
    }
}

/// A country as two bytes: an ISO 3166 alpha-2 code upper-cased, or, for any other text,
/// a 15-bit hash tagged with the high bit so it can never equal a real code.
///
/// Two bytes keep the per-key state small; equality is all the "country changed" signal
/// needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code for an event's `country` field; `None` for an empty string.
    pub fn from_name(name: &str) -> Option<CountryCode> {
        match name.as_bytes() {
            [] => None,
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => {
                let hash = COUNTRY_HASHER.hash_one(name);
                Some(CountryCode([0x80 | (hash >> 8) as u8 & 0x7f, hash as u8]))
            }
        }
    }

    /// The alpha-2 code, or `None` when the input was not a two-letter code (hashed).
    pub fn alpha2(&self) -> Option<&str> {
        if self.0[0] & 0x80 != 0 {
            return None;
        }
        std::str::from_utf8(&self.0).ok()
    }

    /// Packs into a non-zero `u16` so per-key state can use 0 for "no country yet".
    pub(crate) fn to_bits(self) -> u16 {
        u16::from_be_bytes(self.0)
    }

    /// The inverse of [`to_bits`](Self::to_bits); 0 means no country.
    pub(crate) fn from_bits(bits: u16) -> Option<CountryCode> {
        (bits != 0).then(|| CountryCode(bits.to_be_bytes()))
    }
}

/// Fixed seeds: a country's tag must be the same for every key and every run of the job.
const COUNTRY_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
);

/// What one event sees for one of its keys, right after the event was applied.
///
/// Window values and the distinct count include the event itself unless it is
/// [`late`](Self::late). Values are relative to the key's newest bucket (its newest event
/// time), not to wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyValues {
    /// Count and sum per window.
    pub windows: WindowValues,
    /// Approximate distinct counterparties over the distinct window (see the module docs
    /// for accuracy).
    pub distinct_counterparties: u32,
    /// The earliest event time seen for this key, this event included.
    pub first_seen_ms: i64,
    /// The key's newest event time before this event; `None` when this event created the
    /// key. With out-of-order input it may be later than this event's time.
    pub previous_last_seen_ms: Option<i64>,
    /// The last country seen on an earlier on-time event of this key; compare with the
    /// event's own country to flag a change.
    pub previous_country: Option<CountryCode>,
    /// The event was older than the key's longest ring: it is not in the window values.
    pub late: bool,
    /// Exponentially weighted mean of the key's amounts, this event included.
    pub amount_mean: f64,
    /// Exponentially weighted standard deviation of the key's amounts, this event included.
    pub amount_std: f64,
}

/// One key's state as published in a snapshot.
///
/// Window values are as of the key's newest event (`last_seen_ms`): a reader comparing
/// against a later watermark should treat a window as empty once `watermark - last_seen`
/// exceeds its length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeySnapshot {
    /// Count and sum per window.
    pub windows: WindowValues,
    /// Approximate distinct counterparties over the distinct window.
    pub distinct_counterparties: u32,
    /// The earliest event time seen for this key.
    pub first_seen_ms: i64,
    /// The newest event time seen for this key.
    pub last_seen_ms: i64,
    /// The last country seen on an on-time event of this key.
    pub country: Option<CountryCode>,
    /// Exponentially weighted mean of the key's amounts.
    pub amount_mean: f64,
    /// Exponentially weighted standard deviation of the key's amounts.
    pub amount_std: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_letter_countries_are_upper_cased_codes() {
        let code = CountryCode::from_name("de").unwrap();
        assert_eq!(code, CountryCode::from_name("DE").unwrap());
        assert_eq!(code.alpha2(), Some("DE"));
    }

    #[test]
    fn other_country_text_is_hashed_and_never_equals_a_code() {
        let hashed = CountryCode::from_name("Germany").unwrap();
        assert_eq!(hashed.alpha2(), None);
        assert_eq!(hashed, CountryCode::from_name("Germany").unwrap());
        assert_ne!(hashed, CountryCode::from_name("DE").unwrap());
        assert_ne!(hashed, CountryCode::from_name("Gérmany").unwrap());
    }

    #[test]
    fn empty_country_is_none_and_codes_round_trip_through_bits() {
        assert_eq!(CountryCode::from_name(""), None);
        let code = CountryCode::from_name("fr").unwrap();
        assert_ne!(code.to_bits(), 0);
        assert_eq!(CountryCode::from_bits(code.to_bits()), Some(code));
        assert_eq!(CountryCode::from_bits(0), None);
    }

    #[test]
    fn window_values_past_len_read_as_zero() {
        let mut values = WindowValues::zeroed(2);
        values.set(1, 3, 7.5);
        assert_eq!(values.len(), 2);
        assert_eq!(values.iter().collect::<Vec<_>>(), vec![(0, 0.0), (3, 7.5)]);
        assert_eq!(values.count(5), 0);
        assert_eq!(values.sum(5), 0.0);
    }
}
