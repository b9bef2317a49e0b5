//! Fixed tables the generator draws from (countries, merchant categories, the daily rate
//! cycle) and the id formats of generated entities.
//!
//! Keeping them in one place makes the realism assumptions easy to review and change.

/// A country an account lives in or a transaction happens in, with its local currency.
pub(crate) struct Country {
    pub(crate) code: &'static str,
    pub(crate) currency: &'static str,
}

const fn country(code: &'static str, currency: &'static str) -> Country {
    Country { code, currency }
}

/// Every country the generator uses. The first [`HOME_COUNTRIES`] entries are where
/// accounts live (weights in [`HOME_WEIGHTS`]); travel also reaches the next few; the
/// last [`TAKEOVER_COUNTRIES`] are where account takeovers come from (travel reaches
/// some of them too, so a foreign country alone is not proof of fraud).
pub(crate) const COUNTRIES: [Country; 24] = [
    country("DE", "EUR"),
    country("FR", "EUR"),
    country("NL", "EUR"),
    country("ES", "EUR"),
    country("IT", "EUR"),
    country("GB", "GBP"),
    country("PL", "PLN"),
    country("AT", "EUR"),
    country("BE", "EUR"),
    // Travel destinations.
    country("PT", "EUR"),
    country("GR", "EUR"),
    country("HR", "EUR"),
    country("CH", "CHF"),
    country("US", "USD"),
    country("TR", "TRY"),
    country("TH", "THB"),
    // Takeover origins (US and TR above are shared with travel).
    country("BR", "BRL"),
    country("NG", "NGN"),
    country("RU", "RUB"),
    country("CN", "CNY"),
    country("IN", "INR"),
    country("VN", "VND"),
    country("ID", "IDR"),
    country("RO", "RON"),
];

/// How many leading entries of [`COUNTRIES`] are home countries.
pub(crate) const HOME_COUNTRIES: usize = 9;
/// Relative share of accounts living in each home country.
pub(crate) const HOME_WEIGHTS: [f64; HOME_COUNTRIES] =
    [30.0, 18.0, 10.0, 10.0, 10.0, 8.0, 6.0, 4.0, 4.0];
/// Travel goes to any country in `COUNTRIES[..TRAVEL_COUNTRIES]` other than home.
pub(crate) const TRAVEL_COUNTRIES: usize = 16;
/// Takeovers come from `COUNTRIES[COUNTRIES.len() - TAKEOVER_COUNTRIES..]`, plus US and TR.
pub(crate) const TAKEOVER_COUNTRIES: usize = 8;
/// Indices of the travel countries that takeovers also come from.
pub(crate) const TAKEOVER_SHARED: [usize; 2] = [13, 14];

// The groups partition the table: home ⊂ travel, then takeover-only countries.
const _: () = {
    assert!(HOME_COUNTRIES <= TRAVEL_COUNTRIES);
    assert!(TRAVEL_COUNTRIES + TAKEOVER_COUNTRIES == COUNTRIES.len());
};

/// A kind of merchant: its typical amount and how spread out amounts are.
pub(crate) struct Category {
    /// Median amount of a payment, in the payer's currency.
    pub(crate) median: f64,
    /// Standard deviation of the log amount.
    pub(crate) sigma: f64,
    /// Relative share of merchants in this category.
    pub(crate) weight: f64,
    /// Whether fraudsters favour it (resellable goods, gift cards, travel).
    pub(crate) high_risk: bool,
}

const fn category(median: f64, sigma: f64, weight: f64, high_risk: bool) -> Category {
    Category {
        median,
        sigma,
        weight,
        high_risk,
    }
}

/// Merchant categories: groceries, cafés, restaurants, fuel, pharmacy, fashion,
/// subscriptions, marketplace, electronics, travel, gift cards.
pub(crate) const CATEGORIES: [Category; 11] = [
    category(35.0, 0.55, 20.0, false),
    category(6.5, 0.45, 12.0, false),
    category(42.0, 0.5, 12.0, false),
    category(62.0, 0.3, 6.0, false),
    category(18.0, 0.6, 6.0, false),
    category(70.0, 0.6, 10.0, false),
    category(12.0, 0.35, 6.0, false),
    category(38.0, 0.9, 12.0, true),
    category(240.0, 0.8, 7.0, true),
    category(320.0, 0.7, 5.0, true),
    category(50.0, 0.5, 4.0, true),
];

/// Relative benign transaction rate per hour of the day (UTC): quiet at night, busiest in
/// the evening. Interpolated per minute by [`super::clock::DailyCycle`].
pub(crate) const HOURLY_RATE: [f64; 24] = [
    0.20, 0.12, 0.08, 0.07, 0.08, 0.15, 0.35, 0.65, 0.90, 1.00, 1.05, 1.15, 1.25, 1.20, 1.10, 1.10,
    1.15, 1.25, 1.35, 1.30, 1.10, 0.85, 0.60, 0.35,
];

