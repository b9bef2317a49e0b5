//! What every Kafka client of riskstream shares: the client configuration built from
//! `[kafka]` (brokers plus pass-through properties, secrets never logged), topic creation,
//! and the errors of setting a client up.
//!
//! The source lives in [`crate::source::kafka`], the sinks in [`crate::sink::kafka`].

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use riskstream_config::{is_secret_property, KafkaConfig};

/// How long to wait for the broker to answer a metadata or admin request at start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of setting up a Kafka client or its topics. Each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error(
        "cannot create the Kafka {role} for brokers `{brokers}`: {reason}; check kafka.brokers and \
         the client properties under [kafka.properties]"
    )]
    Client {
        role: &'static str,
        brokers: String,
        /// The client's error with every configured secret value removed: librdkafka quotes
        /// the value of a property it refuses, `sasl.jaas.config` included.
        reason: String,
    },
    #[error("cannot create topic `{topic}`: {reason}; create it yourself or fix kafka.partitions / kafka.replication")]
    CreateTopic { topic: String, reason: String },
    #[error(
        "cannot reach the Kafka brokers `{brokers}` within {secs} s: {source}; is the broker running \
         (scripts/kafka.sh start) and is kafka.brokers right?"
    )]
    Unreachable {
        brokers: String,
        secs: u64,
        source: KafkaError,
    },
    #[error("topic `{topic}` does not exist on `{brokers}`; create it, or set kafka.create_topics = true")]
    MissingTopic { topic: String, brokers: String },
    #[error("cannot subscribe to topics {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
}

impl KafkaSetupError {
    /// A client that could not be created, its error scrubbed of configured secrets.
    pub fn client(role: &'static str, kafka: &KafkaConfig, error: &KafkaError) -> Self {
        KafkaSetupError::Client {
            role,
            brokers: kafka.brokers.clone(),
            reason: kafka.scrub_secrets(&error.to_string()),
        }
    }
}

/// The client configuration every riskstream Kafka client starts from: the brokers and the
/// pass-through properties of `[kafka.properties]`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (name, value) in &kafka.properties {
        config.set(name, value);
    }
    config
}

/// The client configuration as text for logs, with secret values replaced.
pub fn describe(config: &ClientConfig) -> String {
    let mut pairs: Vec<String> = config
        .config_map()
        .iter()
        .map(|(k, v)| {
            if is_secret_property(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// Client callbacks shared by riskstream's producers and query consumers: librdkafka's
/// log lines and errors go to the job's log; reaching the end of a partition is not one.
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_error(error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

/// Forwards one librdkafka log line to the job's log at the matching level.
pub fn log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "kafka", fac, "{log_message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "kafka", fac, "{log_message}"),
        _ => tracing::debug!(target: "kafka", fac, "{log_message}"),
    }
}

/// Logs a client-level error. They are transient (a broker restarting, a leader moving):
/// librdkafka retries by itself, so they are warnings, not failures.
pub fn report_error(error: KafkaError, reason: &str) {
    if matches!(error, KafkaError::PartitionEOF(_)) {
        return;
    }
    tracing::warn!(target: "kafka", %error, "{reason}");
}

/// Creates the topics that do not exist yet, with `partitions` partitions and `replication`
/// replicas. Topics that already exist are left as they are.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|source| KafkaSetupError::client("admin client", kafka, &source))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(START_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|source| KafkaSetupError::Unreachable {
            brokers: kafka.brokers.clone(),
            secs: START_TIMEOUT.as_secs(),
            source,
        })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, replication, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The partition ids of `topic` in ascending order, from the broker's metadata; empty when
/// the topic does not exist (or reports an error).
pub fn topic_partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer.fetch_metadata(Some(topic), START_TIMEOUT)?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_passes_properties_through_and_describe_hides_secrets() {
        let mut kafka = KafkaConfig::default();
        kafka
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        kafka
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        let config = client_config(&kafka);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        let text = describe(&config);
        assert!(text.contains("sasl.password=***"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("security.protocol=SASL_SSL"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_secret_property_is_not_echoed_in_the_client_error() {
        let secret = "S3cr3t-in-jaas";
        let mut kafka = KafkaConfig::default();
        kafka.properties.insert(
            "sasl.jaas.config".into(),
            format!("PlainLoginModule required username=\"u\" password=\"{secret}\";"),
        );
        let raw = client_config(&kafka)
            .create::<AdminClient<DefaultClientContext>>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            raw.contains(secret),
            "the client quotes what it refuses: {raw}"
        );
        let error = ensure_topics(&kafka, &["t"], 1, 1)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("cannot create the Kafka admin client"),
            "{error}"
        );
        assert!(!error.contains(secret), "{error}");
    }
}
