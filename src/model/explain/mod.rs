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
//! of polynomials of degree below 11, computed exactly by a Gauss–Legendre rule of as few
//! points as the tree's longest path allows (see [`Rule`]). Both are sums, over the rule's
//! points, of the leaf's *terms* `v Zc ω_g (1-s_g)^c F(s_g)` with weights that depend only on
//! the feature's state after its last split on the path; so a walk sums the terms of the
//! leaves below each split and credits each split's feature once, with the sum of the leaves
//! below it that are not below a deeper split on the same feature (see [`walk_tree`]). What
//! depends on the path alone (each node's `z`) is worked out once per model. A row costs
//! O(T N M) over T trees of N nodes, with `M <= 6` the rule's points (the cost does not grow
//! with depth); shap's recursive algorithm costs O(T L D^2) for L leaves and depth D.
//!
//! Linear models are explained exactly by `weight_j * (x_j - mean_j)`, the means being the
//! training rows' (on the card), and the base value `intercept + sum_j weight_j mean_j`.
//!
//! Not here: where the covers come from and how they are stored (`artifact`, `training`),
//! the HTTP route (`api::explain`), the export for shap (`explain_export`).

use std::cell::RefCell;
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
/// share of its parent's cover and `z`, laid out as the walk reads them; the expected value)
/// is worked out at the first explanation, so loading a model costs only the covers'
/// decoding.
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
    /// The trees as explanations walk them (see [`WalkNode`]), one after another.
    walk: Vec<WalkNode>,
    /// Per tree: where it starts in `walk` and the quadrature it needs.
    spans: Vec<TreeSpan>,
    /// The deepest tree's levels: the room a walk needs.
    levels: usize,
    /// The forest's expected prediction: the mean over trees of the cover-weighted mean of
    /// their leaves.
    base_value: f64,
}

/// A node as explanations walk it: the trees in pre-order, each split's "true" child right
/// after it, so that a walk reads the nodes in the order they are stored. What the walk
/// needs of the covers (the node's share of its parent's, and the `z` it enters with) sits
/// beside it, worked out once per model rather than per row; 32 bytes, since every row
/// reads every node.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WalkNode {
    /// A split's threshold [key](row_keys); a leaf's value, as bits.
    word: u64,
    /// The node's cover over its parent's (1 for a root; 0 under an empty parent).
    fraction: f64,
    /// For the feature its parent splits on: the product of the fractions of the splits on
    /// it from the root down to the parent (1 when the parent's split is the path's first on
    /// it). It depends on the path only, not on the row explained; times `fraction`, it is
    /// the feature's `z` at this node (see [`WalkNode::z`]).
    z_before: f64,
    /// The split's feature; [`WALK_LEAF`] for a leaf.
    feature: u32,
    /// A split's "false" child (for values above the threshold, or NaN), by index in its
    /// tree.
    false_child: u32,
}

/// The feature a leaf's [`WalkNode`] names.
const WALK_LEAF: u32 = u32::MAX;

impl WalkNode {
    fn is_leaf(&self) -> bool {
        self.feature == WALK_LEAF
    }

    /// The `z` of its parent's feature at this node: the product of the fractions of the
    /// splits on it from the root to this node (as [`lay_out`] works it out).
    #[inline(always)]
    fn z(&self) -> f64 {
        self.z_before * self.fraction
    }
}

/// One tree of [`Derived::walk`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct TreeSpan {
    /// Index of its root.
    start: u32,
    /// Gauss–Legendre points that integrate its longest path exactly: half its most distinct
    /// features on a path, rounded up (0 for a lone leaf, which contributes nothing).
    points: u8,
    /// Its levels (1 for a lone leaf).
    levels: u32,
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
        let (walk, spans) = lay_out(forest, &fractions);
        Ok(Derived {
            base_value: expected / forest.trees() as f64,
            covers,
            walk,
            spans,
            levels: forest.levels(),
        })
    }
}

