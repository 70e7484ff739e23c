//! Exact per-prediction explanations: how much each measurement moved one prediction away
//! from the model's average, as Shapley values that add up to the prediction.
//!
//! Tree ensembles are explained with path-dependent TreeSHAP (S. M. Lundberg, G. G. Erion and
//! S.-I. Lee, "Consistent individualized feature attribution for tree ensembles", 2018, and
//! Lundberg et al., "From local explanations to global understanding with explainable AI for
//! trees", Nature Machine Intelligence 2, 2020): the value of a set of known features is the
//! tree's expected output when the unknown ones follow the training rows down the tree, each
//! split dividing them as the training rows divided (the nodes' *covers*). The values are those
//! `shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")` gives for the same
//! trees and covers.
//!
//! How it is computed. For one leaf of value `v`, let `P` be the distinct features split on
//! along its path; for feature `j` of `P`, `z_j` is the product of the cover fractions
//! (child's cover / parent's cover) of the splits on `j`, and the row is *hot* on `j` when it
//! satisfies every split on `j` of the path (else *cold*). The leaf gives feature `i` of `P`
//! (with `n = |P|` and Shapley weights `w(k) = k! (n-k-1)! / n!`)
//!
//! ```text
//! phi_i = v (o_i - z_i) sum_k w(k) [t^k] prod_{j in P, j != i} (z_j + o_j t)
//! ```
//!
//! where `o_j` is 1 when hot and 0 when cold. Since `o_j` is 0 or 1, the product is
//! `Zc * Q(t)` over the hot features (`Zc`: product of the cold features' `z`, `Q`: product
//! of `(z_j + t)` over the hot ones, with the leaf's own feature `i` divided out of either):
//! every cold feature gets the same `-v Zc sum_k w(k) q_k`, and a hot feature `i` gets
//! `v (1 - z_i) Zc sum_k w(k) [t^k] (Q(t) / (z_i + t))`. Those weighted sums are integrals
//! of polynomials of degree below 11, computed exactly by Gauss–Legendre rules of 4 or 6
//! points (see [`leaf`]). A depth-first walk carries each feature's `z` and hot flag down the tree, so a
//! row costs O(T (N + L F)) over T trees of N nodes and L leaves, with `F <= 11` the distinct
//! features of a path (the cost does not grow with depth past them); shap's recursive
//! algorithm costs O(T L D^2) for depth D.
//!
//! Linear models are explained exactly by `weight_j * (x_j - mean_j)`, the means being the
//! training rows' (on the card), and the base value `intercept + sum_j weight_j mean_j`.
//!
//! Not here: where the covers come from and how they are stored (`artifact`, `training`),
//! the HTTP route (`api::explain`), the export for shap (`explain_export`).

use std::sync::{LazyLock, OnceLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::algorithm::{LinearModel, Regressor};
use super::artifact::ModelArtifact;
use super::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};
use super::forest::{row_keys, Forest, NodeView};

/// The method an explanation names, as shap names its mode.
pub const TREE_METHOD: &str = "tree_path_dependent";
/// The method of a linear model's explanation.
pub const LINEAR_METHOD: &str = "linear";

/// Why a model cannot explain.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ExplainError {
    /// The artifact predates covers (format 2 and earlier).
    #[error("this model was trained before explanations; retrain to enable them")]
    TrainedBefore,
    /// The covers do not fit the forest (a corrupt artifact).
    #[error("the model's node covers do not match its trees: {0}")]
    Mismatch(String),
}

/// One row's explanation: `base_value + sum(contributions)` is the prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub method: &'static str,
    pub base_value: f64,
    /// Per feature, in [`FEATURE_NAMES`] order.
    pub contributions: [f64; FEATURE_COUNT],
}

impl Explanation {
    /// `base_value + sum(contributions)`.
    pub fn total(&self) -> f64 {
        self.base_value + self.contributions.iter().sum::<f64>()
    }

    /// The contributions by feature name, in feature order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURE_NAMES.iter().copied().zip(self.contributions)
    }
}

