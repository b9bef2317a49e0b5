//! Typed riskstream configuration.
//!
//! A configuration is built in three layers, each overriding the one before:
//!
//! 1. defaults for every key (so no file at all is a complete, valid configuration),
//! 2. an optional TOML file (`riskstream.toml` in this crate documents every key),
//! 3. environment variables `RISKSTREAM__SECTION__KEY` (see [`env`](crate#environment)).
//!
//! The result is validated as a whole: every problem is reported at once, each naming its
//! full key path (`aggregate.windows[1]`) or environment variable and the fix.
//!
//! # Environment
//!
//! The part after `RISKSTREAM__` is split at double underscores and lower-cased:
//! `RISKSTREAM__GRAPH__MAX_HOPS=2` sets `graph.max_hops`, and
//! `RISKSTREAM__SOURCE__GENERATOR__SEED=7` sets `source.generator.seed`. Below
//! `RISKSTREAM__KAFKA__PROPERTIES__` each double underscore becomes a dot of the Kafka
//! property name: `RISKSTREAM__KAFKA__PROPERTIES__SASL__PASSWORD` sets `sasl.password`.
//! Values are read as TOML when they are TOML (`7`, `true`, `["1m", "1h"]`) and as text
//! otherwise (`1m`); list keys also take comma-separated words (`events,payments`).
//!
//! # Secrets
//!
//! `graph.password`, the password inside `graph.uri`, and Kafka properties whose names
//! contain `password`, `secret`, `jaas`, `oauthbearer.config`, `key.pem`, `token` or
//! `credential` (or a near miss such as `sasl.pasword`) print as `"***"`, both in
//! [`Config::to_redacted_toml`] and in `Debug` output. A value of the wrong type for
//! `graph.password` is described without the value. [`Config::scrub_secrets`] removes every
//! configured secret value from any other text, such as a client library's error.

#[macro_use]
mod choice;

mod admin;
mod aggregate;
mod document;
mod duration;
mod env;
mod error;
mod graph;
mod kafka;
mod load;
mod log;
mod model;
mod pipeline;
mod read;
mod redact;
mod secret;
mod sink;
mod snapshot;
mod source;
mod state;
mod suggest;

use std::path::Path;

pub use admin::AdminConfig;
pub use aggregate::{
    default_idle_key_ttl, longest_window, AggregateConfig, AggregateKey, IDLE_KEY_MARGIN,
    MAX_FUTURE_SKEW, MAX_IDLE_KEY_TTL, MAX_WINDOW, MAX_WINDOWS, MIN_WINDOW,
};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{ConfigError, KeyError};
pub use graph::{GraphConfig, GraphKind, UnavailablePolicy, MAX_HOPS_LIMIT};
pub use kafka::{is_secret_property, AutoOffsetReset, KafkaConfig};
pub use log::{LogConfig, LogFormat};
pub use model::{ModelConfig, ModelDevice, FROM_METADATA};
pub use pipeline::{PipelineConfig, MAX_BATCH_SIZE, MAX_CHANNEL_CAPACITY, MAX_WORKERS};
pub use redact::{redacted_uri, MIN_SCRUBBED_LEN};
pub use secret::{Secret, REDACTED};
pub use sink::{DeadLetterConfig, SinkConfig, SinkKind};
pub use snapshot::SnapshotConfig;
pub use source::{
    GeneratorConfig, SourceConfig, SourceKind, GENERATOR_MAX_ACCOUNTS, GENERATOR_MAX_START_MS,
    GENERATOR_MIN_ACCOUNTS, GENERATOR_MIN_START_MS,
};
pub use state::StateConfig;

use document::Document;
use read::{KeyPath, Report, Section};

/// The whole configuration of a riskstream process, one field per TOML section.
/// `Config::default()` is complete and valid: the embedded default run.
#[derive(Clone, PartialEq, Default)]
pub struct Config {
    /// `[source]`: where events come from.
    pub source: SourceConfig,
    /// `[sink]`: where results go.
    pub sink: SinkConfig,
    /// `[dead_letter]`: where undecodable inputs go.
    pub dead_letter: DeadLetterConfig,
    /// `[pipeline]`: micro-batching and parallelism.
    pub pipeline: PipelineConfig,
    /// `[aggregate]`: window aggregation keys and windows.
    pub aggregate: AggregateConfig,
    /// `[snapshot]`: snapshot schedule.
    pub snapshot: SnapshotConfig,
    /// `[state]`: checkpoints of the window state.
    pub state: StateConfig,
    /// `[graph]`: graph enrichment.
    pub graph: GraphConfig,
    /// `[model]`: scoring model and thresholds.
    pub model: ModelConfig,
    /// `[kafka]`: brokers, topics and client properties.
    pub kafka: KafkaConfig,
    /// `[admin]`: the admin HTTP endpoint.
    pub admin: AdminConfig,
    /// `[log]`: log output.
    pub log: LogConfig,
}

