//! `riskstream replay` against the real Kafka broker: the job runs once over generated data
//! (single-partition input, so its order is the topic's order), then ranges of it are
//! replayed and compared with what the job published. `scripts/test.sh` starts the broker
//! first; the report page test needs Chromium (`scripts/install-chromium.sh`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use riskstream_integration_tests::kafka::{
    brokers, committed_offsets, generate, produce, Deployment, Job,
};
use riskstream_integration_tests::{repo_root, riskstream_bin};

const EVENTS: u64 = 30_000;
const HOUR_MS: i64 = 3_600_000;

/// The job's run over the generated data, shared by the tests of this file.
struct Fixture {
    dir: PathBuf,
    deployment: Deployment,
    config: PathBuf,
    graph: PathBuf,
    /// Event times of the input, in file order.
    times: Vec<i64>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let events = generate(&dir, EVENTS, 23);
        let deployment = Deployment::new("replay");
        produce(&deployment.input, &events, 1);
        let config = deployment.write_config(&dir, "");
        let graph = dir.join("graph.jsonl");
        let mut job = Job::start(
            &config,
            &[
                "--max-events",
                &EVENTS.to_string(),
                "--graph",
                graph.to_str().expect("temp paths are UTF-8"),
            ],
            dir.join("job.log"),
        );
        let status = job.wait(Duration::from_secs(300));
        assert!(status.success(), "job failed: {status}\n{}", job.log_text());
        let times = std::fs::read_to_string(&events)
            .expect("events file")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["ts"].as_str().map(parse_ts))
            .collect();
        Fixture {
            dir,
            deployment,
            config,
            graph,
            times,
        }
    })
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the generator writes it
/// (`2026-11-22T10:03:12.512Z`).
fn parse_ts(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 { text[range].parse().expect("a number") };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = if text.len() > 20 && &text[19..20] == "." {
        n(20..23)
    } else {
        0
    };
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + millis
}

