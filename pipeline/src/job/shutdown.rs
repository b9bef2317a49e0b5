//! Signals a process running the job reacts to, as values the caller passes to the job:
//! SIGINT and SIGTERM become the shutdown future of [`Job::run`](super::Job::run), SIGHUP
//! becomes a reload request. The job itself installs no handler, so an embedding program
//! (or a test) decides what stops it.

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::reload::{Reload, ThresholdOverrides};

/// Resolves at the first SIGINT or SIGTERM (Ctrl-C only, off Unix). The handlers are
/// installed when this is called, not when the future is first polled, so a signal that
/// arrives while the job is still being built is not lost, and the process is not killed
/// by it. Call it inside the tokio runtime.
pub fn signal_shutdown() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for {name}; it does not stop the job");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        // `None` means the runtime is going away: no signal will come.
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGHUP: re-reads the threshold keys of the configuration at `config_path` (the same
/// defaults and environment overrides as at start) and asks the job to reload its model
/// directory now. A configuration that no longer loads is reported and the previous
/// thresholds stay. Ends when the job stops taking requests. `overrides` are the
/// thresholds the job started with; `reloads` is [`Job::reloads`](super::Job::reloads).
pub fn reload_on_hangup(
    config_path: Option<PathBuf>,
    overrides: ThresholdOverrides,
    reloads: mpsc::Sender<Reload>,
) {
    #[cfg(unix)]
    {
        use super::build::threshold_overrides;
        use riskstream_config::Config;
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; the model reloads only when its files change");
                return;
            }
        };
        let mut overrides = overrides;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = reloads.closed() => break,
                    received = hangup.recv() => if received.is_none() { break },
                }
                match Config::load(config_path.as_deref()) {
                    Ok(config) => overrides = threshold_overrides(&config),
                    Err(err) => tracing::error!(
                        error = %err,
                        "SIGHUP: the configuration does not load; keeping the previous thresholds"
                    ),
                }
                tracing::info!("SIGHUP: reloading the model and thresholds");
                if reloads.send(Reload::Now(overrides)).await.is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (config_path, overrides, reloads);
}
