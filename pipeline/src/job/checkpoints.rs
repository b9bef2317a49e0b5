//! Durable state in the job (see [`crate::checkpoint`]): the state directory is read at
//! build time, the aggregate stage takes cuts between batches ([`Cutter`]), and the
//! checkpoint thread completes each once the sink has delivered everything up to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riskstream_config::Config;

use super::delivery::Acknowledge;
use super::BuildError;
use crate::aggregate::{AggregateState, Aggregator};
use crate::checkpoint::{
    self, CheckpointError, CheckpointListener, CheckpointSender, CheckpointStore, Cut, Delivered,
    SourcePosition, Written,
};
use crate::engine::Engine;
use crate::source::kafka::KafkaAcknowledger;
use crate::source::resume::StartPositions;
use crate::source::RawBatch;

/// A job's state directory, opened at build time.
pub(super) struct Durable {
    store: CheckpointStore,
    next_seq: u64,
    interval: Duration,
    /// The restored checkpoint's snapshot id (0 without one).
    snapshot_base: u64,
    /// Where the restored checkpoint says to read on (empty without one).
    positions: Vec<SourcePosition>,
    /// The restored state, until it is loaded into the engine, and how long reading and
    /// decoding its file took.
    restored: Option<(AggregateState, PathBuf, Duration)>,
    delivered: Arc<Delivered>,
    listeners: Vec<Arc<dyn CheckpointListener>>,
}

impl Durable {
    /// Opens `state.dir` (`None` when it is empty: no checkpoints) and reads its newest
    /// complete checkpoint, unless `fresh` (`--fresh-state`) asks to start empty.
    pub(super) fn open(config: &Config, fresh: bool) -> Result<Option<Durable>, BuildError> {
        if config.state.dir.is_empty() {
            if fresh {
                tracing::info!(
                    "--fresh-state: no state.dir is set, so the job keeps no state anyway"
                );
            }
            return Ok(None);
        }
        let dir = Path::new(&config.state.dir);
        let store = CheckpointStore::open(dir).map_err(checkpoint_error)?;
        // Taken before a --fresh-state removes the files: numbers are never reused.
        let next_seq = store.next_seq().map_err(checkpoint_error)?;
        let mut durable = Durable {
            next_seq,
            interval: config.state.checkpoint_interval,
            snapshot_base: 0,
            positions: Vec::new(),
            restored: None,
            delivered: Arc::new(Delivered::default()),
            listeners: Vec::new(),
            store,
        };
        if fresh {
            // Removed rather than skipped: a crash before the first new checkpoint must not
            // restore the state this run was asked to forget.
            let discarded = durable.store.discard_all().map_err(checkpoint_error)?;
            tracing::info!(
                state_dir = %dir.display(),
                discarded,
                "--fresh-state: starting with empty window state; the checkpoints in state.dir \
                 were removed"
            );
            return Ok(Some(durable));
        }
        let reading = Instant::now();
        match durable.store.latest().map_err(checkpoint_error)? {
            None => tracing::info!(
                state_dir = %dir.display(),
                "no checkpoint in state.dir: starting with empty window state"
            ),
            Some((checkpoint, path)) => {
                durable.snapshot_base = checkpoint.snapshot_id;
                durable.delivered = Arc::new(Delivered::starting_at(&checkpoint.positions));
                durable.positions = checkpoint.positions;
                durable.restored = Some((checkpoint.state, path, reading.elapsed()));
            }
        }
        Ok(Some(durable))
    }

    /// The start positions for a source reading `topics`; refused when the checkpoint was
    /// taken on other input.
    pub(super) fn start_positions(&self, topics: &[&str]) -> Result<StartPositions, BuildError> {
        if let Some((_, path, _)) = &self.restored {
            checkpoint::check_input(path, &self.positions, topics).map_err(boxed)?;
        }
        Ok(StartPositions::new(self.positions.iter().map(|p| {
            (Arc::from(p.topic.as_str()), p.partition, p.next_offset)
        })))
    }

    /// Commits of the Kafka source follow completed checkpoints from now on.
    pub(super) fn commit_kafka_after_checkpoints(&mut self, acknowledger: KafkaAcknowledger) {
        acknowledger.follow_checkpoints();
        self.listeners.push(Arc::new(KafkaCommits(acknowledger)));
    }

    /// Loads the restored state into `engine`, whose snapshots then continue after the
    /// checkpoint's.
    pub(super) fn restore_into(&mut self, engine: &Engine) -> Result<(), BuildError> {
        let Some((state, path, read_in)) = self.restored.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let keys = state.keys();
        engine.aggregator.restore_state(state).map_err(|source| {
            boxed(CheckpointError::Incompatible {
                path: path.clone(),
                source,
            })
        })?;
        engine.snapshots.resume_ids_at(self.snapshot_base);
        let positions: Vec<String> = self
            .positions
            .iter()
            .map(|p| format!("{}/{}@{}", p.topic, p.partition, p.next_offset))
            .collect();
        tracing::info!(
            checkpoint = %path.display(),
            keys,
            read_ms = read_in.as_secs_f64() * 1000.0,
            restore_ms = started.elapsed().as_secs_f64() * 1000.0,
            reading_from = %positions.join(", "),
            "window state restored from checkpoint"
        );
        Ok(())
    }

