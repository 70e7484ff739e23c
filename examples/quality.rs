//! Measures 5-fold shuffled cross-validation RMSE on the bundled data for each algorithm and
//! a grid of forest settings: the figures behind the README's quality table and the defaults.
//!
//! Run: `cargo run --release --example quality`

use std::time::Instant;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{Algorithm, ModelSpec, SpecOverrides, DEFAULT_SEED};
use sommelier::model::dataset::read_training_data;
use sommelier::model::training::cross_validate;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    let mean = dataset.targets.iter().sum::<f64>() / dataset.targets.len() as f64;
    let baseline = (dataset
        .targets
        .iter()
        .map(|t| (t - mean).powi(2))
        .sum::<f64>()
        / dataset.targets.len() as f64)
        .sqrt();
    println!(
        "rows: {}; predicting the mean: RMSE {baseline:.4}",
        dataset.rows.len()
    );
    println!(
        "{:<14} {:>7} {:>5} {:>5} {:>16} {:>8}",
        "algorithm", "trees", "m", "leaf", "cv rmse", "seconds"
    );
    let mut configs = vec![(Algorithm::ElasticNet, SpecOverrides::default())];
    let grid: &[(Algorithm, usize, usize)] = if std::env::args().any(|a| a == "--grid") {
        &[
            (Algorithm::RandomForest, 2, 1),
            (Algorithm::RandomForest, 3, 1),
            (Algorithm::RandomForest, 4, 1),
            (Algorithm::RandomForest, 6, 1),
            (Algorithm::RandomForest, 11, 1),
            (Algorithm::ExtraTrees, 3, 1),
            (Algorithm::ExtraTrees, 5, 1),
            (Algorithm::ExtraTrees, 6, 1),
            (Algorithm::ExtraTrees, 7, 1),
            (Algorithm::ExtraTrees, 8, 1),
            (Algorithm::ExtraTrees, 11, 1),
            (Algorithm::ExtraTrees, 6, 2),
        ]
    } else {
        &[]
    };
    for &(algorithm, m, leaf) in grid {
        configs.push((
            algorithm,
            SpecOverrides {
                n_trees: std::env::var("TREES").ok().and_then(|t| t.parse().ok()),
                max_features: Some(m),
                min_samples_leaf: Some(leaf),
                ..Default::default()
            },
        ));
    }
    configs.push((Algorithm::RandomForest, SpecOverrides::default()));
    configs.push((Algorithm::ExtraTrees, SpecOverrides::default()));
    for (algorithm, overrides) in configs {
        let spec = ModelSpec::build(algorithm, &overrides)?;
        let started = Instant::now();
        let cv = cross_validate(&dataset, &spec, 5, DEFAULT_SEED, |_| {})?;
        let params = spec.parameters();
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map_or("-".to_string(), |(_, v)| v.clone())
        };
        println!(
            "{:<14} {:>7} {:>5} {:>5} {:>8.4} ± {:.4} {:>8.1}",
            algorithm.name(),
            get("n_trees"),
            get("max_features"),
            get("min_samples_leaf"),
            cv.rmse.mean,
            cv.rmse.sd,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
