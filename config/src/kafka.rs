//! `[kafka]`: brokers, topics and client properties, used by every `kafka` source and sink.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use toml::{Table, Value};

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{whole_value, KeyPath, Report, Section};
use crate::redact;
use crate::secret::REDACTED;

/// Properties that a typed key already sets; setting both would make one silently lose.
const OWNED_PROPERTIES: [(&str, &str); 4] = [
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("group.id", "set `kafka.group_id` instead"),
    ("auto.offset.reset", "set `kafka.auto_offset_reset` instead"),
    (
        "enable.auto.offset.store",
        "riskstream stores each offset itself once its result is delivered, which is what makes delivery at-least-once",
    ),
];

choice_enum! {
    /// Where a consumer group with no committed offset starts reading.
    pub enum AutoOffsetReset {
        /// The oldest retained message: nothing already in the topic is skipped.
        Earliest = "earliest",
        /// Only messages produced after the job started.
        Latest = "latest",
    }
}

/// `[kafka]`: connection, consumer group, topics and pass-through client properties.
#[derive(Clone, PartialEq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of bootstrap brokers.
    pub brokers: String,
    /// Consumer group; instances with the same group share the input partitions.
    pub group_id: String,
    /// Topics the `kafka` source reads.
    pub input_topics: Vec<String>,
    /// Topic the `kafka` sink writes results to, keyed by account.
    pub results_topic: String,
    /// Topic the `kafka` dead-letter sink writes to.
    pub dead_letter_topic: String,
    /// Where to start when the group has no committed offset.
    pub auto_offset_reset: AutoOffsetReset,
    /// Whether missing topics are created at start (with `partitions` and `replication`).
    pub create_topics: bool,
    /// Partitions of topics created at start.
    pub partitions: i32,
    /// Replication factor of topics created at start.
    pub replication: i32,
    /// Whether the source hands out the records of its partitions in event-time order
    /// (message timestamp, then partition, then offset) instead of in arrival order.
    pub align_partitions: bool,
    /// How far a partition's next record may be ahead of the newest record handed out
    /// from a partition that ran dry in memory, without waiting for that partition's
    /// next fetch. Zero makes the order a function of the topic's contents alone.
    pub max_partition_skew: Duration,
    /// How long a partition that has data on the broker but delivers none may hold the
    /// others back; after that it is left out of the alignment until it brings data.
    pub idle_timeout: Duration,
    /// Client properties passed to the Kafka client as is (`security.protocol`,
    /// `sasl.password`, ...). Values of secret-looking names are never printed.
    pub properties: BTreeMap<String, String>,
}

/// Whether the value of the Kafka client property `name` must be hidden when printed: its
/// name contains `password`, `secret`, `jaas`, `oauthbearer.config`, `key.pem`, `token` or
/// `credential`, or is a near miss such as `sasl.pasword`.
pub fn is_secret_property(name: &str) -> bool {
    redact::is_secret_name(name)
}

/// A broker on loopback at Kafka's default port, as the test scripts start it.
pub(crate) fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

/// The project name, so offsets of different deployments do not mix by accident.
pub(crate) fn default_group_id() -> String {
    "riskstream".to_owned()
}

/// `events`, the topic `riskstream produce` writes by default.
pub(crate) fn default_input_topics() -> Vec<String> {
    vec!["events".to_owned()]
}

/// `results`, the topic `riskstream results` queries by default.
pub(crate) fn default_results_topic() -> String {
    "results".to_owned()
}

/// `dead-letters`, kept apart from results so consumers of results never see bad input.
pub(crate) fn default_dead_letter_topic() -> String {
    "dead-letters".to_owned()
}

/// Earliest: a new deployment processes what is already in the topic instead of skipping it.
pub(crate) fn default_auto_offset_reset() -> AutoOffsetReset {
    AutoOffsetReset::Earliest
}

/// Off: production topics are created by their owners with their own settings.
pub(crate) fn default_create_topics() -> bool {
    false
}

/// 4 partitions: room for a few parallel consumers in tests and demos.
pub(crate) fn default_partitions() -> i32 {
    4
}

/// 1 replica: the single-broker setup of tests and demos.
pub(crate) fn default_replication() -> i32 {
    1
}

/// On: a backlog read from several partitions is processed in event-time order, so its
/// windows see what a time-ordered read would, and two runs over the same topic agree.
pub(crate) fn default_align_partitions() -> bool {
    true
}

