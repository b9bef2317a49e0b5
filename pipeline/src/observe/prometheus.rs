//! The series of `/metrics`: their names, the lock-free histogram behind the latency
//! series, and the collector that reads every value when the registry is encoded.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Values;
use crate::metrics::{Metrics, DEAD_LETTER_KINDS};
use crate::result::Decision;

/// Every series `/metrics` can show, as scraped (counters with their `_total`). Series of
/// parts that are not attached or not reported yet (graph cache, Kafka) are left out.
pub const NAMES: &[&str] = &[
    "riskstream_input_records_total",
    "riskstream_results_total",
    "riskstream_dead_letters_total",
    "riskstream_late_events_total",
    "riskstream_snapshots_total",
    "riskstream_graph_unavailable_total",
    "riskstream_graph_cache_hits_total",
    "riskstream_graph_cache_misses_total",
    "riskstream_graph_cache_warmed_entries",
    "riskstream_graph_status_changes_total",
    "riskstream_model_swaps_total",
    "riskstream_model_rejections_total",
    "riskstream_rebalances_total",
    "riskstream_in_flight_events",
    "riskstream_snapshot_id",
    "riskstream_snapshot_age_seconds",
    "riskstream_keys_tracked",
    "riskstream_keys",
    "riskstream_keys_evicted_total",
    "riskstream_model_info",
    "riskstream_ready",
    "riskstream_producer_queue_messages",
    "riskstream_kafka_consumer_lag",
    "riskstream_kafka_partition_event_time_seconds",
    "riskstream_kafka_partition_skew_seconds",
    "riskstream_kafka_alignment_wait_seconds_total",
    "riskstream_event_latency_seconds",
    "riskstream_stage_seconds",
];

/// Upper bounds (seconds) of `riskstream_event_latency_seconds`: read → result delivered,
/// from a millisecond (a quiet file run) to half a minute (a backlog behind a slow sink).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of `riskstream_stage_seconds`: one micro-batch in one stage, from
/// 100 µs (decoding a small batch) to seconds (a graph deadline, a slow delivery).
pub const STAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The stages of DESIGN.md's data flow, the `stage` label of `riskstream_stage_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Decode,
    Aggregate,
    Enrich,
    Score,
    Encode,
    Deliver,
}

impl Stage {
    /// Every stage in data-flow order; `stage as usize` indexes it.
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Aggregate,
        Stage::Enrich,
        Stage::Score,
        Stage::Encode,
        Stage::Deliver,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Aggregate => "aggregate",
            Stage::Enrich => "enrich",
            Stage::Score => "score",
            Stage::Encode => "encode",
            Stage::Deliver => "deliver",
        }
    }
}

/// A histogram of durations with fixed buckets, one atomic per bucket.
///
/// `prometheus-client`'s own histogram locks a mutex per observation, which a scrape
/// takes too; this one records with two relaxed atomic adds and a scrape only loads. The
/// buckets, count and sum are read one by one, so a scrape during a burst may see a sum
/// a few observations ahead of the buckets; each is exact on its own.
#[derive(Debug)]
pub struct AtomicHistogram {
    /// Upper bounds in seconds, increasing.
    bounds: &'static [f64],
    /// The same bounds in nanoseconds, for the bucket search.
    bounds_ns: Box<[u64]>,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of all observations in nanoseconds (584 years before it wraps).
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (seconds, increasing) and a `+Inf` bucket.
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sum of the observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Relaxed) as f64 / 1e9
    }

    /// `(upper bound in seconds, observations in that bucket)`, `+Inf` last.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect()
    }

    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> std::fmt::Result {
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count, &buckets, None)
    }
}