fn format_ts(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Runs `riskstream replay` over `[from, to)` of the fixture's topics with extra
/// arguments; returns the parsed report.json and the command's stdout.
fn replay(
    f: &Fixture,
    from: i64,
    to: i64,
    out: &Path,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let output = Command::new(riskstream_bin())
        .current_dir(repo_root())
        .args(["replay", "--quiet", "--config"])
        .arg(&f.config)
        .args(["--brokers", &brokers(), "--topic", &f.deployment.input])
        .args(["--results-topic", &f.deployment.results])
        .args(["--from", &format_ts(from), "--to", &format_ts(to)])
        .arg("--graph")
        .arg(&f.graph)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("riskstream replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "replay failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read(out.join("report.json")).expect("report.json is written");
    (
        serde_json::from_slice(&report).expect("report.json is JSON"),
        stdout,
    )
}

/// A range of `length_ms` starting at the event `fraction` of the way through the
/// generated data (in event order; two days of data, so 0.6 and later lie more than a day
/// in), and how many input events fall in it.
fn range(f: &Fixture, fraction: f64, length_ms: i64) -> (i64, i64, u64) {
    let mut sorted = f.times.clone();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    let from = sorted[index] / 60_000 * 60_000;
    let to = from + length_ms;
    let start = sorted[0];
    assert!(
        from - start > 24 * HOUR_MS,
        "the range starts more than a day in"
    );
    let n = f.times.iter().filter(|t| (from..to).contains(*t)).count() as u64;
    assert!(n > 100, "the range holds {n} events; the test needs more");
    (from, to, n)
}

fn count(report: &serde_json::Value, path: &str) -> u64 {
    report["summary"]
        .pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

#[test]
fn replaying_a_range_with_the_whole_history_reproduces_every_published_decision() {
    let f = fixture();
    let before = committed_offsets(&f.deployment.group, &f.deployment.input, 1);
    assert_eq!(
        before.get(&0),
        Some(&(EVENTS as i64)),
        "the job committed its input"
    );
    let (from, to, n) = range(f, 0.75, HOUR_MS);
    let out = f.dir.join("same-model");
    let (report, stdout) = replay(f, from, to, &out, &["--warm-up", "all"]);
    assert_eq!(
        count(&report, "/events"),
        n,
        "every event of the range is replayed"
    );
    assert_eq!(
        count(&report, "/no_published_result"),
        0,
        "every replayed event has its published result"
    );
    assert_eq!(count(&report, "/changed_decisions"), 0, "{stdout}");
    assert_eq!(count(&report, "/changed_scores"), 0, "{stdout}");
    assert_eq!(
        report["summary"]["differs"],
        serde_json::json!({}),
        "nothing differs: {}",
        report["summary"]
    );
    assert_eq!(
        report["summary"]["published"],
        report["summary"]["replayed"]
    );
    assert!(
        count(&report, "/replayed/review") + count(&report, "/replayed/block") > 0,
        "the range has flagged events, so the comparison covers reasons and graph paths"
    );
    assert!(
        stdout.contains("records/s"),
        "stdout reports throughput: {stdout}"
    );
    // Replay never joins the job's group or commits for it.
    let after = committed_offsets(&f.deployment.group, &f.deployment.input, 1);
    assert_eq!(
        before, after,
        "replay left the job's committed offsets alone"
    );
}

#[test]
fn warm_up_makes_window_aggregates_at_from_equal_the_live_jobs() {
    let f = fixture();
    let (from, to, n) = range(f, 0.75, 15 * 60_000);
    let (report, _) = replay(f, from, to, &f.dir.join("warm-up-default"), &[]);
    assert_eq!(count(&report, "/events"), n);
    assert_eq!(count(&report, "/no_published_result"), 0);
    assert_eq!(
        count(&report, "/differs/aggregates"),
        0,
        "with the default warm-up (the longest window) every event's window aggregates equal the published ones"
    );
    assert!(
        count(&report, "/warm_up_events") > 10 * n,
        "the warm-up read a day of events: {}",
        report["summary"]
    );
    // Without the warm-up the windows start empty at `from`, and the report says so.
    let (short, _) = replay(
        f,
        from,
        to,
        &f.dir.join("warm-up-short"),
        &["--warm-up", "1m"],
    );
    assert!(
        count(&short, "/differs/aggregates") > n / 2,
        "a one-minute warm-up misses most window state: {}",
        short["summary"]
    );
}

/// A copy of the shipped model with other decision thresholds and version.
fn model_with_thresholds(dir: &Path, review: f64, block: f64) -> PathBuf {
    let shipped = repo_root().join("models/riskstream-v1");
    let model = dir.join("riskstream-v1-strict");
    std::fs::create_dir_all(&model).expect("model dir");
    for file in ["model.safetensors", "metrics.json"] {
        std::fs::copy(shipped.join(file), model.join(file)).expect("model files copy");
    }
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped.join("metadata.json")).expect("metadata"))
            .expect("metadata is JSON");
    meta["version"] = "riskstream-v1-strict".into();
    meta["thresholds"] = serde_json::json!({"review": review, "block": block});
    std::fs::write(
        model.join("metadata.json"),
        serde_json::to_vec_pretty(&meta).expect("metadata encodes"),
    )
    .expect("metadata writes");
    model
}

fn decision(score: f64, review: f64, block: f64) -> &'static str {
    if score >= block {
        "block"
    } else if score >= review {
        "review"
    } else {
        "allow"
    }
}

/// Replays `[from, to)` from the whole history with the model in `model`; the report.
fn replay_with_model(
    f: &Fixture,
    from: i64,
    to: i64,
    out: &Path,
    model: &Path,
) -> serde_json::Value {
    let model = model.to_str().expect("UTF-8");
    replay(f, from, to, out, &["--warm-up", "all", "--model", model]).0
}

