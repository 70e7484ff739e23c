//! The learning algorithms and their hyperparameters, wrapping smartcore: smartcore fits,
//! and the fitted model is turned into its inference layout (see `forest`) at once.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::extra_trees_regressor::{
    ExtraTreesRegressor, ExtraTreesRegressorParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use thiserror::Error;

use super::features::{FeatureRow, FEATURE_COUNT};
use super::forest::{Forest, ForestError};

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
    /// Most levels a tree may have (a lone leaf is one level). `None`: unbounded, as in
    /// models of earlier releases.
    pub max_depth: Option<u16>,
    /// Rows a leaf holds at least. The leaf size used is larger when `max_leaves` needs it.
    pub min_samples_leaf: usize,
    pub min_samples_split: usize,
    /// Most leaves a tree may have: the leaf size grows with the training rows so that
    /// no tree has more (see [`effective_min_samples_leaf`]), which bounds the model's size
    /// at any data size. `None`: unbounded, as in models of the first artifact format.
    #[serde(default)]
    pub max_leaves: Option<usize>,
}

/// The default leaf budget per tree. 100 trees of at most 4,096 leaves (8,191 nodes of 16
/// bytes) take at most 13.1 MB, in memory and in the artifact, at any row count; the bundled
/// data (1,599 rows) stays below the budget: its trees are bounded by depth alone.
pub const DEFAULT_MAX_LEAVES: usize = 4096;

/// The default depth bound of a tree, counted in levels (a lone leaf is one level). A
/// prediction walks every tree for as many steps as the tree is deep (see
/// [`Forest::predict_into`](super::forest::Forest::predict_into)), so the bound is what
/// caps the cost of the most expensive row. Measured on the bundled data (grouped 5-fold
/// CV, `examples/quality.rs --grid`), trees cut at 16 levels score as the unbounded ones;
/// 14 and fewer levels score worse.
pub const DEFAULT_MAX_DEPTH: u16 = 16;

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
    /// Depth bound in levels; `Some(0)` removes the bound.
    pub max_depth: Option<u16>,
    pub min_samples_leaf: Option<usize>,
    pub min_samples_split: Option<usize>,
    /// Leaf budget per tree; `Some(0)` removes the bound.
    pub max_leaves: Option<usize>,
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
                params: forest_params(overrides, 5, 2),
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
                    (
                        "max_leaves",
                        params
                            .max_leaves
                            .map_or("none".to_string(), |n| n.to_string()),
                    ),
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
        max_depth: match overrides.max_depth {
            Some(0) => None,
            Some(depth) => Some(depth),
            None => Some(DEFAULT_MAX_DEPTH),
        },
        min_samples_leaf: overrides.min_samples_leaf.unwrap_or(leaf),
        min_samples_split: overrides.min_samples_split.unwrap_or(2),
        max_leaves: match overrides.max_leaves {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(DEFAULT_MAX_LEAVES),
        },
    }
}

type Matrix = DenseMatrix<f64>;

/// A model fitted by smartcore, in smartcore's own structures: what training produces before
/// it is turned into a [`Regressor`], and what artifacts of the first format stored.
#[derive(Debug, Serialize, Deserialize)]
pub enum SmartcoreRegressor {
    RandomForest(RandomForestRegressor<f64, f64, Matrix, Vec<f64>>),
    ExtraTrees(ExtraTreesRegressor<f64, f64, Matrix, Vec<f64>>),
    ElasticNet(ElasticNet<f64, f64, Matrix, Vec<f64>>),
}

/// A fitted model in its inference layout: what artifacts store and servers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Regressor {
    /// A tree ensemble (random forest or extra trees): the mean of its trees.
    Forest(Forest),
    /// A linear model (elastic net).
    Linear(LinearModel),
}

/// `intercept + Σ weights[i] · x[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub weights: [f64; FEATURE_COUNT],
    pub intercept: f64,
}

