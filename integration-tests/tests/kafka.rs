//! The job against the real Kafka broker: nothing lost, bad input set aside, crashes,
//! rebalances and shutdowns survived. `scripts/test.sh` starts the broker first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use riskstream_integration_tests::kafka::{
    committed_offsets, event_ids, generate, produce, read_topic, result_ids, wait_for_messages,
    Deployment, Job,
};

const LIMIT: Duration = Duration::from_secs(240);

/// Every input id has a result; returns how many results were duplicates.
fn assert_every_event_has_a_result(expected: &[String], results: &[String]) -> usize {
    let have: HashSet<&str> = results.iter().map(String::as_str).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|id| !have.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events have no result, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    results.len() - have.len()
}

#[test]
fn a_hundred_thousand_events_in_give_exactly_their_hundred_thousand_results() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 100_000, 7);
    let ids = event_ids(&events);
    assert_eq!(ids.len(), 100_000);
    let d = Deployment::new("exact");
    produce(&d.input, &events, 4);
    let config = d.write_config(dir.path(), "");
    let mut job = Job::start(
        &config,
        &[
            "--max-events",
            "100000",
            "--graph",
            dir.path().join("graph.jsonl").to_str().unwrap(),
        ],
        dir.path().join("job.log"),
    );
    let status = job.wait(LIMIT);
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());

    let results = result_ids(&d.results);
    assert_eq!(results.len(), 100_000, "one result per event, no more");
    let got: HashSet<&str> = results.iter().map(String::as_str).collect();
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, want, "the results are for exactly the input events");

    // Results are keyed by account and carry the event's time as Kafka timestamp.
    let records = read_topic(&d.results);
    for r in records.iter().take(1000) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(v["account_id"].as_str().unwrap().as_bytes())
        );
        assert!(r.timestamp.is_some());
    }
    // Everything delivered was committed: the group has no lag.
    let committed: i64 = committed_offsets(&d.group, &d.input, 4).values().sum();
    assert_eq!(committed, 100_000, "committed offsets cover every event");
}

#[test]
fn every_kind_of_malformed_message_goes_to_the_dead_letter_topic_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = |i: usize| {
        format!(
            r#"{{"event_id":"e-{i}","ts":"2026-11-22T10:03:{:02}.000Z","account_id":"A-{}","amount":{}.5,"channel":"card","country":"DE"}}"#,
            i % 60,
            i % 7,
            10 + i
        )
    };
    let oversize = format!(
        r#"{{"event_id":"big","ts":"2026-11-22T10:03:12Z","account_id":"A-1","amount":1,"pad":"{}"}}"#,
        "x".repeat(2000)
    );
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not_json"),
        (
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","amount":1}"#.to_vec(),
            "missing_field",
        ),
        (
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":"12"}"#
                .to_vec(),
            "wrong_type",
        ),
        (
            br#"{"event_id":"e","ts":"2026-11-22T10:03:12Z","account_id":"A","amount":1e999}"#
                .to_vec(),
            "non_finite_amount",
        ),
        (
            br#"{"event_id":"e","ts":"22/11/2026 10:03","account_id":"A","amount":1}"#.to_vec(),
            "bad_timestamp",
        ),
        (oversize.into_bytes(), "oversize"),
        (
            b"{\"event_id\":\"\xff\xfe\",\"ts\":\"2026-11-22T10:03:12Z\"}".to_vec(),
            "not_utf8",
        ),
        (b"[1,2,3]".to_vec(), "not_an_object"),
    ];
    let mut bytes = Vec::new();
    let mut good_count = 0usize;
    let mut bad_sent: Vec<(Vec<u8>, &str)> = Vec::new();
    for i in 0..400 {
        bytes.extend_from_slice(good(i).as_bytes());
        bytes.push(b'\n');
        good_count += 1;
        if i % 25 == 0 {
            let (line, kind) = &bad[(i / 25) % bad.len()];
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
            bad_sent.push((line.clone(), kind));
        }
    }
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, &bytes).unwrap();
    let d = Deployment::new("dead");
    produce(&d.input, &input, 4);
    let config = d.write_config(dir.path(), "[graph]\nkind = \"none\"\n");
    let total = good_count + bad_sent.len();
    let mut job = Job::start(
        &config,
        &[
            "--max-events",
            &total.to_string(),
            "--summary-json",
            dir.path().join("summary.json").to_str().unwrap(),
        ],
        dir.path().join("job.log"),
    );
    let status = job.wait(LIMIT);
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());

    assert_eq!(
        result_ids(&d.results).len(),
        good_count,
        "one result per good message"
    );
    let letters = read_topic(&d.dead_letters);
    assert_eq!(
        letters.len(),
        bad_sent.len(),
        "one dead letter per bad message"
    );
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    for letter in &letters {
        let kind = letter.headers["riskstream.kind"].clone();
        assert!(!letter.headers["riskstream.reason"].is_empty());
        assert_eq!(letter.headers["riskstream.source.topic"], d.input);
        assert!(letter.headers["riskstream.source.offset"]
            .parse::<i64>()
            .is_ok());
        assert!(letter.headers.contains_key("riskstream.received_at"));
        let original = bad_sent
            .iter()
            .find(|(_, k)| **k == kind)
            .map(|(bytes, _)| bytes)
            .unwrap_or_else(|| panic!("unexpected kind {kind}"));
        if kind == "oversize" {
            assert_eq!(
                letter.headers["riskstream.original_size"],
                original.len().to_string()
            );
            assert!(original.starts_with(&letter.payload));
        } else {
            assert_eq!(
                &letter.payload, original,
                "the original bytes of a {kind} message"
            );
        }
        *by_kind.entry(kind).or_default() += 1;
    }
    for (_, kind) in &bad {
        assert!(by_kind.contains_key(*kind), "no dead letter of kind {kind}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["inputs"], total as u64);
    assert_eq!(
        summary["inputs"].as_u64(),
        Some(summary["results"].as_u64().unwrap() + summary["dead_letters"].as_u64().unwrap())
    );
}

#[test]
fn a_job_killed_mid_stream_and_restarted_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 100_000, 11);
    let ids = event_ids(&events);
    let d = Deployment::new("kill");
    produce(&d.input, &events, 4);
    let config = d.write_config(dir.path(), "[graph]\nkind = \"none\"\n");

    let mut first = Job::start(&config, &[], dir.path().join("first.log"));
    wait_for_messages(&d.results, 30_000, LIMIT, Some(&mut first));
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    let before = result_ids(&d.results).len();
    assert!(before < 100_000, "killed before the end ({before} results)");

    let mut second = Job::start(&config, &[], dir.path().join("second.log"));
    wait_for_messages(&d.results, 100_000, LIMIT, Some(&mut second));
    // Let the restarted job finish what it re-read, then stop it cleanly.
    std::thread::sleep(Duration::from_secs(2));
    second.signal("TERM");
    let status = second.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", second.log_text());

    let results = result_ids(&d.results);
    let duplicates = assert_every_event_has_a_result(&ids, &results);
    eprintln!(
        "SIGKILL after {before} results: {duplicates} duplicates out of {} results",
        results.len()
    );
}

