//! The admin endpoint served in-process over real TCP, with a real aggregator and its
//! snapshots behind it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use riskstream_graph::EntityKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::admin::{self, AdminError, AdminServer};
use super::events::*;
use super::*;
use crate::aggregate::{AggregateOptions, Aggregator, Snapshots};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::result::Decision;

/// A real aggregator and its snapshots: what the job's engine holds.
struct Aggregates {
    aggregator: Aggregator,
    snapshots: Snapshots,
}

impl AggregateView for Aggregates {
    fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
}

const T0: i64 = 1_700_000_000_000;

fn event(i: i64, account: &str, amount: f64) -> Event {
    Event {
        event_id: format!("e-{i}"),
        ts_ms: T0 + i * 1000,
        account_id: account.into(),
        counterparty_id: Some(format!("A-{}", 100 + i)),
        merchant_id: Some("M-1".into()),
        device_id: Some("D-1".into()),
        ip: None,
        amount,
        currency: None,
        channel: None,
        country: Some("DE".into()),
    }
}

/// Account A-1 with three events, A-2 with one; one snapshot published.
fn aggregates_with_a_snapshot() -> Arc<Aggregates> {
    let options = AggregateOptions {
        kinds: vec![
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Merchant,
        ],
        ..AggregateOptions::default()
    };
    let aggregator = Aggregator::new(options).unwrap();
    let snapshots = Snapshots::new(&aggregator);
    let events = vec![
        event(0, "A-1", 10.0),
        event(1, "A-1", 20.5),
        event(2, "A-2", 7.0),
        event(3, "A-1", 1.5),
    ];
    for e in &events {
        aggregator.admit(e.ts_ms, T0).unwrap();
    }
    aggregator.apply_batch(&events);
    snapshots
        .publish(&aggregator, T0 + 3000, BTreeMap::new())
        .unwrap();
    Arc::new(Aggregates {
        aggregator,
        snapshots,
    })
}

