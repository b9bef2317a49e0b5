//! The results the job published for the replayed events, read back from the results
//! topic (or a results file) and keyed by `event_id`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use riskstream_config::KafkaConfig;

use super::kafka::{consumer, spans};
use super::ReplayError;

/// Results carry their event's time as Kafka timestamp but are published in processing
/// order, which can run a little behind or ahead of event time across input partitions:
/// the results topic is read this much beyond both ends of the range.
pub const RESULTS_SLACK: Duration = Duration::from_secs(300);

/// How long the results topic may stay silent before replay stops waiting for it.
const STALL: Duration = Duration::from_secs(30);

/// One published result and where it was found.
#[derive(Debug, Clone)]
pub struct Original {
    pub result: serde_json::Value,
    pub partition: i32,
    pub offset: i64,
}

/// The published results of the replayed events.
#[derive(Debug, Default)]
pub struct Originals {
    pub by_event: HashMap<String, Original>,
    /// Results for an event already found: at-least-once delivery redoes a few events
    /// after a crash. The first published one is kept.
    pub duplicates: u64,
    /// Results read, whether or not they belonged to a replayed event.
    pub read: u64,
    /// Where they were read from, for the report.
    pub source: String,
}

impl Originals {
    /// Keeps `result` if it is for a wanted event and no earlier result for it was kept.
    fn offer(&mut self, wanted: &HashSet<String>, payload: &[u8], partition: i32, offset: i64) {
        self.read += 1;
        let Ok(result) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let Some(id) = result.get("event_id").and_then(|v| v.as_str()) else {
            return;
        };
        if !wanted.contains(id) {
            return;
        }
        let found = Original {
            result: result.clone(),
            partition,
            offset,
        };
        match self.by_event.get_mut(id) {
            None => {
                self.by_event.insert(id.to_string(), found);
            }
            Some(kept) => {
                self.duplicates += 1;
                // The result published first wins, whatever order the partitions were
                // polled in.
                if (partition, offset) < (kept.partition, kept.offset) {
                    *kept = found;
                }
            }
        }
    }
}

/// Reads the results with timestamps in `[from − slack, to + slack)` from `topic` and keeps
/// those of `wanted` events. Reads up to each partition's end when replay began.
pub fn from_kafka(
    kafka: &KafkaConfig,
    topic: &str,
    from_ms: i64,
    to_ms: i64,
    wanted: &HashSet<String>,
) -> Result<Originals, ReplayError> {
    let slack = RESULTS_SLACK.as_millis() as i64;
    let consumer = consumer(kafka)?;
    let spans = spans(&consumer, topic, from_ms.saturating_sub(slack))?;
    let mut originals = Originals {
        source: format!("topic {topic}"),
        ..Originals::default()
    };
    let mut tpl = TopicPartitionList::new();
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.start < s.end) {
        tpl.add_partition_offset(topic, span.partition, Offset::Offset(span.start))
            .map_err(|source| ReplayError::Kafka {
                what: format!("invalid start offset for {topic}/{}", span.partition),
                source,
            })?;
        remaining.insert(span.partition, span.end);
    }
    if remaining.is_empty() {
        return Ok(originals);
    }
    consumer.assign(&tpl).map_err(|source| ReplayError::Kafka {
        what: format!("cannot read results topic `{topic}`"),
        source,
    })?;
    let stop_ms = to_ms.saturating_add(slack);
    let mut last_message = Instant::now();
    while !remaining.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if last_message.elapsed() > STALL {
                let (partition, end) = remaining.iter().next().map_or((0, 0), |(p, e)| (*p, *e));
                return Err(ReplayError::Stalled {
                    topic: topic.to_string(),
                    partition,
                    offset: end,
                    secs: STALL.as_secs(),
                });
            }
            continue;
        };
        last_message = Instant::now();
        let message = polled.map_err(|source| ReplayError::Kafka {
            what: format!("cannot read results topic `{topic}`"),
            source,
        })?;
        let partition = message.partition();
        let Some(&end) = remaining.get(&partition) else {
            continue;
        };
        let ts = message.timestamp().to_millis().unwrap_or(i64::MIN);
        let past = ts >= stop_ms;
        if !past {
            originals.offer(
                wanted,
                message.payload().unwrap_or_default(),
                partition,
                message.offset(),
            );
        }
        if past || message.offset() + 1 >= end {
            remaining.remove(&partition);
            let mut done = TopicPartitionList::new();
            done.add_partition(topic, partition);
            // Only stops prefetching.
            let _ = consumer.pause(&done);
        }
    }
    Ok(originals)
}

/// Reads a results file (JSON lines, as `riskstream run --output` writes) and keeps those of
/// `wanted` events; line indexes stand in for offsets.
pub fn from_file(path: &Path, wanted: &HashSet<String>) -> Result<Originals, ReplayError> {
    let io = |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut originals = Originals {
        source: format!("file {}", path.display()),
        ..Originals::default()
    };
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for (line, bytes) in reader.split(b'\n').enumerate() {
        let bytes = bytes.map_err(io)?;
        if bytes.is_empty() {
            continue;
        }
        originals.offer(wanted, &bytes, 0, line as i64);
    }
    Ok(originals)
}
