//! The streaming job: the engine's stages as tokio tasks connected by bounded channels,
//! a source thread in front, the sinks behind, a progress line, graceful shutdown and a run
//! summary in which inputs = results + dead letters.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use riskstream_config::Config;

use super::output::{deliver, InDelivery, Outputs, IN_FLIGHT_BATCHES};
use super::setup;
use riskstream_pipeline::engine::{
    Decoded, Engine, Enriched, FeatureBuffers, Scored, SnapshotClock,
};
use riskstream_pipeline::metrics::Metrics;
use riskstream_pipeline::reload::{
    ActiveModel, ModelSlot, ModelWatcher, Reload, ThresholdOverrides,
};
use riskstream_pipeline::result::Reason;
use riskstream_pipeline::source::{BlockingSource, RawBatch};

/// Micro-batches whose graph look-ups may be in flight at once. With the default 50 ms
/// deadline, even a graph that misses every deadline leaves the stream at least
/// 8 × 512 events per 50 ms (80 000 events/s) instead of 10 000.
const GRAPH_BATCHES_IN_FLIGHT: usize = 8;

/// Options of `riskstream run` that override the configuration file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see config/riskstream.toml for every key.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read events from this JSONL file instead of the configured source.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Graph file (JSONL) for the in-memory graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// Model directory (metadata.json + model.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Results file (JSONL); `-` for standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Dead-letter file (JSONL); `-` for standard output.
    #[arg(long = "dead-letter")]
    pub dead_letter: Option<PathBuf>,
    /// Stop after this many input records.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Workers for the aggregation stage (overrides pipeline.workers).
    #[arg(long)]
    pub workers: Option<usize>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

/// What a run did, printed at the end and optionally written as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub inputs: u64,
    pub results: u64,
    pub dead_letters: u64,
    pub dead_letters_by_kind: Vec<(String, u64)>,
    pub decisions: Decisions,
    pub late_events: u64,
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

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl RunSummary {
    /// Every input is accounted for: one result or one dead letter each.
    pub fn is_balanced(&self) -> bool {
        self.inputs == self.results + self.dead_letters
    }
}

