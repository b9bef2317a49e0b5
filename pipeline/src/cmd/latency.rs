//! `riskstream bench --kafka --latency`: how long a decision takes on the live path, from the
//! moment an event is handed to a Kafka producer to the moment its result can be read from
//! the results topic, at fixed input rates.
//!
//! The rates are fractions of the job's Kafka → Kafka maximum, measured first in the same
//! session (the ordinary `bench --kafka` rounds). Each rate gets a fresh input and results
//! topic and a fresh job, started as a user starts it. This process sends the benchmark's
//! events at the rate, each stamped with the time of now (live traffic) and a send-time
//! header, and reads the results topic as a downstream consumer would. The first second
//! warms the job up and is left out of the figures; the job's own per-stage times are read
//! from its `/metrics` over the measured window only.
//!
//! The sender and the reader run on the same machine as the job and take some of its CPU;
//! on a small machine that is part of what the figures include.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use riskstream_config::KafkaConfig;
use riskstream_pipeline::job::Latency;
use riskstream_pipeline::kafka::{client_config, ensure_topics};
use riskstream_pipeline::observe::Stage;

/// The header each benchmark event carries: its send time, microseconds since the Unix
/// epoch, in decimal. The job ignores it; it lets any other reader of the topic measure too.
pub const SENT_AT_HEADER: &str = "riskstream-sent-at";

/// Partitions of the per-rate topics, as the throughput rounds use.
const PARTITIONS: i32 = 4;

/// How long the job may take from start to ready (partitions assigned, model loaded).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long after the last send the reader keeps waiting for missing results.
const DRAIN: Duration = Duration::from_secs(10);

/// How long a stopped job may take to finish after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What one latency session does: the rates and how long each is measured.
#[derive(Debug, Clone)]
pub struct LatencyPlan {
    /// Fractions of the measured maximum rate, each in (0, 1.5].
    pub fractions: Vec<f64>,
    /// Sent at the rate before the measured window, left out of the figures.
    pub warmup: Duration,
    /// The measured window at each rate.
    pub measure: Duration,
}

impl LatencyPlan {
    /// Checks the plan; the error names the option to fix.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.fractions.is_empty() {
            bail!("--rates: give at least one fraction of the maximum rate, e.g. 0.1,0.5");
        }
        for &f in &self.fractions {
            if !(f.is_finite() && f > 0.0 && f <= 1.5) {
                bail!("--rates: {f} is not a fraction of the maximum rate between 0 and 1.5");
            }
        }
        if self.measure.is_zero() {
            bail!("--latency-secs must be at least 1");
        }
        Ok(())
    }
}

/// Latency percentiles in milliseconds: the run summary's, and the 99.9th.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    #[serde(flatten)]
    pub summary: Latency,
    pub p99_9: f64,
}

impl Percentiles {
    fn of_micros(histogram: &Histogram<u64>) -> Percentiles {
        let p99_9 = if histogram.is_empty() {
            0.0
        } else {
            histogram.value_at_quantile(0.999) as f64 / 1000.0
        };
        Percentiles {
            summary: Latency::of_micros(histogram),
            p99_9,
        }
    }
}

/// One stage's share of the measured window, from the job's `riskstream_stage_seconds`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTime {
    pub stage: &'static str,
    /// Micro-batches that passed the stage in the window.
    pub batches: u64,
    /// Mean time of one micro-batch in the stage, in milliseconds.
    pub mean_ms: f64,
    /// The upper bound of the histogram bucket holding the 99th percentile, in milliseconds.
    pub p99_bucket_ms: f64,
}

/// The figures of one rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateRow {
    /// The fraction of the maximum this rate is.
    pub fraction: f64,
    /// Events per second asked for.
    pub target_rate: f64,
    /// Events per second actually sent in the measured window.
    pub sent_rate: f64,
    /// Events sent in the measured window.
    pub measured: u64,
    /// Of those, results read back.
    pub received: u64,
    /// Send → result readable.
    pub latency_ms: Percentiles,
    /// The job's own figure, record read → result delivered, over its whole run.
    pub job_latency_p50_ms: f64,
    pub job_latency_p99_ms: f64,
    /// The job's time per stage in the measured window.
    pub stages: Vec<StageTime>,
}

/// Where one rate's job and topics are.
pub struct RateSetup<'a> {
    pub exe: &'a Path,
    /// The configuration file of the job, written by the caller for `input_topic` and
    /// `results_topic`; this adds the admin endpoint to it.
    pub config: PathBuf,
    pub input_topic: String,
    pub results_topic: String,
    pub dir: PathBuf,
    pub brokers: &'a str,
    pub properties: &'a [(String, String)],
    /// The events to send, cycled as often as needed.
    pub events: &'a Path,
}

