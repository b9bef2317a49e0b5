//! The checkpoint thread: encodes each cut the aggregate stage hands over, writes it, waits
//! until every result up to the cut's position is delivered, and only then makes it
//! complete and tells the listeners (the Kafka source stores the offsets for commit).
//!
//! Waiting for delivery is what keeps a restore loss-free: a complete checkpoint never
//! lies ahead of the delivered results, so every event after its position either has its
//! result delivered already (it is processed again, from the same state, with the same
//! result: an at-least-once duplicate) or is processed for the first time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::format::{encode, Checkpoint, SourcePosition};
use super::store::CheckpointStore;
use crate::aggregate::AggregateState;

/// What the aggregate stage hands over at a cut between two batches.
#[derive(Debug)]
pub struct Cut {
    pub snapshot_id: u64,
    pub positions: Vec<SourcePosition>,
    pub state: AggregateState,
    /// How long copying the state held up the next batch.
    pub captured_in: Duration,
}

/// Told about each completed checkpoint, in order.
pub trait CheckpointListener: Send + Sync {
    /// Every result up to `positions` is delivered and the checkpoint of that cut is
    /// complete on disk.
    fn completed(&self, positions: &[SourcePosition]);
    /// The checkpoint thread has stopped; nothing more will complete.
    fn finish(&self);
}

/// The next position delivered per topic/partition, as the sink reports it; checkpoints
/// wait on it.
#[derive(Debug, Default)]
pub struct Delivered {
    state: Mutex<DeliveredState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct DeliveredState {
    /// Per topic, per partition: the next position not yet delivered.
    next: HashMap<String, HashMap<i32, i64>>,
    closed: bool,
}

impl Delivered {
    /// Starts with `positions` delivered (those of the restored checkpoint).
    pub fn starting_at(positions: &[SourcePosition]) -> Delivered {
        let delivered = Delivered::default();
        {
            let mut state = delivered.lock();
            for p in positions {
                state
                    .next
                    .entry(p.topic.clone())
                    .or_default()
                    .insert(p.partition, p.next_offset);
            }
        }
        delivered
    }

    fn lock(&self) -> MutexGuard<'_, DeliveredState> {
        // Only plain positions behind it: still consistent if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records at these (partition, offset) of `topic`, and every record before them
    /// on their partitions, are delivered.
    pub fn record(&self, topic: &str, delivered: impl IntoIterator<Item = (i32, i64)>) {
        {
            let mut state = self.lock();
            if !state.next.contains_key(topic) {
                state.next.insert(topic.to_owned(), HashMap::new());
            }
            let Some(partitions) = state.next.get_mut(topic) else {
                return;
            };
            for (partition, offset) in delivered {
                let next = partitions.entry(partition).or_insert(0);
                *next = (*next).max(offset + 1);
            }
        }
        self.changed.notify_all();
    }

