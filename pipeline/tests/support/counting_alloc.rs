//! A counting global allocator shared by the memory test and the snapshot benchmark
//! (included into each with `#[path]`): both report bytes per tracked key.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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

pub fn held() -> i64 {
    HELD.with(Cell::get)
}
