//! Properties of the aggregator seen from outside the crate: its memory per tracked key.
//!
//! Memory is measured with a counting global allocator. Counters are per thread and the
//! aggregator runs with one worker (on the test thread), so other tests running in
//! parallel do not disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use riskstream_graph::EntityKind;
use riskstream_pipeline::aggregate::{AggregateOptions, Aggregator};
use riskstream_pipeline::event::Event;

/// Counts the bytes each thread holds, rounded the way glibc malloc rounds a request
/// (8-byte header, 16-byte granules, 32-byte minimum), so the figure is what the process
/// really pays rather than what was asked for.
struct CountingAllocator;

thread_local! {
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn footprint(size: usize) -> i64 {
    (((size + 8 + 15) & !15).max(32)) as i64
}

fn record(delta: i64) {
    // During thread teardown the counter may already be gone; nothing to measure then.
    let _ = HELD.try_with(|held| held.set(held.get() + delta));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are
// added, and they never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(footprint(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(footprint(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        record(-footprint(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(footprint(new_size) - footprint(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn held() -> i64 {
    HELD.with(Cell::get)
}

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

#[test]
fn a_tracked_key_costs_at_most_512_bytes_with_default_windows() {
    let per_key = bytes_per_key(300_000);
    println!("aggregate state: {per_key:.1} bytes per key (300k keys, 9-byte ids)");
    assert!(per_key <= 512.0, "{per_key:.1} bytes per key");
    assert!(
        per_key >= 392.0,
        "the packed state alone is 392 bytes: {per_key:.1}"
    );
}
