//! The job run in-process on a file source and file sinks, with an acknowledger that
//! records what it is told and checks it against what the sinks hold at that moment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use riskstream_config::Config;
use tokio::sync::oneshot;

use super::*;
use crate::source::RawBatch;

const LINES: usize = 5_000;

/// A valid event, or every tenth line one that is not JSON.
fn line(i: usize) -> String {
    if i % 10 == 9 {
        return format!("not json {i}");
    }
    format!(
        r#"{{"event_id":"e-{i}","ts":"2026-11-22T10:{:02}:{:02}.000Z","account_id":"A-{}","merchant_id":"M-1","amount":{}.5,"channel":"card","country":"DE"}}"#,
        (i / 60) % 60,
        i % 60,
        i % 13,
        10 + i % 90
    )
}

/// Small batches and one-batch channels, so that little is in flight when shutdown comes.
fn config() -> Config {
    let mut config = Config::default();
    config.graph.kind = riskstream_config::GraphKind::None;
    config.pipeline.batch_size = 16;
    config.pipeline.channel_capacity = 1;
    // Tests run in parallel: only the test of the endpoint turns it on, on a port of its own.
    config.admin.listen = None;
    config
}

struct Files {
    _dir: tempfile::TempDir,
    input: PathBuf,
    results: PathBuf,
    dead: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let text: String = (0..LINES).map(|i| line(i) + "\n").collect();
    std::fs::write(&input, text).unwrap();
    Files {
        results: dir.path().join("results.jsonl"),
        dead: dir.path().join("dead.jsonl"),
        input,
        _dir: dir,
    }
}

fn options(files: &Files) -> JobOptions {
    JobOptions {
        input: Some(files.input.clone()),
        model: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1")),
        results: Some(files.results.clone()),
        dead_letters: Some(files.dead.clone()),
        ..JobOptions::default()
    }
}

/// The source offsets of the complete lines of a results or dead-letter file. A line still
/// being written is skipped: it is not delivered yet.
fn offsets_in(path: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["source"]["offset"].as_i64())
        .collect()
}

fn delivered(files: &Files) -> (Vec<i64>, Vec<i64>) {
    (offsets_in(&files.results), offsets_in(&files.dead))
}

/// Reads a growing results or dead-letter file: the offsets of the complete lines that
/// arrived since the last read. A line still being written is left for the next read.
struct Tail {
    path: PathBuf,
    read: usize,
}

impl Tail {
    fn new(path: &Path) -> Self {
        Tail {
            path: path.to_path_buf(),
            read: 0,
        }
    }

    fn new_offsets(&mut self, into: &mut BTreeSet<i64>) {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        if end < self.read {
            return;
        }
        for line in bytes[self.read..end].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(line).unwrap();
            into.insert(value["source"]["offset"].as_i64().unwrap());
        }
        self.read = end + 1;
    }
}

/// Records acknowledged offsets in order, notes any acknowledged before its result or
/// dead letter was in a file, and requests shutdown after `stop_after` batches.
struct Recorder {
    state: Mutex<Recorded>,
    stop_after: usize,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct Recorded {
    tails: Vec<Tail>,
    /// Offsets found in the files so far.
    in_files: BTreeSet<i64>,
    acked: Vec<i64>,
    batches: usize,
    /// Offsets acknowledged before their result or dead letter was in a file.
    early: Vec<i64>,
    /// How many offsets were acknowledged when `finish` was called, once per call.
    finished: Vec<usize>,
}

impl Recorder {
    fn new(files: &Files, stop_after: usize, stop: Option<oneshot::Sender<()>>) -> Arc<Self> {
        let state = Recorded {
            tails: vec![Tail::new(&files.results), Tail::new(&files.dead)],
            ..Recorded::default()
        };
        Arc::new(Recorder {
            state: Mutex::new(state),
            stop_after,
            stop: Mutex::new(stop),
        })
    }