#[test]
fn a_second_instance_takes_over_the_partitions_of_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 100_000, 13);
    let ids = event_ids(&events);
    let (first_half, second_half) = split_file(&events, dir.path());
    let d = Deployment::new("group");
    // The topic exists before the instances join.
    produce(&d.input, &first_half, 4);
    let config = d.write_config(dir.path(), "[graph]\nkind = \"none\"\n");
    let split = |log: &str| {
        log.lines()
            .filter(|l| l.contains("partitions assigned"))
            .map(|l| l.matches(&d.input).count())
            .collect::<Vec<_>>()
    };
    let owns_some = |job: &Job| split(&job.log_text()).last().is_some_and(|n| *n > 0);
    let mut a = Job::start(&config, &[], dir.path().join("a.log"));
    wait_until(LIMIT, "a is assigned partitions", || owns_some(&a), &a);
    let b = Job::start(&config, &[], dir.path().join("b.log"));
    // Both own partitions before the rest of the events arrive, however fast a was.
    wait_until(LIMIT, "b is assigned partitions", || owns_some(&b), &b);
    produce(&d.input, &second_half, 4);
    wait_for_messages(&d.results, 60_000, LIMIT, Some(&mut a));
    a.signal("TERM");
    let status = a.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", a.log_text());
    let owns_all = |job: &Job| split(&job.log_text()).last() == Some(&4);
    let stopped = Instant::now();
    wait_until(
        LIMIT,
        "b takes over all four partitions",
        || owns_all(&b),
        &b,
    );
    eprintln!(
        "b owned all four partitions {:?} after a exited",
        stopped.elapsed()
    );
    let mut b = b;
    wait_for_messages(&d.results, 100_000, LIMIT, Some(&mut b));
    std::thread::sleep(Duration::from_secs(2));
    b.signal("TERM");
    let status = b.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", b.log_text());

    let a_assignments = split(&a.log_text());
    let b_assignments = split(&b.log_text());
    assert!(
        a_assignments.iter().chain(&b_assignments).any(|n| *n > 0 && *n < 4),
        "the two instances split the partitions at some point: a {a_assignments:?}, b {b_assignments:?}"
    );
    assert_eq!(
        b_assignments.last(),
        Some(&4),
        "b ends with all four partitions: {b_assignments:?}"
    );
    let results = result_ids(&d.results);
    let duplicates = assert_every_event_has_a_result(&ids, &results);
    eprintln!(
        "two instances: {duplicates} duplicates out of {} results",
        results.len()
    );
}

