//! `[log]`: how log lines are written.

use crate::document::Document;
use crate::read::Section;

choice_enum! {
    /// How log lines are written on standard error.
    #[derive(Default)]
    pub enum LogFormat {
        /// One human-readable line per event: time, level, message, fields.
        #[default]
        Text = "text",
        /// One JSON object per line with the same fields, for log collectors.
        Json = "json",
    }
}

/// `[log]`: log output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    /// Text or JSON lines; `--log-format` on the command line wins over it.
    pub format: LogFormat,
}

/// Text: the default run is usually read by a person at a terminal.
pub(crate) fn default_format() -> LogFormat {
    LogFormat::Text
}

impl LogConfig {
    pub(crate) fn read(mut s: Section<'_>) -> LogConfig {
        let config = LogConfig {
            format: s.choice("format", default_format()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("log");
        section.set("format", self.format.as_str());
    }
}