/// Measures one rate: starts the job, sends at `rate` for the warm-up and the measured
/// window, reads the results back and stops the job.
pub fn measure_rate(
    setup: &RateSetup<'_>,
    fraction: f64,
    rate: f64,
    plan: &LatencyPlan,
) -> anyhow::Result<RateRow> {
    let kafka = kafka_of(setup.brokers, setup.properties);
    create_topics(
        &kafka,
        &[setup.input_topic.as_str(), setup.results_topic.as_str()],
    )?;
    let admin = free_local_port()?;
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.config)
        .with_context(|| format!("cannot open `{}`", setup.config.display()))?;
    writeln!(config, "[admin]\nlisten = \"{admin}\"")
        .with_context(|| format!("cannot write `{}`", setup.config.display()))?;
    drop(config);

    let warmup = (rate * plan.warmup.as_secs_f64()).round() as u64;
    let measured = (rate * plan.measure.as_secs_f64()).round().max(1.0) as u64;
    let total = warmup + measured;
    let clock = Arc::new(SendClock::new(total));
    let reader = Reader::start(&kafka, &setup.results_topic, clock.clone(), warmup)?;

    let summary = setup.dir.join("latency-job.json");
    let log = setup.dir.join("latency-job.log");
    let mut job = JobProcess::start(setup.exe, &setup.config, &summary, &log)?;
    job.wait_ready(admin)?;

    let producer = sender(&kafka)?;
    let mut events = EventCycle::open(setup.events)?;
    let origin = Instant::now();
    let mut before: Option<(Instant, StageCounts)> = None;
    for seq in 0..total {
        if seq == warmup {
            before = Some((Instant::now(), scrape_stages(admin)?));
        }
        let due = origin + Duration::from_secs_f64(seq as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let line = events.next_line()?;
        let event = live_event(&line, seq)
            .with_context(|| format!("line {} of the events is not a generated event", seq))?;
        send(&producer, &setup.input_topic, &event, clock.mark(seq))?;
    }
    let (started, before) = match before {
        Some(b) => b,
        None => (Instant::now(), scrape_stages(admin)?),
    };
    let sent_secs = started.elapsed().as_secs_f64();
    producer
        .flush(Duration::from_secs(30))
        .context("cannot flush the benchmark's producer")?;
    let histogram = reader.finish(measured, DRAIN)?;
    let after = scrape_stages(admin)?;
    let job_summary = job.stop()?;
    Ok(RateRow {
        fraction,
        target_rate: rate,
        sent_rate: measured as f64 / sent_secs.max(1e-9),
        measured,
        received: histogram.len(),
        latency_ms: Percentiles::of_micros(&histogram),
        job_latency_p50_ms: job_summary["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        job_latency_p99_ms: job_summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        stages: stage_times(&before, &after),
    })
}

/// Prints the rows as a table.
pub fn print_table(max_rate: f64, rows: &[RateRow]) {
    println!(
        "latency, send → result readable (maximum measured first: {max_rate:.0} events/s)\n  \
         rate   target/s    sent/s  received/sent      p50     p90     p99   p99.9     max   job p50  job p99  (ms)"
    );
    for row in rows {
        let l = &row.latency_ms.summary;
        println!(
            "  {:>4.0} % {:>10.0} {:>9.0} {:>8}/{:<7} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.1}   {:>7.2}  {:>7.2}",
            row.fraction * 100.0,
            row.target_rate,
            row.sent_rate,
            row.received,
            row.measured,
            l.p50,
            l.p90,
            l.p99,
            row.latency_ms.p99_9,
            l.max,
            row.job_latency_p50_ms,
            row.job_latency_p99_ms,
        );
        let stages: Vec<String> = row
            .stages
            .iter()
            .filter(|s| s.batches > 0)
            .map(|s| {
                format!(
                    "{} {:.2} ms (p99 ≤ {} ms)",
                    s.stage, s.mean_ms, s.p99_bucket_ms
                )
            })
            .collect();
        if !stages.is_empty() {
            println!("         per batch: {}", stages.join(" · "));
        }
    }
}

fn kafka_of(brokers: &str, properties: &[(String, String)]) -> KafkaConfig {
    let mut kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        ..KafkaConfig::default()
    };
    for (key, value) in properties {
        kafka.properties.insert(key.clone(), value.clone());
    }
    kafka
}

fn create_topics(kafka: &KafkaConfig, topics: &[&str]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime to create the benchmark topics")?;
    runtime
        .block_on(ensure_topics(kafka, topics, PARTITIONS, 1))
        .context("cannot create the latency benchmark's topics")
}

