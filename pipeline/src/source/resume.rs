//! Reading on from a checkpoint: each partition starts at the next position the checkpoint
//! recorded, whatever the source would otherwise start from (line 0 of a file, the
//! generator's first event, a consumer group's committed offset).

use std::collections::HashMap;
use std::sync::Arc;

use super::{BlockingSource, RawBatch, SourceError};

/// Where each partition must start, and whether it has been reached yet.
#[derive(Debug, Clone, Default)]
pub struct StartPositions {
    partitions: HashMap<(Arc<str>, i32), Start>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Nothing of the partition was taken yet: records before `next` are skipped.
    Pending { next: i64, sought: bool },
    /// The start was reached; every later record is taken.
    Reached,
}

/// What to do with one record read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Process it.
    Take,
    /// Drop it: it lies before the partition's start, its result was delivered already.
    Skip,
    /// Drop it and read the partition again from this offset: the source started after
    /// the start position (a consumer group's offsets ahead of the checkpoint), so the
    /// records between were never read. Told once per partition.
    SeekBack(i64),
}

impl StartPositions {
    /// Starts at `next` (the next offset or line to read) for each (topic, partition).
    pub fn new(positions: impl IntoIterator<Item = (Arc<str>, i32, i64)>) -> StartPositions {
        StartPositions {
            partitions: positions
                .into_iter()
                .map(|(topic, partition, next)| {
                    let start = Start::Pending {
                        next,
                        sought: false,
                    };
                    ((topic, partition), start)
                })
                .collect(),
        }
    }

    /// Whether no partition has a start position.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// What to do with the record at `offset` of `topic`/`partition`. A partition without
    /// a start position takes everything.
    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> Admit {
        let Some(start) = self
            .partitions
            .iter_mut()
            .find(|((t, p), _)| &**t == topic && *p == partition)
            .map(|(_, start)| start)
        else {
            return Admit::Take;
        };
        match *start {
            Start::Reached => Admit::Take,
            Start::Pending { next, .. } if offset < next => Admit::Skip,
            Start::Pending {
                next,
                sought: false,
            } if offset > next => {
                *start = Start::Pending { next, sought: true };
                Admit::SeekBack(next)
            }
            Start::Pending { .. } => {
                *start = Start::Reached;
                Admit::Take
            }
        }
    }

    /// `batch` without the records that lie before their partition's start. Sources that
    /// cannot seek (files, the generator) take a record after the start as it is: blank
    /// lines carry no record, so the first one read may lie beyond it.
    pub fn filter(&mut self, mut batch: RawBatch) -> RawBatch {
        let topic = batch.topic.clone();
        batch.retain(|r| self.admit(&topic, r.partition, r.offset) != Admit::Skip);
        batch
    }
}

/// A source read on from start positions: records before them are read and dropped, so
/// they are neither processed nor counted as input again.
pub struct Resumed {
    inner: Box<dyn BlockingSource>,
    start: StartPositions,
}

impl Resumed {
    pub fn new(inner: Box<dyn BlockingSource>, start: StartPositions) -> Resumed {
        Resumed { inner, start }
    }
}

impl BlockingSource for Resumed {
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        loop {
            let Some(batch) = self.inner.next_batch(max)? else {
                return Ok(None);
            };
            let was_empty = batch.is_empty();
            let batch = self.start.filter(batch);
            // An empty batch from the source means "idle" (Kafka); one emptied here means
            // "skipped": read on.
            if was_empty || !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn watch(&mut self, cancel: tokio_util::sync::CancellationToken) {
        self.inner.watch(cancel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn starts() -> StartPositions {
        StartPositions::new([(Arc::from("t"), 0, 10), (Arc::from("t"), 1, 5)])
    }

    #[test]
    fn records_before_the_start_are_skipped_and_everything_from_it_taken() {
        let mut start = starts();
        assert_eq!(start.admit("t", 0, 3), Admit::Skip);
        assert_eq!(start.admit("t", 0, 10), Admit::Take);
        assert_eq!(start.admit("t", 0, 11), Admit::Take);
        // Partitions and topics without a start position take everything.
        assert_eq!(start.admit("t", 2, 0), Admit::Take);
        assert_eq!(start.admit("u", 0, 0), Admit::Take);
    }

    #[test]
    fn a_partition_read_from_after_its_start_is_sent_back_once() {
        let mut start = starts();
        assert_eq!(start.admit("t", 1, 9), Admit::SeekBack(5));
        // Records still buffered from before the seek are dropped; the start is taken.
        assert_eq!(start.admit("t", 1, 3), Admit::Skip);
        assert_eq!(start.admit("t", 1, 5), Admit::Take);
        // A gap at the start (a compacted or transactional topic) does not loop.
        let mut start = starts();
        assert_eq!(start.admit("t", 1, 9), Admit::SeekBack(5));
        assert_eq!(start.admit("t", 1, 7), Admit::Take);
    }

    #[test]
    fn filtering_a_batch_keeps_its_records_from_the_start_with_their_bytes() {
        let mut batch = RawBatch::new(Arc::from("t"), 4);
        let now = Instant::now();
        for offset in 8..12 {
            batch.push(format!("r{offset}").as_bytes(), 0, offset, now);
        }
        let kept = starts().filter(batch);
        let offsets: Vec<i64> = kept.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![10, 11]);
        assert_eq!(kept.payload(&kept.records[0]), b"r10");
    }
}
