//! The input event: one transaction, as it arrives in a Kafka message or a JSONL line.

use serde::{Deserialize, Serialize};

/// A decoded, validated transaction event.
///
/// `event_id`, `ts`, `account_id` and `amount` are required; the rest are optional.
/// `ts_ms` is the event time in milliseconds since the Unix epoch (UTC), parsed from the
/// RFC 3339 `ts` field of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub ts_ms: i64,
    pub account_id: String,
    pub counterparty_id: Option<String>,
    pub merchant_id: Option<String>,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub amount: f64,
    pub currency: Option<String>,
    pub channel: Option<String>,
    pub country: Option<String>,
}

/// The wire form of an event, used by writers (the generator, `produce`): `ts` is RFC 3339
/// with milliseconds and a `Z` suffix, optional fields are left out when absent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord<'a> {
    pub event_id: &'a str,
    pub ts: String,
    pub account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a str>,
    pub amount: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
}

/// Formats event time the way events and results carry it: `2026-11-22T10:03:12.512Z`.
pub fn format_ts(ts_ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_ts(&mut out, ts_ms);
    // write_ts writes ASCII only.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `ts_ms` as RFC 3339 UTC with milliseconds, without allocating: the result
/// encoder calls this for every event. Years outside 0..=9999 fall back to chrono.
pub fn write_ts(out: &mut Vec<u8>, ts_ms: i64) {
    let days = ts_ms.div_euclid(86_400_000);
    let ms_of_day = ts_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        if let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts_ms) {
            out.extend_from_slice(
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .as_bytes(),
            );
        }
        return;
    }
    let digits = |out: &mut Vec<u8>, v: i64, width: u32| {
        for p in (0..width).rev() {
            out.push(b'0' + ((v / 10_i64.pow(p)) % 10) as u8);
        }
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, ms_of_day / 3_600_000, 2);
    out.push(b':');
    digits(out, ms_of_day / 60_000 % 60, 2);
    out.push(b':');
    digits(out, ms_of_day / 1000 % 60, 2);
    out.push(b'.');
    digits(out, ms_of_day % 1000, 3);
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Event {
    /// An event of `account_id` with only the required fields; tests set the rest with
    /// `Event { device_id: Some(..), ..Event::bare(..) }`, and the feature layout derives
    /// what an event without a graph answer reads from one.
    pub(crate) fn bare(event_id: &str, ts_ms: i64, account_id: &str, amount: f64) -> Event {
        Event {
            event_id: event_id.to_string(),
            ts_ms,
            account_id: account_id.to_string(),
            counterparty_id: None,
            merchant_id: None,
            device_id: None,
            ip: None,
            amount,
            currency: None,
            channel: None,
            country: None,
        }
    }
}

impl Event {
    /// The wire form of this event, borrowing its strings.
    pub fn to_record(&self) -> EventRecord<'_> {
        EventRecord {
            event_id: &self.event_id,
            ts: format_ts(self.ts_ms),
            account_id: &self.account_id,
            counterparty_id: self.counterparty_id.as_deref(),
            merchant_id: self.merchant_id.as_deref(),
            device_id: self.device_id.as_deref(),
            ip: self.ip.as_deref(),
            amount: self.amount,
            currency: self.currency.as_deref(),
            channel: self.channel.as_deref(),
            country: self.country.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_exactly_like_chrono_across_the_calendar() {
        let mut ts: i64 = -62_135_596_800_000; // 0001-01-01
        let end: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999
        let step = 7_777_777_777 + 123;
        while ts <= end {
            let expected = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(format_ts(ts), expected, "ts_ms = {ts}");
            ts += step;
        }
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999Z");
    }
}
