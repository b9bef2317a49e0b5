//! What replay reads: batches of raw records in one deterministic order, with the record's
//! time where the source has one (the Kafka message timestamp), and how far reading is.

use std::path::{Path, PathBuf};

use crate::source::file::FileSource;
use crate::source::{BlockingSource, RawBatch};

use super::ReplayError;

/// A batch of raw records in replay order. `times[i]` is record `i`'s message timestamp
/// (Kafka), `None` where the source has none (files: the event's own `ts` is used).
pub struct ReplayBatch {
    pub raw: RawBatch,
    pub times: Vec<Option<i64>>,
}

/// How far reading is: `done` of about `total` units (records for Kafka, bytes for files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadProgress {
    pub done: u64,
    pub total: u64,
    /// What the units are, for the progress bar.
    pub unit: &'static str,
}

/// A source of replay input. Unlike the job's sources it reads a bounded range, always in
/// the same order, and never acknowledges anything.
pub trait ReplayReader: Send {
    /// The next batch of at most `max` records; `None` at the end of the range.
    fn next_batch(&mut self, max: usize) -> Result<Option<ReplayBatch>, ReplayError>;
    /// Whether reading starts at the warm-up start by itself (Kafka seeks by time); a
    /// reader that starts at the beginning (a file) has records before it skipped.
    fn starts_at_warm_up(&self) -> bool;
    /// How far reading is.
    fn progress(&self) -> ReadProgress;
    /// The positions read, for the report: per partition the first and last offset.
    fn positions(&self) -> Vec<PartitionRead>;
    /// A short description: the topic or the file.
    fn describe(&self) -> String;
}

/// What was read from one partition (a file is partition 0, offsets are line indexes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRead {
    pub partition: i32,
    /// First offset read (the warm-up start).
    pub first_offset: Option<i64>,
    /// Last offset read before the range ended.
    pub last_offset: Option<i64>,
    pub records: u64,
}

/// Replays a JSONL file from its beginning, in file order.
pub struct FileReader {
    source: FileSource,
    path: PathBuf,
    size: u64,
    bytes: u64,
    read: PartitionRead,
}

impl FileReader {
    /// Opens `path`; `max_bytes` and `keep` as for the job's file source.
    pub fn open(path: &Path, max_bytes: usize, keep: usize) -> Result<FileReader, ReplayError> {
        let source = FileSource::open(path, max_bytes, keep)?;
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(FileReader {
            source,
            path: path.to_path_buf(),
            size,
            bytes: 0,
            read: PartitionRead {
                partition: 0,
                first_offset: None,
                last_offset: None,
                records: 0,
            },
        })
    }
}

impl ReplayReader for FileReader {
    fn next_batch(&mut self, max: usize) -> Result<Option<ReplayBatch>, ReplayError> {
        let Some(raw) = self.source.next_batch(max)? else {
            return Ok(None);
        };
        for record in &raw.records {
            self.bytes += record.range.len() as u64 + 1;
            self.read.first_offset.get_or_insert(record.offset);
            self.read.last_offset = Some(record.offset);
            self.read.records += 1;
        }
        let times = vec![None; raw.len()];
        Ok(Some(ReplayBatch { raw, times }))
    }

    fn starts_at_warm_up(&self) -> bool {
        false
    }

    fn progress(&self) -> ReadProgress {
        ReadProgress {
            done: self.bytes.min(self.size),
            total: self.size,
            unit: "bytes",
        }
    }

    fn positions(&self) -> Vec<PartitionRead> {
        vec![self.read.clone()]
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}
