//! The processing core shared by the streaming job, training and replay: the stages of
//! DESIGN.md's data flow as plain functions over micro-batches. The job runs them as tokio
//! tasks connected by bounded channels; training and replay run them one after another so
//! that their output is deterministic.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riskstream_config::UnavailablePolicy;
use riskstream_graph::GraphEnricher;
use riskstream_inference::{Model, ModelError};

use crate::aggregate::{
    AggregateError, AggregateOptions, AggregateSnapshot, Aggregator, ChangeSet, EventAggregates,
    Snapshots,
};
use crate::dead_letter::{DeadLetter, SourceRef, SCORING_FAILED};
use crate::decode::decode;
use crate::enrich::{enrich_batch, EventGraph, GraphStatus};
use crate::event::{format_ts, Event};
use crate::features::{window_label, FeatureLayout};
use crate::metrics::Metrics;
use crate::observe::events::SnapshotPublished;
use crate::reload::ActiveModel;
use crate::result::{AggregateNames, Decision, Reason, ResultView};
use crate::source::RawBatch;

/// Settings of the engine that come from configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `source.max_event_bytes`.
    pub max_event_bytes: usize,
    /// `graph.batch_deadline`.
    pub graph_deadline: Duration,
    /// `snapshot.interval`.
    pub snapshot_interval: Duration,
    /// Snapshots by event time at batch boundaries instead of by wall-clock time, so that
    /// the same input always sees the same snapshots (training, replay, tests).
    pub deterministic: bool,
    /// Decision thresholds (review, block).
    pub thresholds: (f32, f32),
    /// `graph.unavailable_policy`: the decision of an event the graph did not answer.
    pub unavailable_policy: UnavailablePolicy,
}

/// The stages' shared state: window aggregates, snapshots, graph, feature layout, metrics.
/// The model is passed to [`Engine::score`] separately, so that featurising for training
/// needs none and a new model can be swapped in between batches. Made by [`Engine::new`]
/// only (`non_exhaustive`), so its parts always agree.
#[non_exhaustive]
pub struct Engine {
    pub options: EngineOptions,
    pub aggregator: Aggregator,
    /// Shared so that readers outside the stages (the admin endpoint, checkpoints) can hold
    /// them for as long as the job runs.
    pub snapshots: Arc<Snapshots>,
    pub enricher: Option<Arc<dyn GraphEnricher>>,
    pub layout: FeatureLayout,
    pub aggregate_names: AggregateNames,
    pub metrics: Arc<Metrics>,
}

/// A decoded batch: the events that decoded (with the index of their raw record) and the
/// dead letters of those that did not, already encoded as JSON lines.
pub struct Decoded {
    pub raw: RawBatch,
    pub events: Vec<Event>,
    pub records: Vec<u32>,
    /// The dead letters as JSON lines, for file sinks.
    pub dead_letters: Vec<u8>,
    /// The same dead letters one by one, for sinks that send each on its own (Kafka).
    pub dead: Vec<DeadRecord>,
}

/// One input that became a dead letter: which record, why, and when.
#[derive(Debug, Clone)]
pub struct DeadRecord {
    /// Index into the batch's records.
    pub record: u32,
    pub kind: &'static str,
    pub reason: String,
    pub received_at: String,
}

/// A batch after the aggregate and enrich stages.
pub struct Enriched {
    pub decoded: Decoded,
    pub aggregates: Vec<EventAggregates>,
    pub graphs: Vec<EventGraph>,
    pub snapshot: Arc<AggregateSnapshot>,
}

/// Reasons of one event: (feature index, raw value, contribution), strongest first.
pub type EventReasons = Vec<(usize, f32, f32)>;

/// A scored batch, ready to encode.
pub struct Scored {
    pub enriched: Enriched,
    pub scores: Vec<f32>,
    pub decisions: Vec<Decision>,
    pub reasons: Vec<EventReasons>,
    pub processed_at: String,
    /// Version of the model that scored every event of the batch.
    pub model_version: Arc<str>,
    /// Events the model could not score, taken out of the batch (dead letters of kind
    /// `scoring_failed`), in the order they came.
    pub failed: Vec<FailedRow>,
}

/// An event the score stage took out of its batch because the model could not score it.
#[derive(Debug, Clone)]
pub struct FailedRow {
    /// The event's index in the batch as it reached the score stage.
    pub row: usize,
    /// Why: the model and its error.
    pub reason: String,
}

/// How many reasons a result lists.
pub const REASONS: usize = 3;

/// Errors that stop the engine (never caused by one bad event).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "model `{version}` was trained on features {expected:?} but this configuration produces {actual:?}; \
         use a model trained with the same aggregate.windows, or retrain with `riskstream train`"
    )]
    FeatureMismatch {
        version: String,
        expected: Vec<String>,
        actual: Vec<String>,
    },
}

