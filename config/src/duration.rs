//! Human-readable durations such as `"250ms"`, `"2s"`, `"1m"`, `"24h"` or `"1d"`.
//!
//! Every duration key in the configuration is written this way, and the effective
//! configuration prints durations back in the same form, so what `config show` prints can
//! be pasted into a file unchanged.

use std::time::Duration;

/// Why a duration string could not be read. The caller adds the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but whitespace was given.
    #[error("the duration is empty; write a number followed by a unit, such as \"2s\"")]
    Empty,
    /// A leading minus sign: configuration durations are lengths of time, never negative.
    #[error("durations cannot be negative; write a length of time such as \"2s\"")]
    Negative,
    /// A number without a unit, such as `"5"`: seconds and milliseconds are both common,
    /// so guessing would be wrong half of the time.
    #[error(
        "`{number}` has no unit; add one of ns, us, ms, s, m, h, d (for example \"{number}s\")"
    )]
    MissingUnit {
        /// The number that stood without a unit.
        number: String,
    },
    /// A unit outside ns, us, ms, s, m, h, d.
    #[error("unknown unit `{unit}`; use one of ns, us, ms, s, m, h, d")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// Something other than digits where a number was expected (fractions included).
    #[error("expected a whole number followed by a unit at `{rest}`; write for example \"1500ms\" instead of \"1.5s\"")]
    NotANumber {
        /// The text from the point where reading failed.
        rest: String,
    },
    /// The total does not fit a `std::time::Duration`.
    #[error("the duration is too long")]
    TooLong,
}

/// Nanoseconds per unit, largest first so that formatting picks the coarsest exact unit.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Reads a duration such as `"250ms"`, `"2s"`, `"1m"`, `"24h"`, `"1d"` or a sum such as
/// `"1h30m"`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. Zero (`"0s"`) is a
/// valid duration here; keys that need a positive one check that themselves.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(DurationError::NotANumber {
                rest: rest.to_owned(),
            });
        }
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_end);
        if unit.is_empty() {
            if after.starts_with('.') {
                return Err(DurationError::NotANumber {
                    rest: rest.to_owned(),
                });
            }
            return Err(DurationError::MissingUnit {
                number: digits.to_owned(),
            });
        }
        let per_unit = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
        })?;
        let count: u128 = digits.parse().map_err(|_| DurationError::TooLong)?;
        total_nanos = count
            .checked_mul(per_unit)
            .and_then(|n| total_nanos.checked_add(n))
            .ok_or(DurationError::TooLong)?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::TooLong)?;
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    let unit = if unit == "µs" { "us" } else { unit };
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, nanos)| *nanos)
}

/// Writes a duration in the coarsest unit that represents it exactly, so that
/// `parse_duration(&format_duration(d)) == Ok(d)` for every `d`.
///
/// A single day prints as `"24h"` rather than `"1d"` because that is how the daily window
/// is usually named; two days or more that are whole days print in days (`"2d"`).
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let day = UNITS[0].1;
    for (name, per_unit) in UNITS {
        if per_unit == day && nanos < 2 * day {
            continue;
        }
        if nanos % per_unit == 0 {
            return format!("{}{name}", nanos / per_unit);
        }
    }
    unreachable!("every duration is a whole number of nanoseconds, the last unit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_durations_parse_to_the_expected_length() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("15us"), Ok(Duration::from_micros(15)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_print_in_the_coarsest_exact_unit() {
        assert_eq!(format_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn formatting_then_parsing_gives_back_the_same_duration() {
        let samples = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(1_234_567_891),
            Duration::from_millis(5),
            Duration::from_secs(90),
            Duration::from_secs(86_400),
            Duration::from_secs(7 * 86_400),
            Duration::new(3_600, 1_000),
        ];
        for duration in samples {
            let text = format_duration(duration);
            assert_eq!(parse_duration(&text), Ok(duration), "via {text:?}");
        }
        for text in ["250ms", "2s", "1m", "1h", "24h", "2d"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::MissingUnit {
                number: "5".to_owned()
            })
        );
        assert_eq!(
            parse_duration("2w"),
            Err(DurationError::UnknownUnit {
                unit: "w".to_owned()
            })
        );
        assert!(matches!(
            parse_duration("1.5s"),
            Err(DurationError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::NotANumber { .. })
        ));
        assert_eq!(
            parse_duration("99999999999999999999999d"),
            Err(DurationError::TooLong)
        );
    }
}
