//! The events target: records through the job's own stages, in process.
//!
//! A case is either a JSONL file read by the real file source (lines joined by `\n` or
//! `\r\n`, a BOM now and then, blank lines) or one Kafka-like message of any bytes. Lines
//! are valid events, mutated valid events or random bytes. The engine (window state,
//! snapshots) lives across cases, as in a job, and starts afresh every
//! [`CASES_PER_ENGINE`] cases to bound its memory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::RngExt;
use serde_json::{json, Map, Value};

use riskstream_config::Config;
use riskstream_graph::{EntityKind, GraphEnricher, GraphRecord, MemoryGraph, Relation};
use riskstream_inference::{DeviceChoice, Model};
use riskstream_pipeline::dead_letter::{base64, SourceRef};
use riskstream_pipeline::engine::{Engine, Enriched, FeatureBuffers, SnapshotClock};
use riskstream_pipeline::metrics::Metrics;
use riskstream_pipeline::result::{readable_reasons, Reason, ResultRecord};
use riskstream_pipeline::source::file::FileSource;
use riskstream_pipeline::source::{BlockingSource, RawBatch};

use super::{shown, Case, Checked, EventsMode, Target, TargetKind};
use crate::mutate::{self, pick, Rng};
use crate::HarnessError;

/// Cases one engine sees before it is replaced by a fresh one.
pub const CASES_PER_ENGINE: u64 = 4096;

/// `source.max_event_bytes` of the fuzzed engine: small, so that long strings reach the
/// oversize path often.
const MAX_EVENT_BYTES: usize = 4096;

/// `dead_letter.max_payload_bytes`: how much of an oversize line the file source keeps.
const KEEP_BYTES: usize = 512;

/// Event time of the first case: events are from the recent past, as in a live stream.
const BASE_TS_MS: i64 = 1_795_305_600_000; // 2026-11-22T00:00:00Z

const ACCOUNTS: u32 = 30;
const DEVICES: u32 = 10;
const MERCHANTS: u32 = 8;
const IPS: u32 = 8;

/// Blank lines a file may hold between events: no records.
const BLANK_LINES: [&[u8]; 3] = [b"\n", b"\r\n", b"  \n"];

/// Timestamps that are valid RFC 3339 or nearly so, far away or oddly written.
const STRANGE_TS: &[&str] = &[
    "9999-12-31T23:59:59Z",
    "9999-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "2026-11-22T10:00:60Z",
    "2026-02-30T00:00:00Z",
    "2026-11-22T24:00:00Z",
    "2026-11-22T10:00:00+14:00",
    "2026-11-22T10:00:00-23:59",
    "2026-11-22T10:00:00+99:99",
    "2026-11-22t10:00:00z",
    "2026-11-22 10:00:00Z",
    "2026-11-22T10:00:00.123456789123456789Z",
    "2026-11-22T10:00:00",
    "2026-11-22",
    "+275760-09-13T00:00:00Z",
    "-000001-01-01T00:00:00Z",
    "2026-11-22T10:00:00.Z",
    "2026-11-22T10:00:00,5Z",
    "1e308",
    "",
    "now",
];

pub struct Events {
    model: Model,
    graph: Arc<dyn GraphEnricher>,
    engine: Engine,
    clock: SnapshotClock,
    buffers: FeatureBuffers,
    cases_on_engine: u64,
    runtime: tokio::runtime::Runtime,
    /// Holds the events file of file cases; removed with the target.
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Events {
    pub fn new(model_dir: &Path) -> Result<Events, HarnessError> {
        let setup = |message: String| HarnessError::Setup {
            target: "events",
            message,
        };
        let model = Model::load(model_dir, DeviceChoice::Cpu)
            .map_err(|e| setup(format!("model {}: {e}", model_dir.display())))?;
        let graph: Arc<dyn GraphEnricher> = Arc::new(
            MemoryGraph::from_records(graph_fixture(), 3).map_err(|e| setup(e.to_string()))?,
        );
        let engine = build_engine(&model, &graph).map_err(setup)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| setup(format!("runtime: {e}")))?;
        let dir = tempfile::tempdir().map_err(|e| setup(format!("temporary directory: {e}")))?;
        let file = dir.path().join("events.jsonl");
        Ok(Events {
            model,
            graph,
            engine,
            clock: SnapshotClock::default(),
            buffers: FeatureBuffers::default(),
            cases_on_engine: 0,
            runtime,
            _dir: dir,
            file,
        })
    }

