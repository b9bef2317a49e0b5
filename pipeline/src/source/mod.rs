//! Sources: where raw input records come from. Every source hands the job batches of raw
//! bytes with their position; decoding happens in one place for all of them.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

pub mod align;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod resume;

/// Where a record came from, as results and dead letters report it. For Kafka it is the
/// topic, partition and offset; a file source reports `file:<path>`, partition 0 and the
/// 0-based line index; the built-in generator reports `generator`, partition 0 and the
/// event's sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// One raw record inside a [`RawBatch`].
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The record's bytes inside [`RawBatch::buf`].
    pub range: Range<usize>,
    pub partition: i32,
    pub offset: i64,
    /// When the source read it; results report latency from here.
    pub received: Instant,
}

/// A micro-batch of raw records. Payloads are stored back to back in one buffer so that a
/// batch costs two allocations, not one per record.
#[derive(Debug, Default)]
pub struct RawBatch {
    pub topic: Arc<str>,
    pub buf: Vec<u8>,
    pub records: Vec<RawRecord>,
    /// Records whose payload was cut because they were over the size limit: the record
    /// index and the record's true size. Rare, so kept aside rather than in every record.
    pub oversize: Vec<(usize, usize)>,
}

impl RawBatch {
    pub fn new(topic: Arc<str>, capacity: usize) -> Self {
        RawBatch {
            topic,
            buf: Vec::with_capacity(capacity * 256),
            records: Vec::with_capacity(capacity),
            oversize: Vec::new(),
        }
    }

    /// Appends one record.
    pub fn push(&mut self, payload: &[u8], partition: i32, offset: i64, received: Instant) {
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        self.records.push(RawRecord {
            range: start..self.buf.len(),
            partition,
            offset,
            received,
        });
    }

    /// Appends the kept prefix of a record that was over the size limit.
    pub fn push_oversize(
        &mut self,
        prefix: &[u8],
        full_len: usize,
        partition: i32,
        offset: i64,
        received: Instant,
    ) {
        self.oversize.push((self.records.len(), full_len));
        self.push(prefix, partition, offset, received);
    }

    /// The true size of record `index` if it was cut for being over the size limit.
    pub fn oversize_len(&self, index: usize) -> Option<usize> {
        self.oversize
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, len)| *len)
    }

    pub fn payload(&self, record: &RawRecord) -> &[u8] {
        &self.buf[record.range.clone()]
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps only the records for which `keep` is true, with their bytes, offsets and
    /// oversize marks.
    pub fn retain(&mut self, mut keep: impl FnMut(&RawRecord) -> bool) {
        let keeps: Vec<bool> = self.records.iter().map(&mut keep).collect();
        if keeps.iter().all(|k| *k) {
            return;
        }
        let mut kept = RawBatch::new(self.topic.clone(), self.len());
        for (i, record) in self.records.iter().enumerate() {
            if !keeps[i] {
                continue;
            }
            let payload = self.payload(record);
            match self.oversize_len(i) {
                Some(size) => kept.push_oversize(
                    payload,
                    size,
                    record.partition,
                    record.offset,
                    record.received,
                ),
                None => kept.push(payload, record.partition, record.offset, record.received),
            }
        }
        *self = kept;
    }

    pub fn position(&self, record: &RawRecord) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        }
    }
}

/// A source that produces batches by blocking reads (files, the generator). The job runs it
/// on a thread of its own so that slow reads never stall the async stages.
pub trait BlockingSource: Send {
    /// The next batch of at most `max` records, or `None` when the source is exhausted.
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError>;
    /// A short description for logs: the file name, "generator".
    fn describe(&self) -> String;
    /// Hands the source the job's shutdown signal, for reads that can take long: a source
    /// checks it between chunks of one record. Sources whose reads are short ignore it.
    fn watch(&mut self, _cancel: tokio_util::sync::CancellationToken) {}
}

/// Errors that stop a source. Bad records are not source errors: they become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    // The I/O error is part of the message, not the error's source: a report that prints
    // the chain of sources would show it twice.
    #[error("cannot open input file `{path}`: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("cannot read input file `{path}` after line {line}: {error}")]
    Read {
        path: String,
        line: i64,
        error: std::io::Error,
    },
    #[error("the built-in generator failed: {0}")]
    Generator(String),
}
