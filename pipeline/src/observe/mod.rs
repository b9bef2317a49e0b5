//! Observability of a running job: its events, its Prometheus metrics, its readiness, and
//! the admin HTTP endpoint that serves them.
//!
//! * [`events`]: one struct per job event (input read, results delivered, dead-lettered,
//!   late events, snapshot published, model loaded / swapped / rejected, graph status
//!   change, cache warm-up, rebalance, stage timing). Each event's `emit` writes its log
//!   line and its counters together, so the two never disagree. Per-event and per-batch
//!   events log at `debug`/`trace` only: nothing per event at the default `info` level.
//! * [`Observer`]: the job's metrics registry and the values behind it. `/metrics` is
//!   rendered from it ([`Observer::encode`]).
//! * [`Readiness`]: a few atomics the job sets; `/readyz` reads them.
//! * [`admin`]: the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`,
//!   `/snapshot/{kind}/{id}`) on `admin.listen`.
//! * [`kafka_stats`]: consumer lag and producer queue from librdkafka's statistics.
//!
//! # Why `prometheus-client`
//!
//! The `metrics` facade installs one process-global recorder: two jobs in one process (the
//! in-process tests, a replay next to a run) would count into the same series, and a test
//! could not read its own job's numbers. `prometheus-client` has a [`Registry`] value
//! instead, owned here by each [`Observer`], and the official text encoder. Its own
//! `Histogram` takes a mutex on every observation that a scrape also takes, and its label
//! families look labels up in a locked map; neither is acceptable on the hot path. So the
//! values are ours: plain atomics (the existing [`Metrics`] counters that the progress line
//! and the run summary read, plus the fixed-bucket [`AtomicHistogram`]s and gauges here),
//! every labelled series resolved to its own atomic when the observer is built (one per
//! dead-letter kind, decision, stage). One [`Collector`] reads them when `/metrics` is
//! scraped. Counting costs one relaxed atomic add; a scrape never blocks the pipeline.
//!
//! # Wiring (for the job)
//!
//! ```text
//! let metrics = Arc::new(Metrics::default());
//! let observer = Observer::new(metrics.clone(), config.source.kind.as_str());
//! let admin = match config.admin.listen {                 // before the slow start-up work,
//!     Some(addr) => Some(admin::serve(addr, observer.clone(), shutdown).await?), // so a port
//!     None => None,                                       // in use fails at once
//! };
//! observer.attach_aggregates(engine.clone());             // Arc<Engine>: /snapshot, keys
//! observer.attach_graph_cache(stats);                     // when the graph is cached
//! ModelLoaded { version }.emit(&observer);                // readiness: model loaded
//! observer.readiness().set_graph(GraphHealth::Answering); // or from the graph's health
//! // per batch: InputRead, DeadLettered, LateEvents, StageTimed, ResultsDelivered, ...
//! // Kafka: ClientContext::stats_raw -> observer.record_consumer_stats(json)
//! ```

pub mod admin;
pub mod events;
pub mod kafka_stats;
mod prometheus;
mod readiness;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use riskstream_graph::CacheStats;

use crate::aggregate::{Aggregator, Snapshots};
use crate::engine::Engine;
use crate::metrics::Metrics;

pub use events::Emit;
pub use kafka_stats::PartitionLag;

/// Where one partition the Kafka source aligns stands in event time: the timestamp (ms
/// since the Unix epoch) of its next record, or of the last it handed out when it holds
/// none; `None` before its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEventTime {
    pub topic: String,
    pub partition: i32,
    pub event_time_ms: Option<i64>,
}
pub use prometheus::{AtomicHistogram, Stage, LATENCY_BUCKETS, NAMES, STAGE_BUCKETS};
pub use readiness::{GraphHealth, NotReady, Readiness};

/// The aggregate state of a running job, read by `/snapshot/{kind}/{id}` and by the
/// snapshot and key gauges. Implemented by [`Engine`]; anything holding a real
/// [`Aggregator`] and its [`Snapshots`] can implement it.
pub trait AggregateView: Send + Sync + 'static {
    /// The live aggregator (its counters are read, never its state).
    fn aggregator(&self) -> &Aggregator;
    /// The published snapshots; only [`Snapshots::load`] is used, which never locks.
    fn snapshots(&self) -> &Snapshots;
}

impl AggregateView for Engine {
    fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
}

