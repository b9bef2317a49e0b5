//! The parts of librdkafka's statistics report (`statistics.interval.ms`, delivered to
//! `ClientContext::stats_raw` as JSON) that `/metrics` shows: consumer lag per partition
//! and the producer's queue.
//!
//! Only the fields used are read, each optional, so a report of an older or newer
//! librdkafka still parses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One assigned partition's consumer lag: messages between the consumer's position and
/// the partition's high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// A statistics report as far as riskstream reads it.
#[derive(Debug, Deserialize)]
pub struct KafkaStats {
    /// Messages in the client's producer queue (0 for a consumer).
    #[serde(default)]
    msg_cnt: u64,
    #[serde(default)]
    topics: BTreeMap<String, TopicStats>,
}

#[derive(Debug, Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: BTreeMap<String, PartitionStats>,
}

#[derive(Debug, Deserialize)]
struct PartitionStats {
    partition: i32,
    /// -1 when unknown: not consumed by this client, or no position / watermark yet.
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
}

fn unknown_lag() -> i64 {
    -1
}

impl KafkaStats {
    /// Parses one report.
    pub fn parse(json: &[u8]) -> Result<KafkaStats, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Lag of every partition this client consumes, by topic and partition. The internal
    /// "unassigned" partition (-1) and partitions whose lag is unknown are left out.
    pub fn consumer_lag(&self) -> Vec<PartitionLag> {
        let mut lag: Vec<PartitionLag> = self
            .topics
            .iter()
            .flat_map(|(topic, stats)| {
                stats
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| PartitionLag {
                        topic: topic.clone(),
                        partition: p.partition,
                        lag: p.consumer_lag,
                    })
            })
            .collect();
        lag.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        lag
    }

    /// Messages waiting in the producer queue.
    pub fn queued_messages(&self) -> u64 {
        self.msg_cnt
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A consumer's report as librdkafka 2.x writes it, shortened to one broker and the
    /// fields around the partitions (real reports carry many more, which are ignored).
    pub(crate) const CONSUMER_STATS: &str = r#"{
      "name": "rdkafka#consumer-1", "client_id": "rdkafka", "type": "consumer",
      "ts": 5016483227792, "time": 1527060869, "replyq": 0, "msg_cnt": 0,
      "msg_size": 0, "msg_max": 100000, "msg_size_max": 1073741824,
      "brokers": {"localhost:9092/0": {"name": "localhost:9092/0", "nodeid": 0, "state": "UP"}},
      "topics": {
        "events": {
          "topic": "events", "age": 5000, "metadata_age": 4000,
          "partitions": {
            "0": {"partition": 0, "broker": 0, "leader": 0, "desired": true, "unknown": false,
                  "fetch_state": "active", "committed_offset": 90, "stored_offset": 95,
                  "app_offset": 95, "hi_offset": 100, "lo_offset": 0,
                  "consumer_lag": 5, "consumer_lag_stored": 5},
            "1": {"partition": 1, "broker": 0, "leader": 0, "desired": true, "unknown": false,
                  "fetch_state": "active", "hi_offset": 40, "app_offset": 40,
                  "consumer_lag": 0, "consumer_lag_stored": 0},
            "2": {"partition": 2, "broker": 0, "leader": 0, "desired": false, "unknown": false,
                  "fetch_state": "none", "hi_offset": 7, "app_offset": -1001,
                  "consumer_lag": -1, "consumer_lag_stored": -1},
            "-1": {"partition": -1, "broker": -1, "leader": -1, "desired": false,
                   "unknown": false, "consumer_lag": -1}
          }
        },
        "payments": {
          "topic": "payments",
          "partitions": {"3": {"partition": 3, "consumer_lag": 1200}}
        }
      },
      "cgrp": {"state": "up", "join_state": "steady", "assignment_size": 3}
    }"#;

    #[test]
    fn consumer_lag_is_read_per_assigned_partition_and_unknown_lag_is_left_out() {
        let stats = KafkaStats::parse(CONSUMER_STATS.as_bytes()).unwrap();
        let lag = |topic: &str, partition, lag| PartitionLag {
            topic: topic.into(),
            partition,
            lag,
        };
        assert_eq!(
            stats.consumer_lag(),
            vec![
                lag("events", 0, 5),
                lag("events", 1, 0),
                lag("payments", 3, 1200)
            ]
        );
        assert_eq!(stats.queued_messages(), 0);
    }

    #[test]
    fn a_producer_report_gives_the_queue_and_no_lag() {
        let stats = KafkaStats::parse(
            br#"{"type":"producer","msg_cnt":17,"topics":{"results":{"partitions":{"0":{"partition":0,"msgq_cnt":17}}}}}"#,
        )
        .unwrap();
        assert_eq!(stats.queued_messages(), 17);
        assert!(stats.consumer_lag().is_empty());
    }

    #[test]
    fn a_report_that_is_not_json_is_an_error_not_a_panic() {
        assert!(KafkaStats::parse(b"{\"topics\": [").is_err());
        assert!(
            KafkaStats::parse(b"{\"topics\": {\"t\": {\"partitions\": {\"0\": {}}}}}").is_err()
        );
    }
}
