//! Log set-up for the binary: human-readable lines on stderr, level from `RUST_LOG`
//! (default `info`), so that stdout stays free for results when `--output -` is used.

/// Installs the global subscriber once. Safe to call more than once (tests).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