/// Runs the job until the source ends, `--max-events` is reached, or SIGINT/SIGTERM.
pub async fn run(mut config: Config, args: RunArgs) -> anyhow::Result<RunSummary> {
    if let Some(workers) = args.workers {
        if workers > riskstream_config::MAX_WORKERS {
            anyhow::bail!(
                "--workers is {workers}: use 0 (one per CPU) to {}",
                riskstream_config::MAX_WORKERS
            );
        }
        config.pipeline.workers = workers;
    }
    let metrics = Arc::new(Metrics::default());
    let topics = setup::kafka_topics(&config, &args);
    if config.kafka.create_topics && !topics.is_empty() {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        riskstream_pipeline::kafka::ensure_topics(
            &config.kafka,
            &topics,
            config.kafka.partitions,
            config.kafka.replication,
        )
        .await?;
    }
    let setup = setup::build(&config, &args, metrics.clone(), false)?;
    let engine = Arc::new(setup.engine);
    let overrides = threshold_overrides(&config);
    let active = ActiveModel::new(setup.model, &engine.layout.names(), overrides)
        .context("the model cannot score this job's features")?;
    let model_dir = setup::model_dir(&config, args.model.as_deref());
    let slot: ModelSlot = Arc::new(arc_swap::ArcSwap::from_pointee(active));
    let acknowledger = setup.acknowledger;
    let graph_cache = setup.graph_cache;
    let graph_warmer = setup.graph_warmer;
    let outputs = Outputs::open(&setup.results, &setup.dead_letters, &config).await?;
    let results_path = outputs.results_target.clone();
    let dead_letter_path = outputs.dead_letter_target.clone();
    tracing::info!(
        source = %setup.source.describe(),
        graph = setup.graph_description,
        model = %slot.load().version,
        model_dir = %model_dir.display(),
        results = %results_path,
        dead_letters = %dead_letter_path,
        "riskstream job starting"
    );

    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let refreshing = match graph_warmer {
        Some(warmer) => {
            warmer.warm_up(&cancel).await;
            Some(warmer.spawn_refresh(cancel.clone()))
        }
        None => None,
    };
    let (reload_tx, reload_rx) = mpsc::channel::<Reload>(4);
    let watcher = ModelWatcher::new(
        model_dir,
        setup::model_device(&config),
        engine.layout.names(),
        overrides,
        slot.clone(),
        metrics.clone(),
    );
    let watching =
        tokio::spawn(watcher.run(config.model.reload_interval, reload_rx, cancel.clone()));
    spawn_hangup_handler(args.config.clone(), overrides, reload_tx, cancel.clone());
    let capacity = config.pipeline.channel_capacity.max(1);
    let (raw_tx, raw_rx) = mpsc::channel::<RawBatch>(capacity);
    let (dec_tx, dec_rx) = mpsc::channel::<Decoded>(capacity);
    let (agg_tx, agg_rx) = mpsc::channel::<(
        Decoded,
        Vec<riskstream_pipeline::aggregate::EventAggregates>,
    )>(capacity);
    let (enr_tx, enr_rx) = mpsc::channel::<Enriched>(capacity);
    let (sco_tx, mut sco_rx) = mpsc::channel::<Scored>(capacity);

    let started = Instant::now();
    let source_thread = spawn_source(
        setup.source,
        raw_tx,
        config.pipeline.batch_size.max(1),
        args.max_events,
        cancel.clone(),
    )?;

    let decode = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut rx = raw_rx;
            while let Some(raw) = rx.recv().await {
                if dec_tx.send(engine.decode(raw)).await.is_err() {
                    break;
                }
            }
        })
    };
    let aggregate = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut rx = dec_rx;
            let mut clock = SnapshotClock::default();
            // Snapshots are built on a blocking thread, one at a time and in drain order,
            // so the stage only pays for copying the changed keys.
            let mut building: Option<tokio::task::JoinHandle<()>> = None;
            while let Some(decoded) = rx.recv().await {
                let aggs = engine.aggregate(&decoded.events);
                if let Some(pending) = engine.maybe_snapshot(&decoded, &mut clock) {
                    if let Some(previous) = building.take() {
                        let _ = previous.await;
                    }
                    let engine = engine.clone();
                    building = Some(tokio::task::spawn_blocking(move || engine.publish(pending)));
                }
                if agg_tx.send((decoded, aggs)).await.is_err() {
                    break;
                }
            }
            // The summary counts the last snapshot too.
            if let Some(last) = building {
                let _ = last.await;
            }
        })
    };
    // Batches are enriched concurrently, at most GRAPH_BATCHES_IN_FLIGHT at a time, and
    // passed on in the order they came: a batch waiting for a remote graph (up to its
    // deadline) does not hold back the batches behind it.
    let (ordered_tx, mut ordered_rx) =
        mpsc::channel::<tokio::task::JoinHandle<(Enriched, Duration)>>(GRAPH_BATCHES_IN_FLIGHT);
    let enrich = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut rx = agg_rx;
            while let Some((decoded, aggregates)) = rx.recv().await {
                let engine = engine.clone();
                let task = tokio::spawn(async move {
                    let asked = Instant::now();
                    let graphs = engine.enrich(&decoded.events).await;
                    let waited = asked.elapsed();
                    let snapshot = engine.snapshots.load_full();
                    let enriched = Enriched {
                        decoded,
                        aggregates,
                        graphs,
                        snapshot,
                    };
                    (enriched, waited)
                });
                if ordered_tx.send(task).await.is_err() {
                    break;
                }
            }
        })
    };
    let enrich_order = {
        let mut waits = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .context("cannot create the graph wait histogram")?;
        tokio::spawn(async move {
            while let Some(task) = ordered_rx.recv().await {
                let (enriched, waited) = task.await?;
                let _ = waits.record(waited.as_micros().max(1) as u64);
                if enr_tx.send(enriched).await.is_err() {
                    break;
                }
            }
            Ok::<_, tokio::task::JoinError>(waits)
        })
    };
    let score = {
        let engine = engine.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let mut rx = enr_rx;
            let mut buffers = FeatureBuffers::default();
            while let Some(enriched) = rx.recv().await {
                // One model per batch: a swap lands between batches, never inside one.
                let active = slot.load_full();
                let scored = engine.score_active(&active, enriched, &mut buffers)?;
                if sco_tx.send(scored).await.is_err() {
                    break;
                }
            }
            Ok::<(), riskstream_pipeline::engine::EngineError>(())
        })
    };
    // With JSON logs stderr carries JSON lines only: no progress line.
    let progress = (!args.quiet && !riskstream_pipeline::logging::is_json())
        .then(|| spawn_progress(metrics.clone(), started, cancel.clone()));

    // The sink runs here: encode and hand each batch to its sinks; a delivery task behind
    // it waits for the batch to be delivered, then counts it and acknowledges its offsets.
    let histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .context("cannot create the latency histogram")?;
    let (del_tx, del_rx) = mpsc::channel::<InDelivery>(IN_FLIGHT_BATCHES);
    let delivery = tokio::spawn(deliver(
        del_rx,
        outputs.kafka.clone(),
        acknowledger.clone(),
        metrics.clone(),
        cancel.clone(),
        histogram,
    ));
    let mut outputs = outputs;
    let mut lines = Vec::with_capacity(1 << 20);
    let mut ends = Vec::with_capacity(config.pipeline.batch_size.max(1));
    let mut sink_error: Option<anyhow::Error> = None;
    while let Some(scored) = sco_rx.recv().await {
        lines.clear();
        ends.clear();
        encode_results(&engine, &scored, &mut lines, &mut ends);
        let pending = match outputs.send(&scored, &lines, &ends).await {
            Ok(pending) => pending,
            Err(err) => {
                sink_error = Some(err);
                cancel.cancel();
                break;
            }
        };
        if del_tx.send(InDelivery { scored, pending }).await.is_err() {
            // The delivery task stopped on an error; it reports it below.
            cancel.cancel();
            break;
        }
    }
    drop(del_tx);
    let (histogram, delivered) = delivery.await.context("delivery task panicked")?;
    if let Err(err) = delivered {
        sink_error.get_or_insert(err);
    }
    if sink_error.is_none() {
        if let Some(ack) = &acknowledger {
            ack.finish();
        }
    }
    drop(sco_rx);
    cancel.cancel();
    let (d, a, e, o, s) = tokio::join!(decode, aggregate, enrich, enrich_order, score);
    // The watcher stops on `cancel`; a load in progress finishes first.
    let _ = watching.await;
    if let Some(refreshing) = refreshing {
        let _ = refreshing.await;
    }
    d.context("decode stage panicked")?;
    a.context("aggregate stage panicked")?;
    e.context("enrich stage panicked")?;
    let graph_waits = o
        .context("enrich stage panicked")?
        .context("enrich stage panicked")?;
    let score_result = s.context("score stage panicked")?;
    let source_result = tokio::task::spawn_blocking(move || source_thread.join())
        .await
        .context("source thread could not be joined")?;
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(err) = sink_error {
        return Err(err.context("results could not be delivered; the job stopped consuming"));
    }
    score_result?;
    match source_result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err).context("the source failed"),
        Err(_) => anyhow::bail!("the source thread panicked"),
    }

    metrics
        .late_events
        .store(engine.aggregator.metrics().late_events(), Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = summarize(
        &metrics,
        &histogram,
        seconds,
        results_path,
        dead_letter_path,
    );
    summary.graph_wait_ms = latency(&graph_waits);
    summary.graph_cache = graph_cache.map(|stats| GraphCacheSummary {
        hits: stats.hits(),
        misses: stats.misses(),
        shared_waits: stats.shared_waits(),
        expired: stats.expired(),
        evictions: stats.evictions(),
        preloaded: stats.preloaded(),
        hit_ratio: stats.hit_ratio(),
    });
    if riskstream_pipeline::logging::is_json() {
        let json = serde_json::to_string(&summary).context("cannot encode the run summary")?;
        tracing::info!(summary = json, "riskstream run finished");
    } else {
        print_summary(&summary);
        print_graph_summary(&summary);
    }
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("cannot encode the run summary")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the run summary to `{}`", path.display()))?;
    }
    Ok(summary)
}

