//! The job's back end: hands encoded results and dead letters to their sinks (files,
//! standard output or Kafka topics), then, in delivery order, waits until each batch is
//! delivered before counting it and acknowledging its input offsets.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use riskstream_config::Config;
use riskstream_pipeline::engine::Scored;
use riskstream_pipeline::metrics::Metrics;
use riskstream_pipeline::sink::kafka::{BatchDelivery, DeadLetterHeaders, KafkaSink};
use riskstream_pipeline::sink::LineSink;
use riskstream_pipeline::source::kafka::KafkaAcknowledger;

use super::setup::Target;

/// Batches handed to the sinks but not yet confirmed delivered. With Kafka's own queue
/// behind it this bounds what a crash can make the job redo.
pub const IN_FLIGHT_BATCHES: usize = 32;

/// How long the producer may take to deliver what is queued when the job stops.
const FLUSH_LIMIT: Duration = Duration::from_secs(60);

enum Out {
    Lines(LineSink),
    Kafka,
}

/// Where results and dead letters go.
pub struct Outputs {
    results: Out,
    dead: Out,
    /// The producer, when either output is a Kafka topic.
    pub kafka: Option<Arc<KafkaSink>>,
    pub results_target: String,
    pub dead_letter_target: String,
}

/// A batch handed to the sinks, waiting for its delivery reports.
pub struct InDelivery {
    pub scored: Scored,
    /// The batch's Kafka delivery reports; `None` when everything went to files.
    pub pending: Option<Arc<BatchDelivery>>,
}

impl Outputs {
    /// Opens the sinks.
    pub async fn open(results: &Target, dead: &Target, config: &Config) -> anyhow::Result<Self> {
        let kafka_topics: Vec<&str> = [
            (results, config.kafka.results_topic.as_str()),
            (dead, config.kafka.dead_letter_topic.as_str()),
        ]
        .into_iter()
        .filter(|(t, _)| matches!(t, Target::Kafka))
        .map(|(_, topic)| topic)
        .collect();
        let kafka = if kafka_topics.is_empty() {
            None
        } else {
            Some(Arc::new(KafkaSink::new(&config.kafka)?))
        };
        let open = |target: &Target, topic: &str| -> anyhow::Result<(Out, String)> {
            Ok(match target {
                Target::Path(path) => {
                    let sink = LineSink::open(path)?;
                    let name = sink.target();
                    (Out::Lines(sink), name)
                }
                Target::Kafka => (
                    Out::Kafka,
                    format!("kafka topic {topic} ({})", config.kafka.brokers),
                ),
            })
        };
        let (results, results_target) = open(results, &config.kafka.results_topic)?;
        let (dead, dead_letter_target) = open(dead, &config.kafka.dead_letter_topic)?;
        Ok(Outputs {
            results,
            dead,
            kafka,
            results_target,
            dead_letter_target,
        })
    }

    /// Hands one batch to the sinks: file sinks are written and flushed now (delivered);
    /// Kafka sends are queued and returned for the delivery task to wait on.
    pub async fn send(
        &mut self,
        scored: &Scored,
        lines: &[u8],
        ends: &[usize],
    ) -> anyhow::Result<Option<Arc<BatchDelivery>>> {
        let decoded = &scored.enriched.decoded;
        let pending = self.kafka.as_ref().map(|_| BatchDelivery::new());
        match (&mut self.results, &self.kafka) {
            (Out::Lines(sink), _) => {
                sink.write_lines(lines)?;
                sink.flush()?;
            }
            (Out::Kafka, Some(kafka)) => {
                let batch = pending
                    .as_ref()
                    .expect("a Kafka output has a delivery batch");
                let mut start = 0;
                for (event, &end) in decoded.events.iter().zip(ends) {
                    kafka
                        .send_result(batch, &event.account_id, &lines[start..end], event.ts_ms)
                        .await?;
                    // Skip the newline that separates lines in files.
                    start = end + 1;
                }
            }
            (Out::Kafka, None) => unreachable!("a Kafka output always has a producer"),
        }
        match (&mut self.dead, &self.kafka) {
            (Out::Lines(sink), _) => {
                if !decoded.dead_letters.is_empty() {
                    sink.write_lines(&decoded.dead_letters)?;
                    sink.flush()?;
                }
            }
            (Out::Kafka, Some(kafka)) => {
                let batch = pending
                    .as_ref()
                    .expect("a Kafka output has a delivery batch");
                for dead in &decoded.dead {
                    let record = &decoded.raw.records[dead.record as usize];
                    let headers = DeadLetterHeaders {
                        kind: dead.kind,
                        reason: &dead.reason,
                        topic: &decoded.raw.topic,
                        partition: record.partition,
                        offset: record.offset,
                        received_at: &dead.received_at,
                        original_size: decoded.raw.oversize_len(dead.record as usize),
                    };
                    kafka
                        .send_dead_letter(batch, decoded.raw.payload(record), headers)
                        .await?;
                }
            }
            (Out::Kafka, None) => unreachable!("a Kafka output always has a producer"),
        }
        Ok(pending)
    }
}

/// The delivery task: waits for each batch's delivery reports in the order the batches
/// were sent, then counts its results and stores its input offsets. Stops at the first
/// failed delivery (cancelling the job) so that no later offset is ever stored past it.
pub async fn deliver(
    mut rx: mpsc::Receiver<InDelivery>,
    kafka: Option<Arc<KafkaSink>>,
    acknowledger: Option<KafkaAcknowledger>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    mut histogram: Histogram<u64>,
) -> (Histogram<u64>, anyhow::Result<()>) {
    let mut last_percentiles = Instant::now();
    while let Some(batch) = rx.recv().await {
        if let Some(pending) = &batch.pending {
            if let Err(err) = pending.wait().await {
                cancel.cancel();
                return (histogram, Err(err.into()));
            }
        }
        let decoded = &batch.scored.enriched.decoded;
        if let Some(ack) = &acknowledger {
            ack.delivered(&decoded.raw);
        }
        let now = Instant::now();
        for &i in &decoded.records {
            let received = decoded.raw.records[i as usize].received;
            let micros = now.saturating_duration_since(received).as_micros() as u64;
            let _ = histogram.record(micros.max(1));
        }
        metrics.count_delivered(&batch.scored.decisions);
        if last_percentiles.elapsed() >= Duration::from_millis(250) {
            metrics
                .latency_p50_us
                .store(histogram.value_at_quantile(0.5), Relaxed);
            metrics
                .latency_p99_us
                .store(histogram.value_at_quantile(0.99), Relaxed);
            last_percentiles = Instant::now();
        }
    }
    if let Some(kafka) = &kafka {
        let flushed = tokio::task::block_in_place(|| kafka.flush(FLUSH_LIMIT));
        if let Err(err) = flushed {
            return (
                histogram,
                Err(err).context("queued messages were not delivered at shutdown"),
            );
        }
    }
    (histogram, Ok(()))
}
