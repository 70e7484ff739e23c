//! Measures 5-fold cross-validation RMSE on the bundled data for each algorithm (and, with
//! `--grid`, a grid of forest settings): the figures behind the README's quality table and
//! the defaults.
//!
//! Folds are grouped: identical feature rows always share a fold, as sommelier's own `--cv`
//! does, so no fold is scored on copies of rows it trained on. The plain shuffled figure is
//! printed beside it to show how much duplicates flatter it.
//!
//! Run: `cargo run --release --example quality [-- --grid] [-- --folds-out FILE]`
//! `--folds-out` writes the data with each row's grouped fold, for
//! `python3 examples/sklearn_reference.py FILE` (scikit-learn on the very same folds).

use std::io::Write;
use std::time::Instant;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{Algorithm, ModelSpec, Regressor, SpecOverrides, DEFAULT_SEED};
use sommelier::model::dataset::{read_training_data, Dataset};
use sommelier::model::features::FEATURE_NAMES;
use sommelier::model::metrics::{Metrics, Spread};
use sommelier::model::split::{distinct_rows, grouped_k_folds, shuffled_indices, Holdout};
use sommelier::model::training::cross_validate;

const FOLDS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    if let Some(path) = args
        .iter()
        .position(|a| a == "--folds-out")
        .and_then(|i| args.get(i + 1))
    {
        write_folds(&dataset, path)?;
        println!("wrote the rows and their grouped folds to {path}");
    }
    println!(
        "rows: {} ({} distinct feature rows); predicting the mean: RMSE {:.4}",
        dataset.rows.len(),
        distinct_rows(&dataset.rows),
        Spread::of(&dataset.targets).sd
    );
    println!(
        "{:<14} {:>6} {:>4} {:>5} {:>6} {:>18} {:>13} {:>8}",
        "algorithm", "trees", "m", "leaf", "depth", "grouped cv rmse", "shuffled cv", "seconds"
    );
    for (algorithm, overrides) in configurations(args.iter().any(|a| a == "--grid")) {
        let spec = ModelSpec::build(algorithm, &overrides)?;
        let started = Instant::now();
        let grouped = cross_validate(&dataset, &spec, FOLDS, DEFAULT_SEED, |_| {})?;
        let shuffled = shuffled_cv_rmse(&dataset, &spec)?;
        let params = spec.parameters();
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map_or("-".to_string(), |(_, v)| v.clone())
        };
        println!(
            "{:<14} {:>6} {:>4} {:>5} {:>6} {:>9.4} ± {:.4} {:>13.4} {:>8.1}",
            algorithm.name(),
            get("n_trees"),
            get("max_features"),
            get("min_samples_leaf"),
            get("max_depth"),
            grouped.rmse.mean,
            grouped.rmse.sd,
            shuffled,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn configurations(grid: bool) -> Vec<(Algorithm, SpecOverrides)> {
    let mut configs = vec![(Algorithm::ElasticNet, SpecOverrides::default())];
    if grid {
        let trees = std::env::var("TREES").ok().and_then(|t| t.parse().ok());
        for (algorithm, m, leaf) in [
            (Algorithm::RandomForest, 2, 1),
            (Algorithm::RandomForest, 4, 1),
            (Algorithm::RandomForest, 11, 1),
            (Algorithm::ExtraTrees, 3, 1),
            (Algorithm::ExtraTrees, 6, 1),
            (Algorithm::ExtraTrees, 11, 1),
            (Algorithm::ExtraTrees, 3, 2),
            (Algorithm::ExtraTrees, 4, 2),
            (Algorithm::ExtraTrees, 5, 2),
            (Algorithm::ExtraTrees, 6, 2),
            (Algorithm::ExtraTrees, 8, 2),
            (Algorithm::ExtraTrees, 4, 3),
            (Algorithm::ExtraTrees, 6, 3),
            (Algorithm::ExtraTrees, 6, 5),
        ] {
            configs.push((
                algorithm,
                SpecOverrides {
                    n_trees: trees,
                    max_features: Some(m),
                    min_samples_leaf: Some(leaf),
                    ..Default::default()
                },
            ));
        }
        // The default recipe at other depth bounds (0: unbounded).
        for depth in [12, 14, 18, 20, 0] {
            configs.push((
                Algorithm::ExtraTrees,
                SpecOverrides {
                    max_depth: Some(depth),
                    ..Default::default()
                },
            ));
        }
    }
    configs.push((Algorithm::RandomForest, SpecOverrides::default()));
    configs.push((Algorithm::ExtraTrees, SpecOverrides::default()));
    configs
}

/// Mean RMSE over plain shuffled folds, where copies of a row may sit on both sides.
fn shuffled_cv_rmse(
    dataset: &Dataset,
    spec: &ModelSpec,
) -> Result<f64, Box<dyn std::error::Error>> {
    let order = shuffled_indices(dataset.rows.len(), DEFAULT_SEED);
    let n = order.len();
    let mut total = 0.0;
    for fold in 0..FOLDS {
        let (start, end) = (fold * n / FOLDS, (fold + 1) * n / FOLDS);
        let split = Holdout {
            test: order[start..end].to_vec(),
            train: order[..start]
                .iter()
                .chain(&order[end..])
                .copied()
                .collect(),
        };
        total += fold_rmse(dataset, spec, &split)?;
    }
    Ok(total / FOLDS as f64)
}

fn fold_rmse(
    dataset: &Dataset,
    spec: &ModelSpec,
    split: &Holdout,
) -> Result<f64, Box<dyn std::error::Error>> {
    let pick = |indices: &[usize]| -> (Vec<_>, Vec<f64>) {
        indices
            .iter()
            .map(|&i| (dataset.rows[i], dataset.targets[i]))
            .unzip()
    };
    let (train_rows, train_targets) = pick(&split.train);
    let (test_rows, test_targets) = pick(&split.test);
    let model = Regressor::fit(spec, &train_rows, &train_targets)?;
    Ok(Metrics::compute(&model.predict(&test_rows)?, &test_targets).rmse)
}

/// The rows, their quality and their grouped fold, as CSV.
fn write_folds(dataset: &Dataset, path: &str) -> std::io::Result<()> {
    let mut fold_of = vec![0usize; dataset.rows.len()];
    for (fold, split) in grouped_k_folds(&dataset.rows, FOLDS, DEFAULT_SEED)
        .iter()
        .enumerate()
    {
        for &i in &split.test {
            fold_of[i] = fold;
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{},quality,fold", FEATURE_NAMES.join(","))?;
    for (i, row) in dataset.rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        writeln!(
            out,
            "{},{},{}",
            cells.join(","),
            dataset.targets[i],
            fold_of[i]
        )?;
    }
    out.flush()
}