/// What explaining a forest needs beyond its trees: each node's cover (training rows that
/// reached it), kept beside the forest, never inside its walk nodes, so predictions read
/// exactly what they read without it. What explanations derive from the covers (each node's
/// share of its parent's cover, the expected value) is worked out at the first explanation,
/// so loading a model costs only the covers' decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeCovers {
    /// Per node in the artifact's order (see [`Forest::stored_order`]).
    stored: Vec<u32>,
    derived: OnceLock<Result<Derived, ExplainError>>,
}

/// What explanations read, derived from the covers (opaque).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// Per node in the forest's memory order (as [`Forest::view`] reads it).
    covers: Vec<u32>,
    /// Per node: its cover over its parent's (1 for a root; 0 under an empty parent).
    fractions: Vec<f64>,
    /// The forest's expected prediction: the mean over trees of the cover-weighted mean of
    /// their leaves.
    base_value: f64,
}

impl TreeCovers {
    /// Counts the covers of `forest` from the rows it was fitted on.
    pub fn count(forest: &Forest, rows: impl IntoIterator<Item = FeatureRow>) -> TreeCovers {
        let covers = forest.count_covers(rows);
        let stored = forest
            .stored_order()
            .iter()
            .map(|&at| covers[at as usize])
            .collect();
        TreeCovers {
            stored,
            derived: OnceLock::new(),
        }
    }

    /// Covers as the artifact stores them; checked against the forest at the first use.
    pub fn from_stored(stored: Vec<u32>) -> TreeCovers {
        TreeCovers {
            stored,
            derived: OnceLock::new(),
        }
    }

    /// The covers in the artifact's node order (each tree in pre-order, "true" child first).
    pub fn stored(&self) -> &[u32] {
        &self.stored
    }

    /// What explanations read, checked against `forest` (the artifact's) the first time.
    fn derived(&self, forest: &Forest) -> Result<&Derived, ExplainError> {
        self.derived
            .get_or_init(|| Derived::of(forest, &self.stored))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A node's cover, by memory index.
    pub(crate) fn cover(&self, forest: &Forest, at: usize) -> u32 {
        self.derived(forest)
            .ok()
            .and_then(|d| d.covers.get(at).copied())
            .unwrap_or(0)
    }

    /// The expected prediction over the training rows: every explanation's base value.
    pub fn base_value(&self, forest: &Forest) -> Result<f64, ExplainError> {
        Ok(self.derived(forest)?.base_value)
    }
}

impl Derived {
    /// Puts the stored covers in memory order, checks them, and derives the fractions and
    /// the expected value.
    fn of(forest: &Forest, stored: &[u32]) -> Result<Derived, ExplainError> {
        if stored.len() != forest.nodes() {
            return Err(ExplainError::Mismatch(format!(
                "{} covers for {} nodes",
                stored.len(),
                forest.nodes()
            )));
        }
        let mut covers = vec![0; stored.len()];
        for (&at, &cover) in forest.stored_order().iter().zip(stored) {
            covers[at as usize] = cover;
        }
        let mut fractions = vec![1.0; covers.len()];
        let mut expected = 0.0;
        let mut pending = Vec::new();
        for root in forest.root_nodes() {
            if covers[root] == 0 {
                return Err(ExplainError::Mismatch(format!(
                    "the tree at {root} has no rows"
                )));
            }
            let mut tree = 0.0;
            let root_cover = f64::from(covers[root]);
            pending.push(root);
            while let Some(at) = pending.pop() {
                match forest.view(at) {
                    NodeView::Leaf(value) => tree += f64::from(covers[at]) / root_cover * value,
                    NodeView::Split {
                        true_child,
                        false_child,
                        ..
                    } => {
                        let parent = covers[at];
                        let sum = u64::from(covers[true_child]) + u64::from(covers[false_child]);
                        if sum != u64::from(parent) {
                            return Err(ExplainError::Mismatch(format!(
                                "node {at} covers {parent} rows but its children {sum}"
                            )));
                        }
                        for child in [true_child, false_child] {
                            fractions[child] = if parent > 0 {
                                f64::from(covers[child]) / f64::from(parent)
                            } else {
                                0.0
                            };
                            pending.push(child);
                        }
                    }
                }
            }
            expected += tree;
        }
        Ok(Derived {
            base_value: expected / forest.trees() as f64,
            covers,
            fractions,
        })
    }
}

/// Explains `rows` of `artifact`'s model, one explanation per row.
pub fn explain_rows(
    artifact: &ModelArtifact,
    rows: &[FeatureRow],
) -> Result<Vec<Explanation>, ExplainError> {
    let explainer = Explainer::of(artifact)?;
    Ok(rows.iter().map(|row| explainer.explain(row)).collect())
}

/// A model ready to explain rows.
pub enum Explainer<'m> {
    Forest {
        forest: &'m Forest,
        covers: &'m Derived,
    },
    Linear {
        model: &'m LinearModel,
        means: [f64; FEATURE_COUNT],
    },
}

