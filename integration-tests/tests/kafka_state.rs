//! Durable window state against the real broker: a job with `state.dir` that is killed
//! mid-stream and started again restores its checkpoint, reads on from the checkpoint's
//! offsets, and gives every event the result an uninterrupted run gives it.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use riskstream_integration_tests::kafka::{
    brokers, committed_offsets, event_ids, generate, produce, read_topic, wait_for_messages,
    Deployment, Job,
};
use riskstream_integration_tests::{repo_root, riskstream_bin};

const EVENTS: usize = 20_000;

/// The fields of a result that follow from the events alone (not when it was made, how
/// long it took, which snapshot was current, or the input topic's name), by event id; each duplicate must equal
/// the first. Also how many duplicates there were.
fn decided(topic: &str) -> (HashMap<String, serde_json::Value>, usize) {
    let mut by_id = HashMap::new();
    let mut duplicates = 0;
    for record in read_topic(topic) {
        let mut result: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
        let fields = result.as_object_mut().unwrap();
        for timing in ["processed_at", "latency_ms", "snapshot_id"] {
            fields.remove(timing);
        }
        // The two runs read topics of different names; partition and offset must agree.
        if let Some(source) = fields.get_mut("source").and_then(|s| s.as_object_mut()) {
            source.remove("topic");
        }
        let id = fields["event_id"].as_str().unwrap().to_owned();
        if let Some(first) = by_id.insert(id.clone(), result.clone()) {
            assert_eq!(first, result, "a duplicate of {id} differs from the first");
            duplicates += 1;
        }
    }
    (by_id, duplicates)
}

fn config(d: &Deployment, dir: &std::path::Path, state: &std::path::Path) -> std::path::PathBuf {
    d.write_config(
        dir,
        &format!(
            "[graph]\nkind = \"none\"\n\
             [state]\ndir = {:?}\ncheckpoint_interval = \"500ms\"\n",
            state.display().to_string()
        ),
    )
}

#[test]
fn a_job_killed_mid_stream_and_restarted_decides_every_event_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), EVENTS as u64, 31);
    let ids = event_ids(&events);
    assert_eq!(ids.len(), EVENTS);

    // The uninterrupted run, on a topic of its own holding every event.
    let whole = Deployment::new("state-whole");
    produce(&whole.input, &events, 1);
    let whole_config = config(&whole, dir.path(), &dir.path().join("whole-state"));
    let mut job = Job::start(&whole_config, &[], dir.path().join("whole.log"));
    wait_for_messages(
        &whole.results,
        EVENTS as i64,
        Duration::from_secs(300),
        Some(&mut job),
    );
    job.signal("TERM");
    assert!(
        job.wait(Duration::from_secs(60)).success(),
        "{}",
        job.log_text()
    );
    let (expected, _) = decided(&whole.results);
    assert_eq!(expected.len(), EVENTS);

    // The same events arriving while the job runs; it is killed part-way and restarted.
    let killed = Deployment::new("state-killed");
    let state = dir.path().join("killed-state");
    let killed_config = config(&killed, dir.path(), &state);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (head, tail) = lines.split_at(2_000);
    let (head_file, tail_file) = (dir.path().join("head.jsonl"), dir.path().join("tail.jsonl"));
    std::fs::write(&head_file, head.join("\n") + "\n").unwrap();
    std::fs::write(&tail_file, tail.join("\n") + "\n").unwrap();
    produce(&killed.input, &head_file, 1);
    let mut job = Job::start(&killed_config, &[], dir.path().join("first.log"));
    let mut producer = Command::new(riskstream_bin())
        .args(["produce", "--quiet", "--brokers", &brokers()])
        .args(["--topic", &killed.input, "--rate", "4000"])
        .arg("--input")
        .arg(&tail_file)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_messages(
        &killed.results,
        8_000,
        Duration::from_secs(300),
        Some(&mut job),
    );
    // Checkpoints are taken at snapshot drains: wait for the first complete one, so that
    // the kill comes after it however slowly the machine runs.
    for _ in 0..600 {
        if job.log_text().contains("checkpoint complete") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    job.signal("KILL");
    let _ = job.wait(Duration::from_secs(30));
    let first_log = job.log_text();
    assert!(first_log.contains("checkpoint complete"), "{first_log}");

    let mut job = Job::start(&killed_config, &[], dir.path().join("second.log"));
    assert!(producer.wait().unwrap().success());
    let (mut got, mut duplicates) = decided(&killed.results);
    for _ in 0..300 {
        if ids.iter().all(|id| got.contains_key(id)) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        (got, duplicates) = decided(&killed.results);
    }
    job.signal("TERM");
    assert!(
        job.wait(Duration::from_secs(60)).success(),
        "{}",
        job.log_text()
    );
    let second_log = job.log_text();
    assert!(
        second_log.contains("window state restored from checkpoint"),
        "{second_log}"
    );
    let (got, final_duplicates) = decided(&killed.results);
    duplicates = duplicates.max(final_duplicates);

    let missing = ids.iter().filter(|id| !got.contains_key(*id)).count();
    let differing: Vec<&String> = ids
        .iter()
        .filter(|id| got.get(*id).is_some_and(|r| Some(r) != expected.get(*id)))
        .collect();
    eprintln!(
        "killed and restarted: {} results, {duplicates} duplicates, {missing} missing, {} differing",
        got.len(),
        differing.len()
    );
    assert_eq!(missing, 0);
    assert!(
        differing.is_empty(),
        "{} events got another result than without the kill, the first: {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    // The group's offsets follow the last checkpoint, written at the clean stop.
    let committed = committed_offsets(&killed.group, &killed.input, 1);
    assert_eq!(committed[&0], EVENTS as i64, "{committed:?}");
}
