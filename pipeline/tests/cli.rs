//! End-to-end tests of the `riskstream` binary on files and the built-in generator: what a
//! user types, what they get. (Tests against Kafka and Neo4j live in integration-tests/.)

#[path = "support/cli.rs"]
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use support::*;

const RESULT_FIELDS: [&str; 14] = [
    "schema_version",
    "event_id",
    "account_id",
    "ts",
    "score",
    "decision",
    "reasons",
    "aggregates",
    "graph",
    "model_version",
    "snapshot_id",
    "source",
    "processed_at",
    "latency_ms",
];

#[test]
fn default_run_writes_one_complete_result_per_generated_event() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let summary_path = dir.path().join("summary.json");
    ok(bin()
        .current_dir(repo_root())
        .args(["run", "--quiet", "--max-events", "50000", "--output"])
        .arg(&out)
        .arg("--dead-letter")
        .arg(&dead)
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .unwrap());
    let results = read_lines(&out);
    assert_eq!(results.len(), 50_000);
    let mut ids = HashSet::new();
    let mut decisions = HashSet::new();
    for r in &results {
        for field in RESULT_FIELDS {
            assert!(r.get(field).is_some(), "result lacks `{field}`: {r}");
        }
        let score = r["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "score {score} out of range");
        assert!(r["aggregates"]["account"]["count_1m"].as_u64().unwrap() >= 1);
        assert_eq!(r["graph"]["status"], "ok");
        assert_eq!(r["model_version"], "riskstream-v1");
        assert_eq!(r["source"]["topic"], "generator");
        ids.insert(r["event_id"].as_str().unwrap().to_string());
        decisions.insert(r["decision"].as_str().unwrap().to_string());
        if r["decision"] != "allow" {
            let reasons = r["reasons"].as_array().unwrap();
            assert!(
                !reasons.is_empty(),
                "a {} result has no reasons: {r}",
                r["decision"]
            );
            let c: Vec<f64> = reasons
                .iter()
                .map(|x| x["contribution"].as_f64().unwrap())
                .collect();
            assert!(
                c.windows(2).all(|w| w[0] >= w[1]),
                "reasons not strongest first: {c:?}"
            );
        }
    }
    assert_eq!(ids.len(), 50_000, "event ids are unique");
    assert!(
        decisions.contains("allow") && decisions.contains("block"),
        "{decisions:?}"
    );
    let s = summary(&summary_path);
    assert_eq!(s["inputs"], 50_000);
    assert_eq!(s["results"], 50_000);
    assert_eq!(s["dead_letters"], 0);
    assert!(s["snapshots"].as_u64().unwrap() >= 1);
}