#[test]
fn a_model_with_other_thresholds_reports_exactly_the_decisions_they_move() {
    let f = fixture();
    let (from, to, _) = range(f, 0.75, HOUR_MS);
    let (review, block) = (0.05, 0.3);
    let model = model_with_thresholds(&f.dir, review, block);
    let out = f.dir.join("strict-model");
    let report = replay_with_model(f, from, to, &out, &model);
    // Same weights, so the scores are the published ones; the decisions follow the new
    // thresholds, and the report must count exactly the ones that moved.
    let mut expected_changes = 0u64;
    let mut transitions: HashMap<String, u64> = HashMap::new();
    for e in report["events"].as_array().expect("events") {
        let published = &e["published"];
        let score = published["score"].as_f64().expect("published score");
        assert_eq!(published["score"], e["replayed"]["score"]);
        let now = decision(score, review, block);
        assert_eq!(e["replayed"]["decision"], now, "event {}", e["event_id"]);
        assert_eq!(e["replayed"]["model_version"], "riskstream-v1-strict");
        let before = published["decision"].as_str().expect("decision");
        if before != now {
            expected_changes += 1;
            *transitions.entry(format!("{before}→{now}")).or_default() += 1;
            assert!(e["differs"]
                .as_array()
                .expect("differs")
                .contains(&"decision".into()));
        }
    }
    assert!(
        expected_changes > 0,
        "the lower thresholds move some decisions"
    );
    assert_eq!(count(&report, "/changed_decisions"), expected_changes);
    let reported: HashMap<String, u64> =
        serde_json::from_value(report["summary"]["transitions"].clone()).expect("transitions");
    assert_eq!(reported, transitions);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("Changed decisions"));
    assert!(!html.contains("Every published decision was reproduced"));
}

#[test]
fn two_replays_of_the_same_range_write_byte_identical_reports() {
    let f = fixture();
    let (from, to, _) = range(f, 0.8, 30 * 60_000);
    let a = f.dir.join("twice-a");
    let b = f.dir.join("twice-b");
    replay(f, from, to, &a, &[]);
    replay(f, from, to, &b, &[]);
    let first = std::fs::read(a.join("report.json")).expect("first report");
    let second = std::fs::read(b.join("report.json")).expect("second report");
    assert!(first.len() > 10_000, "the report holds the range's events");
    assert!(first == second, "the two report.json files differ");
}

/// Console messages that report errors, from Chromium's log on stderr.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("rror")))
        .collect()
}

/// Opens `page` in headless Chromium, saves a screenshot, returns Chromium's stderr.
fn chromium_screenshot(page: &Path, png: &Path) -> String {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "chromium is not installed: run scripts/install-chromium.sh (it apt-installs Debian's chromium)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "chromium failed: {}\n{stderr}",
        output.status
    );
    stderr
}

#[test]
fn the_html_report_renders_in_headless_chromium_without_console_errors() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    // The check itself must be able to fail: a page with a script error is caught.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><script>notDefinedAnywhere();</script></body></html>",
    )
    .expect("page writes");
    let stderr = chromium_screenshot(&broken, &dir.path().join("broken.png"));
    assert!(
        !console_errors(&stderr).is_empty(),
        "a script error must show in Chromium's log:\n{stderr}"
    );

    let (from, to, _) = range(f, 0.75, HOUR_MS);
    let model = model_with_thresholds(&f.dir.join("html-model"), 0.05, 0.3);
    let out = f.dir.join("html");
    let report = replay_with_model(f, from, to, &out, &model);
    assert!(count(&report, "/changed_decisions") > 0);
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page fetches nothing"
    );
    let png = repo_root().join("pipeline/docs/replay-report.png");
    std::fs::create_dir_all(png.parent().expect("a parent")).expect("docs dir");
    let stderr = chromium_screenshot(&page, &png);
    let errors = console_errors(&stderr);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(size > 20_000, "the screenshot has content ({size} bytes)");
}
