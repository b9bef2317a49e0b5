//! Builds a ready-to-run engine, source and sink paths from the configuration and the
//! command line, with errors that say which key or option to change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use riskstream_config::{AggregateKey, Config, GraphKind, ModelDevice, SinkKind, SourceKind};
use riskstream_graph::{
    BreakerOptions, CacheOptions, CacheStats, CacheWarmer, CachedGraph, EntityKind, GraphEnricher,
    GraphRecord, MemoryGraph, Neo4jGraph, Neo4jOptions,
};
use riskstream_inference::{DeviceChoice, Model};
use riskstream_pipeline::aggregate::AggregateOptions;
use riskstream_pipeline::engine::{Engine, EngineOptions};
use riskstream_pipeline::features::FeatureLayout;
use riskstream_pipeline::gen::GenOptions;
use riskstream_pipeline::metrics::Metrics;
use riskstream_pipeline::sink::{refuse_same_file, NamedPath};
use riskstream_pipeline::source::file::FileSource;
use riskstream_pipeline::source::generator::GeneratorSource;
use riskstream_pipeline::source::kafka::{KafkaAcknowledger, KafkaSource};
use riskstream_pipeline::source::BlockingSource;

use super::run::RunArgs;

/// Everything `riskstream run` needs, built and checked before the first event is read.
pub struct Setup {
    pub engine: Engine,
    pub model: Arc<Model>,
    pub source: Box<dyn BlockingSource>,
    /// Set for the Kafka source: reports delivered batches so their offsets are committed.
    pub acknowledger: Option<KafkaAcknowledger>,
    pub results: Target,
    pub dead_letters: Target,
    pub graph_description: String,
    /// Counters of the graph cache, when the Neo4j graph is cached.
    pub graph_cache: Option<Arc<CacheStats>>,
    /// Fills the graph cache ahead of demand, when configured.
    pub graph_warmer: Option<CacheWarmer>,
}

/// Where results or dead letters go: a JSONL file (`-` for standard output) or the
/// configured Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(PathBuf),
    Kafka,
}

impl Target {
    /// The file or `-`; `None` for Kafka.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Target::Path(path) => Some(path),
            Target::Kafka => None,
        }
    }
}

/// The Kafka topics a run uses: the input topics when the source is Kafka, the results
/// and dead-letter topics when those sinks are.
pub fn kafka_topics(config: &Config, args: &RunArgs) -> Vec<String> {
    let mut topics = Vec::new();
    if args.input.is_none() && config.source.kind == SourceKind::Kafka {
        topics.extend(config.kafka.input_topics.iter().cloned());
    }
    if args.output.is_none() && config.sink.kind == SinkKind::Kafka {
        topics.push(config.kafka.results_topic.clone());
    }
    if args.dead_letter.is_none() && config.dead_letter.kind == SinkKind::Kafka {
        topics.push(config.kafka.dead_letter_topic.clone());
    }
    topics
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
        ..AggregateOptions::default()
    }
}

/// Generator options from `source.generator.*`.
pub fn generator_options(config: &Config) -> anyhow::Result<GenOptions> {
    let g = &config.source.generator;
    let start_ms = riskstream_pipeline::decode::parse_ts(&g.start)
        .map_err(|e| anyhow::anyhow!("source.generator.start: {e}"))?;
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

/// The model directory: `--model` or `model.path`.
pub fn model_dir(config: &Config, override_path: Option<&Path>) -> PathBuf {
    override_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&config.model.path))
}

/// Loads the model named by `--model` or `model.path`.
pub fn load_model(config: &Config, override_path: Option<&Path>) -> anyhow::Result<Model> {
    let path = model_dir(config, override_path);
    let device = model_device(config);
    if !path.is_dir() {
        bail!(
            "model directory `{}` not found (model.path or --model); the shipped model is \
             models/riskstream-v1 relative to the repository root: run from there or set model.path",
            path.display()
        );
    }
    Model::load(&path, device)
        .with_context(|| format!("cannot load the model in `{}`", path.display()))
}

