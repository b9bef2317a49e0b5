//! What the aggregator is asked to keep, and the checks that make a bad request fail at
//! start-up with the config key it came from rather than mid-stream.

use std::time::Duration;

use riskstream_graph::EntityKind;

use super::values::MAX_WINDOWS;
use super::window::{DISTINCT_BUCKETS, WINDOW_BUCKETS};

/// Everything the aggregator needs from configuration. The job maps the `aggregate`
/// section of the config file onto this struct; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateOptions {
    /// Which of an event's entities get their own aggregates (`aggregate.kinds`).
    /// Default: account, device, ip, merchant.
    pub kinds: Vec<EntityKind>,
    /// Sliding windows by event time, shortest first, at most [`MAX_WINDOWS`]
    /// (`aggregate.windows`). Default: 1 min, 1 h, 24 h.
    pub windows: Vec<Duration>,
    /// Window over which distinct counterparties are counted (`aggregate.distinct_window`).
    /// Default: 1 h.
    pub distinct_window: Duration,
    /// Threads that apply one batch, each owning a fixed share of the keys
    /// (`aggregate.workers`). 1 applies on the calling thread. Default: 1.
    pub workers: usize,
    /// Weight of the newest amount in each key's exponentially weighted amount mean and
    /// variance, in (0, 1] (`aggregate.amount_ew_alpha`). Default 0.05: about the last 20
    /// events of the key dominate.
    pub amount_ew_alpha: f64,
    /// Event-time interval at whose boundaries the merchant amount baselines that the
    /// scorer reads are cut (`snapshot.interval`). An event sees each merchant's baseline as
    /// it stood at the last boundary (a multiple of the interval) before the event, so the
    /// value depends only on event times and per-key order, never on batch sizes or
    /// wall-clock timing: a replay of the same input reproduces it. Default: 2 s.
    pub baseline_interval: Duration,
    /// How far an event may lie ahead of the watermark, the newest event time admitted so
    /// far (`aggregate.max_future_skew`); see [`Aggregator::admit`](super::Aggregator::admit).
    /// Default: 1 h.
    pub max_future_skew: Duration,
    /// How long a key may go without an event, in event time, before it is forgotten
    /// (`aggregate.idle_key_ttl`); see "Idle keys" in the module docs. At least the
    /// longest window (of `windows` and `distinct_window`). `None`: the longest window
    /// plus a day ([`riskstream_config::IDLE_KEY_MARGIN`]), the configuration's default.
    pub idle_key_ttl: Option<Duration>,
}

/// The most workers one aggregator starts; more would only add scheduling overhead since
/// every worker scans the whole batch. The configuration's limit, so `config check`
/// applies the same rule.
pub const MAX_WORKERS: usize = riskstream_config::MAX_WORKERS;

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions {
            kinds: default_kinds(),
            windows: default_windows(),
            distinct_window: default_distinct_window(),
            workers: 1,
            amount_ew_alpha: default_amount_ew_alpha(),
            baseline_interval: default_baseline_interval(),
            max_future_skew: default_max_future_skew(),
            idle_key_ttl: None,
        }
    }
}

/// All four entity kinds an event can name.
pub fn default_kinds() -> Vec<EntityKind> {
    vec![
        EntityKind::Account,
        EntityKind::Device,
        EntityKind::Ip,
        EntityKind::Merchant,
    ]
}

/// 1 min, 1 h, 24 h: velocity bursts, session-scale and daily behaviour (DESIGN.md).
pub fn default_windows() -> Vec<Duration> {
    vec![
        Duration::from_secs(60),
        Duration::from_secs(3600),
        Duration::from_secs(86_400),
    ]
}

/// 1 h: the fan-out horizon for mule-account patterns.
pub fn default_distinct_window() -> Duration {
    Duration::from_secs(3600)
}

/// 2 s: the default `snapshot.interval`, so baselines lag the stream about as much as a
/// snapshot does.
pub fn default_baseline_interval() -> Duration {
    Duration::from_secs(2)
}

/// 1 h: the default `aggregate.max_future_skew`, far more than clock drift between
/// producers, far less than the 24 h window one odd timestamp would otherwise freeze.
pub fn default_max_future_skew() -> Duration {
    Duration::from_secs(3600)
}

