//! Dead letters: the record of an input that could not be processed, with everything needed
//! to find, understand and re-drive it — the original bytes, where it came from and why.

use serde::Serialize;

use crate::decode::DecodeError;
use crate::source::Position;

/// Version of the dead-letter JSON layout, bumped on incompatible changes.
pub const DEAD_LETTER_SCHEMA_VERSION: u32 = 1;

/// The kind of dead letter of an event the model could not score (the score stage's
/// per-event failure; decode errors name their own kinds).
pub const SCORING_FAILED: &str = "scoring_failed";

/// The kind of dead letter of an event whose result the results topic refused for the
/// message itself (too large, an invalid record: see
/// [`is_per_message`](crate::sink::kafka::is_per_message)). It carries the event's
/// original bytes and the broker's error.
pub const RESULT_UNDELIVERABLE: &str = "result_undeliverable";

/// One dead letter, as written to the dead-letter sink (one JSON object per line).
///
/// The original bytes are kept exactly: as `payload` when they are valid UTF-8, otherwise as
/// `payload_base64`. Oversize records keep a bounded prefix (`truncated: true`,
/// `original_size` gives the true size).
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    pub schema_version: u32,
    /// Short machine-readable kind, e.g. `missing_field`.
    pub kind: &'static str,
    /// The readable reason.
    pub reason: String,
    pub source: SourceRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    pub truncated: bool,
    pub original_size: usize,
    pub received_at: String,
}

/// The source position as results and dead letters carry it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl<'a> SourceRef<'a> {
    pub fn new(position: &'a Position) -> Self {
        SourceRef {
            topic: &position.topic,
            partition: position.partition,
            offset: position.offset,
        }
    }
}

impl<'a> DeadLetter<'a> {
    /// Builds the dead letter for `bytes` (already cut to the kept prefix when oversize).
    pub fn new(
        error: &DecodeError,
        bytes: &'a [u8],
        original_size: usize,
        position: &'a Position,
        received_at: String,
    ) -> Self {
        DeadLetter::with_reason(
            error.kind(),
            error.to_string(),
            bytes,
            original_size,
            position,
            received_at,
        )
    }

    /// Builds the dead letter of an input that failed after decoding, at a later stage:
    /// `kind` is one of [`DEAD_LETTER_KINDS`](crate::metrics::DEAD_LETTER_KINDS).
    pub fn with_reason(
        kind: &'static str,
        reason: String,
        bytes: &'a [u8],
        original_size: usize,
        position: &'a Position,
        received_at: String,
    ) -> Self {
        let (payload, payload_base64) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(base64(bytes))),
        };
        DeadLetter {
            schema_version: DEAD_LETTER_SCHEMA_VERSION,
            kind,
            reason,
            source: SourceRef::new(position),
            payload,
            payload_base64,
            truncated: original_size > bytes.len(),
            original_size,
            received_at,
        }
    }
}

/// Standard base64 with padding (RFC 4648), for payloads that are not UTF-8.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn invalid_utf8_payload_is_kept_as_base64_with_reason_and_position() {
        let position = Position {
            topic: "events".into(),
            partition: 3,
            offset: 42,
        };
        let bytes = b"\xff\xfeabc";
        let err = crate::decode::decode(bytes, 1024).unwrap_err();
        let dl = DeadLetter::new(&err, bytes, bytes.len(), &position, "t".into());
        let json = serde_json::to_value(&dl).unwrap();
        assert_eq!(json["kind"], "not_utf8");
        assert_eq!(json["payload_base64"], base64(bytes));
        assert!(json.get("payload").is_none());
        assert_eq!(json["source"]["partition"], 3);
        assert_eq!(json["source"]["offset"], 42);
        assert_eq!(json["truncated"], false);
    }
}
