//! Rough throughput figures for training and scoring on synthetic data.
//!
//! `cargo run --release -p riskstream-inference --example throughput [rows]`
//!
//! Prints training time for `rows` rows (default 300 000) × 30 features, scoring rows/s at
//! batch sizes 1, 64, 512 and 4096, and fingerprints of the training losses and of all
//! scores: run it under different `RAYON_NUM_THREADS` values and the fingerprints must not
//! change. A quick look, not a benchmark: nothing is asserted.

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riskstream_inference::{train, Dataset, Model, ModelError, TrainOptions};

const FEATURES: usize = 30;

fn synthetic(rows: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut features = Vec::with_capacity(rows * FEATURES);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let positive = rng.random::<f32>() < 0.03;
        for j in 0..FEATURES {
            let signal = if positive && j % 3 == 0 { 0.8 } else { 0.0 };
            features.push(rng.random::<f32>() + signal + j as f32);
        }
        labels.push(f32::from(u8::from(positive)));
    }
    Dataset {
        feature_names: (0..FEATURES).map(|j| format!("f{j}")).collect(),
        features,
        labels,
        groups: Vec::new(),
    }
}

fn scoring(model: &Model, data: &Dataset) -> Result<(), ModelError> {
    for batch in [1usize, 64, 512, 4096] {
        let rows = &data.features[..batch * FEATURES];
        let mut scored = 0usize;
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < 1.0 {
            scored += model.score(rows, batch)?.len();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "score batch {batch:>5}: {:>12.0} rows/s ({:.1} µs per call)",
            scored as f64 / seconds,
            seconds * 1e6 / (scored / batch) as f64
        );
    }
    let row = &data.features[..FEATURES];
    let started = Instant::now();
    let mut calls = 0usize;
    while started.elapsed().as_secs_f64() < 1.0 {
        model.contributions(row, model.baseline())?;
        calls += 1;
    }
    println!(
        "contributions: {:.1} µs per row",
        started.elapsed().as_secs_f64() * 1e6 / calls as f64
    );
    Ok(())
}

fn main() -> Result<(), ModelError> {
    let rows = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let data = synthetic(rows);
    let opts = TrainOptions::default();
    let (model, report) = train(&data, &opts)?;
    println!(
        "train {rows} rows x {FEATURES} features, hidden {:?}, {} epochs, batch {}: {:.1} s, \
         validation AUC {:?}",
        opts.hidden, opts.epochs, opts.batch_size, report.seconds, report.validation.roc_auc
    );
    let losses: Vec<u32> = report.epochs_loss.iter().map(|l| l.to_bits()).collect();
    let scores: Vec<u32> = model
        .score(&data.features, data.n_rows())?
        .iter()
        .map(|s| s.to_bits())
        .collect();
    println!(
        "fingerprints: training losses {:016x}, all scores {:016x}",
        fnv1a(&losses),
        fnv1a(&scores)
    );
    scoring(&model, &data)
}

fn fnv1a(words: &[u32]) -> u64 {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}