/// A loopback port nobody listens on right now, for the job's admin endpoint.
fn free_local_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    listener
        .local_addr()
        .context("cannot read the free port's address")
}

/// The send time of every benchmark event, by sequence number: nanoseconds after the
/// clock's origin, 0 while not sent yet.
struct SendClock {
    origin: Instant,
    sent: Vec<AtomicU64>,
}

impl SendClock {
    fn new(events: u64) -> SendClock {
        SendClock {
            origin: Instant::now(),
            sent: (0..events).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records that `seq` is sent now; returns the wall-clock send time for the header.
    fn mark(&self, seq: u64) -> u64 {
        let nanos = (self.origin.elapsed().as_nanos() as u64).max(1);
        if let Some(slot) = self.sent.get(seq as usize) {
            slot.store(nanos, Ordering::Release);
        }
        chrono::Utc::now().timestamp_micros().max(0) as u64
    }

    /// Microseconds from `seq`'s send to now, when it was sent.
    fn since_sent(&self, seq: u64) -> Option<u64> {
        let sent = self.sent.get(seq as usize)?.load(Ordering::Acquire);
        if sent == 0 {
            return None;
        }
        let now = self.origin.elapsed().as_nanos() as u64;
        Some(now.saturating_sub(sent) / 1000)
    }
}

/// The results reader: a consumer assigned to every partition of the results topic from the
/// beginning (no group), recording each benchmark result's latency.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Histogram<u64>>>,
    received: Arc<AtomicU64>,
}

impl Reader {
    fn start(
        kafka: &KafkaConfig,
        topic: &str,
        clock: Arc<SendClock>,
        warmup: u64,
    ) -> anyhow::Result<Reader> {
        let mut client = client_config(kafka);
        client
            .set(
                "group.id",
                format!("riskstream-latency-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        let consumer: BaseConsumer = client
            .create()
            .context("cannot create the results reader")?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .context("cannot assign the results topic")?;
        }
        consumer
            .assign(&assignment)
            .context("cannot assign the results topic")?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let received = received.clone();
            std::thread::spawn(move || -> anyhow::Result<Histogram<u64>> {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
                    .context("cannot create the latency histogram")?;
                while !stop.load(Ordering::Acquire) {
                    let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let message = message.context("the results reader failed")?;
                    let Some(seq) = message.payload().and_then(benchmark_seq) else {
                        continue;
                    };
                    if seq < warmup {
                        continue;
                    }
                    if let Some(micros) = clock.since_sent(seq) {
                        histogram.saturating_record(micros.max(1));
                        received.fetch_add(1, Ordering::Release);
                    }
                }
                Ok(histogram)
            })
        };
        Ok(Reader {
            stop,
            thread,
            received,
        })
    }

    /// Waits until `expected` results are read or `drain` passes, and returns the figures.
    fn finish(self, expected: u64, drain: Duration) -> anyhow::Result<Histogram<u64>> {
        let deadline = Instant::now() + drain;
        while self.received.load(Ordering::Acquire) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the results reader panicked"),
        }
    }
}

/// The sequence number of a benchmark result, from its `event_id` (`lat-SEQ`).
fn benchmark_seq(payload: &[u8]) -> Option<u64> {
    let id = string_field(payload, "event_id")?;
    std::str::from_utf8(&payload[id])
        .ok()?
        .strip_prefix("lat-")?
        .parse()
        .ok()
}

/// The byte range of the value of the first `"name":"..."` in a JSON line, when the value
/// has no escapes (the generator's ids, times and accounts have none).
fn string_field(line: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let pattern = format!("\"{name}\":\"");
    let start = line
        .windows(pattern.len())
        .position(|w| w == pattern.as_bytes())?
        + pattern.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
    if line[start..start + len].contains(&b'\\') {
        return None;
    }
    Some(start..start + len)
}

/// A generated event made live: its `event_id` becomes `lat-SEQ` and its `ts` the time of
/// now. Returns the payload and its key (the account).
struct LiveEvent {
    payload: Vec<u8>,
    key: std::ops::Range<usize>,
}

fn live_event(line: &[u8], seq: u64) -> Option<LiveEvent> {
    let id = string_field(line, "event_id")?;
    let ts = string_field(line, "ts")?;
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let new_id = format!("lat-{seq}");
    // Replace the later field first so the earlier range stays valid.
    let mut replacements = [(id, new_id.as_bytes()), (ts, now.as_bytes())];
    replacements.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut payload = line.to_vec();
    for (range, value) in replacements {
        payload.splice(range, value.iter().copied());
    }
    let key = string_field(&payload, "account_id")?;
    Some(LiveEvent { payload, key })
}

