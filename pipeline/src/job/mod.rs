//! The streaming job: source → decode → aggregate → enrich → score → sink → acknowledge,
//! run in-process from a [`Config`](riskstream_config::Config).
//!
//! [`Job::build`] opens and checks everything before the first event is read;
//! [`Job::run`] runs until the input ends, [`JobOptions::max_events`] is reached, or the
//! `shutdown` future the caller passes resolves (the binary passes
//! [`shutdown::signal_shutdown`]). On shutdown the source stops reading and every record
//! already read is finished and delivered before `run` returns; input is acknowledged only
//! after delivery ([`delivery`]), so the job is at-least-once. The summary accounts for
//! every input as one result or one dead letter.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use riskstream_pipeline::job::{shutdown, Job, JobOptions};
//! let config = riskstream_config::Config::default();
//! let job = Job::build(&config, JobOptions::default()).await?;
//! let summary = job.run(shutdown::signal_shutdown()).await?;
//! assert!(summary.is_balanced());
//! # Ok(())
//! # }
//! ```

mod build;
mod checkpoints;
pub mod delivery;
pub mod shutdown;
mod stall;
mod state;
pub mod summary;
mod topology;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use riskstream_graph::{CacheStats, CacheWarmer, GraphError, WarmUp};

pub use build::{
    aggregate_options, engine, generator_options, graph, kafka_topics, load_model, memory_graph,
    model_device, model_dir, neo4j_options, threshold_overrides, thresholds, ChosenGraph,
};
pub use delivery::{Acknowledge, DeliveryError, Target, IN_FLIGHT_BATCHES};
pub use state::{JobState, Readiness};
pub use summary::{Decisions, GraphCacheSummary, Latency, RunSummary};

use crate::aggregate::Snapshots;
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;
use crate::observe::admin::AdminServer;
use crate::observe::events::{CacheWarmedUp, Emit, GraphStatusChanged, SourceStalled};
use crate::observe::{GraphHealth, Observer};
use crate::reload::{ModelSlot, ModelWatcher, Reload};
use crate::source::BlockingSource;
use delivery::Outputs;
use topology::{Sizes, Topology};

/// What a caller sets besides the configuration: overrides of its source, graph, model and
/// sinks (the command line's `--input`, `--graph`, … of `riskstream run`), and a limit.
/// `None` everywhere leaves the configuration in charge.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Read events from this JSONL file instead of the configured source.
    pub input: Option<PathBuf>,
    /// Graph file (JSONL) for the in-memory graph, instead of `graph.path`.
    pub graph: Option<PathBuf>,
    /// Model directory instead of `model.path`.
    pub model: Option<PathBuf>,
    /// Results file (JSONL, `-` for standard output) instead of the configured sink.
    pub results: Option<PathBuf>,
    /// Dead-letter file (JSONL, `-` for standard output) instead of the configured one.
    pub dead_letters: Option<PathBuf>,
    /// Stop after this many input records.
    pub max_events: Option<u64>,
    /// Where the caller writes the run summary: refused at build time when it is the
    /// input or an output, so that writing it cannot destroy either.
    pub summary: Option<PathBuf>,
    /// Start with empty window state, removing the checkpoints in `state.dir`, and read
    /// the input from where the source starts by itself (`--fresh-state`).
    pub fresh_state: bool,
}

