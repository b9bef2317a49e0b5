//! The job's back end: encodes each scored batch, hands the results and dead letters to
//! their sinks (files, standard output or Kafka topics), then, in the order the batches
//! were read, waits until each batch is delivered before counting it and acknowledging its
//! input.
//!
//! The order is the job's at-least-once guarantee: an input is acknowledged (its Kafka
//! offset stored for commit) only after its result or dead letter, and those of every
//! input read before it, are delivered. A failed delivery stops the job before anything
//! after it is acknowledged. A result the results topic refuses for the message itself
//! (too large, an invalid record) is not a failed delivery but the event's problem: the
//! event becomes a dead letter of kind `result_undeliverable`, sent with its batch, and
//! the batch is acknowledged only once that dead letter is delivered.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use riskstream_config::Config;

use super::BuildError;
use crate::dead_letter::{DeadLetter, SourceRef, RESULT_UNDELIVERABLE};
use crate::engine::{DeadRecord, Engine, Scored, REASONS};
use crate::observe::events::{DeadLettered, Emit, ResultsDelivered, StageTimed};
use crate::observe::{Observer, Stage};
use crate::result::{readable_reasons, Reason};
use crate::sink::kafka::{BatchDelivery, DeadLetterHeaders, KafkaSink, KafkaSinkError};
use crate::sink::{LineSink, SinkError};
use crate::source::kafka::KafkaAcknowledger;
use crate::source::RawBatch;

/// Batches handed to the sinks but not yet confirmed delivered. With Kafka's own queue
/// behind it this bounds what a crash can make the job redo.
pub const IN_FLIGHT_BATCHES: usize = 32;

/// How long the producer may take to deliver what is queued when the job stops.
const FLUSH_LIMIT: Duration = Duration::from_secs(60);

/// Told about delivered input, in the order it was read: the Kafka source stores the
/// offsets for commit ([`KafkaAcknowledger`]); anything else that must only ever see
/// delivered input (a test, an embedding program) can listen too.
pub trait Acknowledge: Send + Sync {
    /// The result or dead letter of every record of `batch` is delivered, and so is that
    /// of every record read before it.
    fn delivered(&self, batch: &RawBatch);
    /// The job is stopping and everything it read was delivered.
    fn finish(&self);
}

impl Acknowledge for KafkaAcknowledger {
    fn delivered(&self, batch: &RawBatch) {
        KafkaAcknowledger::delivered(self, batch);
    }

    fn finish(&self) {
        KafkaAcknowledger::finish(self);
    }
}

/// Why results or dead letters could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    File(#[from] SinkError),
    #[error(transparent)]
    Kafka(#[from] KafkaSinkError),
    #[error("queued messages were not delivered at shutdown")]
    Flush(#[source] KafkaSinkError),
}

/// Where results or dead letters go: a JSONL file (`-` for standard output) or the
/// configured Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    Kafka,
}

impl Target {
    /// The file or `-`; `None` for Kafka.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Target::Path(path) => Some(path),
            Target::Kafka => None,
        }
    }
}

enum Out {
    Lines(LineSink),
    Kafka,
}

/// The open sinks of results and dead letters.
pub(super) struct Outputs {
    results: Out,
    dead: Out,
    /// The producer, when either output is a Kafka topic.
    kafka: Option<Arc<KafkaSink>>,
    /// Counts the dead letters of results the producer refused.
    observer: Arc<Observer>,
    /// The results file or topic, for logs and the summary.
    pub results_target: String,
    pub dead_letter_target: String,
}

/// A batch handed to the sinks, waiting for its delivery reports.
struct InDelivery {
    scored: Scored,
    /// The batch's Kafka delivery reports; `None` when everything went to files.
    pending: Option<Arc<BatchDelivery>>,
    /// Events whose result became a dead letter instead ([`Sent::undeliverable`]).
    undeliverable: Vec<usize>,
    /// When the batch was handed to the sinks: the deliver stage's time starts here.
    sent: Instant,
}