/// Encodes a scored batch as result lines; `ends[i]` is where result `i`'s JSON ends
/// (its newline follows).
fn encode_results(engine: &Engine, scored: &Scored, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
    let enriched = &scored.enriched;
    let decoded = &enriched.decoded;
    let specs = engine.layout.describe();
    let now = Instant::now();
    let mut reasons: Vec<Reason<'_>> = Vec::with_capacity(riskstream_pipeline::engine::REASONS);
    for i in 0..decoded.events.len() {
        let record = &decoded.raw.records[decoded.records[i] as usize];
        let latency = now.saturating_duration_since(record.received);
        riskstream_pipeline::result::readable_reasons(specs, &scored.reasons[i], &mut reasons);
        let source = riskstream_pipeline::dead_letter::SourceRef {
            topic: &decoded.raw.topic,
            partition: record.partition,
            offset: record.offset,
        };
        // Microsecond resolution is plenty and keeps the number short.
        let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1000.0;
        let view = engine.result_view(
            scored,
            i,
            &reasons,
            source,
            &scored.processed_at,
            latency_ms,
        );
        view.encode(out);
        ends.push(out.len());
        out.push(b'\n');
    }
}

/// Runs a blocking source on its own thread, feeding the decode stage.
fn spawn_source(
    mut source: Box<dyn BlockingSource>,
    tx: mpsc::Sender<RawBatch>,
    batch_size: usize,
    max_events: Option<u64>,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), riskstream_pipeline::source::SourceError>>> {
    std::thread::Builder::new()
        .name("riskstream-source".into())
        .spawn(move || {
            source.watch(cancel.clone());
            let mut sent = 0u64;
            while !cancel.is_cancelled() {
                let want = match max_events {
                    Some(max) if sent >= max => break,
                    Some(max) => batch_size.min((max - sent) as usize),
                    None => batch_size,
                };
                let Some(batch) = source.next_batch(want)? else {
                    break;
                };
                // Sources that wait (Kafka) return empty batches while idle, so that a
                // shutdown request is noticed.
                if batch.is_empty() {
                    continue;
                }
                sent += batch.len() as u64;
                if tx.blocking_send(batch).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .context("cannot start the source thread")
}

/// SIGINT or SIGTERM: stop reading; what was read is finished and delivered.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the job");
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = ctrl_c => {}
            _ = cancel.cancelled() => return,
        }
        tracing::info!("shutdown requested: draining in-flight events");
        cancel.cancel();
    });
}