#[test]
fn every_kind_of_bad_line_becomes_a_dead_letter_and_good_lines_get_results() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let good = |i: usize| {
        format!(
            r#"{{"event_id":"e-{i}","ts":"2026-11-22T10:03:{:02}.000Z","account_id":"A-{}","merchant_id":"M-1","device_id":"D-1","ip":"203.0.113.7","amount":{}.5,"currency":"EUR","channel":"card","country":"DE"}}"#,
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
    let mut good_count = 0;
    for i in 0..200 {
        bytes.extend_from_slice(good(i).as_bytes());
        bytes.push(b'\n');
        good_count += 1;
        if i % 20 == 0 {
            let (line, _) = &bad[(i / 20) % bad.len()];
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
    }
    std::fs::write(&input, &bytes).unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(
        &config,
        "[source]\nmax_event_bytes = 1024\n[graph]\nkind = \"none\"\n",
    )
    .unwrap();
    let out = dir.path().join("results.jsonl");
    let dead = dir.path().join("dead.jsonl");
    ok(bin()
        .arg("run")
        .arg("--quiet")
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(shipped_model())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letter")
        .arg(&dead)
        .output()
        .unwrap());
    let results = read_lines(&out);
    assert_eq!(results.len(), good_count);
    assert!(results.iter().all(|r| r["graph"]["status"] == "skipped"));
    let letters = read_lines(&dead);
    assert_eq!(letters.len(), 10, "one dead letter per bad line");
    let kinds: HashSet<&str> = letters
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    for (_, kind) in &bad {
        assert!(
            kinds.contains(kind),
            "no dead letter of kind {kind}: {kinds:?}"
        );
    }
    for d in &letters {
        assert!(!d["reason"].as_str().unwrap().is_empty());
        assert!(d["source"]["topic"].as_str().unwrap().starts_with("file:"));
        let offset = d["source"]["offset"].as_u64().unwrap() as usize;
        let original = bytes.split(|b| *b == b'\n').nth(offset).unwrap();
        match d["kind"].as_str().unwrap() {
            "oversize" => {
                assert_eq!(d["truncated"], true);
                assert_eq!(
                    d["original_size"].as_u64().unwrap() as usize,
                    original.len()
                );
            }
            "not_utf8" => assert!(d["payload_base64"].is_string()),
            _ => assert_eq!(
                d["payload"].as_str().unwrap().as_bytes(),
                original,
                "original bytes kept"
            ),
        }
    }
}

#[test]
fn gen_with_the_same_seed_writes_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        let seed = if name == "c" { "8" } else { "7" };
        ok(bin()
            .args([
                "gen",
                "--events",
                "3000",
                "--accounts",
                "300",
                "--seed",
                seed,
                "--out",
            ])
            .arg(dir.path().join(name))
            .output()
            .unwrap());
    }
    for file in [
        "events.jsonl",
        "graph.jsonl",
        "labels.jsonl",
        "manifest.json",
    ] {
        let a = std::fs::read(dir.path().join("a").join(file)).unwrap();
        let b = std::fs::read(dir.path().join("b").join(file)).unwrap();
        assert!(a == b, "{file} differs between two runs with the same seed");
    }
    let a = std::fs::read(dir.path().join("a/events.jsonl")).unwrap();
    let c = std::fs::read(dir.path().join("c/events.jsonl")).unwrap();
    assert!(a != c, "another seed gives other events");
}

#[test]
fn gen_draws_no_progress_line_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let output = ok(bin()
        .args(["gen", "--events", "300000", "--accounts", "300", "--out"])
        .arg(dir.path())
        .output()
        .unwrap());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("generating") && !stderr.contains('\r'),
        "a piped stderr gets no progress line: {stderr}"
    );
    assert!(
        stderr.contains("wrote events.jsonl"),
        "the summary stays: {stderr}"
    );
}

