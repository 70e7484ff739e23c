//! The trees of a forest in the form `shap.TreeExplainer` accepts for a custom tree model
//! (`sommelier models export --format shap-json`), so that a model can be explained, checked
//! or plotted with Python's tools.
//!
//! Per tree, nodes in pre-order ("true" child first), as parallel arrays: `children_left`
//! (the child for `x <= threshold`), `children_right` and `children_default` (the child for
//! larger values, and for NaN, which compares false), `-1` for a leaf's children; `features`
//! (`-2` on a leaf); `thresholds` (0 on a leaf); `values`, a leaf's value divided by the number
//! of trees (the forest predicts their mean, shap adds the trees up) and an internal node's
//! cover-weighted mean of its leaves, likewise divided; `node_sample_weight`, the covers.
//! `base_value` is the forest's expected prediction, every explanation's base.
//!
//! Not here: computing explanations (`explain`).

use serde::Serialize;

use super::algorithm::Regressor;
use super::artifact::ModelArtifact;
use super::explain::{ExplainError, TreeCovers};
use super::features::FEATURE_NAMES;
use super::forest::{Forest, NodeView};

/// One tree's arrays.
#[derive(Debug, Serialize, PartialEq)]
pub struct ShapTree {
    pub children_left: Vec<i64>,
    pub children_right: Vec<i64>,
    pub children_default: Vec<i64>,
    pub features: Vec<i64>,
    pub thresholds: Vec<f64>,
    pub values: Vec<f64>,
    pub node_sample_weight: Vec<f64>,
}

/// The whole export.
#[derive(Debug, Serialize, PartialEq)]
pub struct ShapExport {
    pub feature_names: Vec<&'static str>,
    pub base_value: f64,
    pub trees: Vec<ShapTree>,
}

/// Why a model cannot be exported.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportError {
    #[error("only tree ensembles export to shap-json; this model is linear (its explanation is weight × (value − training mean))")]
    NotTrees,
    #[error(transparent)]
    Explain(#[from] ExplainError),
}

/// The shap-json export of `artifact`'s forest.
pub fn shap_export(artifact: &ModelArtifact) -> Result<ShapExport, ExportError> {
    let Regressor::Forest(forest) = &artifact.regressor else {
        return Err(ExportError::NotTrees);
    };
    let covers = artifact
        .covers
        .as_ref()
        .ok_or(ExplainError::TrainedBefore)?;
    export_forest(forest, covers)
}

/// The export of `forest` with its covers.
pub fn export_forest(forest: &Forest, covers: &TreeCovers) -> Result<ShapExport, ExportError> {
    let trees = forest.trees() as f64;
    Ok(ShapExport {
        feature_names: FEATURE_NAMES.to_vec(),
        base_value: covers.base_value(forest)?,
        trees: forest
            .root_nodes()
            .map(|root| export_tree(forest, covers, root, trees))
            .collect(),
    })
}

fn export_tree(forest: &Forest, covers: &TreeCovers, root: usize, trees: f64) -> ShapTree {
    // Pre-order, "true" child first, with each node's position known before its children.
    let mut order = Vec::new();
    let mut pending = vec![root];
    while let Some(at) = pending.pop() {
        order.push(at);
        if let NodeView::Split {
            true_child,
            false_child,
            ..
        } = forest.view(at)
        {
            pending.extend([false_child, true_child]);
        }
    }
    let mut position = std::collections::HashMap::with_capacity(order.len());
    for (index, &at) in order.iter().enumerate() {
        position.insert(at, index as i64);
    }
    let at_of = |node: usize| position.get(&node).copied().unwrap_or(-1);
    let count = order.len();
    let mut tree = ShapTree {
        children_left: vec![-1; count],
        children_right: vec![-1; count],
        children_default: vec![-1; count],
        features: vec![-2; count],
        thresholds: vec![0.0; count],
        values: vec![0.0; count],
        node_sample_weight: order
            .iter()
            .map(|&at| f64::from(covers.cover(forest, at)))
            .collect(),
    };
    // Values bottom-up: children come after their parent in pre-order.
    for (index, &at) in order.iter().enumerate().rev() {
        match forest.view(at) {
            NodeView::Leaf(value) => tree.values[index] = value / trees,
            NodeView::Split {
                feature,
                key: _,
                true_child,
                false_child,
            } => {
                let (left, right) = (at_of(true_child), at_of(false_child));
                tree.children_left[index] = left;
                tree.children_right[index] = right;
                tree.children_default[index] = right;
                tree.features[index] = feature as i64;
                tree.thresholds[index] = forest.threshold_at(at);
                let (l, r) = (left as usize, right as usize);
                let (wl, wr) = (tree.node_sample_weight[l], tree.node_sample_weight[r]);
                tree.values[index] = if wl + wr > 0.0 {
                    (wl * tree.values[l] + wr * tree.values[r]) / (wl + wr)
                } else {
                    0.0
                };
            }
        }
    }
    tree
}
