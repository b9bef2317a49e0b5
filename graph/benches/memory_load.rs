//! Load and look-up cost of the in-memory graph on a synthetic graph of about 100k nodes and
//! 300k edges shaped like the generator's output: accounts sharing devices and IPs (some
//! heavily, as fraud rings and NATs do), transfers between accounts, ~1% flagged.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use riskstream_graph::{EntityKind, GraphRecord, MemoryGraph, Relation};

const MAX_HOPS: u32 = 3;

/// SplitMix64: a tiny deterministic generator so the bench graph is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index below `n`, skewed towards small indices so a few entities are shared widely.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn synthetic_graph() -> Vec<GraphRecord> {
    let (accounts, devices, ips, merchants) = (60_000, 25_000, 10_000, 5_000);
    let mut rng = Rng(42);
    let mut records = Vec::new();
    let mut nodes = |prefix: &str, n: usize, kind: EntityKind, rate: f64, rng: &mut Rng| {
        for i in 0..n {
            records.push(GraphRecord::Node {
                id: format!("{prefix}{i}"),
                kind,
                flagged: rng.unit() < rate,
            });
        }
    };
    nodes("A-", accounts, EntityKind::Account, 0.01, &mut rng);
    nodes("D-", devices, EntityKind::Device, 0.005, &mut rng);
    nodes("IP-", ips, EntityKind::Ip, 0.0, &mut rng);
    nodes("M-", merchants, EntityKind::Merchant, 0.002, &mut rng);
    let mut edge = |src: String, dst: String, rel: Relation| {
        records.push(GraphRecord::Edge { src, dst, rel });
    };
    for a in 0..accounts {
        for _ in 0..2 {
            edge(
                format!("A-{a}"),
                format!("D-{}", rng.skewed(devices)),
                Relation::Uses,
            );
        }
        if rng.unit() < 0.5 {
            edge(
                format!("A-{a}"),
                format!("IP-{}", rng.skewed(ips)),
                Relation::Uses,
            );
        }
        edge(
            format!("A-{a}"),
            format!("IP-{}", rng.below(ips)),
            Relation::Uses,
        );
        if rng.unit() < 0.5 {
            edge(
                format!("A-{a}"),
                format!("A-{}", rng.below(accounts)),
                Relation::Transfers,
            );
        }
        edge(
            format!("A-{a}"),
            format!("A-{}", rng.below(accounts)),
            Relation::Transfers,
        );
    }
    for m in 0..merchants {
        edge(
            format!("A-{}", rng.below(accounts)),
            format!("M-{m}"),
            Relation::Owns,
        );
    }
    records
}

fn bench(c: &mut Criterion) {
    let records = synthetic_graph();
    let mut file = tempfile::NamedTempFile::new().expect("temporary file for the bench graph");
    for record in &records {
        serde_json::to_writer(&mut file, record).expect("bench graph records serialise");
        file.write_all(b"\n").expect("write bench graph");
    }
    file.flush().expect("flush bench graph");

    let graph = MemoryGraph::load(file.path(), MAX_HOPS).expect("bench graph loads");
    let near = (0..60_000)
        .filter(|i| graph.lookup_one(&format!("A-{i}")).hops.is_some())
        .count();
    eprintln!(
        "bench graph: {} lines, {graph:?}, {near} of 60000 accounts within {MAX_HOPS} hops of a flagged node",
        records.len()
    );

    let mut group = c.benchmark_group("memory_graph");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("from_records_100k_nodes", |b| {
        b.iter(|| MemoryGraph::from_records(records.iter().cloned(), MAX_HOPS).expect("loads"))
    });
    group.bench_function("load_file_100k_nodes", |b| {
        b.iter(|| MemoryGraph::load(file.path(), MAX_HOPS).expect("loads"))
    });

    let mut rng = Rng(7);
    let ids: Vec<String> = (0..2500)
        .map(|_| match rng.below(4) {
            0 => format!("D-{}", rng.below(25_000)),
            1 => format!("IP-{}", rng.below(10_000)),
            2 => format!("unknown-{}", rng.below(1000)),
            _ => format!("A-{}", rng.below(60_000)),
        })
        .collect();
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("lookup_batch_2500", |b| {
        b.iter(|| {
            let answers: Vec<_> = ids.iter().map(|id| graph.lookup_one(id)).collect();
            black_box(answers)
        })
    });
    group.finish();
}

/// One unflagged hub (a device shared by everyone) with `leaves` accounts, every 100th of
/// them flagged: every flagged leaf is two hops from every other leaf.
fn hub_graph(leaves: usize) -> Vec<GraphRecord> {
    let mut records = vec![GraphRecord::Node {
        id: "D-hub".to_owned(),
        kind: EntityKind::Device,
        flagged: false,
    }];
    for i in 0..leaves {
        records.push(GraphRecord::Node {
            id: format!("A-{i}"),
            kind: EntityKind::Account,
            flagged: i % 100 == 0,
        });
        records.push(GraphRecord::Edge {
            src: format!("A-{i}"),
            dst: "D-hub".to_owned(),
            rel: Relation::Uses,
        });
    }
    records
}

fn hub(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_graph_hub");
    group.sample_size(10);
    for (name, leaves) in [
        ("hub_precompute_10k_leaves", 10_000),
        ("hub_precompute_100k_leaves", 100_000),
        ("hub_precompute_1m_leaves", 1_000_000),
    ] {
        let records = hub_graph(leaves);
        group.bench_function(name, |b| {
            b.iter(|| MemoryGraph::from_records(records.iter().cloned(), MAX_HOPS).expect("loads"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, hub);
criterion_main!(benches);
