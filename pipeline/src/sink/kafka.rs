//! The Kafka sinks: results to `kafka.results_topic` keyed by account, dead letters to
//! `kafka.dead_letter_topic` with the original payload and the reason in headers.
//!
//! The producer is idempotent (no duplicates or reordering from its own retries) and
//! retries failed sends by itself until `message.timeout.ms` (librdkafka's default: 5
//! minutes). A send refused for the message itself ([`is_per_message`]: too large,
//! refused by the broker's record checks) is the event's problem, not the job's: the job
//! makes an undeliverable result a dead letter, and a dead letter that does not fit is
//! sent again cut down ([`KafkaSink::send_dead_letter`]). Any other failure is returned to
//! the job, which stops consuming: a result is never dropped silently. How many messages may wait for delivery is bounded by
//! librdkafka's queue (`queue.buffering.max.messages`); when it is full, sending waits.
//!
//! Delivery reports are counted per batch ([`BatchDelivery`]) by the producer's own
//! callback thread, so a message costs one reference count, not a future of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::Notify;

use riskstream_config::KafkaConfig;

use crate::kafka::{client_config, describe, ClientSecrets, KafkaSetupError};
use crate::observe::Observer;

/// Why a message could not be handed to, or delivered by, the producer.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("cannot send to topic `{topic}`: {source}")]
    Send { topic: String, source: KafkaError },
    #[error(
        "delivery to topic `{topic}` failed after the producer's retries: {source}; the job stopped \
         consuming so that nothing is lost (raise message.timeout.ms under [kafka.properties] to wait longer)"
    )]
    Delivery { topic: String, source: KafkaError },
}

impl KafkaSinkError {
    /// Whether the error concerns this one message only, so that the stream can go on
    /// without it ([`is_per_message`]).
    pub fn is_per_message(&self) -> bool {
        let (KafkaSinkError::Send { source, .. } | KafkaSinkError::Delivery { source, .. }) = self;
        source.rdkafka_error_code().is_some_and(is_per_message)
    }
}

/// Whether a producer error is about the message itself, so that sending other messages
/// still works and sending this one again never will:
///
/// * `MessageSizeTooLarge`: the message is over the producer's `message.max.bytes`
///   (refused when it is queued, before any broker sees it) or the topic's
///   `max.message.bytes`;
/// * `InvalidMessageSize`, `MessageBatchTooLarge`: the broker refuses the message's size;
/// * `InvalidMessage` (corrupt), `InvalidRecord` (the broker's record validation, e.g. a
///   compacted topic needs a key), `InvalidTimestamp` (a result carries its event's time,
///   which may lie outside the topic's `message.timestamp.*.max.ms`).
///
/// Everything else is not per message and stops the job as before: brokers gone or timed
/// out (`MessageTimedOut`, transport errors), authentication and authorisation, a missing
/// topic (`UnknownTopic`, `UnknownTopicOrPartition`), fatal producer errors, bad settings.
pub fn is_per_message(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// How much of a dead letter's payload, and of its reason, is kept when the whole dead
/// letter was refused for its size: small enough that the cut message fits librdkafka's
/// smallest `message.max.bytes` (1000) with its headers.
pub const CUT_DEAD_LETTER_BYTES: usize = 256;

/// What a dead-letter message carries besides the original payload.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterHeaders<'a> {
    pub kind: &'a str,
    pub reason: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub received_at: &'a str,
    /// The payload's true size when it was over the limit and only a prefix is kept.
    pub original_size: Option<usize>,
}

/// A message the broker refused for itself ([`is_per_message`]) after it was queued,
/// kept so that the job can send it again in another form: a refused result as its
/// event's dead letter, a refused dead letter cut down.
#[derive(Debug, Clone)]
pub struct Refused {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The message's headers (a dead letter's: [`KafkaSink::send_dead_letter`]).
    pub headers: Vec<(String, String)>,
    pub error: KafkaError,
}