    /// No more deliveries will be reported (the sink has stopped): a checkpoint still
    /// waiting gives up.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until every position of `positions` is delivered (`true`), or until
    /// [`close`](Self::close) while some is not (`false`).
    pub fn wait_covers(&self, positions: &[SourcePosition]) -> bool {
        let mut state = self.lock();
        loop {
            let covered = positions.iter().all(|p| {
                state
                    .next
                    .get(p.topic.as_str())
                    .and_then(|partitions| partitions.get(&p.partition))
                    .is_some_and(|next| *next >= p.next_offset)
            });
            if covered {
                return true;
            }
            if state.closed {
                return false;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The aggregate stage's side of the checkpoint thread.
#[derive(Debug, Clone)]
pub struct CheckpointSender {
    tx: mpsc::Sender<Cut>,
    busy: Arc<AtomicBool>,
}

impl CheckpointSender {
    /// Whether the thread is still writing (or waiting for) the previous cut: a cut taken
    /// now would only wait.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Hands a cut over without waiting; `false` (the cut dropped) when the thread is busy.
    pub fn offer(&self, cut: Cut) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.tx.try_send(cut).is_err() {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Hands the last cut over, waiting for the previous one to be done.
    pub async fn last(&self, cut: Cut) {
        self.busy.store(true, Ordering::Release);
        let _ = self.tx.send(cut).await;
    }
}

/// What one completed checkpoint cost, for the log and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub seq: u64,
    pub keys: usize,
    pub bytes: u64,
    pub captured_in: Duration,
    pub encoded_in: Duration,
    pub written_in: Duration,
    pub waited: Duration,
}

/// Starts the checkpoint thread writing to `store` from sequence number `next_seq`.
/// It stops when every [`CheckpointSender`] is dropped, after the cuts handed over.
pub fn spawn(
    store: CheckpointStore,
    next_seq: u64,
    delivered: Arc<Delivered>,
    listeners: Vec<Arc<dyn CheckpointListener>>,
) -> std::io::Result<(CheckpointSender, std::thread::JoinHandle<Vec<Written>>)> {
    let (tx, mut rx) = mpsc::channel::<Cut>(1);
    let busy = Arc::new(AtomicBool::new(false));
    let thread_busy = busy.clone();
    let thread = std::thread::Builder::new()
        .name("riskstream-checkpoint".into())
        .spawn(move || {
            let mut seq = next_seq;
            let mut written = Vec::new();
            while let Some(cut) = rx.blocking_recv() {
                if let Some(done) = write_one(&store, seq, cut, &delivered, &listeners) {
                    written.push(done);
                }
                seq += 1;
                thread_busy.store(false, Ordering::Release);
            }
            for listener in &listeners {
                listener.finish();
            }
            written
        })?;
    Ok((CheckpointSender { tx, busy }, thread))
}

/// Writes one cut as checkpoint `seq`; what it cost when it completed.
fn write_one(
    store: &CheckpointStore,
    seq: u64,
    cut: Cut,
    delivered: &Delivered,
    listeners: &[Arc<dyn CheckpointListener>],
) -> Option<Written> {
    let started = Instant::now();
    let keys = cut.state.keys();
    let checkpoint = Checkpoint {
        seq,
        snapshot_id: cut.snapshot_id,
        taken_at_ms: crate::engine::now_ms(),
        positions: cut.positions,
        state: cut.state,
    };
    let bytes = match encode(&checkpoint) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(seq, error = %err, "checkpoint not written: cannot encode the state");
            return None;
        }
    };
    let encoded_in = started.elapsed();
    drop(checkpoint.state);
    let prepared = match store.prepare(seq, &bytes) {
        Ok(prepared) => prepared,
        Err(err) => {
            tracing::error!(seq, error = %err, "checkpoint not written");
            return None;
        }
    };
    let written_in = started.elapsed() - encoded_in;
    let waiting = Instant::now();
    if !delivered.wait_covers(&checkpoint.positions) {
        tracing::info!(
            seq,
            "checkpoint abandoned: the job stopped before every result up to it was delivered"
        );
        store.abandon(prepared);
        return None;
    }
    let waited = waiting.elapsed();
    let size = prepared.bytes();
    match store.commit(prepared) {
        Ok(path) => {
            let done = Written {
                seq,
                keys,
                bytes: size,
                captured_in: cut.captured_in,
                encoded_in,
                written_in,
                waited,
            };
            tracing::info!(
                file = %path.display(),
                keys,
                bytes = size,
                capture_ms = ms(cut.captured_in),
                encode_ms = ms(encoded_in),
                write_ms = ms(written_in),
                delivery_wait_ms = ms(waited),
                "checkpoint complete"
            );
            for listener in listeners {
                listener.completed(&checkpoint.positions);
            }
            Some(done)
        }
        Err(err) => {
            tracing::error!(seq, error = %err, "checkpoint not completed");
            None
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, next_offset: i64) -> SourcePosition {
        SourcePosition {
            topic: topic.into(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn a_cut_waits_until_its_positions_are_delivered() {
        let delivered = Arc::new(Delivered::starting_at(&[at("t", 1, 50)]));
        delivered.record("t", [(0, 8)]);
        let cut = vec![at("t", 0, 10), at("t", 1, 50)];
        let waiter = {
            let delivered = delivered.clone();
            std::thread::spawn(move || delivered.wait_covers(&cut))
        };
        // Offset 9 delivered: the waiter wakes covered, without the job stopping.
        delivered.record("t", [(0, 9)]);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_cut_that_is_never_delivered_gives_up_when_delivery_stops() {
        let delivered = Delivered::default();
        delivered.record("t", [(0, 3)]);
        delivered.close();
        assert!(!delivered.wait_covers(&[at("t", 0, 10)]));
        assert!(delivered.wait_covers(&[at("t", 0, 4)]));
    }
}
