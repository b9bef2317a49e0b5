//! Reading a time range of a topic for replay: its own consumer with a throwaway group id,
//! partitions assigned (never subscribed, so the job's group never rebalances) at offsets
//! found by time, nothing ever committed. Partitions are merged by (message timestamp,
//! partition, offset), so the same topic contents always replay in the same order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use riskstream_config::KafkaConfig;

use crate::kafka::{client_config, KafkaSetupError, LogContext, START_TIMEOUT};
use crate::source::RawBatch;

use super::input::{PartitionRead, ReadProgress, ReplayBatch, ReplayReader};
use super::ReplayError;

/// How long a partition may stay silent while it still has records to give before replay
/// gives up on it.
const STALL: Duration = Duration::from_secs(30);

/// A consumer that can never disturb a running job: assigned partitions only, a group id
/// of its own, no automatic commits or offset stores.
pub(crate) fn consumer(kafka: &KafkaConfig) -> Result<BaseConsumer<LogContext>, ReplayError> {
    let mut client = client_config(kafka);
    let group = format!(
        "riskstream-replay-{}-{}",
        std::process::id(),
        crate::engine::now_ms()
    );
    client
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set_log_level(RDKafkaLogLevel::Error);
    client
        .create_with_context(LogContext::new(kafka))
        .map_err(|source| KafkaSetupError::client("replay consumer", kafka, &source).into())
}

/// One partition to read: `[start, end)` where `start` is the first offset at or after the
/// start time and `end` the high watermark when replay began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Each partition's offsets from the first message at or after `from_ms` to the current
/// end, by the broker's time index.
pub(crate) fn spans(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    from_ms: i64,
) -> Result<Vec<Span>, ReplayError> {
    let kafka_error = |what: String| move |source| ReplayError::Kafka { what, source };
    let partitions = crate::kafka::topic_partitions(consumer, topic).map_err(kafka_error(
        format!("cannot read metadata of topic `{topic}`; is the broker running?"),
    ))?;
    if partitions.is_empty() {
        return Err(ReplayError::MissingTopic(topic.to_string()));
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(from_ms.max(0)))
            .map_err(kafka_error(format!(
                "invalid time {from_ms} for {topic}/{p}"
            )))?;
    }
    let found = consumer
        .offsets_for_times(tpl, START_TIMEOUT)
        .map_err(kafka_error(format!(
            "cannot look up offsets by time in topic `{topic}`"
        )))?;
    let mut spans = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let (low, high) =
            consumer
                .fetch_watermarks(topic, p, START_TIMEOUT)
                .map_err(kafka_error(format!(
                    "cannot read the offsets of `{topic}/{p}`"
                )))?;
        let start = match found.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // No message at or after the time: nothing to read in this partition.
            _ => high,
        };
        spans.push(Span {
            partition: p,
            start: start.clamp(low, high),
            end: high,
        });
    }
    Ok(spans)
}

/// A message waiting in its partition's queue to be merged.
struct Pending {
    ts: i64,
    offset: i64,
    payload: Vec<u8>,
    size: usize,
}

struct Cursor {
    span: Span,
    queue: VecDeque<Pending>,
    /// The next offset expected from the broker.
    next: i64,
    /// Nothing more will be taken from this partition.
    done: bool,
    read: PartitionRead,
}

/// Reads `[warm-up start, to)` of a topic, all partitions merged in a fixed order.
pub struct KafkaReader {
    consumer: BaseConsumer<LogContext>,
    topic: Arc<str>,
    cursors: Vec<Cursor>,
    to_ms: i64,
    max_bytes: usize,
    keep: usize,
    total: u64,
}

impl KafkaReader {
    /// Seeks every partition of `topic` to the first message at or after `start_ms`; reading
    /// stops per partition at its end offset when replay began or at the first message at
    /// or after `to_ms`.
    pub fn open(
        kafka: &KafkaConfig,
        topic: &str,
        start_ms: i64,
        to_ms: i64,
        max_bytes: usize,
        keep: usize,
    ) -> Result<KafkaReader, ReplayError> {
        let consumer = consumer(kafka)?;
        let spans = spans(&consumer, topic, start_ms)?;
        let mut tpl = TopicPartitionList::new();
        let mut cursors = Vec::with_capacity(spans.len());
        let mut total = 0u64;
        for span in spans {
            let done = span.start >= span.end;
            if !done {
                tpl.add_partition_offset(topic, span.partition, Offset::Offset(span.start))
                    .map_err(|source| ReplayError::Kafka {
                        what: format!("invalid start offset for {topic}/{}", span.partition),
                        source,
                    })?;
                total += (span.end - span.start) as u64;
            }
            cursors.push(Cursor {
                span,
                queue: VecDeque::new(),
                next: span.start,
                done,
                read: PartitionRead {
                    partition: span.partition,
                    first_offset: None,
                    last_offset: None,
                    records: 0,
                },
            });
        }
        if tpl.count() > 0 {
            consumer.assign(&tpl).map_err(|source| ReplayError::Kafka {
                what: format!("cannot read topic `{topic}`"),
                source,
            })?;
        }
        Ok(KafkaReader {
            consumer,
            topic: Arc::from(topic),
            cursors,
            to_ms,
            max_bytes,
            keep: keep.min(max_bytes),
            total,
        })
    }