/// The metrics registry of one job and every value `/metrics` shows.
///
/// Built once per job ([`Observer::new`]) and shared as `Arc<Observer>` by the stages,
/// the events and the admin endpoint. Parts of the job that exist only later (the engine,
/// the graph cache) are attached when they do; until then their series are left out.
pub struct Observer {
    registry: Registry,
    values: Arc<Values>,
}

/// The values behind the series; the registry's collector holds the same `Arc`.
pub(crate) struct Values {
    /// The job's counters, shared with the progress line and the run summary.
    pub(crate) metrics: Arc<Metrics>,
    /// The `source` label of `riskstream_input_records_total`.
    pub(crate) source: &'static str,
    pub(crate) readiness: Readiness,
    /// Read → result delivered, per event.
    pub(crate) event_latency: AtomicHistogram,
    /// Per micro-batch, one per [`Stage`] in [`Stage::ALL`] order.
    pub(crate) stages: [AtomicHistogram; Stage::ALL.len()],
    /// Latest consumer lag per assigned partition, replaced whole by each statistics
    /// report (so revoked partitions disappear); a scrape loads it without locking.
    pub(crate) consumer_lag: ArcSwap<Vec<PartitionLag>>,
    /// Where each partition the Kafka source aligns stands in event time, replaced whole
    /// after every batch.
    pub(crate) partition_event_times: ArcSwap<Vec<PartitionEventTime>>,
    /// Nanoseconds the Kafka source held records back waiting for a dry partition.
    pub(crate) alignment_wait_ns: AtomicU64,
    /// Messages waiting in the producer's queue; -1 until a producer reports.
    pub(crate) producer_queue: AtomicI64,
    /// The model that scores now, for `riskstream_model_info{version}`.
    pub(crate) model_version: ArcSwapOption<String>,
    /// When the last snapshot was published, in nanoseconds after `epoch`; `u64::MAX`
    /// before the first.
    pub(crate) snapshot_published_ns: AtomicU64,
    /// Id of the last snapshot published, for when no aggregate view is attached.
    pub(crate) snapshot_id: AtomicU64,
    pub(crate) rebalances: AtomicU64,
    pub(crate) graph_status_changes: AtomicU64,
    /// Entries loaded into the graph cache by the last warm-up.
    pub(crate) cache_warmed: AtomicU64,
    pub(crate) epoch: Instant,
    pub(crate) aggregates: OnceLock<Arc<dyn AggregateView>>,
    pub(crate) graph_cache: OnceLock<Arc<CacheStats>>,
    /// The job's model slot: `riskstream_model_info` shows the version scoring now, hot
    /// swaps included.
    pub(crate) model: OnceLock<crate::reload::ModelSlot>,
}

impl Observer {
    /// The observer of one job run whose counters are `metrics` and whose input comes
    /// from `source` (`"kafka"`, `"file"`, `"generator"`: the label of
    /// `riskstream_input_records_total`). Readiness waits for assigned partitions only
    /// when `source` is `"kafka"`.
    pub fn new(metrics: Arc<Metrics>, source: &'static str) -> Arc<Observer> {
        let values = Arc::new(Values {
            metrics,
            source,
            readiness: Readiness::new(source == "kafka"),
            event_latency: AtomicHistogram::new(LATENCY_BUCKETS),
            stages: std::array::from_fn(|_| AtomicHistogram::new(STAGE_BUCKETS)),
            consumer_lag: ArcSwap::from_pointee(Vec::new()),
            partition_event_times: ArcSwap::from_pointee(Vec::new()),
            alignment_wait_ns: AtomicU64::new(0),
            producer_queue: AtomicI64::new(-1),
            model_version: ArcSwapOption::empty(),
            snapshot_published_ns: AtomicU64::new(u64::MAX),
            snapshot_id: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            graph_status_changes: AtomicU64::new(0),
            cache_warmed: AtomicU64::new(0),
            epoch: Instant::now(),
            aggregates: OnceLock::new(),
            graph_cache: OnceLock::new(),
            model: OnceLock::new(),
        });
        let mut registry = Registry::with_prefix("riskstream");
        let collector: Box<dyn Collector> = Box::new(prometheus::Scrape(values.clone()));
        registry.register_collector(collector);
        Arc::new(Observer { registry, values })
    }