#[test]
fn train_with_the_same_seed_reports_the_same_metrics_and_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(bin()
        .args([
            "gen",
            "--events",
            "20000",
            "--accounts",
            "1000",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&data)
        .output()
        .unwrap());
    let mut metrics = Vec::new();
    for name in ["m1", "m2"] {
        let out = dir.path().join(name);
        ok(bin()
            .args([
                "train",
                "--epochs",
                "3",
                "--seed",
                "5",
                "--version",
                "test-model",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap());
        metrics.push(std::fs::read_to_string(out.join("metrics.json")).unwrap());
        assert_eq!(
            std::fs::read(dir.path().join("m1/model.safetensors")).unwrap(),
            std::fs::read(out.join("model.safetensors")).unwrap(),
            "weights are reproducible"
        );
    }
    assert_eq!(metrics[0], metrics[1]);
    let m: serde_json::Value = serde_json::from_str(&metrics[0]).unwrap();
    assert!(m["validation"]["roc_auc"].as_f64().unwrap() > 0.5);
    // The default graph dropout is applied, recorded and its outage measured.
    let training = &summary(&dir.path().join("m1/metadata.json"))["training"];
    assert_eq!(training["dropout_share"], 0.2);
    assert!(training["dropped_rows"].as_u64().unwrap() > 0, "{training}");
    let dropped = training["dropped_features"].as_array().unwrap();
    assert!(dropped.contains(&"graph_unavailable".into()), "{training}");
    let outage = &m["outage"];
    assert!(
        outage["without_graph"]["block_rate"].as_f64().is_some()
            && outage["with_graph"]["fraud_recall_at_review"]
                .as_f64()
                .is_some(),
        "{outage}"
    );

    // The trained model is usable by the job.
    let results = dir.path().join("results.jsonl");
    ok(bin()
        .arg("run")
        .arg("--quiet")
        .arg("--model")
        .arg(dir.path().join("m1"))
        .arg("--input")
        .arg(data.join("events.jsonl"))
        .arg("--max-events")
        .arg("1000")
        .arg("--output")
        .arg(&results)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .output()
        .unwrap());
    let lines = read_lines(&results);
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[0]["model_version"], "test-model");
    assert_eq!(
        lines[0]["graph"]["status"], "ok",
        "graph.jsonl beside the input is used"
    );

    // `model canary` on the training data writes the canary training wrote.
    let trained: serde_json::Value = summary(&dir.path().join("m1/metadata.json"));
    let copy = dir.path().join("m1-copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(
        dir.path().join("m1/model.safetensors"),
        copy.join("model.safetensors"),
    )
    .unwrap();
    let mut without = trained.clone();
    without.as_object_mut().unwrap().remove("canary");
    std::fs::write(copy.join("metadata.json"), without.to_string()).unwrap();
    let canary = || {
        bin()
            .args(["model", "canary", "--model"])
            .arg(&copy)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    ok(canary());
    let rewritten = summary(&copy.join("metadata.json"));
    assert_eq!(rewritten["canary"], trained["canary"]);
    assert_eq!(trained["canary"]["rows"].as_array().map(Vec::len), Some(32));

    // A canary the model fails is not replaced without --force.
    let mut tampered = rewritten.clone();
    tampered["canary"]["rows"][3]["score"] = serde_json::json!(0.5);
    tampered["canary"]["rows"][4]["score"] = serde_json::json!(0.25);
    std::fs::write(copy.join("metadata.json"), tampered.to_string()).unwrap();
    let refused = canary();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused: its scores differ from its canary's")
            && stderr.contains("unless --force"),
        "{stderr}"
    );
}

#[test]
fn train_refuses_a_graph_dropout_that_is_not_a_share_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["train", "--graph-dropout", "1", "--data"])
        .arg(dir.path().join("none"))
        .arg("--out")
        .arg(dir.path().join("model"))
        .output()
        .unwrap();
    refused(output, &["--graph-dropout 1", "up to but excluding 1"]);
    assert!(!dir.path().join("model").exists());
}

#[cfg(unix)]
#[test]
fn sigterm_drains_in_flight_events_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let summary_path = dir.path().join("summary.json");
    let child = bin()
        .current_dir(repo_root())
        .env("RISKSTREAM__SOURCE__GENERATOR__EVENTS", "100000000")
        .args(["run", "--quiet", "--output"])
        .arg(&out)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .arg("--summary-json")
        .arg(&summary_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until results flow, then ask it to stop.
    let started = std::time::Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 100_000 {
        assert!(
            started.elapsed().as_secs() < 120,
            "no results after two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "exit status {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&summary_path);
    let results = read_lines(&out).len() as u64;
    assert_eq!(
        s["results"].as_u64().unwrap(),
        results,
        "every counted result is in the file"
    );
    assert_eq!(
        s["inputs"], s["results"],
        "every input read was delivered before exit"
    );
    assert!(results < 100_000_000, "the job stopped early");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_output_stops_the_job_with_a_clear_error_and_leaves_whole_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    // A file size limit of 2 MiB stands in for a full disk: the write that crosses it is
    // cut short, as on a disk that fills up in the middle of a line. The signal the limit
    // raises is ignored so that the write fails with an error instead.
    let output = Command::new("bash")
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .arg("-c")
        .arg("ulimit -f 2048; trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_riskstream"))
        .args(["run", "--quiet", "--max-events", "20000", "--output"])
        .arg(&out)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(
        stderr.contains("cut back to its last complete line"),
        "{stderr}"
    );
    let written = std::fs::read(&out).unwrap();
    assert!(
        !written.is_empty(),
        "some results were delivered before the limit"
    );
    assert_eq!(
        written.last(),
        Some(&b'\n'),
        "the file ends with a whole line"
    );
    for line in written.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde_json::Value>(line).expect("every kept line is whole JSON");
    }
}

