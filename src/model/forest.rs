//! The compact inference layout of a tree ensemble: every tree of the forest in one flat
//! vector of 16-byte nodes, walked without allocation.
//!
//! smartcore trains the trees; this module only reads them. A fitted smartcore forest is
//! turned into this layout once, right after fitting (or when an artifact of the first format
//! is migrated), and the artifact stores the layout itself, so loading a model is a plain
//! decode and a bounds check, and serving never touches smartcore's structures.
//!
//! Layout. The nodes of each tree are stored in pre-order: the "true" child (`x <= threshold`)
//! of an internal node is the next node, the "false" child is at the stored index. A node
//! holds its threshold, or for a leaf its prediction, as an `f64`: a threshold rounded to
//! `f32` would send inputs that lie within a rounding step of it down the other branch, and an
//! `f32` leaf value would not make the node smaller (the node stays 16 bytes, aligned). With
//! `f64` throughout, every tree ends on the same leaf as in smartcore (same comparisons); the
//! prediction differs from smartcore's at most in its last bits, because the leaf values are
//! added in another order (see [`Forest::predict_row`]).
//!
//! Walk. In memory a leaf reads the feature slot [`NAN_SLOT`] of the row, which always holds
//! NaN, and its "false" child is itself: a NaN compares false, so one more step of the walk
//! stays on the leaf. Every step is then the same branch-free load, compare and select,
//! whether the node is a leaf or not. A walk is a chain of dependent loads, and the chain,
//! not arithmetic, is what a prediction costs; so several walks (trees of one row) advance
//! together, and the processor overlaps their independent loads instead of waiting for each
//! in turn. A lane whose walk ends takes the next tree at once; a lane with no tree left waits
//! on a parking leaf of value 0 placed after the last tree (in memory only). The artifact
//! stores leaves with the feature [`STORED_LEAF`] instead; the two forms convert on encode and
//! decode.
//!
//! Not here: fitting (see `algorithm`), the artifact's envelope (see `artifact`).

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::features::{FeatureRow, FEATURE_COUNT};

/// The `feature` of a leaf node in the artifact.
const STORED_LEAF: u32 = u32::MAX;

/// The `feature` of a leaf node in memory: a slot of the walk's row buffer past the model's
/// inputs, which always holds NaN (see the module documentation).
const NAN_SLOT: u32 = FEATURE_COUNT as u32;

/// Slots of the walk's row buffer: the inputs, then NaN. A power of two, so that masking a
/// node's feature with `ROW_SLOTS - 1` keeps every read in bounds without a check.
const ROW_SLOTS: usize = 16;

/// A row as the walk reads it: the features, then NaN up to [`ROW_SLOTS`].
type WalkRow = [f64; ROW_SLOTS];

/// Walks of one row in flight at once: enough independent chains of loads to overlap their
/// latency, few enough that their state (a node index and a sum each) stays in registers.
const LANES: usize = 8;

/// One node of the flat layout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[repr(C)]
struct Node {
    /// The split threshold (a row goes to the next node when its value is `<=` this), or the
    /// prediction of a leaf.
    value: f64,
    /// The feature compared at this node; for a leaf [`NAN_SLOT`] in memory and
    /// [`STORED_LEAF`] in the artifact.
    feature: u32,
    /// Index (in the whole forest's node vector) of the child for values above the threshold;
    /// for a leaf its own index in memory and 0 in the artifact.
    right: u32,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.feature == NAN_SLOT
    }
}

/// A tree ensemble in the flat layout. The prediction is the mean of the trees' leaf values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredForest", into = "StoredForest")]
pub struct Forest {
    /// Index of each tree's root in `nodes`; tree `t` spans up to the next root.
    roots: Vec<u32>,
    /// The trees' nodes, then the [parking leaf](Forest::parking).
    nodes: Vec<Node>,
}

/// A forest as the artifact stores it: leaves marked by [`STORED_LEAF`], so that the stored
/// form does not depend on how the walk finds its way out of a leaf.
#[derive(Serialize, Deserialize)]
struct StoredForest {
    roots: Vec<u32>,
    nodes: Vec<Node>,
}

#[derive(Debug, Error, PartialEq)]
pub enum ForestError {
    #[error("the forest has no trees")]
    Empty,
    #[error("the forest has more than {} nodes", u32::MAX)]
    TooLarge,
    #[error("tree {tree}: {problem}")]
    BadTree { tree: usize, problem: String },
    #[error("cannot read the fitted trees: {0}")]
    Unreadable(String),
}

