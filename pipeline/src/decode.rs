//! Decoding raw input bytes into [`Event`]s, with a typed reason for everything that does
//! not decode. Bad input is never fatal: the caller turns a [`DecodeError`] into a dead letter.

use std::borrow::Cow;

use serde::Deserialize;
use thiserror::Error;

use crate::event::Event;

/// Why an input record could not be decoded. The message is what a person reads in the
/// dead-letter record, so it names the field and what was expected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("record is {size} bytes, over the {limit}-byte limit (source.max_event_bytes)")]
    Oversize { size: usize, limit: usize },
    #[error("record is not valid UTF-8 (invalid byte at position {position})")]
    NotUtf8 { position: usize },
    #[error("record is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("record is JSON but not an object")]
    NotAnObject,
    #[error("required field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("field `{field}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("field `{field}` is empty")]
    Empty { field: &'static str },
    #[error("field `amount` is not a finite number ({value})")]
    NonFiniteAmount { value: String },
    #[error("field `ts` is not an RFC 3339 timestamp ({value:?}): {detail}")]
    BadTimestamp { value: String, detail: String },
    /// Decoded, but refused by [`Aggregator::admit`](crate::aggregate::Aggregator::admit).
    #[error(
        "field `ts` ({ts}) is more than {max_skew} ahead of both the current time and the newest event time accepted so far (the later is {watermark}); \
         fix the producer's clock, or raise aggregate.max_future_skew if such skew is expected"
    )]
    FutureTimestamp {
        ts: String,
        watermark: String,
        max_skew: String,
    },
}

impl DecodeError {
    /// A short, stable name for the kind of failure: used as a metric label and in the run
    /// summary's dead-letter breakdown.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::Empty { .. } => "empty_field",
            DecodeError::NonFiniteAmount { .. } => "non_finite_amount",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
        }
    }
}

/// The fields of the wire form, borrowed from the input where no unescaping is needed.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    account_id: Cow<'a, str>,
    #[serde(borrow, default)]
    counterparty_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    merchant_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    amount: f64,
    #[serde(borrow, default)]
    currency: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    country: Option<Cow<'a, str>>,
}

/// Decodes one record. `max_bytes` is the size limit (`source.max_event_bytes`).
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Event, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::Oversize {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
        position: e.valid_up_to(),
    })?;
    match serde_json::from_str::<Wire<'_>>(text) {
        Ok(wire) => from_wire(wire),
        // The fast path's serde message does not say which field failed; bad input is rare,
        // so a second, slower look finds the field to name.
        Err(fast) => Err(classify(text, &fast)),
    }
}

fn from_wire(wire: Wire<'_>) -> Result<Event, DecodeError> {
    if !wire.amount.is_finite() {
        return Err(DecodeError::NonFiniteAmount {
            value: wire.amount.to_string(),
        });
    }
    for (field, value) in [
        ("event_id", &wire.event_id),
        ("account_id", &wire.account_id),
    ] {
        if value.is_empty() {
            return Err(DecodeError::Empty { field });
        }
    }
    let ts_ms = parse_ts(&wire.ts)?;
    let opt = |v: Option<Cow<'_, str>>| v.filter(|s| !s.is_empty()).map(Cow::into_owned);
    Ok(Event {
        event_id: wire.event_id.into_owned(),
        ts_ms,
        account_id: wire.account_id.into_owned(),
        counterparty_id: opt(wire.counterparty_id),
        merchant_id: opt(wire.merchant_id),
        device_id: opt(wire.device_id),
        ip: opt(wire.ip),
        amount: wire.amount,
        currency: opt(wire.currency),
        channel: opt(wire.channel),
        country: opt(wire.country),
    })
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch, UTC.
pub fn parse_ts(value: &str) -> Result<i64, DecodeError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|e| DecodeError::BadTimestamp {
            value: value.chars().take(64).collect(),
            detail: e.to_string(),
        })
}

const REQUIRED: [(&str, &str); 4] = [
    ("event_id", "a string"),
    ("ts", "a string"),
    ("account_id", "a string"),
    ("amount", "a number"),
];
const OPTIONAL_STRINGS: [&str; 7] = [
    "counterparty_id",
    "merchant_id",
    "device_id",
    "ip",
    "currency",
    "channel",
    "country",
];

