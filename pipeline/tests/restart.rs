//! End-to-end tests of durable window state (`state.dir`): a job stopped and started again
//! from its checkpoint gives every later event the result an uninterrupted run gives it.

#[path = "support/cli.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use riskstream_pipeline::event::format_ts;
use support::*;

/// Events of a few dozen accounts, devices, IPs and merchants over a few hours, some out
/// of order, with a bad line now and then.
fn events(n: usize) -> String {
    let mut text = String::new();
    let start_ms: i64 = 1_795_000_000_000;
    for i in 0..n {
        if i % 97 == 13 {
            text.push_str("not json at all\n");
            continue;
        }
        let jitter = if i % 5 == 0 { -40_000 } else { 0 };
        let ts_ms = start_ms + i as i64 * 7_000 + jitter;
        let ts = format_ts(ts_ms);
        text.push_str(&format!(
            r#"{{"event_id":"r-{i}","ts":"{ts}","account_id":"A-{}","counterparty_id":"A-{}","merchant_id":"M-{}","device_id":"D-{}","ip":"10.0.0.{}","amount":{}.25,"currency":"EUR","channel":"card","country":"{}"}}"#,
            i % 41,
            (i * 7) % 53,
            i % 9,
            i % 23,
            i % 17,
            5 + (i * 37) % 900,
            ["DE", "FR", "NL", "BR"][i % 4],
        ));
        text.push('\n');
    }
    text
}

/// The fields of a result that follow from the events alone: everything but when it was
/// made, how long it took and which snapshot was current (wall-clock timing).
fn decided(result: &serde_json::Value) -> serde_json::Value {
    let mut result = result.clone();
    if let Some(fields) = result.as_object_mut() {
        for timing in ["processed_at", "latency_ms", "snapshot_id"] {
            fields.remove(timing);
        }
    }
    result
}

/// Results by event id, each event's results all equal (at-least-once duplicates must be);
/// also how many duplicates there were.
fn by_event(runs: &[&[serde_json::Value]]) -> (BTreeMap<String, serde_json::Value>, usize) {
    let mut all = BTreeMap::new();
    let mut duplicates = 0;
    for result in runs.iter().flat_map(|run| run.iter()) {
        let id = result["event_id"].as_str().unwrap().to_owned();
        let decided = decided(result);
        if let Some(earlier) = all.insert(id.clone(), decided.clone()) {
            assert_eq!(earlier, decided, "a duplicate of {id} differs");
            duplicates += 1;
        }
    }
    (all, duplicates)
}

/// The complete checkpoint files in a state directory.
fn checkpoint_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "state"))
        .collect()
}

/// The `[state]` section for checkpoints in `dir`.
fn state_in(dir: &Path) -> String {
    format!(
        "[state]\ndir = {:?}\ncheckpoint_interval = \"1ms\"\n[pipeline]\nbatch_size = 128\n",
        dir.display().to_string()
    )
}

fn subdir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn logging_info(command: &mut Command) {
    command.env("RUST_LOG", "info");
}

/// Asserts that every expected result was got, naming the first few that were not.
fn assert_same(
    expected: &BTreeMap<String, serde_json::Value>,
    got: &BTreeMap<String, serde_json::Value>,
) {
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(id, result)| got.get(*id) != Some(result))
        .map(|(id, _)| id)
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} events got another result or none, the first: {:?}",
        differing.len(),
        expected.len(),
        &differing[..differing.len().min(5)]
    );
    assert_eq!(got.len(), expected.len());
}