    fn fresh_engine(&mut self) {
        // The engine was built once with these inputs, so building it again succeeds.
        if let Ok(engine) = build_engine(&self.model, &self.graph) {
            self.engine = engine;
        }
        self.clock = SnapshotClock::default();
        self.cases_on_engine = 0;
    }

    /// The records of a case, as its source hands them to the job.
    fn read(&self, case: &Case) -> Result<Vec<RawBatch>, String> {
        match case.mode {
            EventsMode::Message => {
                let mut batch = RawBatch::new("fuzz".into(), 1);
                batch.push(&case.bytes, 0, 0, Instant::now());
                Ok(vec![batch])
            }
            EventsMode::File => {
                std::fs::write(&self.file, &case.bytes)
                    .map_err(|e| format!("harness: cannot write {}: {e}", self.file.display()))?;
                let mut source = FileSource::open(&self.file, MAX_EVENT_BYTES, KEEP_BYTES)
                    .map_err(|e| format!("file source does not open: {e}"))?;
                let mut batches = Vec::new();
                loop {
                    match source.next_batch(512) {
                        Ok(Some(batch)) => batches.push(batch),
                        Ok(None) => break,
                        Err(e) => return Err(format!("file source failed: {e}")),
                    }
                }
                Ok(batches)
            }
        }
    }

    /// One batch through decode → aggregate → enrich → score → result encoding, checked.
    fn process(
        &mut self,
        raw: RawBatch,
        expected: &mut std::slice::Iter<'_, Expected>,
        pristine: &HashSet<&[u8]>,
        checked: &mut Checked,
    ) -> Result<(), String> {
        let n = raw.len();
        let wanted: Vec<&Expected> = expected.by_ref().take(n).collect();
        if wanted.len() != n {
            return Err(format!(
                "the source read more records ({n} in this batch) than the input has"
            ));
        }
        for (i, (record, want)) in raw.records.iter().zip(&wanted).enumerate() {
            let payload = raw.payload(record);
            let oversize = raw.oversize_len(i);
            let (kept, size) = want.kept_and_size();
            if payload != kept || oversize.unwrap_or(payload.len()) != size {
                return Err(format!(
                    "record {i} reads as {} (size {:?}), the input has {} (size {size})",
                    shown(payload),
                    oversize,
                    shown(kept)
                ));
            }
        }
        let records: Vec<Vec<u8>> = raw
            .records
            .iter()
            .map(|r| raw.payload(r).to_vec())
            .collect();

        let decoded = self.engine.decode(raw);
        check_dead_letters(&decoded, &records, &wanted)?;
        if decoded.events.len() + decoded.dead.len() != n {
            return Err(format!(
                "{n} records decoded into {} events and {} dead letters",
                decoded.events.len(),
                decoded.dead.len()
            ));
        }
        let mut seen = vec![false; n];
        for r in decoded
            .records
            .iter()
            .chain(decoded.dead.iter().map(|d| &d.record))
        {
            let r = *r as usize;
            if r >= n || std::mem::replace(&mut seen[r], true) {
                return Err(format!(
                    "record {r} is accounted for twice or does not exist"
                ));
            }
        }
        for dead in &decoded.dead {
            let bytes = &records[dead.record as usize];
            if pristine.contains(bytes.as_slice()) && dead.kind != "future_timestamp" {
                return Err(format!(
                    "a valid event became a dead letter ({}: {}): {}",
                    dead.kind,
                    dead.reason,
                    shown(bytes)
                ));
            }
        }

        let aggregates = self.engine.aggregate(&decoded.events);
        if aggregates.len() != decoded.events.len() {
            return Err(format!(
                "{} events got {} aggregates",
                decoded.events.len(),
                aggregates.len()
            ));
        }
        let _ = self.engine.maybe_snapshot(&decoded, &mut self.clock);
        let engine = &self.engine;
        let graphs = self
            .runtime
            .block_on(async { engine.enrich(&decoded.events).await });
        let events = decoded.events.len();
        let dead = decoded.dead.len();
        let enriched = Enriched {
            decoded,
            aggregates,
            graphs,
            snapshot: self.engine.snapshots.load_full(),
        };
        let scored = self.engine.score(&self.model, enriched, &mut self.buffers);
        // The shipped model scores every event it is given: a row it refused is a finding.
        if let Some(row) = scored.failed.first() {
            return Err(format!(
                "the model refused {} of {events} events of the batch (first: {})",
                scored.failed.len(),
                row.reason
            ));
        }
        if scored.scores.len() != events {
            return Err(format!(
                "{events} events got {} scores",
                scored.scores.len()
            ));
        }
        let specs = self.engine.layout.describe();
        let mut reasons: Vec<Reason<'_>> = Vec::new();
        let mut line = Vec::new();
        for (i, event) in scored.enriched.decoded.events.iter().enumerate() {
            let score = scored.scores[i];
            if !score.is_finite() || !(0.0..=1.0).contains(&score) {
                return Err(format!(
                    "event {:?} scored {score}, not a number in [0, 1]",
                    event.event_id
                ));
            }
            readable_reasons(specs, &scored.reasons[i], &mut reasons);
            let source = SourceRef {
                topic: "fuzz",
                partition: 0,
                offset: i as i64,
            };
            let view =
                self.engine
                    .result_view(&scored, i, &reasons, source, &scored.processed_at, 0.0);
            line.clear();
            view.encode(&mut line);
            match ResultRecord::from_json(&line) {
                Ok(record) if record.event_id == event.event_id && record.score == score => {}
                Ok(record) => {
                    return Err(format!(
                        "result line of {:?} reads back as event {:?} score {}: {}",
                        event.event_id,
                        record.event_id,
                        record.score,
                        shown(&line)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "result line does not read back ({e}): {}",
                        shown(&line)
                    ))
                }
            }
        }
        checked.inputs += n as u64;
        checked.results += events as u64;
        checked.dead_letters += dead as u64;
        Ok(())
    }
}

