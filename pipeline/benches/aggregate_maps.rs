//! Micro-benchmarks that settle the aggregation design (issue: "a sharded aggregation
//! stage that scales with cores"):
//!
//! * `window_update/{map}/{keys}/threads={1,2}`: 4096 per-key window updates (a ring of 8
//!   count/sum buckets, as one window of a tracked key) over 100 k string keys, on
//!   `scc::HashMap`, `Mutex<HashMap>`, `RwLock<HashMap>` and a sharded
//!   `Vec<Mutex<HashMap>>` (16 shards). With 2 threads each thread applies the updates of
//!   the keys it owns (`hash % 2`), as the aggregator's workers do, so per-key order holds
//!   and only the map's own synchronisation differs. Keys are drawn uniformly or from a
//!   Zipf distribution (exponent 1.1: a few hot accounts).
//! * `arc_swap_load/{quiet,concurrent_swaps}`: `ArcSwap::load` of a snapshot pointer,
//!   alone and while another thread swaps it continuously.
//! * `decode/one_event`: decoding one ~200-byte event line.
//!
//! The encoder has its own benchmark (`result_encode`), the aggregator end to end too
//! (`snapshot`, `apply_batch/...`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

const KEYS: usize = 100_000;
const UPDATES: usize = 4096;
const SHARDS: usize = 16;
const BUCKETS: usize = 8;
const BUCKET_MS: i64 = 7_500;

/// One window of a key: a ring of count/sum buckets and the newest event time, updated as
/// the aggregator's rings are (clear the buckets the head passes over, add to the head).
#[derive(Debug, Clone, Default)]
struct Window {
    newest_ms: i64,
    counts: [u32; BUCKETS],
    sums: [f64; BUCKETS],
}

impl Window {
    fn apply(&mut self, ts_ms: i64, amount: f64) -> (u32, f64) {
        let head = ts_ms.div_euclid(BUCKET_MS);
        let newest = self.newest_ms.div_euclid(BUCKET_MS);
        if head > newest {
            for bucket in (newest + 1)..=head.min(newest + BUCKETS as i64) {
                let slot = bucket.rem_euclid(BUCKETS as i64) as usize;
                self.counts[slot] = 0;
                self.sums[slot] = 0.0;
            }
            self.newest_ms = ts_ms;
        }
        let slot = head.rem_euclid(BUCKETS as i64) as usize;
        self.counts[slot] += 1;
        self.sums[slot] += amount;
        (self.counts.iter().sum(), self.sums.iter().sum())
    }
}

type Hasher = ahash::RandomState;

fn hasher() -> Hasher {
    ahash::RandomState::with_seeds(1, 2, 3, 4)
}

/// The maps under test, each keyed by the account id as the live state is.
enum Map {
    Scc(scc::HashMap<Arc<str>, Window, Hasher>),
    Mutex(Mutex<HashMap<Arc<str>, Window, Hasher>>),
    RwLock(RwLock<HashMap<Arc<str>, Window, Hasher>>),
    Sharded(Vec<Mutex<HashMap<Arc<str>, Window, Hasher>>>),
}

impl Map {
    fn new(name: &str) -> Map {
        match name {
            "scc" => Map::Scc(scc::HashMap::with_hasher(hasher())),
            "mutex" => Map::Mutex(Mutex::new(HashMap::with_hasher(hasher()))),
            "rwlock" => Map::RwLock(RwLock::new(HashMap::with_hasher(hasher()))),
            "sharded" => Map::Sharded(
                (0..SHARDS)
                    .map(|_| Mutex::new(HashMap::with_hasher(hasher())))
                    .collect(),
            ),
            other => unreachable!("no map named {other}"),
        }
    }

