//! The compact inference layout of a tree ensemble: every tree of the forest in one flat
//! vector of 16-byte nodes, walked without allocation and without a branch per node.
//!
//! smartcore trains the trees; this module only reads them. A fitted smartcore forest is
//! turned into this layout once, right after fitting (or when an artifact of the first format
//! is migrated); loading a model is a decode, a check and one pass that lays the nodes out for
//! the walk, and serving never touches smartcore's structures.
//!
//! Two layouts. The artifact stores each tree in pre-order: the "true" child (`x <= threshold`)
//! of an internal node is the next node, the "false" child is at the stored index, a leaf is
//! marked by [`STORED_LEAF`]. In memory the two children of a node are neighbours: the node
//! holds the index of its "false" child, and the "true" child is the one after it, so a step
//! of the walk is an addition (`children + (x <= threshold)`), never a choice between two
//! values. (A choice compiles to a conditional move that the compiler may turn back into a
//! branch, and which way a row goes is as good as random: a mispredicted branch costs more
//! than the node's load.) A node keeps its `f64` threshold exactly, as an order key: an
//! unsigned integer whose order is the numbers' order (see [`order_key`]); the walk turns the
//! row's values into keys once and then compares integers, which the processor does faster
//! than two `f64`, with the same outcome for every pair of numbers. A leaf keeps its prediction
//! as the bits of its `f64`. (A threshold rounded to `f32` would send inputs that lie within a
//! rounding step of it down the other branch, and an `f32` leaf value would not make the node
//! smaller: it stays 16 bytes, aligned.) So every tree ends on the same leaf as in smartcore
//! (same comparisons); the prediction differs from smartcore's at most in its last bits,
//! because the leaf values are added in another order (see [`Forest::predict_row`]).
//!
//! Walk. A leaf reads the feature slot [`NAN_SLOT`] of the row, which always holds the largest
//! key (a NaN's: it compares false), and its "false" child is itself, so one more step stays
//! on the leaf.
//! Every step is then the same load, compare and add, whether the node is a leaf or not, and
//! a walk may take as many steps as the tree is deep without checking where it is. Walks run
//! in lock-step: a single row walks [`ROW_LANES`] trees at once, a batch walks one tree with
//! [`BATCH_LANES`] rows at once, each for as many steps as the deepest of its trees needs. A
//! walk is a chain of dependent loads, and the chain, not arithmetic, is what a prediction
//! costs; walks in lock-step are independent chains that the processor overlaps.
//!
//! Not here: fitting (see `algorithm`), the artifact's envelope (see `artifact`), reading
//! smartcore's trees (see `from_smartcore`).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::features::{FeatureRow, FEATURE_COUNT};

mod from_smartcore;

/// The `feature` of a leaf node in the artifact.
const STORED_LEAF: u32 = u32::MAX;

/// The `feature` of a leaf node in memory: a slot of the walk's row buffer past the model's
/// inputs, which always holds a NaN's key (see the module documentation).
const NAN_SLOT: u32 = FEATURE_COUNT as u32;

/// Slots of the walk's row buffer: the inputs, then NaN's (the walk reads the slot a node
/// names without a check: [`Forest::validate`] accepts no other feature).
const ROW_SLOTS: usize = 16;

/// A row as the walk reads it: the features' [value keys](value_key), then NaN's key up to
/// [`ROW_SLOTS`].
type WalkRow = [u64; ROW_SLOTS];

/// The key of a NaN, the largest: no threshold's key reaches it, so it compares false.
const NAN_KEY: u64 = u64::MAX;

/// Trees one row walks at once: enough independent chains of loads to overlap their latency,
/// few enough that their positions stay in registers. Also the number of partial sums a
/// prediction is added up in (see [`Forest::predict_row`]).
const ROW_LANES: usize = 10;

/// Rows a batch walks through one tree at once. The tree stays in the processor's nearest
/// cache while they do.
const BATCH_LANES: usize = 16;

/// The most rows of a batch's last, partial group that are predicted one by one instead. A
/// group costs the same however many of its lanes hold rows, and a row walked alone costs
/// about 1.25 times a group's cost per lane (measured with the default model), so up to
/// twelve rows are cheaper alone than in a group of sixteen.
const TAIL_ALONE: usize = 12;

/// One node of the artifact's layout (pre-order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct StoredNode {
    /// The split threshold (a row goes to the next node when its value is `<=` this), or the
    /// prediction of a leaf.
    value: f64,
    /// The feature compared at this node; [`STORED_LEAF`] for a leaf.
    feature: u32,
    /// Index (in the whole forest's node vector) of the child for values above the threshold;
    /// 0 for a leaf.
    right: u32,
}