#[test]
fn config_check_prints_the_effective_config_or_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = ok(bin()
        .args(["config", "check"])
        .env("RISKSTREAM__GRAPH__PASSWORD", "hunter2")
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(text.contains("max_hops = 3"), "{text}");
    assert!(!text.contains("hunter2"), "secret printed: {text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[graph]\nmax_hop = 3\n[model]\nreview_threshold = 0.9\nblock_threshold = 0.5\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("graph.max_hop"), "{err}");
    assert!(err.contains("max_hops"), "suggests the right key: {err}");

    let missing = bin()
        .args(["config", "check", "no-such-file.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-file.toml"));
}

#[test]
fn bench_runs_the_job_and_the_baseline_on_the_same_data_and_reports_their_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let output = ok(bin()
        .current_dir(repo_root())
        .args(["bench", "--events", "3000", "--rounds", "2", "--seed", "5"])
        .arg("--data")
        .arg(dir.path())
        .arg("--model")
        .arg(shipped_model())
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ratio job / baseline"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let rates = |key: &str| -> Vec<f64> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (job, baseline) = (
        rates("job_events_per_second"),
        rates("baseline_events_per_second"),
    );
    assert_eq!(
        (job.len(), baseline.len()),
        (2, 2),
        "one figure per round: {report}"
    );
    assert!(job.iter().chain(&baseline).all(|r| *r > 0.0), "{report}");
    let ratio = report["ratio"].as_f64().unwrap();
    let expected =
        report["job_median"].as_f64().unwrap() / report["baseline_median"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "{report}");
    // The data set is kept for the next session; the per-run files are removed.
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept.contains(&"data-3000-seed5".to_string()), "{kept:?}");
    assert!(
        !kept.iter().any(|name| name.starts_with("runs-")),
        "{kept:?}"
    );
}

/// A good event line: account `A-{i % 7}`, `i` seconds after 10:00 on 2026-11-22.
fn good_event(i: usize) -> String {
    format!(
        r#"{{"event_id":"g-{i}","ts":"2026-11-22T10:{:02}:{:02}Z","account_id":"A-{}","merchant_id":"M-1","amount":{}.5,"channel":"card","country":"DE"}}"#,
        (i / 60) % 60,
        i % 60,
        i % 7,
        10 + i % 90
    )
}

/// The good event lines `range`, each ending in a newline.
fn good_events(range: std::ops::Range<usize>) -> String {
    range.map(|i| good_event(i) + "\n").collect()
}

#[test]
fn two_events_with_amounts_near_f64_max_for_one_account_do_not_stop_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("poison.jsonl");
    let mut text = String::new();
    text.push_str(&good_events(0..500));
    for n in 0..2 {
        text.push_str(&format!(
            r#"{{"event_id":"huge-{n}","ts":"2026-11-22T10:08:2{n}Z","account_id":"A-1","merchant_id":"M-1","amount":1e308}}"#
        ));
        text.push('\n');
    }
    text.push_str(&good_events(500..1000));
    std::fs::write(&input, &text).unwrap();
    let (output, results, letters, s) = run_on_file(dir.path(), &input, "");
    let output = ok(output);
    assert_eq!(
        s["inputs"],
        1002,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        s["results"].as_u64().unwrap() + s["dead_letters"].as_u64().unwrap(),
        1002,
        "every input is a result or a dead letter: {s}"
    );
    assert_eq!(results.len() + letters.len(), 1002);
    let ids: HashSet<&str> = results
        .iter()
        .chain(&letters)
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert!(ids.contains("huge-0") && ids.contains("huge-1"), "{ids:?}");
    for r in &results {
        let score = r["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "score {score}: {r}");
    }
}

