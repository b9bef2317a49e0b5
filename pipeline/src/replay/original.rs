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
use crate::result::ResultRecord;

/// Results carry their event's time as Kafka timestamp but are published in processing
/// order, which can run a little behind or ahead of event time across input partitions:
/// the results topic is read this much beyond both ends of the range.
pub const RESULTS_SLACK: Duration = Duration::from_secs(300);

/// How long the results topic may stay silent before replay stops waiting for it.
const STALL: Duration = Duration::from_secs(30);

/// One published result and where it was found.
#[derive(Debug, Clone)]
pub struct Original {
    pub result: ResultRecord<'static>,
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
    /// A payload that is not a result ([`ResultRecord`] says what it accepts) is passed
    /// over: its event is then reported without a published result.
    fn offer(&mut self, wanted: &HashSet<String>, payload: &[u8], partition: i32, offset: i64) {
        self.read += 1;
        let Ok(result) = ResultRecord::from_json(payload) else {
            return;
        };
        if !wanted.contains(result.event_id.as_ref()) {
            return;
        }
        let id = result.event_id.to_string();
        let found = Original {
            result,
            partition,
            offset,
        };
        match self.by_event.get_mut(&id) {
            None => {
                self.by_event.insert(id, found);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Decision;

    fn line(id: &str, decision: &str, score: f32) -> String {
        format!(
            r#"{{"schema_version":1,"event_id":"{id}","account_id":"A-1","ts":"2026-11-22T10:00:00.000Z","score":{score},"decision":"{decision}","reasons":[],"aggregates":{{"account":{{"count_1m":1,"sum_1m":2.5,"distinct_counterparties":0}}}},"graph":{{"status":"ok","hops":null,"path":[],"flagged_nearby":0}},"model_version":"v1","snapshot_id":1,"source":{{"topic":"events","partition":0,"offset":0}},"processed_at":"2026-11-22T10:00:01.000Z","latency_ms":1.0}}"#
        )
    }

    #[test]
    fn published_results_are_read_through_the_typed_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let lines = [
            line("e-1", "review", 0.6),
            "not json".to_string(),
            line("e-1", "block", 0.9),
            line("e-2", "\\u001b[2Jblock", 0.9),
            line("e-3", "allow", 0.1),
            r#"{"event_id":"e-4","decision":"block"}"#.to_string(),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let wanted: HashSet<String> = ["e-1", "e-2", "e-4"].map(String::from).into();
        let originals = from_file(&path, &wanted).unwrap();
        assert_eq!(originals.read, 6);
        assert_eq!(originals.duplicates, 1);
        let e1 = &originals.by_event["e-1"];
        assert_eq!(e1.offset, 0, "the first published result is kept");
        assert_eq!(e1.result.decision.decision(), Some(Decision::Review));
        assert_eq!(e1.result.score, 0.6);
        let e2 = &originals.by_event["e-2"].result.decision;
        assert_eq!(e2.decision(), None, "a crafted decision is not trusted");
        assert_eq!(e2.shown(), "\"\\u{1b}[2Jblock\"");
        assert!(
            !originals.by_event.contains_key("e-4"),
            "a line that is not a whole result is passed over"
        );
        assert!(!originals.by_event.contains_key("e-3"), "not wanted");
    }
}
