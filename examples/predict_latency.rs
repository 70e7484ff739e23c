//! In-process prediction speed of the default model on one core: single rows (latency and
//! rows per second) and batches (rows per second).
//!
//! Run: `cargo run --release --example predict_latency` (part of `scripts/bench`).

use std::time::Instant;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{Algorithm, ModelSpec, SmartcoreRegressor, SpecOverrides};
use sommelier::model::artifact::DataSource;
use sommelier::model::dataset::read_training_data;
use sommelier::model::training::{train, TrainOptions, Trigger};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    let options = TrainOptions::new(
        ModelSpec::build(Algorithm::default(), &SpecOverrides::default())?,
        DataSource::named("bundled"),
        Trigger::Cli,
    );
    let started = Instant::now();
    let trained = train(&dataset, &options)?;
    println!(
        "train (default, 1199 rows): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let encoded = trained.artifact.encode()?;
    println!("artifact size: {:.2} MB", encoded.len() as f64 / 1e6);
    let model = trained.artifact;
    if let sommelier::model::algorithm::Regressor::Forest(forest) = &model.regressor {
        println!(
            "forest: {} trees, {} nodes ({:.1} MB in memory), per tree and row {:.1} nodes on the path, {:.1} steps in lock-step",
            forest.trees(),
            forest.nodes(),
            forest.memory_bytes() as f64 / 1e6,
            forest.mean_path(&dataset.rows),
            forest.mean_lock_step()
        );
    }

    let rows = &dataset.rows;
    let iterations = 20_000;
    let mut latencies = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let row = &rows[i % rows.len()];
        let t = Instant::now();
        let prediction = model.predict_row(row)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(prediction);
    }
    latencies.sort_by(f64::total_cmp);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    println!(
        "single-row predict: mean {mean:.1} µs, p50 {:.1} µs, p99 {:.1} µs ({:.0} rows/s on one core)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        1e6 / mean
    );
    let t = Instant::now();
    let repeats = 200_000;
    for i in 0..repeats {
        std::hint::black_box(model.predict_row(&rows[i % rows.len()])?);
    }
    println!(
        "single rows back to back: {:.0} rows/s on one core",
        repeats as f64 / t.elapsed().as_secs_f64()
    );
    // What an answer's prediction interval adds: a look-up in the sorted held-out errors.
    let per_row = t.elapsed().as_secs_f64() / repeats as f64;
    let t = Instant::now();
    let lookups = 2_000_000;
    for i in 0..lookups {
        std::hint::black_box(model.interval(std::hint::black_box(5.0 + (i % 7) as f64 * 0.1), 0.9));
    }
    let per_lookup = t.elapsed().as_secs_f64() / lookups as f64;
    println!(
        "prediction interval: {:.1} ns per row, {:.2} % of a single-row prediction",
        per_lookup * 1e9,
        per_lookup / per_row * 100.0
    );
    // Batches: the mean over all passes, and the best pass, which a busy machine slows less.
    for batch in [100usize, 1000, 10_000] {
        let chunk: Vec<_> = rows.iter().cycle().take(batch).copied().collect();
        let mut out = vec![0.0; batch];
        let passes = 20;
        let repeats = (100_000 / batch).max(1);
        let mut best = f64::MAX;
        let t = Instant::now();
        for _ in 0..passes {
            let pass = Instant::now();
            for _ in 0..repeats {
                model.regressor.predict_into(&chunk, &mut out)?;
                std::hint::black_box(&out);
            }
            best = best.min(pass.elapsed().as_secs_f64() / repeats as f64);
        }
        let seconds = t.elapsed().as_secs_f64() / (passes * repeats) as f64;
        println!(
            "batch of {batch}: {:.2} ms ({:.0} rows/s; best of {passes} passes {:.0} rows/s)",
            seconds * 1e3,
            batch as f64 / seconds,
            batch as f64 / best
        );
    }
    // The same recipe in smartcore's structures, timed the same way: the ratio holds on a
    // busy machine where absolute figures do not.
    let smartcore =
        SmartcoreRegressor::fit(&options.spec, &rows[..1199], &dataset.targets[..1199])?;
    let mut ours = 0.0;
    let mut theirs = 0.0;
    for i in 0..2_000 {
        let row = &rows[i % rows.len()];
        let t = Instant::now();
        std::hint::black_box(model.predict_row(row)?);
        ours += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(smartcore.predict(std::slice::from_ref(row))?);
        theirs += t.elapsed().as_secs_f64();
    }
    println!(
        "single row, alternating: flat layout {:.1} µs, smartcore {:.1} µs ({:.1}x)",
        ours / 2_000.0 * 1e6,
        theirs / 2_000.0 * 1e6,
        theirs / ours
    );
    let t = Instant::now();
    let decoded = sommelier::model::artifact::ModelArtifact::decode(&encoded)?;
    println!("artifact decode: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    std::hint::black_box(decoded);
    Ok(())
}