/// Zero: the order depends on the data, never on fetch timing (a partition empty at the
/// broker's end never waits for, so live traffic is not delayed by it).
pub(crate) fn default_max_partition_skew() -> Duration {
    Duration::ZERO
}

/// 2 s: far longer than a fetch round trip on a loaded broker, so that a backlog is not
/// reordered because one fetch was slow; short enough that a stuck partition delays the
/// others only briefly.
pub(crate) fn default_idle_timeout() -> Duration {
    Duration::from_secs(2)
}

/// The longest `kafka.max_partition_skew` and `kafka.idle_timeout` accepted: an hour.
const MAX_ALIGNMENT_WAIT: Duration = Duration::from_secs(3600);

/// None: librdkafka's own defaults apply.
pub(crate) fn default_properties() -> BTreeMap<String, String> {
    BTreeMap::new()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            group_id: default_group_id(),
            input_topics: default_input_topics(),
            results_topic: default_results_topic(),
            dead_letter_topic: default_dead_letter_topic(),
            auto_offset_reset: default_auto_offset_reset(),
            create_topics: default_create_topics(),
            partitions: default_partitions(),
            replication: default_replication(),
            align_partitions: default_align_partitions(),
            max_partition_skew: default_max_partition_skew(),
            idle_timeout: default_idle_timeout(),
            properties: default_properties(),
        }
    }
}

/// Shows the properties with secret values replaced, so logging the config is safe.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(name, value)| (name.as_str(), shown_property(name, value, true)))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("input_topics", &self.input_topics)
            .field("results_topic", &self.results_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("create_topics", &self.create_topics)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("align_partitions", &self.align_partitions)
            .field("max_partition_skew", &self.max_partition_skew)
            .field("idle_timeout", &self.idle_timeout)
            .field("properties", &properties)
            .finish()
    }
}

fn shown_property<'a>(name: &str, value: &'a str, redact: bool) -> &'a str {
    if redact && is_secret_property(name) {
        REDACTED
    } else {
        value
    }
}

