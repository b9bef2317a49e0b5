//! The Kafka source: a consumer-group member that hands the job micro-batches of raw
//! messages, and the acknowledgement path that makes it loss-free.
//!
//! Offsets are stored for commit only after delivery: the sink calls
//! [`KafkaAcknowledger::delivered`] once a batch's results and dead letters are on the
//! broker, and batches reach the sink in the order they were read, so a stored offset never
//! passes an undelivered record of its partition. librdkafka commits the stored offsets in
//! the background (`enable.auto.commit`, with `enable.auto.offset.store` off), and the job
//! commits synchronously when partitions are revoked and when it stops.
//!
//! On a rebalance the revoked partitions' in-flight records are finished: the consumer
//! waits (up to [`REVOKE_WAIT`]) until every record it handed to the job is delivered,
//! commits, and only then lets the partitions go. Records of revoked partitions that were
//! read but not yet handed to the job are dropped; the partitions' next owner reads them
//! again from the committed offset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};

use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use riskstream_config::{AutoOffsetReset, KafkaConfig};

use super::resume::{Admit, StartPositions};
use super::{BlockingSource, RawBatch, SourceError};
use crate::kafka::{client_config, describe, ClientSecrets, KafkaSetupError};
use crate::observe::events::{Emit, RebalanceChange, Rebalanced};
use crate::observe::Observer;

/// How long a revoke waits for the revoked partitions' in-flight records to be delivered.
/// Below the group's default `max.poll.interval.ms` (5 minutes) so the member never gets
/// itself expelled while waiting.
pub const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// How long one call waits for the first message before returning an empty batch, so that
/// the job notices a shutdown request while the topic is idle.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long seeking a partition back to a checkpoint's position may take.
const SEEK_WAIT: Duration = Duration::from_secs(10);

/// Offsets per partition: the next offset handed to the job and the next one delivered.
#[derive(Debug, Default)]
struct PartitionProgress {
    sent: i64,
    delivered: i64,
}

type PartitionKey = (Arc<str>, i32);