/// The decision thresholds: `model.review_threshold` / `model.block_threshold` when set,
/// else the model's own.
pub fn thresholds(config: &Config, model: &Model) -> anyhow::Result<(f32, f32)> {
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
        bail!(
            "review threshold {review} is not below block threshold {block} (model.review_threshold / \
             model.block_threshold, or the model's metadata); set them so that review < block"
        );
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
) -> anyhow::Result<Engine> {
    let layout = FeatureLayout::new(&config.aggregate.windows, config.graph.max_hops);
    let thresholds = match model {
        Some(model) => {
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
    };
    Engine::new(
        options,
        aggregate_options(config),
        config.graph.max_hops,
        enricher,
        metrics,
    )
    .context("invalid aggregate configuration")
}

/// Loads a graph file into the in-memory graph.
pub fn memory_graph(path: &Path, max_hops: u32) -> anyhow::Result<MemoryGraph> {
    MemoryGraph::load(path, max_hops).with_context(|| {
        format!(
            "cannot load the graph file `{}` (graph.path or --graph)",
            path.display()
        )
    })
}

/// The graph enricher that `graph.kind` asks for, and a description for the run summary.
/// For the in-memory graph the file is `--graph` (`graph_arg`), else `graph.path`, else a
/// `graph.jsonl` beside the input file, else the generator's own graph. Shared by `run`
/// and `replay`, so a replay enriches exactly as the job does.
pub fn graph(
    config: &Config,
    graph_arg: Option<&Path>,
    input_path: Option<&Path>,
    generated_graph: Option<Vec<GraphRecord>>,
) -> anyhow::Result<ChosenGraph> {
    let max_hops = config.graph.max_hops;
    let mut cache = None;
    let mut warmer = None;
    let (enricher, description): (Option<Arc<dyn GraphEnricher>>, String) = match config.graph.kind
    {
        GraphKind::None => (None, "none".into()),
        GraphKind::Neo4j => {
            let neo4j = neo4j_graph(config)?;
            cache = neo4j.cache;
            warmer = neo4j.warmer;
            (Some(neo4j.enricher), neo4j.description)
        }
        GraphKind::Memory => {
            let explicit = graph_arg.map(Path::to_path_buf).or_else(|| {
                (!config.graph.path.is_empty()).then(|| PathBuf::from(&config.graph.path))
            });
            let beside_input = input_path
                .and_then(|p| p.parent().map(|d| d.join("graph.jsonl")))
                .filter(|p| p.is_file());
            if let Some(path) = explicit.or(beside_input) {
                let graph = memory_graph(&path, max_hops)?;
                let text = format!("memory ({}, {} nodes)", path.display(), graph.node_count());
                (Some(Arc::new(graph)), text)
            } else if let Some(records) = generated_graph {
                let graph = MemoryGraph::from_records(records, max_hops)
                    .context("the generated graph is invalid")?;
                let text = format!("memory (generated, {} nodes)", graph.node_count());
                (Some(Arc::new(graph)), text)
            } else {
                tracing::warn!(
                    "no graph file: set graph.path or --graph (or put graph.jsonl beside the input); \
                     events are scored without graph features (graph.status = \"skipped\")"
                );
                (None, "none (no graph file)".into())
            }
        }
    };
    Ok(ChosenGraph {
        enricher,
        cache,
        warmer,
        description,
    })
}

/// The graph a run enriches with: the enricher (none for `graph.kind = "none"`), the
/// cache's counters when answers are cached, and a description for the run summary.
pub struct ChosenGraph {
    pub enricher: Option<Arc<dyn GraphEnricher>>,
    pub cache: Option<Arc<CacheStats>>,
    /// Fills the cache ahead of demand (Neo4j with `graph.cache_warm_up`).
    pub warmer: Option<CacheWarmer>,
    pub description: String,
}

/// Builds the job: source, graph, model, engine and sink paths.
pub fn build(
    config: &Config,
    args: &RunArgs,
    metrics: Arc<Metrics>,
    deterministic: bool,
) -> anyhow::Result<Setup> {
    let keep = config.dead_letter.max_payload_bytes;
    let max_bytes = config.source.max_event_bytes;
    let mut generated_graph = None;
    let mut acknowledger = None;
    let (source, input_path): (Box<dyn BlockingSource>, Option<PathBuf>) = match (
        &args.input,
        config.source.kind,
    ) {
        (Some(path), _) => (
            Box::new(FileSource::open(path, max_bytes, keep)?),
            Some(path.clone()),
        ),
        (None, SourceKind::File) => {
            if config.source.path.is_empty() {
                bail!("source.kind is \"file\" but source.path is empty; set source.path or pass --input FILE");
            }
            let path = PathBuf::from(&config.source.path);
            (
                Box::new(FileSource::open(&path, max_bytes, keep)?),
                Some(path),
            )
        }
        (None, SourceKind::Generator) => {
            let source = GeneratorSource::new(generator_options(config)?)
                .context("cannot start the built-in generator (source.generator.*)")?;
            generated_graph = Some(source.graph_records());
            (Box::new(source), None)
        }
        (None, SourceKind::Kafka) => {
            let source = KafkaSource::subscribe(
                &config.kafka,
                config.pipeline.batch_timeout,
                max_bytes,
                keep,
            )?;
            acknowledger = Some(source.acknowledger());
            (Box::new(source), None)
        }
    };

    let ChosenGraph {
        enricher,
        cache: graph_cache,
        warmer: graph_warmer,
        description: graph_description,
    } = graph(
        config,
        args.graph.as_deref(),
        input_path.as_deref(),
        generated_graph,
    )?;

    let model = load_model(config, args.model.as_deref())?;
    let engine = engine(config, Some(&model), enricher, metrics, deterministic)?;

    let target = |arg: &Option<PathBuf>, kind: SinkKind, path: &str| match (arg, kind) {
        (Some(p), _) => Target::Path(p.clone()),
        (None, SinkKind::Stdout) => Target::Path(PathBuf::from("-")),
        (None, SinkKind::File) => Target::Path(PathBuf::from(path)),
        (None, SinkKind::Kafka) => Target::Kafka,
    };
    let results = target(&args.output, config.sink.kind, &config.sink.path);
    let dead_letters = target(
        &args.dead_letter,
        config.dead_letter.kind,
        &config.dead_letter.path,
    );
    let outputs: Vec<NamedPath> = [
        ("the results file (--output / sink.path)", results.path()),
        (
            "the dead-letter file (--dead-letter / dead_letter.path)",
            dead_letters.path(),
        ),
        ("the summary (--summary-json)", args.summary_json.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, path)| Some(NamedPath { name, path: path? }))
    .collect();
    let input = input_path.as_deref().map(|path| NamedPath {
        name: "the input (--input / source.path)",
        path,
    });
    refuse_same_file(input, &outputs)?;
    Ok(Setup {
        engine,
        model: Arc::new(model),
        source,
        acknowledger,
        results,
        dead_letters,
        graph_description,
        graph_cache,
        graph_warmer,
    })
}

/// The options of the Neo4j enricher from `[graph]`.
pub fn neo4j_options(config: &Config) -> anyhow::Result<Neo4jOptions> {
    let graph = &config.graph;
    if graph.password.is_empty() {
        bail!(
            "graph.kind is \"neo4j\" but no password is set: set RISKSTREAM__GRAPH__PASSWORD in the \
             environment (or graph.password in the configuration file)"
        );
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

/// The Neo4j enricher with what goes with it: the cache's counters when it is cached, the
/// cache warmer when `graph.cache_warm_up`, and a description for the start-up log.
pub struct Neo4jSetup {
    pub enricher: Arc<dyn GraphEnricher>,
    pub cache: Option<Arc<CacheStats>>,
    pub warmer: Option<CacheWarmer>,
    pub description: String,
}

/// The Neo4j enricher, behind the cache when `graph.cache_enabled`. Connects lazily: a job
/// started while Neo4j is down scores without graph features until it is up.
pub fn neo4j_graph(config: &Config) -> anyhow::Result<Neo4jSetup> {
    let graph = &config.graph;
    let neo4j = Neo4jGraph::connect(&neo4j_options(config)?).with_context(|| {
        format!(
            "cannot set up the Neo4j client for {} (graph.uri)",
            graph.redacted_uri()
        )
    })?;
    if !graph.cache_enabled {
        return Ok(Neo4jSetup {
            enricher: Arc::new(neo4j),
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
    Ok(Neo4jSetup {
        enricher: Arc::new(cached.clone()),
        cache: Some(cached.stats()),
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