/// Why a job could not be built. Each names the configuration key, option, file or service
/// to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "source.kind is \"file\" but source.path is empty; set source.path or pass --input FILE"
    )]
    NoSourcePath,
    #[error(transparent)]
    Source(Box<crate::source::SourceError>),
    #[error("source.generator.start: {reason}")]
    GeneratorStart { reason: String },
    #[error("cannot start the built-in generator (source.generator.*)")]
    Generator(#[source] Box<crate::gen::GenError>),
    #[error(transparent)]
    Kafka(Box<crate::kafka::KafkaSetupError>),
    #[error("cannot load the graph file `{}` (graph.path or --graph)", path.display())]
    GraphFile {
        path: PathBuf,
        source: Box<GraphError>,
    },
    #[error("the generated graph is invalid")]
    GeneratedGraph(#[source] Box<GraphError>),
    #[error(
        "graph.kind is \"neo4j\" but no password is set: set RISKSTREAM__GRAPH__PASSWORD in the \
         environment (or graph.password in the configuration file)"
    )]
    Neo4jPassword,
    #[error("cannot set up the Neo4j client for {uri} (graph.uri)")]
    Neo4jClient {
        uri: String,
        source: Box<GraphError>,
    },
    #[error(
        "model directory `{}` not found (model.path or --model); the shipped model is \
         models/riskstream-v1 relative to the repository root: run from there or set model.path",
        path.display()
    )]
    NoModelDir { path: PathBuf },
    #[error("cannot load the model in `{}`", path.display())]
    Model {
        path: PathBuf,
        source: Box<riskstream_inference::ModelError>,
    },
    #[error(
        "review threshold {review} is not below block threshold {block} (model.review_threshold / \
         model.block_threshold, or the model's metadata); set them so that review < block"
    )]
    Thresholds { review: f32, block: f32 },
    #[error(transparent)]
    Engine(Box<EngineError>),
    #[error("the model cannot score this job's features")]
    Rejected(#[source] Box<crate::reload::RejectedModel>),
    #[error("invalid aggregate configuration")]
    Aggregate(#[source] Box<crate::aggregate::AggregateError>),
    #[error(transparent)]
    Checkpoint(Box<crate::checkpoint::CheckpointError>),
    #[error(transparent)]
    Sink(Box<crate::sink::SinkError>),
    #[error(transparent)]
    Admin(Box<crate::observe::admin::AdminError>),
}

/// `?` on the errors a build step returns; boxed, so that a `Result` of a build step stays
/// small whichever step failed.
macro_rules! boxed_from {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for BuildError {
            fn from(error: $error) -> Self {
                BuildError::$variant(Box::new(error))
            }
        })*
    };
}

boxed_from!(
    Source(crate::source::SourceError),
    Kafka(crate::kafka::KafkaSetupError),
    Engine(EngineError),
    Sink(crate::sink::SinkError),
);