/// A node as [`StoredForest::push_pre_order`] reads it: its value and, for a split, its
/// feature, "true" child and "false" child.
type PreOrderNode = (f64, Option<(u32, usize, usize)>);

/// One node of the walk's layout.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    /// A split's threshold as its [key](threshold_key); a leaf's prediction as the bits of its
    /// `f64`. A leaf reads the NaN slot, and [`NAN_KEY`] is above the bits of every finite
    /// number, so a leaf's comparison is false.
    word: u64,
    /// The feature compared at this node; [`NAN_SLOT`] for a leaf.
    feature: u32,
    /// Index of the child for values above the threshold (or NaN); the child for values at or
    /// below it is the next index. A leaf's own index.
    children: u32,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.feature == NAN_SLOT
    }

    fn leaf(value: f64, at: u32) -> Node {
        Node {
            word: value.to_bits(),
            feature: NAN_SLOT,
            children: at,
        }
    }

    fn split(threshold: f64, feature: u32, children: u32) -> Node {
        Node {
            word: threshold_key(threshold),
            feature,
            children,
        }
    }

    /// A leaf's prediction.
    fn leaf_value(&self) -> f64 {
        f64::from_bits(self.word)
    }

    /// A split's threshold, as stored (a -0 threshold comes back as +0: the same comparisons).
    fn threshold(&self) -> f64 {
        threshold_of_key(self.word)
    }

    /// The threshold of a split, the prediction of a leaf.
    fn value(&self) -> f64 {
        if self.is_leaf() {
            self.leaf_value()
        } else {
            self.threshold()
        }
    }
}

/// The order key of a number that is not NaN: an unsigned integer such that `x <= t` exactly
/// when `order_key(x) <= order_key(t)`. Positive numbers keep their bits with the top bit set
/// (their bits grow with them); negative numbers have all their bits flipped (their bits grow
/// as they fall). -0 is taken as +0 first, since the two are equal as numbers.
fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// A row value's key. NaN, which is never `<=` a threshold, takes [`NAN_KEY`], above every
/// threshold's key.
fn value_key(x: f64) -> u64 {
    if x.is_nan() {
        NAN_KEY
    } else {
        order_key(x)
    }
}

/// A threshold's key. A NaN threshold, which no value is `<=`, takes 0, below every value's
/// key (the smallest, -∞'s, is 2^52 - 1).
fn threshold_key(threshold: f64) -> u64 {
    if threshold.is_nan() {
        0
    } else {
        order_key(threshold)
    }
}

/// The threshold a key stands for (NaN for 0).
fn threshold_of_key(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

/// A tree ensemble in the walk's layout. The prediction is the mean of the trees' leaf values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredForest", into = "StoredForest")]
pub struct Forest {
    /// Index of each tree's root in `nodes`, in the artifact's order.
    roots: Vec<u32>,
    /// The trees' nodes, then the [parking leaf](Forest::parking).
    nodes: Vec<Node>,
    /// Per tree: the steps from its root to its deepest leaf.
    depths: Vec<u32>,
    /// The trees by increasing depth: the order in which walks take them, so that trees
    /// walked in lock-step need about as many steps each.
    walk_order: Vec<u32>,
}

/// A forest as the artifact stores it.
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, Clone, PartialEq))]
struct StoredForest {
    roots: Vec<u32>,
    nodes: Vec<StoredNode>,
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

fn index(at: usize) -> Result<u32, ForestError> {
    u32::try_from(at).map_err(|_| ForestError::TooLarge)
}

impl TryFrom<StoredForest> for Forest {
    type Error = ForestError;

    /// Checks the stored trees (bytes read from a store can hold anything), then lays each
    /// one out for the walk.
    fn try_from(stored: StoredForest) -> Result<Forest, ForestError> {
        if stored.roots.is_empty() {
            return Err(ForestError::Empty);
        }
        index(stored.nodes.len())?;
        let mut nodes = Vec::with_capacity(stored.nodes.len() + 1);
        let mut roots = Vec::with_capacity(stored.roots.len());
        for (tree, range) in stored.tree_ranges().into_iter().enumerate() {
            roots.push(index(nodes.len())?);
            lay_out_tree(&stored.nodes, range, &mut nodes)
                .map_err(|problem| ForestError::BadTree { tree, problem })?;
        }
        drop(stored);
        Forest::finish(roots, nodes)
    }
}

impl From<Forest> for StoredForest {
    /// Writes each tree back in pre-order.
    fn from(forest: Forest) -> StoredForest {
        let mut stored = StoredForest {
            roots: Vec::with_capacity(forest.roots.len()),
            nodes: Vec::with_capacity(forest.nodes.len()),
        };
        for &root in &forest.roots {
            stored.roots.push(stored.nodes.len() as u32);
            let written = stored.push_pre_order(root as usize, forest.nodes.len(), |at| {
                let node = &forest.nodes[at];
                let children = node.children as usize;
                let split = (!node.is_leaf()).then_some((node.feature, children + 1, children));
                Ok((node.value(), split))
            });
            // A validated forest is made of trees: nothing to refuse.
            debug_assert!(written.is_ok());
        }
        stored
    }
}

impl StoredForest {
    /// The node range of each tree, as far as the roots say: `lay_out_tree` checks the rest.
    fn tree_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let ends = self.roots[1..]
            .iter()
            .map(|&root| root as usize)
            .chain([self.nodes.len()]);
        self.roots
            .iter()
            .map(|&root| root as usize)
            .zip(ends)
            .map(|(start, end)| start..end)
            .collect()
    }