impl LinearModel {
    fn predict_row(&self, row: &FeatureRow) -> f64 {
        let mut sum = 0.0;
        for (x, w) in row.iter().zip(&self.weights) {
            sum += x * w;
        }
        sum + self.intercept
    }
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

/// Trees fitted in one smartcore call when the forest's trees depend on each other's draws
/// (random forest: one bootstrap generator per call). Fixed, so that the same recipe gives the
/// same model on any number of cores.
const RANDOM_FOREST_TREES_PER_PART: usize = 25;

/// Training rows in the layout smartcore's fit reads, with their targets: a column store, one
/// vector of the feature values column after column (a column-major matrix's own storage, read
/// in place by every part of a forest; a split search reads one feature of many rows), and one
/// vector of targets. Built once per fit; the caller can release its rows as
/// soon as this exists, so that one copy of the numbers is held while fitting.
pub struct TrainingMatrix {
    x: Matrix,
    y: Vec<f64>,
}

impl TrainingMatrix {
    /// Copies `rows` into the matrix; `targets` (one per row) is kept as it is.
    pub fn new(rows: &[FeatureRow], targets: Vec<f64>) -> Result<TrainingMatrix, FitError> {
        if rows.len() != targets.len() {
            return Err(FitError::Fit(format!(
                "{} rows but {} targets",
                rows.len(),
                targets.len()
            )));
        }
        let x = matrix(rows).map_err(|e| FitError::Fit(e.to_string()))?;
        Ok(TrainingMatrix { x, y: targets })
    }

    /// Rows in the matrix.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// The rows, one at a time (copied out of the column store).
    pub fn rows_iter(&self) -> impl Iterator<Item = FeatureRow> + '_ {
        (0..self.rows()).map(|i| std::array::from_fn(|f| *self.x.get((i, f))))
    }
}

/// Builds a column-major matrix (the column store) from feature rows.
fn matrix(rows: &[FeatureRow]) -> Result<Matrix, FitError> {
    let mut values = Vec::with_capacity(rows.len() * FEATURE_COUNT);
    for feature in 0..FEATURE_COUNT {
        values.extend(rows.iter().map(|row| row[feature]));
    }
    DenseMatrix::new(rows.len(), FEATURE_COUNT, values, true)
        .map_err(|e| FitError::Predict(e.to_string()))
}

/// The leaf size actually used for `rows` training rows: at least the recipe's
/// `min_samples_leaf`, and large enough that no tree can have more than `max_leaves` leaves
/// (every leaf holds at least that many of the rows, so a tree has at most rows / leaf
/// leaves). On the bundled data (1,599 rows) the default bound changes nothing.
pub fn effective_min_samples_leaf(params: &ForestParams, rows: usize) -> usize {
    let bounded = params
        .max_leaves
        .map_or(1, |leaves| rows.div_ceil(leaves.max(1)));
    params.min_samples_leaf.max(bounded).max(1)
}

/// The most trees of one extra-trees fit: the unit in which a training's progress moves.
const EXTRA_TREES_PER_PART: usize = 10;

/// smartcore's parameters of one part of a forest: `trees` trees starting at tree `first`.
struct ForestPart {
    first: usize,
    trees: usize,
}

/// How the trees are shared out between fits. Extra trees draw nothing at the forest level
/// (tree `i` is grown from `seed + i` alone), so any split of the trees gives the same forest:
/// one part per core, of at most [`EXTRA_TREES_PER_PART`] trees so that progress shows.
/// Random forests draw their bootstrap samples from one generator per fit, so their parts
/// have a fixed size whatever the core count.
fn forest_parts(n_trees: usize, bootstrap: bool, cores: usize) -> Vec<ForestPart> {
    let size = if bootstrap {
        RANDOM_FOREST_TREES_PER_PART
    } else {
        n_trees
            .div_ceil(cores.clamp(1, n_trees.max(1)))
            .min(EXTRA_TREES_PER_PART)
    };
    (0..n_trees)
        .step_by(size.max(1))
        .map(|first| ForestPart {
            first,
            trees: size.min(n_trees - first),
        })
        .collect()
}

impl SmartcoreRegressor {
    /// Fits `spec` in one smartcore call, on one core: the reference the parallel fit of
    /// [`Regressor::fit`] is checked against.
    pub fn fit(spec: &ModelSpec, rows: &[FeatureRow], targets: &[f64]) -> Result<Self, FitError> {
        let x = matrix(rows).map_err(|e| FitError::Fit(e.to_string()))?;
        let y = targets.to_vec();
        match *spec {
            ModelSpec::RandomForest { params, seed } | ModelSpec::ExtraTrees { params, seed } => {
                let part = ForestPart {
                    first: 0,
                    trees: params.n_trees,
                };
                let bootstrap = spec.algorithm() == Algorithm::RandomForest;
                fit_part(bootstrap, &params, seed, &part, &x, &y)
            }
            ModelSpec::ElasticNet { params } => fit_linear(&params, &x, &y),
        }
    }

