//! Replay: re-runs a time range of the input through the job's own stages for incident
//! analysis, and compares what comes out with what the job published.
//!
//! Replay reads `[from − warm-up, to)`: the warm-up part (by default the longest window)
//! only rebuilds the window state, so that aggregates at `from` equal the live job's; the
//! events of `[from, to)` are then decoded, aggregated, enriched and scored exactly as the
//! job does it ([`Engine`]), in a fixed order and in fixed-size scoring batches, so two
//! replays of the same input give the same report. Nothing is ever committed and no
//! consumer group is joined: a running job does not notice a replay.
//!
//! * [`input`]: what is read ([`KafkaReader`](kafka::KafkaReader) or
//!   [`FileReader`](input::FileReader)), in order;
//! * [`original`]: the published results, joined by `event_id`;
//! * [`report`]: the comparison (`report.json`), [`html`]: the same for people
//!   (`report.html`).

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use riskstream_inference::Model;

use crate::aggregate::EventAggregates;
use crate::engine::{Decoded, Engine, EngineError, Enriched, FeatureBuffers, Scored};
use crate::event::Event;
use crate::result::{Reason, ResultRecord};
use crate::source::{RawBatch, SourceError};

pub mod html;
pub mod input;
pub mod kafka;
pub mod original;
pub mod report;

pub use input::{FileReader, PartitionRead, ReadProgress, ReplayBatch, ReplayReader};
pub use kafka::KafkaReader;
pub use original::{Original, Originals};
pub use report::Report;

/// Errors that stop a replay. Each names the topic, file or partition it is about.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{what}: {source}")]
    Kafka {
        what: String,
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Setup(#[from] crate::kafka::KafkaSetupError),
    #[error("topic `{0}` does not exist or has no partitions; check --topic / --results-topic and --brokers")]
    MissingTopic(String),
    #[error(
        "{topic}/{partition} gave nothing for {secs} s before offset {offset}; is the broker up?"
    )]
    Stalled {
        topic: String,
        partition: i32,
        offset: i64,
        secs: u64,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Boxed: the engine's errors are large and rare.
    #[error(transparent)]
    Engine(Box<EngineError>),
    #[error("cannot read or write `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--from ({from}) is not before --to ({to}): give a non-empty range")]
    EmptyRange { from: String, to: String },
}

impl From<EngineError> for ReplayError {
    fn from(error: EngineError) -> Self {
        ReplayError::Engine(Box::new(error))
    }
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Start of the replayed range (event time, ms), inclusive.
    pub from_ms: i64,
    /// End of the replayed range, exclusive.
    pub to_ms: i64,
    /// Start of the warm-up read: `from_ms` minus the longest window unless asked
    /// otherwise.
    pub warm_up_from_ms: i64,
    /// Only these accounts' events are scored and reported (all events still build the
    /// window state); empty for all.
    pub accounts: BTreeSet<String>,
    /// Records per read batch.
    pub read_batch: usize,
    /// Events per scoring batch. Fixed, so scores never depend on how reads were cut.
    pub score_batch: usize,
}

/// One replayed event: where it was read and its result as the job would have published
/// it (encoded by the job's own encoder, then read back as the published results are).
#[derive(Debug, Clone)]
pub struct ReplayedEvent {
    pub event_id: String,
    pub account_id: String,
    pub ts_ms: i64,
    pub partition: i32,
    pub offset: i64,
    pub result: ResultRecord<'static>,
}

/// An input of the range that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayedDeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub kind: &'static str,
    pub reason: String,
}

/// Everything a replay produced, before the published results are joined.
#[derive(Debug, Default)]
pub struct Replayed {
    pub events: Vec<ReplayedEvent>,
    pub dead_letters: Vec<ReplayedDeadLetter>,
    /// Events read before `from` that only rebuilt window state.
    pub warm_up_events: u64,
    /// Records read in all (warm-up, range, dead letters, skipped).
    pub records_read: u64,
    /// Events of the range left out by the account filter.
    pub filtered_out: u64,
    /// Records skipped before the warm-up start (files only).
    pub skipped_before_warm_up: u64,
    pub positions: Vec<PartitionRead>,
    pub seconds: f64,
}

impl Replayed {
    /// Records read per second of replay.
    pub fn records_per_second(&self) -> f64 {
        self.records_read as f64 / self.seconds.max(1e-9)
    }
}

/// Events waiting for a full scoring batch.
#[derive(Default)]
struct ToScore {
    events: Vec<Event>,
    aggregates: Vec<EventAggregates>,
    positions: Vec<(i32, i64)>,
}