impl Outputs {
    /// Opens the sinks: creates the files, starts the producer.
    pub fn open(
        results: &Target,
        dead: &Target,
        config: &Config,
        observer: &Arc<Observer>,
    ) -> Result<Self, BuildError> {
        let any_kafka = [results, dead].iter().any(|t| **t == Target::Kafka);
        let kafka = if any_kafka {
            Some(Arc::new(KafkaSink::new(
                &config.kafka,
                Some(observer.clone()),
            )?))
        } else {
            None
        };
        let open = |target: &Target, topic: &str| -> Result<(Out, String), BuildError> {
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
            observer: observer.clone(),
            results_target,
            dead_letter_target,
        })
    }

    /// Hands one batch to the sinks: file sinks are written and flushed now (delivered);
    /// Kafka sends are queued and returned for the delivery task to wait on.
    ///
    /// A result the results topic refuses for itself ([`KafkaSinkError::is_per_message`])
    /// becomes a dead letter of kind [`RESULT_UNDELIVERABLE`] with the event's original
    /// bytes and the producer's error, sent with the batch's other dead letters; its index
    /// is returned so that it is not counted as a delivered result. The batch is
    /// acknowledged only when all of them are delivered, as any other batch.
    async fn send(
        &mut self,
        scored: &Scored,
        lines: &[u8],
        ends: &[usize],
    ) -> Result<Sent, DeliveryError> {
        let decoded = &scored.enriched.decoded;
        let pending = self.kafka.as_ref().map(|_| BatchDelivery::new());
        let mut undeliverable = Vec::new();
        match (&mut self.results, &self.kafka, &pending) {
            (Out::Lines(sink), _, _) => {
                sink.write_lines(lines)?;
                sink.flush()?;
            }
            (Out::Kafka, Some(kafka), Some(batch)) => {
                let mut start = 0;
                for (i, (event, &end)) in decoded.events.iter().zip(ends).enumerate() {
                    let sent = kafka
                        .send_result(batch, &event.account_id, &lines[start..end], event.ts_ms)
                        .await;
                    match sent {
                        Ok(()) => {}
                        Err(err) if err.is_per_message() => {
                            undeliverable.push(self.result_undeliverable(scored, i, &err));
                        }
                        Err(err) => return Err(err.into()),
                    }
                    // Skip the newline that separates lines in files.
                    start = end + 1;
                }
            }
            (Out::Kafka, _, _) => unreachable!("a Kafka output always has a producer and a batch"),
        }
        match (&mut self.dead, &self.kafka, &pending) {
            (Out::Lines(sink), _, _) => {
                let mut extra = Vec::new();
                for dead in undeliverable.iter().map(|u| &u.dead) {
                    let record = &decoded.raw.records[dead.record as usize];
                    let bytes = decoded.raw.payload(record);
                    let position = decoded.raw.position(record);
                    let letter = DeadLetter::with_reason(
                        dead.kind,
                        dead.reason.clone(),
                        bytes,
                        bytes.len(),
                        &position,
                        dead.received_at.clone(),
                    );
                    // Serialising plain strings and numbers into a Vec cannot fail.
                    if serde_json::to_writer(&mut extra, &letter).is_ok() {
                        extra.push(b'\n');
                    }
                }
                if !decoded.dead_letters.is_empty() || !extra.is_empty() {
                    sink.write_lines(&decoded.dead_letters)?;
                    sink.write_lines(&extra)?;
                    sink.flush()?;
                }
            }
            (Out::Kafka, Some(kafka), Some(batch)) => {
                for dead in decoded
                    .dead
                    .iter()
                    .chain(undeliverable.iter().map(|u| &u.dead))
                {
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
            (Out::Kafka, _, _) => unreachable!("a Kafka output always has a producer and a batch"),
        }
        Ok(Sent {
            pending,
            undeliverable: undeliverable.iter().map(|d| d.event).collect(),
        })
    }

    /// The dead letter of event `i` of the batch, whose result the producer refused.
    fn result_undeliverable(
        &self,
        scored: &Scored,
        i: usize,
        err: &KafkaSinkError,
    ) -> Undeliverable {
        let decoded = &scored.enriched.decoded;
        let record = decoded.records[i];
        let raw = &decoded.raw.records[record as usize];
        let reason = format!("the result could not be written: {err}");
        tracing::warn!(
            source.topic = %decoded.raw.topic,
            source.partition = raw.partition,
            source.offset = raw.offset,
            event_id = %decoded.events[i].event_id,
            error = %err,
            "result refused by the results topic; the event becomes a dead letter"
        );
        DeadLettered {
            kind: RESULT_UNDELIVERABLE,
            reason: &reason,
        }
        .emit(&self.observer);
        Undeliverable {
            event: i,
            dead: DeadRecord {
                record,
                kind: RESULT_UNDELIVERABLE,
                reason,
                received_at: scored.processed_at.clone(),
            },
        }
    }
}

/// What [`Outputs::send`] handed to the sinks.
struct Sent {
    /// The batch's Kafka delivery reports; `None` when everything went to files.
    pending: Option<Arc<BatchDelivery>>,
    /// Events whose result was refused and became a dead letter, in ascending order.
    undeliverable: Vec<usize>,
}

/// An event whose result the producer refused: the dead letter sent in its place.
struct Undeliverable {
    /// Index of the event in the batch.
    event: usize,
    dead: DeadRecord,
}

/// What the back end reports when the scored batches stop coming.
pub(super) struct Delivered {
    /// Read → delivered per event, in microseconds.
    pub latency: Histogram<u64>,
    /// The first delivery failure, if any: nothing after it was acknowledged.
    pub outcome: Result<(), DeliveryError>,
}

/// The sink stage and the delivery task behind it. Runs until `scored` ends or a delivery
/// fails (then `cancel` stops the job); when everything read was delivered, tells the
/// acknowledgers that the job is finishing.
pub(super) async fn sink(
    mut scored: mpsc::Receiver<Scored>,
    mut outputs: Outputs,
    engine: Arc<Engine>,
    acknowledgers: Arc<[Arc<dyn Acknowledge>]>,
    observer: Arc<Observer>,
    cancel: CancellationToken,
) -> Result<Delivered, tokio::task::JoinError> {
    let (del_tx, del_rx) = mpsc::channel::<InDelivery>(IN_FLIGHT_BATCHES);
    let delivery = tokio::spawn(deliver(
        del_rx,
        outputs.kafka.clone(),
        acknowledgers.clone(),
        observer.clone(),
        cancel.clone(),
    ));
    let mut lines = Vec::with_capacity(1 << 20);
    let mut ends = Vec::new();
    let mut failed: Option<DeliveryError> = None;
    while let Some(batch) = scored.recv().await {
        lines.clear();
        ends.clear();
        let started = Instant::now();
        encode_results(&engine, &batch, &mut lines, &mut ends);
        StageTimed {
            stage: Stage::Encode,
            took: started.elapsed(),
        }
        .emit(&observer);
        let sent = Instant::now();
        let Sent {
            pending,
            undeliverable,
        } = match outputs.send(&batch, &lines, &ends).await {
            Ok(sent) => sent,
            Err(err) => {
                failed = Some(err);
                cancel.cancel();
                break;
            }
        };
        let batch = InDelivery {
            scored: batch,
            pending,
            undeliverable,
            sent,
        };
        if del_tx.send(batch).await.is_err() {
            // The delivery task stopped on an error; it reports it below.
            cancel.cancel();
            break;
        }
    }
    drop(del_tx);
    let (latency, delivered) = delivery.await?;
    if let Err(err) = delivered {
        failed.get_or_insert(err);
    }
    if failed.is_none() {
        for ack in acknowledgers.iter() {
            ack.finish();
        }
    }
    Ok(Delivered {
        latency,
        outcome: failed.map_or(Ok(()), Err),
    })
}

/// Encodes a scored batch as result lines; `ends[i]` is where result `i`'s JSON ends
/// (its newline follows).
fn encode_results(engine: &Engine, scored: &Scored, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
    let decoded = &scored.enriched.decoded;
    let specs = engine.layout.describe();
    let now = Instant::now();
    let mut reasons: Vec<Reason<'_>> = Vec::with_capacity(REASONS);
    for i in 0..decoded.events.len() {
        let record = &decoded.raw.records[decoded.records[i] as usize];
        let latency = now.saturating_duration_since(record.received);
        readable_reasons(specs, &scored.reasons[i], &mut reasons);
        let source = SourceRef {
            topic: &decoded.raw.topic,
            partition: record.partition,
            offset: record.offset,
        };
        // Microsecond resolution is plenty and keeps the number short.
        let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1000.0;
        let view = engine.result_view(
            scored,
            i,
            &reasons,
            source,
            &scored.processed_at,
            latency_ms,
        );
        view.encode(out);
        ends.push(out.len());
        out.push(b'\n');
    }
}

/// A histogram of microseconds up to an hour.
pub(super) fn micros_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .expect("1 µs to 1 h with 3 significant digits are valid histogram bounds")
}