/// `model.review_threshold` / `model.block_threshold` as the reloader takes them.
fn threshold_overrides(config: &Config) -> ThresholdOverrides {
    ThresholdOverrides {
        review: config.model.review_threshold,
        block: config.model.block_threshold,
    }
}

/// SIGHUP: re-read the threshold keys of the configuration and reload the model directory
/// now. A configuration that no longer loads is reported and the previous thresholds stay.
fn spawn_hangup_handler(
    config_path: Option<PathBuf>,
    mut overrides: ThresholdOverrides,
    reload: mpsc::Sender<Reload>,
    cancel: CancellationToken,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; the model reloads only when its files change");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
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
            if reload.send(Reload::Now(overrides)).await.is_err() {
                break;
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (config_path, overrides, reload, cancel);
}

/// The live progress line on stderr, once a second.
fn spawn_progress(
    metrics: Arc<Metrics>,
    started: Instant,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 5 }));
        tick.tick().await;
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => break,
            }
            let results = Metrics::get(&metrics.results);
            let dead = Metrics::get(&metrics.dead_letters);
            let done = results + dead;
            let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-9);
            last = (Instant::now(), done);
            let line = format!(
                "[{:>6.1}s] {:>10.0} events/s | results {} (allow {}, review {}, block {}) | dead letters {} | latency p50 {:.2} ms p99 {:.2} ms",
                started.elapsed().as_secs_f64(),
                rate,
                results,
                Metrics::get(&metrics.decisions[0]),
                Metrics::get(&metrics.decisions[1]),
                Metrics::get(&metrics.decisions[2]),
                dead,
                Metrics::get(&metrics.latency_p50_us) as f64 / 1000.0,
                Metrics::get(&metrics.latency_p99_us) as f64 / 1000.0,
            );
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
        if tty {
            eprintln!();
        }
    })
}

