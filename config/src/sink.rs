//! `[sink]` and `[dead_letter]`: where results and rejected inputs go.

use crate::document::Document;
use crate::read::{whole_value, Report, Section};

choice_enum! {
    /// Where a stream of output records is written.
    pub enum SinkKind {
        /// A JSONL file at the section's `path`, created with its parent directories.
        File = "file",
        /// Standard output, one JSON object per line.
        Stdout = "stdout",
        /// A Kafka topic (`kafka.results_topic` or `kafka.dead_letter_topic`).
        Kafka = "kafka",
    }
}

/// `[sink]`: where the one result per event is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Where results go.
    pub kind: SinkKind,
    /// The JSONL file written when `kind` is `file`.
    pub path: String,
}

/// `[dead_letter]`: where inputs that could not be decoded are delivered, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterConfig {
    /// Where dead letters go.
    pub kind: SinkKind,
    /// The JSONL file written when `kind` is `file`.
    pub path: String,
    /// How many bytes of an oversize input are kept in its dead letter: enough to identify
    /// it, bounded so that a huge input does not make a huge dead letter.
    pub max_payload_bytes: usize,
}

/// A file, so that the default run leaves its results on disk to inspect.
pub(crate) fn default_sink_kind() -> SinkKind {
    SinkKind::File
}

/// Under `out/`, next to the dead letters, relative to the working directory.
pub(crate) fn default_sink_path() -> String {
    "out/results.jsonl".to_owned()
}

/// A file, like the results, so nothing rejected is lost in a default run.
pub(crate) fn default_dead_letter_kind() -> SinkKind {
    SinkKind::File
}

/// Under `out/`, next to the results.
pub(crate) fn default_dead_letter_path() -> String {
    "out/dead-letters.jsonl".to_owned()
}

/// 64 KiB: identifies any event-like input while keeping a dead letter far below Kafka's
/// default message size limit.
pub(crate) fn default_max_payload_bytes() -> usize {
    64 * 1024
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: default_sink_kind(),
            path: default_sink_path(),
        }
    }
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            kind: default_dead_letter_kind(),
            path: default_dead_letter_path(),
            max_payload_bytes: default_max_payload_bytes(),
        }
    }
}

impl SinkConfig {
    pub(crate) fn read(mut s: Section<'_>) -> SinkConfig {
        let config = SinkConfig {
            kind: s.choice("kind", default_sink_kind()),
            path: s.string("path", default_sink_path()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("sink");
        section.set("kind", self.kind.as_str());
        section.set("path", self.path.as_str());
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            self.kind != SinkKind::File || !self.path.trim().is_empty(),
            "sink.path",
            "the file to write when `sink.kind` is \"file\"",
            "nothing",
            default_sink_path(),
        );
    }
}

impl DeadLetterConfig {
    pub(crate) fn read(mut s: Section<'_>) -> DeadLetterConfig {
        let config = DeadLetterConfig {
            kind: s.choice("kind", default_dead_letter_kind()),
            path: s.string("path", default_dead_letter_path()),
            max_payload_bytes: s.whole("max_payload_bytes", default_max_payload_bytes()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("dead_letter");
        section.set("kind", self.kind.as_str());
        section.set("path", self.path.as_str());
        section.set("max_payload_bytes", whole_value(self.max_payload_bytes));
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            self.kind != SinkKind::File || !self.path.trim().is_empty(),
            "dead_letter.path",
            "the file to write when `dead_letter.kind` is \"file\"",
            "nothing",
            default_dead_letter_path(),
        );
    }
}