    /// What the sink tells about delivered input, for checkpoints to wait on.
    pub(super) fn acknowledger(&self) -> Arc<dyn Acknowledge> {
        Arc::new(DeliveredInput(self.delivered.clone()))
    }

    /// Starts the checkpoint thread: the aggregate stage's [`Cutter`], the handle that
    /// stops it, and the thread.
    pub(super) fn start(self) -> std::io::Result<(Cutter, Running)> {
        let (sender, thread) = checkpoint::writer::spawn(
            self.store,
            self.next_seq,
            self.delivered.clone(),
            self.listeners,
        )?;
        let cutter = Cutter {
            sender,
            interval: self.interval,
            last: Instant::now(),
            applied_since: false,
            snapshot_base: self.snapshot_base,
            last_seq: 0,
            positions: self
                .positions
                .into_iter()
                .map(|p| ((Arc::from(p.topic.as_str()), p.partition), p.next_offset))
                .collect(),
        };
        let running = Running {
            delivered: self.delivered,
            thread,
        };
        Ok((cutter, running))
    }
}

fn boxed(error: CheckpointError) -> BuildError {
    BuildError::Checkpoint(Box::new(error))
}

fn checkpoint_error(error: checkpoint::StoreError) -> BuildError {
    boxed(CheckpointError::Store(error))
}

/// The running checkpoint thread, as the job stops it.
pub(super) struct Running {
    delivered: Arc<Delivered>,
    thread: std::thread::JoinHandle<Vec<Written>>,
}

impl Running {
    /// The sink has stopped: a checkpoint whose results were not all delivered gives up.
    pub(super) fn delivery_stopped(&self) {
        self.delivered.close();
    }

    /// Waits for the thread to finish the cuts handed over (the aggregate stage, which
    /// holds the only sender, has ended).
    pub(super) async fn join(self) -> Vec<Written> {
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

/// The aggregate stage's part: tracks the input position of the batches applied and, when
/// a checkpoint is due at a snapshot drain, copies the state and hands it over.
pub(super) struct Cutter {
    sender: CheckpointSender,
    interval: Duration,
    last: Instant,
    /// Whether a batch was applied since the last cut.
    applied_since: bool,
    snapshot_base: u64,
    /// The newest drain's sequence number.
    last_seq: u64,
    /// The next position per (topic, partition) after the batches applied.
    positions: BTreeMap<(Arc<str>, i32), i64>,
}

impl Cutter {
    /// `batch` has been applied.
    pub(super) fn applied(&mut self, batch: &RawBatch) {
        for record in &batch.records {
            let next = self
                .positions
                .entry((batch.topic.clone(), record.partition))
                .or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        self.applied_since |= !batch.is_empty();
    }

    /// The aggregator has just been drained for snapshot `seq` (no batch since): the cut
    /// of a checkpoint, when one is due and the previous one is done.
    pub(super) fn drained(&mut self, aggregator: &Aggregator, seq: u64) {
        self.last_seq = seq;
        let due = self.applied_since && self.last.elapsed() >= self.interval;
        if !due || self.sender.is_busy() {
            return;
        }
        let cut = self.cut(aggregator);
        if !self.sender.offer(cut) {
            tracing::debug!("checkpoint skipped: the previous one is still being written");
        }
    }

    /// The input has ended or the job is stopping: a last checkpoint of everything applied.
    pub(super) async fn finish(mut self, aggregator: &Aggregator) {
        if self.applied_since {
            let cut = self.cut(aggregator);
            self.sender.last(cut).await;
        }
    }

    fn cut(&mut self, aggregator: &Aggregator) -> Cut {
        let started = Instant::now();
        let state = aggregator.capture_state();
        self.last = Instant::now();
        self.applied_since = false;
        Cut {
            snapshot_id: self.snapshot_base + self.last_seq,
            positions: self
                .positions
                .iter()
                .map(|((topic, partition), next)| SourcePosition {
                    topic: topic.to_string(),
                    partition: *partition,
                    next_offset: *next,
                })
                .collect(),
            state,
            captured_in: started.elapsed(),
        }
    }
}

/// Reports delivered input to the checkpoints waiting on it.
struct DeliveredInput(Arc<Delivered>);

impl Acknowledge for DeliveredInput {
    fn delivered(&self, batch: &RawBatch) {
        let records = batch.records.iter().map(|r| (r.partition, r.offset));
        self.0.record(&batch.topic, records);
    }

    fn finish(&self) {}
}

/// Lets the Kafka consumer group commit up to each completed checkpoint.
struct KafkaCommits(KafkaAcknowledger);

impl CheckpointListener for KafkaCommits {
    fn completed(&self, positions: &[SourcePosition]) {
        let positions: Vec<(&str, i32, i64)> = positions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.next_offset))
            .collect();
        self.0.checkpointed(&positions);
    }

    fn finish(&self) {
        self.0.finish();
    }
}