/// The forest's trees in walk order (see [`WalkNode`]), with each tree's span.
fn lay_out(forest: &Forest, fractions: &[f64]) -> (Vec<WalkNode>, Vec<TreeSpan>) {
    let mut walk = Vec::with_capacity(fractions.len());
    let mut spans = Vec::with_capacity(forest.trees());
    let mut pending: Vec<Pending> = Vec::new();
    for root in forest.root_nodes() {
        let start = walk.len();
        let (mut most, mut levels) = (0, 0);
        pending.push(Pending {
            at: root,
            false_of: None,
            z: [1.0; FEATURE_COUNT],
            z_before: 1.0,
            features: 0,
            level: 1,
        });
        while let Some(next) = pending.pop() {
            levels = levels.max(next.level);
            let here = walk.len();
            if let Some(parent) = next.false_of {
                let split: &mut WalkNode = &mut walk[parent];
                split.false_child = (here - start) as u32;
            }
            let mut node = WalkNode {
                word: 0,
                fraction: fractions[next.at],
                z_before: next.z_before,
                feature: WALK_LEAF,
                false_child: 0,
            };
            match forest.view(next.at) {
                NodeView::Leaf(value) => {
                    most = most.max(next.features.count_ones());
                    node.word = value.to_bits();
                    walk.push(node);
                }
                NodeView::Split {
                    feature,
                    key,
                    true_child,
                    false_child,
                } => {
                    node.word = key;
                    node.feature = feature as u32;
                    walk.push(node);
                    for (child, false_of) in [(false_child, Some(here)), (true_child, None)] {
                        let mut z = next.z;
                        z[feature] *= fractions[child];
                        pending.push(Pending {
                            at: child,
                            false_of,
                            z_before: next.z[feature],
                            z,
                            features: next.features | 1 << feature,
                            level: next.level + 1,
                        });
                    }
                }
            }
        }
        spans.push(TreeSpan {
            start: start as u32,
            points: most.div_ceil(2) as u8,
            levels,
        });
    }
    (walk, spans)
}

/// A node [`lay_out`] has still to place.
struct Pending {
    /// The node, by memory index.
    at: usize,
    /// The split whose "false" child it is, by index in the walk (`None`: a "true" child,
    /// placed right after its parent, or a root).
    false_of: Option<usize>,
    /// Per feature: the product of the fractions of the splits on it down to the node.
    z: [f64; FEATURE_COUNT],
    /// [`WalkNode::z_before`].
    z_before: f64,
    /// The features split on above it (bit per feature).
    features: u16,
    /// Its level (1 for a root).
    level: u32,
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
            Explainer::Forest { covers } => {
                SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
                    Ok(mut scratch) => explain_forest(covers, row, &mut scratch),
                    Err(_) => explain_forest(covers, row, &mut Scratch::new(covers.levels)),
                })
            }
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
/// (see [`Path::leaf`]), so `ceil(n / 2)` points suffice: a tree takes the fewest that serve
/// its longest path, 6 serve every path (at most 11 features).
struct Rule<const M: usize> {
    /// The points `s_g` in (0, 1).
    points: [f64; M],
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
        Rule { points, weighted }
    }

    /// `a(s_g) = z + s_g (1 - z)`: a hot feature's factor at point `g` (`g < M`); exactly 1
    /// for `z = 1`.
    #[inline(always)]
    fn factor(&self, g: usize, z: f64) -> f64 {
        z + self.points[g] * (1.0 - z)
    }
}

static RULE_1: LazyLock<Rule<1>> = LazyLock::new(Rule::new);
static RULE_2: LazyLock<Rule<2>> = LazyLock::new(Rule::new);
static RULE_3: LazyLock<Rule<3>> = LazyLock::new(Rule::new);
static RULE_4: LazyLock<Rule<4>> = LazyLock::new(Rule::new);
static RULE_5: LazyLock<Rule<5>> = LazyLock::new(Rule::new);
static RULE_6: LazyLock<Rule<6>> = LazyLock::new(Rule::new);

