//! Helpers for the tests against the real Kafka broker: unique topic and group names, data
//! sets, the job as a child process, and reading whole topics back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::{repo_root, riskstream_bin};

/// The broker `scripts/test.sh` started (`RISKSTREAM_TEST_BROKERS` overrides).
pub fn brokers() -> String {
    std::env::var("RISKSTREAM_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test (or earlier run) uses: topics and groups never collide.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a `riskstream` command to completion and panics with its output if it fails;
/// returns what it wrote to standard error (its progress and summary).
pub fn riskstream(args: &[&str]) -> String {
    riskstream_with_env(args, &[])
}

/// [`riskstream`] with extra environment variables, such as a password.
pub fn riskstream_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(riskstream_bin())
        .args(args)
        // Tests run in parallel: no job of theirs takes the admin endpoint's default port.
        .env("RISKSTREAM__ADMIN__LISTEN", "")
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .output()
        .expect("riskstream runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "riskstream {args:?} failed: {}\n{stderr}",
        out.status
    );
    stderr
}

/// Generates `events` events (with their graph) into `dir`, returns the events file.
pub fn generate(dir: &Path, events: u64, seed: u64) -> PathBuf {
    riskstream(&[
        "gen",
        "--out",
        dir.to_str().expect("temp paths are UTF-8"),
        "--events",
        &events.to_string(),
        "--accounts",
        "5000",
        "--seed",
        &seed.to_string(),
    ]);
    dir.join("events.jsonl")
}

/// The `event_id` of every line of an events file that has one.
pub fn event_ids(events: &Path) -> Vec<String> {
    std::fs::read(events)
        .expect("events file is readable")
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// Sends the lines of `file` to `topic` (created with `partitions` partitions).
pub fn produce(topic: &str, file: &Path, partitions: i32) {
    riskstream(&[
        "produce",
        "--quiet",
        "--brokers",
        &brokers(),
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--input",
        file.to_str().expect("temp paths are UTF-8"),
    ]);
}

/// Grows `topic` to `total` partitions; the new ones are empty.
pub fn add_partitions(topic: &str, total: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("an admin client can be created");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let results = runtime
        .block_on(admin.create_partitions(
            &[NewPartitions::new(topic, total)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("the broker answers");
    for result in results {
        result.expect("the partitions are added");
    }
}

/// Topics and group of one job deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub input: String,
    pub results: String,
    pub dead_letters: String,
    pub group: String,
}

impl Deployment {
    pub fn new(name: &str) -> Self {
        Deployment {
            input: unique(&format!("{name}-events")),
            results: unique(&format!("{name}-results")),
            dead_letters: unique(&format!("{name}-dead")),
            group: unique(&format!("{name}-group")),
        }
    }

    /// Writes the job's configuration file: Kafka in and out, topics created at start. The
    /// admin endpoint is off (jobs of parallel tests would share its port) unless `extra`
    /// has an `[admin]` table.
    pub fn write_config(&self, dir: &Path, extra: &str) -> PathBuf {
        let admin = if extra.contains("[admin]") {
            ""
        } else {
            "[admin]\nlisten = \"\"\n"
        };
        let path = dir.join(format!("{}.toml", self.group));
        let text = format!(
            "[source]\nkind = \"kafka\"\nmax_event_bytes = 1024\n\
             [sink]\nkind = \"kafka\"\n[dead_letter]\nkind = \"kafka\"\n\
             [kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\ninput_topics = [\"{}\"]\n\
             results_topic = \"{}\"\ndead_letter_topic = \"{}\"\ncreate_topics = true\n\
             partitions = 4\n{admin}{extra}",
            brokers(),
            self.group,
            self.input,
            self.results,
            self.dead_letters
        );
        std::fs::write(&path, text).expect("config is writable");
        path
    }
}

/// The job as a child process; killed when dropped.
pub struct Job {
    child: Child,
    pub log: PathBuf,
}

impl Job {
    /// Starts `riskstream run --config CONFIG ARGS...`, logging to `log`.
    pub fn start(config: &Path, args: &[&str], log: PathBuf) -> Job {
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(riskstream_bin());
        // Tests run in parallel: the admin endpoint is off unless the configuration asks
        // for it (on a port of its own).
        let text = std::fs::read_to_string(config).unwrap_or_default();
        if !text.contains("[admin]") {
            command.env("RISKSTREAM__ADMIN__LISTEN", "");
        }
        let child = command
            .arg("run")
            .arg("--quiet")
            .arg("--config")
            .arg(config)
            .arg("--model")
            .arg(repo_root().join("models/riskstream-v1"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the job starts");
        Job { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the job to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the job did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub timestamp: Option<i64>,
}

fn query_consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .expect("a consumer can be created")
}

/// Every message currently in `topic` (up to the high watermarks when called).
pub fn read_topic(topic: &str) -> Vec<Record> {
    let consumer = query_consumer();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .expect("offset");
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let mut done: HashMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.values().any(|d| !d) {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("a readable message");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp: message.timestamp().to_millis(),
        });
        if message.offset() + 1 >= ends[&message.partition()] {
            done.insert(message.partition(), true);
        }
    }
    out
}

/// How many messages `topic` holds now (sum of high minus low watermarks).
pub fn message_count(topic: &str) -> i64 {
    let consumer = query_consumer();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return 0;
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .ok()
        })
        .map(|(low, high)| high - low)
        .sum()
}

/// The `event_id` of each result on the results topic, in topic order.
pub fn result_ids(topic: &str) -> Vec<String> {
    read_topic(topic)
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(&r.payload).expect("results are JSON");
            v["event_id"]
                .as_str()
                .expect("results have an event_id")
                .to_owned()
        })
        .collect()
}

/// Waits until `topic` holds at least `n` messages, at most `limit`.
pub fn wait_for_messages(topic: &str, n: i64, limit: Duration, job: Option<&mut Job>) {
    let deadline = Instant::now() + limit;
    let mut job = job;
    while message_count(topic) < n {
        if let Some(job) = job.as_deref_mut() {
            if let Some(status) = job.child.try_wait().expect("wait works") {
                panic!(
                    "the job exited ({status}) before {topic} had {n} messages; log:\n{}",
                    job.log_text()
                );
            }
        }
        if Instant::now() >= deadline {
            let log = job.as_deref().map(Job::log_text).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{topic} has {} of {n} messages after {limit:?}; job log tail:\n{}",
                message_count(topic),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The group's committed offsets per partition of `topic`.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .expect("a consumer can be created");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect()
}

/// Runs a service script (`scripts/kafka.sh stop`).
pub fn service(script: &str, action: &str) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts").join(script))
        .arg(action)
        .current_dir(repo_root())
        .status()
        .expect("the service script runs");
    assert!(status.success(), "scripts/{script} {action} failed");
}
