//! Scoring speed of the shipped model: rows/s at batch sizes 1, 64, 512 and 4096 for the
//! candle forward pass and the plain-Rust one, measured in the same run, and the cost of
//! reasons (contributions of every feature) per explained row.
//!
//! `plain` is what the job runs (fused multiply-add, one thread); `plain-unfused` is the same
//! pass with the multiply and the add rounded separately, as scoring did before, to show what
//! fusing gains; `plain-2-threads` splits the 4096-row batch between the calling thread and
//! one more.
//!
//! `cargo bench -p riskstream-inference --bench scoring`
//!
//! Like the job, the benchmark pins candle's thread pool to one thread (`RAYON_NUM_THREADS=1`
//! unless set): the job's other stages already use the remaining cores.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskstream_inference::{Backend, DeviceChoice, Model};

const BATCHES: [usize; 4] = [1, 64, 512, 4096];

fn shipped_model() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
    match Model::load(&dir, DeviceChoice::Cpu) {
        Ok(model) => model,
        Err(err) => panic!("the benchmark needs the shipped model: {err}"),
    }
}

/// Rows spread around the training distribution (mean ± 2 std per feature), so that ReLUs
/// are neither all on nor all off.
fn rows(model: &Model, n_rows: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let meta = model.metadata();
    let mut rows = Vec::with_capacity(n_rows * model.n_features());
    for _ in 0..n_rows {
        for (m, s) in meta.norm_mean.iter().zip(&meta.norm_std) {
            rows.push(m + s * (rng.random::<f32>() * 4.0 - 2.0));
        }
    }
    rows
}

fn scoring(c: &mut Criterion) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Single-threaded here: criterion has not started any thread yet.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let model = shipped_model();
    let all = rows(&model, *BATCHES.iter().max().unwrap_or(&1));
    let n = model.n_features();
    let mut group = c.benchmark_group("score");
    for batch in BATCHES {
        let input = &all[..batch * n];
        group.throughput(Throughput::Elements(batch as u64));
        for (name, backend) in [
            ("candle", Backend::Candle),
            ("plain", Backend::Plain),
            ("plain-unfused", Backend::PlainUnfused),
        ] {
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
                b.iter(|| model.score_with(backend, black_box(input), batch))
            });
        }
    }
    // The plain pass on two threads (the caller and one more) where a batch is large enough
    // to be split; the job itself scores on one.
    let batch = *BATCHES.iter().max().unwrap_or(&1);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_with_input(
        BenchmarkId::new("plain-2-threads", batch),
        &batch,
        |b, &batch| b.iter(|| model.score_on_threads(black_box(&all[..batch * n]), batch, 2)),
    );
    group.finish();

    // Reasons: every flagged row costs one forward pass per feature plus one. Measured for
    // one flagged row and for 64 (a busy micro-batch), with the scoring backend of the job.
    let mut group = c.benchmark_group("reasons");
    for flagged in [1usize, 64] {
        let input = &all[..flagged * n];
        group.throughput(Throughput::Elements(flagged as u64));
        group.bench_with_input(
            BenchmarkId::new("contributions", flagged),
            &flagged,
            |b, &flagged| {
                b.iter(|| model.contributions_batch(black_box(input), flagged, model.baseline()))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