impl Engine {
    /// A fresh engine: empty window state for `aggregate` (its keys, windows and workers),
    /// no snapshot yet, and the feature layout of its windows with graph paths of up to
    /// `max_hops` (`graph.max_hops`). `enricher` is `None` when events are scored without a
    /// graph. The one way an engine is made, so the layout, the result field names and the
    /// windows can never disagree.
    pub fn new(
        options: EngineOptions,
        aggregate: AggregateOptions,
        max_hops: u32,
        enricher: Option<Arc<dyn GraphEnricher>>,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, AggregateError> {
        let layout = FeatureLayout::new(&aggregate.windows, max_hops);
        let aggregate_names = Engine::names_for(&aggregate.windows);
        let aggregator = Aggregator::new(aggregate)?;
        let snapshots = Arc::new(Snapshots::new(&aggregator));
        Ok(Engine {
            options,
            aggregator,
            snapshots,
            enricher,
            layout,
            aggregate_names,
            metrics,
        })
    }

    /// The result of event `i` of a scored batch, ready to encode: the one place that
    /// assembles a result from the stages' outputs. Where the event came from, when it was
    /// processed and its latency are the caller's (the job's source and clock, or a
    /// replay's).
    pub fn result_view<'a>(
        &'a self,
        scored: &'a Scored,
        i: usize,
        reasons: &'a [Reason<'a>],
        source: SourceRef<'a>,
        processed_at: &'a str,
        latency_ms: f64,
    ) -> ResultView<'a> {
        let enriched = &scored.enriched;
        ResultView {
            event: &enriched.decoded.events[i],
            score: scored.scores[i],
            decision: scored.decisions[i],
            reasons,
            aggregates: &enriched.aggregates[i],
            aggregate_names: &self.aggregate_names,
            graph: &enriched.graphs[i],
            model_version: &scored.model_version,
            snapshot_id: enriched.snapshot.id,
            source,
            processed_at,
            latency_ms,
        }
    }

    /// Checks that the model reads exactly the features this configuration produces.
    pub fn check_model(model: &Model, layout: &FeatureLayout) -> Result<(), EngineError> {
        let actual = layout.names();
        if model.feature_names() != actual.as_slice() {
            return Err(EngineError::FeatureMismatch {
                version: model.version().to_string(),
                expected: model.feature_names().to_vec(),
                actual,
            });
        }
        Ok(())
    }

    /// The per-key output field names for the configured windows.
    pub fn names_for(windows: &[Duration]) -> AggregateNames {
        let labels: Vec<String> = windows.iter().map(|w| window_label(*w)).collect();
        AggregateNames::new(&labels)
    }

    /// Decode stage: every record becomes an event or a dead letter. Events are admitted
    /// here, in input order ([`Aggregator::admit`]): one too far in the future becomes a
    /// dead letter of kind `future_timestamp` before it reaches any window.
    pub fn decode(&self, raw: RawBatch) -> Decoded {
        let mut events = Vec::with_capacity(raw.len());
        let mut records = Vec::with_capacity(raw.len());
        let mut dead_letters = Vec::new();
        let mut dead = Vec::new();
        let mut received_at: Option<String> = None;
        let now = now_ms();
        for (i, record) in raw.records.iter().enumerate() {
            let bytes = raw.payload(record);
            let outcome = match raw.oversize_len(i) {
                Some(size) => Err(crate::decode::DecodeError::Oversize {
                    size,
                    limit: self.options.max_event_bytes,
                }),
                None => decode(bytes, self.options.max_event_bytes),
            }
            .and_then(|event| self.admit(event, now));
            match outcome {
                Ok(event) => {
                    events.push(event);
                    records.push(i as u32);
                }
                Err(err) => {
                    self.metrics.count_dead_letter(err.kind());
                    let at = received_at.get_or_insert_with(|| format_ts(now_ms()));
                    let position = raw.position(record);
                    let size = raw.oversize_len(i).unwrap_or(bytes.len());
                    let letter = DeadLetter::new(&err, bytes, size, &position, at.clone());
                    // Serialising plain strings and numbers into a Vec cannot fail.
                    if serde_json::to_writer(&mut dead_letters, &letter).is_ok() {
                        dead_letters.push(b'\n');
                    }
                    dead.push(DeadRecord {
                        record: i as u32,
                        kind: letter.kind,
                        reason: letter.reason,
                        received_at: letter.received_at,
                    });
                }
            }
        }
        self.metrics.inputs.fetch_add(raw.len() as u64, Relaxed);
        Decoded {
            raw,
            events,
            records,
            dead_letters,
            dead,
        }
    }

    /// The decoded event, unless its time lies too far ahead of the clock and the
    /// watermark for the aggregator to admit it (`aggregate.max_future_skew`).
    fn admit(&self, event: Event, now_ms: i64) -> Result<Event, crate::decode::DecodeError> {
        match self.aggregator.admit(event.ts_ms, now_ms) {
            Ok(()) => Ok(event),
            Err(future) => Err(crate::decode::DecodeError::FutureTimestamp {
                ts: format_ts(future.ts_ms),
                watermark: format_ts(future.watermark_ms),
                max_skew: riskstream_config::format_duration(future.max_skew),
            }),
        }
    }

    /// Aggregate stage: applies the batch to the window state (per-key order kept) and
    /// returns each event's aggregates, itself included.
    pub fn aggregate(&self, events: &[Event]) -> Vec<EventAggregates> {
        self.aggregator.apply_batch(events)
    }

    /// Called between batches: when a snapshot is due, drains the keys changed since the
    /// last one. In deterministic mode (due by event time) the snapshot is also published
    /// here, so the next batch sees it; otherwise (due by wall-clock time) the drained
    /// changes are returned for the caller to publish off the hot path with
    /// [`Engine::publish`].
    pub fn maybe_snapshot(
        &self,
        decoded: &Decoded,
        clock: &mut SnapshotClock,
    ) -> Option<PendingSnapshot> {
        if let Some(w) = decoded.events.iter().map(|e| e.ts_ms).max() {
            clock.watermark_ms = clock.watermark_ms.max(w);
        }
        // Records of a batch come from few partitions: find each one's newest offset, then
        // name the partition once.
        let mut newest: Vec<(i32, i64)> = Vec::new();
        for record in &decoded.raw.records {
            match newest.iter_mut().find(|(p, _)| *p == record.partition) {
                Some((_, offset)) => *offset = (*offset).max(record.offset),
                None => newest.push((record.partition, record.offset)),
            }
        }
        for (partition, offset) in newest {
            let entry = clock
                .offsets
                .entry(format!("{}/{partition}", decoded.raw.topic))
                .or_insert(offset);
            *entry = (*entry).max(offset);
        }
        let due = if self.options.deterministic {
            let interval = self.options.snapshot_interval.as_millis() as i64;
            clock.watermark_ms >= clock.published_event_ms.saturating_add(interval)
        } else {
            clock.published_at.elapsed() >= self.options.snapshot_interval
        };
        if !due {
            return None;
        }
        let pending = self.take_pending(clock);
        if self.options.deterministic {
            let _published = self.publish(pending);
            None
        } else {
            Some(pending)
        }
    }

    /// The drained changes when a snapshot is due by wall-clock time although no batch
    /// came: the stage calls it on a timer while events it aggregated are not in a
    /// snapshot yet, so that the last events before a quiet spell reach a snapshot (and
    /// `/snapshot`) within one `snapshot.interval`. Never in deterministic mode, whose
    /// snapshots follow event time only.
    pub fn idle_snapshot(&self, clock: &mut SnapshotClock) -> Option<PendingSnapshot> {
        let due = clock.published_at.elapsed() >= self.options.snapshot_interval;
        (!self.options.deterministic && due).then(|| self.take_pending(clock))
    }

    fn take_pending(&self, clock: &mut SnapshotClock) -> PendingSnapshot {
        clock.published_event_ms = clock.watermark_ms;
        clock.published_at = Instant::now();
        PendingSnapshot {
            changes: self.aggregator.drain_changes(),
            watermark_ms: clock.watermark_ms,
            offsets: clock.offsets.clone(),
        }
    }

    /// Builds and publishes a snapshot from drained changes; counts it and returns the
    /// event for the job's observer, `None` when it could not be built (logged).
    pub fn publish(&self, pending: PendingSnapshot) -> Option<SnapshotPublished> {
        match self
            .snapshots
            .publish_changes(pending.changes, pending.watermark_ms, pending.offsets)
        {
            Ok(snapshot) => {
                self.metrics.snapshots.fetch_add(1, Relaxed);
                Some(SnapshotPublished {
                    id: snapshot.id,
                    changed_keys: snapshot.changed_keys,
                    built_in: snapshot.built_in,
                })
            }
            Err(err) => {
                tracing::error!(error = %err, "snapshot not published");
                None
            }
        }
    }

    /// Enrich stage.
    pub async fn enrich(&self, events: &[Event]) -> Vec<EventGraph> {
        let graphs = enrich_batch(
            self.enricher.as_deref(),
            self.options.graph_deadline,
            events,
        )
        .await;
        let unavailable = graphs
            .iter()
            .filter(|g| g.status == GraphStatus::Unavailable)
            .count();
        self.metrics
            .graph_unavailable
            .fetch_add(unavailable as u64, Relaxed);
        graphs
    }

    /// Feature rows of a batch: `model` (what the network reads) and `raw` (what reasons
    /// show), both row-major.
    pub fn features(&self, enriched: &Enriched, model: &mut Vec<f32>, raw: &mut Vec<f32>) {
        let n = self.layout.len();
        let events = &enriched.decoded.events;
        model.clear();
        model.resize(events.len() * n, 0.0);
        raw.clear();
        raw.resize(events.len() * n, 0.0);
        for (i, event) in events.iter().enumerate() {
            // Cut at event-time boundaries by the aggregator, not read from the current
            // snapshot: which snapshot an event meets depends on batch and wall-clock
            // timing, and a replay must reproduce the live job's features.
            let baseline = enriched.aggregates[i]
                .merchant_baseline()
                .map(|b| (b.mean, b.std));
            self.layout.assemble(
                event,
                &enriched.aggregates[i],
                baseline,
                &enriched.graphs[i],
                &mut model[i * n..(i + 1) * n],
                &mut raw[i * n..(i + 1) * n],
            );
        }
    }

    /// Score stage with the engine's own thresholds: scores, decisions and, for results at
    /// or above the review threshold, the top reasons. An event the model cannot score
    /// becomes a dead letter of kind `scoring_failed` (see [`Engine::score_active`]).
    pub fn score(&self, model: &Model, enriched: Enriched, buffers: &mut FeatureBuffers) -> Scored {
        let version = Arc::from(model.version());
        self.score_with(model, self.options.thresholds, version, enriched, buffers)
    }

    /// Score stage with a hot-swappable model: the whole batch is scored, decided and
    /// labelled with `active`, whatever is swapped in meanwhile.
    ///
    /// A batch the model refuses never stops the stream: its events are scored one by one,
    /// and each event that still fails leaves the batch as a dead letter of kind
    /// `scoring_failed` with its original bytes and the model's error (listed in
    /// [`Scored::failed`] too), so that inputs = results + dead letters still holds. Such
    /// an event was aggregated before it reached the model, so its keys' windows count it.
    pub fn score_active(
        &self,
        active: &ActiveModel,
        enriched: Enriched,
        buffers: &mut FeatureBuffers,
    ) -> Scored {
        self.score_with(
            &*active.model,
            active.thresholds,
            active.version.clone(),
            enriched,
            buffers,
        )
    }

    fn score_with<S: RowScorer + ?Sized>(
        &self,
        model: &S,
        thresholds: (f32, f32),
        model_version: Arc<str>,
        mut enriched: Enriched,
        buffers: &mut FeatureBuffers,
    ) -> Scored {
        let n = self.layout.len();
        self.features(&enriched, &mut buffers.model, &mut buffers.raw);
        let rows = enriched.decoded.events.len();
        let mut failed = Vec::new();
        let decide = Decide {
            thresholds,
            unavailable_policy: self.options.unavailable_policy,
        };
        let graphs = &enriched.graphs;
        let (scores, decisions, reasons) = match score_rows(
            model,
            decide,
            graphs,
            n,
            &buffers.model,
            &buffers.raw,
            &mut buffers.flagged,
        ) {
            Ok(scored) => scored,
            Err(err) => {
                tracing::warn!(
                    model = model.version(),
                    events = rows,
                    error = %err,
                    "the model refused a batch; scoring its events one by one"
                );
                let mut scored = (Vec::new(), Vec::new(), Vec::new());
                for row in 0..rows {
                    let span = row * n..(row + 1) * n;
                    match score_rows(
                        model,
                        decide,
                        &graphs[row..=row],
                        n,
                        &buffers.model[span.clone()],
                        &buffers.raw[span],
                        &mut buffers.flagged,
                    ) {
                        Ok((score, decision, reasons)) => {
                            scored.0.extend(score);
                            scored.1.extend(decision);
                            scored.2.extend(reasons);
                        }
                        Err(err) => failed.push(FailedRow {
                            row,
                            reason: format!(
                                "model `{}` cannot score this event: {err}",
                                model.version()
                            ),
                        }),
                    }
                }
                scored
            }
        };
        if !failed.is_empty() {
            self.dead_letter_failed(&mut enriched, &failed);
        }
        for decision in &decisions {
            self.metrics.decisions[decision.index()].fetch_add(1, Relaxed);
        }
        Scored {
            enriched,
            scores,
            decisions,
            reasons,
            processed_at: format_ts(now_ms()),
            model_version,
            failed,
        }
    }

    /// Takes the events of `failed` (rows in ascending order) out of the batch and, where
    /// the batch still holds their raw records, makes each a dead letter of kind
    /// [`SCORING_FAILED`] with its original bytes.
    fn dead_letter_failed(&self, enriched: &mut Enriched, failed: &[FailedRow]) {
        let decoded = &mut enriched.decoded;
        let received_at = format_ts(now_ms());
        for failure in failed {
            self.metrics.count_dead_letter(SCORING_FAILED);
            tracing::debug!(kind = SCORING_FAILED, reason = %failure.reason, "input dead-lettered");
            let Some(&record) = decoded.records.get(failure.row) else {
                continue;
            };
            let raw = &decoded.raw.records[record as usize];
            let bytes = decoded.raw.payload(raw);
            let position = decoded.raw.position(raw);
            let letter = DeadLetter::with_reason(
                SCORING_FAILED,
                failure.reason.clone(),
                bytes,
                bytes.len(),
                &position,
                received_at.clone(),
            );
            // Serialising plain strings and numbers into a Vec cannot fail.
            if serde_json::to_writer(&mut decoded.dead_letters, &letter).is_ok() {
                decoded.dead_letters.push(b'\n');
            }
            // Dead records stay in record order, as the decode stage leaves them.
            let at = decoded.dead.partition_point(|d| d.record < record);
            decoded.dead.insert(
                at,
                DeadRecord {
                    record,
                    kind: SCORING_FAILED,
                    reason: letter.reason,
                    received_at: letter.received_at,
                },
            );
        }
        let rows: Vec<usize> = failed.iter().map(|f| f.row).collect();
        remove_rows(&mut decoded.events, &rows);
        if !decoded.records.is_empty() {
            remove_rows(&mut decoded.records, &rows);
        }
        remove_rows(&mut enriched.aggregates, &rows);
        remove_rows(&mut enriched.graphs, &rows);
    }
}

