//! The admin endpoint of a job that reads from the real Kafka broker: what an operator's
//! scraper and probes see. `scripts/test.sh` starts the broker first.

use std::time::Duration;

use riskstream_integration_tests::admin::{free_address, get, samples, total, wait_for};
use riskstream_integration_tests::kafka::{generate, produce, read_topic, Deployment, Job};

const LIMIT: Duration = Duration::from_secs(240);

fn admin_table(address: std::net::SocketAddr) -> String {
    format!("[admin]\nlisten = \"{address}\"\n")
}

#[test]
fn metrics_of_a_kafka_run_add_up_lag_drains_to_zero_and_the_snapshot_matches_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 20_000, 23);
    // A few lines that can only be dead letters, among the good ones.
    let mut bytes = std::fs::read(&events).unwrap();
    for _ in 0..7 {
        bytes.extend_from_slice(b"this is not json\n");
    }
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, &bytes).unwrap();
    let d = Deployment::new("admin");
    produce(&d.input, &input, 4);
    let address = free_address();
    let config = d.write_config(dir.path(), &admin_table(address));
    let mut job = Job::start(
        &config,
        &["--graph", dir.path().join("graph.jsonl").to_str().unwrap()],
        dir.path().join("job.log"),
    );

    // Drained: every partition's lag is 0 and nothing is in flight.
    let answer = wait_for(address, "/metrics", LIMIT, |a| {
        let s = samples(&a.body);
        let lags: Vec<f64> = s
            .iter()
            .filter(|(k, _)| k.starts_with("riskstream_kafka_consumer_lag{"))
            .map(|(_, v)| *v)
            .collect();
        lags.len() == 4
            && lags.iter().all(|lag| *lag == 0.0)
            && s.get("riskstream_in_flight_events") == Some(&0.0)
            && total(&s, "riskstream_input_records_total") >= 20_007.0
    });
    let s = samples(&answer.body);
    let inputs = total(&s, "riskstream_input_records_total");
    let results = total(&s, "riskstream_results_total");
    let dead = total(&s, "riskstream_dead_letters_total");
    assert_eq!(
        inputs, 20_007.0,
        "every message read once:\n{}",
        answer.body
    );
    assert_eq!(
        inputs,
        results + dead,
        "inputs = results + dead letters + in flight (0):\n{}",
        answer.body
    );
    assert_eq!(
        s.get("riskstream_dead_letters_total{kind=\"not_json\"}"),
        Some(&7.0)
    );
    assert!(s.contains_key("riskstream_model_info{version=\"riskstream-v1\"}"));
    assert!(total(&s, "riskstream_event_latency_seconds_count") >= 20_000.0);
    for stage in [
        "decode",
        "aggregate",
        "enrich",
        "score",
        "encode",
        "deliver",
    ] {
        let key = format!("riskstream_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(
            s.get(&key).is_some_and(|n| *n > 0.0),
            "no {key}:\n{}",
            answer.body
        );
    }
    assert_eq!(get(address, "/healthz").map(|a| a.status), Some(200));
    assert_eq!(get(address, "/readyz").map(|a| a.status), Some(200));

    // The newest result's account: once a snapshot holds every event, the endpoint shows the
    // same window values as that result.
    let records = read_topic(&d.results);
    let newest = records
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
        .max_by(|a, b| a["ts"].as_str().cmp(&b["ts"].as_str()))
        .expect("results were published");
    let account = newest["account_id"].as_str().unwrap();
    let path = format!("/snapshot/account/{account}");
    let mut shown = serde_json::Value::Null;
    wait_for(address, &path, Duration::from_secs(60), |a| {
        if a.status != 200 {
            return false;
        }
        shown = serde_json::from_str(&a.body).unwrap_or_default();
        shown["aggregates"] == newest["aggregates"]["account"]
    });
    assert!(shown["snapshot_id"].as_u64().is_some(), "{shown}");
    assert!(shown["watermark"].is_string(), "{shown}");
    let unknown = get(address, "/snapshot/account/no-such-account").unwrap();
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let bad_kind = get(address, "/snapshot/planet/A-1").unwrap();
    assert_eq!(bad_kind.status, 400, "{bad_kind:?}");

    job.signal("TERM");
    let status = job.wait(LIMIT);
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());
}

#[test]
fn a_job_without_a_partition_is_not_ready_until_the_one_holding_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 2_000, 29);
    let d = Deployment::new("ready");
    // One partition: of two jobs in the group, exactly one is assigned it.
    produce(&d.input, &events, 1);
    let graph = dir.path().join("graph.jsonl");
    let (a, b) = (free_address(), free_address());
    let config_a = d.write_config(dir.path(), &admin_table(a));
    let config_b_dir = dir.path().join("b");
    std::fs::create_dir_all(&config_b_dir).unwrap();
    let config_b = d.write_config(&config_b_dir, &admin_table(b));
    let job_a = Job::start(
        &config_a,
        &["--graph", graph.to_str().unwrap()],
        dir.path().join("a.log"),
    );
    wait_for(a, "/readyz", LIMIT, |r| r.status == 200);
    let job_b = Job::start(
        &config_b,
        &["--graph", graph.to_str().unwrap()],
        dir.path().join("b.log"),
    );

    // Once the group settles, one job holds the partition and the other says why it is not
    // ready.
    let mut statuses = (0, 0);
    wait_for(b, "/readyz", LIMIT, |rb| {
        let Some(ra) = get(a, "/readyz") else {
            return false;
        };
        statuses = (ra.status, rb.status);
        let waiting = if ra.status == 503 { &ra } else { rb };
        matches!(statuses, (200, 503) | (503, 200)) && waiting.body.contains("partition")
    });
    let (ready, waiting, mut ready_job, waiting_job) = if statuses.0 == 200 {
        (a, b, job_a, job_b)
    } else {
        (b, a, job_b, job_a)
    };
    let reason = get(waiting, "/readyz").unwrap();
    assert_eq!(reason.status, 503);
    assert!(
        reason.body.contains("partition"),
        "the reason names the missing assignment: {:?}",
        reason.body
    );

    // The holder stops; the other is assigned the partition and becomes ready.
    ready_job.signal("TERM");
    assert!(ready_job.wait(LIMIT).success());
    assert!(
        get(ready, "/readyz").is_none(),
        "a stopped job's endpoint is closed"
    );
    wait_for(waiting, "/readyz", LIMIT, |r| r.status == 200);
    drop(waiting_job);
}
