//! The result encoder: one typical result line (4 keys × 3 windows, 3 reasons, a graph
//! path of 2) written by the job's hand-written encoder (`hand_written`) and by
//! serialising the typed record with serde (`serialised_record`, record built from the
//! same view included), and read back through the typed record (`read_record`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use riskstream_graph::GraphAnswer;
use riskstream_pipeline::aggregate::{AggregateOptions, Aggregator};
use riskstream_pipeline::dead_letter::SourceRef;
use riskstream_pipeline::enrich::{EventGraph, GraphStatus};
use riskstream_pipeline::event::Event;
use riskstream_pipeline::result::{AggregateNames, Decision, Reason, ResultRecord, ResultView};

fn bench(c: &mut Criterion) {
    let event = Event {
        event_id: "e-00000171".into(),
        ts_ms: 1_795_341_792_512,
        account_id: "A-011827".into(),
        counterparty_id: Some("A-000912".into()),
        merchant_id: Some("M-0042".into()),
        device_id: Some("D-004711".into()),
        ip: Some("10.1.2.3".into()),
        amount: 551.09,
        currency: Some("EUR".into()),
        channel: Some("card".into()),
        country: Some("DE".into()),
    };
    let options = AggregateOptions::default();
    let aggregator = Aggregator::new(options.clone()).expect("default options are valid");
    let aggregates = aggregator.apply_batch(std::slice::from_ref(&event));
    let names = AggregateNames::new(&["1m".into(), "1h".into(), "24h".into()]);
    let graph = EventGraph {
        status: GraphStatus::Ok,
        nearest: Some(Arc::new(GraphAnswer {
            known: true,
            hops: Some(1),
            path: vec!["A-011827".into(), "D-004711".into()],
            flagged_within: 2,
            neighbours: 3,
        })),
        flagged_nearby: 2,
        known: true,
        device_neighbours: 8,
        ip_neighbours: 1,
    };
    let reasons = [
        (
            "graph_device_accounts",
            "entities linked to the event's device in the graph (accounts that used it)",
            8.0,
            15.19974,
        ),
        (
            "account_new",
            "first payment seen from the account",
            1.0,
            4.4756737,
        ),
        (
            "account_gap_s",
            "seconds since the account's previous payment",
            0.0,
            3.320798,
        ),
    ]
    .map(|(feature, name, value, contribution)| Reason {
        feature: feature.into(),
        name: name.into(),
        value,
        contribution,
    });
    let view = ResultView {
        event: &event,
        score: 0.999_995_95,
        decision: Decision::Block,
        reasons: &reasons,
        aggregates: &aggregates[0],
        aggregate_names: &names,
        graph: &graph,
        model_version: "riskstream-v1",
        snapshot_id: 1,
        source: SourceRef {
            topic: "generator",
            partition: 0,
            offset: 171,
        },
        processed_at: "2026-11-29T15:41:24.425Z",
        latency_ms: 33.965,
    };

    let mut line = Vec::with_capacity(1024);
    view.encode(&mut line);
    let mut group = c.benchmark_group("result");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            line.clear();
            black_box(&view).encode(&mut line);
            black_box(line.len())
        })
    });
    group.bench_function("serialised_record", |b| {
        b.iter(|| {
            line.clear();
            // Writing into a Vec cannot fail for a record of finite numbers.
            let _ = serde_json::to_writer(&mut line, &black_box(&view).record());
            black_box(line.len())
        })
    });
    line.clear();
    view.encode(&mut line);
    group.bench_function("read_record", |b| {
        b.iter(|| black_box(ResultRecord::from_json(black_box(&line)).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
