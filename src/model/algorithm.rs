//! The learning algorithms and their hyperparameters, wrapping smartcore.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::extra_trees_regressor::{
    ExtraTreesRegressor, ExtraTreesRegressorParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};
use thiserror::Error;

use super::features::{FeatureRow, FEATURE_COUNT};

/// Seed used when none is given, so that the same data gives the same model.
pub const DEFAULT_SEED: u64 = 42;

/// Which learner to train.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Bootstrap-aggregated regression trees.
    RandomForest,
    /// Extremely randomised trees: random split thresholds. The default: the lowest
    /// cross-validated RMSE on the bundled data (see the README's quality table).
    #[default]
    ExtraTrees,
    /// Linear model with L1 and L2 penalties (the original project's model).
    ElasticNet,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RandomForest => "random-forest",
            Algorithm::ExtraTrees => "extra-trees",
            Algorithm::ElasticNet => "elastic-net",
        }
    }
}

/// Hyperparameters of the tree ensembles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForestParams {
    pub n_trees: usize,
    /// Features tried at each split.
    pub max_features: usize,
    pub max_depth: Option<u16>,
    pub min_samples_leaf: usize,
    pub min_samples_split: usize,
}

/// Hyperparameters of the elastic net.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinearParams {
    pub alpha: f64,
    pub l1_ratio: f64,
    pub max_iter: usize,
}

/// A fully specified training recipe: algorithm, hyperparameters and seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "algorithm", rename_all = "kebab-case")]
pub enum ModelSpec {
    RandomForest { params: ForestParams, seed: u64 },
    ExtraTrees { params: ForestParams, seed: u64 },
    ElasticNet { params: LinearParams },
}

/// Optional overrides of the defaults, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecOverrides {
    pub n_trees: Option<usize>,
    pub max_features: Option<usize>,
    pub max_depth: Option<u16>,
    pub min_samples_leaf: Option<usize>,
    pub min_samples_split: Option<usize>,
    pub alpha: Option<f64>,
    pub l1_ratio: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("{name} must be {rule}; got {value}")]
    Invalid {
        name: &'static str,
        rule: &'static str,
        value: String,
    },
}

impl ModelSpec {
    /// The measured defaults for `algorithm` with `overrides` applied and checked.
    pub fn build(algorithm: Algorithm, overrides: &SpecOverrides) -> Result<ModelSpec, SpecError> {
        let seed = overrides.seed.unwrap_or(DEFAULT_SEED);
        let spec = match algorithm {
            Algorithm::RandomForest => ModelSpec::RandomForest {
                params: forest_params(overrides, 2, 1),
                seed,
            },
            Algorithm::ExtraTrees => ModelSpec::ExtraTrees {
                params: forest_params(overrides, 6, 2),
                seed,
            },
            Algorithm::ElasticNet => ModelSpec::ElasticNet {
                params: LinearParams {
                    alpha: overrides.alpha.unwrap_or(0.2),
                    l1_ratio: overrides.l1_ratio.unwrap_or(0.1),
                    max_iter: 10_000,
                },
            },
        };
        spec.validate()?;
        Ok(spec)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            ModelSpec::RandomForest { .. } => Algorithm::RandomForest,
            ModelSpec::ExtraTrees { .. } => Algorithm::ExtraTrees,
            ModelSpec::ElasticNet { .. } => Algorithm::ElasticNet,
        }
    }

    /// Hyperparameters as flat name/value pairs, for reports and experiment tracking.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        match self {
            ModelSpec::RandomForest { params, seed } | ModelSpec::ExtraTrees { params, seed } => {
                vec![
                    ("n_trees", params.n_trees.to_string()),
                    ("max_features", params.max_features.to_string()),
                    (
                        "max_depth",
                        params
                            .max_depth
                            .map_or("none".to_string(), |d| d.to_string()),
                    ),
                    ("min_samples_leaf", params.min_samples_leaf.to_string()),
                    ("min_samples_split", params.min_samples_split.to_string()),
                    ("seed", seed.to_string()),
                ]
            }
            ModelSpec::ElasticNet { params } => vec![
                ("alpha", params.alpha.to_string()),
                ("l1_ratio", params.l1_ratio.to_string()),
                ("max_iter", params.max_iter.to_string()),
            ],
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        let invalid = |name, rule, value: String| Err(SpecError::Invalid { name, rule, value });
        match self {
            ModelSpec::RandomForest { params, .. } | ModelSpec::ExtraTrees { params, .. } => {
                if !(1..=10_000).contains(&params.n_trees) {
                    return invalid("n_trees", "from 1 to 10000", params.n_trees.to_string());
                }
                if !(1..=FEATURE_COUNT).contains(&params.max_features) {
                    return invalid(
                        "max_features",
                        "from 1 to 11",
                        params.max_features.to_string(),
                    );
                }
                if params.max_depth == Some(0) {
                    return invalid("max_depth", "at least 1", "0".to_string());
                }
                if params.min_samples_leaf == 0 {
                    return invalid("min_samples_leaf", "at least 1", "0".to_string());
                }
                if params.min_samples_split < 2 {
                    return invalid(
                        "min_samples_split",
                        "at least 2",
                        params.min_samples_split.to_string(),
                    );
                }
            }
            ModelSpec::ElasticNet { params } => {
                if !(params.alpha.is_finite() && params.alpha >= 0.0) {
                    return invalid("alpha", "a finite number >= 0", params.alpha.to_string());
                }
                if !(0.0..=1.0).contains(&params.l1_ratio) {
                    return invalid("l1_ratio", "between 0 and 1", params.l1_ratio.to_string());
                }
            }
        }
        Ok(())
    }
}