/// The most points a rule has: 6 integrate paths of all 11 features.
const MAX_POINTS: usize = FEATURE_COUNT.div_ceil(2);

/// Per quadrature point: a polynomial's values at the rule's points (only the first `M` used).
type Values = [f64; MAX_POINTS];

/// What the path from the root says at a node, for the row being explained. Kept small
/// (64 bytes): it is copied at every step.
#[derive(Clone, Copy)]
struct Path {
    /// At each point `s_g`: the product of `a_j(s_g) = s_g + z_j (1 - s_g)` over the hot
    /// features `j`.
    hot_product: Values,
    /// The product of `z` over the cold features.
    cold_product: f64,
    /// Features split on along the path (bit per feature).
    present: u16,
    /// Those of them whose every split the row satisfied.
    hot: u16,
}

impl Path {
    const ROOT: Path = Path {
        hot_product: [1.0; MAX_POINTS],
        cold_product: 1.0,
        present: 0,
        hot: 0,
    };

    /// The path one split on `feature` further down, into `child`, on the row's side when
    /// `hot`. A feature seen before changes its factor: a ratio of two positive numbers, so
    /// no precision is lost. Whether the row is on the child's side is as good as random, so
    /// every case takes the same steps, chosen by selects rather than branches.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn enter<const M: usize>(
        &self,
        feature: usize,
        child: &WalkNode,
        hot: bool,
        rule: &Rule<M>,
    ) -> Path {
        let bit = 1u16 << feature;
        let was_hot = self.hot & bit != 0;
        let was_cold = self.present & !self.hot & bit != 0;
        let now_hot = hot && !was_cold;
        // The feature's factor in the hot product: a(z) while hot, 1 (a(1)) otherwise.
        let after = if now_hot { child.z() } else { 1.0 };
        let before = if was_hot { child.z_before } else { 1.0 };
        // Its factor in the cold product: its z once cold (the fraction if it was already).
        let cold = if was_cold {
            child.fraction
        } else if now_hot {
            1.0
        } else {
            child.z()
        };
        let mut hot_product = self.hot_product;
        if was_hot {
            for g in 0..M {
                hot_product[g] *= rule.factor(g, after) / rule.factor(g, before);
            }
        } else {
            for g in 0..M {
                hot_product[g] *= rule.factor(g, after);
            }
        }
        Path {
            hot_product,
            cold_product: self.cold_product * cold,
            present: self.present | bit,
            hot: self.hot & !bit | if now_hot { bit } else { 0 },
        }
    }

    /// A leaf's terms at each point: `v Zc ω_g (1 - s_g)^c F(s_g)` for `c` cold features and
    /// `F` the hot product. Its share to a feature is a weighted sum of them (see
    /// [`contribute`]).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn leaf<const M: usize>(&self, value: f64, rule: &Rule<M>) -> Values {
        let cold = (self.present & !self.hot).count_ones() as usize;
        let weights = &rule.weighted[cold];
        let scale = value * self.cold_product;
        let mut terms = [0.0; MAX_POINTS];
        for g in 0..M {
            terms[g] = scale * weights[g] * self.hot_product[g];
        }
        terms
    }
}