impl Target for Events {
    fn generate(&mut self, rng: &mut Rng, case: u64) -> Case {
        let ts_ms = BASE_TS_MS + (case % CASES_PER_ENGINE) as i64 * 1_500;
        let mut pristine = Vec::new();
        let mut line = |rng: &mut Rng, k: u64| {
            let (bytes, valid) = event_line(rng, case * 16 + k, ts_ms + k as i64 * 7);
            if valid {
                pristine.push(bytes.clone());
            }
            bytes
        };
        if rng.random_bool(0.35) {
            let bytes = line(rng, 0);
            let mut out = Case::new(TargetKind::Events, bytes);
            out.mode = EventsMode::Message;
            out.pristine = pristine;
            return out;
        }
        let mut file = Vec::new();
        if rng.random_bool(0.1) {
            file.extend_from_slice(mutate::BOM);
        }
        let lines = rng.random_range(1..=6);
        for k in 0..lines {
            if rng.random_bool(0.1) {
                let blank: &&[u8] = pick(rng, &BLANK_LINES);
                file.extend_from_slice(blank);
            }
            file.extend_from_slice(&line(rng, k));
            if k + 1 < lines || rng.random_bool(0.7) {
                file.extend_from_slice(if rng.random_bool(0.2) { b"\r\n" } else { b"\n" });
            }
        }
        let mut out = Case::new(TargetKind::Events, file);
        out.pristine = pristine;
        out
    }

    fn check(&mut self, case: &Case) -> Result<Checked, String> {
        if self.cases_on_engine >= CASES_PER_ENGINE {
            self.fresh_engine();
        }
        self.cases_on_engine += 1;
        let expected = match case.mode {
            EventsMode::Message => vec![Expected::whole(case.bytes.clone())],
            EventsMode::File => expected_lines(&case.bytes),
        };
        let pristine: HashSet<&[u8]> = case.pristine.iter().map(Vec::as_slice).collect();
        let mut checked = Checked::default();
        let batches = self.read(case)?;
        let mut wanted = expected.iter();
        for batch in batches {
            self.process(batch, &mut wanted, &pristine, &mut checked)?;
        }
        let left = wanted.count();
        if left > 0 {
            return Err(format!(
                "{left} records of the input were never read by the source"
            ));
        }
        Ok(checked)
    }

    fn reset(&mut self) {
        self.fresh_engine();
    }
}

fn build_engine(model: &Model, graph: &Arc<dyn GraphEnricher>) -> Result<Engine, String> {
    let mut config = Config::default();
    config.source.max_event_bytes = MAX_EVENT_BYTES;
    config.dead_letter.max_payload_bytes = KEEP_BYTES;
    riskstream_pipeline::job::engine(
        &config,
        Some(model),
        Some(graph.clone()),
        Arc::new(Metrics::default()),
        true,
    )
    .map_err(|e| format!("engine: {e}"))
}