impl<'m> Explainer<'m> {
    /// The explainer of `artifact`'s model, or why it has none.
    pub fn of(artifact: &'m ModelArtifact) -> Result<Explainer<'m>, ExplainError> {
        match (&artifact.regressor, &artifact.covers) {
            (Regressor::Forest(forest), Some(covers)) => Ok(Explainer::Forest {
                forest,
                covers: covers.derived(forest)?,
            }),
            (Regressor::Forest(_), None) => Err(ExplainError::TrainedBefore),
            (Regressor::Linear(model), _) => {
                let mut means = [0.0; FEATURE_COUNT];
                for (mean, stats) in means.iter_mut().zip(&artifact.card.feature_stats) {
                    *mean = stats.mean;
                }
                Ok(Explainer::Linear { model, means })
            }
        }
    }

    /// The explanation of one row.
    pub fn explain(&self, row: &FeatureRow) -> Explanation {
        match self {
            Explainer::Forest { forest, covers } => explain_forest(forest, covers, row),
            Explainer::Linear { model, means } => explain_linear(model, means, row),
        }
    }

    /// Every explanation's base value.
    pub fn base_value(&self) -> f64 {
        match self {
            Explainer::Forest { covers, .. } => covers.base_value,
            Explainer::Linear { model, means } => linear_base(model, means),
        }
    }
}

fn linear_base(model: &LinearModel, means: &[f64; FEATURE_COUNT]) -> f64 {
    model.intercept
        + model
            .weights
            .iter()
            .zip(means)
            .map(|(w, m)| w * m)
            .sum::<f64>()
}

fn explain_linear(
    model: &LinearModel,
    means: &[f64; FEATURE_COUNT],
    row: &FeatureRow,
) -> Explanation {
    let mut contributions = [0.0; FEATURE_COUNT];
    for (f, contribution) in contributions.iter_mut().enumerate() {
        *contribution = model.weights[f] * (row[f] - means[f]);
    }
    Explanation {
        method: LINEAR_METHOD,
        base_value: linear_base(model, means),
        contributions,
    }
}

/// A Gauss–Legendre rule of `M` points on [0, 1]: exact for polynomials of degree up to
/// `2M - 1`. A leaf whose path has `n` features integrates polynomials of degree `n - 1`
/// (see [`leaf`]), so `ceil(n / 2)` points suffice: 3 serve paths of up to 6 features, 6
/// every path (at most 11).
struct Rule<const M: usize> {
    /// The points `s_g` in (0, 1).
    points: [f64; M],
    /// `1 - s_g`.
    complements: [f64; M],
    /// `weighted[e][g] = ω_g (1 - s_g)^e`, `ω_g` the point's weight, for `e` up to 11.
    weighted: [[f64; M]; FEATURE_COUNT + 1],
}

impl<const M: usize> Rule<M> {
    /// Paths of up to this many features are integrated exactly.
    #[cfg(test)]
    const MAX_FEATURES: usize = 2 * M;

