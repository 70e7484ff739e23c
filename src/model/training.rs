//! Fitting and scoring: holdout training, cross-validation and evaluation on labelled rows.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::algorithm::{FitError, ModelSpec, Regressor, TrainingMatrix};
use super::artifact::{
    feature_stats, label_counts, new_version_id, rfc3339_utc, DataSource, ModelArtifact, ModelCard,
    FORMAT_VERSION, SMARTCORE_VERSION, SOMMELIER_VERSION,
};
use super::dataset::Dataset;
use super::explain::{importance_list, mean_absolute, Explainer, TreeCovers};
use super::features::{FeatureRow, FEATURE_NAMES};
use super::interval::Conformal;
use super::metrics::{Metrics, Spread};
use super::split::{grouped_k_folds, Holdout, SplitRule};

/// What started a training; recorded on the card and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Cli,
    Http,
    Schedule,
    Upload,
    /// A server's first start with an empty store.
    Startup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Http => "http",
            Trigger::Schedule => "schedule",
            Trigger::Upload => "upload",
            Trigger::Startup => "startup",
        }
    }
}

/// Share of rows held out for evaluation unless told otherwise (the CLI's `--holdout`, the
/// server's trainings).
pub const DEFAULT_HOLDOUT: f64 = 0.25;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub spec: ModelSpec,
    /// Share of rows held out for evaluation, in [0, 0.9]. Zero trains on every row.
    pub holdout: f64,
    /// Key of the row hash that decides which rows are held out (see [`super::split`]).
    /// Models are comparable only when trained with the same key.
    pub split_key: u64,
    pub source: DataSource,
    pub trigger: Trigger,
}

impl TrainOptions {
    /// `spec` on the data of `source`, with the default holdout and split key.
    pub fn new(spec: ModelSpec, source: DataSource, trigger: Trigger) -> TrainOptions {
        TrainOptions {
            spec,
            holdout: DEFAULT_HOLDOUT,
            split_key: super::split::DEFAULT_SPLIT_KEY,
            source,
            trigger,
        }
    }
}

/// A fitted model and the rows it was not trained on (to compare it with the champion).
#[derive(Debug)]
pub struct TrainedModel {
    pub artifact: ModelArtifact,
    pub holdout: Arc<HeldOut>,
}

/// The rows a model was not trained on, with its predictions for them.
#[derive(Debug, Default)]
pub struct HeldOut {
    /// The rule that chose these rows (also on the card).
    pub split: SplitRule,
    pub rows: Vec<FeatureRow>,
    pub targets: Vec<f64>,
    pub predictions: Vec<f64>,
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("holdout must be between 0 and 0.9; got {0}")]
    BadHoldout(f64),
    #[error("cross-validation needs from 2 to {max} folds for {rows} rows; got {folds}")]
    BadFolds {
        folds: usize,
        rows: usize,
        max: usize,
    },
    #[error("all {rows} rows fell into the holdout (they have too few distinct feature values): add rows with other measurements, or lower --holdout on the command line")]
    NothingToTrainOn { rows: usize },
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// Trains on the dataset minus the rows its split rule holds out, and scores those rows.
/// Holds the dataset, a copy of its training rows in smartcore's layout and the held-out
/// rows while fitting; [`train_owned`] does without the first.
pub fn train(dataset: &Dataset, options: &TrainOptions) -> Result<TrainedModel, TrainError> {
    crate::model::memory::reset_peak();
    let split = split_rows(dataset, options)?;
    let (train_rows, train_targets) = select(dataset, &split.train);
    let held_out = select(dataset, &split.test);
    fit_and_describe(dataset, train_rows, train_targets, held_out, options)
}

/// [`train`], consuming the dataset: its rows are released once the training rows are in
/// smartcore's layout, so one copy of the numbers (plus the held-out rows) is held while
/// fitting. What the trainings of the CLI and the server use.
pub fn train_owned(
    mut dataset: Dataset,
    options: &TrainOptions,
) -> Result<TrainedModel, TrainError> {
    crate::model::memory::reset_peak();
    let split = split_rows(&dataset, options)?;
    let held_out = select(&dataset, &split.test);
    let mut rows = std::mem::take(&mut dataset.rows);
    let mut targets = std::mem::take(&mut dataset.targets);
    // The training rows move to the front in place (the indices ascend), so no second
    // vector of rows is built.
    for (to, &from) in split.train.iter().enumerate() {
        rows[to] = rows[from];
        targets[to] = targets[from];
    }
    rows.truncate(split.train.len());
    targets.truncate(split.train.len());
    targets.shrink_to_fit();
    fit_and_describe(&dataset, rows, targets, held_out, options)
}

/// The holdout rule's split of the dataset's rows, after checking the options.
fn split_rows(dataset: &Dataset, options: &TrainOptions) -> Result<Holdout, TrainError> {
    if !(0.0..=0.9).contains(&options.holdout) || options.holdout.is_nan() {
        return Err(TrainError::BadHoldout(options.holdout));
    }
    let split = SplitRule::new(options.split_key, options.holdout).split(&dataset.rows);
    if split.train.is_empty() {
        return Err(TrainError::NothingToTrainOn {
            rows: dataset.rows.len(),
        });
    }
    Ok(split)
}