#[test]
fn a_job_stopped_and_restarted_from_its_checkpoint_decides_every_event_as_an_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("events.jsonl");
    std::fs::write(&input, events(2_400)).unwrap();

    let whole = subdir(root.path(), "whole");
    let (output, expected, expected_dead, _) =
        run_on_file(&whole, &input, &state_in(&whole.join("state")));
    ok(output);
    let (expected, _) = by_event(&[&expected]);
    assert!(expected.len() > 2_300, "{}", expected.len());

    let state = root.path().join("state");
    let first = subdir(root.path(), "first");
    let (output, before, dead_before, _) =
        run_on_file_with(&first, &input, &state_in(&state), |c| {
            c.args(["--max-events", "1000"]);
        });
    ok(output);
    assert!(!before.is_empty() && before.len() < expected.len());

    let second = subdir(root.path(), "second");
    let (output, after, dead_after, summary) =
        run_on_file_with(&second, &input, &state_in(&state), logging_info);
    let log = String::from_utf8_lossy(&ok(output).stderr).into_owned();
    assert!(
        log.contains("window state restored from checkpoint"),
        "{log}"
    );
    // Read on from line 1000: nothing read twice after a clean stop.
    assert_eq!(summary["inputs"], 2_400 - 1_000, "{summary}");
    let (got, duplicates) = by_event(&[&before, &after]);
    assert_eq!(duplicates, 0);
    assert_same(&expected, &got);
    assert_eq!(dead_before.len() + dead_after.len(), expected_dead.len());

    // Without the restored state the same later events see other windows: what the
    // comparison above would catch.
    let tail: String = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .skip(1_000)
        .map(|line| format!("{line}\n"))
        .collect();
    let tail_input = root.path().join("tail.jsonl");
    std::fs::write(&tail_input, tail).unwrap();
    let forgetful = subdir(root.path(), "forgetful");
    let (output, forgot, _, _) = run_on_file(&forgetful, &tail_input, "");
    ok(output);
    let forgotten = forgot
        .iter()
        .filter(|r| expected[r["event_id"].as_str().unwrap()]["aggregates"] != r["aggregates"])
        .count();
    assert!(forgotten > 100, "{forgotten} events saw other aggregates");
}

#[test]
fn a_checkpoint_of_another_aggregate_configuration_is_refused_naming_the_key_and_the_way_out() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("events.jsonl");
    std::fs::write(&input, events(300)).unwrap();
    let state = root.path().join("state");
    let (output, _, _, _) = run_on_file(&subdir(root.path(), "first"), &input, &state_in(&state));
    ok(output);
    let first_checkpoints = checkpoint_files(&state);
    assert!(!first_checkpoints.is_empty());

    let changed = format!(
        "{}[aggregate]\ndistinct_window = \"30m\"\n",
        state_in(&state)
    );
    let second = subdir(root.path(), "second");
    let (output, results, _, _) = run_on_file(&second, &input, &changed);
    refused(
        output,
        &[
            "aggregate.distinct_window",
            "state.dir",
            "--fresh-state",
            "1h",
            "30m",
        ],
    );
    assert!(results.is_empty(), "a refused job processes nothing");

    let (output, results, _, _) = run_on_file_with(&second, &input, &changed, |c| {
        c.arg("--fresh-state");
        logging_info(c);
    });
    let log = String::from_utf8_lossy(&ok(output).stderr).into_owned();
    assert!(log.contains("starting with empty window state"), "{log}");
    assert_eq!(results.len(), 300 - 3);
    // The forgotten state is gone: a crash now could not bring it back.
    let now = checkpoint_files(&state);
    assert!(
        first_checkpoints.iter().all(|f| !now.contains(f)),
        "{now:?}"
    );
}

#[test]
fn a_torn_checkpoint_file_is_ignored_and_the_complete_one_restored() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("events.jsonl");
    std::fs::write(&input, events(800)).unwrap();
    let whole = subdir(root.path(), "whole");
    let (output, expected, _, _) = run_on_file(&whole, &input, &state_in(&whole.join("state")));
    ok(output);
    let (expected, _) = by_event(&[&expected]);

    let state = root.path().join("state");
    let first = subdir(root.path(), "first");
    let (output, before, _, _) = run_on_file_with(&first, &input, &state_in(&state), |c| {
        c.args(["--max-events", "500"]);
    });
    ok(output);
    // A newer checkpoint cut short by a crash, and a temporary file never renamed.
    let complete = checkpoint_files(&state);
    assert!(!complete.is_empty());
    let bytes = std::fs::read(&complete[0]).unwrap();
    std::fs::write(
        state.join("checkpoint-00000000000000000099.state"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    std::fs::write(
        state.join("checkpoint-00000000000000000100.tmp"),
        b"RSKSTATE",
    )
    .unwrap();

    let second = subdir(root.path(), "second");
    let (output, after, _, _) = run_on_file_with(&second, &input, &state_in(&state), logging_info);
    let log = String::from_utf8_lossy(&ok(output).stderr).into_owned();
    assert!(log.contains("ignoring a damaged checkpoint"), "{log}");
    assert!(
        log.contains("window state restored from checkpoint"),
        "{log}"
    );
    let (got, _) = by_event(&[&before, &after]);
    assert_same(&expected, &got);
}