/// Replays `reader`'s range through `engine` with `model`. `progress` is called after
/// every read batch.
pub async fn replay(
    engine: &Engine,
    model: &Model,
    reader: &mut dyn ReplayReader,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(ReadProgress),
) -> Result<Replayed, ReplayError> {
    let started = Instant::now();
    let mut out = Replayed::default();
    let mut pending = ToScore::default();
    let mut buffers = FeatureBuffers::default();
    let mut warmed = reader.starts_at_warm_up();
    // Files have no message times: a dead letter belongs to the range when the event
    // before it does.
    let mut last_event_ts = i64::MIN;
    let score_batch = options.score_batch.max(1);
    loop {
        let next = tokio::task::block_in_place(|| reader.next_batch(options.read_batch.max(1)))?;
        let Some(batch) = next else {
            break;
        };
        out.records_read += batch.raw.len() as u64;
        let times = batch.times;
        let mut decoded = engine.decode(batch.raw);
        let mut dead = decoded.dead.iter().peekable();
        let mut applied: Vec<Event> = Vec::with_capacity(decoded.events.len());
        let mut applied_positions = Vec::with_capacity(decoded.events.len());
        let events = std::mem::take(&mut decoded.events);
        // Walk records in order so dead letters are placed among the events.
        for (event, record) in events.into_iter().zip(decoded.records.iter().copied()) {
            while let Some(letter) = dead.next_if(|d| d.record < record) {
                place_dead_letter(
                    &mut out,
                    &decoded,
                    letter,
                    &times,
                    last_event_ts,
                    warmed,
                    options,
                );
            }
            if !warmed {
                if event.ts_ms < options.warm_up_from_ms {
                    out.skipped_before_warm_up += 1;
                    continue;
                }
                warmed = true;
            }
            last_event_ts = event.ts_ms;
            let r = &decoded.raw.records[record as usize];
            applied_positions.push((r.partition, r.offset));
            applied.push(event);
        }
        for letter in dead {
            place_dead_letter(
                &mut out,
                &decoded,
                letter,
                &times,
                last_event_ts,
                warmed,
                options,
            );
        }
        let aggregates = tokio::task::block_in_place(|| engine.aggregate(&applied));
        for ((event, aggs), position) in applied.into_iter().zip(aggregates).zip(applied_positions)
        {
            if event.ts_ms < options.from_ms {
                out.warm_up_events += 1;
                continue;
            }
            if event.ts_ms >= options.to_ms {
                continue;
            }
            if !options.accounts.is_empty() && !options.accounts.contains(&event.account_id) {
                out.filtered_out += 1;
                continue;
            }
            pending.events.push(event);
            pending.aggregates.push(aggs);
            pending.positions.push(position);
            if pending.events.len() >= score_batch {
                score(engine, model, &mut pending, &mut buffers, &mut out).await?;
            }
        }
        progress(reader.progress());
    }
    score(engine, model, &mut pending, &mut buffers, &mut out).await?;
    out.positions = reader.positions();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Records a dead letter if it lies in the range: by message time when the source has
/// one, else by the time of the event read before it.
fn place_dead_letter(
    out: &mut Replayed,
    decoded: &Decoded,
    letter: &crate::engine::DeadRecord,
    times: &[Option<i64>],
    last_event_ts: i64,
    warmed: bool,
    options: &ReplayOptions,
) {
    let at = times
        .get(letter.record as usize)
        .copied()
        .flatten()
        .unwrap_or(if warmed { last_event_ts } else { i64::MIN });
    if at < options.from_ms || at >= options.to_ms {
        return;
    }
    let record = &decoded.raw.records[letter.record as usize];
    out.dead_letters.push(ReplayedDeadLetter {
        partition: record.partition,
        offset: record.offset,
        kind: letter.kind,
        reason: letter.reason.clone(),
    });
}

/// Enriches and scores the waiting events as one batch and encodes their results.
async fn score(
    engine: &Engine,
    model: &Model,
    pending: &mut ToScore,
    buffers: &mut FeatureBuffers,
    out: &mut Replayed,
) -> Result<(), ReplayError> {
    if pending.events.is_empty() {
        return Ok(());
    }
    let events = std::mem::take(&mut pending.events);
    let aggregates = std::mem::take(&mut pending.aggregates);
    let positions = std::mem::take(&mut pending.positions);
    let graphs = engine.enrich(&events).await;
    let enriched = Enriched {
        decoded: Decoded {
            raw: RawBatch::default(),
            events,
            records: Vec::new(),
            dead_letters: Vec::new(),
            dead: Vec::new(),
        },
        aggregates,
        graphs,
        snapshot: engine.snapshots.load_full(),
    };
    let scored = tokio::task::block_in_place(|| engine.score(model, enriched, buffers));
    // Events the model could not score are dead letters, as in the job.
    let mut positions = positions;
    for failed in scored.failed.iter().rev() {
        let (partition, offset) = positions.remove(failed.row);
        out.dead_letters.push(ReplayedDeadLetter {
            partition,
            offset,
            kind: crate::dead_letter::SCORING_FAILED,
            reason: failed.reason.clone(),
        });
    }
    encode(engine, &scored, &positions, out);
    Ok(())
}

/// Encodes each scored event with the job's result encoder and reads it back through the
/// typed record, exactly as the published results are read, so that both sides of the
/// comparison went through the same text.
fn encode(engine: &Engine, scored: &Scored, positions: &[(i32, i64)], out: &mut Replayed) {
    let specs = engine.layout.describe();
    let enriched = &scored.enriched;
    let mut line = Vec::with_capacity(1024);
    let mut reasons: Vec<Reason<'_>> = Vec::with_capacity(crate::engine::REASONS);
    for (i, event) in enriched.decoded.events.iter().enumerate() {
        let (partition, offset) = positions[i];
        crate::result::readable_reasons(specs, &scored.reasons[i], &mut reasons);
        let source = crate::dead_letter::SourceRef {
            topic: "replay",
            partition,
            offset,
        };
        let view = engine.result_view(scored, i, &reasons, source, "", 0.0);
        line.clear();
        view.encode(&mut line);
        // The encoder writes a readable record by construction (a property test holds it
        // to that); should it ever not, the record is taken as built.
        let result = ResultRecord::from_json(&line).unwrap_or_else(|_| view.record().into_owned());
        out.events.push(ReplayedEvent {
            event_id: event.event_id.clone(),
            account_id: event.account_id.clone(),
            ts_ms: event.ts_ms,
            partition,
            offset,
            result,
        });
    }
}

/// The ids of the replayed events, to select their published results.
pub fn event_ids(replayed: &Replayed) -> HashSet<String> {
    replayed.events.iter().map(|e| e.event_id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use riskstream_inference::DeviceChoice;

    use super::*;
    use crate::aggregate::AggregateOptions;
    use crate::decode::parse_ts;
    use crate::features::FeatureLayout;

    fn engine(model: &Model) -> Engine {
        let options = AggregateOptions::default();
        Engine::check_model(model, &FeatureLayout::new(&options.windows, 3)).unwrap();
        Engine::for_tests(model, options)
    }

    fn model() -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
        Model::load(&dir, DeviceChoice::Cpu).unwrap()
    }

    fn line(id: &str, ts: &str, account: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","ts":"{ts}","account_id":"{account}","merchant_id":"M-1","amount":25.0,"channel":"card","country":"DE"}}"#
        )
    }

    fn ms(ts: &str) -> i64 {
        parse_ts(ts).unwrap()
    }

    async fn run(file: &Path, read_batch: usize, score_batch: usize) -> Replayed {
        let model = model();
        let engine = engine(&model);
        let mut reader = FileReader::open(file, 4096, 256).unwrap();
        let options = ReplayOptions {
            from_ms: ms("2026-11-22T11:00:00Z"),
            to_ms: ms("2026-11-22T11:30:00Z"),
            warm_up_from_ms: ms("2026-11-22T10:10:00Z"),
            accounts: BTreeSet::new(),
            read_batch,
            score_batch,
        };
        replay(&engine, &model, &mut reader, &options, &mut |_| {})
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn only_the_range_is_reported_and_the_warm_up_builds_its_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        for text in [
            line("e-1", "2026-11-22T10:00:00Z", "A-1"),
            line("e-2", "2026-11-22T10:30:00Z", "A-1"),
            line("e-3", "2026-11-22T10:59:30Z", "A-1"),
            line("e-4", "2026-11-22T11:00:10Z", "A-1"),
            "this is not json".to_string(),
            line("e-5", "2026-11-22T11:00:20Z", "A-1"),
            line("e-6", "2026-11-22T12:00:00Z", "A-1"),
        ] {
            writeln!(file, "{text}").unwrap();
        }
        drop(file);
        let replayed = run(&path, 100, 512).await;
        let ids: Vec<&str> = replayed
            .events
            .iter()
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(ids, ["e-4", "e-5"]);
        assert_eq!(
            replayed.skipped_before_warm_up, 1,
            "e-1 is before the warm-up"
        );
        assert_eq!(replayed.warm_up_events, 2);
        assert_eq!(replayed.dead_letters.len(), 1);
        assert_eq!(replayed.dead_letters[0].kind, "not_json");
        assert_eq!(replayed.dead_letters[0].offset, 4);
        let account = replayed.events[1]
            .result
            .aggregates
            .account
            .as_ref()
            .unwrap();
        let count = |w: &str| account.window(w).map(|w| w.count);
        assert_eq!(count("1h"), Some(4), "e-2, e-3, e-4 and e-5: {account:?}");
        assert_eq!(count("24h"), Some(4), "e-1 was not read: {account:?}");

        // Neither the read batches nor the scoring batches change a result.
        let other = run(&path, 1, 1).await;
        let results = |r: &Replayed| {
            r.events
                .iter()
                .map(|e| e.result.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(results(&replayed), results(&other));
    }
}
