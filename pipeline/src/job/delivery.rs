//! The job's back end: encodes each scored batch, hands the results and dead letters to
//! their sinks (files, standard output or Kafka topics), then, in the order the batches
//! were read, waits until each batch is delivered before counting it and acknowledging its
//! input.
//!
//! The order is the job's at-least-once guarantee: an input is acknowledged (its Kafka
//! offset stored for commit) only after its result or dead letter, and those of every
//! input read before it, are delivered. A failed delivery stops the job before anything
//! after it is acknowledged.
//!
//! A message refused for itself ([`crate::sink::kafka::is_per_message`]: too large, an
//! invalid record) is not a failed delivery but the event's problem. A refused result
//! makes its event a dead letter of kind `result_undeliverable` (original bytes, the
//! producer's or broker's error as reason); a refused dead letter is sent once more cut
//! down. Refused when queued, the replacement goes with its batch (`Outputs::send`);
//! refused in a delivery report, the delivery task sends it and waits for it before the
//! batch counts as delivered (`resend_refused`). Either way the batch is acknowledged
//! only once the replacement is delivered, and a replacement refused too stops the job.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use riskstream_config::Config;

use super::BuildError;
use crate::dead_letter::{DeadLetter, SourceRef, RESULT_UNDELIVERABLE};
use crate::engine::{DeadRecord, Decoded, Engine, Scored, REASONS};
use crate::observe::events::{DeadLettered, Emit, ResultsDelivered, StageTimed};
use crate::observe::{Observer, Stage};
use crate::result::{readable_reasons, Reason};
use crate::sink::kafka::{BatchDelivery, DeadLetterHeaders, KafkaSink, KafkaSinkError, Refused};
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

/// A results or dead-letter output. A file is shared with the delivery task, which writes
/// the dead letters of results the broker refused after they were queued; each holder
/// writes whole lines under the lock and never holds it across an `.await`.
#[derive(Clone)]
enum Out {
    Lines(Arc<Mutex<LineSink>>),
    Kafka,
}

/// Writes and flushes whole lines to a shared file sink.
fn write_shared(sink: &Mutex<LineSink>, parts: &[&[u8]]) -> Result<(), SinkError> {
    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
    for part in parts {
        sink.write_lines(part)?;
    }
    sink.flush()
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
                    (Out::Lines(Arc::new(Mutex::new(sink))), name)
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
        match (&self.results, &self.kafka, &pending) {
            (Out::Lines(sink), _, _) => write_shared(sink, &[lines])?,
            (Out::Kafka, Some(kafka), Some(batch)) => {
                let mut start = 0;
                for (i, (event, &end)) in decoded.events.iter().zip(ends).enumerate() {
                    let sent = kafka
                        .send_result(batch, &event.account_id, &lines[start..end], event.ts_ms)
                        .await;
                    match sent {
                        Ok(()) => {}
                        Err(err) if err.is_per_message() => {
                            let reason = format!("the result could not be written: {err}");
                            undeliverable.push(result_undeliverable(
                                scored,
                                i,
                                reason,
                                &self.observer,
                            ));
                        }
                        Err(err) => return Err(err.into()),
                    }
                    // Skip the newline that separates lines in files.
                    start = end + 1;
                }
            }
            (Out::Kafka, _, _) => unreachable!("a Kafka output always has a producer and a batch"),
        }
        let extra = undeliverable.iter().map(|u| &u.dead);
        send_dead_letters(
            &self.dead,
            self.kafka.as_deref(),
            pending.as_ref(),
            decoded,
            true,
            extra,
        )
        .await?;
        Ok(Sent {
            pending,
            undeliverable: undeliverable.iter().map(|u| u.event).collect(),
        })
    }
}