#[test]
fn one_far_future_timestamp_is_a_dead_letter_and_does_not_freeze_the_accounts_windows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("future.jsonl");
    let mut text = String::new();
    text.push_str(&good_events(0..50));
    text.push_str(
        r#"{"event_id":"future","ts":"9999-01-01T00:00:00Z","account_id":"V","merchant_id":"M-1","amount":5}"#,
    );
    text.push('\n');
    for i in 0..20 {
        text.push_str(&format!(
            r#"{{"event_id":"v-{i}","ts":"2026-11-22T10:05:{i:02}Z","account_id":"V","merchant_id":"M-1","amount":5}}"#
        ));
        text.push('\n');
    }
    std::fs::write(&input, &text).unwrap();
    let (output, results, letters, s) = run_on_file(dir.path(), &input, "");
    ok(output);
    assert_eq!(s["inputs"], 71);
    assert_eq!(s["results"], 70);
    assert_eq!(letters.len(), 1, "only the far-future event: {letters:?}");
    assert_eq!(letters[0]["kind"], "future_timestamp");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("9999-01-01") && reason.contains("aggregate.max_future_skew"),
        "{reason}"
    );
    assert!(letters[0]["payload"]
        .as_str()
        .unwrap()
        .contains(r#""event_id":"future""#));
    let counts: Vec<u64> = results
        .iter()
        .filter(|r| r["account_id"] == "V")
        .map(|r| {
            assert_ne!(r["aggregates"]["account"]["late"], true, "{r}");
            r["aggregates"]["account"]["count_1m"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(counts, (1..=20).collect::<Vec<u64>>());
}

#[test]
fn a_far_future_event_is_admitted_when_max_future_skew_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("skew.jsonl");
    let text = [
        r#"{"event_id":"a","ts":"2026-11-22T10:00:00Z","account_id":"V","amount":5}"#,
        r#"{"event_id":"b","ts":"2026-11-22T13:00:00Z","account_id":"V","amount":5}"#,
    ]
    .join("\n");
    std::fs::write(&input, text).unwrap();
    let (output, results, letters, _) = run_on_file(
        dir.path(),
        &input,
        "[aggregate]\nmax_future_skew = \"4h\"\n",
    );
    ok(output);
    assert_eq!((results.len(), letters.len()), (2, 0), "{letters:?}");
}

/// A valid event line for file inputs.
fn event_line(i: usize) -> String {
    format!(
        r#"{{"event_id":"e-{i}","ts":"2026-11-22T10:03:{:02}.000Z","account_id":"A-{}","merchant_id":"M-1","device_id":"D-1","ip":"203.0.113.7","amount":{}.5,"currency":"EUR","channel":"card","country":"DE"}}"#,
        i % 60,
        i % 7,
        10 + i
    )
}

/// Decisions of a run on 20 events whose graph (a Neo4j address where nothing listens)
/// never answers, with `graph.unavailable_policy = policy`: (graph status, decision) pairs.
fn decisions_with_the_graph_down(policy: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let lines: Vec<String> = (0..20).map(event_line).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("results.jsonl");
    ok(
        file_run(dir.path(), &format!("unavailable_policy = \"{policy}\"\n"))
            .env("RISKSTREAM__GRAPH__KIND", "neo4j")
            .env("RISKSTREAM__GRAPH__URI", "bolt://127.0.0.1:1")
            .env("RISKSTREAM__GRAPH__PASSWORD", "unused")
            .env("RISKSTREAM__GRAPH__CACHE_WARM_UP", "false")
            .args(["--quiet", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--dead-letter")
            .arg(dir.path().join("dead.jsonl"))
            .output()
            .unwrap(),
    );
    read_lines(&out)
        .iter()
        .map(|r| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (text(&r["graph"]["status"]), text(&r["decision"]))
        })
        .collect()
}

#[test]
fn with_the_graph_down_the_unavailable_policy_decides_every_event() {
    for (policy, decision) in [("review", "review"), ("allow", "allow")] {
        let decided = decisions_with_the_graph_down(policy);
        assert_eq!(decided.len(), 20, "{policy}");
        for (status, got) in &decided {
            assert_eq!(
                (status.as_str(), got.as_str()),
                ("unavailable", decision),
                "{policy}"
            );
        }
    }
}

#[test]
fn too_many_workers_on_the_command_line_are_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let output = file_run(dir.path(), "")
        .args(["--workers", "100000", "--max-events", "10"])
        .output()
        .unwrap();
    refused(
        output,
        &["--workers is 100000", "use 0 (one per CPU) to 64"],
    );
}

#[test]
fn output_onto_the_input_is_refused_and_the_input_is_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ev.jsonl");
    let text: String = (0..20).map(|i| event_line(i) + "\n").collect();
    std::fs::write(&input, &text).unwrap();
    let link = dir.path().join("link.jsonl");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&input, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&input, &link).unwrap();

    let output = file_run(dir.path(), "")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&input)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .output()
        .unwrap();
    refused(output, &["--input / source.path", "--output / sink.path"]);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), text);

    // The same through a link, and through the configuration keys.
    let key = |path: &Path| path.display().to_string().replace('\\', "\\\\");
    let config = format!(
        "[source]\nkind = \"file\"\npath = \"{}\"\n[dead_letter]\nkind = \"file\"\npath = \"{}\"\n",
        key(&input),
        key(&link)
    );
    let output = file_run(dir.path(), &config)
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .output()
        .unwrap();
    #[cfg(unix)]
    refused(
        output,
        &["--input / source.path", "--dead-letter / dead_letter.path"],
    );
    #[cfg(not(unix))]
    let _ = output;
    assert_eq!(std::fs::read_to_string(&input).unwrap(), text);
}

