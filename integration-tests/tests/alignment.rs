//! Event-time alignment against the real Kafka broker: a backlog read from several
//! partitions gets the aggregates a time-ordered read gets, the same in every run, and a
//! partition with nothing in it holds nobody back. `scripts/test.sh` starts the broker.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use riskstream_integration_tests::kafka::{
    add_partitions, generate, produce, read_topic, Deployment, Job,
};
use riskstream_integration_tests::{repo_root, riskstream_bin};

const LIMIT: Duration = Duration::from_secs(400);
const EVENTS: u64 = 200_000;

/// A result with the fields that depend on when it was computed removed: the wall-clock
/// fields, and the id of the aggregate snapshot of the moment, which the job publishes by
/// wall-clock interval.
fn timeless(result: &[u8]) -> (String, String) {
    let mut v: serde_json::Value = serde_json::from_slice(result).expect("results are JSON");
    let object = v.as_object_mut().expect("a result is an object");
    for field in ["processed_at", "latency_ms", "snapshot_id"] {
        object.remove(field);
    }
    let id = v["event_id"].as_str().expect("an event_id").to_owned();
    (id, v.to_string())
}

/// Runs the job over the whole of `d.input` from the beginning; returns its results by
/// event id (without the wall-clock fields) and its run summary.
fn run_over_topic(
    dir: &Path,
    d: &Deployment,
    extra: &str,
    graph: &Path,
) -> (HashMap<String, String>, serde_json::Value) {
    let config = d.write_config(dir, extra);
    let summary = dir.join(format!("{}-summary.json", d.group));
    let mut job = Job::start(
        &config,
        &[
            "--max-events",
            &EVENTS.to_string(),
            "--graph",
            graph.to_str().expect("temp paths are UTF-8"),
            "--summary-json",
            summary.to_str().expect("temp paths are UTF-8"),
        ],
        dir.join(format!("{}.log", d.group)),
    );
    let status = job.wait(LIMIT);
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());
    let results: HashMap<String, String> = read_topic(&d.results)
        .iter()
        .map(|r| timeless(&r.payload))
        .collect();
    assert_eq!(results.len() as u64, EVENTS, "one result per event");
    let summary = std::fs::read(&summary).expect("the run summary was written");
    (
        results,
        serde_json::from_slice(&summary).expect("summary is JSON"),
    )
}

/// The decision of each event when the job reads the events file itself, in its (time)
/// order.
fn decisions_of_a_time_ordered_read(
    dir: &Path,
    events: &Path,
    graph: &Path,
) -> HashMap<String, String> {
    let output = dir.join("file-results.jsonl");
    let out = std::process::Command::new(riskstream_bin())
        .args(["run", "--quiet", "--input"])
        .arg(events)
        .arg("--graph")
        .arg(graph)
        .arg("--output")
        .arg(&output)
        .arg("--model")
        .arg(repo_root().join("models/riskstream-v1"))
        .env("RISKSTREAM__ADMIN__LISTEN", "")
        .output()
        .expect("the job runs");
    assert!(
        out.status.success(),
        "file run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&output)
        .expect("results file")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("results are JSON");
            (
                v["event_id"].as_str().unwrap_or_default().to_owned(),
                v["decision"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn decision(result: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(result).expect("results are JSON");
    v["decision"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_backlog_in_four_partitions_is_processed_in_event_time_order_the_same_in_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), EVENTS, 41);
    let graph = dir.path().join("graph.jsonl");
    let first = Deployment::new("aligned");
    produce(&first.input, &events, 4);
    // A second group over the same topic: the same positions, another results topic.
    let second = Deployment {
        results: format!("{}-again", first.results),
        dead_letters: format!("{}-again", first.dead_letters),
        group: format!("{}-again", first.group),
        ..first.clone()
    };

    let (results, summary) = run_over_topic(dir.path(), &first, "", &graph);
    let late = summary["late_events"].as_u64().expect("late_events");
    assert!(
        late * 1000 <= EVENTS,
        "{late} of {EVENTS} events were late (at most 0.1 % allowed)"
    );

    let by_file = decisions_of_a_time_ordered_read(dir.path(), &events, &graph);
    let differing = results
        .iter()
        .filter(|(id, result)| by_file.get(*id) != Some(&decision(result)))
        .count() as u64;
    assert!(
        differing * 1000 <= EVENTS,
        "{differing} of {EVENTS} decisions differ from a time-ordered read of the same events"
    );

    eprintln!(
        "late events: {late} of {EVENTS}; decisions differing from the file read: {differing}"
    );
    let (again, _) = run_over_topic(dir.path(), &second, "", &graph);
    let mut unequal: Vec<&String> = results
        .iter()
        .filter(|(id, result)| again.get(*id) != Some(*result))
        .map(|(id, _)| id)
        .collect();
    unequal.sort();
    assert!(
        unequal.is_empty(),
        "{} of {EVENTS} results differ between two runs over the same topic, e.g. {}:\n{}\n{}",
        unequal.len(),
        unequal[0],
        results[unequal[0]],
        again.get(unequal[0]).map_or("(none)", String::as_str)
    );
}

#[test]
fn an_empty_partition_among_four_holds_nobody_back() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 2_000, 42);
    let d = Deployment::new("one-empty");
    // Three of the topic's four partitions get the events; partition 3 stays empty. With
    // an idle timeout of an hour, waiting for it would outlast the test's limit.
    produce(&d.input, &events, 3);
    add_partitions(&d.input, 4);
    // Right after the `[kafka]` keys (an `[admin]` table in `extra` keeps it there).
    let config = d.write_config(
        dir.path(),
        "idle_timeout = \"1h\"\n[admin]\nlisten = \"\"\n",
    );
    let mut job = Job::start(
        &config,
        &[
            "--max-events",
            "2000",
            "--graph",
            dir.path().join("graph.jsonl").to_str().unwrap(),
        ],
        dir.path().join("job.log"),
    );
    let status = job.wait(Duration::from_secs(120));
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());
    assert_eq!(read_topic(&d.results).len(), 2000);
}
