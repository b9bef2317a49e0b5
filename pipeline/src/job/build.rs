//! Building a job from the configuration: choosing and opening the source, the graph, the
//! model, the engine and the sinks, each failure a [`BuildError`] that names the key (or
//! the option that overrides it) to change. The parts other commands share (the graph,
//! the model, the engine) are public so that replay and training build them the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use riskstream_config::{AggregateKey, Config, GraphKind, ModelDevice, SinkKind, SourceKind};
use riskstream_graph::{
    BreakerOptions, CacheOptions, CacheStats, CacheWarmer, CachedGraph, EntityKind, GraphEnricher,
    GraphRecord, MemoryGraph, Neo4jGraph, Neo4jOptions,
};
use riskstream_inference::{DeviceChoice, Model};

use super::checkpoints::Durable;
use super::delivery::{Acknowledge, Outputs, Target};
use super::state::Readiness;
use super::topology::Sizes;
use super::{BuildError, Job, JobOptions};
use crate::aggregate::AggregateOptions;
use crate::engine::{Engine, EngineOptions};
use crate::features::FeatureLayout;
use crate::gen::GenOptions;
use crate::metrics::Metrics;
use crate::observe::{admin, GraphHealth, Observer};
use crate::reload::{ActiveModel, ModelSlot, ModelWatcher, ThresholdOverrides};
use crate::sink::{refuse_same_file, NamedPath};
use crate::source::file::{self, FileSource};
use crate::source::generator::{self, GeneratorSource};
use crate::source::kafka::KafkaSource;
use crate::source::resume::Resumed;
use crate::source::BlockingSource;

