//! The job's stages and the bounded channels between them: a source thread, then decode,
//! aggregate, enrich and score as tokio tasks; the sink ([`super::delivery`]) reads the
//! score stage's output. Every channel is bounded, so a slow stage holds back the source
//! instead of growing a queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::checkpoints::Cutter;
use super::delivery::micros_histogram;
use super::RunError;
use crate::aggregate::EventAggregates;
use crate::engine::{
    Decoded, Engine, Enriched, FeatureBuffers, PendingSnapshot, Scored, SnapshotClock,
};
use crate::observe::events::{Emit, StageTimed};
use crate::observe::{Observer, Stage};
use crate::reload::ModelSlot;
use crate::source::{BlockingSource, RawBatch, SourceError};

/// Micro-batches whose graph look-ups may be in flight at once. With the default 50 ms
/// deadline, even a graph that misses every deadline leaves the stream at least
/// 8 × 512 events per 50 ms (80 000 events/s) instead of 10 000.
const GRAPH_BATCHES_IN_FLIGHT: usize = 8;

/// How the stages are sized.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    /// Records per micro-batch at most (`pipeline.batch_size`).
    pub batch_size: usize,
    /// Batches each channel holds (`pipeline.channel_capacity`).
    pub channel_capacity: usize,
    /// Stop reading after this many records.
    pub max_events: Option<u64>,
}

/// The running stages.
pub(super) struct Topology {
    source: std::thread::JoinHandle<Result<(), SourceError>>,
    decode: JoinHandle<()>,
    aggregate: JoinHandle<()>,
    enrich: JoinHandle<()>,
    enrich_order: JoinHandle<Result<Histogram<u64>, JoinError>>,
    score: JoinHandle<()>,
}

/// How the stages ended, once they all have.
pub(super) struct Stopped {
    /// Per-batch graph wait in microseconds, or the stage that panicked.
    pub stages: Result<Histogram<u64>, RunError>,
    pub source: Result<(), RunError>,
}

impl Topology {
    /// Starts the source thread and the stage tasks, and returns the scored batches in the
    /// order they were read: the sink's input. The source stops at its end, at
    /// `max_events`, or when `cancel` fires; the stages then finish what was read.
    pub fn start(
        source: Box<dyn BlockingSource>,
        engine: Arc<Engine>,
        slot: ModelSlot,
        sizes: Sizes,
        observer: Arc<Observer>,
        cutter: Option<Cutter>,
        cancel: CancellationToken,
    ) -> Result<(Topology, mpsc::Receiver<Scored>), RunError> {
        let capacity = sizes.channel_capacity.max(1);
        let (raw_tx, raw_rx) = mpsc::channel::<RawBatch>(capacity);
        let (dec_tx, dec_rx) = mpsc::channel::<Decoded>(capacity);
        let (agg_tx, agg_rx) = mpsc::channel::<(Decoded, Vec<EventAggregates>)>(capacity);
        let (enr_tx, enr_rx) = mpsc::channel::<Enriched>(capacity);
        let (sco_tx, sco_rx) = mpsc::channel::<Scored>(capacity);
        let source = spawn_source(
            source,
            raw_tx,
            sizes.batch_size.max(1),
            sizes.max_events,
            cancel,
        )
        .map_err(RunError::Thread)?;
        let decode = tokio::spawn(decode(engine.clone(), observer.clone(), raw_rx, dec_tx));
        let aggregate = tokio::spawn(aggregate(
            engine.clone(),
            observer.clone(),
            dec_rx,
            agg_tx,
            cutter,
        ));
        // Batches are enriched concurrently, at most GRAPH_BATCHES_IN_FLIGHT at a time, and
        // passed on in the order they came: a batch waiting for a remote graph (up to its
        // deadline) does not hold back the batches behind it.
        let (ordered_tx, ordered_rx) = mpsc::channel(GRAPH_BATCHES_IN_FLIGHT);
        let enrich = tokio::spawn(enrich(engine.clone(), agg_rx, ordered_tx));
        let enrich_order = tokio::spawn(enrich_in_order(observer.clone(), ordered_rx, enr_tx));
        let score = tokio::spawn(score(engine, observer, slot, enr_rx, sco_tx));
        let topology = Topology {
            source,
            decode,
            aggregate,
            enrich,
            enrich_order,
            score,
        };
        Ok((topology, sco_rx))
    }

    /// Waits for every stage and the source thread to end (the caller has cancelled the job
    /// and dropped the scored batches' receiver, or the input ended).
    pub async fn join(self) -> Stopped {
        let (d, a, e, o, s) = tokio::join!(
            self.decode,
            self.aggregate,
            self.enrich,
            self.enrich_order,
            self.score
        );
        let panicked = |stage: &'static str| move |source| RunError::Panicked { stage, source };
        let stages = (|| {
            d.map_err(panicked("decode"))?;
            a.map_err(panicked("aggregate"))?;
            e.map_err(panicked("enrich"))?;
            o.map_err(panicked("enrich"))?.map_err(panicked("enrich"))
        })();
        let stages = match s {
            Ok(()) => stages,
            Err(err) => stages.and(Err(panicked("score")(err))),
        };
        let source = self.source;
        let source = match tokio::task::spawn_blocking(move || source.join()).await {
            Err(_) | Ok(Err(_)) => Err(RunError::SourcePanicked),
            Ok(Ok(read)) => read.map_err(|e| RunError::Source(Box::new(e))),
        };
        Stopped { stages, source }
    }
}