/// Finds the precise reason a record failed the fast path.
fn classify(text: &str, fast: &serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // serde_json refuses numbers beyond f64's range ("number out of range"); the only
        // numeric field of an event is the amount.
        Err(e) if e.to_string().contains("number out of range") => {
            return DecodeError::NonFiniteAmount {
                value: "out of range".into(),
            }
        }
        Err(e) => {
            return DecodeError::NotJson {
                detail: e.to_string(),
            }
        }
    };
    let Some(object) = value.as_object() else {
        return DecodeError::NotAnObject;
    };
    for (field, expected) in REQUIRED {
        match object.get(field) {
            None | Some(serde_json::Value::Null) => return DecodeError::MissingField { field },
            Some(v) => {
                let ok = if field == "amount" {
                    v.is_number()
                } else {
                    v.is_string()
                };
                if !ok {
                    return DecodeError::WrongType {
                        field,
                        expected,
                        found: describe(v),
                    };
                }
            }
        }
    }
    for field in OPTIONAL_STRINGS {
        if let Some(v) = object.get(field) {
            if !v.is_string() && !v.is_null() {
                return DecodeError::WrongType {
                    field,
                    expected: "a string",
                    found: describe(v),
                };
            }
        }
    }
    if let Some(n) = object.get("amount").and_then(|v| v.as_f64()) {
        if !n.is_finite() {
            return DecodeError::NonFiniteAmount {
                value: n.to_string(),
            };
        }
    }
    DecodeError::NotJson {
        detail: fast.to_string(),
    }
}

fn describe(v: &serde_json::Value) -> String {
    let shown = v.to_string();
    let kind = match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    if shown.len() <= 40 {
        format!("{kind} ({shown})")
    } else {
        kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e-1","ts":"2026-11-22T10:03:12.512Z","account_id":"A-1","counterparty_id":"A-77","merchant_id":"M-9","device_id":"D-311","ip":"203.0.113.7","amount":129.90,"currency":"EUR","channel":"card","country":"DE"}"#;

    fn err(input: &[u8]) -> DecodeError {
        match decode(input, 1 << 20) {
            Err(e) => e,
            Ok(ev) => panic!("expected a decode error, got {ev:?}"),
        }
    }

    #[test]
    fn good_event_decodes_every_field() {
        let ev = decode(GOOD.as_bytes(), 1 << 20).unwrap();
        assert_eq!(ev.event_id, "e-1");
        assert_eq!(ev.account_id, "A-1");
        assert_eq!(ev.ts_ms, 1_795_341_792_512);
        assert_eq!(ev.amount, 129.90);
        assert_eq!(ev.device_id.as_deref(), Some("D-311"));
        assert_eq!(ev.country.as_deref(), Some("DE"));
        assert_eq!(
            crate::event::format_ts(ev.ts_ms),
            "2026-11-22T10:03:12.512Z"
        );
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let ev = decode(
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":1,"device_id":null}"#,
            1 << 20,
        )
        .unwrap();
        assert_eq!(ev.device_id, None);
        assert_eq!(ev.merchant_id, None);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let ev = decode(
            br#"{"event_id":"e\"1","ts":"2026-11-22T10:03:12Z","account_id":"A\u00e9","amount":1}"#,
            1 << 20,
        )
        .unwrap();
        assert_eq!(ev.event_id, "e\"1");
        assert_eq!(ev.account_id, "Aé");
    }

    #[test]
    fn every_kind_of_bad_input_gets_its_own_reason() {
        assert_eq!(err(b"not json at all").kind(), "not_json");
        assert_eq!(err(b"[1,2,3]").kind(), "not_an_object");
        assert_eq!(
            err(br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","amount":1}"#),
            DecodeError::MissingField {
                field: "account_id"
            }
        );
        let wrong = err(
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":"12.5"}"#,
        );
        assert_eq!(wrong.kind(), "wrong_type");
        assert!(wrong.to_string().contains("`amount`"), "{wrong}");
        assert_eq!(
            err(br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":1e999}"#)
                .kind(),
            "non_finite_amount"
        );
        let ts = err(br#"{"event_id":"e","ts":"yesterday","account_id":"A","amount":1}"#);
        assert_eq!(ts.kind(), "bad_timestamp");
        assert!(ts.to_string().contains("yesterday"), "{ts}");
        assert_eq!(err(b"{\"event_id\":\"\xff\xfe\"}").kind(), "not_utf8");
        assert_eq!(
            err(br#"{"event_id":"","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":1}"#),
            DecodeError::Empty { field: "event_id" }
        );
        let opt = err(
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":1,"ip":7}"#,
        );
        assert!(opt.to_string().contains("`ip`"), "{opt}");
    }

    #[test]
    fn oversize_record_is_rejected_before_parsing() {
        let e = decode(GOOD.as_bytes(), 16).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Oversize {
                size: GOOD.len(),
                limit: 16
            }
        );
    }
}