/// Adds to `phi` the share of `feature` in leaves whose last split on it leads to `child`
/// (reached by `path`); `terms` is the sum of those leaves' [terms](Path::leaf). A hot
/// feature `i` gets `(1 - z_i) Σ_g terms_g / a_i(s_g)` (its own factor taken out of `F`); a
/// cold one `-Σ_g terms_g / (1 - s_g)` (one cold feature fewer: itself). Both are
/// `scale Σ_g terms_g / (p + q s_g)`, chosen by selects (see [`Path::enter`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn contribute<const M: usize>(
    feature: usize,
    terms: &Values,
    child: &WalkNode,
    path: &Path,
    rule: &Rule<M>,
    phi: &mut [f64; FEATURE_COUNT],
) {
    let hot = path.hot & 1 << feature != 0;
    let (p, q, scale) = if hot {
        (child.z(), 1.0 - child.z(), 1.0 - child.z())
    } else {
        (1.0, -1.0, -1.0)
    };
    // Summed in pairs: a shorter chain of dependent additions than one running total.
    let mut pairs = [0.0; MAX_POINTS.div_ceil(2)];
    for g in 0..M {
        pairs[g / 2] += terms[g] / (p + q * rule.points[g]);
    }
    phi[feature] += scale * (pairs[0] + pairs[1] + pairs[2]);
}

/// [`contribute`] for a leaf child, mostly without dividing: its share to `feature` is its
/// terms without the feature's own factor, taken from `parent` (the path to the split) when
/// the feature is hot, and with the weights of one cold feature fewer when it is cold. A
/// feature hot before and after the split changed its factor; that case divides as
/// [`contribute`] does.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn contribute_leaf<const M: usize>(
    feature: usize,
    value: f64,
    terms: &Values,
    child: &WalkNode,
    parent: &Path,
    path: &Path,
    rule: &Rule<M>,
    phi: &mut [f64; FEATURE_COUNT],
) {
    let bit = 1u16 << feature;
    if path.hot & parent.hot & bit != 0 {
        return contribute(feature, terms, child, path, rule, phi);
    }
    let hot = path.hot & bit != 0;
    let cold = (path.present & !path.hot).count_ones() as usize;
    // A cold feature is one of the `cold`, so the row below is not negative.
    let (product, row, scale) = if hot {
        (&parent.hot_product, cold, 1.0 - child.z())
    } else {
        (&path.hot_product, cold - 1, -1.0)
    };
    let weights = &rule.weighted[row];
    let mut pairs = [0.0; MAX_POINTS.div_ceil(2)];
    for g in 0..M {
        pairs[g / 2] += weights[g] * product[g];
    }
    phi[feature] += scale * value * path.cold_product * (pairs[0] + pairs[1] + pairs[2]);
}

/// A split on the walk's stack (at most 128 bytes, so that it is moved inline).
#[derive(Clone, Copy)]
struct Frame {
    /// The path to the split.
    path: Path,
    /// The sum of the terms of the leaves below the children done.
    terms: Values,
    /// The split, by index in its tree.
    at: u32,
    /// Children already entered: 0, 1 (the "true" one) or 2.
    entered: u32,
}

/// The walk's stacks, kept from tree to tree and row to row.
struct Scratch {
    frames: Vec<Frame>,
    /// Per frame but the root's: what its split's parent set aside of the sums of the
    /// parent's feature (see [`walk_tree`]).
    set_aside: Vec<Values>,
}

thread_local! {
    /// Each thread's walk stacks: explaining a row allocates nothing once they have grown.
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { frames: Vec::new(), set_aside: Vec::new() })
    };
}

impl Scratch {
    /// Room for walks of `levels` levels (it grows if needed).
    fn new(levels: usize) -> Scratch {
        Scratch {
            frames: Vec::with_capacity(levels),
            set_aside: Vec::with_capacity(levels),
        }
    }
}

#[inline(always)]
fn add<const M: usize>(sum: &mut Values, terms: &Values) {
    for (s, t) in sum.iter_mut().zip(terms).take(M) {
        *s += t;
    }
}

