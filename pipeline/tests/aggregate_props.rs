//! Properties of the aggregator seen from outside the crate: its memory per tracked key.
//!
//! Memory is measured with a counting global allocator. Counters are per thread and the
//! aggregator runs with one worker (on the test thread), so other tests running in
//! parallel do not disturb the figure.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::held;
use riskstream_graph::EntityKind;
use riskstream_pipeline::aggregate::{AggregateOptions, Aggregator};
use riskstream_pipeline::event::Event;

fn account_event(index: usize) -> Event {
    Event {
        event_id: String::new(),
        ts_ms: 1_700_000_000_000 + index as i64,
        account_id: format!("A-{index:07}"),
        counterparty_id: Some("A-0000001".to_string()),
        merchant_id: None,
        device_id: None,
        ip: None,
        amount: 10.0,
        currency: None,
        channel: None,
        country: Some("DE".to_string()),
    }
}

/// Bytes per key held by an aggregator tracking `keys` accounts with the default windows.
fn bytes_per_key(keys: usize) -> f64 {
    let options = AggregateOptions {
        kinds: vec![EntityKind::Account],
        workers: 1,
        ..AggregateOptions::default()
    };
    let before = held();
    let aggregator = Aggregator::new(options).unwrap();
    let mut batch = Vec::with_capacity(512);
    for start in (0..keys).step_by(512) {
        batch.clear();
        batch.extend((start..(start + 512).min(keys)).map(account_event));
        drop(aggregator.apply_batch(&batch));
    }
    drop(batch);
    // The dirty list is transient (emptied by every snapshot); measure the state itself.
    drop(aggregator.drain_changes());
    assert_eq!(aggregator.metrics().keys_tracked(), keys as u64);
    let bytes = held() - before;
    drop(aggregator);
    bytes as f64 / keys as f64
}

// 544: the packed state, its map entry and, since idle keys are evicted, the key's place in
// its worker's idle queue (a 24-byte entry plus the queue's growth slack; 533 bytes measured
// when the queue came).
#[test]
fn a_tracked_key_costs_at_most_544_bytes_with_default_windows() {
    let per_key = bytes_per_key(300_000);
    println!("aggregate state: {per_key:.1} bytes per key (300k keys, 9-byte ids)");
    assert!(per_key <= 544.0, "{per_key:.1} bytes per key");
    assert!(
        per_key >= 392.0,
        "the packed state alone is 392 bytes: {per_key:.1}"
    );
}
