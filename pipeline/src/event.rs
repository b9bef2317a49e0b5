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
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts_ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        // Only reachable for times beyond year 262143, which decoding rejects.
        None => ts_ms.to_string(),
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
