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
//!
//! With `kafka.align_partitions` (the default) the records of all assigned partitions go
//! to the job in event-time order: every message read waits in its partition's lane of an
//! [`Aligner`], which hands out the smallest (message timestamp, topic, partition, offset)
//! once no partition with data still on the broker could bring a smaller one. A partition
//! read to its end (librdkafka's partition EOF) or silent for `kafka.idle_timeout` holds
//! nobody back. A lane that fills up has its partition paused until it drains: librdkafka
//! drops what it had prefetched for a paused partition and fetches again from the last
//! message handed to riskstream, so pausing loses nothing. The order within a partition
//! never changes, so the commit-after-delivery rule above holds as it is.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};

use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use riskstream_config::{AutoOffsetReset, KafkaConfig};

use super::align::{Aligner, Waiting};
use super::resume::{Admit, StartPositions};
use super::{BlockingSource, RawBatch, SourceError};
use crate::kafka::{client_config, describe, ClientSecrets, KafkaSetupError};
use crate::observe::events::{Emit, RebalanceChange, Rebalanced};
use crate::observe::{Observer, PartitionEventTime};

/// How long a revoke waits for the revoked partitions' in-flight records to be delivered.
/// Below the group's default `max.poll.interval.ms` (5 minutes) so the member never gets
/// itself expelled while waiting.
pub const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// How long one call waits for the first message before returning an empty batch, so that
/// the job notices a shutdown request while the topic is idle.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Records one partition's lane may hold before the partition is paused, and the level at
/// which it is resumed: a few batches, so that a paused partition never runs dry before
/// its next fetch arrives, at about 200 bytes a record a few megabytes per partition.
const LANE_PAUSE_AT: usize = 8192;
const LANE_RESUME_AT: usize = 2048;
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
    /// Bumped on every revoke and assignment, so the reader knows to drop records it holds
    /// for revoked partitions and to align over the assigned ones.
    rebalances: AtomicU64,
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: Mutex<Vec<(String, i32)>>,
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
        self.in_flight.rebalances.fetch_add(1, Ordering::SeqCst);
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
            if let Ok(mut list) = self.in_flight.assigned.lock() {
                list.extend(assigned);
            }
            self.in_flight.rebalances.fetch_add(1, Ordering::SeqCst);
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