/// Runs a blocking source on its own thread, feeding the decode stage.
fn spawn_source(
    mut source: Box<dyn BlockingSource>,
    tx: mpsc::Sender<RawBatch>,
    batch_size: usize,
    max_events: Option<u64>,
    cancel: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<Result<(), SourceError>>> {
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
}

/// Records how long one micro-batch spent in `stage`, from `since`.
fn timed(observer: &Observer, stage: Stage, since: Instant) {
    StageTimed {
        stage,
        took: since.elapsed(),
    }
    .emit(observer);
}

async fn decode(
    engine: Arc<Engine>,
    observer: Arc<Observer>,
    mut rx: mpsc::Receiver<RawBatch>,
    tx: mpsc::Sender<Decoded>,
) {
    while let Some(raw) = rx.recv().await {
        let started = Instant::now();
        let decoded = engine.decode(raw);
        timed(&observer, Stage::Decode, started);
        if tx.send(decoded).await.is_err() {
            break;
        }
    }
}

async fn aggregate(
    engine: Arc<Engine>,
    observer: Arc<Observer>,
    mut rx: mpsc::Receiver<Decoded>,
    tx: mpsc::Sender<(Decoded, Vec<EventAggregates>)>,
    mut cutter: Option<Cutter>,
) {
    let mut clock = SnapshotClock::default();
    // Snapshots are built on a blocking thread, one at a time and in drain order, so the
    // stage only pays for copying the changed keys.
    let mut building: Option<JoinHandle<()>> = None;
    // Events aggregated since the last snapshot: while there are, a quiet input still gets
    // them into a snapshot within one interval.
    let mut unpublished = false;
    let mut idle = tokio::time::interval(engine.options.snapshot_interval.max(MIN_IDLE_CHECK));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let decoded = tokio::select! {
            decoded = rx.recv() => match decoded {
                Some(decoded) => decoded,
                None => break,
            },
            _ = idle.tick(), if unpublished => {
                if let Some(pending) = engine.idle_snapshot(&mut clock) {
                    unpublished = false;
                    if let Some(cutter) = &mut cutter {
                        cutter.drained(&engine.aggregator, pending.changes.seq());
                    }
                    publish(&engine, &observer, &mut building, pending).await;
                }
                continue;
            }
        };
        let started = Instant::now();
        let aggs = engine.aggregate(&decoded.events);
        timed(&observer, Stage::Aggregate, started);
        unpublished = true;
        if let Some(cutter) = &mut cutter {
            cutter.applied(&decoded.raw);
        }
        if let Some(pending) = engine.maybe_snapshot(&decoded, &mut clock) {
            unpublished = false;
            if let Some(cutter) = &mut cutter {
                cutter.drained(&engine.aggregator, pending.changes.seq());
            }
            publish(&engine, &observer, &mut building, pending).await;
        }
        if tx.send((decoded, aggs)).await.is_err() {
            break;
        }
    }
    // The summary counts the last snapshot too.
    if let Some(last) = building {
        let _ = last.await;
    }
    if let Some(cutter) = cutter {
        cutter.finish(&engine.aggregator).await;
    }
}

/// The shortest period of the aggregate stage's idle-snapshot check.
const MIN_IDLE_CHECK: Duration = Duration::from_millis(10);

/// Builds and publishes a snapshot on a blocking thread, after the previous one is done.
async fn publish(
    engine: &Arc<Engine>,
    observer: &Arc<Observer>,
    building: &mut Option<JoinHandle<()>>,
    pending: PendingSnapshot,
) {
    if let Some(previous) = building.take() {
        let _ = previous.await;
    }
    let (engine, observer) = (engine.clone(), observer.clone());
    *building = Some(tokio::task::spawn_blocking(move || {
        if let Some(published) = engine.publish(pending) {
            published.emit(&observer);
        }
    }));
}

async fn enrich(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<(Decoded, Vec<EventAggregates>)>,
    ordered: mpsc::Sender<JoinHandle<(Enriched, Duration)>>,
) {
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
        if ordered.send(task).await.is_err() {
            break;
        }
    }
}

/// Passes enriched batches on in the order they were read, recording each one's graph wait.
async fn enrich_in_order(
    observer: Arc<Observer>,
    mut ordered: mpsc::Receiver<JoinHandle<(Enriched, Duration)>>,
    tx: mpsc::Sender<Enriched>,
) -> Result<Histogram<u64>, JoinError> {
    let mut waits = micros_histogram();
    while let Some(task) = ordered.recv().await {
        let (enriched, waited) = task.await?;
        let _ = waits.record(waited.as_micros().max(1) as u64);
        StageTimed {
            stage: Stage::Enrich,
            took: waited,
        }
        .emit(&observer);
        if tx.send(enriched).await.is_err() {
            break;
        }
    }
    Ok(waits)
}

async fn score(
    engine: Arc<Engine>,
    observer: Arc<Observer>,
    slot: ModelSlot,
    mut rx: mpsc::Receiver<Enriched>,
    tx: mpsc::Sender<Scored>,
) {
    let mut buffers = FeatureBuffers::default();
    while let Some(enriched) = rx.recv().await {
        // One model per batch: a swap lands between batches, never inside one.
        let active = slot.load_full();
        let started = Instant::now();
        let scored = engine.score_active(&active, enriched, &mut buffers);
        timed(&observer, Stage::Score, started);
        if tx.send(scored).await.is_err() {
            break;
        }
    }
}
