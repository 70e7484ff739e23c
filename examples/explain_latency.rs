//! In-process explanation speed of the default model on one core: the time of one explained
//! row (median and p99 over the held-out rows), the work it stands for (trees × leaves ×
//! depth²), the artifact's size with and without covers, and the decode time.
//!
//! With a directory argument, also writes `trees.json` (the shap-json export) and `rows.json`
//! (the held-out rows, with this build's contributions) there, for `scripts/bench` to time
//! shap's own TreeExplainer on the same trees.
//!
//! Run: `cargo run --release --example explain_latency [DIR]` (part of `scripts/bench`).

use std::time::Instant;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{Algorithm, ModelSpec, Regressor, SpecOverrides};
use sommelier::model::artifact::{DataSource, ModelArtifact};
use sommelier::model::dataset::read_training_data;
use sommelier::model::explain::Explainer;
use sommelier::model::explain_export::shap_export;
use sommelier::model::training::{train, TrainOptions, Trigger};

/// This thread's processor time, in seconds: unlike the wall clock, it does not count the
/// time other processes on a busy machine take.
fn cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1);
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    let options = TrainOptions::new(
        ModelSpec::build(Algorithm::default(), &SpecOverrides::default())?,
        DataSource::named("bundled"),
        Trigger::Cli,
    );
    let trained = train(&dataset, &options)?;
    let model = trained.artifact;
    let rows = &trained.holdout.rows;
    if let Regressor::Forest(forest) = &model.regressor {
        let levels = forest.levels();
        let work = forest.trees() as f64
            * (forest.leaves() as f64 / forest.trees() as f64)
            * (levels * levels) as f64;
        println!(
            "forest: {} trees, {:.0} leaves per tree, {} levels: T·L·D² = {:.2e}",
            forest.trees(),
            forest.leaves() as f64 / forest.trees() as f64,
            levels,
            work
        );
    }
    let with_covers = model.encode()?;
    let without = model.encode_format_2()?;
    println!(
        "artifact: {:.2} MB with covers and calibration, {:.2} MB without (+{:.1} %)",
        with_covers.len() as f64 / 1e6,
        without.len() as f64 / 1e6,
        (with_covers.len() as f64 / without.len() as f64 - 1.0) * 100.0
    );
    let decode = |bytes: &[u8]| -> Result<f64, Box<dyn std::error::Error>> {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let started = Instant::now();
            let decoded = ModelArtifact::decode(bytes)?;
            best = best.min(started.elapsed().as_secs_f64());
            drop(decoded);
        }
        Ok(best * 1e3)
    };
    println!(
        "decode: {:.1} ms with covers, {:.1} ms without",
        decode(&with_covers)?,
        decode(&without)?
    );
    let explainer = Explainer::of(&model)?;
    // Warm up, then time each row alone.
    for row in rows.iter().take(20) {
        std::hint::black_box(explainer.explain(row));
    }
    let mut times = Vec::with_capacity(rows.len());
    let mut worst_sum = 0.0f64;
    for row in rows {
        let started = cpu_seconds();
        let explanation = std::hint::black_box(explainer.explain(row));
        times.push((cpu_seconds() - started) * 1e3);
        let prediction = model.predict_row(row)?;
        worst_sum = worst_sum.max((explanation.total() - prediction).abs());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "explain one row ({} held-out rows, processor time of one core): median {:.3} ms, p99 {:.3} ms; largest |base + Σ − prediction| {:.1e}",
        rows.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        worst_sum
    );
    if let Some(dir) = out {
        let dir = std::path::Path::new(&dir);
        std::fs::write(
            dir.join("trees.json"),
            serde_json::to_vec(&shap_export(&model)?)?,
        )?;
        let ours: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| explainer.explain(row).contributions.to_vec())
            .collect();
        let body = serde_json::json!({"rows": rows, "contributions": ours});
        std::fs::write(dir.join("rows.json"), serde_json::to_vec(&body)?)?;
    }
    Ok(())
}