    /// smartcore's own prediction.
    pub fn predict(&self, rows: &[FeatureRow]) -> Result<Vec<f64>, FitError> {
        let x = matrix(rows)?;
        let predict_error = |e: smartcore::error::Failed| FitError::Predict(e.to_string());
        match self {
            SmartcoreRegressor::RandomForest(m) => m.predict(&x).map_err(predict_error),
            SmartcoreRegressor::ExtraTrees(m) => m.predict(&x).map_err(predict_error),
            SmartcoreRegressor::ElasticNet(m) => m.predict(&x).map_err(predict_error),
        }
    }

    /// The same model in the inference layout.
    pub fn to_regressor(&self) -> Result<Regressor, FitError> {
        let unreadable = |e: ForestError| FitError::Fit(e.to_string());
        Ok(match self {
            SmartcoreRegressor::RandomForest(m) => {
                Regressor::Forest(Forest::from_smartcore(m).map_err(unreadable)?)
            }
            SmartcoreRegressor::ExtraTrees(m) => {
                Regressor::Forest(Forest::from_smartcore(m).map_err(unreadable)?)
            }
            SmartcoreRegressor::ElasticNet(m) => {
                let coefficients = m.coefficients();
                let mut weights = [0.0; FEATURE_COUNT];
                for (i, w) in weights.iter_mut().enumerate() {
                    *w = *coefficients.get((i, 0));
                }
                Regressor::Linear(LinearModel {
                    weights,
                    intercept: *m.intercept(),
                })
            }
        })
    }
}

/// Fits one part of a forest with smartcore.
fn fit_part(
    bootstrap: bool,
    params: &ForestParams,
    seed: u64,
    part: &ForestPart,
    x: &Matrix,
    y: &Vec<f64>,
) -> Result<SmartcoreRegressor, FitError> {
    let rows = y.len();
    let leaf = effective_min_samples_leaf(params, rows);
    // Not raised to two leaves' rows: trying to split a node draws from the tree's random
    // stream even when no split can result, so skipping those nodes would change the trees.
    let split = params.min_samples_split;
    let seed = seed.wrapping_add(part.first as u64);
    let fit_error = |e: smartcore::error::Failed| FitError::Fit(e.to_string());
    Ok(if bootstrap {
        {
            let mut p = RandomForestRegressorParameters::default()
                .with_n_trees(part.trees)
                .with_m(params.max_features)
                .with_min_samples_leaf(leaf)
                .with_min_samples_split(split)
                .with_seed(seed);
            if let Some(depth) = params.max_depth {
                p = p.with_max_depth(depth);
            }
            SmartcoreRegressor::RandomForest(
                RandomForestRegressor::fit(x, y, p).map_err(fit_error)?,
            )
        }
    } else {
        {
            let mut p = ExtraTreesRegressorParameters::default()
                .with_n_trees(part.trees)
                .with_m(params.max_features)
                .with_min_samples_leaf(leaf)
                .with_min_samples_split(split)
                .with_seed(seed);
            if let Some(depth) = params.max_depth {
                p = p.with_max_depth(depth);
            }
            SmartcoreRegressor::ExtraTrees(ExtraTreesRegressor::fit(x, y, p).map_err(fit_error)?)
        }
    })
}

fn fit_linear(
    params: &LinearParams,
    x: &Matrix,
    y: &Vec<f64>,
) -> Result<SmartcoreRegressor, FitError> {
    let p = ElasticNetParameters::default()
        .with_alpha(params.alpha)
        .with_l1_ratio(params.l1_ratio)
        .with_max_iter(params.max_iter)
        .with_normalize(false);
    ElasticNet::fit(x, y, p)
        .map(SmartcoreRegressor::ElasticNet)
        .map_err(|e| FitError::Fit(e.to_string()))
}