    /// Polls until every partition that still has records to give has one queued.
    fn fill(&mut self) -> Result<(), ReplayError> {
        let mut idle_since = Instant::now();
        while let Some(starved) = self
            .cursors
            .iter()
            .position(|c| !c.done && c.queue.is_empty())
        {
            let Some(polled) = self.consumer.poll(Duration::from_millis(100)) else {
                let cursor = &self.cursors[starved];
                if idle_since.elapsed() > STALL {
                    return Err(ReplayError::Stalled {
                        topic: self.topic.to_string(),
                        partition: cursor.span.partition,
                        offset: cursor.next,
                        secs: STALL.as_secs(),
                    });
                }
                continue;
            };
            let message = polled.map_err(|source| ReplayError::Kafka {
                what: format!("cannot read topic `{}`", self.topic),
                source,
            })?;
            let Some(index) = self
                .cursors
                .iter()
                .position(|c| c.span.partition == message.partition())
            else {
                continue;
            };
            let cursor = &mut self.cursors[index];
            if cursor.done || message.offset() < cursor.next {
                continue;
            }
            cursor.next = message.offset() + 1;
            idle_since = Instant::now();
            let ts = message.timestamp().to_millis().unwrap_or(i64::MIN);
            if ts >= self.to_ms {
                cursor.done = true;
            } else {
                let payload = message.payload().unwrap_or_default();
                let size = payload.len();
                let kept = if size > self.max_bytes {
                    &payload[..self.keep]
                } else {
                    payload
                };
                cursor.queue.push_back(Pending {
                    ts,
                    offset: message.offset(),
                    payload: kept.to_vec(),
                    size,
                });
                if cursor.next >= cursor.span.end {
                    cursor.done = true;
                }
            }
            if cursor.done {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&self.topic, cursor.span.partition);
                // Only stops prefetching; a failure costs memory, not correctness.
                let _ = self.consumer.pause(&tpl);
            }
        }
        Ok(())
    }
}

impl ReplayReader for KafkaReader {
    fn next_batch(&mut self, max: usize) -> Result<Option<ReplayBatch>, ReplayError> {
        let mut raw = RawBatch::new(self.topic.clone(), max);
        let mut times = Vec::with_capacity(max);
        while raw.len() < max {
            self.fill()?;
            // The head with the smallest (timestamp, partition, offset); cursors are in
            // partition order, so the first minimum found wins ties.
            let Some(index) = self
                .cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.queue.front().map(|p| (p.ts, p.offset, i)))
                .min_by_key(|(ts, _, i)| (*ts, *i))
                .map(|(_, _, i)| i)
            else {
                break;
            };
            let cursor = &mut self.cursors[index];
            let Some(pending) = cursor.queue.pop_front() else {
                break;
            };
            let now = Instant::now();
            let partition = cursor.span.partition;
            if pending.size > self.max_bytes {
                raw.push_oversize(
                    &pending.payload,
                    pending.size,
                    partition,
                    pending.offset,
                    now,
                );
            } else {
                raw.push(&pending.payload, partition, pending.offset, now);
            }
            times.push(Some(pending.ts));
            cursor.read.first_offset.get_or_insert(pending.offset);
            cursor.read.last_offset = Some(pending.offset);
            cursor.read.records += 1;
        }
        if raw.is_empty() {
            return Ok(None);
        }
        Ok(Some(ReplayBatch { raw, times }))
    }

    fn starts_at_warm_up(&self) -> bool {
        true
    }

    fn progress(&self) -> ReadProgress {
        let done = self
            .cursors
            .iter()
            .map(|c| {
                if c.done && c.queue.is_empty() {
                    (c.span.end - c.span.start).max(0) as u64
                } else {
                    c.read.records
                }
            })
            .sum();
        ReadProgress {
            done,
            total: self.total,
            unit: "records",
        }
    }

    fn positions(&self) -> Vec<PartitionRead> {
        self.cursors.iter().map(|c| c.read.clone()).collect()
    }

    fn describe(&self) -> String {
        format!("topic {}", self.topic)
    }
}
