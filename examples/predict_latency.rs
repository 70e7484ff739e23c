//! In-process prediction latency of the default model: single rows and batches.
//!
//! Run: `cargo run --release --example predict_latency` (part of `scripts/bench`).

use std::time::Instant;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use sommelier::model::artifact::DataSource;
use sommelier::model::dataset::read_training_data;
use sommelier::model::split::DEFAULT_SPLIT_KEY;
use sommelier::model::training::{train, TrainOptions, Trigger};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    let options = TrainOptions {
        spec: ModelSpec::build(Algorithm::default(), &SpecOverrides::default())?,
        holdout: 0.25,
        split_key: DEFAULT_SPLIT_KEY,
        source: DataSource {
            name: "bundled".into(),
            etag: None,
        },
        trigger: Trigger::Cli,
    };
    let started = Instant::now();
    let trained = train(&dataset, &options)?;
    println!(
        "train (default, 1199 rows): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let encoded = trained.artifact.encode()?;
    println!("artifact size: {:.2} MB", encoded.len() as f64 / 1e6);
    let model = trained.artifact;

    let rows = &dataset.rows;
    let iterations = 20_000;
    let mut latencies = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let row = [rows[i % rows.len()]];
        let t = Instant::now();
        let prediction = model.predict(&row)?;
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
    for batch in [100usize, 1000] {
        let chunk: Vec<_> = rows.iter().cycle().take(batch).copied().collect();
        let t = Instant::now();
        let repeats = 20;
        for _ in 0..repeats {
            std::hint::black_box(model.predict(&chunk)?);
        }
        let seconds = t.elapsed().as_secs_f64() / repeats as f64;
        println!(
            "batch of {batch}: {:.2} ms ({:.0} rows/s)",
            seconds * 1e3,
            batch as f64 / seconds
        );
    }
    let t = Instant::now();
    let decoded = sommelier::model::artifact::ModelArtifact::decode(&encoded)?;
    println!("artifact decode: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    std::hint::black_box(decoded);
    Ok(())
}