    /// The points and weights by Newton's method on the Legendre polynomial of degree `M`
    /// (converged to the last bit), moved from [-1, 1] to [0, 1].
    fn new() -> Rule<M> {
        let mut points = [0.0; M];
        let mut weights = [0.0; M];
        for i in 0..M {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (M as f64 + 0.5)).cos();
            let mut derivative = 1.0;
            for _ in 0..100 {
                // P_M(x) and P_{M-1}(x) by the three-term recurrence.
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=M {
                    let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                    p0 = p1;
                    p1 = p2;
                }
                derivative = M as f64 * (x * p1 - p0) / (x * x - 1.0);
                let dx = p1 / derivative;
                x -= dx;
                if dx.abs() <= 1e-17 {
                    break;
                }
            }
            points[i] = (1.0 - x) / 2.0;
            weights[i] = 1.0 / ((1.0 - x * x) * derivative * derivative);
        }
        let mut weighted = [[0.0; M]; FEATURE_COUNT + 1];
        for (e, row) in weighted.iter_mut().enumerate() {
            for g in 0..M {
                row[g] = weights[g] * (1.0 - points[g]).powi(e as i32);
            }
        }
        Rule {
            points,
            complements: points.map(|s| 1.0 - s),
            weighted,
        }
    }
}

static RULE_3: LazyLock<Rule<3>> = LazyLock::new(Rule::new);
static RULE_4: LazyLock<Rule<4>> = LazyLock::new(Rule::new);
static RULE_5: LazyLock<Rule<5>> = LazyLock::new(Rule::new);
static RULE_6: LazyLock<Rule<6>> = LazyLock::new(Rule::new);

/// The rules, and room for a leaf's partial products, reused from leaf to leaf.
struct Leaves<'r> {
    rules: (&'r Rule<3>, &'r Rule<4>, &'r Rule<5>, &'r Rule<6>),
    /// Per hot feature k: the product of the factors of the hot features before it.
    prefix: [[f64; 6]; FEATURE_COUNT + 1],
    /// The hot features, in bit order.
    features: [usize; FEATURE_COUNT],
}

impl Leaves<'_> {
    /// Adds a leaf's share to `phi` with the smallest rule that is exact for its path.
    #[inline(always)]
    fn add(&mut self, value: f64, state: &PathState, phi: &mut [f64; FEATURE_COUNT]) {
        match state.present.count_ones() {
            0 => {}
            1..=6 => leaf(
                value,
                state,
                self.rules.0,
                &mut self.prefix,
                &mut self.features,
                phi,
            ),
            7..=8 => leaf(
                value,
                state,
                self.rules.1,
                &mut self.prefix,
                &mut self.features,
                phi,
            ),
            9..=10 => leaf(
                value,
                state,
                self.rules.2,
                &mut self.prefix,
                &mut self.features,
                phi,
            ),
            _ => leaf(
                value,
                state,
                self.rules.3,
                &mut self.prefix,
                &mut self.features,
                phi,
            ),
        }
    }
}

/// The walk's state at a node: what the path from the root says of each feature.
#[derive(Clone, Copy)]
struct PathState {
    /// Per feature split on along the path: the product of the splits' cover fractions.
    z: [f64; FEATURE_COUNT],
    /// Product of `z` over the cold features.
    cold_product: f64,
    /// Features split on along the path (bit per feature).
    present: u16,
    /// Those of them whose every split the row satisfied.
    hot: u16,
}

/// A step of the depth-first walk.
#[derive(Clone, Copy)]
enum Step {
    /// Enter `node` through a split on `feature` that the row follows when `hot`
    /// (`feature` is [`NO_FEATURE`] for a root).
    Visit { node: u32, feature: u8, hot: bool },
    /// Leave a subtree: put back what entering it changed.
    Undo {
        feature: u8,
        z: f64,
        cold_product: f64,
        present: u16,
        hot: u16,
    },
}

const NO_FEATURE: u8 = u8::MAX;