/// 0.05: roughly the last 20 events of a key dominate its amount baseline.
pub fn default_amount_ew_alpha() -> f64 {
    0.05
}

/// Why a set of [`AggregateOptions`] cannot be used. Messages name the config key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AggregateError {
    #[error("aggregate.kinds is empty: list at least one of account, device, ip, merchant")]
    NoKinds,
    #[error("aggregate.kinds lists {kind} twice: list each kind once")]
    DuplicateKind { kind: &'static str },
    #[error("aggregate.windows is empty: configure at least one window, e.g. [\"1m\", \"1h\"]")]
    NoWindows,
    #[error("aggregate.windows has {count} windows; at most {max} are supported")]
    TooManyWindows { count: usize, max: usize },
    #[error(
        "aggregate.windows[{index}] ({current:?}) is not longer than aggregate.windows[{previous_index}] ({previous:?}): list windows shortest first, without repeats",
        previous_index = .index - 1
    )]
    WindowsNotIncreasing {
        index: usize,
        previous: Duration,
        current: Duration,
    },
    #[error("{key} ({window:?}) is outside the supported range {min_ms} ms to 10 years")]
    WindowOutOfRange {
        key: String,
        window: Duration,
        min_ms: u64,
    },
    #[error("aggregate.workers is {workers}: use 1 to {max}")]
    WorkersOutOfRange { workers: usize, max: usize },
    #[error("aggregate.amount_ew_alpha is {alpha}: use a value in (0, 1], e.g. 0.05")]
    AlphaOutOfRange { alpha: f64 },
    #[error(
        "aggregate.max_future_skew ({skew:?}) is outside the supported range 1 ms to 10 years; e.g. \"1h\""
    )]
    SkewOutOfRange { skew: Duration },
    #[error(
        "aggregate.idle_key_ttl ({ttl:?}) is shorter than the longest window ({longest:?}): a key's state must outlive its windows; raise it or leave it unset"
    )]
    IdleTtlTooShort { ttl: Duration, longest: Duration },
    #[error("could not start {workers} aggregate worker threads: {reason}")]
    WorkerPool { workers: usize, reason: String },
}

/// Longest accepted window: far beyond any useful window, small enough that bucket
/// arithmetic on millisecond timestamps cannot overflow. The configuration's limit.
const MAX_WINDOW: Duration = riskstream_config::MAX_WINDOW;

// `config check` accepts windows from the configuration's shortest one; every ring must
// still get at least one millisecond per bucket.
const _: () = assert!(
    riskstream_config::MIN_WINDOW.as_millis() >= WINDOW_BUCKETS as u128
        && riskstream_config::MIN_WINDOW.as_millis() >= DISTINCT_BUCKETS as u128
);

impl AggregateOptions {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), AggregateError> {
        if self.kinds.is_empty() {
            return Err(AggregateError::NoKinds);
        }
        for (index, kind) in self.kinds.iter().enumerate() {
            if self.kinds[..index].contains(kind) {
                return Err(AggregateError::DuplicateKind {
                    kind: kind.as_str(),
                });
            }
        }
        if self.windows.is_empty() {
            return Err(AggregateError::NoWindows);
        }
        if self.windows.len() > MAX_WINDOWS {
            return Err(AggregateError::TooManyWindows {
                count: self.windows.len(),
                max: MAX_WINDOWS,
            });
        }
        for (index, window) in self.windows.iter().enumerate() {
            check_window_range(format!("aggregate.windows[{index}]"), *window)?;
            if index > 0 && *window <= self.windows[index - 1] {
                return Err(AggregateError::WindowsNotIncreasing {
                    index,
                    previous: self.windows[index - 1],
                    current: *window,
                });
            }
        }
        check_window_range(
            "aggregate.distinct_window".to_string(),
            self.distinct_window,
        )?;
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(AggregateError::WorkersOutOfRange {
                workers: self.workers,
                max: MAX_WORKERS,
            });
        }
        if self.max_future_skew < Duration::from_millis(1) || self.max_future_skew > MAX_WINDOW {
            return Err(AggregateError::SkewOutOfRange {
                skew: self.max_future_skew,
            });
        }
        let longest = riskstream_config::longest_window(&self.windows, self.distinct_window);
        if let Some(ttl) = self.idle_key_ttl.filter(|ttl| *ttl < longest) {
            return Err(AggregateError::IdleTtlTooShort { ttl, longest });
        }
        if !(self.amount_ew_alpha > 0.0 && self.amount_ew_alpha <= 1.0) {
            return Err(AggregateError::AlphaOutOfRange {
                alpha: self.amount_ew_alpha,
            });
        }
        Ok(())
    }
}