#[test]
fn results_and_dead_letters_in_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ev.jsonl");
    std::fs::write(&input, event_line(0) + "\nnot json\n").unwrap();
    let both = dir.path().join("both.jsonl");
    let output = file_run(dir.path(), "")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&both)
        .arg("--dead-letter")
        .arg(dir.path().join(".").join("both.jsonl"))
        .output()
        .unwrap();
    refused(
        output,
        &["--output / sink.path", "--dead-letter / dead_letter.path"],
    );
    assert!(!both.exists(), "nothing was opened for writing");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_that_is_reading_an_endless_line() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr, s) = sigterm_once_started(dir.path(), Path::new("/dev/zero"));
    assert!(status.success(), "exit status {status}: {stderr}");
    assert_eq!(s["inputs"], 0, "the unfinished line is not an input: {s}");
}

/// Runs the job on `input` with logs at `info`, sends it SIGTERM once its start line was
/// logged (its signal handler is installed before), and returns how it exited, its stderr
/// and its summary. Liveness bounds, not timings: a job that never starts or never stops
/// fails the test instead of hanging it.
#[cfg(unix)]
fn sigterm_once_started(
    dir: &Path,
    input: &Path,
) -> (std::process::ExitStatus, String, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let summary_path = dir.join("summary.json");
    let mut child = file_run(dir, "")
        .env("RUST_LOG", "info")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .arg("--dead-letter")
        .arg(dir.join("dead.jsonl"))
        .arg("--summary-json")
        .arg(&summary_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stderr is read on a thread of its own, so that the job never blocks on a full pipe
    // and a job that never logs its start line cannot hang the test.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = String::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("riskstream job starting") {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the job logged no start line in 60 s: {seen}");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the job ended before its start line: {seen}")
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let asked = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed().as_secs() > 30 {
            let _ = child.kill();
            panic!(
                "the job ignored SIGTERM for 30 s reading {}: {seen}",
                input.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    seen.extend(lines.try_iter().map(|line| line + "\n"));
    let s = summary(&summary_path);
    (status, seen, s)
}

// Stage failures and blocking inputs (issue 15): each ends as a clean stop or a dead
// letter, never as a job that will not stop.

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_whose_input_fifo_never_gets_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (status, stderr, s) = sigterm_once_started(dir.path(), &fifo);
    assert!(status.success(), "exit status {status}: {stderr}");
    assert_eq!(s["inputs"], 0, "{s}");
    assert!(
        stderr.contains("shutdown while waiting for input"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_whose_input_fifo_has_a_writer_that_sends_nothing_more() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The writer sends two events and then keeps the FIFO open without writing.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            pipe.write_all(good_events(0..2).as_bytes()).unwrap();
            pipe.flush().unwrap();
            pipe
        })
    };
    let (status, stderr, s) = sigterm_once_started(dir.path(), &fifo);
    drop(writer.join().unwrap());
    assert!(status.success(), "exit status {status}: {stderr}");
    assert_eq!(
        s["inputs"].as_u64().unwrap(),
        s["results"].as_u64().unwrap() + s["dead_letters"].as_u64().unwrap(),
        "{s}"
    );
}

/// `riskstream run` on a few good lines and one bad one with logs at `info`; `extra` adds
/// options. Returns stderr.
fn logged_run(dir: &Path, config: &str, extra: &[&str]) -> String {
    let input = dir.join("logged.jsonl");
    std::fs::write(&input, good_events(0..40) + "not json\n").unwrap();
    let output = ok(file_run(dir, config)
        .env("RUST_LOG", "info")
        .args(extra)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.join("logged-results.jsonl"))
        .arg("--dead-letter")
        .arg(dir.join("logged-dead.jsonl"))
        .output()
        .unwrap());
    String::from_utf8(output.stderr).unwrap()
}