impl Refused {
    fn header(&self, key: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The delivery reports of one batch: how many are outstanding, the first failure, and the
/// messages refused for themselves. Cloned (as an `Arc`) into every message of the batch.
#[derive(Debug, Default)]
pub struct BatchDelivery {
    outstanding: AtomicUsize,
    failure: Mutex<Option<(String, KafkaError)>>,
    refused: Mutex<Vec<Refused>>,
    done: Notify,
}

impl BatchDelivery {
    pub fn new() -> Arc<Self> {
        Arc::new(BatchDelivery::default())
    }

    /// Waits until every message sent with this batch has a delivery report; the first
    /// failure, if any, is the error.
    pub async fn wait(&self) -> Result<(), KafkaSinkError> {
        while self.outstanding.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match failure {
            None => Ok(()),
            Some((topic, source)) => Err(KafkaSinkError::Delivery { topic, source }),
        }
    }

    /// The messages of the batch that the broker refused for themselves; call after
    /// [`BatchDelivery::wait`]. Their delivery is not done: the caller sends them again in
    /// another form, or fails.
    pub fn take_refused(&self) -> Vec<Refused> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn refuse(&self, refused: Refused) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(refused);
        self.report(Ok(()));
    }

    fn report(&self, result: Result<(), (String, KafkaError)>) {
        if let Err(failure) = result {
            let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(failure);
        }
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A stored permit wakes the waiter even if it is not waiting yet.
            self.done.notify_one();
        }
    }
}

/// Producer callbacks: delivery reports go to their batch, log lines to the job's log,
/// statistics (the producer queue) to the job's observer.
pub struct SinkContext {
    observer: Option<Arc<Observer>>,
    secrets: ClientSecrets,
}

impl ClientContext for SinkContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(observer) = &self.observer {
            observer.record_producer_stats(statistics);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::report_error(&self.secrets, error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Arc<BatchDelivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchDelivery>) {
        use rdkafka::message::{Headers, Message};
        match result {
            Ok(_) => batch.report(Ok(())),
            Err((err, message)) if err.rdkafka_error_code().is_some_and(is_per_message) => {
                // Rare: copying the message is cheap next to what it saves.
                let headers = message.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                });
                batch.refuse(Refused {
                    topic: message.topic().to_owned(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers,
                    error: err.clone(),
                });
            }
            Err((err, message)) => batch.report(Err((message.topic().to_owned(), err.clone()))),
        }
    }
}

/// The producer behind the results and dead-letter topics.
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext>,
    results_topic: String,
    dead_letter_topic: String,
}

impl KafkaSink {
    /// An idempotent producer for `kafka.results_topic` and `kafka.dead_letter_topic`.
    /// With an `observer`, the producer reports its queue every 5 s
    /// (`riskstream_producer_queue_messages`).
    pub fn new(
        kafka: &KafkaConfig,
        observer: Option<Arc<Observer>>,
    ) -> Result<Self, KafkaSetupError> {
        let mut config = client_config(kafka);
        config.set_log_level(RDKafkaLogLevel::Warning);
        for (name, value) in [
            ("enable.idempotence", "true"),
            // Larger batches on the wire; results are small and many.
            ("linger.ms", "5"),
            (
                "statistics.interval.ms",
                if observer.is_some() { "5000" } else { "0" },
            ),
        ] {
            if !kafka.properties.contains_key(name) {
                config.set(name, value);
            }
        }
        tracing::debug!(config = %describe(&config), "kafka producer configuration");
        let producer = config
            .create_with_context(SinkContext {
                observer,
                secrets: ClientSecrets::new(kafka),
            })
            .map_err(|source| KafkaSetupError::client("producer", kafka, &source))?;
        Ok(KafkaSink {
            producer,
            results_topic: kafka.results_topic.clone(),
            dead_letter_topic: kafka.dead_letter_topic.clone(),
        })
    }

    /// Queues one result keyed by its account, timestamped with the event's time (so that
    /// time-range queries of the results topic select by event time).
    pub async fn send_result(
        &self,
        batch: &Arc<BatchDelivery>,
        account_id: &str,
        payload: &[u8],
        event_ts_ms: i64,
    ) -> Result<(), KafkaSinkError> {
        let record = BaseRecord::with_opaque_to(&self.results_topic, batch.clone())
            .key(account_id)
            .payload(payload)
            .timestamp(event_ts_ms);
        self.enqueue(batch, record).await
    }

