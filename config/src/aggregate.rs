//! `[aggregate]`: which entities get sliding-window aggregates, and over which windows.

use std::time::Duration;

use toml::Value;

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{KeyPath, Report, Section};

/// The most windows one key may have; each window is a ring of buckets per entity, so
/// memory grows with this number.
pub const MAX_WINDOWS: usize = 8;

/// The shortest window (`aggregate.windows`, `aggregate.distinct_window`): a window is a
/// ring of up to 8 buckets, and each bucket must span at least one millisecond.
pub const MIN_WINDOW: Duration = Duration::from_millis(8);

/// The longest window: far beyond any useful window, short enough that bucket arithmetic
/// on millisecond timestamps cannot overflow.
pub const MAX_WINDOW: Duration = Duration::from_secs(10 * 365 * 86_400);

fn window_range_problem(window: Duration) -> Option<String> {
    (window < MIN_WINDOW || window > MAX_WINDOW).then(|| {
        format!(
            "window must be from {:?} to {:?} (10 years), found {:?}; use a duration such as \"1h\"",
            format_duration(MIN_WINDOW),
            format_duration(MAX_WINDOW),
            format_duration(window)
        )
    })
}

choice_enum! {
    /// An entity of an event that gets its own window aggregates.
    pub enum AggregateKey {
        /// The paying account (`account_id`); decisions are per account, so it is required.
        Account = "account",
        /// The device used (`device_id`).
        Device = "device",
        /// The client IP address (`ip`).
        Ip = "ip",
        /// The merchant paid (`merchant_id`).
        Merchant = "merchant",
    }
}

/// `[aggregate]`: the keys and windows of the live aggregate state.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateConfig {
    /// Entities aggregated; no duplicates, always including `account`.
    pub keys: Vec<AggregateKey>,
    /// Sliding windows, strictly increasing, each longer than zero, at most [`MAX_WINDOWS`].
    pub windows: Vec<Duration>,
    /// The window over which distinct counterparties are counted.
    pub distinct_window: Duration,
    /// How far an event's `ts` may lie ahead of both the wall clock and the job's watermark
    /// (the newest event time accepted so far). An event further ahead becomes a dead letter of kind
    /// `future_timestamp` and touches no window: one far-future event would otherwise move
    /// its keys' windows to that time, so that every later event of the keys counts as
    /// late and the velocity features freeze. The first event of a run sets the
    /// watermark. Longer than zero, at most [`MAX_FUTURE_SKEW`].
    pub max_future_skew: Duration,
    /// How long a key (account, device, ip, merchant) may go without an event before its
    /// state is dropped, in event time: a key whose newest event is older than the
    /// watermark minus this is evicted, and if it comes back it starts again as a new key
    /// (first seen, previous event time, previous country and amount baseline forgotten;
    /// its windows are empty either way). Bounds memory by the keys active within this
    /// span instead of every key ever seen. At least the longest window (of `windows` and
    /// `distinct_window`), at most [`MAX_IDLE_KEY_TTL`]. Default: the longest window plus
    /// [`IDLE_KEY_MARGIN`] (48 h with the default windows).
    pub idle_key_ttl: Duration,
}

/// What the default `aggregate.idle_key_ttl` adds to the longest window: a day, so that a
/// key keeps its history (first seen, previous country) for a day beyond what any window
/// needs, and an event up to a day behind the watermark still meets the state it would
/// have met without eviction.
pub const IDLE_KEY_MARGIN: Duration = Duration::from_secs(86_400);

/// Upper bound of `aggregate.idle_key_ttl`: twice the longest window allowed.
pub const MAX_IDLE_KEY_TTL: Duration = Duration::from_secs(2 * 10 * 365 * 86_400);

/// The longest window among `windows` and `distinct_window`: the span a key's state must
/// cover.
pub fn longest_window(windows: &[Duration], distinct_window: Duration) -> Duration {
    windows.iter().copied().fold(distinct_window, Duration::max)
}

/// The default `aggregate.idle_key_ttl`: the longest window plus [`IDLE_KEY_MARGIN`].
pub fn default_idle_key_ttl(windows: &[Duration], distinct_window: Duration) -> Duration {
    longest_window(windows, distinct_window).saturating_add(IDLE_KEY_MARGIN)
}

/// Upper bound of `aggregate.max_future_skew`: beyond a year the check would no longer
/// catch a mistyped year.
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(366 * 86_400);

/// 1 hour: far more than clock drift between producers or a partition catching up, far less
/// than the 24 h window an odd timestamp would freeze.
pub(crate) fn default_max_future_skew() -> Duration {
    Duration::from_secs(3_600)
}

/// All four entities: the model's features cover each of them.
pub(crate) fn default_keys() -> Vec<AggregateKey> {
    AggregateKey::ALL.to_vec()
}

/// 1 minute, 1 hour, 24 hours: bursts, sessions and daily habits, as the model was trained.
pub(crate) fn default_windows() -> Vec<Duration> {
    vec![
        Duration::from_secs(60),
        Duration::from_secs(3_600),
        Duration::from_secs(86_400),
    ]
}

