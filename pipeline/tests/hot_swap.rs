//! Model hot swap, end to end: the `riskstream` binary reads events from a named pipe that
//! the test feeds, so the test decides which events are in flight when a new (or corrupt)
//! model lands in the watched directory.
#![cfg(unix)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const METADATA: &str = "metadata.json";
const WEIGHTS: &str = "model.safetensors";
/// Events per write; a multiple of the job's default batch size (512), so that the file
/// source never waits for the rest of a batch.
const CHUNK: usize = 512;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskstream"));
    // Info level: the test waits for the job's own "swapped in" / "rejected" log lines.
    cmd.env("RUST_LOG", "info");
    for (key, _) in std::env::vars() {
        if key.starts_with("RISKSTREAM__") {
            cmd.env_remove(key);
        }
    }
    // Tests run in parallel: no job of theirs takes the admin endpoint's default port.
    cmd.env("RISKSTREAM__ADMIN__LISTEN", "");
    cmd
}

fn copy_model(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in [METADATA, WEIGHTS] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

/// A valid second model: the shipped weights under another version, with other thresholds.
fn second_model(dir: &Path, version: &str, review: f64, block: f64) {
    copy_model(&repo_root().join("models/riskstream-v1"), dir);
    let path = dir.join(METADATA);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["version"] = serde_json::json!(version);
    json["thresholds"] = serde_json::json!({"review": review, "block": block});
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// A generated data set: event lines and the graph file beside them.
fn dataset(dir: &Path, events: usize) -> Vec<String> {
    let out = bin()
        .env("RUST_LOG", "warn")
        .args(["gen", "--seed", "21", "--accounts", "3000", "--events"])
        .arg(events.to_string())
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The running job, its stderr collected line by line.
struct Job {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    swapped: Arc<AtomicBool>,
    pipe: Option<std::fs::File>,
    results: PathBuf,
}

impl Job {
    fn start(dir: &Path, model: &Path, graph: &Path, extra: &[&str], env: &[(&str, &str)]) -> Job {
        let fifo = dir.join("events.fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo failed");
        let results = dir.join("results.jsonl");
        let mut cmd = bin();
        cmd.args(["run", "--quiet", "--model"])
            .arg(model)
            .arg("--input")
            .arg(&fifo)
            .arg("--graph")
            .arg(graph)
            .arg("--output")
            .arg(&results)
            .arg("--dead-letter")
            .arg(dir.join("dead.jsonl"))
            .arg("--summary-json")
            .arg(dir.join("summary.json"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let swapped = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            let swapped = swapped.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("model swapped in") {
                        swapped.store(true, Ordering::SeqCst);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        // Opening the write end waits for the job to open the read end.
        let pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        Job {
            child,
            log,
            swapped,
            pipe: Some(pipe),
            results,
        }
    }

    fn write(&mut self, lines: &[String]) {
        let pipe = self.pipe.as_mut().unwrap();
        let mut text = lines.join("\n");
        text.push('\n');
        pipe.write_all(text.as_bytes()).unwrap();
        pipe.flush().unwrap();
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn wait_for_log(&self, needle: &str) {
        let started = Instant::now();
        while !self.log_text().contains(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no `{needle}` in the job's log after a minute:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_results(&self, n: usize) {
        let started = Instant::now();
        loop {
            let have = std::fs::read(&self.results)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .unwrap_or(0);
            if have >= n {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{have} of {n} results after a minute:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Closes the pipe (end of input) and waits for the job to finish.
    fn finish(mut self) -> (Vec<serde_json::Value>, serde_json::Value, String) {
        drop(self.pipe.take());
        let status = self.child.wait().unwrap();
        // Let the reader thread drain the last log lines.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log_text();
        assert!(status.success(), "job failed ({status}):\n{log}");
        let results = std::fs::read_to_string(&self.results)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let dir = self.results.parent().unwrap().to_path_buf();
        let summary =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        (results, summary, log)
    }
}

fn versions(results: &[serde_json::Value]) -> Vec<&str> {
    results
        .iter()
        .map(|r| r["model_version"].as_str().unwrap())
        .collect()
}

/// Every input has exactly one result, in input order.
fn assert_one_result_per_event(results: &[serde_json::Value], events: &[String]) {
    assert_eq!(results.len(), events.len(), "one result per event");
    let ids: Vec<String> = events
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let got: Vec<&str> = results
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids, "results follow the input, none lost or repeated");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), ids.len());
}

/// A result's decision follows the thresholds of the model that scored it. Scores and
/// thresholds are f32 in the job; the JSON text of an f32 parses back to the same f32.
fn assert_decided_with(result: &serde_json::Value, review: f64, block: f64) {
    let score = result["score"].as_f64().unwrap() as f32;
    let expected = if score >= block as f32 {
        "block"
    } else if score >= review as f32 {
        "review"
    } else {
        "allow"
    };
    assert_eq!(
        result["decision"], expected,
        "score {score} with review {review}, block {block}: {result}"
    );
}

fn shipped_thresholds() -> (f64, f64) {
    let path = repo_root().join("models/riskstream-v1").join(METADATA);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let t = |k: &str| json["thresholds"][k].as_f64().unwrap();
    (t("review"), t("block"))
}

#[test]
fn a_model_copied_into_the_watched_directory_takes_over_mid_stream_without_losing_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let events = dataset(&data, 60 * CHUNK);
    let model = tmp.path().join("model");
    copy_model(&repo_root().join("models/riskstream-v1"), &model);
    let staged = tmp.path().join("staged");
    second_model(&staged, "riskstream-v2-test", 0.05, 0.5);

    let mut job = Job::start(
        tmp.path(),
        &model,
        &data.join("graph.jsonl"),
        &[],
        &[("RISKSTREAM__MODEL__RELOAD_INTERVAL", "50ms")],
    );
    let first = 8 * CHUNK;
    job.write(&events[..first]);
    job.wait_for_results(first);

    // The new model lands while events keep flowing: the rest is fed in paced chunks
    // until the job reports the swap, then all at once. The pace is one chunk per 250 ms at
    // most, so a loaded machine has several seconds to notice, load and swap the model
    // with events still arriving.
    copy_model(&staged, &model);
    for chunk in events[first..].chunks(CHUNK) {
        job.write(chunk);
        let paced = Instant::now();
        while !job.swapped.load(Ordering::SeqCst) && paced.elapsed() < Duration::from_millis(250) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        job.swapped.load(Ordering::SeqCst),
        "the new model was not swapped in while {} events were fed:\n{}",
        events.len() - first,
        job.log_text()
    );
    let (results, summary, _) = job.finish();

    assert_one_result_per_event(&results, &events);
    let versions = versions(&results);
    let switch = versions
        .iter()
        .position(|v| *v == "riskstream-v2-test")
        .expect("results scored by the new model");
    assert!(
        switch >= first,
        "events scored before the copy used the old model"
    );
    assert!(
        versions[..switch].iter().all(|v| *v == "riskstream-v1")
            && versions[switch..]
                .iter()
                .all(|v| *v == "riskstream-v2-test"),
        "one switch from the old model to the new one, at a batch boundary"
    );
    assert_eq!(switch % CHUNK, 0, "the switch lands between batches");
    let (review, block) = shipped_thresholds();
    for r in &results[..switch] {
        assert_decided_with(r, review, block);
    }
    for r in &results[switch..] {
        assert_decided_with(r, 0.05, 0.5);
    }
    assert_eq!(summary["model_swaps"], 1);
    assert_eq!(summary["model_rejections"], 0);
    assert_eq!(summary["inputs"], summary["results"]);
}

/// A job on a copy of the shipped model with polling off, so that only SIGHUP reloads
/// (the configuration's block threshold is re-read on SIGHUP too).
struct SighupJob {
    events: Vec<String>,
    model: PathBuf,
    config: PathBuf,
    job: Job,
}

fn sighup_job(dir: &Path) -> SighupJob {
    let data = dir.join("data");
    let events = dataset(&data, 30 * CHUNK);
    let model = dir.join("model");
    copy_model(&repo_root().join("models/riskstream-v1"), &model);
    let config = dir.join("riskstream.toml");
    std::fs::write(&config, "[model]\nreload_interval = \"0s\"\n").unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let job = Job::start(
        dir,
        &model,
        &data.join("graph.jsonl"),
        &["--config", &config_arg],
        &[],
    );
    SighupJob {
        events,
        model,
        config,
        job,
    }
}

#[test]
fn a_corrupt_model_is_rejected_while_the_old_one_keeps_serving_and_sighup_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let SighupJob {
        events,
        model,
        config,
        mut job,
    } = sighup_job(tmp.path());
    let part = 10 * CHUNK;
    job.write(&events[..part]);
    job.wait_for_results(part);

    // Truncated weights: rejected with the file named, the old model keeps scoring.
    let weights = std::fs::read(model.join(WEIGHTS)).unwrap();
    std::fs::write(model.join(WEIGHTS), &weights[..weights.len() - 100]).unwrap();
    job.hangup();
    job.wait_for_log("new model rejected");
    job.write(&events[part..2 * part]);
    job.wait_for_results(2 * part);

    // A valid model and a new block threshold in the configuration: SIGHUP takes both.
    second_model(&model, "riskstream-v2-test", 0.05, 0.5);
    std::fs::write(
        &config,
        "[model]\nreload_interval = \"0s\"\nblock_threshold = 0.6\n",
    )
    .unwrap();
    job.hangup();
    job.wait_for_log("model swapped in");
    job.write(&events[2 * part..]);
    let (results, summary, log) = job.finish();

    assert!(
        log.contains("model.safetensors") && log.contains("truncated or corrupt"),
        "the rejection names the file and the problem:\n{log}"
    );
    assert_one_result_per_event(&results, &events);
    let versions = versions(&results);
    assert!(
        versions[..2 * part].iter().all(|v| *v == "riskstream-v1"),
        "the old model served every event until the valid model arrived"
    );
    assert!(versions[2 * part..]
        .iter()
        .all(|v| *v == "riskstream-v2-test"));
    let (review, block) = shipped_thresholds();
    for r in &results[..2 * part] {
        assert_decided_with(r, review, block);
    }
    for r in &results[2 * part..] {
        assert_decided_with(r, 0.05, 0.6);
    }
    assert_eq!(summary["model_rejections"], 1);
    assert_eq!(summary["model_swaps"], 1);
}

/// Rewrites the model's metadata.json through `edit`.
fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(METADATA);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// A model that passes every check but the canary: the shipped weights with a finite but
/// absurd normalisation mean (it scores every event 0.0, so everything would be allowed).
fn degenerate_metadata(dir: &Path, version: &str) {
    copy_model(&repo_root().join("models/riskstream-v1"), dir);
    edit_metadata(dir, |json| {
        json["version"] = serde_json::json!(version);
        json["norm_mean"][0] = serde_json::json!(3e38);
    });
}

/// Overwrites the values of one F32 tensor of the model's safetensors file in place.
fn set_tensor(dir: &Path, name: &str, value: impl Fn(usize) -> f32) {
    let path = dir.join(WEIGHTS);
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
    let end = 8 + header_len + offsets[1].as_u64().unwrap() as usize;
    for (i, chunk) in bytes[start..end].chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&value(i).to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn degenerate_models_are_refused_at_hot_swap_and_the_old_model_keeps_scoring() {
    let tmp = tempfile::tempdir().unwrap();
    let SighupJob {
        events,
        model,
        config: _,
        mut job,
    } = sighup_job(tmp.path());
    let part = 10 * CHUNK;
    job.write(&events[..part]);
    job.wait_for_results(part);

    // norm_mean[0] = 3e38 under a new version: it scores every canary row 0.
    degenerate_metadata(&model, "riskstream-v2-degenerate");
    job.hangup();
    job.wait_for_log("new model rejected");
    job.write(&events[part..2 * part]);
    job.wait_for_results(2 * part);

    // Good metadata again, last-layer weights of ±3e38: it scores only 0 and 1.
    second_model(&model, "riskstream-v2-saturated", 0.05, 0.5);
    set_tensor(&model, "layers.2.weight", |i| {
        if i % 2 == 0 {
            3e38
        } else {
            -3e38
        }
    });
    job.hangup();
    let started = Instant::now();
    while job.log_text().matches("new model rejected").count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second model was not rejected within a minute:\n{}",
            job.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    job.write(&events[2 * part..]);
    let (results, summary, log) = job.finish();

    let refused = format!(
        "model {} refused: degenerate scores: it scores",
        model.display()
    );
    assert_eq!(log.matches(&refused).count(), 2, "{log}");
    assert!(
        log.contains("it scores every canary row 0.0000; expected spread"),
        "{log}"
    );
    assert_one_result_per_event(&results, &events);
    assert!(
        versions(&results).iter().all(|v| *v == "riskstream-v1"),
        "the old model scored every event"
    );
    let (review, block) = shipped_thresholds();
    for r in &results {
        assert_decided_with(r, review, block);
    }
    assert!(
        results.iter().any(|r| r["decision"] != "allow"),
        "the old model still blocks or reviews some events"
    );
    assert_eq!(summary["model_rejections"], 2);
    assert_eq!(summary["model_swaps"], 0);
}

#[test]
fn a_degenerate_model_or_one_without_a_canary_is_refused_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let degenerate = tmp.path().join("degenerate");
    degenerate_metadata(&degenerate, "riskstream-v2-degenerate");
    let uncanaried = tmp.path().join("uncanaried");
    copy_model(&repo_root().join("models/riskstream-v1"), &uncanaried);
    edit_metadata(&uncanaried, |json| {
        json.as_object_mut().unwrap().remove("canary");
    });
    for (model, expected) in [
        (
            &degenerate,
            format!(
                "model {} refused: degenerate scores: it scores every canary row 0.0000",
                degenerate.display()
            ),
        ),
        (
            &uncanaried,
            format!(
                "has no canary: a model is checked by scoring the canary rows in its metadata \
                 before it is used. Write one from a labelled data set with `riskstream model \
                 canary --model {} --data DATA_DIR`",
                uncanaried.display()
            ),
        ),
    ] {
        let out = bin()
            .args(["run", "--quiet", "--max-events", "100", "--model"])
            .arg(model)
            .arg("--output")
            .arg(tmp.path().join("results.jsonl"))
            .arg("--dead-letter")
            .arg(tmp.path().join("dead.jsonl"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(
            !tmp.path().join("results.jsonl").exists()
                || std::fs::read(tmp.path().join("results.jsonl"))
                    .unwrap()
                    .is_empty(),
            "nothing was scored"
        );
    }
}