    /// Appends one tree in pre-order, read through `node`. Refuses to write more than
    /// `limit` nodes, which only a tree with a node reachable twice (or a cycle) would need.
    fn push_pre_order<F>(&mut self, root: usize, limit: usize, mut node: F) -> Result<(), String>
    where
        F: FnMut(usize) -> Result<PreOrderNode, String>,
    {
        let start = self.nodes.len();
        // (node to write, stored node whose `right` must point at it)
        let mut pending = vec![(root, None)];
        while let Some((at, parent)) = pending.pop() {
            if self.nodes.len() - start >= limit {
                return Err("a node is reachable twice".into());
            }
            let here = u32::try_from(self.nodes.len()).map_err(|_| "too many nodes".to_string())?;
            if let Some(parent) = parent {
                let parent: &mut StoredNode = &mut self.nodes[parent as usize];
                parent.right = here;
            }
            let (value, split) = node(at)?;
            let feature = match split {
                Some((feature, true_child, false_child)) => {
                    pending.push((false_child, Some(here)));
                    pending.push((true_child, None));
                    feature
                }
                None => STORED_LEAF,
            };
            self.nodes.push(StoredNode {
                value,
                feature,
                right: 0,
            });
        }
        Ok(())
    }
}

/// Lays out the stored tree `range` of `stored` for the walk, appending it to `nodes`, and
/// refuses anything that is not one tree in pre-order: each split's subtree a range that its
/// two children's subtrees divide (so no node is reached twice), every node reached, features
/// the model has, finite leaves.
///
/// Each node's children are placed side by side, and the child with the larger subtree is
/// laid out first, so that its own two children come right after the pair, often in the same
/// cache line. A larger subtree is grown from more training rows (leaves hold a minimum of
/// rows), so it is the way most rows go: a walk whose next node is already in the cache line
/// it just read does not wait for memory. (With the "true" child always first instead, the
/// bundled model's single rows took about 9 % longer, and about 25 % longer with 4 MB of other
/// memory read between predictions.)
fn lay_out_tree(
    stored: &[StoredNode],
    range: std::ops::Range<usize>,
    nodes: &mut Vec<Node>,
) -> Result<(), String> {
    if range.is_empty() || range.end > stored.len() {
        return Err(format!(
            "nodes {}..{} are not a valid range",
            range.start, range.end
        ));
    }
    let first = nodes.len();
    nodes.push(Node::leaf(0.0, 0));
    // (stored node, end of its subtree in `stored`, its place in `nodes`)
    let mut pending = vec![(range.start, range.end, first)];
    while let Some((at, end, place)) = pending.pop() {
        let node = &stored[at];
        let place_u32 = u32::try_from(place).map_err(|_| "too many nodes".to_string())?;
        if node.feature == STORED_LEAF {
            if !node.value.is_finite() {
                return Err(format!("leaf {at} has the value {}", node.value));
            }
            nodes[place] = Node::leaf(node.value, place_u32);
            continue;
        }
        if node.feature as usize >= FEATURE_COUNT {
            return Err(format!("node {at} splits on feature {}", node.feature));
        }
        let right = node.right as usize;
        if !(at + 1 < right && right < end) {
            return Err(format!("node {at} has its children outside its subtree"));
        }
        let children = nodes.len();
        nodes.push(Node::leaf(0.0, 0));
        nodes.push(Node::leaf(0.0, 0));
        let children_u32 = u32::try_from(children).map_err(|_| "too many nodes".to_string())?;
        nodes[place] = Node::split(node.value, node.feature, children_u32);
        let true_child = (at + 1, right, children + 1);
        let false_child = (right, end, children);
        // The child laid out next (popped first) is the one with the larger subtree.
        if right - (at + 1) >= end - right {
            pending.extend([false_child, true_child]);
        } else {
            pending.extend([true_child, false_child]);
        }
    }
    if nodes.len() - first != range.len() {
        return Err(format!(
            "{} of its {} nodes are not reachable",
            range.len() - (nodes.len() - first),
            range.len()
        ));
    }
    Ok(())
}