impl PathState {
    const ROOT: PathState = PathState {
        z: [1.0; FEATURE_COUNT],
        cold_product: 1.0,
        present: 0,
        hot: 0,
    };

    /// What [`PathState::enter`] changes, to be put back.
    fn saved(&self, feature: usize) -> Step {
        Step::Undo {
            feature: feature as u8,
            z: self.z[feature],
            cold_product: self.cold_product,
            present: self.present,
            hot: self.hot,
        }
    }

    fn restore(&mut self, step: Step) {
        if let Step::Undo {
            feature,
            z,
            cold_product,
            present,
            hot,
        } = step
        {
            self.z[feature as usize] = z;
            self.cold_product = cold_product;
            self.present = present;
            self.hot = hot;
        }
    }

    /// Goes down a split on `feature` that keeps `fraction` of the parent's rows, on the row's
    /// side when `hot`.
    #[inline(always)]
    fn enter(&mut self, feature: usize, fraction: f64, hot: bool) {
        let bit = 1u16 << feature;
        if self.present & bit == 0 {
            self.present |= bit;
            self.z[feature] = fraction;
            if hot {
                self.hot |= bit;
            } else {
                self.cold_product *= fraction;
            }
        } else {
            let z = self.z[feature] * fraction;
            self.z[feature] = z;
            if self.hot & bit == 0 {
                self.cold_product *= fraction;
            } else if !hot {
                self.hot &= !bit;
                self.cold_product *= z;
            }
        }
    }
}

fn explain_forest(forest: &Forest, covers: &Derived, row: &FeatureRow) -> Explanation {
    let keys = row_keys(row);
    let mut leaves = Leaves {
        rules: (&*RULE_3, &*RULE_4, &*RULE_5, &*RULE_6),
        prefix: [[1.0; 6]; FEATURE_COUNT + 1],
        features: [0; FEATURE_COUNT],
    };
    let fractions = &covers.fractions;
    let mut phi = [0.0; FEATURE_COUNT];
    let mut state = PathState::ROOT;
    let mut stack: Vec<Step> = Vec::with_capacity(128);
    for root in forest.root_nodes() {
        stack.push(Step::Visit {
            node: root as u32,
            feature: NO_FEATURE,
            hot: true,
        });
        while let Some(step) = stack.pop() {
            let Step::Visit { node, feature, hot } = step else {
                state.restore(step);
                continue;
            };
            let node = node as usize;
            if feature != NO_FEATURE {
                let feature = usize::from(feature);
                stack.push(state.saved(feature));
                state.enter(feature, fractions[node], hot);
            }
            match forest.view(node) {
                NodeView::Leaf(value) => leaves.add(value, &state, &mut phi),
                NodeView::Split {
                    feature,
                    key,
                    true_child,
                    false_child,
                } => {
                    let goes_true = keys[feature] <= key;
                    for (child, hot) in [(false_child, !goes_true), (true_child, goes_true)] {
                        // A leaf child is added at once (the state changed for it and put
                        // back); a split child is visited later.
                        if let NodeView::Leaf(value) = forest.view(child) {
                            let saved = state.saved(feature);
                            state.enter(feature, fractions[child], hot);
                            leaves.add(value, &state, &mut phi);
                            state.restore(saved);
                        } else {
                            stack.push(Step::Visit {
                                node: child as u32,
                                feature: feature as u8,
                                hot,
                            });
                        }
                    }
                }
            }
        }
    }
    let trees = forest.trees() as f64;
    for contribution in &mut phi {
        *contribution /= trees;
    }
    Explanation {
        method: TREE_METHOD,
        base_value: covers.base_value,
        contributions: phi,
    }
}

