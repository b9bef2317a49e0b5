//! Snapshot publication and batch application costs of the aggregator.
//!
//! * `publish/1M_keys/{1pct,100pct}_changed`: one `Snapshots::publish` (drain + build +
//!   swap) over 1 M tracked accounts after 10 k or all of them changed. Criterion's median
//!   for 1 % is the steady state between compactions.
//! * Printed before that: a run of publishes of 1 % each, timed one by one, with which of
//!   them compacted, their median and their mean — the amortised cost per publish,
//!   compactions included.
//! * `apply_batch/512_events_4_kinds/workers={1,2}`: one batch of 512 events naming an
//!   account, device, ip and merchant each, against warm state.
//!
//! Before benchmarking it prints the measured memory per tracked key (live state and
//! snapshot), counted by a per-thread counting allocator.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use riskstream_graph::EntityKind;
use riskstream_pipeline::aggregate::{AggregateOptions, Aggregator, Snapshots};
use riskstream_pipeline::event::Event;

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::held;

const KEYS: usize = 1_000_000;
const BATCH: usize = 512;
const BASE_MS: i64 = 1_700_000_000_000;

fn event(index: usize, ts_ms: i64) -> Event {
    Event {
        event_id: String::new(),
        ts_ms,
        account_id: format!("A-{:07}", index % KEYS),
        counterparty_id: Some(format!("A-{:07}", (index * 7 + 3) % KEYS)),
        merchant_id: Some(format!("M-{:04}", index % 5_000)),
        device_id: Some(format!("D-{:06}", index % 50_000)),
        ip: Some(format!(
            "10.{}.{}.{}",
            index % 7,
            (index / 7) % 256,
            index % 251
        )),
        amount: (index % 1_000) as f64 + 0.5,
        currency: None,
        channel: None,
        country: Some(if index % 5 == 0 { "FR" } else { "DE" }.to_string()),
    }
}

