//! A fitted smartcore forest read into the compact layout: smartcore keeps its trees private,
//! so they are read from its serde serialization through mirror types that follow smartcore
//! 0.7's field order exactly (the encoding is positional).
//!
//! Runs once per fit, or when an artifact of the first format is migrated; serving never
//! comes here. Not here: the layout and its checks (see `forest`).

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use super::{index, Forest, ForestError, PreOrderNode, StoredForest};
use crate::model::features::FEATURE_COUNT;

impl Forest {
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
        let mut stored = StoredForest {
            roots: Vec::with_capacity(trees.len()),
            nodes: Vec::with_capacity(trees.iter().map(|t| t.nodes.len()).sum()),
        };
        for (tree, smartcore) in trees.iter().enumerate() {
            stored.roots.push(index(stored.nodes.len())?);
            stored
                .push_pre_order(0, smartcore.nodes.len(), |id| smartcore.node(id))
                .map_err(|problem| ForestError::BadTree { tree, problem })?;
        }
        Forest::try_from(stored)
    }
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

impl SmartcoreTree {
    /// Node `id` as [`StoredForest::push_pre_order`] reads it.
    fn node(&self, id: usize) -> Result<PreOrderNode, String> {
        let node = self.nodes.get(id).ok_or("a child index is out of range")?;
        let (Some(true_child), Some(false_child)) = (node.true_child, node.false_child) else {
            return Ok((node.output, None));
        };
        let feature = u32::try_from(node.split_feature)
            .ok()
            .filter(|&f| (f as usize) < FEATURE_COUNT)
            .ok_or("a split reads a feature the model does not have")?;
        // smartcore compares with NaN (always false) when a split has no value
        let threshold = node.split_value.unwrap_or(f64::NAN);
        Ok((threshold, Some((feature, true_child, false_child))))
    }
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