/// Fits the training rows (released as soon as they are in smartcore's layout), scores the
/// held-out rows and writes the card. `dataset` names the data (its rows may be gone).
fn fit_and_describe(
    dataset: &Dataset,
    train_rows: Vec<FeatureRow>,
    train_targets: Vec<f64>,
    (holdout_rows, holdout_targets): (Vec<FeatureRow>, Vec<f64>),
    options: &TrainOptions,
) -> Result<TrainedModel, TrainError> {
    let rule = SplitRule::new(options.split_key, options.holdout);
    let training_rows = train_rows.len();
    let stats = feature_stats(&train_rows);
    let labels = label_counts(train_targets.iter().chain(&holdout_targets));
    let data = TrainingMatrix::new(&train_rows, train_targets)?;
    drop(train_rows);

    let started = Instant::now();
    let regressor = Regressor::fit_matrix(&options.spec, &data)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    // Extra trees draw no bootstrap: a node's cover is exactly the training rows that reach
    // it. (A random forest's trees were grown from bootstrap draws of these rows; its covers
    // count every training row once, the distribution its explanations average over.)
    let covers = match &regressor {
        Regressor::Forest(forest) => Some(TreeCovers::count(forest, data.rows_iter())),
        Regressor::Linear(_) => None,
    };
    drop(data);
    let predictions = if holdout_rows.is_empty() {
        Vec::new()
    } else {
        regressor.predict(&holdout_rows)?
    };
    let metrics =
        (!holdout_rows.is_empty()).then(|| Metrics::compute(&predictions, &holdout_targets));
    let conformal = Conformal::calibrate(&predictions, &holdout_targets);
    let peak_memory_bytes = crate::model::memory::peak_resident_bytes();

    let now = SystemTime::now();
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let card = ModelCard {
        version: new_version_id(dataset, &options.spec, now),
        format_version: FORMAT_VERSION,
        sommelier_version: SOMMELIER_VERSION.to_string(),
        smartcore_version: SMARTCORE_VERSION.to_string(),
        created_at: rfc3339_utc(unix),
        created_unix_seconds: unix,
        spec: options.spec,
        feature_names: FEATURE_NAMES.iter().map(|n| n.to_string()).collect(),
        feature_stats: stats,
        metrics,
        holdout: options.holdout,
        split: Some(rule),
        comparison: None,
        training_rows,
        data_sha256: dataset.sha256.clone(),
        source: options.source.clone(),
        trigger: options.trigger.as_str().to_string(),
        fit_seconds,
        peak_memory_bytes,
        label_counts: Some(labels),
        calibration: conformal.as_ref().map(Conformal::summary),
        importance: None,
    };
    let mut artifact = ModelArtifact {
        card,
        regressor,
        covers,
        conformal,
    };
    artifact.card.importance = global_importance(&artifact, &holdout_rows);
    Ok(TrainedModel {
        artifact,
        holdout: Arc::new(HeldOut {
            split: rule,
            rows: holdout_rows,
            targets: holdout_targets,
            predictions,
        }),
    })
}

/// Held-out rows the global importance is averaged over, at most: evenly spaced over the
/// holdout. Each costs an explanation (milliseconds with the default model), so the cost of
/// a training stays bounded at any data size.
pub const IMPORTANCE_ROWS: usize = 128;