/// Every line of `stderr` as a JSON object; fails naming the first line that is not one.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    assert!(!stderr.trim().is_empty(), "no log lines at all");
    stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}\n{stderr}"));
            assert!(value["level"].is_string(), "{line}");
            assert!(value["timestamp"].is_string(), "{line}");
            assert!(value["message"].is_string(), "{line}");
            value
        })
        .collect()
}

#[test]
fn with_log_format_json_every_stderr_line_is_a_json_object_with_the_text_lines_fields() {
    let dir = tempfile::tempdir().unwrap();
    let lines = json_lines(&logged_run(dir.path(), "", &["--log-format", "json"]));
    let start = lines
        .iter()
        .find(|l| l["message"] == "riskstream job starting")
        .expect("a start line");
    assert_eq!(start["level"], "INFO");
    for field in ["source", "graph", "model", "results", "dead_letters"] {
        assert!(start[field].is_string(), "`{field}` missing from {start}");
    }
    let finished = lines
        .iter()
        .find(|l| l["message"] == "riskstream run finished")
        .expect("a summary line");
    let summary: serde_json::Value =
        serde_json::from_str(finished["summary"].as_str().unwrap()).unwrap();
    assert_eq!(summary["inputs"], 41);
    assert_eq!(summary["dead_letters"], 1);

    // The text format carries the same fields as key=value.
    let text = logged_run(dir.path(), "", &["--log-format", "text"]);
    let start = text
        .lines()
        .find(|l| l.contains("riskstream job starting"))
        .unwrap_or_else(|| panic!("no start line in {text}"));
    for field in ["source=", "graph=", "model=", "results=", "dead_letters="] {
        assert!(start.contains(field), "`{field}` missing from {start}");
    }
    assert!(text.contains("riskstream run finished in"), "{text}");
}

