//! What a run did: the counters at the end, the latency percentiles and the graph's share,
//! in which every input is accounted for as a result or a dead letter.

use std::path::Path;
use std::sync::Arc;

use hdrhistogram::Histogram;
use riskstream_graph::CacheStats;

use crate::metrics::Metrics;

/// What a run did, printed at the end and optionally written as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub inputs: u64,
    pub results: u64,
    pub dead_letters: u64,
    pub dead_letters_by_kind: Vec<(String, u64)>,
    pub decisions: Decisions,
    pub late_events: u64,
    /// Keys dropped after `aggregate.idle_key_ttl` without an event.
    pub keys_evicted: u64,
    pub snapshots: u64,
    pub graph_unavailable: u64,
    /// Time each micro-batch waited for graph answers (bounded by graph.batch_deadline).
    pub graph_wait_ms: Latency,
    /// The graph cache's counters, when the Neo4j graph is cached.
    pub graph_cache: Option<GraphCacheSummary>,
    pub seconds: f64,
    pub events_per_second: f64,
    pub latency_ms: Latency,
    pub results_path: String,
    pub dead_letter_path: String,
    /// Models swapped in while running.
    pub model_swaps: u64,
    /// Candidate models rejected while running.
    pub model_rejections: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Decisions {
    pub allow: u64,
    pub review: u64,
    pub block: u64,
}

/// What the graph cache did during a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GraphCacheSummary {
    pub hits: u64,
    pub misses: u64,
    pub shared_waits: u64,
    pub expired: u64,
    pub evictions: u64,
    /// Answers stored ahead of demand by the warm-up and its refreshes.
    pub preloaded: u64,
    pub hit_ratio: f64,
}

impl GraphCacheSummary {
    fn of(stats: &CacheStats) -> Self {
        GraphCacheSummary {
            hits: stats.hits(),
            misses: stats.misses(),
            shared_waits: stats.shared_waits(),
            expired: stats.expired(),
            evictions: stats.evictions(),
            preloaded: stats.preloaded(),
            hit_ratio: stats.hit_ratio(),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds, in milliseconds; zeros when it is empty.
    pub fn of_micros(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

impl RunSummary {
    /// Every input is accounted for: one result or one dead letter each.
    pub fn is_balanced(&self) -> bool {
        self.inputs == self.results + self.dead_letters
    }

    /// Writes the summary as pretty-printed JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }
}

/// The figures that go into a summary besides the metrics.
pub(super) struct Measured<'a> {
    /// Read → delivered, in microseconds.
    pub latency: &'a Histogram<u64>,
    /// Per-batch graph wait, in microseconds.
    pub graph_waits: &'a Histogram<u64>,
    pub graph_cache: Option<&'a Arc<CacheStats>>,
    pub seconds: f64,
    pub results_path: String,
    pub dead_letter_path: String,
}

/// The summary of a finished run from its metrics and measurements.
pub(super) fn summarize(metrics: &Metrics, measured: Measured<'_>) -> RunSummary {
    let results = Metrics::get(&metrics.results);
    let dead_letters = Metrics::get(&metrics.dead_letters);
    RunSummary {
        inputs: Metrics::get(&metrics.inputs),
        results,
        dead_letters,
        dead_letters_by_kind: metrics
            .dead_letters_by_kind()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        decisions: Decisions {
            allow: Metrics::get(&metrics.decisions[0]),
            review: Metrics::get(&metrics.decisions[1]),
            block: Metrics::get(&metrics.decisions[2]),
        },
        late_events: Metrics::get(&metrics.late_events),
        keys_evicted: Metrics::get(&metrics.keys_evicted),
        snapshots: Metrics::get(&metrics.snapshots),
        graph_unavailable: Metrics::get(&metrics.graph_unavailable),
        graph_wait_ms: Latency::of_micros(measured.graph_waits),
        graph_cache: measured
            .graph_cache
            .map(|stats| GraphCacheSummary::of(stats)),
        seconds: measured.seconds,
        events_per_second: (results + dead_letters) as f64 / measured.seconds.max(1e-9),
        latency_ms: Latency::of_micros(measured.latency),
        results_path: measured.results_path,
        dead_letter_path: measured.dead_letter_path,
        model_swaps: Metrics::get(&metrics.model_swaps),
        model_rejections: Metrics::get(&metrics.model_rejections),
    }
}