impl Forest {
    /// Completes a forest from its trees' nodes: appends the parking leaf, measures the
    /// trees' depths, then checks the whole.
    fn finish(roots: Vec<u32>, mut nodes: Vec<Node>) -> Result<Forest, ForestError> {
        let parking = index(nodes.len())?;
        nodes.push(Node::leaf(0.0, parking));
        let mut forest = Forest {
            roots,
            nodes,
            depths: Vec::new(),
            walk_order: Vec::new(),
        };
        forest.validate()?;
        forest.depths = forest.measure_depths();
        let mut order: Vec<u32> = (0..forest.roots.len() as u32).collect();
        order.sort_by_key(|&tree| forest.depths[tree as usize]);
        forest.walk_order = order;
        Ok(forest)
    }

    /// Each tree's depth, in one backward pass: children come after their parent.
    fn measure_depths(&self) -> Vec<u32> {
        let mut below = vec![0u32; self.nodes.len()];
        for at in (0..self.parking()).rev() {
            let node = &self.nodes[at];
            if !node.is_leaf() {
                let children = node.children as usize;
                below[at] = 1 + below[children].max(below[children + 1]);
            }
        }
        self.roots
            .iter()
            .map(|&root| below[root as usize])
            .collect()
    }

    /// The leaf a walk lane stays on when it has no tree: not part of any tree, and its value
    /// is 0, so that what it adds changes nothing.
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

    /// Mean number of nodes a row visits per tree, leaf included: the work a walk that stops
    /// at its leaf would do.
    pub fn mean_path(&self, rows: &[FeatureRow]) -> f64 {
        let mut visits = 0usize;
        for row in rows {
            let row = walk_row(row);
            for &root in &self.roots {
                let mut at = root as usize;
                visits += 1;
                while !self.nodes[at].is_leaf() {
                    // SAFETY: a walk from a root of this forest (see `step`).
                    at = unsafe { step(&self.nodes, at, &row) };
                    visits += 1;
                }
            }
        }
        visits as f64 / (rows.len().max(1) * self.roots.len()) as f64
    }

    /// Mean number of nodes a row visits per tree in lock-step walks, leaf included: the work
    /// a prediction does.
    pub fn mean_lock_step(&self) -> f64 {
        let steps: u64 = self.depths.iter().map(|&d| u64::from(d) + 1).sum();
        steps as f64 / self.roots.len() as f64
    }

    /// Levels of the deepest tree (a lone leaf is one level): the most steps a walk takes.
    pub fn levels(&self) -> usize {
        self.depths.iter().max().map_or(0, |&d| d as usize + 1)
    }