    /// Queues a message to the results topic as it is, unkeyed: the baseline of the
    /// throughput benchmark, which forwards input messages without processing them.
    pub async fn send_raw(
        &self,
        batch: &Arc<BatchDelivery>,
        payload: &[u8],
    ) -> Result<(), KafkaSinkError> {
        let record: BaseRecord<'_, (), [u8], _> =
            BaseRecord::with_opaque_to(&self.results_topic, batch.clone()).payload(payload);
        self.enqueue(batch, record).await
    }

    /// Queues one dead letter: the original bytes as the value, the rest in headers
    /// (`riskstream.kind`, `riskstream.reason`, `riskstream.source.topic`,
    /// `riskstream.source.partition`, `riskstream.source.offset`, `riskstream.received_at`,
    /// and `riskstream.original_size` when only a prefix was kept).
    ///
    /// A dead letter refused for itself ([`is_per_message`], most often its size) is sent
    /// once more cut down: the first [`CUT_DEAD_LETTER_BYTES`] of its payload and reason,
    /// `riskstream.original_size` saying how large the payload was. Only if that fails too
    /// is the error returned.
    pub async fn send_dead_letter(
        &self,
        batch: &Arc<BatchDelivery>,
        payload: &[u8],
        meta: DeadLetterHeaders<'_>,
    ) -> Result<(), KafkaSinkError> {
        match self.enqueue_dead_letter(batch, payload, meta).await {
            Err(err) if err.is_per_message() => {
                tracing::warn!(
                    topic = %self.dead_letter_topic,
                    source.topic = meta.topic,
                    source.partition = meta.partition,
                    source.offset = meta.offset,
                    error = %err,
                    "dead letter refused; sending it again cut to {CUT_DEAD_LETTER_BYTES} bytes"
                );
                let (payload, meta) = cut_dead_letter(payload, meta);
                self.enqueue_dead_letter(batch, payload, meta).await
            }
            sent => sent,
        }
    }