impl KafkaConfig {
    /// `text` with every configured secret value replaced by `***`: the values of secret
    /// properties, and the secrets inside them (the password of a `sasl.jaas.config`). For
    /// errors of the Kafka client, which may quote a property's value.
    pub fn scrub_secrets(&self, text: &str) -> String {
        redact::scrub(text, self.secret_values())
    }

    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for (name, value) in &self.properties {
            if is_secret_property(name) {
                secrets.push(value.clone());
                secrets.extend(redact::embedded_secrets(value));
            }
        }
        secrets
    }

    pub(crate) fn read(mut s: Section<'_>) -> KafkaConfig {
        let config = KafkaConfig {
            brokers: s.string("brokers", default_brokers()),
            group_id: s.string("group_id", default_group_id()),
            input_topics: s.strings("input_topics", default_input_topics()),
            results_topic: s.string("results_topic", default_results_topic()),
            dead_letter_topic: s.string("dead_letter_topic", default_dead_letter_topic()),
            auto_offset_reset: s.choice("auto_offset_reset", default_auto_offset_reset()),
            create_topics: s.boolean("create_topics", default_create_topics()),
            partitions: s.whole("partitions", default_partitions()),
            replication: s.whole("replication", default_replication()),
            align_partitions: s.boolean("align_partitions", default_align_partitions()),
            max_partition_skew: s.duration("max_partition_skew", default_max_partition_skew()),
            idle_timeout: s.duration("idle_timeout", default_idle_timeout()),
            properties: s.text_table("properties"),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document, redact: bool) {
        let section = doc.section("kafka");
        section.set("brokers", self.brokers.as_str());
        section.set("group_id", self.group_id.as_str());
        let topics: Vec<Value> = self
            .input_topics
            .iter()
            .map(|t| Value::from(t.as_str()))
            .collect();
        section.set("input_topics", topics);
        section.set("results_topic", self.results_topic.as_str());
        section.set("dead_letter_topic", self.dead_letter_topic.as_str());
        section.set("auto_offset_reset", self.auto_offset_reset.as_str());
        section.set("create_topics", self.create_topics);
        section.set("partitions", whole_value(self.partitions));
        section.set("replication", whole_value(self.replication));
        section.set("align_partitions", self.align_partitions);
        section.set(
            "max_partition_skew",
            format_duration(self.max_partition_skew),
        );
        section.set("idle_timeout", format_duration(self.idle_timeout));
        let properties = doc.section("kafka.properties");
        for (name, value) in &self.properties {
            properties.set(name, shown_property(name, value, redact));
        }
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            self.brokers.split(',').all(|b| !b.trim().is_empty()),
            "kafka.brokers",
            "a comma-separated list of host:port",
            format!("{:?}", self.brokers),
            default_brokers(),
        );
        r.require(
            !self.group_id.trim().is_empty(),
            "kafka.group_id",
            "a consumer group name",
            "nothing",
            default_group_id(),
        );
        let topics_path = KeyPath::of("kafka.input_topics");
        r.require(
            !self.input_topics.is_empty(),
            "kafka.input_topics",
            "a list of at least one topic",
            "an empty list",
            vec![Value::from("events")],
        );
        for (i, topic) in self.input_topics.iter().enumerate() {
            if let Some(problem) = topic_problem(topic) {
                r.invalid(&topics_path, Some(i), &problem);
            } else if self.input_topics[..i].contains(topic) {
                r.invalid(
                    &topics_path,
                    Some(i),
                    &format!("topic {topic:?} is listed twice; list each topic once"),
                );
            }
        }
        for (key, topic) in [
            ("kafka.results_topic", &self.results_topic),
            ("kafka.dead_letter_topic", &self.dead_letter_topic),
        ] {
            if let Some(problem) = topic_problem(topic) {
                r.invalid(&KeyPath::of(key), None, &problem);
            }
        }
        r.require(
            self.partitions >= 1,
            "kafka.partitions",
            "at least 1",
            self.partitions,
            whole_value(default_partitions()),
        );
        r.require(
            self.replication >= 1,
            "kafka.replication",
            "at least 1",
            self.replication,
            whole_value(default_replication()),
        );
        r.require(
            self.max_partition_skew <= MAX_ALIGNMENT_WAIT,
            "kafka.max_partition_skew",
            "at most 1h",
            format!("{:?}", format_duration(self.max_partition_skew)),
            format_duration(default_max_partition_skew()),
        );
        r.require(
            !self.idle_timeout.is_zero() && self.idle_timeout <= MAX_ALIGNMENT_WAIT,
            "kafka.idle_timeout",
            "more than 0s and at most 1h",
            format!("{:?}", format_duration(self.idle_timeout)),
            format_duration(default_idle_timeout()),
        );
        let properties = KeyPath::of("kafka.properties");
        for name in self.properties.keys() {
            let owned = OWNED_PROPERTIES
                .iter()
                .find(|(owned, _)| owned.eq_ignore_ascii_case(name));
            if let Some((_, instead)) = owned {
                r.invalid(
                    &properties.child(name),
                    None,
                    &format!("this property cannot be set here: {instead}"),
                );
            }
        }
    }
}

/// Kafka's own rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn topic_problem(topic: &str) -> Option<String> {
    let valid_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let valid = (1..=249).contains(&topic.len()) && valid_chars && topic != "." && topic != "..";
    (!valid).then(|| {
        format!(
            "{topic:?} is not a valid Kafka topic name; use 1 to 249 letters, digits, '.', '_' or '-'"
        )
    })
}

/// Turns a nested properties table (`sasl.password = "x"` in TOML is `sasl = { password = "x" }`)
/// into dotted names, so that `"sasl.password" = "x"` and the unquoted form mean the same
/// property, and environment overrides can replace either.
pub(crate) fn flatten_properties(tree: &mut Table, report: &mut Report) {
    let Some(Value::Table(kafka)) = tree.get_mut("kafka") else {
        return;
    };
    let Some(Value::Table(properties)) = kafka.get_mut("properties") else {
        return;
    };
    let nested = std::mem::take(properties);
    flatten_into(properties, "", nested, report);
}

fn flatten_into(flat: &mut Table, prefix: &str, table: Table, report: &mut Report) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => flatten_into(flat, &name, inner, report),
            other => {
                if flat.insert(name.clone(), other).is_some() {
                    let path = KeyPath::of("kafka.properties").child(&name);
                    report.invalid(
                        &path,
                        None,
                        "is set twice, once as a quoted name and once through nested keys; keep one",
                    );
                }
            }
        }
    }
}
