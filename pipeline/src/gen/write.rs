//! Writing a dataset directory: graph, events, labels, then the manifest.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entities::GraphCounts;
use super::{FraudPattern, GenError, GenOptions, Generator, PatternCounts};
use crate::event::format_ts;

/// The events, one wire-form JSON object per line, in time order.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The ground truth, one line per event in the same order as the events.
pub const LABELS_FILE: &str = "labels.jsonl";
/// The entity graph, one node or edge per line.
pub const GRAPH_FILE: &str = "graph.jsonl";
/// Options, counts and format notes; written last, so its presence marks a complete
/// dataset.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Bumped when the layout or meaning of the files changes.
const FORMAT_VERSION: u32 = 1;
/// Events between progress reports.
const PROGRESS_EVERY: u64 = 1 << 16;
const WRITE_BUFFER: usize = 1 << 20;

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenSummary {
    /// All events written (benign and fraud).
    pub events: u64,
    /// Fraud events written (all patterns).
    pub fraud: u64,
    /// Events written per pattern (`none` = benign).
    pub by_pattern: PatternCounts,
    /// What the graph file holds.
    pub graph: GraphCounts,
    /// Time of the first and the last event, RFC 3339 (empty strings when no events).
    pub first_ts: String,
    pub last_ts: String,
}

/// One line of `labels.jsonl`.
#[derive(Serialize)]
struct LabelRecord<'a> {
    event_id: &'a str,
    fraud: bool,
    pattern: FraudPattern,
}

#[derive(Serialize)]
struct Manifest<'a> {
    format_version: u32,
    options: ManifestOptions,
    span: ManifestSpan,
    counts: &'a GenSummary,
    files: ManifestFiles,
}

#[derive(Serialize)]
struct ManifestOptions {
    seed: u64,
    events: u64,
    accounts: u64,
    fraud_rate: f64,
    start: String,
}

#[derive(Serialize)]
struct ManifestSpan {
    start: String,
    end: String,
    days: f64,
}

#[derive(Serialize)]
struct ManifestFiles {
    events: &'static str,
    labels: &'static str,
    graph: &'static str,
}

/// Creates a file for buffered writing, naming it in the error.
fn create(path: &Path) -> Result<BufWriter<File>, GenError> {
    let file = File::create(path).map_err(|source| GenError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
}

/// Writes one value as a JSON line.
fn json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

fn write_error(path: PathBuf) -> impl FnOnce(io::Error) -> GenError {
    move |source| GenError::Write { path, source }
}

/// Generates the dataset for `opts` into `out_dir` (created if missing): `graph.jsonl`,
/// `events.jsonl`, `labels.jsonl` and finally `manifest.json`, replacing files of those
/// names. `progress` is called with the number of events written every 65,536 events and
/// once at the end. Same options → byte-identical files.
pub fn write_dataset(
    opts: &GenOptions,
    out_dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<GenSummary, GenError> {
    let generator = Generator::new(opts.clone())?;
    std::fs::create_dir_all(out_dir).map_err(write_error(out_dir.to_owned()))?;

    let graph_path = out_dir.join(GRAPH_FILE);
    let mut graph = create(&graph_path)?;
    for record in generator.graph_records() {
        json_line(&mut graph, &record).map_err(write_error(graph_path.clone()))?;
    }
    graph.flush().map_err(write_error(graph_path))?;

    let events_path = out_dir.join(EVENTS_FILE);
    let labels_path = out_dir.join(LABELS_FILE);
    let mut events = create(&events_path)?;
    let mut labels = create(&labels_path)?;
    let mut by_pattern = PatternCounts::default();
    let mut first_ms = None;
    let mut last_ms = None;
    for labeled in generator.events() {
        let event = &labeled.event;
        json_line(&mut events, &event.to_record()).map_err(write_error(events_path.clone()))?;
        let label = LabelRecord {
            event_id: &event.event_id,
            fraud: labeled.fraud,
            pattern: labeled.pattern,
        };
        json_line(&mut labels, &label).map_err(write_error(labels_path.clone()))?;
        first_ms.get_or_insert(event.ts_ms);
        last_ms = Some(event.ts_ms);
        by_pattern.add(labeled.pattern);
        if by_pattern.total() % PROGRESS_EVERY == 0 {
            progress(by_pattern.total());
        }
    }
    events.flush().map_err(write_error(events_path))?;
    labels.flush().map_err(write_error(labels_path))?;
    progress(by_pattern.total());

    let summary = GenSummary {
        events: by_pattern.total(),
        fraud: by_pattern.fraud(),
        by_pattern,
        graph: generator.graph_counts(),
        first_ts: first_ms.map(format_ts).unwrap_or_default(),
        last_ts: last_ms.map(format_ts).unwrap_or_default(),
    };
    let (span_start, span_end) = generator.span();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        options: ManifestOptions {
            seed: opts.seed,
            events: opts.events,
            accounts: opts.accounts,
            fraud_rate: opts.fraud_rate,
            start: format_ts(opts.start_ms),
        },
        span: ManifestSpan {
            start: format_ts(span_start),
            end: format_ts(span_end),
            days: (span_end - span_start) as f64 / 86_400_000.0,
        },
        counts: &summary,
        files: ManifestFiles {
            events: "events.jsonl: one event per line in wire form (event_id, ts RFC 3339 with \
                     milliseconds and Z, account_id, amount; optional counterparty_id, \
                     merchant_id, device_id, ip, currency, channel, country), in time order",
            labels: "labels.jsonl: one line per event in the same order: event_id, fraud \
                     (bool), pattern (none | ring | velocity | mule | takeover)",
            graph: "graph.jsonl: nodes first ({type:node, id, kind: account | device | ip | \
                    merchant, flagged}), then edges ({type:edge, src, dst, rel: uses | \
                    transfers | owns}); devices and IPs not in the graph are unknown ones",
        },
    };
    let manifest_path = out_dir.join(MANIFEST_FILE);
    let mut out = create(&manifest_path)?;
    serde_json::to_writer_pretty(&mut out, &manifest)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(write_error(manifest_path))?;
    Ok(summary)
}