impl fmt::Debug for Forest {
    /// A summary: the node vector can hold a million entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forest")
            .field("trees", &self.roots.len())
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl TryFrom<StoredForest> for Forest {
    type Error = ForestError;

    /// Marks every leaf for the walk, then checks the result: bytes read from a store can
    /// hold anything.
    fn try_from(stored: StoredForest) -> Result<Forest, ForestError> {
        let StoredForest { roots, mut nodes } = stored;
        for (at, node) in nodes.iter_mut().enumerate() {
            if node.feature == STORED_LEAF {
                node.feature = NAN_SLOT;
                node.right = u32::try_from(at).map_err(|_| ForestError::TooLarge)?;
            } else if node.feature >= NAN_SLOT {
                // Not a feature and not a leaf: make sure `validate` refuses it.
                node.feature = u32::MAX - 1;
            }
        }
        Forest::finish(roots, nodes)
    }
}

impl From<Forest> for StoredForest {
    fn from(forest: Forest) -> StoredForest {
        let Forest { roots, mut nodes } = forest;
        nodes.pop();
        for node in nodes.iter_mut().filter(|node| node.is_leaf()) {
            node.feature = STORED_LEAF;
            node.right = 0;
        }
        StoredForest { roots, nodes }
    }
}

impl Forest {
    /// Completes a forest from its trees' nodes: appends the parking leaf, then checks the
    /// whole.
    fn finish(roots: Vec<u32>, mut nodes: Vec<Node>) -> Result<Forest, ForestError> {
        let parking = u32::try_from(nodes.len()).map_err(|_| ForestError::TooLarge)?;
        nodes.push(Node {
            value: 0.0,
            feature: NAN_SLOT,
            right: parking,
        });
        let forest = Forest { roots, nodes };
        forest.validate()?;
        Ok(forest)
    }

    /// The leaf a walk lane stays on once no tree is left for it: not part of any tree, and
    /// its value is 0, so that the steps it takes add nothing.
    fn parking(&self) -> usize {
        self.nodes.len() - 1
    }

    /// The nodes of the trees (without the parking leaf).
    fn tree_nodes(&self) -> &[Node] {
        &self.nodes[..self.parking()]
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of nodes of all trees (internal nodes and leaves).
    pub fn nodes(&self) -> usize {
        self.tree_nodes().len()
    }

    /// Number of leaves of all trees.
    pub fn leaves(&self) -> usize {
        self.tree_nodes().iter().filter(|n| n.is_leaf()).count()
    }

    /// Mean number of nodes a row visits per tree, leaf included (the cost of a prediction).
    pub fn mean_path(&self, rows: &[FeatureRow]) -> f64 {
        let mut visits = 0usize;
        for row in rows {
            let row = walk_row(row);
            for &root in &self.roots {
                let mut at = root as usize;
                visits += 1;
                while !self.nodes[at].is_leaf() {
                    at = step(at, &self.nodes[at], &row);
                    visits += 1;
                }
            }
        }
        visits as f64 / (rows.len().max(1) * self.roots.len()) as f64
    }

    /// Bytes the nodes and roots occupy in memory.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.roots.len() * 4
    }

    /// The prediction for one row, without allocation.
    pub fn predict_row(&self, row: &FeatureRow) -> f64 {
        self.tree_sum(&walk_row(row)) / self.roots.len() as f64
    }

    /// The sum of the trees' leaf values for one row.
    ///
    /// [`LANES`] walks are in flight at once, each on its own tree, each adding the leaf
    /// values it reaches to its own sum. A walk that reaches its leaf takes the next tree in
    /// the same step, so that no lane idles while the others finish deeper trees. Every step
    /// is chosen without a branch: a walk that has not ended adds 0, and a lane left without
    /// a tree stays on the parking leaf, whose value is 0. The lanes' sums are added at the
    /// end, so the order of the additions differs from tree order: the result can differ
    /// from a tree-order sum in its last bits, never by a leaf.
    #[inline]
    fn tree_sum(&self, row: &WalkRow) -> f64 {
        let trees = self.roots.len();
        let parking = self.parking();
        let root_of = |tree: usize| self.roots.get(tree).map_or(parking, |&root| root as usize);
        let mut at: [usize; LANES] = std::array::from_fn(root_of);
        let mut sums = [0.0; LANES];
        let mut next = LANES;
        let mut ended_walks = 0;
        while ended_walks < trees {
            for (at, sum) in at.iter_mut().zip(sums.iter_mut()) {
                let here = *at;
                let node = &self.nodes[here];
                let step = step(here, node, row);
                let ended = step == here;
                *sum += if ended { node.value } else { 0.0 };
                ended_walks += usize::from(ended & (here != parking));
                *at = if ended { root_of(next) } else { step };
                next += usize::from(ended);
            }
        }
        sums.iter().sum()
    }

