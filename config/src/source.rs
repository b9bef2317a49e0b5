//! `[source]` and `[source.generator]`: where events come from.

use crate::document::Document;
use crate::read::{whole_value, Report, Section};

/// The fewest generator accounts (`source.generator.accounts`): fraud rings, mule chains
/// and flagged accounts must fit among ordinary accounts.
pub const GENERATOR_MIN_ACCOUNTS: u64 = 100;

/// The most generator accounts: the generated world is built in memory.
pub const GENERATOR_MAX_ACCOUNTS: u64 = 10_000_000;

/// The earliest generator start, 1970-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const GENERATOR_MIN_START_MS: i64 = 0;

/// The latest generator start, 8000-01-01T00:00:00Z, in milliseconds since the Unix epoch:
/// the generated span must stay representable.
pub const GENERATOR_MAX_START_MS: i64 = 190_288_396_800_000;

choice_enum! {
    /// Where the job reads its events.
    pub enum SourceKind {
        /// The built-in synthetic generator (`[source.generator]`); needs no services.
        Generator = "generator",
        /// A JSONL file, one event per line (`source.path`).
        File = "file",
        /// Kafka topics (`kafka.input_topics`).
        Kafka = "kafka",
    }
}

/// `[source]`: which source to read and how large one input may be.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Which source to read.
    pub kind: SourceKind,
    /// The JSONL file read when `kind` is `file`.
    pub path: String,
    /// Inputs longer than this many bytes become dead letters instead of being decoded.
    pub max_event_bytes: usize,
    /// The built-in generator, read when `kind` is `generator`.
    pub generator: GeneratorConfig,
}

/// `[source.generator]`: the synthetic event stream, reproducible by seed.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Seed of the generator; the same seed gives the same events and graph.
    pub seed: u64,
    /// How many events the generator emits before the source ends.
    pub events: u64,
    /// How many distinct accounts the events are spread over, from
    /// [`GENERATOR_MIN_ACCOUNTS`] to [`GENERATOR_MAX_ACCOUNTS`].
    pub accounts: u64,
    /// Share of events that belong to a fraud pattern, in `[0, 0.5]`.
    pub fraud_rate: f64,
    /// Event time of the first event, RFC 3339 with a time zone, from 1970-01-01T00:00:00Z
    /// to 8000-01-01T00:00:00Z.
    pub start: String,
}

/// The generator, so that `riskstream run` with no configuration works without any service.
pub(crate) fn default_source_kind() -> SourceKind {
    SourceKind::Generator
}

/// Empty: only `kind = "file"` reads a path, and then it must be given.
pub(crate) fn default_source_path() -> String {
    String::new()
}

/// 1 MiB: far above a real transaction event (well under 1 KiB), low enough that one
/// runaway line cannot exhaust memory. Kafka's default message size limit is about the same.
pub(crate) fn default_max_event_bytes() -> usize {
    1 << 20
}

/// 42, a fixed seed so that default runs are reproducible.
pub(crate) fn default_seed() -> u64 {
    42
}

/// One million events: a few seconds of work, long enough for steady-state figures.
pub(crate) fn default_events() -> u64 {
    1_000_000
}

/// 20 000 accounts: enough that per-account windows are sparse, as in production.
pub(crate) fn default_accounts() -> u64 {
    20_000
}

/// 2 %: fraud is rare in real payment streams; this keeps enough positives to train on.
pub(crate) fn default_fraud_rate() -> f64 {
    0.02
}

/// A fixed date so that generated event times, and therefore windows, are reproducible.
pub(crate) fn default_start() -> String {
    "2026-11-01T00:00:00Z".to_owned()
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: default_source_kind(),
            path: default_source_path(),
            max_event_bytes: default_max_event_bytes(),
            generator: GeneratorConfig::default(),
        }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: default_seed(),
            events: default_events(),
            accounts: default_accounts(),
            fraud_rate: default_fraud_rate(),
            start: default_start(),
        }
    }
}

impl SourceConfig {
    pub(crate) fn read(mut s: Section<'_>) -> SourceConfig {
        let config = SourceConfig {
            kind: s.choice("kind", default_source_kind()),
            path: s.string("path", default_source_path()),
            max_event_bytes: s.whole("max_event_bytes", default_max_event_bytes()),
            generator: GeneratorConfig::read(s.section("generator")),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("source");
        section.set("kind", self.kind.as_str());
        section.set("path", self.path.as_str());
        section.set("max_event_bytes", whole_value(self.max_event_bytes));
        self.generator.write(doc);
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            self.kind != SourceKind::File || !self.path.trim().is_empty(),
            "source.path",
            "the JSONL file to read when `source.kind` is \"file\"",
            "nothing",
            "events.jsonl",
        );
        r.require(
            self.max_event_bytes > 0,
            "source.max_event_bytes",
            "at least 1",
            self.max_event_bytes,
            whole_value(default_max_event_bytes()),
        );
        self.generator.check(r);
    }
}

impl GeneratorConfig {
    fn read(mut s: Section<'_>) -> GeneratorConfig {
        let config = GeneratorConfig {
            seed: s.whole("seed", default_seed()),
            events: s.whole("events", default_events()),
            accounts: s.whole("accounts", default_accounts()),
            fraud_rate: s.number("fraud_rate", default_fraud_rate()),
            start: s.timestamp("start", default_start()),
        };
        s.finish();
        config
    }

    fn write(&self, doc: &mut Document) {
        let section = doc.section("source.generator");
        section.set("seed", whole_value(self.seed));
        section.set("events", whole_value(self.events));
        section.set("accounts", whole_value(self.accounts));
        section.set("fraud_rate", self.fraud_rate);
        section.set("start", self.start.as_str());
    }

    fn check(&self, r: &mut Report) {
        r.require(
            (GENERATOR_MIN_ACCOUNTS..=GENERATOR_MAX_ACCOUNTS).contains(&self.accounts),
            "source.generator.accounts",
            &format!(
                "between {GENERATOR_MIN_ACCOUNTS} (so fraud rings, mule chains and flagged \
                 accounts fit among ordinary accounts) and {GENERATOR_MAX_ACCOUNTS} (the world \
                 is built in memory)"
            ),
            self.accounts,
            whole_value(default_accounts()),
        );
        r.require(
            self.events > 0,
            "source.generator.events",
            "at least 1",
            self.events,
            whole_value(default_events()),
        );
        r.require(
            (0.0..=0.5).contains(&self.fraud_rate),
            "source.generator.fraud_rate",
            "between 0 and 0.5",
            self.fraud_rate,
            default_fraud_rate(),
        );
        let start_ms = self
            .start
            .parse::<toml::value::Datetime>()
            .ok()
            .and_then(|d| epoch_millis(&d));
        r.require(
            start_ms.is_some_and(|ms| (GENERATOR_MIN_START_MS..=GENERATOR_MAX_START_MS).contains(&ms)),
            "source.generator.start",
            "an RFC 3339 timestamp with a time zone from 1970-01-01T00:00:00Z to 8000-01-01T00:00:00Z",
            format!("{:?}", self.start),
            default_start(),
        );
    }
}

/// Milliseconds since the Unix epoch of a full date-time with an offset; `None` when the
/// date, the time or the offset is missing.
fn epoch_millis(d: &toml::value::Datetime) -> Option<i64> {
    let (date, time, offset) = (d.date?, d.time?, d.offset?);
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (year, month) = (i64::from(date.year), i64::from(date.month));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + i64::from(date.day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_minutes * 60;
    Some(seconds * 1_000 + i64::from(time.nanosecond.unwrap_or(0) / 1_000_000))
}