impl Job {
    /// Builds the job that `config` describes, with `options` overriding its source, graph,
    /// model and sinks: creates the Kafka topics when asked to (`kafka.create_topics`),
    /// opens the source, loads the graph and the model, checks that the model reads this
    /// configuration's features, and opens the sinks. Nothing is read yet.
    pub async fn build(config: &Config, options: JobOptions) -> Result<Job, BuildError> {
        let topics = kafka_topics(config, &options);
        if config.kafka.create_topics && !topics.is_empty() {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            crate::kafka::ensure_topics(
                &config.kafka,
                &topics,
                config.kafka.partitions,
                config.kafka.replication,
            )
            .await?;
        }
        let metrics = Arc::new(Metrics::default());
        let observer = Observer::new(metrics.clone(), source_label(config, &options));
        // The admin endpoint comes up first: a port in use fails before the slow start-up
        // work, and probes see the job start (`/readyz` 503 until it runs).
        let admin = match config.admin.listen {
            // Stopped by the job at the end of its run, or when the job is dropped unrun.
            Some(address) => Some(
                admin::serve(address, observer.clone(), std::future::pending())
                    .await
                    .map_err(|e| BuildError::Admin(Box::new(e)))?,
            ),
            None => None,
        };
        let mut durable = Durable::open(config, options.fresh_state)?;
        let (source, input_path, generated_graph, acknowledger) =
            open_source(config, &options, &observer, durable.as_mut())?;
        let graph = graph(
            config,
            options.graph.as_deref(),
            input_path.as_deref(),
            generated_graph,
        )?;
        let model = load_model(config, options.model.as_deref())?;
        let engine = engine(config, Some(&model), graph.enricher, metrics.clone(), false)?;
        if options.input.is_none() && config.source.kind == SourceKind::Generator {
            // Generated times start at source.generator.start, which may lie ahead of the
            // clock: it is the watermark the far-future bound starts from. The first time
            // admitted is bounded by the clock only, so this cannot be refused.
            let start_ms = generator_options(config)?.start_ms;
            let _seeded = engine.aggregator.admit(start_ms, start_ms);
        }
        if let Some(durable) = &mut durable {
            durable.restore_into(&engine)?;
        }
        let mut acknowledgers: Vec<Arc<dyn Acknowledge>> = acknowledger.into_iter().collect();
        acknowledgers.extend(durable.as_ref().map(Durable::acknowledger));

        let target = |path: &Option<PathBuf>, kind: SinkKind, key: &str| match (path, kind) {
            (Some(p), _) => Target::Path(p.clone()),
            (None, SinkKind::Stdout) => Target::Path(PathBuf::from("-")),
            (None, SinkKind::File) => Target::Path(PathBuf::from(key)),
            (None, SinkKind::Kafka) => Target::Kafka,
        };
        let results = target(&options.results, config.sink.kind, &config.sink.path);
        let dead_letters = target(
            &options.dead_letters,
            config.dead_letter.kind,
            &config.dead_letter.path,
        );
        let outputs: Vec<NamedPath> = [
            ("the results file (--output / sink.path)", results.path()),
            (
                "the dead-letter file (--dead-letter / dead_letter.path)",
                dead_letters.path(),
            ),
            ("the summary (--summary-json)", options.summary.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, path)| Some(NamedPath { name, path: path? }))
        .collect();
        let input = input_path.as_deref().map(|path| NamedPath {
            name: "the input (--input / source.path)",
            path,
        });
        refuse_same_file(input, &outputs)?;

        let overrides = threshold_overrides(config);
        let names = engine.layout.names();
        let active = ActiveModel::new(Arc::new(model), &names, overrides)
            .map_err(|e| BuildError::Rejected(Box::new(e)))?;
        let model_dir = model_dir(config, options.model.as_deref());
        let slot: ModelSlot = Arc::new(arc_swap::ArcSwap::from_pointee(active));
        let outputs = Outputs::open(&results, &dead_letters, config, &observer)?;
        let watcher = ModelWatcher::new(
            model_dir,
            model_device(config),
            names,
            overrides,
            slot.clone(),
            metrics.clone(),
        );
        let (reloads, reload_requests) = tokio::sync::mpsc::channel(4);
        let engine = Arc::new(engine);
        observer.attach_aggregates(engine.clone());
        observer.attach_model(slot.clone());
        if let Some(stats) = &graph.cache {
            observer.attach_graph_cache(stats.clone());
        }
        // A graph that does not answer never stops scoring (events are scored without graph
        // features, `graph.status` "unavailable"), so it degrades the job, never unreadies it.
        observer.readiness().set_graph(GraphHealth::Answering);
        Ok(Job {
            engine,
            slot,
            source,
            acknowledgers,
            outputs,
            graph_description: graph.description,
            graph_cache: graph.cache,
            graph_warmer: graph.warmer,
            metrics,
            watcher,
            reload_interval: config.model.reload_interval,
            reloads,
            reload_requests,
            readiness: Arc::new(Readiness::observed(observer.clone())),
            observer,
            admin,
            durable,
            sizes: Sizes {
                batch_size: config.pipeline.batch_size,
                channel_capacity: config.pipeline.channel_capacity,
                max_events: options.max_events,
            },
        })
    }
}

/// What [`open_source`] opened: the source, the file it reads (if any), the generator's
/// graph, and the Kafka source's acknowledger.
type OpenedSource = (
    Box<dyn BlockingSource>,
    Option<PathBuf>,
    Option<Vec<GraphRecord>>,
    Option<Arc<dyn Acknowledge>>,
);

