//! The Kafka sinks: results to `kafka.results_topic` keyed by account, dead letters to
//! `kafka.dead_letter_topic` with the original payload and the reason in headers.
//!
//! The producer is idempotent (no duplicates or reordering from its own retries) and
//! retries failed sends by itself until `message.timeout.ms` (librdkafka's default: 5
//! minutes). A send that still fails is returned to the job, which stops consuming: a
//! result is never dropped silently. How many messages may wait for delivery is bounded by
//! librdkafka's queue (`queue.buffering.max.messages`); when it is full, sending waits.

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use riskstream_config::KafkaConfig;

use crate::kafka::{client_config, describe, KafkaSetupError, LogContext};

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
    #[error("delivery to topic `{topic}` was abandoned: the producer shut down")]
    Canceled { topic: String },
}

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

/// The producer behind the results and dead-letter topics.
pub struct KafkaSink {
    producer: FutureProducer<LogContext>,
    results_topic: String,
    dead_letter_topic: String,
}

/// One message waiting for its delivery report.
pub struct PendingDelivery {
    topic_is_results: bool,
    future: DeliveryFuture,
}

impl KafkaSink {
    /// An idempotent producer for `kafka.results_topic` and `kafka.dead_letter_topic`.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let mut config = client_config(kafka);
        config.set_log_level(RDKafkaLogLevel::Warning);
        for (name, value) in [
            ("enable.idempotence", "true"),
            // Larger batches on the wire; results are small and many.
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
        ] {
            if !kafka.properties.contains_key(name) {
                config.set(name, value);
            }
        }
        tracing::debug!(config = %describe(&config), "kafka producer configuration");
        let producer =
            config
                .create_with_context(LogContext)
                .map_err(|source| KafkaSetupError::Client {
                    role: "producer",
                    brokers: kafka.brokers.clone(),
                    source,
                })?;
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
        account_id: &str,
        payload: &[u8],
        event_ts_ms: i64,
    ) -> Result<PendingDelivery, KafkaSinkError> {
        let record = FutureRecord::to(&self.results_topic)
            .key(account_id)
            .payload(payload)
            .timestamp(event_ts_ms);
        let future = self.enqueue(record, &self.results_topic).await?;
        Ok(PendingDelivery {
            topic_is_results: true,
            future,
        })
    }

    /// Queues a message to the results topic as it is, unkeyed: the baseline of the
    /// throughput benchmark, which forwards input messages without processing them.
    pub async fn send_raw(
        &self,
        payload: &[u8],
        ts_ms: Option<i64>,
    ) -> Result<PendingDelivery, KafkaSinkError> {
        let mut record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to(&self.results_topic).payload(payload);
        if let Some(ts) = ts_ms {
            record = record.timestamp(ts);
        }
        let future = self.enqueue(record, &self.results_topic).await?;
        Ok(PendingDelivery {
            topic_is_results: true,
            future,
        })
    }

    /// Queues one dead letter: the original bytes as the value, the rest in headers
    /// (`riskstream.kind`, `riskstream.reason`, `riskstream.source.topic`,
    /// `riskstream.source.partition`, `riskstream.source.offset`, `riskstream.received_at`,
    /// and `riskstream.original_size` when only a prefix was kept).
    pub async fn send_dead_letter(
        &self,
        payload: &[u8],
        meta: DeadLetterHeaders<'_>,
    ) -> Result<PendingDelivery, KafkaSinkError> {
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
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&self.dead_letter_topic)
            .payload(payload)
            .headers(headers);
        let future = self.enqueue(record, &self.dead_letter_topic).await?;
        Ok(PendingDelivery {
            topic_is_results: false,
            future,
        })
    }

    /// Hands a record to the producer, waiting while its queue is full.
    async fn enqueue<'a, K, P>(
        &self,
        mut record: FutureRecord<'a, K, P>,
        topic: &str,
    ) -> Result<DeliveryFuture, KafkaSinkError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, _)) => {
                    return Err(KafkaSinkError::Send {
                        topic: topic.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits for a message's delivery report.
    pub async fn delivered(&self, pending: PendingDelivery) -> Result<(), KafkaSinkError> {
        let topic = if pending.topic_is_results {
            &self.results_topic
        } else {
            &self.dead_letter_topic
        };
        match pending.future.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((source, _))) => Err(KafkaSinkError::Delivery {
                topic: topic.clone(),
                source,
            }),
            Err(_) => Err(KafkaSinkError::Canceled {
                topic: topic.clone(),
            }),
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

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