/// The delivery task: waits for each batch's delivery reports in the order the batches
/// were sent, then counts its results and acknowledges its input. Stops at the first
/// failed delivery (cancelling the job) so that nothing after it is ever acknowledged.
async fn deliver(
    mut rx: mpsc::Receiver<InDelivery>,
    kafka: Option<Arc<KafkaSink>>,
    acknowledgers: Arc<[Arc<dyn Acknowledge>]>,
    observer: Arc<Observer>,
    cancel: CancellationToken,
) -> (Histogram<u64>, Result<(), DeliveryError>) {
    let metrics = observer.metrics().clone();
    let mut histogram = micros_histogram();
    let mut last_percentiles = Instant::now();
    while let Some(batch) = rx.recv().await {
        if let Some(pending) = &batch.pending {
            if let Err(err) = pending.wait().await {
                cancel.cancel();
                return (histogram, Err(err.into()));
            }
        }
        let decoded = &batch.scored.enriched.decoded;
        for ack in acknowledgers.iter() {
            ack.delivered(&decoded.raw);
        }
        let now = Instant::now();
        StageTimed {
            stage: Stage::Deliver,
            took: now.saturating_duration_since(batch.sent),
        }
        .emit(&observer);
        for &i in &decoded.records {
            let received = decoded.raw.records[i as usize].received;
            let latency = now.saturating_duration_since(received);
            let _ = histogram.record((latency.as_micros() as u64).max(1));
            observer.event_latency(latency);
        }
        let decisions = &batch.scored.decisions;
        let delivered: std::borrow::Cow<'_, [_]> = if batch.undeliverable.is_empty() {
            decisions.into()
        } else {
            // Their dead letters were counted when they were made.
            let kept = decisions.iter().enumerate();
            kept.filter(|(i, _)| batch.undeliverable.binary_search(i).is_err())
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
                .into()
        };
        ResultsDelivered {
            decisions: &delivered,
            latencies: &[],
        }
        .emit(&observer);
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
            return (histogram, Err(DeliveryError::Flush(err)));
        }
    }
    (histogram, Ok(()))
}