/// The events file read line by line, from the start again at its end.
struct EventCycle {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    line: Vec<u8>,
}

impl EventCycle {
    fn open(path: &Path) -> anyhow::Result<EventCycle> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the events `{}`", path.display()))?;
        Ok(EventCycle {
            path: path.to_owned(),
            reader: BufReader::new(file),
            line: Vec::new(),
        })
    }

    fn next_line(&mut self) -> anyhow::Result<Vec<u8>> {
        for _ in 0..2 {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .with_context(|| format!("cannot read `{}`", self.path.display()))?;
            if read > 0 {
                while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    self.line.pop();
                }
                return Ok(self.line.clone());
            }
            *self = EventCycle::open(&self.path)?;
        }
        bail!("the events `{}` are empty", self.path.display())
    }
}

/// The benchmark's producer: a client as a payment service would run it, sending at once
/// (`linger.ms` 1) with the broker's acknowledgement of every write.
fn sender(kafka: &KafkaConfig) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let mut client = client_config(kafka);
    client.set_log_level(RDKafkaLogLevel::Warning);
    for (name, value) in [("linger.ms", "1"), ("acks", "all")] {
        if !kafka.properties.contains_key(name) {
            client.set(name, value);
        }
    }
    client
        .create()
        .context("cannot create the benchmark's producer")
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    event: &LiveEvent,
    sent_at_micros: u64,
) -> anyhow::Result<()> {
    let stamp = sent_at_micros.to_string();
    let headers = OwnedHeaders::new().insert(Header {
        key: SENT_AT_HEADER,
        value: Some(stamp.as_bytes()),
    });
    let mut record = BaseRecord::to(topic)
        .payload(&event.payload[..])
        .key(&event.payload[event.key.clone()])
        .headers(headers);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((err, _)) => bail!("cannot send a benchmark event: {err}"),
        }
    }
}

/// A job started for one rate, stopped with SIGTERM so it writes its summary.
struct JobProcess {
    child: Child,
    summary: PathBuf,
    log: PathBuf,
}