/// 1 hour: counterparties fanning out within an hour is the mule-account signal.
pub(crate) fn default_distinct_window() -> Duration {
    Duration::from_secs(3_600)
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            keys: default_keys(),
            windows: default_windows(),
            distinct_window: default_distinct_window(),
            max_future_skew: default_max_future_skew(),
            idle_key_ttl: default_idle_key_ttl(&default_windows(), default_distinct_window()),
        }
    }
}

impl AggregateConfig {
    pub(crate) fn read(mut s: Section<'_>) -> AggregateConfig {
        let keys = s.choices("keys", default_keys());
        let windows = s.durations("windows", default_windows());
        let distinct_window = s.duration("distinct_window", default_distinct_window());
        let max_future_skew = s.duration("max_future_skew", default_max_future_skew());
        let idle_key_ttl = s.duration(
            "idle_key_ttl",
            default_idle_key_ttl(&windows, distinct_window),
        );
        let config = AggregateConfig {
            keys,
            windows,
            distinct_window,
            max_future_skew,
            idle_key_ttl,
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("aggregate");
        let keys: Vec<Value> = self.keys.iter().map(|k| Value::from(k.as_str())).collect();
        section.set("keys", keys);
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|w| Value::String(format_duration(*w)))
            .collect();
        section.set("windows", windows);
        section.set("distinct_window", format_duration(self.distinct_window));
        section.set("max_future_skew", format_duration(self.max_future_skew));
        section.set("idle_key_ttl", format_duration(self.idle_key_ttl));
    }

    pub(crate) fn check(&self, r: &mut Report) {
        self.check_keys(r);
        self.check_windows(r);
        if let Some(problem) = window_range_problem(self.distinct_window) {
            r.invalid(&KeyPath::of("aggregate.distinct_window"), None, &problem);
        }
        r.require(
            !self.max_future_skew.is_zero() && self.max_future_skew <= MAX_FUTURE_SKEW,
            "aggregate.max_future_skew",
            &format!(
                "longer than zero and at most {:?}",
                format_duration(MAX_FUTURE_SKEW)
            ),
            format!("{:?}", format_duration(self.max_future_skew)),
            format_duration(default_max_future_skew()),
        );
        let longest = longest_window(&self.windows, self.distinct_window);
        // A window out of range is reported by its own key; comparing with it says nothing.
        let windows_in_range = longest <= MAX_WINDOW;
        r.require(
            !windows_in_range
                || (self.idle_key_ttl >= longest && self.idle_key_ttl <= MAX_IDLE_KEY_TTL),
            "aggregate.idle_key_ttl",
            &format!(
                "at least the longest window ({:?}, of aggregate.windows and aggregate.distinct_window) and at most {:?}",
                format_duration(longest),
                format_duration(MAX_IDLE_KEY_TTL)
            ),
            format!("{:?}", format_duration(self.idle_key_ttl)),
            format_duration(default_idle_key_ttl(&self.windows, self.distinct_window)),
        );
    }

    fn check_keys(&self, r: &mut Report) {
        let path = KeyPath::of("aggregate.keys");
        for (i, key) in self.keys.iter().enumerate() {
            if self.keys[..i].contains(key) {
                r.invalid(
                    &path,
                    Some(i),
                    &format!("\"{key}\" is listed twice; list each key once"),
                );
            }
        }
        let names: Vec<String> = self.keys.iter().map(|k| format!("\"{k}\"")).collect();
        r.require(
            self.keys.contains(&AggregateKey::Account),
            "aggregate.keys",
            "a list that includes \"account\" (decisions are per account)",
            format!("[{}]", names.join(", ")),
            default_keys()
                .iter()
                .map(|k| Value::from(k.as_str()))
                .collect::<Vec<_>>(),
        );
    }

    fn check_windows(&self, r: &mut Report) {
        let path = KeyPath::of("aggregate.windows");
        let example: Vec<Value> = default_windows()
            .iter()
            .map(|w| Value::String(format_duration(*w)))
            .collect();
        r.require(
            (1..=MAX_WINDOWS).contains(&self.windows.len()),
            "aggregate.windows",
            &format!("a list of 1 to {MAX_WINDOWS} windows"),
            format!("{} windows", self.windows.len()),
            example,
        );
        for (i, window) in self.windows.iter().enumerate() {
            if let Some(problem) = window_range_problem(*window) {
                r.invalid(&path, Some(i), &problem);
            } else if i > 0 && *window <= self.windows[i - 1] {
                r.invalid(
                    &path,
                    Some(i),
                    &format!(
                        "windows must be strictly increasing, but {:?} follows {:?}; list them from shortest to longest, like [\"1m\", \"1h\", \"24h\"]",
                        format_duration(*window),
                        format_duration(self.windows[i - 1])
                    ),
                );
            }
        }
    }
}