/// What the score stage asks of a model. [`Model`] is the one implementation; unit tests
/// stand in models that fail for chosen rows.
trait RowScorer {
    fn version(&self) -> &str;
    /// One score per row of `rows` (row-major model inputs).
    fn score(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError>;
    /// Each feature's contribution for each row, against the model's baseline.
    fn contributions(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError>;
}

impl RowScorer for Model {
    fn version(&self) -> &str {
        Model::version(self)
    }

    fn score(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError> {
        Model::score(self, rows, n_rows)
    }

    fn contributions(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError> {
        self.contributions_batch(rows, n_rows, self.baseline())
    }
}

/// How a score becomes a decision: the thresholds, and `graph.unavailable_policy` for an
/// event the graph did not answer.
#[derive(Debug, Clone, Copy)]
struct Decide {
    /// (review, block).
    thresholds: (f32, f32),
    unavailable_policy: UnavailablePolicy,
}

impl Decide {
    /// The decision of an event with `score` whose graph answer had `status`. Only
    /// `unavailable` is an outage; `skipped` (no graph configured) is decided by the score.
    fn decision(self, score: f32, status: GraphStatus) -> Decision {
        let (review, block) = self.thresholds;
        let by_score = Decision::from_score(score, review, block);
        if status != GraphStatus::Unavailable {
            return by_score;
        }
        match self.unavailable_policy {
            UnavailablePolicy::Score => by_score,
            UnavailablePolicy::Review => Decision::Review,
            UnavailablePolicy::Allow => Decision::Allow,
        }
    }
}

/// Scores, decisions and reasons of some rows, in row order.
type ScoredRows = (Vec<f32>, Vec<Decision>, Vec<EventReasons>);

/// Scores, decisions and reasons of the rows in `model_rows` (`n` features each; `raw_rows`
/// alike, for the values reasons show; `graphs` the rows' graph answers). Reasons only for
/// review and block results (documented): their rows go through one batched contributions
/// pass.
fn score_rows<S: RowScorer + ?Sized>(
    model: &S,
    decide: Decide,
    graphs: &[EventGraph],
    n: usize,
    model_rows: &[f32],
    raw_rows: &[f32],
    flagged_rows: &mut Vec<f32>,
) -> Result<ScoredRows, ModelError> {
    let rows = model_rows.len().checked_div(n).unwrap_or(0);
    if rows == 0 {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    let scores = model.score(model_rows, rows)?;
    let decisions: Vec<Decision> = scores
        .iter()
        .zip(graphs)
        .map(|(score, graph)| decide.decision(*score, graph.status))
        .collect();
    let flagged: Vec<usize> = (0..rows)
        .filter(|i| decisions[*i] != Decision::Allow)
        .collect();
    let mut reasons = vec![EventReasons::new(); rows];
    if !flagged.is_empty() {
        flagged_rows.clear();
        for i in &flagged {
            flagged_rows.extend_from_slice(&model_rows[i * n..(i + 1) * n]);
        }
        let contributions = model.contributions(flagged_rows, flagged.len())?;
        for (k, i) in flagged.iter().enumerate() {
            let mut top: EventReasons = contributions[k * n..(k + 1) * n]
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0.0)
                .map(|(f, c)| (f, raw_rows[i * n + f], *c))
                .collect();
            top.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
            top.truncate(REASONS);
            reasons[*i] = top;
        }
    }
    Ok((scores, decisions, reasons))
}

/// Removes the items at `rows` (ascending indices) from `items`, keeping the others' order.
fn remove_rows<T>(items: &mut Vec<T>, rows: &[usize]) {
    let mut i = 0;
    items.retain(|_| {
        let keep = rows.binary_search(&i).is_err();
        i += 1;
        keep
    });
}

/// Reusable feature buffers of the score stage (no per-batch allocation).
#[derive(Default)]
pub struct FeatureBuffers {
    pub model: Vec<f32>,
    pub raw: Vec<f32>,
    /// Rows of the results that get reasons.
    pub flagged: Vec<f32>,
}

/// Changes drained for a snapshot, waiting to be built and published.
pub struct PendingSnapshot {
    pub changes: ChangeSet,
    pub watermark_ms: i64,
    pub offsets: BTreeMap<String, i64>,
}

/// When the last snapshot was published, in event time and wall-clock time, and the
/// newest source offsets applied (recorded in snapshots).
pub struct SnapshotClock {
    pub offsets: BTreeMap<String, i64>,
    pub watermark_ms: i64,
    pub published_event_ms: i64,
    pub published_at: Instant,
}

impl Default for SnapshotClock {
    fn default() -> Self {
        // "Long ago", so that the first batch publishes the first snapshot at once and
        // readers do not wait a whole interval for population baselines.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        SnapshotClock {
            offsets: BTreeMap::new(),
            watermark_ms: i64::MIN,
            published_event_ms: i64::MIN,
            published_at: long_ago,
        }
    }
}

/// Wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
impl Engine {
    /// An engine for `model` with deterministic time, 3 graph hops, no graph and the
    /// model's thresholds: the one unit tests score with.
    pub(crate) fn for_tests(model: &Model, aggregate: AggregateOptions) -> Engine {
        let thresholds = model.thresholds();
        let options = EngineOptions {
            max_event_bytes: 4096,
            graph_deadline: Duration::from_secs(1),
            snapshot_interval: Duration::from_secs(2),
            deterministic: true,
            thresholds: (thresholds.review, thresholds.block),
            unavailable_policy: UnavailablePolicy::Score,
        };
        Engine::new(options, aggregate, 3, None, Arc::new(Metrics::default()))
            .expect("the test options are valid")
    }

    /// Decodes, aggregates and enriches `raw` as one batch, every event without graph
    /// features (`graph.status = "skipped"`): the score stage's input in tests.
    pub(crate) fn enriched_without_graph(&self, raw: crate::source::RawBatch) -> Enriched {
        let decoded = self.decode(raw);
        let aggregates = self.aggregate(&decoded.events);
        let graphs = decoded
            .events
            .iter()
            .map(|_| EventGraph::without(crate::enrich::GraphStatus::Skipped))
            .collect();
        Enriched {
            decoded,
            aggregates,
            graphs,
            snapshot: self.snapshots.load_full(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use riskstream_inference::DeviceChoice;

    use super::*;

    fn model() -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
        Model::load(&dir, DeviceChoice::Cpu).unwrap()
    }

    fn engine(model: &Model, aggregate: AggregateOptions) -> Engine {
        Engine::for_tests(model, aggregate)
    }

    fn line(id: &str, amount: f64) -> String {
        format!(
            r#"{{"event_id":"{id}","ts":"2026-11-22T10:03:12Z","account_id":"A-{id}","merchant_id":"M-{id}","amount":{amount},"channel":"card","country":"DE"}}"#
        )
    }

    /// Decodes, aggregates and (without a graph) enriches `lines` as one batch.
    fn enriched(engine: &Engine, lines: &[String]) -> Enriched {
        let mut raw = RawBatch::new(Arc::from("file:events.jsonl"), lines.len());
        for (i, line) in lines.iter().enumerate() {
            raw.push(line.as_bytes(), 0, i as i64, Instant::now());
        }
        engine.enriched_without_graph(raw)
    }

    /// The shipped model, except that it refuses every batch holding a row whose first
    /// input (the log of the amount) is `refused`.
    struct RefusesAmount {
        model: Model,
        refused: f32,
    }

    impl RowScorer for RefusesAmount {
        fn version(&self) -> &str {
            "refuses-amount"
        }

        fn score(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError> {
            let n = self.model.n_features();
            if rows.chunks(n).any(|row| row[0] == self.refused) {
                return Err(ModelError::InputShape {
                    got: rows.len(),
                    expected: n_rows * n,
                    n_rows,
                    n_features: n,
                });
            }
            self.model.score(rows, n_rows)
        }

        fn contributions(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError> {
            RowScorer::contributions(&self.model, rows, n_rows)
        }
    }

    #[test]
    fn a_batch_the_model_refuses_is_scored_event_by_event_and_only_the_failing_event_is_a_dead_letter(
    ) {
        let model = model();
        let engine = engine(&model, AggregateOptions::default());
        let lines = vec![
            line("e-1", 10.0),
            "not json".to_string(),
            line("e-2", 666.0),
            line("e-3", 30.0),
        ];
        let scorer = RefusesAmount {
            refused: 666f32.ln_1p(),
            model,
        };
        let mut buffers = FeatureBuffers::default();
        let batch = enriched(&engine, &lines);
        let thresholds = engine.options.thresholds;
        let scored = engine.score_with(
            &scorer,
            thresholds,
            Arc::from("refuses-amount"),
            batch,
            &mut buffers,
        );

        let decoded = &scored.enriched.decoded;
        let ids: Vec<&str> = decoded.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e-1", "e-3"]);
        assert_eq!(decoded.records, [0, 3]);
        assert_eq!(scored.scores.len(), 2);
        assert_eq!(scored.decisions.len(), 2);
        assert_eq!(scored.reasons.len(), 2);
        assert_eq!(scored.enriched.aggregates.len(), 2);
        assert_eq!(scored.enriched.graphs.len(), 2);
        assert_eq!(scored.failed.len(), 1);
        assert_eq!(scored.failed[0].row, 1);

        let kinds: Vec<(u32, &str)> = decoded.dead.iter().map(|d| (d.record, d.kind)).collect();
        assert_eq!(kinds, [(1, "not_json"), (2, SCORING_FAILED)]);
        let letters: Vec<serde_json::Value> = decoded
            .dead_letters
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let letter = letters
            .iter()
            .find(|l| l["kind"] == SCORING_FAILED)
            .expect("a scoring_failed dead letter");
        assert_eq!(letter["payload"], lines[2].as_str());
        assert_eq!(letter["source"]["offset"], 2);
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains("refuses-amount"), "{reason}");

        let metrics = &engine.metrics;
        assert_eq!(metrics.dead_letters_of_kind(SCORING_FAILED), 1);
        assert_eq!(Metrics::get(&metrics.inputs), 4);
        let decided: u64 = metrics.decisions.iter().map(Metrics::get).sum();
        assert_eq!(decided + Metrics::get(&metrics.dead_letters), 4);
    }

    #[test]
    fn the_unavailable_policy_decides_only_events_the_graph_did_not_answer() {
        use Decision::{Allow, Block, Review};
        let scores = [0.01, 0.5, 0.99];
        for (policy, unavailable) in [
            (UnavailablePolicy::Score, [Allow, Review, Block]),
            (UnavailablePolicy::Review, [Review, Review, Review]),
            (UnavailablePolicy::Allow, [Allow, Allow, Allow]),
        ] {
            let decide = Decide {
                thresholds: (0.1, 0.9),
                unavailable_policy: policy,
            };
            for (score, expected) in scores.into_iter().zip(unavailable) {
                assert_eq!(
                    decide.decision(score, GraphStatus::Unavailable),
                    expected,
                    "{policy} at {score}"
                );
                let by_score = Decision::from_score(score, 0.1, 0.9);
                for status in [GraphStatus::Ok, GraphStatus::Skipped] {
                    assert_eq!(
                        decide.decision(score, status),
                        by_score,
                        "{policy} {status:?}"
                    );
                }
            }
        }
    }

    /// Scores `lines` as one batch whose first event got no graph answer, with `policy` and
    /// the model's thresholds, or `review_everything`: a review threshold of 0 and a block
    /// threshold no score reaches.
    fn scored_with_first_unavailable(
        lines: &[String],
        policy: UnavailablePolicy,
        review_everything: bool,
    ) -> Scored {
        let model = model();
        let mut engine = engine(&model, AggregateOptions::default());
        engine.options.unavailable_policy = policy;
        if review_everything {
            engine.options.thresholds = (0.0, 1.5);
        }
        let mut batch = enriched(&engine, lines);
        batch.graphs[0] = EventGraph::without(GraphStatus::Unavailable);
        engine.score(&model, batch, &mut FeatureBuffers::default())
    }

    #[test]
    fn with_the_review_policy_an_event_without_a_graph_answer_goes_to_review_with_its_reasons() {
        let lines = vec![line("e-1", 12.0), line("e-2", 12.0)];
        let by_score = scored_with_first_unavailable(&lines, UnavailablePolicy::Score, false);
        assert_eq!(
            by_score.decisions[0],
            Decision::Allow,
            "{:?}",
            by_score.scores
        );
        let review = scored_with_first_unavailable(&lines, UnavailablePolicy::Review, false);
        assert_eq!(
            review.scores, by_score.scores,
            "the policy never changes a score"
        );
        assert_eq!(review.decisions[0], Decision::Review);
        assert!(!review.reasons[0].is_empty(), "a review result says why");
        assert_eq!(review.decisions[1], by_score.decisions[1]);
    }

    #[test]
    fn with_the_allow_policy_an_event_without_a_graph_answer_is_allowed_without_reasons() {
        let lines = vec![line("e-1", 12.0), line("e-2", 12.0)];
        let by_score = scored_with_first_unavailable(&lines, UnavailablePolicy::Score, true);
        assert_eq!(by_score.decisions[0], Decision::Review);
        let allow = scored_with_first_unavailable(&lines, UnavailablePolicy::Allow, true);
        assert_eq!(allow.decisions[0], Decision::Allow);
        assert!(allow.reasons[0].is_empty());
        assert_eq!(allow.decisions[1], by_score.decisions[1]);
    }

    #[test]
    fn events_scored_one_by_one_get_the_scores_of_a_batch_that_never_failed() {
        let model = model();
        let engine = engine(&model, AggregateOptions::default());
        let good = vec![line("e-1", 10.0), line("e-3", 30.0)];
        let mut buffers = FeatureBuffers::default();
        let whole = engine.score(&model, enriched(&engine, &good), &mut buffers);

        let again = self::engine(&model, AggregateOptions::default());
        let lines = vec![line("e-1", 10.0), line("e-2", 666.0), line("e-3", 30.0)];
        let scorer = RefusesAmount {
            refused: 666f32.ln_1p(),
            model: self::model(),
        };
        let thresholds = again.options.thresholds;
        let one_by_one = again.score_with(
            &scorer,
            thresholds,
            Arc::from("refuses-amount"),
            enriched(&again, &lines),
            &mut buffers,
        );
        assert_eq!(whole.scores, one_by_one.scores);
        assert_eq!(whole.decisions, one_by_one.decisions);
        assert_eq!(whole.reasons, one_by_one.reasons);
    }

    #[test]
    fn a_model_of_another_shape_makes_each_event_a_dead_letter_instead_of_stopping_the_stage() {
        let model = model();
        // Two windows instead of the model's three: every row is shorter than the model's.
        let aggregate = AggregateOptions {
            windows: vec![Duration::from_secs(60), Duration::from_secs(3600)],
            ..AggregateOptions::default()
        };
        let engine = engine(&model, aggregate);
        assert_ne!(engine.layout.len(), model.n_features());
        let lines = vec![line("e-1", 10.0), line("e-2", 20.0)];
        let mut buffers = FeatureBuffers::default();
        let scored = engine.score(&model, enriched(&engine, &lines), &mut buffers);
        assert!(scored.enriched.decoded.events.is_empty());
        assert!(scored.scores.is_empty());
        assert_eq!(scored.failed.len(), 2);
        assert_eq!(engine.metrics.dead_letters_of_kind(SCORING_FAILED), 2);
        let kinds: Vec<&str> = scored
            .enriched
            .decoded
            .dead
            .iter()
            .map(|d| d.kind)
            .collect();
        assert_eq!(kinds, [SCORING_FAILED, SCORING_FAILED]);
    }

    #[test]
    fn a_far_future_first_event_is_a_dead_letter_and_sets_no_watermark() {
        let model = model();
        let engine = engine(&model, AggregateOptions::default());
        let account = |id: &str, ts: &str| {
            format!(r#"{{"event_id":"{id}","ts":"{ts}","account_id":"V","amount":5.0}}"#)
        };
        let mut lines = vec![account("far", "9999-01-01T00:00:00Z")];
        for i in 0..20 {
            lines.push(account(
                &format!("e-{i}"),
                &format!("2026-11-22T10:03:{i:02}Z"),
            ));
        }
        let batch = enriched(&engine, &lines);
        let decoded = &batch.decoded;
        let kinds: Vec<(u32, &str)> = decoded.dead.iter().map(|d| (d.record, d.kind)).collect();
        assert_eq!(kinds, [(0, "future_timestamp")]);
        assert_eq!(decoded.events.len(), 20);
        for (i, aggregates) in batch.aggregates.iter().enumerate() {
            let v = aggregates
                .get(riskstream_graph::EntityKind::Account)
                .unwrap();
            assert_eq!(v.windows.count(0), i as u32 + 1, "event {i}");
            assert!(!v.late, "event {i}");
        }
    }
}