    /// Predictions for `rows` into `out` (same length), row by row: each row keeps several
    /// walks in flight (see [`tree_sum`]), and a forest of the default size stays in the
    /// processor's cache across rows. (Walking tree by tree over the rows measured slower: the
    /// row-major walk overlaps more loads.)
    ///
    /// [`tree_sum`]: Forest::tree_sum
    pub fn predict_into(&self, rows: &[FeatureRow], out: &mut [f64]) {
        for (row, prediction) in rows.iter().zip(out.iter_mut()) {
            *prediction = self.predict_row(row);
        }
    }

    /// Checks what the walk relies on, so that a forest read from bytes can neither panic
    /// nor loop: roots in order, every internal node's children inside its tree and after
    /// it, every feature one of the model's inputs, every leaf its own "false" child with a
    /// finite value, and the parking leaf last.
    pub fn validate(&self) -> Result<(), ForestError> {
        if self.roots.is_empty() {
            return Err(ForestError::Empty);
        }
        if u32::try_from(self.nodes.len()).is_err() {
            return Err(ForestError::TooLarge);
        }
        let parking = self.nodes.len().checked_sub(1);
        let parked = |node: &Node| node.is_leaf() && node.value == 0.0;
        match parking.map(|at| (at, &self.nodes[at])) {
            Some((at, node)) if parked(node) && node.right as usize == at => {}
            _ => {
                return Err(ForestError::BadTree {
                    tree: self.roots.len(),
                    problem: "the parking leaf is missing".into(),
                })
            }
        }
        let nodes = self.tree_nodes();
        for (tree, &root) in self.roots.iter().enumerate() {
            let start = root as usize;
            let end = self
                .roots
                .get(tree + 1)
                .map_or(nodes.len(), |&next| next as usize);
            let bad = |problem: String| Err(ForestError::BadTree { tree, problem });
            if (tree == 0 && start != 0) || start >= end || end > nodes.len() {
                return bad(format!("nodes {start}..{end} are not a valid range"));
            }
            for (at, node) in nodes[start..end]
                .iter()
                .enumerate()
                .map(|(i, n)| (start + i, n))
            {
                let right = node.right as usize;
                if node.is_leaf() {
                    if !node.value.is_finite() {
                        return bad(format!("leaf {at} has the value {}", node.value));
                    }
                    if right != at {
                        return bad(format!("leaf {at} does not end its walk"));
                    }
                    continue;
                }
                if node.feature as usize >= FEATURE_COUNT {
                    return bad(format!("node {at} splits on feature {}", node.feature));
                }
                if !(at + 1 < right && right < end) {
                    return bad(format!("node {at} has its children outside the tree"));
                }
            }
        }
        Ok(())
    }

    /// Joins forests fitted separately into one, keeping their order.
    pub fn concat(parts: Vec<Forest>) -> Result<Forest, ForestError> {
        let mut roots = Vec::with_capacity(parts.iter().map(|p| p.roots.len()).sum());
        let mut nodes = Vec::with_capacity(parts.iter().map(|p| p.nodes.len()).sum());
        for part in parts {
            let offset = u32::try_from(nodes.len()).map_err(|_| ForestError::TooLarge)?;
            let shift = |index: u32| index.checked_add(offset).ok_or(ForestError::TooLarge);
            for &root in &part.roots {
                roots.push(shift(root)?);
            }
            for node in part.tree_nodes() {
                nodes.push(Node {
                    right: shift(node.right)?,
                    ..*node
                });
            }
        }
        Forest::finish(roots, nodes)
    }

    /// Reads a fitted smartcore forest regressor (random forest or extra trees) from its serde
    /// serialization. smartcore keeps its trees private; their serialized form is the
    /// readable one. The mirror types below follow smartcore 0.7's field order exactly (the
    /// encoding is positional), and the tests compare every prediction with smartcore's.
    pub fn from_smartcore<M: Serialize>(model: &M) -> Result<Forest, ForestError> {
        let unreadable = |e: postcard::Error| ForestError::Unreadable(e.to_string());
        let bytes = postcard::to_allocvec(model).map_err(unreadable)?;
        let mirror: SmartcoreForestRegressor = postcard::from_bytes(&bytes).map_err(unreadable)?;
        drop(bytes);
        let trees = mirror
            .forest_regressor
            .and_then(|f| f.trees)
            .ok_or(ForestError::Empty)?;
        let mut forest = Forest {
            roots: Vec::with_capacity(trees.len()),
            nodes: Vec::with_capacity(trees.iter().map(|t| t.nodes.len()).sum::<usize>() + 1),
        };
        for (index, tree) in trees.iter().enumerate() {
            forest.push_tree(index, &tree.nodes)?;
        }
        Forest::finish(forest.roots, forest.nodes)
    }