/// Sends dead letters to their output: with `decoded_too`, the batch's own (from the
/// decode and score stages), then `extra` ones made later.
async fn send_dead_letters<'a>(
    dead: &Out,
    kafka: Option<&KafkaSink>,
    pending: Option<&Arc<BatchDelivery>>,
    decoded: &'a Decoded,
    decoded_too: bool,
    extra: impl Iterator<Item = &'a DeadRecord>,
) -> Result<(), DeliveryError> {
    match (dead, kafka, pending) {
        (Out::Lines(sink), _, _) => {
            let mut lines = Vec::new();
            for dead in extra {
                dead_letter_line(decoded, dead, &mut lines);
            }
            let own: &[u8] = if decoded_too {
                &decoded.dead_letters
            } else {
                &[]
            };
            if !own.is_empty() || !lines.is_empty() {
                write_shared(sink, &[own, &lines])?;
            }
        }
        (Out::Kafka, Some(kafka), Some(batch)) => {
            let own = if decoded_too { &decoded.dead[..] } else { &[] };
            for dead in own.iter().chain(extra) {
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
    Ok(())
}

/// Appends the JSON line of a dead letter made after the decode stage.
fn dead_letter_line(decoded: &Decoded, dead: &DeadRecord, out: &mut Vec<u8>) {
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
    if serde_json::to_writer(&mut *out, &letter).is_ok() {
        out.push(b'\n');
    }
}

/// The dead letter of event `i` of the batch, whose result the producer or the broker
/// refused; counted and logged here.
fn result_undeliverable(
    scored: &Scored,
    i: usize,
    reason: String,
    observer: &Observer,
) -> Undeliverable {
    let decoded = &scored.enriched.decoded;
    let record = decoded.records[i];
    let raw = &decoded.raw.records[record as usize];
    tracing::warn!(
        source.topic = %decoded.raw.topic,
        source.partition = raw.partition,
        source.offset = raw.offset,
        event_id = %decoded.events[i].event_id,
        reason = %reason,
        "result refused by the results topic; the event becomes a dead letter"
    );
    DeadLettered {
        kind: RESULT_UNDELIVERABLE,
        reason: &reason,
    }
    .emit(observer);
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

/// The event of the batch whose result `payload` is, found by the source position the
/// result carries.
fn event_of_result(decoded: &Decoded, payload: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Source {
        partition: i32,
        offset: i64,
    }
    #[derive(serde::Deserialize)]
    struct Located {
        source: Source,
    }
    let located: Located = serde_json::from_slice(payload).ok()?;
    decoded.records.iter().position(|&r| {
        let record = &decoded.raw.records[r as usize];
        (record.partition, record.offset) == (located.source.partition, located.source.offset)
    })
}

/// Sends again, in another form, what the broker refused of a batch after it was queued:
/// a refused result as its event's dead letter ([`RESULT_UNDELIVERABLE`]), a refused dead
/// letter cut down; then waits for those. Returns the events whose result became a dead
/// letter. Fails, stopping the job, when a cut dead letter is refused too, or a refused
/// result cannot be told apart.
async fn resend_refused(
    mut refused: Vec<Refused>,
    scored: &Scored,
    kafka: &KafkaSink,
    dead: &Out,
    observer: &Observer,
) -> Result<Vec<usize>, DeliveryError> {
    let decoded = &scored.enriched.decoded;
    let mut undeliverable = Vec::new();
    // Each round makes every refused message smaller (result → dead letter → cut dead
    // letter), and one that cannot be made smaller fails: the loop ends.
    while !refused.is_empty() {
        let again = BatchDelivery::new();
        let mut made = Vec::new();
        for message in &refused {
            if message.topic != kafka.results_topic() {
                kafka.send_refused_dead_letter(&again, message).await?;
                continue;
            }
            let Some(i) = event_of_result(decoded, &message.payload) else {
                return Err(KafkaSinkError::Delivery {
                    topic: message.topic.clone(),
                    source: message.error.clone(),
                }
                .into());
            };
            let reason = format!(
                "the result was refused by topic `{}`: {}",
                message.topic, message.error
            );
            made.push(result_undeliverable(scored, i, reason, observer));
        }
        let extra = made.iter().map(|u| &u.dead);
        send_dead_letters(dead, Some(kafka), Some(&again), decoded, false, extra).await?;
        undeliverable.extend(made.iter().map(|u| u.event));
        again.wait().await?;
        refused = again.take_refused();
    }
    undeliverable.sort_unstable();
    Ok(undeliverable)
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
        outputs.dead.clone(),
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
    dead: Out,
    acknowledgers: Arc<[Arc<dyn Acknowledge>]>,
    observer: Arc<Observer>,
    cancel: CancellationToken,
) -> (Histogram<u64>, Result<(), DeliveryError>) {
    let metrics = observer.metrics().clone();
    let mut histogram = micros_histogram();
    let mut last_percentiles = Instant::now();
    while let Some(mut batch) = rx.recv().await {
        if let (Some(pending), Some(kafka)) = (&batch.pending, &kafka) {
            if let Err(err) = pending.wait().await {
                cancel.cancel();
                return (histogram, Err(err.into()));
            }
            let refused = pending.take_refused();
            if !refused.is_empty() {
                match resend_refused(refused, &batch.scored, kafka, &dead, &observer).await {
                    Ok(more) => {
                        batch.undeliverable.extend(more);
                        batch.undeliverable.sort_unstable();
                    }
                    Err(err) => {
                        cancel.cancel();
                        return (histogram, Err(err));
                    }
                }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;
    use crate::engine::FeatureBuffers;
    use crate::metrics::Metrics;
    use crate::source::RawBatch;

    /// A scored batch of three events and its result lines, with the metrics it counts in.
    fn scored_batch(config: &Config) -> (Engine, Scored, Vec<u8>, Vec<usize>) {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
        let model = super::super::build::load_model(config, Some(&models)).unwrap();
        let metrics = Arc::new(Metrics::default());
        let engine =
            super::super::build::engine(config, Some(&model), None, metrics, true).unwrap();
        let mut raw = RawBatch::new(Arc::from("events"), 3);
        for i in 0..3 {
            let line = format!(
                r#"{{"event_id":"e-{i}","ts":"2026-11-22T10:03:1{i}Z","account_id":"A-{i}","amount":12.5}}"#
            );
            raw.push(line.as_bytes(), 2, 40 + i, Instant::now());
        }
        let enriched = engine.enriched_without_graph(raw);
        let scored = engine.score(&model, enriched, &mut FeatureBuffers::default());
        let (mut lines, mut ends) = (Vec::new(), Vec::new());
        encode_results(&engine, &scored, &mut lines, &mut ends);
        (engine, scored, lines, ends)
    }

    fn refused_result(lines: &[u8], ends: &[usize], i: usize) -> Refused {
        let start = if i == 0 { 0 } else { ends[i - 1] + 1 };
        Refused {
            topic: "results".into(),
            payload: lines[start..ends[i]].to_vec(),
            headers: Vec::new(),
            error: KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
        }
    }

    /// The broker refused one result after it was queued (no broker is asked again: the
    /// dead letters go to a file), so the event becomes a `result_undeliverable` dead
    /// letter with its original bytes and the broker's error.
    #[tokio::test]
    async fn a_result_the_broker_refuses_becomes_its_events_dead_letter() {
        let mut config = Config::default();
        config.graph.kind = riskstream_config::GraphKind::None;
        config.kafka.brokers = "127.0.0.1:1".into();
        let (engine, scored, lines, ends) = scored_batch(&config);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let dead = Out::Lines(Arc::new(Mutex::new(LineSink::open(&path).unwrap())));
        let kafka = KafkaSink::new(&config.kafka, None).unwrap();
        let observer = Observer::new(engine.metrics.clone(), "test");
        let refused = vec![refused_result(&lines, &ends, 1)];
        let undeliverable = resend_refused(refused, &scored, &kafka, &dead, &observer)
            .await
            .unwrap();
        assert_eq!(undeliverable, [1]);
        let text = std::fs::read_to_string(&path).unwrap();
        let letters: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0]["kind"], RESULT_UNDELIVERABLE);
        assert_eq!(letters[0]["source"]["offset"], 41);
        assert!(letters[0]["payload"]
            .as_str()
            .unwrap()
            .contains(r#""event_id":"e-1""#));
        let reason = letters[0]["reason"].as_str().unwrap();
        assert!(reason.contains("InvalidRecord"), "{reason}");
        assert_eq!(
            observer
                .metrics()
                .dead_letters_of_kind(RESULT_UNDELIVERABLE),
            1
        );
    }

    /// A dead letter already as small as a cut makes it, refused again, stops the job.
    #[tokio::test]
    async fn a_refused_dead_letter_that_cannot_be_cut_further_is_an_error() {
        let mut config = Config::default();
        config.kafka.brokers = "127.0.0.1:1".into();
        let kafka = KafkaSink::new(&config.kafka, None).unwrap();
        let refused = Refused {
            topic: config.kafka.dead_letter_topic.clone(),
            payload: b"{}".to_vec(),
            headers: vec![("riskstream.reason".into(), "short".into())],
            error: KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
        };
        let sent = kafka
            .send_refused_dead_letter(&BatchDelivery::new(), &refused)
            .await;
        assert!(
            matches!(sent, Err(KafkaSinkError::Delivery { .. })),
            "{sent:?}"
        );
    }
}