/// A record the input holds: its bytes and whether the source must cut it.
#[derive(Debug, Clone)]
struct Expected {
    bytes: Vec<u8>,
    /// The file source keeps only a prefix of a line over the limit.
    cut: bool,
}

impl Expected {
    fn whole(bytes: Vec<u8>) -> Expected {
        Expected { bytes, cut: false }
    }

    /// The bytes the source hands over and the record's true size.
    fn kept_and_size(&self) -> (&[u8], usize) {
        let size = self.bytes.len();
        if self.cut && size > MAX_EVENT_BYTES {
            (&self.bytes[..KEEP_BYTES.min(size)], size)
        } else {
            (&self.bytes, size)
        }
    }
}

/// The records of a JSONL file, worked out independently of the file source: a leading
/// BOM is not part of the first line, a line ends at `\n` (a `\r` before it is part of the
/// ending), empty lines are no records.
fn expected_lines(bytes: &[u8]) -> Vec<Expected> {
    let bytes = bytes.strip_prefix(mutate::BOM).unwrap_or(bytes);
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (mut line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if line.len() < rest.len() {
            line = line.strip_suffix(b"\r").unwrap_or(line);
        }
        if !line.is_empty() {
            out.push(Expected {
                bytes: line.to_vec(),
                cut: true,
            });
        }
        rest = next;
    }
    out
}

/// Each dead letter keeps its input's bytes (a prefix when cut), a kind and a reason.
fn check_dead_letters(
    decoded: &riskstream_pipeline::engine::Decoded,
    records: &[Vec<u8>],
    wanted: &[&Expected],
) -> Result<(), String> {
    let lines: Vec<&[u8]> = decoded
        .dead_letters
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != decoded.dead.len() {
        return Err(format!(
            "{} dead letters but {} dead-letter lines",
            decoded.dead.len(),
            lines.len()
        ));
    }
    for (dead, line) in decoded.dead.iter().zip(lines) {
        let input = &records[dead.record as usize];
        let (_, size) = wanted[dead.record as usize].kept_and_size();
        let letter: Value = serde_json::from_slice(line)
            .map_err(|e| format!("dead-letter line is not JSON ({e}): {}", shown(line)))?;
        let text = |field: &str| letter.get(field).and_then(Value::as_str).unwrap_or("");
        if dead.reason.is_empty() || text("reason").is_empty() || text("kind").is_empty() {
            return Err(format!(
                "dead letter without a kind or reason: {}",
                shown(line)
            ));
        }
        let kept = match (letter.get("payload"), letter.get("payload_base64")) {
            (Some(Value::String(p)), None) => p.as_bytes() == input.as_slice(),
            (None, Some(Value::String(b))) => *b == base64(input),
            _ => false,
        };
        if !kept {
            return Err(format!(
                "dead letter does not keep the input bytes {}: {}",
                shown(input),
                shown(line)
            ));
        }
        let truncated = letter.get("truncated").and_then(Value::as_bool);
        let original = letter.get("original_size").and_then(Value::as_u64);
        if original != Some(size as u64) || truncated != Some(size > input.len()) {
            return Err(format!(
                "dead letter of a {size}-byte input says original_size {original:?}, truncated {truncated:?}"
            ));
        }
    }
    Ok(())
}

/// One event line: a valid event (left valid, or mutated), or random bytes. Returns the
/// bytes and whether they are still a valid event.
fn event_line(rng: &mut Rng, id: u64, ts_ms: i64) -> (Vec<u8>, bool) {
    if rng.random_bool(0.12) {
        let max = if rng.random_bool(0.05) { 6_000 } else { 300 };
        return (mutate::random_bytes(rng, max), false);
    }
    let mut event = valid_event(rng, id, ts_ms);
    let mut valid = rng.random_bool(0.3);
    if !valid {
        for _ in 0..rng.random_range(1..=3) {
            match rng.random_range(0..10) {
                0 => {
                    event.insert("ts".into(), json!(pick(rng, STRANGE_TS)));
                }
                1 | 2 => {
                    event.insert("amount".into(), mutate::extreme_number(rng));
                }
                _ => mutate::mutate_object(rng, &mut event),
            }
        }
    }
    let mut bytes = serde_json::to_vec(&Value::Object(event)).unwrap_or_default();
    if !valid || rng.random_bool(0.1) {
        if rng.random_bool(0.15) {
            let key = *pick(rng, &["amount", "ts", "account_id", "event_id"]);
            mutate::raw_number_splice(rng, &mut bytes, key);
            valid = false;
        }
        if rng.random_bool(0.1) {
            let key = *pick(rng, &["amount", "ts", "account_id", "event_id"]);
            mutate::duplicate_key(rng, &mut bytes, key);
            valid = false;
        }
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=2) {
                mutate::mutate_bytes(rng, &mut bytes);
            }
            valid = false;
        }
    }
    if !valid && bytes.len() > MAX_EVENT_BYTES {
        // Often cut down below the limit, so that big strings also reach the decoder.
        if rng.random_bool(0.5) {
            bytes.truncate(MAX_EVENT_BYTES);
        }
    }
    (bytes, valid)
}