struct Running {
    observer: Arc<Observer>,
    server: AdminServer,
    stop: oneshot::Sender<()>,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

async fn start(source: &'static str) -> Running {
    let observer = Observer::new(Arc::new(Metrics::default()), source);
    let (stop, stopped) = oneshot::channel::<()>();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = admin::serve(loopback, observer.clone(), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    Running {
        observer,
        server,
        stop,
    }
}

pub(crate) struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One HTTP/1.1 request over a plain TCP connection; the server closes after answering.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

/// The value of the one sample line `series` (name and labels exactly as exposed).
pub(crate) fn sample(metrics: &str, series: &str) -> f64 {
    let values: Vec<f64> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(
        values.len(),
        1,
        "expected one `{series}` sample in:\n{metrics}"
    );
    values[0]
}

#[tokio::test]
async fn metrics_show_the_jobs_counters_under_their_prometheus_names() {
    let job = start("file").await;
    let obs = &job.observer;
    obs.attach_aggregates(aggregates_with_a_snapshot());
    InputRead { records: 7 }.emit(obs);
    ResultsDelivered {
        decisions: &[Decision::Allow, Decision::Allow, Decision::Block],
        latencies: &[
            Duration::from_millis(2),
            Duration::from_millis(3),
            Duration::from_secs(1),
        ],
    }
    .emit(obs);
    DeadLettered {
        kind: "not_json",
        reason: "expected value at line 1 column 1",
    }
    .emit(obs);
    ModelLoaded {
        version: "riskstream-v1",
    }
    .emit(obs);
    ModelSwapped {
        from: "riskstream-v1",
        to: "riskstream-v2",
    }
    .emit(obs);
    StageTimed {
        stage: Stage::Score,
        took: Duration::from_micros(800),
    }
    .emit(obs);

    let reply = get(job.addr(), "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.head
    );
    let m = &reply.body;
    assert_eq!(
        sample(m, "riskstream_input_records_total{source=\"file\"}"),
        7.0
    );
    assert_eq!(
        sample(m, "riskstream_results_total{decision=\"allow\"}"),
        2.0
    );
    assert_eq!(
        sample(m, "riskstream_results_total{decision=\"review\"}"),
        0.0
    );
    assert_eq!(
        sample(m, "riskstream_results_total{decision=\"block\"}"),
        1.0
    );
    assert_eq!(
        sample(m, "riskstream_dead_letters_total{kind=\"not_json\"}"),
        1.0
    );
    assert_eq!(
        sample(m, "riskstream_dead_letters_total{kind=\"oversize\"}"),
        0.0
    );
    // 7 read = 3 delivered + 1 dead letter + 3 in flight.
    assert_eq!(sample(m, "riskstream_in_flight_events"), 3.0);
    assert_eq!(sample(m, "riskstream_snapshot_id"), 1.0);
    assert_eq!(sample(m, "riskstream_keys_tracked{kind=\"account\"}"), 2.0);
    assert_eq!(sample(m, "riskstream_keys_tracked{kind=\"device\"}"), 1.0);
    assert_eq!(sample(m, "riskstream_keys_tracked{kind=\"merchant\"}"), 1.0);
    assert_eq!(sample(m, "riskstream_keys{kind=\"account\"}"), 2.0);
    assert_eq!(sample(m, "riskstream_keys{kind=\"merchant\"}"), 1.0);
    assert_eq!(
        sample(m, "riskstream_keys_evicted_total{kind=\"account\"}"),
        0.0
    );
    assert!(!m.contains("kind=\"ip\""), "ip is not aggregated:\n{m}");
    assert_eq!(
        sample(m, "riskstream_model_info{version=\"riskstream-v2\"}"),
        1.0
    );
    assert!(!m.contains("riskstream-v1"), "the old model is gone:\n{m}");
    assert_eq!(sample(m, "riskstream_model_swaps_total"), 1.0);
    assert_eq!(sample(m, "riskstream_late_events_total"), 0.0);
    assert_eq!(sample(m, "riskstream_event_latency_seconds_count"), 3.0);
    assert_eq!(
        sample(m, "riskstream_event_latency_seconds_bucket{le=\"0.0025\"}"),
        1.0
    );
    assert_eq!(
        sample(m, "riskstream_event_latency_seconds_bucket{le=\"0.005\"}"),
        2.0
    );
    assert_eq!(
        sample(m, "riskstream_event_latency_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    assert!((sample(m, "riskstream_event_latency_seconds_sum") - 1.005).abs() < 1e-9);
    assert_eq!(
        sample(m, "riskstream_stage_seconds_count{stage=\"score\"}"),
        1.0
    );
    assert_eq!(
        sample(m, "riskstream_stage_seconds_count{stage=\"decode\"}"),
        0.0
    );
    assert!(
        m.contains("# TYPE riskstream_stage_seconds histogram"),
        "{m}"
    );
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("riskstream_"), "unprefixed series: {line}");
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| NAMES.contains(base))
            .unwrap_or(name);
        assert!(NAMES.contains(&base), "`{name}` is not in NAMES");
    }
    let _ = job.stop.send(());
}

#[tokio::test]
async fn aligned_partitions_show_their_event_time_their_skew_and_the_time_held_back() {
    let job = start("kafka").await;
    let at = |partition, ms| PartitionEventTime {
        topic: "events".to_owned(),
        partition,
        event_time_ms: ms,
    };
    job.observer.set_partition_event_times(vec![
        at(0, Some(1_700_000_000_000)),
        at(1, Some(1_700_000_090_500)),
        at(2, None),
    ]);
    job.observer.add_alignment_wait(Duration::from_millis(1500));
    job.observer.add_alignment_wait(Duration::from_millis(250));
    let m = get(job.addr(), "/metrics").await.body;
    let series = |name: &str, partition: i32| {
        sample(
            &m,
            &format!(
                "riskstream_kafka_partition_{name}{{topic=\"events\",partition=\"{partition}\"}}"
            ),
        )
    };
    assert_eq!(series("event_time_seconds", 1), 1_700_000_090.5);
    assert_eq!(series("skew_seconds", 0), 0.0);
    assert_eq!(series("skew_seconds", 1), 90.5);
    assert!(
        !m.contains("partition=\"2\""),
        "a partition without records yet has no event time:\n{m}"
    );
    assert_eq!(
        sample(&m, "riskstream_kafka_alignment_wait_seconds_total"),
        1.75
    );
    let _ = job.stop.send(());
}

#[tokio::test]
async fn consumer_lag_from_kafka_statistics_is_shown_per_partition_and_revoked_ones_disappear() {
    let job = start("kafka").await;
    job.observer
        .record_consumer_stats(kafka_stats::tests::CONSUMER_STATS.as_bytes());
    let m = get(job.addr(), "/metrics").await.body;
    assert_eq!(
        sample(
            &m,
            "riskstream_kafka_consumer_lag{topic=\"events\",partition=\"0\"}"
        ),
        5.0
    );
    assert_eq!(
        sample(
            &m,
            "riskstream_kafka_consumer_lag{topic=\"payments\",partition=\"3\"}"
        ),
        1200.0
    );
    assert!(
        !m.contains("partition=\"2\""),
        "unknown lag is left out:\n{m}"
    );

    job.observer.record_consumer_stats(
        br#"{"topics":{"events":{"partitions":{"1":{"partition":1,"consumer_lag":0}}}}}"#,
    );
    job.observer
        .record_consumer_stats(b"not json: the previous report stays");
    job.observer
        .record_producer_stats(br#"{"type":"producer","msg_cnt":12}"#);
    let m = get(job.addr(), "/metrics").await.body;
    assert_eq!(
        sample(
            &m,
            "riskstream_kafka_consumer_lag{topic=\"events\",partition=\"1\"}"
        ),
        0.0
    );
    assert!(!m.contains("partition=\"0\""), "{m}");
    assert!(!m.contains("payments"), "{m}");
    assert_eq!(sample(&m, "riskstream_producer_queue_messages"), 12.0);
    let _ = job.stop.send(());
}

#[tokio::test]
async fn readyz_answers_503_with_the_reason_until_the_job_is_ready_then_200() {
    let job = start("kafka").await;
    let obs = &job.observer;
    let reply = get(job.addr(), "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "not ready: model not loaded yet\n");

    ModelLoaded { version: "v1" }.emit(obs);
    GraphStatusChanged {
        health: GraphHealth::Degraded,
        reason: Some("connection refused"),
    }
    .emit(obs);
    let reply = get(job.addr(), "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        "not ready: no Kafka partitions assigned to this consumer\n"
    );

    Rebalanced {
        change: RebalanceChange::Assigned,
        partitions: "events/0, events/1",
        assigned_now: 2,
    }
    .emit(obs);
    let reply = get(job.addr(), "/readyz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));
    let m = get(job.addr(), "/metrics").await.body;
    assert_eq!(sample(&m, "riskstream_ready"), 1.0);
    assert_eq!(sample(&m, "riskstream_rebalances_total"), 1.0);
    assert_eq!(sample(&m, "riskstream_graph_status_changes_total"), 1.0);

    Rebalanced {
        change: RebalanceChange::Revoked,
        partitions: "events/0, events/1",
        assigned_now: 0,
    }
    .emit(obs);
    assert_eq!(get(job.addr(), "/readyz").await.status, 503);
    assert_eq!(get(job.addr(), "/healthz").await.status, 200);
    let _ = job.stop.send(());
}

#[tokio::test]
async fn snapshot_endpoint_returns_the_keys_aggregates_from_the_current_snapshot() {
    let job = start("file").await;
    let aggregates = aggregates_with_a_snapshot();
    job.observer.attach_aggregates(aggregates.clone());

    let reply = get(job.addr(), "/snapshot/account/A-1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.head.contains("content-type: application/json"),
        "{}",
        reply.head
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let snapshot = aggregates.snapshots.load();
    let key = snapshot.keys.get(EntityKind::Account, "A-1").unwrap();
    assert_eq!(body["snapshot_id"], 1);
    assert_eq!(body["watermark_ms"], T0 + 3000);
    assert_eq!(body["watermark"], "2023-11-14T22:13:23.000Z");
    assert_eq!(body["kind"], "account");
    assert_eq!(body["id"], "A-1");
    let windows = body["windows"].as_array().unwrap();
    assert_eq!(windows.len(), key.windows.len());
    for (i, (count, sum)) in key.windows.iter().enumerate() {
        assert_eq!(windows[i]["count"], count);
        assert_eq!(windows[i]["sum"], sum);
        // The same values under a result's field names.
        let label = windows[i]["window"].as_str().unwrap();
        assert_eq!(body["aggregates"][format!("count_{label}")], count);
        assert_eq!(body["aggregates"][format!("sum_{label}")], sum);
    }
    assert_eq!(
        body["aggregates"]["distinct_counterparties"],
        key.distinct_counterparties
    );
    assert_eq!(windows[0]["window"], "1m");
    assert_eq!(windows[0]["count"], 3);
    assert_eq!(windows[0]["sum"], 32.0);
    assert_eq!(body["distinct_counterparties"], key.distinct_counterparties);
    assert_eq!(body["first_seen_ms"], T0);
    assert_eq!(body["last_seen_ms"], T0 + 3000);
    assert_eq!(body["country"], "DE");
    assert_eq!(body["amount_mean"], key.amount_mean);

    let reply = get(job.addr(), "/snapshot/account/A%2D1").await;
    assert_eq!(
        reply.status, 200,
        "percent-encoded ids are decoded: {}",
        reply.body
    );
    assert_eq!(get(job.addr(), "/snapshot/account/A%FF").await.status, 400);

    let device: serde_json::Value =
        serde_json::from_str(&get(job.addr(), "/snapshot/device/D-1").await.body).unwrap();
    assert_eq!(device["windows"][0]["count"], 4);
    let _ = job.stop.send(());
}

#[tokio::test]
async fn unknown_keys_kinds_and_paths_get_404_400_and_404() {
    let job = start("file").await;
    let reply = get(job.addr(), "/snapshot/account/A-1").await;
    assert_eq!(reply.status, 503, "no aggregate state attached yet");

    job.observer.attach_aggregates(aggregates_with_a_snapshot());
    let reply = get(job.addr(), "/snapshot/account/A-404").await;
    assert_eq!(reply.status, 404);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"], "no account \"A-404\" in snapshot 1");
    assert_eq!(body["snapshot_id"], 1);

    let reply = get(job.addr(), "/snapshot/planet/A-1").await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("unknown kind \\\"planet\\\""),
        "{}",
        reply.body
    );
    let reply = get(job.addr(), "/snapshot/ip/203.0.113.7").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("aggregate.keys"), "{}", reply.body);

    for path in [
        "/",
        "/metricsx",
        "/snapshot/account",
        "/snapshot/account/",
        "/snapshot/account/A-1/x",
    ] {
        assert_eq!(get(job.addr(), path).await.status, 404, "{path}");
    }
    let reply = request(job.addr(), "POST", "/metrics").await;
    assert_eq!(reply.status, 405);
    assert!(reply.head.contains("allow: get"), "{}", reply.head);
    let _ = job.stop.send(());
}

#[tokio::test]
async fn a_port_in_use_is_a_start_up_error_naming_admin_listen() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let observer = Observer::new(Arc::new(Metrics::default()), "file");
    let err = admin::serve(addr, observer, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Bind { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with("`admin.listen`: cannot listen on "),
        "{message}"
    );
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(
        message.contains("\"\" to turn the admin endpoint off"),
        "{message}"
    );
}

#[tokio::test]
async fn the_endpoint_stops_listening_when_shutdown_resolves() {
    let job = start("file").await;
    let addr = job.addr();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let _ = job.stop.send(());
    job.server.stopped().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// One runtime thread and a blocking connect: the accept task cannot close the listener
// between the stop and the connect unless `stop` waited for it (a job's caller probing
// right after `run` returned once got through).
#[tokio::test(flavor = "current_thread")]
async fn once_stop_returns_a_connection_is_refused() {
    let job = start("file").await;
    let addr = job.addr();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    job.server.stop().await;
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn two_jobs_in_one_process_count_separately() {
    let first = start("file").await;
    let second = start("generator").await;
    InputRead { records: 5 }.emit(&first.observer);
    let a = get(first.addr(), "/metrics").await.body;
    let b = get(second.addr(), "/metrics").await.body;
    assert_eq!(
        sample(&a, "riskstream_input_records_total{source=\"file\"}"),
        5.0
    );
    assert_eq!(
        sample(&b, "riskstream_input_records_total{source=\"generator\"}"),
        0.0
    );
    let _ = first.stop.send(());
    let _ = second.stop.send(());
}