/// Why a run stopped before its input was done. Input read before the failure was
/// delivered or is read again (it was not acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("results could not be delivered; the job stopped consuming")]
    Delivery(#[source] Box<DeliveryError>),
    #[error("the source failed")]
    Source(#[source] Box<crate::source::SourceError>),
    #[error("cannot start the source thread")]
    Thread(#[source] std::io::Error),
    #[error("the source thread panicked")]
    SourcePanicked,
    #[error("{stage} stage panicked")]
    Panicked {
        stage: &'static str,
        source: tokio::task::JoinError,
    },
}

/// A built job, ready to [`run`](Job::run).
pub struct Job {
    engine: Arc<Engine>,
    slot: ModelSlot,
    source: Box<dyn BlockingSource>,
    /// Told about delivered input in read order: the Kafka source's, and any added.
    acknowledgers: Vec<Arc<dyn Acknowledge>>,
    outputs: Outputs,
    graph_description: String,
    graph_cache: Option<Arc<CacheStats>>,
    graph_warmer: Option<CacheWarmer>,
    metrics: Arc<Metrics>,
    watcher: ModelWatcher,
    /// `model.reload_interval`: how often the model directory is polled (never when zero).
    reload_interval: Duration,
    reloads: mpsc::Sender<Reload>,
    reload_requests: mpsc::Receiver<Reload>,
    readiness: Arc<Readiness>,
    sizes: Sizes,
    /// The job's metrics registry and readiness, served by the admin endpoint.
    observer: Arc<Observer>,
    /// The admin endpoint (`admin.listen`), when on; it stops when `run` returns, or when
    /// the job is dropped unrun.
    admin: Option<AdminServer>,
    /// The state directory (`state.dir`), when checkpoints are on.
    durable: Option<checkpoints::Durable>,
}

impl Job {
    /// The job's metrics and readiness, as the admin endpoint serves them.
    pub fn observer(&self) -> Arc<Observer> {
        self.observer.clone()
    }

    /// Where the admin endpoint listens, when `admin.listen` turned it on.
    pub fn admin_address(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// The job's counters, updated while it runs.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The aggregate snapshots the job publishes every `snapshot.interval`.
    pub fn snapshots(&self) -> Arc<Snapshots> {
        self.engine.snapshots.clone()
    }

    /// The model that scores now; hot swaps replace it.
    pub fn model(&self) -> ModelSlot {
        self.slot.clone()
    }

    /// Where the job is in its life (built, warming up, running, draining, stopped).
    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// Requests to reload the model directory now (what SIGHUP sends; see
    /// [`shutdown::reload_on_hangup`]). Closed once the job stops.
    pub fn reloads(&self) -> mpsc::Sender<Reload> {
        self.reloads.clone()
    }

    /// The graph cache's counters, when the Neo4j graph is cached.
    pub fn graph_cache(&self) -> Option<Arc<CacheStats>> {
        self.graph_cache.clone()
    }

    /// Also tells `acknowledger` about delivered input, after the source's own (Kafka).
    pub fn add_acknowledger(&mut self, acknowledger: Arc<dyn Acknowledge>) {
        self.acknowledgers.push(acknowledger);
    }

    /// Runs the job until the input ends, `max_events` is reached, or `shutdown` resolves;
    /// in every case what was read is finished and delivered first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, RunError> {
        let admin = self.admin.take();
        let cancel = CancellationToken::new();
        let readiness = self.readiness.clone();
        let work = self.run_until(cancel.clone());
        tokio::pin!(work, shutdown);
        let mut asked = false;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                () = &mut shutdown, if !asked => {
                    asked = true;
                    tracing::info!("shutdown requested: draining in-flight events");
                    readiness.set(JobState::Draining);
                    cancel.cancel();
                }
            }
        };
        readiness.set(JobState::Stopped);
        // Closed before the caller hears the run is over: a probe after `run` is refused.
        if let Some(admin) = admin {
            admin.stop().await;
        }
        result
    }

    async fn run_until(self, cancel: CancellationToken) -> Result<RunSummary, RunError> {
        let Job {
            engine,
            slot,
            source,
            acknowledgers,
            outputs,
            graph_description,
            graph_cache,
            graph_warmer,
            metrics,
            watcher,
            reload_interval,
            reloads,
            reload_requests,
            readiness,
            sizes,
            observer,
            admin: _,
            durable,
        } = self;
        // Held to the end: the watcher stops taking requests when every sender is gone.
        let _reloads = reloads;
        tracing::info!(
            source = %source.describe(),
            graph = graph_description,
            model = %slot.load().version,
            model_dir = %watcher.dir.display(),
            results = %outputs.results_target,
            dead_letters = %outputs.dead_letter_target,
            "riskstream job starting"
        );
        let refreshing = match graph_warmer {
            Some(warmer) => {
                readiness.set(JobState::WarmingUp);
                let asked = Instant::now();
                match warmer.warm_up(cancel.cancelled()).await {
                    WarmUp::Filled { stored, took } => CacheWarmedUp {
                        entries: stored as u64,
                        took,
                    }
                    .emit(&observer),
                    WarmUp::Cold(err) => GraphStatusChanged {
                        health: GraphHealth::Degraded,
                        reason: Some(&err.to_string()),
                    }
                    .emit(&observer),
                    WarmUp::Stopped => tracing::debug!(
                        waited_ms = asked.elapsed().as_secs_f64() * 1000.0,
                        "graph cache warm-up stopped by shutdown"
                    ),
                }
                Some(warmer.spawn_refresh(cancel.clone().cancelled_owned()))
            }
            None => None,
        };
        let watching = tokio::spawn(watcher.run(reload_interval, reload_requests, cancel.clone()));
        let stall_watch = tokio::spawn(watch_health(
            observer.clone(),
            engine.enricher.clone(),
            cancel.clone(),
        ));
        let results_path = outputs.results_target.clone();
        let dead_letter_path = outputs.dead_letter_target.clone();

        let started = Instant::now();
        if !cancel.is_cancelled() {
            readiness.set(JobState::Running);
        }
        let (cutter, checkpointing) = match durable {
            Some(durable) => {
                let (cutter, running) = durable.start().map_err(RunError::Thread)?;
                (Some(cutter), Some(running))
            }
            None => (None, None),
        };
        let (topology, scored) = Topology::start(
            source,
            engine.clone(),
            slot,
            sizes,
            observer.clone(),
            cutter,
            cancel.clone(),
        )?;
        let delivered = delivery::sink(
            scored,
            outputs,
            engine.clone(),
            acknowledgers.into(),
            observer,
            cancel.clone(),
        )
        .await;
        if let Some(checkpointing) = &checkpointing {
            checkpointing.delivery_stopped();
        }
        readiness.set(JobState::Draining);
        cancel.cancel();
        let stopped = topology.join().await;
        if let Some(checkpointing) = checkpointing {
            checkpointing.join().await;
        }
        // The watcher stops on `cancel`; a load in progress finishes first.
        let _ = watching.await;
        let _ = stall_watch.await;
        if let Some(refreshing) = refreshing {
            let _ = refreshing.await;
        }
        let delivered = delivered.map_err(|source| RunError::Panicked {
            stage: "delivery",
            source,
        })?;
        let graph_waits = stopped.stages?;
        delivered
            .outcome
            .map_err(|e| RunError::Delivery(Box::new(e)))?;
        stopped.source?;

        metrics
            .late_events
            .store(engine.aggregator.metrics().late_events(), Relaxed);
        metrics
            .keys_evicted
            .store(engine.aggregator.metrics().keys_evicted_total(), Relaxed);
        Ok(summary::summarize(
            &metrics,
            summary::Measured {
                latency: &delivered.latency,
                graph_waits: &graph_waits,
                graph_cache: graph_cache.as_ref(),
                seconds: started.elapsed().as_secs_f64(),
                results_path,
                dead_letter_path,
            },
        ))
    }
}

