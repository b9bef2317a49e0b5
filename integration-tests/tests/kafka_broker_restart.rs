//! The broker goes away while the job runs and comes back: the job recovers by itself and
//! loses nothing. A test binary of its own, because it stops the broker every other Kafka
//! test uses (cargo runs test binaries one after another).

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use riskstream_integration_tests::kafka::{
    brokers, event_ids, generate, produce, result_ids, service, wait_for_messages, Deployment, Job,
};
use riskstream_integration_tests::{repo_root, riskstream_bin};

#[test]
fn the_job_rides_out_a_broker_restart_without_losing_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 60_000, 23);
    let ids = event_ids(&events);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (early, late) = lines.split_at(20_000);
    let early_file = dir.path().join("early.jsonl");
    let late_file = dir.path().join("late.jsonl");
    std::fs::write(&early_file, early.join("\n") + "\n").unwrap();
    std::fs::write(&late_file, late.join("\n") + "\n").unwrap();

    let d = Deployment::new("restart");
    produce(&d.input, &early_file, 4);
    let config = d.write_config(dir.path(), "[graph]\nkind = \"none\"\n");
    let mut job = Job::start(&config, &[], dir.path().join("job.log"));
    wait_for_messages(&d.results, 10_000, Duration::from_secs(120), Some(&mut job));

    // The rest arrives while the broker is down for a few seconds.
    let mut producer = Command::new(riskstream_bin())
        .args([
            "produce",
            "--quiet",
            "--brokers",
            &brokers(),
            "--topic",
            &d.input,
        ])
        .arg("--input")
        .arg(&late_file)
        .args(["--rate", "8000"])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    service("kafka.sh", "stop");
    std::thread::sleep(Duration::from_secs(4));
    service("kafka.sh", "start");
    assert!(
        producer.wait().unwrap().success(),
        "the producer recovered too"
    );

    wait_for_messages(&d.results, 60_000, Duration::from_secs(120), Some(&mut job));
    std::thread::sleep(Duration::from_secs(2));
    job.signal("TERM");
    let status = job.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", job.log_text());

    let results = result_ids(&d.results);
    let have: HashSet<&str> = results.iter().map(String::as_str).collect();
    let missing = ids.iter().filter(|id| !have.contains(id.as_str())).count();
    assert_eq!(
        missing, 0,
        "events without a result after the broker restart"
    );
    eprintln!(
        "broker restart: {} duplicates out of {} results",
        results.len() - have.len(),
        results.len()
    );
}