/// The source that `options.input` or `source.kind` asks for, reading on from the
/// restored checkpoint's positions when `durable` has one.
fn open_source(
    config: &Config,
    options: &JobOptions,
    observer: &Arc<Observer>,
    durable: Option<&mut Durable>,
) -> Result<OpenedSource, BuildError> {
    let keep = config.dead_letter.max_payload_bytes;
    let max_bytes = config.source.max_event_bytes;
    // Files and the generator read from their start, dropping what lies before the
    // checkpoint's position.
    let resumed = |source: Box<dyn BlockingSource>,
                   topic: &str,
                   durable: Option<&mut Durable>|
     -> Result<Box<dyn BlockingSource>, BuildError> {
        match durable {
            Some(durable) => {
                let start = durable.start_positions(&[topic])?;
                Ok(Box::new(Resumed::new(source, start)))
            }
            None => Ok(source),
        }
    };
    let file = |path: &Path, durable: Option<&mut Durable>| -> Result<OpenedSource, BuildError> {
        let source = FileSource::open(path, max_bytes, keep)?;
        let source = resumed(Box::new(source), &file::topic_of(path), durable)?;
        Ok((source, Some(path.to_path_buf()), None, None))
    };
    match (&options.input, config.source.kind) {
        (Some(path), _) => file(path, durable),
        (None, SourceKind::File) => {
            if config.source.path.is_empty() {
                return Err(BuildError::NoSourcePath);
            }
            file(Path::new(&config.source.path), durable)
        }
        (None, SourceKind::Generator) => {
            let source = GeneratorSource::new(generator_options(config)?)
                .map_err(|e| BuildError::Generator(Box::new(e)))?;
            let graph = source.graph_records();
            let source = resumed(Box::new(source), generator::TOPIC, durable)?;
            Ok((source, None, Some(graph), None))
        }
        (None, SourceKind::Kafka) => {
            let mut source = KafkaSource::subscribe(
                &config.kafka,
                config.pipeline.batch_timeout,
                max_bytes,
                keep,
                Some(observer.clone()),
            )?;
            if let Some(durable) = durable {
                let topics: Vec<&str> = config
                    .kafka
                    .input_topics
                    .iter()
                    .map(String::as_str)
                    .collect();
                source.start_at(durable.start_positions(&topics)?);
                durable.commit_kafka_after_checkpoints(source.acknowledger());
            }
            let acknowledger: Arc<dyn Acknowledge> = Arc::new(source.acknowledger());
            Ok((Box::new(source), None, None, Some(acknowledger)))
        }
    }
}

/// The `source` label of `riskstream_input_records_total`: where `open_source` reads.
fn source_label(config: &Config, options: &JobOptions) -> &'static str {
    match (&options.input, config.source.kind) {
        (Some(_), _) | (None, SourceKind::File) => "file",
        (None, SourceKind::Generator) => "generator",
        (None, SourceKind::Kafka) => "kafka",
    }
}

/// The Kafka topics a job uses: the input topics when the source is Kafka, the results
/// and dead-letter topics when those sinks are.
pub fn kafka_topics(config: &Config, options: &JobOptions) -> Vec<String> {
    let mut topics = Vec::new();
    if options.input.is_none() && config.source.kind == SourceKind::Kafka {
        topics.extend(config.kafka.input_topics.iter().cloned());
    }
    if options.results.is_none() && config.sink.kind == SinkKind::Kafka {
        topics.push(config.kafka.results_topic.clone());
    }
    if options.dead_letters.is_none() && config.dead_letter.kind == SinkKind::Kafka {
        topics.push(config.kafka.dead_letter_topic.clone());
    }
    topics
}

/// `model.review_threshold` / `model.block_threshold` as the model reloader takes them.
pub fn threshold_overrides(config: &Config) -> ThresholdOverrides {
    ThresholdOverrides {
        review: config.model.review_threshold,
        block: config.model.block_threshold,
    }
}

/// The aggregation options for the configured keys, windows and workers.
pub fn aggregate_options(config: &Config) -> AggregateOptions {
    AggregateOptions {
        kinds: config
            .aggregate
            .keys
            .iter()
            .map(|k| match k {
                AggregateKey::Account => EntityKind::Account,
                AggregateKey::Device => EntityKind::Device,
                AggregateKey::Ip => EntityKind::Ip,
                AggregateKey::Merchant => EntityKind::Merchant,
            })
            .collect(),
        windows: config.aggregate.windows.clone(),
        distinct_window: config.aggregate.distinct_window,
        workers: config.pipeline.effective_workers(),
        baseline_interval: config.snapshot.interval,
        max_future_skew: config.aggregate.max_future_skew,
        idle_key_ttl: Some(config.aggregate.idle_key_ttl),
        ..AggregateOptions::default()
    }
}

/// Generator options from `source.generator.*`.
pub fn generator_options(config: &Config) -> Result<GenOptions, BuildError> {
    let g = &config.source.generator;
    let start_ms = crate::decode::parse_ts(&g.start).map_err(|e| BuildError::GeneratorStart {
        reason: e.to_string(),
    })?;
    Ok(GenOptions {
        seed: g.seed,
        events: g.events,
        accounts: g.accounts,
        fraud_rate: g.fraud_rate,
        start_ms,
    })
}

