//! Log set-up for the binary: lines on stderr, level from `RUST_LOG` (default `info`), so
//! that stdout stays free for results when `--output -` is used.
//!
//! Two formats with the same fields: `text` (time, level, message, then `key=value`
//! fields) for people, and `json` (one object per line: `timestamp`, `level`, `message`
//! and the same fields at the top level) for log collectors.

use std::io::IsTerminal;
use std::sync::OnceLock;

pub use riskstream_config::LogFormat;

/// The format installed by [`init`], for output that must follow it (a progress line or a
/// summary printed as text would break a stream of JSON lines).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the global subscriber once; later calls change nothing (tests call it more
/// than once).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a log file or collector are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FORMAT.set(format);
    }
}

/// The format of the installed subscriber; `text` before [`init`].
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Whether log lines are JSON: then stderr must carry nothing but JSON lines.
pub fn is_json() -> bool {
    format() == LogFormat::Json
}