fn forest_params(overrides: &SpecOverrides, max_features: usize, leaf: usize) -> ForestParams {
    ForestParams {
        n_trees: overrides.n_trees.unwrap_or(100),
        max_features: overrides.max_features.unwrap_or(max_features),
        max_depth: overrides.max_depth,
        min_samples_leaf: overrides.min_samples_leaf.unwrap_or(leaf),
        min_samples_split: overrides.min_samples_split.unwrap_or(2),
    }
}

type Matrix = DenseMatrix<f64>;

/// A fitted model.
#[derive(Debug, Serialize, Deserialize)]
pub enum Regressor {
    RandomForest(RandomForestRegressor<f64, f64, Matrix, Vec<f64>>),
    ExtraTrees(ExtraTreesRegressor<f64, f64, Matrix, Vec<f64>>),
    ElasticNet(ElasticNet<f64, f64, Matrix, Vec<f64>>),
}

#[derive(Debug, Error)]
pub enum FitError {
    #[error("training failed: {0}")]
    Fit(String),
    #[error("prediction failed: {0}")]
    Predict(String),
    #[error("the model produced a non-finite prediction")]
    NonFinite,
}

/// Builds a row-major matrix from feature rows.
fn matrix(rows: &[FeatureRow]) -> Result<Matrix, FitError> {
    let values: Vec<f64> = rows.iter().flatten().copied().collect();
    DenseMatrix::new(rows.len(), FEATURE_COUNT, values, false)
        .map_err(|e| FitError::Predict(e.to_string()))
}

impl Regressor {
    /// Fits `spec` on the rows and targets. CPU-bound: call from a blocking thread in async code.
    pub fn fit(spec: &ModelSpec, rows: &[FeatureRow], targets: &[f64]) -> Result<Self, FitError> {
        let x = matrix(rows).map_err(|e| FitError::Fit(e.to_string()))?;
        let y = targets.to_vec();
        let fit_error = |e: smartcore::error::Failed| FitError::Fit(e.to_string());
        Ok(match *spec {
            ModelSpec::RandomForest { params, seed } => {
                let mut p = RandomForestRegressorParameters::default()
                    .with_n_trees(params.n_trees)
                    .with_m(params.max_features)
                    .with_min_samples_leaf(params.min_samples_leaf)
                    .with_min_samples_split(params.min_samples_split)
                    .with_seed(seed);
                if let Some(depth) = params.max_depth {
                    p = p.with_max_depth(depth);
                }
                Regressor::RandomForest(RandomForestRegressor::fit(&x, &y, p).map_err(fit_error)?)
            }
            ModelSpec::ExtraTrees { params, seed } => {
                let mut p = ExtraTreesRegressorParameters::default()
                    .with_n_trees(params.n_trees)
                    .with_m(params.max_features)
                    .with_min_samples_leaf(params.min_samples_leaf)
                    .with_min_samples_split(params.min_samples_split)
                    .with_seed(seed);
                if let Some(depth) = params.max_depth {
                    p = p.with_max_depth(depth);
                }
                Regressor::ExtraTrees(ExtraTreesRegressor::fit(&x, &y, p).map_err(fit_error)?)
            }
            ModelSpec::ElasticNet { params } => {
                let p = ElasticNetParameters::default()
                    .with_alpha(params.alpha)
                    .with_l1_ratio(params.l1_ratio)
                    .with_max_iter(params.max_iter)
                    .with_normalize(false);
                Regressor::ElasticNet(ElasticNet::fit(&x, &y, p).map_err(fit_error)?)
            }
        })
    }

    /// Predicts quality for each row.
    pub fn predict(&self, rows: &[FeatureRow]) -> Result<Vec<f64>, FitError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let x = matrix(rows)?;
        let predict_error = |e: smartcore::error::Failed| FitError::Predict(e.to_string());
        let predictions = match self {
            Regressor::RandomForest(m) => m.predict(&x).map_err(predict_error)?,
            Regressor::ExtraTrees(m) => m.predict(&x).map_err(predict_error)?,
            Regressor::ElasticNet(m) => m.predict(&x).map_err(predict_error)?,
        };
        if predictions.iter().any(|p| !p.is_finite()) {
            return Err(FitError::NonFinite);
        }
        Ok(predictions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_measured_ones() {
        let spec = ModelSpec::build(Algorithm::RandomForest, &SpecOverrides::default()).unwrap();
        assert_eq!(spec.algorithm(), Algorithm::RandomForest);
        let ModelSpec::ElasticNet { params } =
            ModelSpec::build(Algorithm::ElasticNet, &SpecOverrides::default()).unwrap()
        else {
            panic!("elastic net expected")
        };
        assert_eq!((params.alpha, params.l1_ratio), (0.2, 0.1));
    }

    #[test]
    fn invalid_hyperparameters_are_named() {
        let overrides = SpecOverrides {
            max_features: Some(12),
            ..Default::default()
        };
        let error = ModelSpec::build(Algorithm::ExtraTrees, &overrides).unwrap_err();
        assert_eq!(
            error.to_string(),
            "max_features must be from 1 to 11; got 12"
        );
        let overrides = SpecOverrides {
            l1_ratio: Some(1.5),
            ..Default::default()
        };
        assert!(ModelSpec::build(Algorithm::ElasticNet, &overrides).is_err());
    }
}