/// Adds one tree's shares to `phi` (not yet divided by the trees' count).
///
/// Every leaf's share to a feature is a weighted sum of the leaf's [terms](Path::leaf), with
/// weights fixed by the feature's state at the leaf; that state is the one after the last
/// split on the feature along the path. So instead of working out each leaf's share to each
/// of its features, the walk sums the terms of the leaves below every split (going up) and
/// credits a feature once per split on it, with the sum of the leaves below that split on
/// no further split on the feature. That sum is the child's sum less what the deeper splits
/// on the feature took: `claimed[j]` gathers, per feature, the sums of the splits on `j`
/// done since the split on `j` above them was entered. A row costs O(N M) per tree of N
/// nodes, with `M <= 6` the tree's [points](TreeSpan::points). This walk keeps its stack on
/// the heap, for trees of any depth; [`Recursion`] takes the same steps faster.
fn walk_tree<const M: usize>(
    nodes: &[WalkNode],
    keys: &[u64; FEATURE_COUNT],
    rule: &Rule<M>,
    scratch: &mut Scratch,
    phi: &mut [f64; FEATURE_COUNT],
) {
    if nodes.first().is_none_or(WalkNode::is_leaf) {
        return;
    }
    let mut claimed = [[0.0; MAX_POINTS]; FEATURE_COUNT];
    let Scratch { frames, set_aside } = scratch;
    frames.clear();
    set_aside.clear();
    frames.push(Frame {
        path: Path::ROOT,
        terms: [0.0; MAX_POINTS],
        at: 0,
        entered: 0,
    });
    while let Some(top) = frames.last_mut() {
        if top.entered == 2 {
            // The split is done: credit its parent's feature with what is left of its sum.
            let at = top.at as usize;
            let (terms, path) = (top.terms, top.path);
            frames.pop();
            let (Some(parent), Some(aside)) = (frames.last_mut(), set_aside.pop()) else {
                break;
            };
            let feature = nodes[parent.at as usize].feature as usize;
            let mut unclaimed = terms;
            for g in 0..M {
                unclaimed[g] -= claimed[feature][g];
                claimed[feature][g] = aside[g] + terms[g];
            }
            contribute(feature, &unclaimed, &nodes[at], &path, rule, phi);
            add::<M>(&mut parent.terms, &terms);
            continue;
        }
        let node = &nodes[top.at as usize];
        let feature = node.feature as usize;
        let goes_true = keys[feature] <= node.word;
        let (child, hot) = if top.entered == 0 {
            (top.at + 1, goes_true)
        } else {
            (node.false_child, !goes_true)
        };
        top.entered += 1;
        let next = &nodes[child as usize];
        let path = top.path.enter(feature, next, hot, rule);
        if next.is_leaf() {
            let value = f64::from_bits(next.word);
            let terms = path.leaf(value, rule);
            contribute_leaf(feature, value, &terms, next, &top.path, &path, rule, phi);
            add::<M>(&mut claimed[feature], &terms);
            add::<M>(&mut top.terms, &terms);
        } else {
            set_aside.push(std::mem::replace(&mut claimed[feature], [0.0; MAX_POINTS]));
            frames.push(Frame {
                path,
                terms: [0.0; MAX_POINTS],
                at: child,
                entered: 0,
            });
        }
    }
}

/// Trees of at most this many levels are walked by recursion (see [`Recursion`]); deeper
/// ones, which a model may hold (depth can be unlimited), by [`walk_tree`] and its stack on
/// the heap, so that no tree can exhaust a thread's stack.
const RECURSION_LEVELS: usize = 64;

/// One tree's walk by recursion: the same sums and credits as [`walk_tree`], with a split's
/// two children in straight-line code and the path's state kept on the thread's stack.
struct Recursion<'a, const M: usize> {
    nodes: &'a [WalkNode],
    keys: &'a [u64; FEATURE_COUNT],
    rule: &'a Rule<M>,
    /// Per feature: the sums of the splits on it done since the split on it above them was
    /// entered (see [`walk_tree`]).
    claimed: [Values; FEATURE_COUNT],
    phi: &'a mut [f64; FEATURE_COUNT],
}