/// Each feature's mean |contribution| over (up to [`IMPORTANCE_ROWS`] of) the held-out rows,
/// largest first, explained on every core; `None` without held-out rows.
fn global_importance(
    artifact: &ModelArtifact,
    rows: &[FeatureRow],
) -> Option<super::explain::GlobalImportance> {
    if rows.is_empty() {
        return None;
    }
    let explainer = Explainer::of(artifact).ok()?;
    let count = rows.len().min(IMPORTANCE_ROWS);
    let sample: Vec<FeatureRow> = (0..count).map(|i| rows[i * rows.len() / count]).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = sample.len().div_ceil(cores).max(1);
    let explanations: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = sample
            .chunks(chunk)
            .map(|part| {
                let explainer = &explainer;
                scope.spawn(move || {
                    part.iter()
                        .map(|r| explainer.explain(r))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .flatten()
            .collect()
    });
    Some(super::explain::GlobalImportance {
        rows: explanations.len(),
        features: importance_list(&mean_absolute(&explanations)),
    })
}

/// Mean ± sd of each metric over k folds that keep identical feature rows together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    pub rmse: Spread,
    pub mae: Spread,
    pub r2: Spread,
    pub within_0_5: Spread,
    pub within_1_0: Spread,
}

/// K-fold cross-validation with identical feature rows kept in one fold (so no fold is scored
/// on copies of its training rows); `on_fold` is called after each fold (for progress display).
pub fn cross_validate(
    dataset: &Dataset,
    spec: &ModelSpec,
    folds: usize,
    seed: u64,
    mut on_fold: impl FnMut(usize),
) -> Result<CrossValidation, TrainError> {
    let rows = dataset.rows.len();
    let max = rows.min(100);
    if !(2..=max).contains(&folds) {
        return Err(TrainError::BadFolds { folds, rows, max });
    }
    let mut scores = Vec::with_capacity(folds);
    for (i, fold) in grouped_k_folds(&dataset.rows, folds, seed)
        .iter()
        .enumerate()
    {
        let (train_rows, train_targets) = select(dataset, &fold.train);
        let (test_rows, test_targets) = select(dataset, &fold.test);
        let regressor = Regressor::fit(spec, &train_rows, &train_targets)?;
        scores.push(Metrics::compute(
            &regressor.predict(&test_rows)?,
            &test_targets,
        ));
        on_fold(i + 1);
    }
    let spread = |f: fn(&Metrics) -> f64| Spread::of(&scores.iter().map(f).collect::<Vec<_>>());
    Ok(CrossValidation {
        folds,
        rmse: spread(|m| m.rmse),
        mae: spread(|m| m.mae),
        r2: spread(|m| m.r2),
        within_0_5: spread(|m| m.within_0_5),
        within_1_0: spread(|m| m.within_1_0),
    })
}

/// Scores a model on labelled rows.
pub fn evaluate(artifact: &ModelArtifact, dataset: &Dataset) -> Result<Metrics, FitError> {
    let predictions = artifact.predict(&dataset.rows)?;
    Ok(Metrics::compute(&predictions, &dataset.targets))
}

fn select(dataset: &Dataset, indices: &[usize]) -> (Vec<FeatureRow>, Vec<f64>) {
    indices
        .iter()
        .map(|&i| (dataset.rows[i], dataset.targets[i]))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::algorithm::{Algorithm, SpecOverrides};
    use crate::model::artifact::DataSource;
    use crate::model::dataset::read_training_data;

    fn options(algorithm: Algorithm) -> TrainOptions {
        let overrides = SpecOverrides {
            n_trees: Some(8),
            ..Default::default()
        };
        TrainOptions::new(
            ModelSpec::build(algorithm, &overrides).unwrap(),
            DataSource::named("bundled"),
            Trigger::Cli,
        )
    }

    #[test]
    fn training_on_the_consumed_dataset_gives_the_same_model() {
        let dataset = read_training_data(crate::bundled::WINE_QUALITY_RED_CSV).unwrap();
        for algorithm in [Algorithm::ExtraTrees, Algorithm::ElasticNet] {
            let options = options(algorithm);
            let borrowed = train(&dataset, &options).unwrap();
            let owned = train_owned(dataset.clone(), &options).unwrap();
            assert_eq!(owned.artifact.regressor, borrowed.artifact.regressor);
            let (a, b) = (&owned.artifact.card, &borrowed.artifact.card);
            assert_eq!(a.feature_stats, b.feature_stats);
            assert_eq!((a.training_rows, a.metrics), (b.training_rows, b.metrics));
            assert_eq!(owned.holdout.rows, borrowed.holdout.rows);
            assert_eq!(owned.holdout.targets, borrowed.holdout.targets);
        }
    }

    #[test]
    fn a_linear_model_far_outside_its_range_stays_on_the_scale_inside_its_interval() {
        let dataset = read_training_data(crate::bundled::WINE_QUALITY_RED_CSV).unwrap();
        let artifact = train_owned(dataset, &options(Algorithm::ElasticNet))
            .unwrap()
            .artifact;
        let mut high = [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        high[5] = 1_000_000.0;
        let mut low = high;
        low[5] = 11.0;
        low[1] = 1_000.0;
        for row in [high, low] {
            let one = artifact.predict_row(&row).unwrap();
            assert!((0.0..=10.0).contains(&one), "{one}");
            assert_eq!(artifact.predict(&[row]).unwrap(), vec![one]);
            if let Some([from, to]) = artifact.interval(one, 0.9) {
                assert!(from <= one && one <= to, "{one} outside [{from}, {to}]");
            }
        }
    }

    #[test]
    fn the_card_reports_a_plausible_peak_memory_on_linux() {
        let dataset = read_training_data(crate::bundled::WINE_QUALITY_RED_CSV).unwrap();
        let card = train_owned(dataset, &options(Algorithm::ExtraTrees))
            .unwrap()
            .artifact
            .card;
        if cfg!(target_os = "linux") {
            let peak = card.peak_memory_bytes.expect("Linux reports the peak");
            // More than the process's code and the data; far less than any real machine.
            assert!(peak > 4 << 20 && peak < 64 << 30, "{peak}");
        } else {
            assert_eq!(card.peak_memory_bytes, None);
        }
        assert!(card.fit_seconds >= 0.0);
    }
}