    /// The job's counters (the same `Arc` as given to [`Observer::new`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.values.metrics
    }

    /// The readiness the job sets and `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.values.readiness
    }

    /// Makes the job's aggregate state visible: `/snapshot/{kind}/{id}`,
    /// `riskstream_snapshot_id`, `riskstream_keys_tracked{kind}`, the live key and
    /// eviction counts (`riskstream_keys{kind}`, `riskstream_keys_evicted_total{kind}`) and
    /// the live late-event count. Only the first call counts (one job, one aggregator).
    pub fn attach_aggregates(&self, view: Arc<dyn AggregateView>) {
        let _ = self.values.aggregates.set(view);
    }

    /// Makes the graph cache's hit and miss counters visible. Only the first call counts.
    pub fn attach_graph_cache(&self, stats: Arc<CacheStats>) {
        let _ = self.values.graph_cache.set(stats);
    }

    /// Makes the scoring model's version visible (`riskstream_model_info{version}`),
    /// following hot swaps, and counts the model as loaded for readiness. Only the first
    /// call counts.
    pub fn attach_model(&self, slot: crate::reload::ModelSlot) {
        self.values.readiness.set_model_loaded(true);
        let _ = self.values.model.set(slot);
    }

    /// The aggregate state, once attached.
    pub fn aggregates(&self) -> Option<&Arc<dyn AggregateView>> {
        self.values.aggregates.get()
    }

    /// Records one micro-batch's time in `stage`.
    pub fn stage_took(&self, stage: Stage, took: Duration) {
        self.values.stages[stage as usize].observe(took);
    }

    /// Records how long one event took from being read to its result being delivered.
    pub fn event_latency(&self, latency: Duration) {
        self.values.event_latency.observe(latency);
    }

    /// Sets `riskstream_kafka_consumer_lag{topic,partition}` from one librdkafka
    /// statistics report (`statistics.interval.ms`), replacing the previous report's
    /// partitions. A report that does not parse is logged at debug and changes nothing.
    pub fn record_consumer_stats(&self, json: &[u8]) {
        match kafka_stats::KafkaStats::parse(json) {
            Ok(stats) => self.set_consumer_lag(stats.consumer_lag()),
            Err(err) => tracing::debug!(error = %err, "kafka consumer statistics not understood"),
        }
    }

    /// Sets `riskstream_producer_queue_messages` from one librdkafka statistics report of
    /// the producer.
    pub fn record_producer_stats(&self, json: &[u8]) {
        match kafka_stats::KafkaStats::parse(json) {
            Ok(stats) => self.set_producer_queue(stats.queued_messages()),
            Err(err) => tracing::debug!(error = %err, "kafka producer statistics not understood"),
        }
    }

    /// Records waiting behind this consumer's partitions: the sum of their consumer lag
    /// as last reported (partitions not yet reporting count 0).
    pub fn consumer_backlog(&self) -> i64 {
        self.values
            .consumer_lag
            .load()
            .iter()
            .map(|p| p.lag.max(0))
            .sum()
    }

    /// Whether the job reads from Kafka (the `source` label is `kafka`).
    pub fn reads_kafka(&self) -> bool {
        self.values.source == "kafka"
    }

    /// Replaces the consumer lag of every partition.
    pub fn set_consumer_lag(&self, lag: Vec<PartitionLag>) {
        self.values.consumer_lag.store(Arc::new(lag));
    }

    /// Replaces where every aligned partition stands in event time.
    pub fn set_partition_event_times(&self, times: Vec<PartitionEventTime>) {
        self.values.partition_event_times.store(Arc::new(times));
    }

    /// Adds time the Kafka source held records back waiting for a dry partition.
    pub fn add_alignment_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.values.alignment_wait_ns.fetch_add(ns, Relaxed);
    }

    /// Messages waiting in the producer's queue.
    pub fn set_producer_queue(&self, messages: u64) {
        let messages = i64::try_from(messages).unwrap_or(i64::MAX);
        self.values.producer_queue.store(messages, Relaxed);
    }

    /// The registry in the Prometheus text format (version 0.0.4), as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail, and our collector reports no errors of its own.
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %err, "metrics could not be encoded");
        }
        out
    }

    pub(crate) fn values(&self) -> &Values {
        &self.values
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("source", &self.values.source)
            .field("metrics", &self.values.metrics)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests;