    async fn enqueue_dead_letter(
        &self,
        batch: &Arc<BatchDelivery>,
        payload: &[u8],
        meta: DeadLetterHeaders<'_>,
    ) -> Result<(), KafkaSinkError> {
        let partition = meta.partition.to_string();
        let offset = meta.offset.to_string();
        let size = meta.original_size.map(|s| s.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(7)
            .insert(header("riskstream.kind", meta.kind))
            .insert(header("riskstream.reason", meta.reason))
            .insert(header("riskstream.source.topic", meta.topic))
            .insert(header("riskstream.source.partition", &partition))
            .insert(header("riskstream.source.offset", &offset))
            .insert(header("riskstream.received_at", meta.received_at));
        if let Some(size) = &size {
            headers = headers.insert(header("riskstream.original_size", size));
        }
        let record: BaseRecord<'_, (), [u8], _> =
            BaseRecord::with_opaque_to(&self.dead_letter_topic, batch.clone())
                .payload(payload)
                .headers(headers);
        self.enqueue(batch, record).await
    }

    /// The topic results go to.
    pub fn results_topic(&self) -> &str {
        &self.results_topic
    }

    /// Sends a dead letter that the broker refused ([`Refused`]) once more, cut down. One
    /// already as small as a cut makes it cannot be sent at all: its error is returned.
    pub async fn send_refused_dead_letter(
        &self,
        batch: &Arc<BatchDelivery>,
        refused: &Refused,
    ) -> Result<(), KafkaSinkError> {
        let meta = DeadLetterHeaders {
            kind: refused.header("riskstream.kind"),
            reason: refused.header("riskstream.reason"),
            topic: refused.header("riskstream.source.topic"),
            partition: refused
                .header("riskstream.source.partition")
                .parse()
                .unwrap_or_default(),
            offset: refused
                .header("riskstream.source.offset")
                .parse()
                .unwrap_or_default(),
            received_at: refused.header("riskstream.received_at"),
            original_size: refused.header("riskstream.original_size").parse().ok(),
        };
        let (payload, cut) = cut_dead_letter(&refused.payload, meta);
        if payload.len() == refused.payload.len() && cut.reason.len() == meta.reason.len() {
            return Err(KafkaSinkError::Delivery {
                topic: refused.topic.clone(),
                source: refused.error.clone(),
            });
        }
        tracing::warn!(
            topic = %refused.topic,
            source.topic = meta.topic,
            source.partition = meta.partition,
            source.offset = meta.offset,
            error = %refused.error,
            "dead letter refused by the broker; sending it again cut to {CUT_DEAD_LETTER_BYTES} bytes"
        );
        self.enqueue_dead_letter(batch, payload, cut).await
    }

    /// Hands a record to the producer, waiting while its queue is full. The batch counts
    /// the message as outstanding before it can possibly be reported.
    async fn enqueue<'a, K, P>(
        &self,
        batch: &BatchDelivery,
        mut record: BaseRecord<'a, K, P, Arc<BatchDelivery>>,
    ) -> Result<(), KafkaSinkError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        batch.outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, back)) => {
                    batch.outstanding.fetch_sub(1, Ordering::AcqRel);
                    return Err(KafkaSinkError::Send {
                        topic: back.topic.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits up to `limit` for every queued message to be delivered (at shutdown).
    pub fn flush(&self, limit: Duration) -> Result<(), KafkaSinkError> {
        self.producer
            .flush(limit)
            .map_err(|source| KafkaSinkError::Delivery {
                topic: self.results_topic.clone(),
                source,
            })
    }
}

/// A dead letter cut to [`CUT_DEAD_LETTER_BYTES`] of payload and of reason (on a
/// character boundary); `original_size` keeps the payload's true size.
fn cut_dead_letter<'a>(
    payload: &'a [u8],
    meta: DeadLetterHeaders<'a>,
) -> (&'a [u8], DeadLetterHeaders<'a>) {
    let kept = &payload[..payload.len().min(CUT_DEAD_LETTER_BYTES)];
    let mut end = meta.reason.len().min(CUT_DEAD_LETTER_BYTES);
    while !meta.reason.is_char_boundary(end) {
        end -= 1;
    }
    let original_size = meta.original_size.unwrap_or(payload.len());
    let meta = DeadLetterHeaders {
        reason: &meta.reason[..end],
        original_size: (original_size > kept.len()).then_some(original_size),
        ..meta
    };
    (kept, meta)
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_one_message_are_per_message_and_errors_of_the_cluster_are_not() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidMessageSize,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidTimestamp,
        ] {
            assert!(is_per_message(code), "{code:?} concerns one message");
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::NotEnoughReplicas,
        ] {
            assert!(!is_per_message(code), "{code:?} is not about one message");
        }
        let too_large = KafkaSinkError::Send {
            topic: "results".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        };
        assert!(too_large.is_per_message());
        let timed_out = KafkaSinkError::Delivery {
            topic: "results".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        };
        assert!(!timed_out.is_per_message());
    }

    #[test]
    fn a_cut_dead_letter_keeps_a_prefix_and_says_how_large_the_payload_was() {
        let payload = vec![b'x'; 5000];
        let reason = "é".repeat(400);
        let meta = DeadLetterHeaders {
            kind: "result_undeliverable",
            reason: &reason,
            topic: "events",
            partition: 1,
            offset: 7,
            received_at: "t",
            original_size: None,
        };
        let (kept, cut) = cut_dead_letter(&payload, meta);
        assert_eq!(kept.len(), CUT_DEAD_LETTER_BYTES);
        assert_eq!(cut.original_size, Some(5000));
        assert!(cut.reason.len() <= CUT_DEAD_LETTER_BYTES && reason.starts_with(cut.reason));
        // An oversize input's true size survives the cut.
        let oversize = DeadLetterHeaders {
            original_size: Some(90_000),
            ..meta
        };
        assert_eq!(
            cut_dead_letter(&payload, oversize).1.original_size,
            Some(90_000)
        );
        // A short payload is kept whole and is not marked as cut.
        assert_eq!(cut_dead_letter(b"{}", meta).1.original_size, None);
    }
}