/// Shared between the consumer (which hands records out) and the sink (which reports them
/// delivered): what is still in flight, per partition.
#[derive(Debug, Default)]
struct InFlight {
    partitions: Mutex<HashMap<PartitionKey, PartitionProgress>>,
    changed: Condvar,
    /// Bumped on every revoke, so the reader knows to drop records it holds for revoked
    /// partitions.
    revocations: AtomicU64,
    revoked: Mutex<Vec<(String, i32)>>,
    /// Offsets are stored for commit only as far as a completed checkpoint
    /// ([`KafkaAcknowledger::checkpointed`]), not on delivery.
    follow_checkpoints: std::sync::atomic::AtomicBool,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<PartitionKey, PartitionProgress>> {
        // A poisoned lock only means another thread panicked while updating plain offsets;
        // the offsets themselves are still consistent.
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sent(&self, topic: &Arc<str>, newest: &[(i32, i64)]) {
        let mut partitions = self.lock();
        for &(partition, offset) in newest {
            let entry = partitions
                .entry((topic.clone(), partition))
                .or_insert(PartitionProgress {
                    sent: offset,
                    delivered: offset,
                });
            entry.sent = entry.sent.max(offset + 1);
        }
    }

    /// Waits until every record handed out for `revoked` is delivered, or `limit` passes.
    /// Returns the partitions still in flight when it gave up.
    fn wait_delivered(&self, revoked: &[(String, i32)], limit: Duration) -> Vec<(String, i32)> {
        let deadline = Instant::now() + limit;
        let mut partitions = self.lock();
        loop {
            let pending: Vec<(String, i32)> = revoked
                .iter()
                .filter(|(t, p)| {
                    partitions.iter().any(|((topic, part), progress)| {
                        &**topic == t.as_str() && part == p && progress.delivered < progress.sent
                    })
                })
                .cloned()
                .collect();
            let now = Instant::now();
            if pending.is_empty() || now >= deadline {
                return pending;
            }
            partitions = self
                .changed
                .wait_timeout(partitions, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn forget(&self, revoked: &[(String, i32)]) {
        self.lock()
            .retain(|(topic, part), _| !revoked.iter().any(|(t, p)| &**topic == t && p == part));
    }
}

/// The consumer's callbacks: finishing in-flight work on revoke, logging librdkafka, and
/// telling the job's observer about rebalances and consumer lag.
pub struct SourceContext {
    in_flight: Arc<InFlight>,
    observer: Option<Arc<Observer>>,
    secrets: ClientSecrets,
}

impl SourceContext {
    fn rebalanced(&self, change: RebalanceChange, partitions: &[(String, i32)], now: usize) {
        let Some(observer) = &self.observer else {
            return;
        };
        let partitions: Vec<String> = partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect();
        Rebalanced {
            change,
            partitions: &partitions.join(", "),
            assigned_now: now,
        }
        .emit(observer);
    }
}

impl ClientContext for SourceContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(observer) = &self.observer {
            observer.record_consumer_stats(statistics);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(&self.secrets, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::report_error(&self.secrets, error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        if revoked.is_empty() {
            return;
        }
        tracing::info!(partitions = ?revoked, "partitions revoked: finishing their in-flight events");
        let stuck = self.in_flight.wait_delivered(&revoked, REVOKE_WAIT);
        if !stuck.is_empty() {
            tracing::warn!(
                partitions = ?stuck,
                "in-flight events of revoked partitions were not delivered in time; the next owner \
                 processes them again (at-least-once)"
            );
        }
        commit_stored(consumer);
        self.in_flight.forget(&revoked);
        let still = consumer
            .assignment()
            .map_or(0, |tpl| tpl.count().saturating_sub(revoked.len()));
        self.rebalanced(RebalanceChange::Revoked, &revoked, still);
        if let Ok(mut list) = self.in_flight.revoked.lock() {
            list.extend(revoked);
        }
        self.in_flight.revocations.fetch_add(1, Ordering::SeqCst);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let now = consumer
                .assignment()
                .map_or(assigned.len(), |tpl| tpl.count());
            if self.observer.is_some() {
                self.rebalanced(RebalanceChange::Assigned, &assigned, now);
            } else {
                tracing::info!(partitions = ?assigned, "partitions assigned");
            }
        }
    }
}

/// Commits the stored offsets now. "No offset" just means nothing new was delivered.
fn commit_stored(consumer: &BaseConsumer<SourceContext>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => tracing::warn!(error = %err, "cannot commit offsets"),
    }
}

type SourceConsumer = BaseConsumer<SourceContext>;

/// Reports delivered batches back to the consumer: stores their offsets for commit.
/// Cheap to clone; the sink side of the job holds one.
#[derive(Clone)]
pub struct KafkaAcknowledger {
    consumer: Arc<SourceConsumer>,
    in_flight: Arc<InFlight>,
}

impl KafkaAcknowledger {
    /// Every record of `batch` (and, because batches are delivered in order, every earlier
    /// record of its partitions) has been delivered: store the offsets after them.
    pub fn delivered(&self, batch: &RawBatch) {
        let newest = newest_offsets(batch);
        let mut tpl = TopicPartitionList::with_capacity(newest.len());
        {
            let mut partitions = self.in_flight.lock();
            for &(partition, offset) in &newest {
                // A partition that was revoked meanwhile is someone else's now.
                let Some(progress) = partitions.get_mut(&(batch.topic.clone(), partition)) else {
                    continue;
                };
                progress.delivered = progress.delivered.max(offset + 1);
                let _ =
                    tpl.add_partition_offset(&batch.topic, partition, Offset::Offset(offset + 1));
            }
        }
        self.in_flight.changed.notify_all();
        if self.in_flight.follow_checkpoints.load(Ordering::Acquire) {
            return;
        }
        self.store(&tpl);
    }

    fn store(&self, tpl: &TopicPartitionList) {
        if tpl.count() == 0 {
            return;
        }
        if let Err(err) = self.consumer.store_offsets(tpl) {
            // Happens when the partition was lost between the check and the store; its
            // records are read again by the next owner.
            tracing::debug!(error = %err, "cannot store offsets");
        }
    }

    /// From now on offsets are stored for commit only by [`checkpointed`](Self::checkpointed):
    /// the group's committed offsets then never pass the newest complete checkpoint, so a
    /// restart that restores it misses nothing.
    pub fn follow_checkpoints(&self) {
        self.in_flight
            .follow_checkpoints
            .store(true, Ordering::Release);
    }

    /// A checkpoint up to `positions` (topic, partition, next offset) is complete: store
    /// those offsets for commit, for the partitions this member still holds.
    pub fn checkpointed(&self, positions: &[(&str, i32, i64)]) {
        let mut tpl = TopicPartitionList::with_capacity(positions.len());
        {
            let partitions = self.in_flight.lock();
            for &(topic, partition, next) in positions {
                let held = partitions
                    .keys()
                    .any(|(t, p)| &**t == topic && *p == partition);
                if held {
                    let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(next));
                }
            }
        }
        self.store(&tpl);
    }

    /// The job is stopping and everything it read was delivered: commit now.
    pub fn finish(&self) {
        commit_stored(&self.consumer);
    }
}

/// The newest offset of each partition in a batch.
fn newest_offsets(batch: &RawBatch) -> Vec<(i32, i64)> {
    let mut newest: Vec<(i32, i64)> = Vec::new();
    for record in &batch.records {
        match newest.iter_mut().find(|(p, _)| *p == record.partition) {
            Some((_, offset)) => *offset = (*offset).max(record.offset),
            None => newest.push((record.partition, record.offset)),
        }
    }
    newest
}

/// One message read but not yet in a batch, because the batch was for another topic.
struct Held {
    topic: Arc<str>,
    payload: Vec<u8>,
    partition: i32,
    offset: i64,
    received: Instant,
}

/// A consumer-group member reading `kafka.input_topics`.
pub struct KafkaSource {
    consumer: Arc<SourceConsumer>,
    in_flight: Arc<InFlight>,
    topics: Vec<Arc<str>>,
    brokers: String,
    group_id: String,
    batch_timeout: Duration,
    max_bytes: usize,
    keep: usize,
    held: Option<Held>,
    revocations_seen: u64,
    errors_logged_at: Option<Instant>,
    /// Where a restored checkpoint says each partition must be read from.
    start: StartPositions,
}

impl KafkaSource {
    /// Joins the consumer group `kafka.group_id` and subscribes to `kafka.input_topics`.
    /// Messages over `max_bytes` keep their first `keep` bytes (they become dead letters).
    pub fn subscribe(
        kafka: &KafkaConfig,
        batch_timeout: Duration,
        max_bytes: usize,
        keep: usize,
        observer: Option<Arc<Observer>>,
    ) -> Result<Self, KafkaSetupError> {
        let mut config = client_config(kafka);
        config
            .set("group.id", &kafka.group_id)
            .set(
                "auto.offset.reset",
                match kafka.auto_offset_reset {
                    AutoOffsetReset::Earliest => "earliest",
                    AutoOffsetReset::Latest => "latest",
                },
            )
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (name, value) in [
            ("enable.partition.eof", "false"),
            // Stored offsets reach the broker within a second (librdkafka's default is
            // 5 s): after a crash, at most about a second of delivered events is redone.
            ("auto.commit.interval.ms", "1000"),
            // Consumer lag for `/metrics` (riskstream_kafka_consumer_lag), every 5 s.
            (
                "statistics.interval.ms",
                if observer.is_some() { "5000" } else { "0" },
            ),
        ] {
            if !kafka.properties.contains_key(name) {
                config.set(name, value);
            }
        }
        tracing::debug!(config = %describe(&config), "kafka consumer configuration");
        let in_flight = Arc::new(InFlight::default());
        let consumer: SourceConsumer = config
            .create_with_context(SourceContext {
                in_flight: in_flight.clone(),
                observer,
                secrets: ClientSecrets::new(kafka),
            })
            .map_err(|source| KafkaSetupError::client("consumer", kafka, &source))?;
        let topics: Vec<&str> = kafka.input_topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaSetupError::Subscribe {
                topics: kafka.input_topics.clone(),
                source,
            })?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            in_flight,
            topics: kafka
                .input_topics
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            brokers: kafka.brokers.clone(),
            group_id: kafka.group_id.clone(),
            batch_timeout,
            max_bytes,
            keep,
            held: None,
            revocations_seen: 0,
            errors_logged_at: None,
            start: StartPositions::default(),
        })
    }

    /// Reads each listed partition from its start position (a restored checkpoint's)
    /// instead of the group's committed offset: records before it are dropped, and a
    /// partition first read from after it is sought back to it.
    pub fn start_at(&mut self, start: StartPositions) {
        self.start = start;
    }

    /// Whether a polled record is to be processed (see [`start_at`](Self::start_at)).
    fn reached_start(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        if self.start.is_empty() {
            return true;
        }
        match self.start.admit(topic, partition, offset) {
            Admit::Take => true,
            Admit::Skip => false,
            Admit::SeekBack(next) => {
                tracing::info!(
                    topic,
                    partition,
                    from = offset,
                    to = next,
                    "reading the partition again from the restored checkpoint's position"
                );
                let seek = self
                    .consumer
                    .seek(topic, partition, Offset::Offset(next), SEEK_WAIT);
                if let Err(err) = seek {
                    tracing::warn!(topic, partition, error = %err, "cannot seek to the checkpoint's position");
                }
                false
            }
        }
    }

    /// The handle the sink uses to report delivered batches.
    pub fn acknowledger(&self) -> KafkaAcknowledger {
        KafkaAcknowledger {
            consumer: self.consumer.clone(),
            in_flight: self.in_flight.clone(),
        }
    }

    fn topic(&self, name: &str) -> Arc<str> {
        self.topics
            .iter()
            .find(|t| &***t == name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }

    fn push(&self, batch: &mut RawBatch, payload: &[u8], partition: i32, offset: i64, at: Instant) {
        if payload.len() > self.max_bytes {
            let keep = payload.len().min(self.keep);
            batch.push_oversize(&payload[..keep], payload.len(), partition, offset, at);
        } else {
            batch.push(payload, partition, offset, at);
        }
    }

    /// Consumer errors are transient (a broker restarting, a leader moving): librdkafka
    /// retries by itself. Log them, but not hundreds of times a second.
    fn log_error(&mut self, err: &KafkaError) {
        let due = self
            .errors_logged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(error = %err, brokers = %self.brokers, "kafka consumer error; retrying");
            self.errors_logged_at = Some(Instant::now());
        }
    }

    /// Drops records of partitions revoked since the batch was started: they were not
    /// handed to the job, and the partitions' next owner reads them from the committed offset.
    fn drop_revoked(&mut self, batch: &mut RawBatch) {
        let now = self.in_flight.revocations.load(Ordering::SeqCst);
        if now == self.revocations_seen {
            return;
        }
        self.revocations_seen = now;
        let revoked = std::mem::take(
            &mut *self
                .in_flight
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let gone = |topic: &str, partition: i32| {
            revoked.iter().any(|(t, p)| t == topic && *p == partition)
        };
        if let Some(held) = &self.held {
            if gone(&held.topic, held.partition) {
                self.held = None;
            }
        }
        let topic = batch.topic.clone();
        batch.retain(|record| !gone(&topic, record.partition));
    }
}