/// Payment channels as they appear in events.
pub(crate) const CARD: &str = "card";
pub(crate) const ONLINE: &str = "online";
pub(crate) const TRANSFER: &str = "transfer";
pub(crate) const ATM: &str = "atm";

/// The smallest number of digits in generated entity ids (`A-000123`); larger numbers
/// simply use more digits, so ids stay unique.
const ID_DIGITS: usize = 6;
/// Digits in event ids (`e-00000017`).
const EVENT_ID_DIGITS: usize = 8;

/// `prefix` + `-` + `n` zero-padded to at least `digits` digits.
fn padded(prefix: char, n: u64, digits: usize) -> String {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let len = buf.len() - at;
    let mut id = String::with_capacity(2 + len.max(digits));
    id.push(prefix);
    id.push('-');
    for _ in len..digits {
        id.push('0');
    }
    for &digit in &buf[at..] {
        id.push(char::from(digit));
    }
    id
}

/// Account ids: `A-000123`.
pub(crate) fn account_id(index: u32) -> String {
    padded('A', u64::from(index), ID_DIGITS)
}

/// Device ids: `D-000123`. Devices the graph does not know use numbers past the graph's.
pub(crate) fn device_id(index: u32) -> String {
    padded('D', u64::from(index), ID_DIGITS)
}

/// Merchant ids: `M-000123`.
pub(crate) fn merchant_id(index: u32) -> String {
    padded('M', u64::from(index), ID_DIGITS)
}

/// Event ids: `e-00000017`, the event's position in the stream.
pub(crate) fn event_id(seq: u64) -> String {
    padded('e', seq, EVENT_ID_DIGITS)
}

/// First octets of public-looking address blocks (no private, loopback, shared or
/// multicast ranges).
const FIRST_OCTETS: [u8; 39] = [
    2, 5, 31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94,
    95, 109, 141, 145, 151, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217,
];
/// Addresses per first octet: the last octet avoids 0 and 255.
const PER_BLOCK: u64 = 254 * 65_536;
/// Multiplier of the scrambling bijection on `0..PER_BLOCK`: odd and not a multiple of
/// 127, so coprime with `PER_BLOCK` (2^17 · 127).
const SCRAMBLE: u64 = 9_737_333;

/// The dotted-quad IP address of IP number `index`: distinct indices give distinct
/// addresses (for the first 650 million), scattered so neighbours do not look related.
pub(crate) fn ip_address(index: u32) -> String {
    let index = u64::from(index);
    let first = FIRST_OCTETS[(index / PER_BLOCK) as usize % FIRST_OCTETS.len()];
    let rest = (index % PER_BLOCK) * SCRAMBLE % PER_BLOCK;
    let last = 1 + rest % 254;
    let middle = rest / 254;
    let octets = [u64::from(first), middle >> 8, middle & 0xff, last];
    let mut ip = String::with_capacity(15);
    for (i, octet) in octets.iter().enumerate() {
        if i > 0 {
            ip.push('.');
        }
        push_decimal(&mut ip, *octet);
    }
    ip
}

fn push_decimal(out: &mut String, value: u64) {
    if value >= 100 {
        out.push(char::from(b'0' + (value / 100) as u8));
    }
    if value >= 10 {
        out.push(char::from(b'0' + (value / 10 % 10) as u8));
    }
    out.push(char::from(b'0' + (value % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_zero_padded_and_grow_past_the_width() {
        assert_eq!(account_id(123), "A-000123");
        assert_eq!(device_id(0), "D-000000");
        assert_eq!(merchant_id(1_234_567), "M-1234567");
        assert_eq!(event_id(17), "e-00000017");
    }

    #[test]
    fn ip_addresses_are_distinct_dotted_quads() {
        let mut seen = std::collections::HashSet::new();
        for index in (0..200_000u32).chain(PER_BLOCK as u32 - 5..PER_BLOCK as u32 + 5) {
            let ip = ip_address(index);
            let octets: Vec<u32> = ip.split('.').map(|o| o.parse().unwrap()).collect();
            assert_eq!(octets.len(), 4, "{ip}");
            assert!(octets.iter().all(|&o| o <= 255), "{ip}");
            assert!(octets[3] != 0 && octets[3] != 255, "{ip}");
            assert!(
                seen.insert(ip.clone()),
                "duplicate address {ip} for {index}"
            );
        }
    }

    #[test]
    fn scramble_multiplier_is_coprime_with_the_block_size() {
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        assert_eq!(gcd(SCRAMBLE, PER_BLOCK), 1);
    }

    #[test]
    fn takeover_countries_shared_with_travel_are_us_and_turkey() {
        assert_eq!(COUNTRIES[TAKEOVER_SHARED[0]].code, "US");
        assert_eq!(COUNTRIES[TAKEOVER_SHARED[1]].code, "TR");
    }
}