    fn recorded<T>(&self, read: impl FnOnce(&Recorded) -> T) -> T {
        read(&self.state.lock().unwrap())
    }
}

impl Acknowledge for Recorder {
    fn delivered(&self, batch: &RawBatch) {
        let mut state = self.state.lock().unwrap();
        let Recorded {
            tails, in_files, ..
        } = &mut *state;
        for tail in tails.iter_mut() {
            tail.new_offsets(in_files);
        }
        for record in &batch.records {
            if !state.in_files.contains(&record.offset) {
                state.early.push(record.offset);
            }
            state.acked.push(record.offset);
        }
        state.batches += 1;
        if state.batches == self.stop_after {
            if let Some(stop) = self.stop.lock().unwrap().take() {
                let _ = stop.send(());
            }
        }
    }

    fn finish(&self) {
        let mut state = self.state.lock().unwrap();
        let acked = state.acked.len();
        state.finished.push(acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_stream_delivers_every_input_read_and_acknowledges_only_what_was_delivered() {
    let files = files();
    let (stop, stopped) = oneshot::channel();
    let recorder = Recorder::new(&files, 3, Some(stop));
    let mut job = Job::build(&config(), options(&files)).await.unwrap();
    job.add_acknowledger(recorder.clone());
    let summary = job
        .run(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();

    let inputs = summary.inputs as usize;
    assert!(
        inputs < LINES,
        "shutdown after 3 batches stopped the reading: {inputs} of {LINES} read"
    );
    assert!(summary.is_balanced(), "{summary:?}");
    let (results, dead) = delivered(&files);
    assert_eq!(
        (results.len() as u64, dead.len() as u64),
        (summary.results, summary.dead_letters),
        "every counted result and dead letter is in its file"
    );
    assert!(!dead.is_empty(), "the bad lines read became dead letters");
    let mut all: Vec<i64> = results.iter().chain(&dead).copied().collect();
    all.sort_unstable();
    let (acked, early, finished) =
        recorder.recorded(|r| (r.acked.clone(), r.early.clone(), r.finished.clone()));
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acknowledged in read order"
    );
    assert_eq!(
        all, acked,
        "every input read was delivered and acknowledged"
    );
    assert_eq!(
        early,
        Vec::<i64>::new(),
        "acknowledged before its result or dead letter was delivered"
    );
    assert_eq!(
        finished,
        [acked.len()],
        "finished once, after the last acknowledgement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_job_without_shutdown_reads_the_whole_file_and_accounts_for_every_line() {
    let files = files();
    let recorder = Recorder::new(&files, usize::MAX, None);
    let mut job = Job::build(&config(), options(&files)).await.unwrap();
    job.add_acknowledger(recorder.clone());
    let readiness = job.readiness();
    assert_eq!(readiness.state(), JobState::Built);
    let summary = job.run(std::future::pending()).await.unwrap();
    assert_eq!(readiness.state(), JobState::Stopped);
    assert_eq!(summary.inputs as usize, LINES);
    assert_eq!(summary.dead_letters as usize, LINES / 10);
    assert!(summary.is_balanced(), "{summary:?}");
    let (results, dead) = delivered(&files);
    assert_eq!(results.len() + dead.len(), LINES);
    let (acked, early) = recorder.recorded(|r| (r.acked.len(), r.early.len()));
    assert_eq!((acked, early), (LINES, 0), "all acknowledged, none early");
}

#[tokio::test]
async fn a_missing_model_directory_is_refused_naming_the_key_and_the_option() {
    let files = files();
    let options = JobOptions {
        model: Some(files.input.with_file_name("no-such-model")),
        ..options(&files)
    };
    let err = match Job::build(&config(), options).await {
        Ok(_) => panic!("a job without a model was built"),
        Err(err) => err,
    };
    assert!(matches!(err, BuildError::NoModelDir { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("model.path") && text.contains("--model"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_answers_503_until_the_job_runs_and_its_counters_add_up_while_it_does() {
    use crate::observe::tests::{get, sample};
    let files = files();
    let mut config = config();
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let job = Job::build(&config, options(&files)).await.unwrap();
    let address = job.admin_address().expect("admin.listen is set");
    let before = get(address, "/readyz").await;
    assert_eq!(before.status, 503, "built, not running: {}", before.body);
    assert!(
        before.body.contains("not processing events"),
        "{}",
        before.body
    );
    assert_eq!(get(address, "/healthz").await.status, 200);

    // The shutdown future is the probe: once the job is ready, it scrapes, then asks the job
    // to stop; the job still finishes everything it read.
    let (scraped_tx, scraped_rx) = oneshot::channel();
    let probe = async move {
        loop {
            if get(address, "/readyz").await.status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let metrics = get(address, "/metrics").await;
        let _ = scraped_tx.send(metrics);
    };
    let summary = job.run(probe).await.unwrap();
    let metrics = scraped_rx
        .await
        .expect("the job became ready and was scraped");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.head.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    let body = &metrics.body;
    let inputs = sample(body, "riskstream_input_records_total{source=\"file\"}");
    let results = sample(body, "riskstream_results_total{decision=\"allow\"}")
        + sample(body, "riskstream_results_total{decision=\"review\"}")
        + sample(body, "riskstream_results_total{decision=\"block\"}");
    let dead = sample(body, "riskstream_dead_letters_total{kind=\"not_json\"}");
    let in_flight = sample(body, "riskstream_in_flight_events");
    assert_eq!(inputs, results + dead + in_flight, "{body}");
    assert!(
        body.contains("riskstream_model_info{version=\"riskstream-v1\"} 1"),
        "{body}"
    );
    assert!(summary.is_balanced(), "{summary:?}");
    // The run is over: the endpoint closed with it.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// Results go to a Kafka topic whose producer takes no message over 1000 bytes
/// (`message.max.bytes`, librdkafka's smallest): a result of an event with a long id is
/// over it and is refused when it is queued, before any broker is asked, so no broker is
/// needed (the one configured does not exist). Each event becomes a dead letter of kind
/// `result_undeliverable` with its original bytes, and the job reads to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_too_large_for_the_producer_becomes_a_dead_letter_and_the_stream_goes_on() {
    const EVENTS: usize = 40;
    let files = files();
    let long_id = "x".repeat(600);
    let text: String = (0..EVENTS)
        .map(|i| {
            line(i * 10).replace("\"event_id\":\"e-", &format!("\"event_id\":\"{long_id}-")) + "\n"
        })
        .collect();
    std::fs::write(&files.input, text).unwrap();
    let mut config = config();
    config.sink.kind = riskstream_config::SinkKind::Kafka;
    config.kafka.brokers = "127.0.0.1:1".into();
    config
        .kafka
        .properties
        .insert("message.max.bytes".into(), "1000".into());
    let options = JobOptions {
        results: None,
        ..options(&files)
    };
    let recorder = Recorder::new(&files, usize::MAX, None);
    let mut job = Job::build(&config, options).await.unwrap();
    job.add_acknowledger(recorder.clone());
    let summary = job.run(std::future::pending()).await.unwrap();
    assert_eq!(summary.inputs as usize, EVENTS);
    assert_eq!(
        (summary.results, summary.dead_letters as usize),
        (0, EVENTS)
    );
    assert_eq!(
        summary.dead_letters_by_kind,
        [("result_undeliverable".to_string(), EVENTS as u64)]
    );
    let dead = std::fs::read_to_string(&files.dead).unwrap();
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), EVENTS);
    for (i, letter) in letters.iter().enumerate() {
        assert_eq!(letter["kind"], "result_undeliverable");
        assert!(
            letter["payload"].as_str().unwrap().contains(&long_id),
            "the event's original bytes: {letter}"
        );
        assert_eq!(letter["truncated"], false);
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
        assert_eq!(letter["source"]["offset"], i as i64);
    }
    let (acked, early) = recorder.recorded(|r| (r.acked.len(), r.early.clone()));
    assert_eq!(acked, EVENTS, "every input acknowledged");
    assert!(
        early.is_empty(),
        "acknowledged before their dead letter was written: {early:?}"
    );
}