/// Adds one leaf's share to `phi`.
///
/// With `n` features on the leaf's path, `h` of them hot, the Shapley weights are Beta
/// integrals, `k! (n-k-1)! / n! = ∫ s^k (1-s)^(n-1-k) ds` over [0, 1], so the weighted sums
/// of the module documentation are integrals of polynomials of degree `n - 1`:
///
/// ```text
/// cold share of each cold feature:  -v Zc ∫ (1-s)^(n-1-h) F(s) ds
/// share of a hot feature i:  v Zc (1 - z_i) ∫ (1-s)^(n-h) F_i(s) ds
/// F(s) = prod over hot j of a_j(s),  F_i(s) = the same without i,  a_j(s) = z_j + s (1 - z_j)
/// ```
///
/// which a Gauss–Legendre rule of enough points computes exactly (up to rounding), from
/// positive terms only: no cancellation, whatever the depth. `F_i` is a prefix product times
/// a suffix product, so no division is needed.
/// `prefix` and `features` are room the caller reuses (`prefix[0]` holds ones). The loops
/// over the rule's points index several arrays in step.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn leaf<const M: usize>(
    value: f64,
    state: &PathState,
    rule: &Rule<M>,
    prefix: &mut [[f64; 6]; FEATURE_COUNT + 1],
    features: &mut [usize; FEATURE_COUNT],
    phi: &mut [f64; FEATURE_COUNT],
) {
    let n = state.present.count_ones() as usize;
    // Per hot feature k (in bit order): the product of the factors a_j(s_g) before it.
    let mut h = 0;
    let mut hot = state.hot;
    while hot != 0 {
        let j = hot.trailing_zeros() as usize;
        hot &= hot - 1;
        let z = state.z[j];
        features[h] = j;
        for g in 0..M {
            prefix[h + 1][g] = prefix[h][g] * (rule.points[g] + z * rule.complements[g]);
        }
        h += 1;
    }
    let scale = value * state.cold_product;
    let mut cold = state.present & !state.hot;
    if cold != 0 {
        let weights = &rule.weighted[n - 1 - h];
        let mut integral = 0.0;
        for g in 0..M {
            integral += weights[g] * prefix[h][g];
        }
        let share = -scale * integral;
        while cold != 0 {
            let j = cold.trailing_zeros() as usize;
            cold &= cold - 1;
            phi[j] += share;
        }
    }
    let weights = &rule.weighted[n - h];
    let mut suffix = [1.0; M];
    for k in (0..h).rev() {
        let z = state.z[features[k]];
        let mut integral = 0.0;
        for g in 0..M {
            integral += weights[g] * prefix[k][g] * suffix[g];
            suffix[g] *= rule.points[g] + z * rule.complements[g];
        }
        phi[features[k]] += scale * (1.0 - z) * integral;
    }
}

/// Mean absolute contribution of each feature over `rows`: the model's global importance.
pub fn mean_absolute(explanations: &[Explanation]) -> [f64; FEATURE_COUNT] {
    let mut sums = [0.0; FEATURE_COUNT];
    for explanation in explanations {
        for (sum, c) in sums.iter_mut().zip(explanation.contributions) {
            *sum += c.abs();
        }
    }
    let n = explanations.len().max(1) as f64;
    sums.map(|s| s / n)
}

/// The model's global importance, as the card records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GlobalImportance {
    /// Held-out rows explained (evenly spaced over the holdout, at most 128).
    pub rows: usize,
    /// Per feature, largest first.
    pub features: Vec<FeatureImportance>,
}

/// One feature's global importance, as the card records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureImportance {
    pub feature: String,
    /// Mean |contribution| over the held-out rows, in quality points.
    pub mean_abs_contribution: f64,
}

/// The card's importance list, largest first.
pub fn importance_list(values: &[f64; FEATURE_COUNT]) -> Vec<FeatureImportance> {
    let mut list: Vec<FeatureImportance> = FEATURE_NAMES
        .iter()
        .zip(values)
        .map(|(name, &value)| FeatureImportance {
            feature: name.to_string(),
            mean_abs_contribution: value,
        })
        .collect();
    list.sort_by(|a, b| b.mean_abs_contribution.total_cmp(&a.mean_abs_contribution));
    list
}

#[cfg(test)]
mod tests;