#[test]
fn log_format_json_in_the_configuration_gives_json_lines_and_the_option_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[log]\nformat = \"json\"\n";
    json_lines(&logged_run(dir.path(), config, &[]));
    let text = logged_run(dir.path(), config, &["--log-format", "text"]);
    assert!(
        text.lines()
            .any(|l| l.contains("riskstream job starting") && !l.starts_with('{')),
        "{text}"
    );
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_allowed_ones() {
    let output = bin().args(["run", "--log-format", "xml"]).output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expected `text` or `json`, found `xml`"),
        "{err}"
    );
}

/// Fifty accounts pay once, then another account pays every hour for two days (moving the
/// watermark past `idle_key_ttl`), then the fifty come back.
fn idle_accounts_and_their_return() -> String {
    let mut lines = Vec::new();
    let at = |hours: i64, minutes: i64| {
        let day = 22 + hours / 24;
        format!("2026-11-{day:02}T{:02}:{minutes:02}:00Z", hours % 24)
    };
    for a in 0..50 {
        lines.push(format!(
            r#"{{"event_id":"first-{a}","ts":"{}","account_id":"A-{a}","merchant_id":"M-{a}","device_id":"D-{a}","amount":{a}.5,"country":"DE"}}"#,
            at(0, a % 60)
        ));
    }
    for h in 1..=50 {
        lines.push(format!(
            r#"{{"event_id":"busy-{h}","ts":"{}","account_id":"W","merchant_id":"M-busy","amount":3.5}}"#,
            at(h, 0)
        ));
    }
    for a in 0..50 {
        lines.push(format!(
            r#"{{"event_id":"back-{a}","ts":"{}","account_id":"A-{a}","merchant_id":"M-{a}","device_id":"D-{a}","amount":7.5,"country":"FR"}}"#,
            at(50, a % 60)
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn accounts_idle_past_the_ttl_get_the_same_window_aggregates_as_without_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("idle.jsonl");
    std::fs::write(&input, idle_accounts_and_their_return()).unwrap();
    let windows = |results: &[serde_json::Value]| -> Vec<(String, serde_json::Value)> {
        results
            .iter()
            .map(|r| {
                let mut account = r["aggregates"]["account"].clone();
                let keep = [
                    "count_1m",
                    "sum_1m",
                    "count_1h",
                    "sum_1h",
                    "count_24h",
                    "sum_24h",
                ];
                if let Some(fields) = account.as_object_mut() {
                    fields.retain(|name, _| keep.contains(&name.as_str()));
                }
                (r["event_id"].as_str().unwrap_or("").to_owned(), account)
            })
            .collect()
    };
    let evicting = dir.path().join("evicting");
    let keeping = dir.path().join("keeping");
    std::fs::create_dir_all(&evicting).unwrap();
    std::fs::create_dir_all(&keeping).unwrap();
    let (output, with, _, s_with) = run_on_file(
        &evicting,
        &input,
        "[pipeline]\nbatch_size = 1\n[snapshot]\ninterval = \"1ms\"\n[aggregate]\nidle_key_ttl = \"25h\"\n",
    );
    ok(output);
    let (output, without, _, s_without) =
        run_on_file(&keeping, &input, "[aggregate]\nidle_key_ttl = \"3650d\"\n");
    ok(output);
    assert_eq!(with.len(), 150);
    assert_eq!(windows(&with), windows(&without));
    let back = with.iter().find(|r| r["event_id"] == "back-7").unwrap();
    assert_eq!(back["aggregates"]["account"]["count_24h"], 1, "{back}");
    assert_eq!(s_without["keys_evicted"], 0, "{s_without}");
    assert!(s_with["keys_evicted"].is_u64(), "{s_with}");
}

#[test]
fn a_missing_input_file_is_named_once_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let out = bin()
        .args(["run", "--quiet", "--input"])
        .arg(&missing)
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .env("RISKSTREAM__ADMIN__LISTEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    assert!(line.contains("cannot open input file"), "{line}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "the cause is shown once: {line}"
    );
}