/// `model.device` as the model library names it.
pub fn model_device(config: &Config) -> DeviceChoice {
    match config.model.device {
        ModelDevice::Cpu => DeviceChoice::Cpu,
        ModelDevice::Cuda => DeviceChoice::Cuda,
    }
}

/// The model directory: `override_path` (`--model`) or `model.path`.
pub fn model_dir(config: &Config, override_path: Option<&Path>) -> PathBuf {
    override_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&config.model.path))
}

/// Loads the model in `override_path` (`--model`) or `model.path`.
pub fn load_model(config: &Config, override_path: Option<&Path>) -> Result<Model, BuildError> {
    let path = model_dir(config, override_path);
    if !path.is_dir() {
        return Err(BuildError::NoModelDir { path });
    }
    Model::load(&path, model_device(config)).map_err(|source| BuildError::Model {
        path,
        source: Box::new(source),
    })
}

/// The decision thresholds: `model.review_threshold` / `model.block_threshold` when set,
/// else the model's own.
pub fn thresholds(config: &Config, model: &Model) -> Result<(f32, f32), BuildError> {
    let meta = model.thresholds();
    let review = config
        .model
        .review_threshold
        .map(|t| t as f32)
        .unwrap_or(meta.review);
    let block = config
        .model
        .block_threshold
        .map(|t| t as f32)
        .unwrap_or(meta.block);
    if review >= block {
        return Err(BuildError::Thresholds { review, block });
    }
    Ok((review, block))
}

/// The engine for a configuration and a graph. `deterministic` selects event-time
/// snapshots (training, replay). With a model, checks that it reads this configuration's
/// features and takes its thresholds.
pub fn engine(
    config: &Config,
    model: Option<&Model>,
    enricher: Option<Arc<dyn GraphEnricher>>,
    metrics: Arc<Metrics>,
    deterministic: bool,
) -> Result<Engine, BuildError> {
    let aggregate = aggregate_options(config);
    // The aggregate keys are reported before the model, as the job always has.
    aggregate
        .validate()
        .map_err(|e| BuildError::Aggregate(Box::new(e)))?;
    let thresholds = match model {
        Some(model) => {
            let layout = FeatureLayout::new(&config.aggregate.windows, config.graph.max_hops);
            Engine::check_model(model, &layout)?;
            thresholds(config, model)?
        }
        // Featurising for training decides nothing.
        None => (f32::INFINITY, f32::INFINITY),
    };
    let options = EngineOptions {
        max_event_bytes: config.source.max_event_bytes,
        graph_deadline: config.graph.batch_deadline,
        snapshot_interval: config.snapshot.interval,
        deterministic,
        thresholds,
        unavailable_policy: config.graph.unavailable_policy,
    };
    Engine::new(options, aggregate, config.graph.max_hops, enricher, metrics)
        .map_err(|e| BuildError::Aggregate(Box::new(e)))
}