    /// Bytes the nodes, roots, depths and walk order occupy in memory.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.roots.len() * 4 * 3
    }

    /// The prediction for one row, without allocation.
    ///
    /// The trees are taken [`ROW_LANES`] at a time in walk order, each group walked in
    /// lock-step for as many steps as its deepest tree needs (a lane left without a tree
    /// waits on the parking leaf). Lane `l` adds the leaves of the trees at positions `l`,
    /// `l + ROW_LANES`, … of the walk order; the lanes' sums are then added in lane order.
    /// [`predict_into`](Forest::predict_into) adds in exactly this order, so a row predicted
    /// alone and in a batch gives the same bits; the order differs from smartcore's tree
    /// order, so the result can differ from smartcore's in its last bits, never by a leaf.
    pub fn predict_row(&self, row: &FeatureRow) -> f64 {
        let row = walk_row(row);
        let parking = self.parking();
        let mut sums = [0.0; ROW_LANES];
        for group in self.walk_order.chunks(ROW_LANES) {
            let mut at = [parking; ROW_LANES];
            for (at, &tree) in at.iter_mut().zip(group) {
                *at = self.roots[tree as usize] as usize;
            }
            // The walk order is by increasing depth: the group's last tree is its deepest.
            let steps = group.last().map_or(0, |&tree| self.depths[tree as usize]);
            for _ in 0..steps {
                for at in at.iter_mut() {
                    // SAFETY: each lane walks from a root of this forest or waits on the
                    // parking leaf, its own "false" child (see `step`).
                    *at = unsafe { step(&self.nodes, *at, &row) };
                }
            }
            for (sum, &at) in sums.iter_mut().zip(&at) {
                *sum += self.nodes[at].leaf_value();
            }
        }
        self.mean(&sums)
    }

    /// The prediction from the lanes' sums, added in lane order.
    #[inline(always)]
    fn mean(&self, sums: &[f64; ROW_LANES]) -> f64 {
        let mut total = 0.0;
        for &sum in sums {
            total += sum;
        }
        total / self.roots.len() as f64
    }

    /// Predictions for `rows` into `out` (same length), [`BATCH_LANES`] rows at a time, tree
    /// by tree: the rows walk one tree in lock-step for as many steps as it is deep, while the
    /// tree stays in the processor's nearest cache. The leaf values are added exactly as
    /// [`predict_row`](Forest::predict_row) adds them, so a short last group (up to
    /// [`TAIL_ALONE`] rows) is predicted row by row with the same bits.
    pub fn predict_into(&self, rows: &[FeatureRow], out: &mut [f64]) {
        for (rows, out) in rows.chunks(BATCH_LANES).zip(out.chunks_mut(BATCH_LANES)) {
            if rows.len() <= TAIL_ALONE {
                for (prediction, row) in out.iter_mut().zip(rows) {
                    *prediction = self.predict_row(row);
                }
                continue;
            }
            // Lanes past the last row walk NaN rows; their sums are dropped.
            let mut walk = [[NAN_KEY; ROW_SLOTS]; BATCH_LANES];
            for (walk, row) in walk.iter_mut().zip(rows) {
                *walk = walk_row(row);
            }
            let mut sums = [[0.0; ROW_LANES]; BATCH_LANES];
            for (position, &tree) in self.walk_order.iter().enumerate() {
                let lane = position % ROW_LANES;
                let mut at = [self.roots[tree as usize] as usize; BATCH_LANES];
                for _ in 0..self.depths[tree as usize] {
                    for (at, row) in at.iter_mut().zip(&walk) {
                        // SAFETY: every lane walks from a root of this forest (see `step`).
                        *at = unsafe { step(&self.nodes, *at, row) };
                    }
                }
                for (sums, &at) in sums.iter_mut().zip(&at) {
                    sums[lane] += self.nodes[at].leaf_value();
                }
            }
            for (prediction, sums) in out.iter_mut().zip(&sums) {
                *prediction = self.mean(sums);
            }
        }
    }

    /// Checks what the walk relies on, so that neither a prediction nor a depth measurement
    /// can panic or loop: roots in order, every internal node's two children inside its tree
    /// and after it, every feature one of the model's inputs, every leaf its own "false" child
    /// with a finite value, and the parking leaf last.
    fn validate(&self) -> Result<(), ForestError> {
        if self.roots.is_empty() {
            return Err(ForestError::Empty);
        }
        index(self.nodes.len())?;
        let parking = self.nodes.len().checked_sub(1);
        let parked = |node: &Node| node.is_leaf() && node.leaf_value() == 0.0;
        match parking.map(|at| (at, &self.nodes[at])) {
            Some((at, node)) if parked(node) && node.children as usize == at => {}
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
                let children = node.children as usize;
                if node.is_leaf() {
                    if !node.leaf_value().is_finite() {
                        return bad(format!("leaf {at} has the value {}", node.leaf_value()));
                    }
                    if children != at {
                        return bad(format!("leaf {at} does not end its walk"));
                    }
                    continue;
                }
                if node.feature as usize >= FEATURE_COUNT {
                    return bad(format!("node {at} splits on feature {}", node.feature));
                }
                if !(at < children && children + 1 < end) {
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
            let offset = index(nodes.len())?;
            let shift = |at: u32| at.checked_add(offset).ok_or(ForestError::TooLarge);
            for &root in &part.roots {
                roots.push(shift(root)?);
            }
            for node in part.tree_nodes() {
                nodes.push(Node {
                    children: shift(node.children)?,
                    ..*node
                });
            }
        }
        Forest::finish(roots, nodes)
    }
}

/// What an explanation reads of a node (see `model::explain`): a leaf's value, or a split's
/// feature, threshold key and children. Not used by predictions, which walk the nodes directly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NodeView {
    Leaf(f64),
    Split {
        feature: usize,
        /// The threshold's [order key](threshold_key): a row value `x` goes to the "true"
        /// child when `value_key(x) <= key`.
        key: u64,
        /// The child for values at or below the threshold.
        true_child: usize,
        /// The child for values above it (or NaN).
        false_child: usize,
    },
}

/// The order keys of a row's values, as the walk compares them (see [`value_key`]).
pub(crate) fn row_keys(row: &FeatureRow) -> [u64; FEATURE_COUNT] {
    row.map(value_key)
}

