//! Training data: a generated data set (events, labels, graph) turned into labelled feature
//! rows by the same engine code the live job runs, in deterministic mode.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ahash::AHashMap;
use serde::Deserialize;

use riskstream_inference::Dataset;

use crate::engine::{Engine, Enriched, FeatureBuffers};
use crate::gen::FraudPattern;
use crate::source::file::FileSource;
use crate::source::{BlockingSource, SourceError};

/// Errors reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read labels file `{path}`: {source}")]
    LabelsIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("labels file `{path}` line {line}: {detail}")]
    LabelsFormat {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("event `{event_id}` has no label in `{path}`; the events and labels files must come from the same `riskstream gen` run")]
    Unlabelled { event_id: String, path: PathBuf },
    #[error(transparent)]
    Source(#[from] SourceError),
}

#[derive(Deserialize)]
struct LabelLine {
    event_id: String,
    fraud: bool,
    pattern: FraudPattern,
}

/// Ground truth by event id.
pub fn read_labels(path: &Path) -> Result<AHashMap<String, (bool, FraudPattern)>, DatasetError> {
    let io = |source| DatasetError::LabelsIo {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut labels = AHashMap::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LabelLine =
            serde_json::from_str(&line).map_err(|e| DatasetError::LabelsFormat {
                path: path.to_path_buf(),
                line: i + 1,
                detail: e.to_string(),
            })?;
        labels.insert(parsed.event_id, (parsed.fraud, parsed.pattern));
    }
    Ok(labels)
}

/// The group tag of a pattern in [`Dataset::groups`]: its position in [`FraudPattern::ALL`].
pub fn pattern_group(pattern: FraudPattern) -> u8 {
    FraudPattern::ALL
        .iter()
        .position(|p| *p == pattern)
        .unwrap_or(0) as u8
}

/// Featurises `events` (JSONL) with `engine`, labels from `labels`. Records that do not
/// decode are skipped and counted in the engine's metrics, as the job would dead-letter them.
pub async fn featurize(
    engine: &Engine,
    events: &Path,
    labels: &Path,
    batch_size: usize,
    max_event_bytes: usize,
) -> Result<Dataset, DatasetError> {
    let truth = read_labels(labels)?;
    let mut source = FileSource::open(events, max_event_bytes, 256)?;
    let mut data = Dataset {
        feature_names: engine.layout.names(),
        ..Dataset::default()
    };
    let mut clock = crate::engine::SnapshotClock::default();
    let mut buffers = FeatureBuffers::default();
    while let Some(raw) = source.next_batch(batch_size)? {
        let decoded = engine.decode(raw);
        let aggregates = engine.aggregate(&decoded.events);
        // Deterministic engines publish inside maybe_snapshot and hand nothing back.
        let _ = engine.maybe_snapshot(&decoded, &mut clock);
        let graphs = engine.enrich(&decoded.events).await;
        for event in &decoded.events {
            let Some((fraud, pattern)) = truth.get(event.event_id.as_str()) else {
                return Err(DatasetError::Unlabelled {
                    event_id: event.event_id.clone(),
                    path: labels.to_path_buf(),
                });
            };
            data.labels.push(if *fraud { 1.0 } else { 0.0 });
            data.groups.push(pattern_group(*pattern));
        }
        let enriched = Enriched {
            decoded,
            aggregates,
            graphs,
            snapshot: engine.snapshots.load_full(),
        };
        engine.features(&enriched, &mut buffers.model, &mut buffers.raw);
        data.features.extend_from_slice(&buffers.model);
    }
    Ok(data)
}