/// Loads a graph file into the in-memory graph.
pub fn memory_graph(path: &Path, max_hops: u32) -> Result<MemoryGraph, BuildError> {
    MemoryGraph::load(path, max_hops).map_err(|source| BuildError::GraphFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// The graph a job enriches with: the enricher (none for `graph.kind = "none"`), the
/// cache's counters when answers are cached, and a description for the start-up log.
pub struct ChosenGraph {
    pub enricher: Option<Arc<dyn GraphEnricher>>,
    pub cache: Option<Arc<CacheStats>>,
    /// Fills the cache ahead of demand (Neo4j with `graph.cache_warm_up`).
    pub warmer: Option<CacheWarmer>,
    pub description: String,
}

/// The graph enricher that `graph.kind` asks for. For the in-memory graph the file is
/// `graph_file` (`--graph`), else `graph.path`, else a `graph.jsonl` beside the input file,
/// else the generator's own graph. Shared by `run` and `replay`, so a replay enriches
/// exactly as the job does.
pub fn graph(
    config: &Config,
    graph_file: Option<&Path>,
    input_path: Option<&Path>,
    generated_graph: Option<Vec<GraphRecord>>,
) -> Result<ChosenGraph, BuildError> {
    let max_hops = config.graph.max_hops;
    let chosen = |enricher: Option<Arc<dyn GraphEnricher>>, description: String| ChosenGraph {
        enricher,
        cache: None,
        warmer: None,
        description,
    };
    match config.graph.kind {
        GraphKind::None => Ok(chosen(None, "none".into())),
        GraphKind::Neo4j => neo4j_graph(config),
        GraphKind::Memory => {
            let explicit = graph_file.map(Path::to_path_buf).or_else(|| {
                (!config.graph.path.is_empty()).then(|| PathBuf::from(&config.graph.path))
            });
            let beside_input = input_path
                .and_then(|p| p.parent().map(|d| d.join("graph.jsonl")))
                .filter(|p| p.is_file());
            if let Some(path) = explicit.or(beside_input) {
                let graph = memory_graph(&path, max_hops)?;
                let text = format!("memory ({}, {} nodes)", path.display(), graph.node_count());
                Ok(chosen(Some(Arc::new(graph)), text))
            } else if let Some(records) = generated_graph {
                let graph = MemoryGraph::from_records(records, max_hops)
                    .map_err(|e| BuildError::GeneratedGraph(Box::new(e)))?;
                let text = format!("memory (generated, {} nodes)", graph.node_count());
                Ok(chosen(Some(Arc::new(graph)), text))
            } else {
                tracing::warn!(
                    "no graph file: set graph.path or --graph (or put graph.jsonl beside the input); \
                     events are scored without graph features (graph.status = \"skipped\")"
                );
                Ok(chosen(None, "none (no graph file)".into()))
            }
        }
    }
}

/// The options of the Neo4j enricher from `[graph]`.
pub fn neo4j_options(config: &Config) -> Result<Neo4jOptions, BuildError> {
    let graph = &config.graph;
    if graph.password.is_empty() {
        return Err(BuildError::Neo4jPassword);
    }
    Ok(Neo4jOptions {
        uri: graph.uri.clone(),
        user: graph.user.clone(),
        password: graph.password.expose().to_owned(),
        max_hops: graph.max_hops,
        pool_size: graph.pool_size,
        query_timeout: graph.query_timeout,
        breaker: BreakerOptions::default(),
    })
}

/// The Neo4j enricher, behind the cache when `graph.cache_enabled`, with the cache warmer
/// when `graph.cache_warm_up`. Connects lazily: a job started while Neo4j is down scores
/// without graph features until it is up.
fn neo4j_graph(config: &Config) -> Result<ChosenGraph, BuildError> {
    let graph = &config.graph;
    let neo4j =
        Neo4jGraph::connect(&neo4j_options(config)?).map_err(|source| BuildError::Neo4jClient {
            uri: graph.redacted_uri(),
            source: Box::new(source),
        })?;
    if !graph.cache_enabled {
        return Ok(ChosenGraph {
            enricher: Some(Arc::new(neo4j)),
            cache: None,
            warmer: None,
            description: format!("neo4j ({}, no cache)", graph.redacted_uri()),
        });
    }
    let cached = CachedGraph::new(
        Arc::new(neo4j.clone()),
        CacheOptions {
            ttl: graph.cache_ttl,
            capacity: graph.cache_capacity,
        },
    );
    let warmer = graph
        .cache_warm_up
        .then(|| CacheWarmer::new(neo4j, cached.clone(), graph.cache_capacity, graph.cache_ttl));
    Ok(ChosenGraph {
        cache: Some(cached.stats()),
        enricher: Some(Arc::new(cached)),
        warmer,
        description: format!(
            "neo4j ({}, cache {} entities for {:?}{})",
            graph.redacted_uri(),
            graph.cache_capacity,
            graph.cache_ttl,
            if graph.cache_warm_up { ", warmed" } else { "" }
        ),
    })
}
