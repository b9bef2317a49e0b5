//! One checkpoint file: a fixed header, then the checkpoint in postcard's compact binary
//! form.
//!
//! ```text
//! bytes 0..8    magic "RSKSTATE"
//! bytes 8..12   format version, u32 little-endian (FORMAT_VERSION)
//! bytes 12..20  payload length, u64 little-endian
//! bytes 20..24  CRC-32 of the payload, u32 little-endian
//! bytes 24..    payload: a postcard-encoded Checkpoint
//! ```
//!
//! A file that is shorter than its header says, or whose payload does not match its
//! checksum, is torn (a crash while writing, a damaged disk) and is ignored; a file of
//! another format version is refused, since silently starting empty would lose the state.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateState;

/// The first bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"RSKSTATE";

/// Version of the file layout and of [`Checkpoint`]'s fields. A change to either must
/// change it.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_LEN: usize = 24;

/// The next input position after a cut, for one topic/partition: for Kafka the next
/// offset to read, for a file the next line index (0-based), for the generator the next
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// The aggregate state at one batch boundary and the input position of the same boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Position in the state directory's sequence of checkpoints, from 1.
    pub seq: u64,
    /// The id of the aggregate snapshot drained at the cut; a restored job's snapshots
    /// continue after it.
    pub snapshot_id: u64,
    /// Wall-clock time the cut was taken, ms since the epoch (for logs only).
    pub taken_at_ms: i64,
    /// Where to read on, sorted by topic and partition.
    pub positions: Vec<SourcePosition>,
    pub state: AggregateState,
}

/// Why bytes are not a checkpoint this version can read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a checkpoint file (no RSKSTATE header)")]
    NotACheckpoint,
    #[error("torn: {found} bytes where the header announces {expected}")]
    Truncated { expected: u64, found: u64 },
    #[error("torn: the payload does not match its checksum")]
    Checksum,
    #[error("written in checkpoint format {found}; this riskstream reads format {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("damaged payload: {0}")]
    Payload(#[from] postcard::Error),
}

impl FormatError {
    /// Whether the file is incomplete or damaged (to be ignored), rather than whole but
    /// unreadable by this version (to be refused).
    pub fn is_torn(&self) -> bool {
        !matches!(self, FormatError::Version { .. })
    }
}

/// The file's bytes for `checkpoint`.
pub fn encode(checkpoint: &Checkpoint) -> Result<Vec<u8>, FormatError> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + 64 * checkpoint.state.keys() + 1024);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0; 12]);
    let mut bytes = postcard::to_extend(checkpoint, bytes)?;
    let payload_len = (bytes.len() - HEADER_LEN) as u64;
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[12..20].copy_from_slice(&payload_len.to_le_bytes());
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// The checkpoint in a file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(FormatError::NotACheckpoint);
    }
    let word = |at: usize| -> [u8; 4] { [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]] };
    let version = u32::from_le_bytes(word(8));
    if version != FORMAT_VERSION {
        return Err(FormatError::Version { found: version });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let expected = u64::from_le_bytes(len);
    let found = (bytes.len() - HEADER_LEN) as u64;
    if found != expected {
        return Err(FormatError::Truncated { expected, found });
    }
    let payload = &bytes[HEADER_LEN..];
    if crc32fast::hash(payload) != u32::from_le_bytes(word(20)) {
        return Err(FormatError::Checksum);
    }
    Ok(postcard::from_bytes(payload)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use riskstream_graph::EntityKind;

    use super::*;
    use crate::aggregate::{AggregateOptions, Aggregator};
    use crate::event::Event;

    /// A checkpoint of a small real state: two accounts, one merchant.
    pub(crate) fn sample() -> Checkpoint {
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let event = |i: i64, account: &str| Event {
            merchant_id: Some("M-1".into()),
            country: Some("DE".into()),
            counterparty_id: Some(format!("C-{i}")),
            ..Event::bare(
                &format!("e-{i}"),
                1_700_000_000_000 + i * 1000,
                account,
                10.0,
            )
        };
        aggregator.apply_batch(&[event(0, "A-1"), event(1, "A-2"), event(2, "A-1")]);
        Checkpoint {
            seq: 3,
            snapshot_id: 7,
            taken_at_ms: 1_700_000_100_000,
            positions: vec![SourcePosition {
                topic: "events".into(),
                partition: 0,
                next_offset: 3,
            }],
            state: aggregator.capture_state(),
        }
    }

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        let checkpoint = sample();
        assert_eq!(checkpoint.state.keys(), 3);
        assert_eq!(checkpoint.state.kinds[0].kind, EntityKind::Account);
        let bytes = encode(&checkpoint).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(decode(&bytes).unwrap(), checkpoint);
    }

    #[test]
    fn a_cut_or_damaged_file_is_torn_and_another_version_is_not() {
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 10, 24, bytes.len() / 2, bytes.len() - 1] {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert!(err.is_torn(), "cut at {cut}: {err}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(FormatError::Checksum)));
        let mut newer = bytes;
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode(&newer).unwrap_err();
        assert!(!err.is_torn());
        assert!(err.to_string().contains("format 2"), "{err}");
    }
}