fn summarize(
    metrics: &Metrics,
    histogram: &Histogram<u64>,
    seconds: f64,
    results_path: String,
    dead_letter_path: String,
) -> RunSummary {
    let results = Metrics::get(&metrics.results);
    let dead_letters = Metrics::get(&metrics.dead_letters);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
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
        snapshots: Metrics::get(&metrics.snapshots),
        graph_unavailable: Metrics::get(&metrics.graph_unavailable),
        graph_wait_ms: Latency::default(),
        graph_cache: None,
        seconds,
        events_per_second: (results + dead_letters) as f64 / seconds.max(1e-9),
        latency_ms: if histogram.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                max: histogram.max() as f64 / 1000.0,
            }
        },
        results_path,
        dead_letter_path,
        model_swaps: Metrics::get(&metrics.model_swaps),
        model_rejections: Metrics::get(&metrics.model_rejections),
    }
}

/// Percentiles of a histogram of microseconds, in milliseconds.
fn latency(histogram: &Histogram<u64>) -> Latency {
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

/// The graph part of the summary: per-batch wait and, when cached, the cache's counters.
fn print_graph_summary(s: &RunSummary) {
    let w = &s.graph_wait_ms;
    eprintln!(
        "  graph wait ms per batch  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        w.p50, w.p90, w.p99, w.max
    );
    if let Some(c) = &s.graph_cache {
        eprintln!(
            "  graph cache   hit ratio {:.3}  (hits {}, misses {}, shared waits {}, expired {}, evictions {}, preloaded {})",
            c.hit_ratio, c.hits, c.misses, c.shared_waits, c.expired, c.evictions, c.preloaded
        );
    }
}

fn print_summary(s: &RunSummary) {
    let by_kind = if s.dead_letters_by_kind.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = s
            .dead_letters_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("  ({})", parts.join(", "))
    };
    eprintln!(
        "riskstream run finished in {:.2} s\n  inputs        {}\n  results       {}  (allow {}, review {}, block {})\n  dead letters  {}{}\n  late events   {}\n  snapshots     {}\n  graph unavailable {}\n  throughput    {:.0} events/s\n  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n  results       {}\n  dead letters  {}{}",
        s.seconds,
        s.inputs,
        s.results,
        s.decisions.allow,
        s.decisions.review,
        s.decisions.block,
        s.dead_letters,
        by_kind,
        s.late_events,
        s.snapshots,
        s.graph_unavailable,
        s.events_per_second,
        s.latency_ms.p50,
        s.latency_ms.p90,
        s.latency_ms.p99,
        s.latency_ms.max,
        s.results_path,
        s.dead_letter_path,
        if s.is_balanced() { "" } else { "\n  WARNING: inputs != results + dead letters" },
    );
}