impl BlockingSource for KafkaSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let mut batch = match self.held.take() {
            Some(held) => {
                let mut batch = RawBatch::new(held.topic.clone(), max);
                self.push(
                    &mut batch,
                    &held.payload,
                    held.partition,
                    held.offset,
                    held.received,
                );
                batch
            }
            None => RawBatch::new(
                self.topics
                    .first()
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
                max,
            ),
        };
        let mut first_at = (!batch.is_empty()).then(Instant::now);
        // A second handle, so that a polled message may borrow it while `self` changes.
        let consumer = self.consumer.clone();
        while batch.len() < max {
            let wait = match first_at {
                None => IDLE_POLL,
                Some(at) => match self.batch_timeout.checked_sub(at.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
            };
            let polled = consumer.poll(wait);
            self.drop_revoked(&mut batch);
            match polled {
                None if first_at.is_none() => break,
                None => continue,
                Some(Err(err)) => {
                    self.log_error(&err);
                    if first_at.is_none() {
                        break;
                    }
                }
                Some(Ok(message)) => {
                    let received = Instant::now();
                    let payload = message.payload().unwrap_or(&[]);
                    let (partition, offset) = (message.partition(), message.offset());
                    if !self.reached_start(message.topic(), partition, offset) {
                        continue;
                    }
                    if batch.is_empty() {
                        if &*batch.topic != message.topic() {
                            batch.topic = self.topic(message.topic());
                        }
                    } else if &*batch.topic != message.topic() {
                        // One topic per batch: keep this one for the next batch.
                        self.held = Some(Held {
                            topic: self.topic(message.topic()),
                            payload: payload.to_vec(),
                            partition,
                            offset,
                            received,
                        });
                        break;
                    }
                    self.push(&mut batch, payload, partition, offset, received);
                    first_at.get_or_insert(received);
                }
            }
        }
        if !batch.is_empty() {
            self.in_flight.sent(&batch.topic, &newest_offsets(&batch));
        }
        Ok(Some(batch))
    }

    fn describe(&self) -> String {
        let topics: Vec<&str> = self.topics.iter().map(|t| &**t).collect();
        format!(
            "kafka (topics {}, group {}, brokers {})",
            topics.join(","),
            self.group_id,
            self.brokers
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_owned(), partition)
    }

    #[test]
    fn revoke_waits_until_every_handed_out_record_is_delivered() {
        let in_flight = Arc::new(InFlight::default());
        let topic: Arc<str> = Arc::from("events");
        in_flight.sent(&topic, &[(0, 9), (1, 4)]);
        let waiter = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                in_flight.wait_delivered(&[key("events", 0)], Duration::from_secs(10))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "partition 0 still has records in flight"
        );
        {
            let mut partitions = in_flight.lock();
            let progress = partitions.get_mut(&(topic.clone(), 0)).unwrap();
            progress.delivered = 10;
        }
        in_flight.changed.notify_all();
        let stuck = waiter.join().unwrap();
        assert!(stuck.is_empty(), "{stuck:?}");
    }

    #[test]
    fn revoke_gives_up_after_the_limit_and_names_the_stuck_partitions() {
        let in_flight = InFlight::default();
        in_flight.sent(&Arc::from("events"), &[(3, 100)]);
        let stuck = in_flight.wait_delivered(&[key("events", 3)], Duration::from_millis(20));
        assert_eq!(stuck, vec![key("events", 3)]);
    }

    #[test]
    fn newest_offsets_are_per_partition() {
        let mut batch = RawBatch::new(Arc::from("events"), 4);
        let now = Instant::now();
        batch.push(b"a", 0, 5, now);
        batch.push(b"b", 1, 7, now);
        batch.push(b"c", 0, 6, now);
        assert_eq!(newest_offsets(&batch), vec![(0, 6), (1, 7)]);
    }
}