#[test]
fn sigterm_finishes_in_flight_events_commits_and_a_restart_does_not_reprocess() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 60_000, 17);
    let ids = event_ids(&events);
    let d = Deployment::new("term");
    produce(&d.input, &events, 4);
    let config = d.write_config(dir.path(), "[graph]\nkind = \"none\"\n");

    let mut first = Job::start(&config, &[], dir.path().join("first.log"));
    wait_for_messages(&d.results, 20_000, LIMIT, Some(&mut first));
    first.signal("TERM");
    let status = first.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM exits 0: {status}\n{}",
        first.log_text()
    );
    // Per input partition: the offset after the newest delivered event, and how many.
    let mut delivered: HashMap<i32, (i64, i64)> = HashMap::new();
    for r in read_topic(&d.results) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let partition = v["source"]["partition"].as_i64().unwrap() as i32;
        let offset = v["source"]["offset"].as_i64().unwrap();
        let entry = delivered.entry(partition).or_insert((0, 0));
        entry.0 = entry.0.max(offset + 1);
        entry.1 += 1;
    }
    let committed = committed_offsets(&d.group, &d.input, 4);
    for (partition, (next, count)) in &delivered {
        assert_eq!(
            next, count,
            "partition {partition}: delivered a gapless prefix"
        );
        assert_eq!(
            committed.get(partition),
            Some(next),
            "partition {partition}: committed offset = after the last delivered event \
             (committed {committed:?}, delivered {delivered:?})"
        );
    }

    let mut second = Job::start(&config, &[], dir.path().join("second.log"));
    wait_for_messages(&d.results, 60_000, LIMIT, Some(&mut second));
    std::thread::sleep(Duration::from_secs(2));
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(60)).success());
    let results = result_ids(&d.results);
    let duplicates = assert_every_event_has_a_result(&ids, &results);
    assert_eq!(duplicates, 0, "a graceful stop leaves nothing to reprocess");
}

/// Splits an events file into its first and second half (by lines).
fn split_file(events: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let paths = (dir.join("first-half.jsonl"), dir.join("second-half.jsonl"));
    std::fs::write(&paths.0, first.join("\n") + "\n").unwrap();
    std::fs::write(&paths.1, second.join("\n") + "\n").unwrap();
    paths
}

/// Polls `done` every 200 ms until it holds, at most `limit`; on timeout fails with the
/// job's log.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool, job: &Job) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; log:\n{}",
            job.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The producer takes no message over 1000 bytes (`message.max.bytes`, librdkafka's
/// smallest): every tenth event has an id so long that its result is over it. Those events
/// become dead letters of kind `result_undeliverable` with their original bytes (cut, with
/// `riskstream.original_size`, when the whole dead letter is over the limit too), every
/// other event gets its result, and the job reads to the end.
#[test]
fn a_result_too_large_for_the_topic_becomes_a_dead_letter_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let long_id = "x".repeat(600);
    let event = |i: usize| {
        let id = if i % 10 == 0 {
            format!("{long_id}-{i}")
        } else {
            format!("e-{i}")
        };
        format!(
            r#"{{"event_id":"{id}","ts":"2026-11-22T10:03:{:02}.000Z","account_id":"A-{}","amount":{}.5,"channel":"card","country":"DE"}}"#,
            i % 60,
            i % 7,
            10 + i
        )
    };
    let events: Vec<String> = (0..200).map(event).collect();
    let large: Vec<&String> = events.iter().filter(|e| e.contains(&long_id)).collect();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let d = Deployment::new("undeliverable");
    produce(&d.input, &input, 4);
    let config = d.write_config(
        dir.path(),
        "[graph]\nkind = \"none\"\n[kafka.properties]\n\"message.max.bytes\" = \"1000\"\n",
    );
    let summary_path = dir.path().join("summary.json");
    let mut job = Job::start(
        &config,
        &[
            "--max-events",
            &events.len().to_string(),
            "--summary-json",
            summary_path.to_str().unwrap(),
        ],
        dir.path().join("job.log"),
    );
    let status = job.wait(LIMIT);
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());

    let results = result_ids(&d.results);
    assert_eq!(
        results.len(),
        events.len() - large.len(),
        "one result per small event"
    );
    assert!(results.iter().all(|id| !id.contains(&long_id)));
    wait_for_messages(&d.dead_letters, large.len() as i64, LIMIT, None);
    let letters = read_topic(&d.dead_letters);
    assert_eq!(
        letters.len(),
        large.len(),
        "one dead letter per large result"
    );
    for letter in &letters {
        assert_eq!(letter.headers["riskstream.kind"], "result_undeliverable");
        let reason = &letter.headers["riskstream.reason"];
        assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
        // The large events differ only at their end: any of them may be the original.
        let originals: Vec<&&String> = large
            .iter()
            .filter(|e| e.as_bytes().starts_with(&letter.payload))
            .collect();
        assert!(
            !originals.is_empty(),
            "not the start of a large event: {letter:?}"
        );
        if let Some(size) = letter.headers.get("riskstream.original_size") {
            assert!(
                originals.iter().any(|e| e.len().to_string() == *size),
                "original size {size} is no large event's: {letter:?}"
            );
        } else {
            assert!(originals.iter().any(|e| e.as_bytes() == letter.payload));
        }
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["inputs"], events.len() as u64);
    assert_eq!(summary["results"], (events.len() - large.len()) as u64);
    assert_eq!(summary["dead_letters"], large.len() as u64);
}