impl<const M: usize> Recursion<'_, M> {
    /// The sum of the terms of the leaves below split `at`, reached by `path`.
    fn split(&mut self, at: usize, path: &Path) -> Values {
        let node = &self.nodes[at];
        let feature = node.feature as usize;
        let goes_true = self.keys[feature] <= node.word;
        let mut terms = self.child(feature, at + 1, goes_true, path);
        let other = self.child(feature, node.false_child as usize, !goes_true, path);
        add::<M>(&mut terms, &other);
        terms
    }

    /// The sum of the terms of the leaves below child `at` of a split on `feature`; credits
    /// the feature with those of them below no deeper split on it.
    #[inline(always)]
    fn child(&mut self, feature: usize, at: usize, hot: bool, parent: &Path) -> Values {
        let child = &self.nodes[at];
        let path = parent.enter(feature, child, hot, self.rule);
        if child.is_leaf() {
            let value = f64::from_bits(child.word);
            let terms = path.leaf(value, self.rule);
            contribute_leaf(
                feature, value, &terms, child, parent, &path, self.rule, self.phi,
            );
            add::<M>(&mut self.claimed[feature], &terms);
            return terms;
        }
        let aside = std::mem::replace(&mut self.claimed[feature], [0.0; MAX_POINTS]);
        let terms = self.split(at, &path);
        let mut unclaimed = terms;
        for g in 0..M {
            unclaimed[g] -= self.claimed[feature][g];
            self.claimed[feature][g] = aside[g] + terms[g];
        }
        contribute(feature, &unclaimed, child, &path, self.rule, self.phi);
        terms
    }
}

/// Adds one tree's shares to `phi`, by [`Recursion`] when it has at most `recursion_levels`
/// levels.
fn walk<const M: usize>(
    nodes: &[WalkNode],
    span: &TreeSpan,
    recursion_levels: usize,
    keys: &[u64; FEATURE_COUNT],
    rule: &Rule<M>,
    scratch: &mut Scratch,
    phi: &mut [f64; FEATURE_COUNT],
) {
    if span.levels as usize > recursion_levels {
        walk_tree(nodes, keys, rule, scratch, phi);
    } else if nodes.first().is_some_and(|root| !root.is_leaf()) {
        let mut recursion = Recursion {
            nodes,
            keys,
            rule,
            claimed: [[0.0; MAX_POINTS]; FEATURE_COUNT],
            phi,
        };
        recursion.split(0, &Path::ROOT);
    }
}

fn explain_forest(covers: &Derived, row: &FeatureRow, scratch: &mut Scratch) -> Explanation {
    explain_walking(covers, row, scratch, RECURSION_LEVELS)
}

/// [`explain_forest`], with trees of more than `recursion_levels` levels walked by
/// [`walk_tree`] (a parameter so that tests take both walks).
fn explain_walking(
    covers: &Derived,
    row: &FeatureRow,
    scratch: &mut Scratch,
    recursion_levels: usize,
) -> Explanation {
    let keys = row_keys(row);
    let mut phi = [0.0; FEATURE_COUNT];
    for (t, span) in covers.spans.iter().enumerate() {
        let start = span.start as usize;
        let end = covers
            .spans
            .get(t + 1)
            .map_or(covers.walk.len(), |next| next.start as usize);
        let nodes = &covers.walk[start..end];
        match span.points {
            0 => {}
            1 => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_1,
                scratch,
                &mut phi,
            ),
            2 => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_2,
                scratch,
                &mut phi,
            ),
            3 => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_3,
                scratch,
                &mut phi,
            ),
            4 => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_4,
                scratch,
                &mut phi,
            ),
            5 => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_5,
                scratch,
                &mut phi,
            ),
            _ => walk(
                nodes,
                span,
                recursion_levels,
                &keys,
                &RULE_6,
                scratch,
                &mut phi,
            ),
        }
    }
    let trees = covers.spans.len().max(1) as f64;
    for contribution in &mut phi {
        *contribution /= trees;
    }
    Explanation {
        method: TREE_METHOD,
        base_value: covers.base_value,
        contributions: phi,
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