impl JobProcess {
    fn start(exe: &Path, config: &Path, summary: &Path, log: &Path) -> anyhow::Result<JobProcess> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create `{}`", log.display()))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--quiet")
            .arg("--config")
            .arg(config)
            .arg("--summary-json")
            .arg(summary)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("cannot start `riskstream run`")?;
        Ok(JobProcess {
            child,
            summary: summary.to_owned(),
            log: log.to_owned(),
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `/readyz` answers 200: model loaded, partitions assigned.
    fn wait_ready(&mut self, admin: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot watch the job")? {
                bail!(
                    "the job exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if matches!(http_get(admin, "/readyz"), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the job was not ready after {} s:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the job with SIGTERM and returns its summary.
    fn stop(mut self) -> anyhow::Result<serde_json::Value> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("cannot send SIGTERM to the job")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("cannot watch the job")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!(
                    "the job did not stop within {} s of SIGTERM:\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!("the job failed ({status}):\n{}", self.log_tail());
        }
        let text = std::fs::read(&self.summary)
            .with_context(|| format!("the job wrote no summary to `{}`", self.summary.display()))?;
        serde_json::from_slice(&text).context("the job's summary is not JSON")
    }
}

impl Drop for JobProcess {
    fn drop(&mut self) {
        // A benchmark that fails half-way must not leave a job running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET against the job's admin endpoint: status and body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Cumulative `riskstream_stage_seconds` per stage: the bucket counts (by upper bound, in
/// seconds, `+Inf` as infinity), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
struct StageHistogram {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

type StageCounts = HashMap<String, StageHistogram>;

fn scrape_stages(admin: SocketAddr) -> anyhow::Result<StageCounts> {
    let (status, body) = http_get(admin, "/metrics").context("cannot read the job's /metrics")?;
    if status != 200 {
        bail!("the job's /metrics answered {status}");
    }
    Ok(parse_stages(&body))
}

/// The stage histograms of a `/metrics` text.
fn parse_stages(text: &str) -> StageCounts {
    let mut stages = StageCounts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("riskstream_stage_seconds_") else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((kind, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(stage) = label(labels, "stage") else {
            continue;
        };
        let entry = stages.entry(stage.to_owned()).or_default();
        match kind {
            "bucket" => {
                let bound = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                entry.buckets.push((bound, value as u64));
            }
            "sum" => entry.sum = value,
            "count" => entry.count = value as u64,
            _ => {}
        }
    }
    stages
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// Each stage's time between two scrapes, in data-flow order.
fn stage_times(before: &StageCounts, after: &StageCounts) -> Vec<StageTime> {
    Stage::ALL
        .iter()
        .map(|stage| {
            let name = stage.as_str();
            let empty = StageHistogram::default();
            let a = after.get(name).unwrap_or(&empty);
            let b = before.get(name).unwrap_or(&empty);
            let batches = a.count.saturating_sub(b.count);
            let sum = (a.sum - b.sum).max(0.0);
            let mut p99_bucket_ms = 0.0;
            if batches > 0 {
                let wanted = (batches as f64 * 0.99).ceil() as u64;
                for &(bound, count) in &a.buckets {
                    let earlier = b
                        .buckets
                        .iter()
                        .find(|(ub, _)| *ub == bound)
                        .map_or(0, |(_, c)| *c);
                    if count.saturating_sub(earlier) >= wanted {
                        p99_bucket_ms = bound * 1000.0;
                        break;
                    }
                }
            }
            StageTime {
                stage: name,
                batches,
                mean_ms: if batches > 0 {
                    sum * 1000.0 / batches as f64
                } else {
                    0.0
                },
                p99_bucket_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = br#"{"event_id":"e-00000007","account_id":"A-012914","ts":"2026-11-01T00:00:05.213Z","amount":9.91}"#;

    #[test]
    fn a_live_event_gets_the_sequence_id_and_the_time_of_now_and_keeps_the_rest() {
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        let event = live_event(LINE, 41).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(value["event_id"], "lat-41");
        assert_eq!(value["account_id"], "A-012914");
        assert_eq!(value["amount"], 9.91);
        let ts = chrono::DateTime::parse_from_rfc3339(value["ts"].as_str().unwrap()).unwrap();
        assert!(ts > before, "{ts} is not the time of now");
        assert_eq!(&event.payload[event.key.clone()], b"A-012914");
        assert_eq!(benchmark_seq(&event.payload), Some(41));
    }

    #[test]
    fn results_of_other_events_have_no_benchmark_sequence() {
        assert_eq!(benchmark_seq(LINE), None);
        assert_eq!(benchmark_seq(br#"{"event_id":"lat-x"}"#), None);
        assert_eq!(benchmark_seq(br#"{"event_id":"lat-\"1"}"#), None);
        assert_eq!(benchmark_seq(b"not json"), None);
    }

    #[test]
    fn stage_times_are_the_difference_between_two_scrapes() {
        let scrape = |count: u64, sum: f64, fast: u64| {
            format!(
                "# TYPE riskstream_stage_seconds histogram\n\
                 riskstream_stage_seconds_sum{{stage=\"score\"}} {sum}\n\
                 riskstream_stage_seconds_count{{stage=\"score\"}} {count}\n\
                 riskstream_stage_seconds_bucket{{le=\"0.001\",stage=\"score\"}} {fast}\n\
                 riskstream_stage_seconds_bucket{{le=\"0.01\",stage=\"score\"}} {count}\n\
                 riskstream_stage_seconds_bucket{{le=\"+Inf\",stage=\"score\"}} {count}\n"
            )
        };
        let before = parse_stages(&scrape(100, 1.0, 100));
        // 100 more batches, 0.2 s in all, 98 of them under 1 ms: the p99 is in the 10 ms bucket.
        let after = parse_stages(&scrape(200, 1.2, 198));
        let times = stage_times(&before, &after);
        let score = times.iter().find(|s| s.stage == "score").unwrap();
        assert_eq!(score.batches, 100);
        assert!((score.mean_ms - 2.0).abs() < 1e-9, "{score:?}");
        assert_eq!(score.p99_bucket_ms, 10.0);
        let decode = times.iter().find(|s| s.stage == "decode").unwrap();
        assert_eq!(decode.batches, 0);
    }

    #[test]
    fn a_send_clock_measures_only_what_was_sent() {
        let clock = SendClock::new(3);
        assert_eq!(clock.since_sent(1), None);
        clock.mark(1);
        assert!(clock.since_sent(1).is_some());
        assert_eq!(clock.since_sent(7), None);
    }

    #[test]
    fn plans_with_rates_outside_the_range_are_refused_naming_the_option() {
        let plan = |fractions: Vec<f64>| LatencyPlan {
            fractions,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(3),
        };
        assert!(plan(vec![0.1, 0.5, 0.8]).check().is_ok());
        for bad in [vec![], vec![0.0], vec![2.0], vec![f64::NAN]] {
            let err = plan(bad).check().unwrap_err().to_string();
            assert!(err.contains("--rates"), "{err}");
        }
    }
}