impl Config {
    /// Defaults + optional file + process environment (`RISKSTREAM__...` variables).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut vars = Vec::new();
        let mut problems = Vec::new();
        for (name, value) in std::env::vars_os() {
            let shown = name.to_string_lossy().into_owned();
            if !shown.starts_with(env::PREFIX) {
                continue;
            }
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => vars.push((name, value)),
                _ => problems.push(KeyError {
                    key: shown.clone(),
                    env_var: Some(shown.clone()),
                    message: format!(
                        "environment variable `{shown}` is not valid UTF-8; set it to UTF-8 text or unset it"
                    ),
                }),
            }
        }
        load::load(path, vars, problems)
    }

    /// Same as [`Config::load`], with an explicit environment (for tests and for callers
    /// that filter the environment). Variables not starting with `RISKSTREAM__` are ignored.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load::load(path, env, Vec::new())
    }

    /// Parses a configuration from TOML text, without the environment.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        load::from_text(s)
    }

    /// Checks a configuration built or changed in code, with the same rules as loading.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut report = Report::new(None, toml::Table::new());
        self.check(&mut report);
        report.into_result(())
    }

    /// The effective configuration as TOML, every key present, secrets replaced by `"***"`.
    /// It loads back as the same configuration, apart from the secrets. Thresholds taken
    /// from the model metadata print as `"metadata"`.
    ///
    /// Secrets are hidden by name (the key says it is a secret) and by value: a secret of
    /// at least [`MIN_SCRUBBED_LEN`] characters is `***` wherever it stands, also as
    /// the value or the name of an ordinary key (a string that holds one then loads back as
    /// a different string). A shorter one, or one that reads as a number or a boolean
    /// (`true`, `1048576`), is hidden where it is a whole quoted string, not inside other
    /// values or as a bare number, so that the printed file still loads.
    pub fn to_redacted_toml(&self) -> String {
        let mut out =
            String::from("# Effective riskstream configuration. Secrets are shown as \"***\".\n\n");
        out.push_str(&self.document(true).render());
        self.scrub_long_secrets(&out)
    }

    /// `text` with every configured secret that is scrubbed by value replaced (see
    /// [`Config::to_redacted_toml`]).
    fn scrub_long_secrets(&self, text: &str) -> String {
        let secrets = self.secret_values();
        let (anywhere, whole): (Vec<_>, Vec<_>) = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .partition(|s| redact::is_scrubbed_by_value(s));
        redact::scrub_whole_strings(&redact::scrub_quoted(text, anywhere), &whole)
    }

    /// `text` with every configured secret value replaced by `***`: `graph.password`, the
    /// password in `graph.uri`, and the secret Kafka properties (and the secrets inside
    /// them). For messages of client libraries, which may quote what they were given.
    pub fn scrub_secrets(&self, text: &str) -> String {
        redact::scrub(text, self.secret_values())
    }

    /// Every configured secret value: `graph.password`, the password in `graph.uri`, the
    /// secret Kafka properties and the secrets inside them.
    fn secret_values(&self) -> Vec<String> {
        let mut secrets = self.graph.secret_values();
        secrets.extend(self.kafka.secret_values());
        secrets
    }

    /// Every key as a full path, in document order (`source.kind`, ..., `kafka.replication`),
    /// plus one path per Kafka property that is set.
    pub fn key_paths(&self) -> Vec<String> {
        self.document(false)
            .leaf_paths()
            .iter()
            .map(KeyPath::to_string)
            .collect()
    }

    pub(crate) fn document(&self, redact: bool) -> Document {
        let mut doc = Document::default();
        self.source.write(&mut doc);
        self.sink.write(&mut doc);
        self.dead_letter.write(&mut doc);
        self.pipeline.write(&mut doc);
        self.aggregate.write(&mut doc);
        self.snapshot.write(&mut doc);
        self.state.write(&mut doc);
        self.graph.write(&mut doc, redact);
        self.model.write(&mut doc);
        self.kafka.write(&mut doc, redact);
        self.admin.write(&mut doc);
        self.log.write(&mut doc);
        doc
    }

    pub(crate) fn read(mut root: Section<'_>) -> Config {
        let config = Config {
            source: SourceConfig::read(root.section("source")),
            sink: SinkConfig::read(root.section("sink")),
            dead_letter: DeadLetterConfig::read(root.section("dead_letter")),
            pipeline: PipelineConfig::read(root.section("pipeline")),
            aggregate: AggregateConfig::read(root.section("aggregate")),
            snapshot: SnapshotConfig::read(root.section("snapshot")),
            state: StateConfig::read(root.section("state")),
            graph: GraphConfig::read(root.section("graph")),
            model: ModelConfig::read(root.section("model")),
            kafka: KafkaConfig::read(root.section("kafka")),
            admin: AdminConfig::read(root.section("admin")),
            log: LogConfig::read(root.section("log")),
        };
        root.finish();
        config
    }

    pub(crate) fn check(&self, r: &mut Report) {
        self.source.check(r);
        self.sink.check(r);
        self.dead_letter.check(r);
        self.pipeline.check(r);
        self.aggregate.check(r);
        self.snapshot.check(r);
        self.state.check(r);
        self.graph.check(r);
        self.model.check(r);
        self.kafka.check(r);
    }
}

/// Like a derived `Debug`, with secrets hidden by name (their types) and by value, as in
/// [`Config::to_redacted_toml`].
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Fields<'a>(&'a Config);
        impl std::fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let c = self.0;
                f.debug_struct("Config")
                    .field("source", &c.source)
                    .field("sink", &c.sink)
                    .field("dead_letter", &c.dead_letter)
                    .field("pipeline", &c.pipeline)
                    .field("aggregate", &c.aggregate)
                    .field("snapshot", &c.snapshot)
                    .field("state", &c.state)
                    .field("graph", &c.graph)
                    .field("model", &c.model)
                    .field("kafka", &c.kafka)
                    .field("admin", &c.admin)
                    .field("log", &c.log)
                    .finish()
            }
        }
        let text = if f.alternate() {
            format!("{:#?}", Fields(self))
        } else {
            format!("{:?}", Fields(self))
        };
        f.write_str(&self.scrub_long_secrets(&text))
    }
}

#[cfg(test)]
mod tests;
