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
//! `f64` throughout, predictions are bit-identical to smartcore's: same comparisons, and leaf
//! values summed in the same tree order.
//!
//! Not here: fitting (see `algorithm`), the artifact's envelope (see `artifact`).

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::features::{FeatureRow, FEATURE_COUNT};

/// The `feature` of a leaf node. Any value of at least [`FEATURE_COUNT`] would do: a walk
/// reads the feature with `row.get()`, which is `None` for a leaf.
const LEAF: u32 = u32::MAX;

/// Rows walked through a tree together in batch prediction.
const LANES: usize = 8;

/// One node of the flat layout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[repr(C)]
struct Node {
    /// The split threshold (a row goes to the next node when its value is `<=` this), or the
    /// prediction of a leaf.
    value: f64,
    /// The feature compared at this node, or [`LEAF`].
    feature: u32,
    /// Index (in the whole forest's node vector) of the child for values above the threshold.
    right: u32,
}

/// A tree ensemble in the flat layout. The prediction is the mean of the trees' leaf values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    /// Index of each tree's root in `nodes`; tree `t` spans up to the next root.
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

impl Forest {
    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of nodes of all trees (internal nodes and leaves).
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Number of leaves of all trees.
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.feature == LEAF).count()
    }

    /// Mean number of nodes a row visits per tree (the cost of a prediction).
    pub fn mean_path(&self, rows: &[FeatureRow]) -> f64 {
        let mut visits = 0usize;
        for &root in &self.roots {
            for row in rows {
                let mut at = root as usize;
                loop {
                    visits += 1;
                    let node = &self.nodes[at];
                    match row.get(node.feature as usize) {
                        None => break,
                        Some(&x) => {
                            at = if x <= node.value {
                                at + 1
                            } else {
                                node.right as usize
                            }
                        }
                    }
                }
            }
        }
        visits as f64 / (rows.len().max(1) * self.roots.len()) as f64
    }

    /// Bytes the nodes and roots occupy in memory.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.roots.len() * 4
    }

    /// The prediction for one row: no allocation.
    pub fn predict_row(&self, row: &FeatureRow) -> f64 {
        let mut sum = 0.0;
        for &root in &self.roots {
            sum += self.leaf_value(root as usize, row);
        }
        sum / self.roots.len() as f64
    }

    /// Predictions for `rows` into `out` (same length), tree by tree over the rows, so that a
    /// tree's nodes stay in cache while every row walks it. Same sums as [`predict_row`].
    ///
    /// [`predict_row`]: Forest::predict_row
    pub fn predict_into(&self, rows: &[FeatureRow], out: &mut [f64]) {
        out.fill(0.0);
        for &root in &self.roots {
            let root = root as usize;
            let mut row_groups = rows.chunks_exact(LANES);
            let mut sum_groups = out.chunks_exact_mut(LANES);
            for (group, sums) in (&mut row_groups).zip(&mut sum_groups) {
                let leaves = self.leaf_values(root, group);
                for (sum, leaf) in sums.iter_mut().zip(leaves) {
                    *sum += leaf;
                }
            }
            let rest = row_groups.remainder().iter();
            for (row, sum) in rest.zip(sum_groups.into_remainder().iter_mut()) {
                *sum += self.leaf_value(root, row);
            }
        }
        let trees = self.roots.len() as f64;
        out.iter_mut().for_each(|sum| *sum /= trees);
    }

    /// Walks one tree with [`LANES`] rows at once: their walks are independent, so the
    /// processor overlaps their node loads instead of waiting for each in turn.
    #[inline]
    fn leaf_values(&self, root: usize, rows: &[FeatureRow]) -> [f64; LANES] {
        let mut at = [root; LANES];
        loop {
            let mut walking = false;
            for (at, row) in at.iter_mut().zip(rows) {
                let node = &self.nodes[*at];
                if let Some(&x) = row.get(node.feature as usize) {
                    *at = next_node(*at, node, x);
                    walking = true;
                }
            }
            if !walking {
                return at.map(|leaf| self.nodes[leaf].value);
            }
        }
    }

    /// Walks one tree. Terminates on any validated forest: indices only grow inside a tree.
    #[inline]
    fn leaf_value(&self, root: usize, row: &FeatureRow) -> f64 {
        let mut at = root;
        loop {
            let node = &self.nodes[at];
            match row.get(node.feature as usize) {
                None => return node.value,
                Some(&x) => at = next_node(at, node, x),
            }
        }
    }

    /// Checks what the walk relies on, so that a forest read from bytes can neither panic
    /// nor loop: roots in order, every internal node's children inside its tree and after
    /// it, every feature one of the model's inputs, every leaf value finite.
    pub fn validate(&self) -> Result<(), ForestError> {
        if self.roots.is_empty() {
            return Err(ForestError::Empty);
        }
        if u32::try_from(self.nodes.len()).is_err() {
            return Err(ForestError::TooLarge);
        }
        for (tree, &root) in self.roots.iter().enumerate() {
            let start = root as usize;
            let end = self
                .roots
                .get(tree + 1)
                .map_or(self.nodes.len(), |&next| next as usize);
            let bad = |problem: String| Err(ForestError::BadTree { tree, problem });
            if (tree == 0 && start != 0) || start >= end || end > self.nodes.len() {
                return bad(format!("nodes {start}..{end} are not a valid range"));
            }
            for (at, node) in self.nodes[start..end]
                .iter()
                .enumerate()
                .map(|(i, n)| (start + i, n))
            {
                if node.feature == LEAF {
                    if !node.value.is_finite() {
                        return bad(format!("leaf {at} has the value {}", node.value));
                    }
                    continue;
                }
                let right = node.right as usize;
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
            for root in part.roots {
                roots.push(shift(root)?);
            }
            for node in part.nodes {
                let right = if node.feature == LEAF {
                    0
                } else {
                    shift(node.right)?
                };
                nodes.push(Node { right, ..node });
            }
        }
        let forest = Forest { roots, nodes };
        forest.validate()?;
        Ok(forest)
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
            nodes: Vec::with_capacity(trees.iter().map(|t| t.nodes.len()).sum()),
        };
        for (index, tree) in trees.iter().enumerate() {
            forest.push_tree(index, &tree.nodes)?;
        }
        forest.validate()?;
        Ok(forest)
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
                    feature: LEAF,
                    right: 0,
                }),
            }
        }
        Ok(())
    }
}

/// The child a value leads to, chosen without a branch: which way a row goes is as good as
/// random, and a mispredicted branch costs more than the node's load.
#[inline(always)]
fn next_node(at: usize, node: &Node, x: f64) -> usize {
    let left = ((x <= node.value) as usize).wrapping_neg();
    ((at + 1) & left) | (node.right as usize & !left)
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
            feature: LEAF,
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
        Forest {
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
}
