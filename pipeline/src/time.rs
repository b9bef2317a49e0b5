//! Points in time and periods as people type them on the command line: RFC 3339
//! (`2026-11-22T10:03:00Z`) or relative to now (`-15m`), and periods like `30s` or `2h`.
//! Shared by the commands that select by event time (`results`, `replay`).

use std::time::Duration;

use crate::decode::parse_ts;

/// Why a time or period from the command line could not be read. Messages show the
/// accepted forms.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error(
        "`{text}` is not a time: {reason}; use RFC 3339 (2026-11-22T10:03:00Z) or a relative time like -15m"
    )]
    NotATime { text: String, reason: String },
    #[error("`{0}` is not a period; use a number and a unit: 30s, 10m, 2h, 7d")]
    NotAPeriod(String),
    #[error("`{0}` has no known unit; use ms, s, m, h or d (30s, 10m, 2h, 7d)")]
    UnknownUnit(String),
    #[error("`{0}` is too long a period")]
    TooLong(String),
}

/// A point in time in milliseconds since the Unix epoch: RFC 3339, or relative to `now_ms`
/// (`-15m`, `-2h`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    if let Some(rest) = text.strip_prefix('-') {
        return Ok(now_ms.saturating_sub(parse_period(rest)?.as_millis() as i64));
    }
    parse_ts(text).map_err(|e| TimeError::NotATime {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

/// A period: a number and a unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_period(text: &str) -> Result<Duration, TimeError> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| TimeError::NotAPeriod(text.to_string()))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(TimeError::UnknownUnit(text.to_string())),
    };
    let ms = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= i64::MAX as u64 / 2)
        .ok_or_else(|| TimeError::TooLong(text.to_string()))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(
            parse_time("-15m", 1_000_000_000).unwrap(),
            1_000_000_000 - 900_000
        );
        assert_eq!(parse_period("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_period("7d").unwrap(), Duration::from_secs(7 * 86400));
    }

    #[test]
    fn rfc3339_times_are_read_as_utc_milliseconds() {
        assert_eq!(
            parse_time("2026-11-22T10:03:00Z", 0).unwrap(),
            parse_ts("2026-11-22T10:03:00.000Z").unwrap()
        );
    }

    #[test]
    fn bad_times_name_the_accepted_forms() {
        let err = parse_time("yesterday", 0).unwrap_err().to_string();
        assert!(err.contains("RFC 3339") && err.contains("-15m"), "{err}");
        let err = parse_period("10x").unwrap_err().to_string();
        assert!(err.contains("unit"), "{err}");
        assert!(matches!(
            parse_period("99999999999999999d"),
            Err(TimeError::TooLong(_))
        ));
    }
}