/// The high watermark of a partition as of the consumer's last fetch response for it,
/// without asking the broker; `None` before the first.
fn cached_high_watermark(consumer: &SourceConsumer, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle is valid while `consumer` lives; `topic` is NUL-terminated
    // and outlives the call; librdkafka only reads its cached offsets and writes the two
    // integers it is given.
    let err = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
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

/// One message read but not yet in a batch: waiting in its partition's lane, or popped
/// for a batch of another topic.
struct Held {
    payload: Vec<u8>,
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
    /// Messages read and not handed out yet, per partition, in the order they go out.
    lanes: Aligner<PartitionKey, Held>,
    /// Partitions paused because their lane is full.
    paused: HashSet<PartitionKey>,
    /// Partitions revoked while paused: resumed if they are assigned again.
    paused_when_revoked: HashSet<PartitionKey>,
    /// The offset after the last message read from each partition.
    read_up_to: HashMap<PartitionKey, i64>,
    /// A record popped from the lanes for a batch of another topic: the next batch's first.
    next: Option<(PartitionKey, i64, Held)>,
    rebalances_seen: u64,
    errors_logged_at: Option<Instant>,
    observer: Option<Arc<Observer>>,
    /// Since when the lanes have held records back waiting for a dry partition.
    held_back_since: Option<Instant>,
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
            // The end of a partition tells the alignment that it holds nobody back.
            (
                "enable.partition.eof",
                if kafka.align_partitions {
                    "true"
                } else {
                    "false"
                },
            ),
            // Aligned, the lanes are filled in the order of the consumer's one queue, where
            // each fetch puts up to this much of one partition in a row: smaller runs let
            // the partition the merge waits for arrive sooner. Measured on a 200 000-event,
            // 4-partition backlog: librdkafka's 1 MiB default held records back for more
            // than half of the run; 128 KiB read as fast as unaligned reading.
            (
                "max.partition.fetch.bytes",
                if kafka.align_partitions {
                    "131072"
                } else {
                    "1048576"
                },
            ),
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
                observer: observer.clone(),
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
        let skew = kafka.align_partitions.then_some(kafka.max_partition_skew);
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
            lanes: Aligner::new(skew, kafka.idle_timeout),
            paused: HashSet::new(),
            paused_when_revoked: HashSet::new(),
            read_up_to: HashMap::new(),
            next: None,
            rebalances_seen: 0,
            errors_logged_at: None,
            observer,
            held_back_since: None,
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

    /// Applies the rebalances since the last call: records of revoked partitions are
    /// dropped from the batch and the lanes (they were not handed to the job, and the
    /// partitions' next owner reads them from the committed offset); assigned partitions
    /// get a lane, so that they hold the others back until they bring data or reach their
    /// end.
    fn apply_rebalances(&mut self, batch: &mut RawBatch) {
        let now = self.in_flight.rebalances.load(Ordering::SeqCst);
        if now == self.rebalances_seen {
            return;
        }
        self.rebalances_seen = now;
        let take = |list: &Mutex<Vec<(String, i32)>>| {
            std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
        };
        let revoked = take(&self.in_flight.revoked);
        let assigned = take(&self.in_flight.assigned);
        let gone = |topic: &str, partition: i32| {
            revoked.iter().any(|(t, p)| t == topic && *p == partition)
        };
        for (topic, partition) in &revoked {
            let key = (self.topic(topic), *partition);
            self.lanes.revoke(&key);
            if self.paused.remove(&key) {
                self.paused_when_revoked.insert(key.clone());
            }
            self.read_up_to.remove(&key);
        }
        if self
            .next
            .as_ref()
            .is_some_and(|((topic, partition), _, _)| gone(topic, *partition))
        {
            self.next = None;
        }
        let started = Instant::now();
        let mut resume = TopicPartitionList::new();
        for (topic, partition) in &assigned {
            let key = (self.topic(topic), *partition);
            // A partition this consumer paused before it was revoked must not stay paused
            // if it comes back. (Resuming others is not harmless: it restarts their fetch.)
            if self.paused_when_revoked.remove(&key) {
                resume.add_partition(topic, *partition);
            }
            self.lanes.assign(key, started);
        }
        if resume.count() > 0 {
            if let Err(err) = self.consumer.resume(&resume) {
                tracing::debug!(error = %err, "cannot resume assigned partitions");
            }
        }
        let topic = batch.topic.clone();
        batch.retain(|record| !gone(&topic, record.partition));
    }

    /// Puts one message read from the consumer into its partition's lane, pausing the
    /// partition when the lane is full.
    fn read(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) {
        if !self.reached_start(message.topic(), message.partition(), message.offset()) {
            return;
        }
        let key = (self.topic(message.topic()), message.partition());
        let received = Instant::now();
        // Without a timestamp a record goes out as soon as it is the oldest of its lane.
        let timestamp = message.timestamp().to_millis().unwrap_or(i64::MIN);
        let held = Held {
            payload: message.payload().unwrap_or(&[]).to_vec(),
            received,
        };
        self.read_up_to.insert(key.clone(), message.offset() + 1);
        self.lanes
            .push(key.clone(), timestamp, message.offset(), held, received);
        if self.lanes.buffered(&key) >= LANE_PAUSE_AT && !self.paused.contains(&key) {
            self.pause(key, true);
        }
    }

    /// Pauses or resumes one partition's fetching.
    fn pause(&mut self, key: PartitionKey, pause: bool) {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition(&key.0, key.1);
        let done = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match done {
            Ok(()) if pause => {
                self.paused.insert(key);
            }
            Ok(()) => {
                self.paused.remove(&key);
            }
            Err(err) => {
                tracing::debug!(error = %err, partition = ?key, pause, "cannot pause or resume")
            }
        }
    }

    /// Moves the records the alignment lets go into `batch`, up to `max`; stops early at
    /// a record of another topic (kept as the next batch's first). Returns the partition
    /// the lanes hold records back for, if they do.
    fn hand_out(&mut self, batch: &mut RawBatch, max: usize, now: Instant) -> Option<PartitionKey> {
        if let Some((key, offset, held)) = self.next.take() {
            self.add(batch, key, offset, held);
        }
        while batch.len() < max && self.next.is_none() {
            match self.lanes.pop(now) {
                Ok((key, _, offset, held)) => {
                    if !batch.is_empty() && batch.topic != key.0 {
                        self.next = Some((key, offset, held));
                        break;
                    }
                    if self.paused.contains(&key) && self.lanes.buffered(&key) <= LANE_RESUME_AT {
                        self.pause(key.clone(), false);
                    }
                    self.add(batch, key, offset, held);
                }
                Err(Waiting::Empty) => return None,
                Err(Waiting::For(key)) => return Some(key),
            }
        }
        None
    }

    /// Whether `key`'s partition was read up to the high watermark its last fetch response
    /// reported: then nothing more is on the broker as far as the consumer knows, and the
    /// partition holds nobody back (librdkafka's end-of-partition event comes only with a
    /// later, empty fetch response, which in a busy topic may never come).
    fn caught_up(&self, key: &PartitionKey) -> bool {
        let Some(&next) = self.read_up_to.get(key) else {
            return false;
        };
        cached_high_watermark(&self.consumer, &key.0, key.1).is_some_and(|high| next >= high)
    }

    fn add(&self, batch: &mut RawBatch, key: PartitionKey, offset: i64, held: Held) {
        if batch.is_empty() && batch.topic != key.0 {
            batch.topic = key.0;
        }
        self.push(batch, &held.payload, key.1, offset, held.received);
    }

    /// Counts the time the lanes held records back and shows where each partition stands
    /// in event time.
    fn observe(&mut self, holding_back: bool, now: Instant) {
        let Some(observer) = &self.observer else {
            return;
        };
        match (holding_back, self.held_back_since) {
            (true, None) => self.held_back_since = Some(now),
            (false, Some(since)) => {
                observer.add_alignment_wait(now.saturating_duration_since(since));
                self.held_back_since = None;
            }
            _ => {}
        }
        observer.set_partition_event_times(
            self.lanes
                .event_times()
                .map(|((topic, partition), ms)| PartitionEventTime {
                    topic: topic.to_string(),
                    partition: *partition,
                    event_time_ms: ms,
                })
                .collect(),
        );
    }
}

impl BlockingSource for KafkaSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let started = Instant::now();
        let topic = self
            .topics
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        let mut batch = RawBatch::new(topic, max);
        let mut first_at = None;
        // A second handle, so that a polled message may borrow it while `self` changes.
        let consumer = self.consumer.clone();
        let holding_back = loop {
            let now = Instant::now();
            let waiting_for = self.hand_out(&mut batch, max, now);
            if let Some(key) = &waiting_for {
                if self.caught_up(key) {
                    self.lanes.at_end(key);
                    continue;
                }
            }
            let holding_back = waiting_for.is_some();
            if batch.len() >= max || self.next.is_some() {
                break holding_back;
            }
            if !batch.is_empty() {
                first_at.get_or_insert(now);
            }
            let left = match first_at {
                None => IDLE_POLL.checked_sub(started.elapsed()),
                Some(at) => self.batch_timeout.checked_sub(at.elapsed()),
            };
            let wait = match left {
                Some(left) if !left.is_zero() => left,
                _ => break holding_back,
            };
            let polled = consumer.poll(wait);
            self.apply_rebalances(&mut batch);
            match polled {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The error names no topic: every input topic's partition of that
                    // number counts as at its end (at worst one waits less than it could).
                    let ends: Vec<PartitionKey> = self
                        .lanes
                        .keys()
                        .filter(|(_, p)| *p == partition)
                        .cloned()
                        .collect();
                    for key in &ends {
                        self.lanes.at_end(key);
                    }
                }
                Some(Err(err)) => self.log_error(&err),
                Some(Ok(message)) => self.read(&message),
            }
        };
        self.observe(holding_back, Instant::now());
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