impl Forest {
    /// Node `at` (an index below [`Forest::nodes`]) as an explanation reads it.
    #[inline(always)]
    pub(crate) fn view(&self, at: usize) -> NodeView {
        let node = &self.nodes[at];
        if node.is_leaf() {
            NodeView::Leaf(node.leaf_value())
        } else {
            let children = node.children as usize;
            NodeView::Split {
                feature: node.feature as usize,
                key: node.word,
                true_child: children + 1,
                false_child: children,
            }
        }
    }

    /// The standard deviation of the trees' outputs for `row`: the forest's own spread, for
    /// measuring locally adaptive intervals (see `interval`). A plain walk, not the
    /// prediction's.
    pub fn spread(&self, row: &FeatureRow) -> f64 {
        let keys = walk_row(row);
        let (mut sum, mut squares) = (0.0, 0.0);
        for &root in &self.roots {
            let mut at = root as usize;
            while !self.nodes[at].is_leaf() {
                // SAFETY: a walk from a root of this forest (see `step`).
                at = unsafe { step(&self.nodes, at, &keys) };
            }
            let value = self.nodes[at].leaf_value();
            sum += value;
            squares += value * value;
        }
        let n = self.roots.len() as f64;
        let mean = sum / n;
        (squares / n - mean * mean).max(0.0).sqrt()
    }

    /// A split's threshold, as stored (see [`Node::threshold`]); a leaf's value.
    pub(crate) fn threshold_at(&self, at: usize) -> f64 {
        self.nodes[at].value()
    }

    /// Each tree's root, in the artifact's order.
    pub(crate) fn root_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.roots.iter().map(|&root| root as usize)
    }

    /// How many of `rows` reach each node (indexed as [`Forest::view`] reads them): a node's
    /// cover, the weight path-dependent explanations give its subtree. A parent's cover is the
    /// sum of its children's. Saturates at `u32::MAX` rows.
    pub(crate) fn count_covers(&self, rows: impl IntoIterator<Item = FeatureRow>) -> Vec<u32> {
        let mut covers = vec![0u32; self.nodes()];
        for row in rows {
            let row = walk_row(&row);
            for &root in &self.roots {
                let mut at = root as usize;
                loop {
                    covers[at] = covers[at].saturating_add(1);
                    if self.nodes[at].is_leaf() {
                        break;
                    }
                    // SAFETY: a walk from a root of this forest (see `step`).
                    at = unsafe { step(&self.nodes, at, &row) };
                }
            }
        }
        covers
    }

    /// The in-memory index of each node in the artifact's order (each tree in pre-order, the
    /// "true" child first): how values kept per node (covers) are stored and read back
    /// independently of the walk's layout.
    pub(crate) fn stored_order(&self) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.nodes());
        let mut pending = Vec::new();
        for &root in &self.roots {
            pending.push(root);
            while let Some(at) = pending.pop() {
                order.push(at);
                let node = &self.nodes[at as usize];
                if !node.is_leaf() {
                    pending.push(node.children);
                    pending.push(node.children + 1);
                }
            }
        }
        order
    }
}

/// One step of a walk from the node at `at`: the index of its "false" child plus one if the
/// row's value is at or below the threshold. No branch (see the module documentation), and
/// no bounds check: a step is a handful of instructions, and checking the node's index and
/// masking its feature made batches about a fifth slower and single rows a tenth.
///
/// # Safety
/// `nodes` are the nodes of a [`Forest`], and `at` is one of its roots or a position a step
/// reached from one. Every `Forest` is checked by [`Forest::validate`] when it is built and
/// never changed after, which guarantees that every such position is inside `nodes` and that
/// every node's feature is a slot of the row.
#[inline(always)]
unsafe fn step(nodes: &[Node], at: usize, row: &WalkRow) -> usize {
    debug_assert!(at < nodes.len(), "a walk left its forest");
    // SAFETY: `at` is inside `nodes` (see above).
    let node = unsafe { nodes.get_unchecked(at) };
    debug_assert!(
        (node.feature as usize) < ROW_SLOTS,
        "a node reads past the row"
    );
    // SAFETY: a validated node's feature is an input (below FEATURE_COUNT) or NAN_SLOT, both
    // below ROW_SLOTS, the row's length.
    let x = unsafe { *row.get_unchecked(node.feature as usize) };
    node.children as usize + usize::from(x <= node.word)
}