    fn update(&self, key: &Arc<str>, hash: u64, ts_ms: i64, amount: f64) -> (u32, f64) {
        fn in_map(
            map: &mut HashMap<Arc<str>, Window, Hasher>,
            key: &Arc<str>,
            ts_ms: i64,
            amount: f64,
        ) -> (u32, f64) {
            if let Some(window) = map.get_mut(&**key) {
                return window.apply(ts_ms, amount);
            }
            map.entry(Arc::clone(key)).or_default().apply(ts_ms, amount)
        }
        match self {
            Map::Scc(map) => {
                if let Some(seen) = map.update_sync(&**key, |_, w| w.apply(ts_ms, amount)) {
                    return seen;
                }
                map.entry_sync(Arc::clone(key))
                    .or_default()
                    .get_mut()
                    .apply(ts_ms, amount)
            }
            Map::Mutex(map) => in_map(&mut map.lock().expect("no panic"), key, ts_ms, amount),
            Map::RwLock(map) => in_map(&mut map.write().expect("no panic"), key, ts_ms, amount),
            Map::Sharded(shards) => {
                let shard = &shards[(hash >> 32) as usize % SHARDS];
                in_map(&mut shard.lock().expect("no panic"), key, ts_ms, amount)
            }
        }
    }
}

/// One update: the key, its owner hash, event time and amount.
type Op = (Arc<str>, u64, i64, f64);

fn ops(zipf: bool) -> Vec<Op> {
    let ids: Vec<Arc<str>> = (0..KEYS).map(|i| Arc::from(format!("A-{i:06}"))).collect();
    let hasher = hasher();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let zipf_keys = Zipf::new(KEYS as f64, 1.1).expect("valid Zipf parameters");
    (0..UPDATES)
        .map(|i| {
            let key = if zipf {
                (zipf_keys.sample(&mut rng) as usize - 1).min(KEYS - 1)
            } else {
                rng.random_range(0..KEYS)
            };
            let id = Arc::clone(&ids[key]);
            let hash = hasher.hash_one(&*id);
            (id, hash, i as i64 * 10, rng.random_range(1.0..500.0))
        })
        .collect()
}

/// Applies every op owned by `worker` of `workers`, in order.
fn run(map: &Map, ops: &[Op], worker: usize, workers: usize) -> f64 {
    let mut seen = 0.0;
    for (key, hash, ts_ms, amount) in ops {
        if *hash as usize % workers == worker {
            seen += map.update(key, *hash, *ts_ms, *amount).1;
        }
    }
    seen
}

fn window_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("window_update");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (keys, zipf) in [("uniform", false), ("zipf", true)] {
        let ops = ops(zipf);
        for name in ["scc", "mutex", "rwlock", "sharded"] {
            let map = Map::new(name);
            // Every key inserted once, so the measured updates find their key.
            run(&map, &ops, 0, 1);
            group.bench_function(format!("{name}/{keys}/threads=1"), |b| {
                b.iter(|| black_box(run(&map, &ops, 0, 1)));
            });
            group.bench_function(format!("{name}/{keys}/threads=2"), |b| {
                b.iter(|| {
                    std::thread::scope(|scope| {
                        let other = scope.spawn(|| run(&map, &ops, 1, 2));
                        let mine = run(&map, &ops, 0, 2);
                        black_box(mine + other.join().expect("no panic"))
                    })
                });
            });
        }
    }
    group.finish();
}

fn arc_swap_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("arc_swap_load");
    let slot = ArcSwap::from_pointee(vec![0u64; 64]);
    group.bench_function("quiet", |b| b.iter(|| black_box(slot.load()[0])));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                next += 1;
                slot.store(Arc::new(vec![next; 64]));
            }
        });
        group.bench_function("concurrent_swaps", |b| b.iter(|| black_box(slot.load()[0])));
        stop.store(true, Ordering::Relaxed);
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let line = br#"{"event_id":"e-00000002","ts":"2026-11-01T00:00:10.348Z","account_id":"A-002606","counterparty_id":"A-006930","device_id":"D-004310","ip":"2.56.33.28","amount":48.19,"currency":"EUR","channel":"transfer","country":"DE"}"#;
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("one_event", |b| {
        b.iter(|| {
            black_box(riskstream_pipeline::decode::decode(
                black_box(line),
                1 << 20,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, window_update, arc_swap_load, decode);
criterion_main!(benches);