/// A valid event of the fixture's entities, at `ts_ms` or a little later.
fn valid_event(rng: &mut Rng, id: u64, ts_ms: i64) -> Map<String, Value> {
    let account = rng.random_range(1..=ACCOUNTS);
    let mut event = Map::new();
    event.insert("event_id".into(), json!(format!("e-{id}")));
    let ts = ts_ms + rng.random_range(0..1_000);
    event.insert(
        "ts".into(),
        json!(riskstream_pipeline::event::format_ts(ts)),
    );
    event.insert("account_id".into(), json!(format!("A-{account}")));
    let optional = [
        (
            "counterparty_id",
            format!("A-{}", rng.random_range(1..=ACCOUNTS)),
        ),
        (
            "merchant_id",
            format!("M-{}", rng.random_range(1..=MERCHANTS)),
        ),
        ("device_id", format!("D-{}", rng.random_range(1..=DEVICES))),
        ("ip", format!("10.0.0.{}", rng.random_range(1..=IPS))),
        ("currency", (*pick(rng, &["EUR", "USD", "GBP"])).to_string()),
        (
            "channel",
            (*pick(rng, &["card", "transfer", "wallet"])).to_string(),
        ),
        (
            "country",
            (*pick(rng, &["DE", "FR", "US", "NG"])).to_string(),
        ),
    ];
    let amount = (rng.random_range(1..500_000) as f64) / 100.0;
    event.insert("amount".into(), json!(amount));
    for (key, value) in optional {
        if rng.random_bool(0.85) {
            event.insert(key.into(), json!(value));
        }
    }
    event
}

/// The graph the events are enriched with: the fixture's accounts, devices, IPs and
/// merchants, a few of them flagged, joined so that paths of one to three hops exist.
fn graph_fixture() -> Vec<GraphRecord> {
    let mut records = Vec::new();
    let node = |id: String, kind, flagged| GraphRecord::Node { id, kind, flagged };
    for a in 1..=ACCOUNTS {
        records.push(node(format!("A-{a}"), EntityKind::Account, a % 11 == 3));
    }
    for d in 1..=DEVICES {
        records.push(node(format!("D-{d}"), EntityKind::Device, d == 7));
    }
    for m in 1..=MERCHANTS {
        records.push(node(format!("M-{m}"), EntityKind::Merchant, m == 5));
    }
    for i in 1..=IPS {
        records.push(node(format!("10.0.0.{i}"), EntityKind::Ip, false));
    }
    let edge = |src: String, dst: String, rel| GraphRecord::Edge { src, dst, rel };
    for a in 1..=ACCOUNTS {
        records.push(edge(
            format!("A-{a}"),
            format!("D-{}", a % DEVICES + 1),
            Relation::Uses,
        ));
        records.push(edge(
            format!("A-{a}"),
            format!("10.0.0.{}", a % IPS + 1),
            Relation::Uses,
        ));
        if a % 4 == 0 {
            records.push(edge(
                format!("A-{a}"),
                format!("M-{}", a % MERCHANTS + 1),
                Relation::Owns,
            ));
        }
        records.push(edge(
            format!("A-{a}"),
            format!("A-{}", (a * 7) % ACCOUNTS + 1),
            Relation::Transfers,
        ));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_records_are_lines_without_bom_endings_or_blank_lines() {
        let lines = expected_lines(b"\xEF\xBB\xBFa\r\n\n\r\nb\nc\r");
        let bytes: Vec<&[u8]> = lines.iter().map(|e| e.bytes.as_slice()).collect();
        assert_eq!(bytes, [&b"a"[..], b"b", b"c\r"]);
    }
}