/// Fits the parts of a forest on every available core and joins them in tree order. Each
/// worker turns its part into the flat layout at once, so smartcore's larger structures of
/// at most one part per core exist at a time.
fn fit_forest(
    bootstrap: bool,
    params: &ForestParams,
    seed: u64,
    x: &Matrix,
    y: &Vec<f64>,
) -> Result<Forest, FitError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = forest_parts(params.n_trees, bootstrap, cores);
    super::progress::fit_started(params.n_trees);
    let fit_one = |part: &ForestPart| -> Result<Forest, FitError> {
        let fitted = fit_part(bootstrap, params, seed, part, x, y)?;
        super::progress::trees_fitted(part.trees);
        match fitted.to_regressor()? {
            Regressor::Forest(forest) => Ok(forest),
            Regressor::Linear(_) => Err(FitError::Fit("a forest part fitted no trees".into())),
        }
    };
    let workers = cores.min(parts.len());
    let results: Vec<Result<Forest, FitError>> = if workers <= 1 {
        parts.iter().map(fit_one).collect()
    } else {
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<Option<Result<Forest, FitError>>>> =
            Mutex::new((0..parts.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(part) = parts.get(index) else { break };
                    let result = fit_one(part);
                    if let Ok(mut done) = done.lock() {
                        done[index] = Some(result);
                    }
                });
            }
        });
        done.into_inner()
            .map_err(|_| FitError::Fit("a training thread failed".into()))?
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(FitError::Fit("a forest part was not fitted".into()))))
            .collect()
    };
    let forests = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Forest::concat(forests).map_err(|e| FitError::Fit(e.to_string()))
}

impl Regressor {
    /// Fits `spec` on the rows and targets with smartcore, trees in parallel on the available
    /// cores, and returns the model in its inference layout. CPU-bound: call from a blocking
    /// thread in async code.
    pub fn fit(spec: &ModelSpec, rows: &[FeatureRow], targets: &[f64]) -> Result<Self, FitError> {
        Self::fit_matrix(spec, &TrainingMatrix::new(rows, targets.to_vec())?)
    }

    /// [`Regressor::fit`] on rows already in smartcore's layout.
    pub fn fit_matrix(spec: &ModelSpec, data: &TrainingMatrix) -> Result<Self, FitError> {
        let (x, y) = (&data.x, &data.y);
        match *spec {
            ModelSpec::RandomForest { params, seed } | ModelSpec::ExtraTrees { params, seed } => {
                let bootstrap = spec.algorithm() == Algorithm::RandomForest;
                fit_forest(bootstrap, &params, seed, x, y).map(Regressor::Forest)
            }
            ModelSpec::ElasticNet { params } => fit_linear(&params, x, y)?.to_regressor(),
        }
    }

    /// Predicts quality for each row.
    pub fn predict(&self, rows: &[FeatureRow]) -> Result<Vec<f64>, FitError> {
        let mut out = vec![0.0; rows.len()];
        self.predict_into(rows, &mut out)?;
        Ok(out)
    }

    /// Predicts quality for each row into `out`, which must have one slot per row.
    pub fn predict_into(&self, rows: &[FeatureRow], out: &mut [f64]) -> Result<(), FitError> {
        if rows.len() != out.len() {
            return Err(FitError::Predict(format!(
                "{} rows but room for {} predictions",
                rows.len(),
                out.len()
            )));
        }
        match self {
            Regressor::Forest(forest) => forest.predict_into(rows, out),
            Regressor::Linear(linear) => {
                for (row, slot) in rows.iter().zip(out.iter_mut()) {
                    *slot = linear.predict_row(row);
                }
            }
        }
        if out.iter().any(|p| !p.is_finite()) {
            return Err(FitError::NonFinite);
        }
        Ok(())
    }

    /// Predicts quality for one row, without allocating.
    pub fn predict_row(&self, row: &FeatureRow) -> Result<f64, FitError> {
        let prediction = match self {
            Regressor::Forest(forest) => forest.predict_row(row),
            Regressor::Linear(linear) => linear.predict_row(row),
        };
        if prediction.is_finite() {
            Ok(prediction)
        } else {
            Err(FitError::NonFinite)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_store_fits_the_trees_of_the_row_major_matrix() {
        let data = crate::model::dataset::read_training_data(crate::bundled::WINE_QUALITY_RED_CSV)
            .unwrap();
        let rows = &data.rows[..400];
        let targets = data.targets[..400].to_vec();
        let columns = matrix(rows).unwrap();
        let values: Vec<f64> = rows.iter().flatten().copied().collect();
        let row_major = DenseMatrix::new(rows.len(), FEATURE_COUNT, values, false).unwrap();
        for bootstrap in [false, true] {
            let params = ForestParams {
                n_trees: 5,
                max_features: 5,
                max_depth: None,
                min_samples_leaf: 2,
                min_samples_split: 2,
                max_leaves: Some(DEFAULT_MAX_LEAVES),
            };
            let part = ForestPart { first: 0, trees: 5 };
            let fit = |x: &Matrix| {
                let fitted = fit_part(bootstrap, &params, 42, &part, x, &targets).unwrap();
                fitted.to_regressor().unwrap()
            };
            assert_eq!(fit(&columns), fit(&row_major));
        }
    }

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
