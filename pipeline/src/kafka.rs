//! What every Kafka client of riskstream shares: the client configuration built from
//! `[kafka]` (brokers plus pass-through properties, secrets never logged), topic creation,
//! and the errors of setting a client up.
//!
//! The source lives in [`crate::source::kafka`], the sinks in [`crate::sink::kafka`].

use std::sync::Arc;
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

/// The configured secret values of `[kafka]`, scrubbed from everything the Kafka client
/// says while it runs (its log lines and error callbacks) before it reaches the job's log:
/// librdkafka may quote a property's value, a SASL mechanism's configuration included,
/// long after the client was created. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClientSecrets {
    /// `None` when nothing is secret (then text passes unchanged).
    kafka: Option<Arc<KafkaConfig>>,
}

impl ClientSecrets {
    pub fn new(kafka: &KafkaConfig) -> Self {
        let any = kafka.properties.keys().any(|name| is_secret_property(name));
        ClientSecrets {
            kafka: any.then(|| Arc::new(kafka.clone())),
        }
    }

    /// `text` with every configured secret value replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        match &self.kafka {
            Some(kafka) => kafka.scrub_secrets(text),
            None => text.to_owned(),
        }
    }
}

/// Client callbacks shared by riskstream's producers and query consumers: librdkafka's
/// log lines and errors go to the job's log, scrubbed of the configured secrets; reaching
/// the end of a partition is not one.
pub struct LogContext {
    secrets: ClientSecrets,
}

impl LogContext {
    pub fn new(kafka: &KafkaConfig) -> Self {
        LogContext {
            secrets: ClientSecrets::new(kafka),
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_error(&self.secrets, error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

/// Forwards one librdkafka log line to the job's log at the matching level, without the
/// configured secrets.
pub fn log(secrets: &ClientSecrets, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    let message = secrets.scrub(log_message);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "kafka", fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "kafka", fac, "{message}"),
        _ => tracing::debug!(target: "kafka", fac, "{message}"),
    }
}

/// Logs a client-level error without the configured secrets. They are transient (a
/// broker restarting, a leader moving): librdkafka retries by itself, so they are
/// warnings, not failures.
pub fn report_error(secrets: &ClientSecrets, error: KafkaError, reason: &str) {
    // The end of a partition is news for the aligned source, not an error; librdkafka
    // also reports it through the error callback when `enable.partition.eof` is on.
    if matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    let error = secrets.scrub(&error.to_string());
    let reason = secrets.scrub(reason);
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

    /// The log lines written while `f` runs, at every level.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn what_the_kafka_client_says_at_run_time_never_carries_a_configured_secret() {
        let mut kafka = KafkaConfig::default();
        kafka.properties.insert(
            "sasl.jaas.config".into(),
            "PlainLoginModule required username=\"u\" password=\"jaas-S3cr3t\";".into(),
        );
        kafka
            .properties
            .insert("sasl.password".into(), "pw-S3cr3t".into());
        kafka
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let context = LogContext::new(&kafka);
        let text = logged(|| {
            for level in [
                RDKafkaLogLevel::Error,
                RDKafkaLogLevel::Warning,
                RDKafkaLogLevel::Debug,
            ] {
                ClientContext::log(
                    &context,
                    level,
                    "SASL",
                    "broker 1: authentication as u with pw-S3cr3t failed (password=\"jaas-S3cr3t\")",
                );
            }
            ClientContext::error(
                &context,
                KafkaError::ClientCreation("sasl.password=pw-S3cr3t refused".into()),
                "SASL authentication with pw-S3cr3t failed; jaas-S3cr3t",
            );
        });
        assert!(!text.contains("S3cr3t"), "{text}");
        assert_eq!(
            text.matches("authentication as u with *** failed").count(),
            3,
            "{text}"
        );
        assert!(
            text.contains("SASL authentication with *** failed"),
            "{text}"
        );
        assert!(text.contains("sasl.password=*** refused"), "{text}");
    }

    #[test]
    fn without_secret_properties_client_lines_pass_unchanged() {
        let secrets = ClientSecrets::new(&KafkaConfig::default());
        assert_eq!(
            secrets.scrub("Connect to 127.0.0.1:9092 failed"),
            "Connect to 127.0.0.1:9092 failed"
        );
    }
}