/// The registry's one collector: reads [`Values`] at scrape time.
pub(crate) struct Scrape(pub(crate) Arc<Values>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<N>(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: N) -> std::fmt::Result
where
    N: prometheus_client::encoding::EncodeGaugeValue,
{
    let metric = ConstGauge::new(value);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter with one label, one series per `(label value, count)`.
fn counters<'v>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The Kafka source's alignment: each partition's event time, its distance ahead of the
/// slowest, and the time spent holding records back. Left out when nothing is aligned.
fn encode_alignment(enc: &mut DescriptorEncoder<'_>, v: &Values) -> std::fmt::Result {
    let times = v.partition_event_times.load();
    if times.is_empty() {
        return Ok(());
    }
    let known: Vec<(&str, i32, i64)> = times
        .iter()
        .filter_map(|p| {
            p.event_time_ms
                .map(|ms| (p.topic.as_str(), p.partition, ms))
        })
        .collect();
    let slowest = known.iter().map(|(_, _, ms)| *ms).min().unwrap_or(0);
    let seconds = |ms: i64| ms as f64 / 1000.0;
    for (name, help, value) in [
        (
            "kafka_partition_event_time_seconds",
            "Event time (message timestamp, Unix seconds) of the partition's next record, or of its last one when it holds none.",
            None,
        ),
        (
            "kafka_partition_skew_seconds",
            "Seconds the partition's event time is ahead of the slowest aligned partition.",
            Some(slowest),
        ),
    ] {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (topic, partition, ms) in &known {
            let labels = [
                ("topic", (*topic).to_owned()),
                ("partition", partition.to_string()),
            ];
            let shown = match value {
                None => seconds(*ms),
                Some(slowest) => seconds(ms.saturating_sub(slowest)),
            };
            ConstGauge::new(shown).encode(family.encode_family(&labels)?)?;
        }
    }
    let waited = v.alignment_wait_ns.load(Relaxed) as f64 / 1e9;
    let family = enc.encode_descriptor(
        "kafka_alignment_wait_seconds",
        "Seconds the Kafka source held records back, waiting for a partition with data on the broker to deliver it.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(waited).encode(family)?;
    Ok(())
}

fn load(counter: &AtomicU64) -> u64 {
    Metrics::get(counter)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let v = &*self.0;
        let m = &*v.metrics;
        let aggregates = v.aggregates.get();

        // Delivered and dead first, inputs last: inputs only grow ahead of the others, so
        // the in-flight difference below is never made negative by the order of reads. The
        // labelled series and the in-flight gauge come from the same reads, so one scrape
        // always adds up: inputs = results + dead letters + in flight.
        let by_decision = [Decision::Allow, Decision::Review, Decision::Block]
            .map(|d| (d.as_str(), load(&m.delivered[d.index()])));
        let by_kind = DEAD_LETTER_KINDS.map(|kind| (kind, m.dead_letters_of_kind(kind)));
        let results: u64 = by_decision.iter().map(|(_, n)| n).sum();
        let dead_letters: u64 = by_kind.iter().map(|(_, n)| n).sum();
        let inputs = load(&m.inputs);

        counters(
            &mut enc,
            "input_records",
            "Input records read (every one ends as a result or a dead letter).",
            "source",
            [(v.source, inputs)],
        )?;
        counters(
            &mut enc,
            "results",
            "Results delivered by the sink, by decision.",
            "decision",
            by_decision,
        )?;
        counters(
            &mut enc,
            "dead_letters",
            "Inputs delivered as dead letters, by kind.",
            "kind",
            by_kind,
        )?;
        // The aggregator counts late events as it applies each batch: live when attached.
        let late = aggregates.map_or(load(&m.late_events), |a| {
            a.aggregator().metrics().late_events()
        });
        counter(
            &mut enc,
            "late_events",
            "Events older than their key's longest window ring (scored, not in the windows).",
            late,
        )?;
        counter(
            &mut enc,
            "snapshots",
            "Aggregate snapshots published.",
            load(&m.snapshots),
        )?;
        counter(
            &mut enc,
            "graph_unavailable",
            "Events scored without graph features because the graph did not answer in time.",
            load(&m.graph_unavailable),
        )?;
        if let Some(cache) = v.graph_cache.get() {
            counter(
                &mut enc,
                "graph_cache_hits",
                "Graph look-ups answered by the cache.",
                cache.hits(),
            )?;
            counter(
                &mut enc,
                "graph_cache_misses",
                "Graph look-ups the cache passed to the graph.",
                cache.misses(),
            )?;
        }
        gauge(
            &mut enc,
            "graph_cache_warmed_entries",
            "Entries loaded into the graph cache by the last warm-up.",
            v.cache_warmed.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "graph_status_changes",
            "Times the graph went from answering to not answering or back.",
            v.graph_status_changes.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "model_swaps",
            "Models swapped in while running.",
            load(&m.model_swaps),
        )?;
        counter(
            &mut enc,
            "model_rejections",
            "Candidate models refused while running; the previous model kept scoring.",
            load(&m.model_rejections),
        )?;
        counter(
            &mut enc,
            "rebalances",
            "Kafka consumer group rebalances (assignments and revocations).",
            v.rebalances.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "in_flight_events",
            "Inputs read that are neither delivered as a result nor as a dead letter yet.",
            inputs.saturating_sub(results).saturating_sub(dead_letters),
        )?;

        match aggregates {
            Some(view) => {
                let snapshot = view.snapshots().load();
                gauge(
                    &mut enc,
                    "snapshot_id",
                    "Id of the current aggregate snapshot.",
                    snapshot.id,
                )?;
                let mut family = enc.encode_descriptor(
                    "keys_tracked",
                    "Keys in the current aggregate snapshot, by entity kind.",
                    None,
                    MetricType::Gauge,
                )?;
                for kind in &view.aggregator().options().kinds {
                    let labels = [("kind", kind.as_str())];
                    let keys = snapshot.keys.of_kind(*kind).len() as u64;
                    ConstGauge::new(keys).encode(family.encode_family(&labels)?)?;
                }
                let live = view.aggregator().metrics();
                let mut family = enc.encode_descriptor(
                    "keys",
                    "Keys in the live aggregate state, by entity kind.",
                    None,
                    MetricType::Gauge,
                )?;
                for kind in &view.aggregator().options().kinds {
                    let labels = [("kind", kind.as_str())];
                    ConstGauge::new(live.keys(*kind)).encode(family.encode_family(&labels)?)?;
                }
                let mut family = enc.encode_descriptor(
                    "keys_evicted",
                    "Keys dropped from the aggregate state after aggregate.idle_key_ttl without an event, by entity kind.",
                    None,
                    MetricType::Counter,
                )?;
                for kind in &view.aggregator().options().kinds {
                    let labels = [("kind", kind.as_str())];
                    ConstCounter::new(live.keys_evicted(*kind))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
            None => gauge(
                &mut enc,
                "snapshot_id",
                "Id of the current aggregate snapshot.",
                v.snapshot_id.load(Relaxed),
            )?,
        }
        let published = v.snapshot_published_ns.load(Relaxed);
        if published != u64::MAX {
            let now = u64::try_from(v.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            gauge(
                &mut enc,
                "snapshot_age_seconds",
                "Seconds since the current aggregate snapshot was published.",
                now.saturating_sub(published) as f64 / 1e9,
            )?;
        }
        let scoring = v
            .model
            .get()
            .map(|slot| Arc::new(slot.load().version.to_string()));
        if let Some(version) = scoring.or_else(|| v.model_version.load_full()) {
            let mut family = enc.encode_descriptor(
                "model_info",
                "The model that scores events: 1 for its version.",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("version", version.as_str())];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        gauge(
            &mut enc,
            "ready",
            "1 when /readyz answers 200, else 0.",
            i64::from(v.readiness.check().is_ok()),
        )?;
        let queued = v.producer_queue.load(Relaxed);
        if queued >= 0 {
            gauge(
                &mut enc,
                "producer_queue_messages",
                "Messages waiting in the Kafka producer's queue.",
                queued,
            )?;
        }
        let lag = v.consumer_lag.load();
        if !lag.is_empty() {
            let mut family = enc.encode_descriptor(
                "kafka_consumer_lag",
                "Messages between the consumer's position and the partition's end, per assigned partition.",
                None,
                MetricType::Gauge,
            )?;
            for p in lag.iter() {
                let labels = [
                    ("topic", p.topic.as_str().to_owned()),
                    ("partition", p.partition.to_string()),
                ];
                ConstGauge::new(p.lag).encode(family.encode_family(&labels)?)?;
            }
        }

        encode_alignment(&mut enc, v)?;

        v.event_latency.encode(enc.encode_descriptor(
            "event_latency_seconds",
            "Seconds from an input being read to its result being delivered.",
            None,
            MetricType::Histogram,
        )?)?;
        let mut family = enc.encode_descriptor(
            "stage_seconds",
            "Seconds one micro-batch spent in each stage.",
            None,
            MetricType::Histogram,
        )?;
        for stage in Stage::ALL {
            let labels = [("stage", stage.as_str())];
            v.stages[stage as usize].encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let h = AtomicHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(1000));
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_secs(5));
        assert_eq!(h.buckets(), vec![(0.001, 1), (0.01, 1), (f64::INFINITY, 1)]);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds() - 5.002001).abs() < 1e-9);
    }

    #[test]
    fn stage_indexes_follow_the_data_flow() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(*stage as usize, i);
        }
        assert_eq!(
            Stage::ALL.map(Stage::as_str),
            [
                "decode",
                "aggregate",
                "enrich",
                "score",
                "encode",
                "deliver"
            ]
        );
    }
}
