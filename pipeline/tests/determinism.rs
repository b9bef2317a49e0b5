//! Scores do not depend on how many workers aggregate, nor on the run: the same events,
//! graph and model give bit-identical scores. Runs the engine in its deterministic mode
//! (snapshots by event time, as training and replay use it); the live job publishes
//! snapshots by wall-clock time, so its merchant baselines depend on timing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use riskstream_graph::{GraphEnricher, MemoryGraph};
use riskstream_inference::{DeviceChoice, Model};
use riskstream_pipeline::aggregate::AggregateOptions;
use riskstream_pipeline::dataset::featurize;
use riskstream_pipeline::engine::{Engine, EngineOptions};
use riskstream_pipeline::gen::{write_dataset, GenOptions, EVENTS_FILE, GRAPH_FILE, LABELS_FILE};
use riskstream_pipeline::metrics::Metrics;

const MAX_HOPS: u32 = 3;

fn engine(workers: usize, graph: Arc<dyn GraphEnricher>) -> Engine {
    let options = AggregateOptions {
        workers,
        ..AggregateOptions::default()
    };
    let engine_options = EngineOptions {
        max_event_bytes: 1 << 20,
        graph_deadline: Duration::from_secs(30),
        snapshot_interval: Duration::from_secs(2),
        deterministic: true,
        thresholds: (f32::INFINITY, f32::INFINITY),
        unavailable_policy: riskstream_config::UnavailablePolicy::Score,
    };
    let metrics = Arc::new(Metrics::default());
    Engine::new(engine_options, options, MAX_HOPS, Some(graph), metrics).unwrap()
}

async fn scores(dir: &Path, model: &Model, workers: usize) -> Vec<u32> {
    let graph: Arc<dyn GraphEnricher> =
        Arc::new(MemoryGraph::load(&dir.join(GRAPH_FILE), MAX_HOPS).unwrap());
    let engine = engine(workers, graph);
    let data = featurize(
        &engine,
        &dir.join(EVENTS_FILE),
        &dir.join(LABELS_FILE),
        512,
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(data.feature_names, model.feature_names());
    model
        .score(&data.features, data.n_rows())
        .unwrap()
        .iter()
        .map(|s| s.to_bits())
        .collect()
}

#[tokio::test]
async fn the_same_events_score_the_same_bits_with_any_number_of_workers_and_on_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        seed: 17,
        events: 30_000,
        accounts: 2_000,
        ..GenOptions::default()
    };
    write_dataset(&opts, tmp.path(), |_| {}).unwrap();
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
    let model = Model::load(&model_dir, DeviceChoice::Cpu).unwrap();

    let one = scores(tmp.path(), &model, 1).await;
    assert_eq!(one.len(), 30_000);
    let distinct: std::collections::HashSet<_> = one.iter().collect();
    assert!(distinct.len() > 1000, "scores vary: {}", distinct.len());
    assert_eq!(scores(tmp.path(), &model, 1).await, one, "second run");
    for workers in [2, 4] {
        assert_eq!(
            scores(tmp.path(), &model, workers).await,
            one,
            "{workers} aggregation workers"
        );
    }
}