impl AggregateOptions {
    /// The idle-key TTL in effect: the configured one, or the longest window plus
    /// [`riskstream_config::IDLE_KEY_MARGIN`].
    pub fn effective_idle_key_ttl(&self) -> Duration {
        self.idle_key_ttl.unwrap_or_else(|| {
            riskstream_config::default_idle_key_ttl(&self.windows, self.distinct_window)
        })
    }
}

/// A window must give every bucket at least one millisecond.
fn check_window_range(key: String, window: Duration) -> Result<(), AggregateError> {
    let min_ms = WINDOW_BUCKETS.max(DISTINCT_BUCKETS) as u64;
    if window < Duration::from_millis(min_ms) || window > MAX_WINDOW {
        return Err(AggregateError::WindowOutOfRange {
            key,
            window,
            min_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(AggregateOptions::default().validate(), Ok(()));
    }

    #[test]
    fn windows_out_of_order_name_the_offending_index() {
        let options = AggregateOptions {
            windows: vec![Duration::from_secs(3600), Duration::from_secs(60)],
            ..AggregateOptions::default()
        };
        let error = options.validate().unwrap_err();
        assert_eq!(
            error,
            AggregateError::WindowsNotIncreasing {
                index: 1,
                previous: Duration::from_secs(3600),
                current: Duration::from_secs(60),
            }
        );
        let message = error.to_string();
        assert!(message.contains("aggregate.windows[1]"), "{message}");
        assert!(message.contains("aggregate.windows[0]"), "{message}");
    }

    #[test]
    fn empty_and_oversized_window_lists_are_rejected() {
        let empty = AggregateOptions {
            windows: vec![],
            ..AggregateOptions::default()
        };
        assert_eq!(empty.validate(), Err(AggregateError::NoWindows));
        let nine = AggregateOptions {
            windows: (1..=9).map(Duration::from_secs).collect(),
            ..AggregateOptions::default()
        };
        assert_eq!(
            nine.validate(),
            Err(AggregateError::TooManyWindows { count: 9, max: 8 })
        );
    }

    #[test]
    fn too_short_distinct_window_names_its_key() {
        let options = AggregateOptions {
            distinct_window: Duration::from_millis(3),
            ..AggregateOptions::default()
        };
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains("aggregate.distinct_window"), "{message}");
    }

    #[test]
    fn zero_workers_duplicate_kinds_and_bad_alpha_are_rejected() {
        let zero = AggregateOptions {
            workers: 0,
            ..AggregateOptions::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(AggregateError::WorkersOutOfRange { workers: 0, .. })
        ));
        let twice = AggregateOptions {
            kinds: vec![EntityKind::Ip, EntityKind::Ip],
            ..AggregateOptions::default()
        };
        assert_eq!(
            twice.validate(),
            Err(AggregateError::DuplicateKind { kind: "ip" })
        );
        let alpha = AggregateOptions {
            amount_ew_alpha: 0.0,
            ..AggregateOptions::default()
        };
        assert!(matches!(
            alpha.validate(),
            Err(AggregateError::AlphaOutOfRange { .. })
        ));
        let no_skew = AggregateOptions {
            max_future_skew: Duration::ZERO,
            ..AggregateOptions::default()
        };
        let message = no_skew.validate().unwrap_err().to_string();
        assert!(message.contains("aggregate.max_future_skew"), "{message}");
        let nan = AggregateOptions {
            amount_ew_alpha: f64::NAN,
            ..AggregateOptions::default()
        };
        assert!(nan.validate().is_err());
    }
}