/// A row in the walk's buffer: its features' keys, then NaN's.
#[inline(always)]
fn walk_row(row: &FeatureRow) -> WalkRow {
    let mut slots = [NAN_KEY; ROW_SLOTS];
    for (slot, &value) in slots.iter_mut().zip(row) {
        *slot = value_key(value);
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(value: f64) -> StoredNode {
        StoredNode {
            value,
            feature: STORED_LEAF,
            right: 0,
        }
    }

    fn split(feature: u32, value: f64, right: u32) -> StoredNode {
        StoredNode {
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
        assert_eq!(joined.nodes[9].children, 10);
        let row = [3.0; FEATURE_COUNT];
        assert_eq!(joined.predict_row(&row), stumps().predict_row(&row));
    }

    #[test]
    fn malformed_forests_are_refused() {
        let mut backwards = stumps();
        backwards.nodes[3].children = 3;
        assert!(matches!(
            backwards.validate(),
            Err(ForestError::BadTree { tree: 1, .. })
        ));
        let mut escaping = stumps();
        escaping.nodes[0].children = 4;
        assert!(escaping.validate().is_err());
        let mut unknown_feature = stumps();
        unknown_feature.nodes[0].feature = 11;
        assert!(unknown_feature.validate().is_err());
        let mut infinite = stumps();
        infinite.nodes[1].word = f64::INFINITY.to_bits();
        assert!(infinite.validate().is_err());
        let mut not_a_number = stumps();
        not_a_number.nodes[1].word = NAN_KEY;
        assert!(not_a_number.validate().is_err());
        let mut dangling = stumps();
        dangling.nodes.pop();
        assert!(dangling.validate().is_err());
        let empty = Forest {
            roots: vec![],
            ..stumps()
        };
        assert_eq!(empty.validate(), Err(ForestError::Empty));
    }

    /// Numbers at every edge of the `f64` order: infinities, the largest, the smallest
    /// normal and subnormal, both zeros, and some ordinary values.
    const EDGES: [f64; 14] = [
        f64::NEG_INFINITY,
        f64::MIN,
        -1.5,
        -f64::MIN_POSITIVE,
        -5e-324,
        -0.0,
        0.0,
        5e-324,
        f64::MIN_POSITIVE,
        0.9978,
        1.0,
        1.0000000000000002,
        f64::MAX,
        f64::INFINITY,
    ];

    #[test]
    fn keys_compare_as_the_numbers_do() {
        let with_nan = EDGES.iter().copied().chain([f64::NAN, -f64::NAN]);
        for x in with_nan.clone() {
            for t in with_nan.clone() {
                assert_eq!(value_key(x) <= threshold_key(t), x <= t, "{x} <= {t}");
            }
            // A leaf's word, which NaN's slot is compared with, never compares true.
            if x.is_finite() {
                assert!(NAN_KEY > x.to_bits(), "leaf {x}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn keys_compare_as_any_numbers_do(x in proptest::num::f64::ANY, t in proptest::num::f64::ANY) {
            proptest::prop_assert_eq!(value_key(x) <= threshold_key(t), x <= t);
            let back = threshold_of_key(threshold_key(t));
            proptest::prop_assert!(back == t || (back.is_nan() && t.is_nan()));
        }
    }

    #[test]
    fn the_artifact_keeps_the_stored_leaf_marker() {
        let stored = postcard::to_allocvec(&stored_stumps()).unwrap();
        assert_eq!(postcard::to_allocvec(&stumps()).unwrap(), stored);
        let decoded: Forest = postcard::from_bytes(&stored).unwrap();
        assert_eq!(decoded, stumps());
        assert_eq!(
            decoded.nodes[1].children, 1,
            "a leaf ends its walk in memory"
        );
    }

    #[test]
    fn children_are_neighbours_in_memory() {
        let forest = stumps();
        // Tree 0: the root's "false" child (6) then its "true" child (5).
        let values: Vec<f64> = forest.nodes.iter().map(Node::value).collect();
        assert_eq!(values, [10.0, 6.0, 5.0, 3.3, 7.0, 4.0, 0.0]);
        assert_eq!((forest.nodes[0].children, forest.nodes[3].children), (1, 4));
        assert_eq!(forest.depths, [1, 1]);
    }

    #[test]
    fn the_child_with_the_larger_subtree_is_laid_out_first() {
        // The "false" child (stored node 2) splits again; the "true" child is a leaf.
        let stored = StoredForest {
            roots: vec![0],
            nodes: vec![
                split(10, 10.0, 2),
                leaf(1.0),
                split(8, 3.3, 4),
                leaf(2.0),
                leaf(3.0),
            ],
        };
        let forest = Forest::try_from(stored.clone()).unwrap();
        let values: Vec<f64> = forest.nodes.iter().map(Node::value).collect();
        assert_eq!(values, [10.0, 3.3, 1.0, 3.0, 2.0, 0.0]);
        assert_eq!(forest.nodes[1].children, 3);
        let mut row = [0.0; FEATURE_COUNT];
        row[10] = 11.0;
        assert_eq!(forest.predict_row(&row), 2.0);
        row[8] = 4.0;
        assert_eq!(forest.predict_row(&row), 3.0);
        row[10] = 9.0;
        assert_eq!(forest.predict_row(&row), 1.0);
        assert_eq!(StoredForest::from(forest), stored);
        // The "true" child's subtree is the larger: its children follow the pair.
        let deep = StoredForest {
            roots: vec![0],
            nodes: deep_tree_then_stump()[..5].to_vec(),
        };
        let forest = Forest::try_from(deep).unwrap();
        assert_eq!(forest.nodes[2].children, 3);
    }

    /// A tree of depth 2 (its "true" child splits again), then a stump (root at 5).
    fn deep_tree_then_stump() -> Vec<StoredNode> {
        vec![
            split(10, 10.0, 4),
            split(8, 3.3, 3),
            leaf(1.0),
            leaf(2.0),
            leaf(3.0),
            split(8, 3.3, 7),
            leaf(4.0),
            leaf(7.0),
        ]
    }

    #[test]
    fn depths_and_walk_order_follow_the_trees() {
        let stored = StoredForest {
            roots: vec![0, 5],
            nodes: deep_tree_then_stump(),
        };
        let forest = Forest::try_from(stored).unwrap();
        assert_eq!(forest.depths, [2, 1]);
        assert_eq!(forest.walk_order, [1, 0]);
        let mut row = [0.0; FEATURE_COUNT];
        row[10] = 9.0;
        row[8] = 3.5;
        assert_eq!(forest.predict_row(&row), (2.0 + 7.0) / 2.0);
        row[8] = 3.0;
        assert_eq!(forest.predict_row(&row), (1.0 + 4.0) / 2.0);
        let encoded = postcard::to_allocvec(&forest).unwrap();
        let decoded: Forest = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, forest);
    }

    #[test]
    fn trees_with_shared_or_unreachable_nodes_are_refused() {
        // Node 1's "false" child is node 0's too.
        let shared = StoredForest {
            roots: vec![0],
            nodes: vec![split(10, 10.0, 3), split(8, 3.3, 3), leaf(1.0), leaf(2.0)],
        };
        let error = Forest::try_from(shared).unwrap_err();
        assert!(error.to_string().contains("outside its subtree"), "{error}");
        let unreachable = StoredForest {
            roots: vec![0],
            nodes: vec![split(10, 10.0, 2), leaf(1.0), leaf(2.0), leaf(3.0)],
        };
        let error = Forest::try_from(unreachable).unwrap_err();
        assert!(error.to_string().contains("not reachable"), "{error}");
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
        let rows: Vec<FeatureRow> = (0..2 * BATCH_LANES as u32 + 3)
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

    /// The walk reads nodes and row slots without checks, relying on the checks a forest
    /// passes when it is built: a stored forest with one field changed at random, 20,000
    /// times, is either refused or walked inside its nodes and its rows (the walk's debug
    /// assertions, on in tests, stop at the first read outside).
    #[test]
    fn every_forest_that_passes_the_checks_walks_inside_its_nodes() {
        // A third tree of depth 2, its "false" child splitting again.
        let mut nodes = deep_tree_then_stump();
        nodes.extend([
            split(0, 7.5, 10),
            leaf(0.5),
            split(1, 0.6, 12),
            leaf(1.5),
            leaf(2.5),
        ]);
        let base = StoredForest {
            roots: vec![0, 5, 8],
            nodes,
        };
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let fields = [
            0,
            1,
            2,
            3,
            4,
            5,
            10,
            11,
            15,
            16,
            100,
            u32::MAX - 1,
            u32::MAX,
        ];
        let rows: Vec<FeatureRow> = (0..5)
            .map(|i| std::array::from_fn(|f| f64::from(i) * 2.5 + f as f64 * 0.3))
            .collect();
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut stored = StoredForest {
                roots: base.roots.clone(),
                nodes: base.nodes.clone(),
            };
            let node = next(stored.nodes.len() as u64) as usize;
            let value = fields[next(fields.len() as u64) as usize];
            match next(4) {
                0 => stored.nodes[node].feature = value,
                1 => stored.nodes[node].right = value,
                2 => stored.roots[node % 3] = value,
                _ => stored.nodes[node].feature = STORED_LEAF,
            }
            let Ok(forest) = Forest::try_from(stored) else {
                continue;
            };
            accepted += 1;
            let mut out = vec![0.0; rows.len()];
            forest.predict_into(&rows, &mut out);
            for (row, batch) in rows.iter().zip(&out) {
                assert_eq!(forest.predict_row(row).to_bits(), batch.to_bits());
            }
            assert!(forest.mean_path(&rows) >= 1.0);
        }
        assert!(accepted > 100, "only {accepted} variants were accepted");
    }
}