/// Tells the observer, until `cancel`, when the graph starts or stops failing (Neo4j's
/// circuit breaker opens or closes; looked at every second) and when the Kafka source stalls
/// (records wait, none is read for [`stall::STALL_AFTER`]) or reads again.
async fn watch_health(
    observer: Arc<Observer>,
    graph: Option<Arc<dyn riskstream_graph::GraphEnricher>>,
    cancel: CancellationToken,
) {
    let mut stalls = stall::StallWatch::new(Instant::now());
    let mut graph_failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut since_stall_check = Duration::ZERO;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Some(graph) = &graph {
            let failing = graph.is_failing();
            if failing != graph_failing {
                graph_failing = failing;
                GraphStatusChanged {
                    health: if failing {
                        GraphHealth::Degraded
                    } else {
                        GraphHealth::Answering
                    },
                    reason: failing.then_some("circuit breaker open: the graph keeps failing"),
                }
                .emit(&observer);
            }
        }
        since_stall_check += Duration::from_secs(1);
        if observer.reads_kafka() && since_stall_check >= stall::STALL_CHECK_EVERY {
            since_stall_check = Duration::ZERO;
            let inputs = Metrics::get(&observer.metrics().inputs);
            let backlog = observer.consumer_backlog();
            if let Some((stalled, idle)) = stalls.check(inputs, backlog, Instant::now()) {
                SourceStalled { stalled, idle }.emit(&observer);
            }
        }
    }
}