/// Applies one event per account for the given account indexes, in batches.
fn touch_accounts(aggregator: &Aggregator, accounts: impl Iterator<Item = usize>, ts_ms: i64) {
    let mut batch = Vec::with_capacity(BATCH);
    for account in accounts {
        batch.push(event(account, ts_ms));
        if batch.len() == BATCH {
            aggregator.apply_batch(&batch);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        aggregator.apply_batch(&batch);
    }
}

/// Prints the bytes per key of the live state and of a snapshot for 1 M accounts, counted
/// on this thread (one worker, so every allocation happens here).
fn report_memory() {
    let options = AggregateOptions {
        kinds: vec![EntityKind::Account],
        workers: 1,
        ..AggregateOptions::default()
    };
    let before = held();
    let aggregator = Aggregator::new(options).expect("benchmark options are valid");
    touch_accounts(&aggregator, 0..KEYS, BASE_MS);
    let snapshots = Snapshots::new(&aggregator);
    // Publishing empties the dirty lists, so what remains is state plus snapshot.
    let first = snapshots
        .publish(&aggregator, BASE_MS, BTreeMap::new())
        .expect("first change set is in order");
    let built_in = first.built_in;
    drop(first);
    let with_snapshot = held();
    // Ids are shared with the live map, so this frees only what the snapshot itself holds.
    drop(snapshots);
    let state = held() - before;
    let snapshot = with_snapshot - held();
    eprintln!(
        "memory per key over {KEYS} accounts (9-byte ids): live state {:.1} bytes, \
         snapshot {:.1} bytes; publishing all of them from empty took {built_in:?}",
        state as f64 / KEYS as f64,
        snapshot as f64 / KEYS as f64,
    );
}

fn publish(c: &mut Criterion) {
    report_memory();
    let options = AggregateOptions {
        kinds: vec![EntityKind::Account],
        workers: 2,
        ..AggregateOptions::default()
    };
    let aggregator = Aggregator::new(options).expect("benchmark options are valid");
    touch_accounts(&aggregator, 0..KEYS, BASE_MS);
    let snapshots = Snapshots::new(&aggregator);
    snapshots
        .publish(&aggregator, BASE_MS, BTreeMap::new())
        .expect("first change set is in order");

    let mut round = 0usize;
    report_amortised(&aggregator, &snapshots, &mut round);

    let mut group = c.benchmark_group("publish/1M_keys");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    // Every iteration first re-dirties keys (untimed), so keep iteration counts low.
    group.measurement_time(Duration::from_secs(2));

    group.bench_function("1pct_changed", |b| {
        b.iter_batched(
            || {
                round += 1;
                touch_one_percent(&aggregator, round);
            },
            |()| {
                snapshots
                    .publish(&aggregator, BASE_MS, BTreeMap::new())
                    .expect("change sets are published in order")
            },
            BatchSize::PerIteration,
        );
    });

    group.bench_function("100pct_changed", |b| {
        b.iter_batched(
            || {
                round += 1;
                touch_accounts(&aggregator, 0..KEYS, BASE_MS + round as i64 * 1_000);
            },
            |()| {
                snapshots
                    .publish(&aggregator, BASE_MS, BTreeMap::new())
                    .expect("change sets are published in order")
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // How long each drain holds up apply_batch: the only part on the hot path.
    for (label, accounts) in [("10k", KEYS / 100), ("1M", KEYS)] {
        round += 1;
        touch_accounts(
            &aggregator,
            (0..accounts).map(|i| i * (KEYS / accounts)),
            BASE_MS + round as i64 * 1_000,
        );
        let changes = aggregator.drain_changes();
        let drained_in = changes.drained_in();
        let snapshot = snapshots
            .publish_changes(changes, BASE_MS, BTreeMap::new())
            .expect("change sets are published in order");
        eprintln!(
            "{label} changed keys: drain (apply_batch paused) {drained_in:?}, \
             drain + build {:?}",
            snapshot.built_in
        );
    }
}

/// Re-dirties the next 1 % of the accounts (each round a different 1 %), untimed.
fn touch_one_percent(aggregator: &Aggregator, round: usize) {
    let offset = round % 100;
    touch_accounts(
        aggregator,
        (0..KEYS / 100).map(|i| i * 100 + offset),
        BASE_MS + round as i64 * 1_000,
    );
}

/// Times 26 publishes of 1 % each, one by one, and prints which compacted, the median and
/// the mean: with compaction after changes worth 1/8 of the keys, that covers two whole
/// compaction cycles, so the mean is the amortised cost per publish.
fn report_amortised(aggregator: &Aggregator, snapshots: &Snapshots, round: &mut usize) {
    const PUBLISHES: usize = 26;
    let mut times = Vec::with_capacity(PUBLISHES);
    let mut compactions = Vec::new();
    for publish in 0..PUBLISHES {
        *round += 1;
        touch_one_percent(aggregator, *round);
        let started = Instant::now();
        let snapshot = snapshots
            .publish(aggregator, BASE_MS, BTreeMap::new())
            .expect("change sets are published in order");
        let took = started.elapsed();
        if snapshot.keys.of_kind(EntityKind::Account).layer_count() == 0 {
            compactions.push(format!("#{publish} {took:.1?}"));
        }
        drop(snapshot);
        times.push(took);
    }
    let mean = times.iter().sum::<Duration>() / PUBLISHES as u32;
    let listed = times
        .iter()
        .map(|took| format!("{:.1}", took.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" ");
    times.sort_unstable();
    eprintln!(
        "{PUBLISHES} publishes of 1 % over {KEYS} keys (ms, in order): {listed}\n  \
         median {:.1?}, mean (amortised, compactions included) {mean:.1?}; \
         compactions: {}",
        times[PUBLISHES / 2],
        compactions.join(", "),
    );
}

fn apply_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_batch/512_events_4_kinds");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(5));
    // 200 distinct batches over 100 k accounts, 50 k devices and ips, 5 k merchants.
    let mut batches: Vec<Vec<Event>> = (0..200)
        .map(|batch| {
            (0..BATCH)
                .map(|i| event((batch * BATCH + i) % 100_000, BASE_MS))
                .collect()
        })
        .collect();
    for workers in [1, 2] {
        let options = AggregateOptions {
            workers,
            ..AggregateOptions::default()
        };
        let aggregator = Aggregator::new(options).expect("benchmark options are valid");
        let mut clock = BASE_MS;
        let mut next = 0usize;
        let mut apply_next = |aggregator: &Aggregator| {
            let count = batches.len();
            let batch = &mut batches[next % count];
            next += 1;
            // Event time moves forward 10 ms per event, as in a live stream.
            for event in batch.iter_mut() {
                clock += 10;
                event.ts_ms = clock;
            }
            aggregator.apply_batch(batch)
        };
        for _ in 0..200 {
            apply_next(&aggregator);
        }
        group.bench_function(format!("workers={workers}"), |b| {
            b.iter(|| black_box(apply_next(&aggregator)));
        });
        assert_eq!(aggregator.metrics().late_events(), 0);
    }
    group.finish();
}

criterion_group!(benches, publish, apply_batch);
criterion_main!(benches);