    /// Appends one smartcore tree in pre-order.
    fn push_tree(&mut self, tree: usize, source: &[SmartcoreNode]) -> Result<(), ForestError> {
        let start = self.nodes.len();
        self.roots
            .push(u32::try_from(start).map_err(|_| ForestError::TooLarge)?);
        let bad = |problem: &str| ForestError::BadTree {
            tree,
            problem: problem.to_string(),
        };
        // (smartcore node, index of the parent whose `right` must point at it)
        let mut pending: Vec<(usize, Option<usize>)> = vec![(0, None)];
        while let Some((id, parent)) = pending.pop() {
            let here = self.nodes.len();
            if here - start >= source.len() {
                return Err(bad("a node is reachable twice"));
            }
            let here_u32 = u32::try_from(here).map_err(|_| ForestError::TooLarge)?;
            if let Some(parent) = parent {
                self.nodes[parent].right = here_u32;
            }
            let node = source
                .get(id)
                .ok_or_else(|| bad("a child index is out of range"))?;
            match (node.true_child, node.false_child) {
                (Some(true_child), Some(false_child)) => {
                    let feature = u32::try_from(node.split_feature)
                        .ok()
                        .filter(|&f| (f as usize) < FEATURE_COUNT)
                        .ok_or_else(|| bad("a split reads a feature the model does not have"))?;
                    self.nodes.push(Node {
                        // smartcore compares with NaN (always false) when a split has no value
                        value: node.split_value.unwrap_or(f64::NAN),
                        feature,
                        right: 0,
                    });
                    pending.push((false_child, Some(here)));
                    pending.push((true_child, None));
                }
                _ => self.nodes.push(Node {
                    value: node.output,
                    feature: NAN_SLOT,
                    right: here_u32,
                }),
            }
        }
        Ok(())
    }
}

/// One step of a walk from the node `node` at index `at`, chosen without a branch: which way
/// a row goes is as good as random, and a mispredicted branch costs more than the node's load.
#[inline(always)]
fn step(at: usize, node: &Node, row: &WalkRow) -> usize {
    let x = row[node.feature as usize & (ROW_SLOTS - 1)];
    let left = ((x <= node.value) as usize).wrapping_neg();
    ((at + 1) & left) | (node.right as usize & !left)
}

/// A row in the walk's buffer: its features, then NaN.
#[inline(always)]
fn walk_row(row: &FeatureRow) -> WalkRow {
    let mut slots = [f64::NAN; ROW_SLOTS];
    slots[..FEATURE_COUNT].copy_from_slice(row);
    slots
}

// Mirrors of smartcore 0.7's serialized forest regressor, field for field.

#[derive(Deserialize)]
struct SmartcoreForestRegressor {
    forest_regressor: Option<SmartcoreForest>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SmartcoreForest {
    trees: Option<Vec<SmartcoreTree>>,
    num_features: Option<usize>,
    samples: Option<Vec<Vec<bool>>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SmartcoreTree {
    nodes: Vec<SmartcoreNode>,
    parameters: Option<SmartcoreTreeParameters>,
    depth: u16,
    root_mass: f64,
    phantom_tx: PhantomData<()>,
    phantom_ty: PhantomData<()>,
    phantom_x: PhantomData<()>,
    phantom_y: PhantomData<()>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SmartcoreTreeParameters {
    max_depth: Option<u16>,
    min_samples_leaf: usize,
    min_samples_split: usize,
    seed: Option<u64>,
    splitter: SmartcoreSplitter,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum SmartcoreSplitter {
    Random,
    Best,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SmartcoreNode {
    output: f64,
    split_feature: usize,
    split_value: Option<f64>,
    split_score: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(value: f64) -> Node {
        Node {
            value,
            feature: STORED_LEAF,
            right: 0,
        }
    }

    fn split(feature: u32, value: f64, right: u32) -> Node {
        Node {
            value,
            feature,
            right,
        }
    }

    /// Two stumps: alcohol (10) <= 10 gives 5 else 6; pH (8) <= 3.3 gives 4 else 7.
    fn stumps() -> Forest {
        Forest::try_from(stored_stumps()).unwrap()
    }

    fn stored_stumps() -> StoredForest {
        StoredForest {
            roots: vec![0, 3],
            nodes: vec![
                split(10, 10.0, 2),
                leaf(5.0),
                leaf(6.0),
                split(8, 3.3, 5),
                leaf(4.0),
                leaf(7.0),
            ],
        }
    }

    #[test]
    fn rows_walk_each_tree_and_average() {
        let forest = stumps();
        forest.validate().unwrap();
        let mut low = [0.0; FEATURE_COUNT];
        low[10] = 9.0;
        low[8] = 3.0;
        let mut high = low;
        high[10] = 12.0;
        high[8] = 3.5;
        assert_eq!(forest.predict_row(&low), 4.5);
        assert_eq!(forest.predict_row(&high), 6.5);
        let mut out = [0.0; 2];
        forest.predict_into(&[low, high], &mut out);
        assert_eq!(out, [4.5, 6.5]);
        assert_eq!((forest.trees(), forest.nodes(), forest.leaves()), (2, 6, 4));
    }

    #[test]
    fn concatenation_shifts_indices() {
        let joined = Forest::concat(vec![stumps(), stumps()]).unwrap();
        assert_eq!(joined.roots, vec![0, 3, 6, 9]);
        assert_eq!(joined.nodes[9].right, 11);
        let row = [3.0; FEATURE_COUNT];
        assert_eq!(joined.predict_row(&row), stumps().predict_row(&row));
    }

    #[test]
    fn malformed_forests_are_refused() {
        let mut backwards = stumps();
        backwards.nodes[3].right = 3;
        assert!(matches!(
            backwards.validate(),
            Err(ForestError::BadTree { tree: 1, .. })
        ));
        let mut escaping = stumps();
        escaping.nodes[0].right = 4;
        assert!(escaping.validate().is_err());
        let mut unknown_feature = stumps();
        unknown_feature.nodes[0].feature = 11;
        assert!(unknown_feature.validate().is_err());
        let mut infinite = stumps();
        infinite.nodes[1].value = f64::INFINITY;
        assert!(infinite.validate().is_err());
        let mut dangling = stumps();
        dangling.nodes.pop();
        assert!(dangling.validate().is_err());
        assert_eq!(
            Forest {
                roots: vec![],
                nodes: vec![]
            }
            .validate(),
            Err(ForestError::Empty)
        );
    }

    #[test]
    fn the_artifact_keeps_the_stored_leaf_marker() {
        let stored = postcard::to_allocvec(&stored_stumps()).unwrap();
        assert_eq!(postcard::to_allocvec(&stumps()).unwrap(), stored);
        let decoded: Forest = postcard::from_bytes(&stored).unwrap();
        assert_eq!(decoded, stumps());
        assert_eq!(decoded.nodes[1].right, 1, "a leaf ends its walk in memory");
    }

    #[test]
    fn a_stored_split_on_the_nan_slot_is_refused() {
        let mut stored = stored_stumps();
        stored.nodes[0].feature = NAN_SLOT;
        assert!(Forest::try_from(stored).is_err());
        let mut stored = stored_stumps();
        stored.nodes[3].feature = u32::MAX - 1;
        assert!(Forest::try_from(stored).is_err());
    }

    #[test]
    fn batches_of_any_length_sum_like_single_rows() {
        // 13 stumps over varied thresholds: more than one lane group and a remainder.
        let parts = (0..13).map(|i| {
            let mut stored = stored_stumps();
            stored.nodes[0].value = 9.0 + 0.25 * f64::from(i);
            stored.nodes[1].value = 0.1 * f64::from(i);
            Forest::try_from(stored).unwrap()
        });
        let forest = Forest::concat(parts.collect()).unwrap();
        let rows: Vec<FeatureRow> = (0..19)
            .map(|i| {
                let mut row = [3.0 + 0.05 * f64::from(i); FEATURE_COUNT];
                row[10] = 8.0 + 0.3 * f64::from(i);
                row
            })
            .collect();
        for len in 0..rows.len() {
            let mut out = vec![0.0; len];
            forest.predict_into(&rows[..len], &mut out);
            for (row, got) in rows.iter().zip(&out) {
                assert_eq!(got.to_bits(), forest.predict_row(row).to_bits());
            }
        }
    }
}
