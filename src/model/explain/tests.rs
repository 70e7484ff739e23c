use super::*;
use crate::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use crate::model::dataset::read_training_data;

/// A small forest fitted on `rows` rows of the bundled data, with its covers.
fn small_forest(
    algorithm: Algorithm,
    rows: usize,
    depth: u16,
    trees: usize,
) -> (Forest, Derived, Vec<FeatureRow>) {
    let data = read_training_data(crate::bundled::WINE_QUALITY_RED_CSV).unwrap();
    let overrides = SpecOverrides {
        n_trees: Some(trees),
        max_depth: Some(depth),
        ..Default::default()
    };
    let spec = ModelSpec::build(algorithm, &overrides).unwrap();
    let train = &data.rows[..rows];
    let Regressor::Forest(forest) = Regressor::fit(&spec, train, &data.targets[..rows]).unwrap()
    else {
        panic!("a forest")
    };
    let covers = TreeCovers::count(&forest, train.iter().copied());
    let derived = covers.derived(&forest).unwrap().clone();
    let others = data.rows[rows..rows + 40].to_vec();
    (forest, derived, others)
}

/// The path-dependent value of knowing the features in `known` (a bit set) for one tree:
/// a known feature follows the row, an unknown one splits by the covers.
fn expected(forest: &Forest, covers: &Derived, at: usize, row: &FeatureRow, known: u32) -> f64 {
    match forest.view(at) {
        NodeView::Leaf(value) => value,
        NodeView::Split {
            feature,
            key,
            true_child,
            false_child,
        } => {
            if known & (1 << feature) != 0 {
                let child = if row_keys(row)[feature] <= key {
                    true_child
                } else {
                    false_child
                };
                expected(forest, covers, child, row, known)
            } else {
                let total = f64::from(covers.covers[at]);
                [true_child, false_child]
                    .iter()
                    .map(|&c| {
                        f64::from(covers.covers[c]) / total
                            * expected(forest, covers, c, row, known)
                    })
                    .sum()
            }
        }
    }
}

/// Shapley values by their definition: every coalition of the 11 features, weighted.
fn brute_force(forest: &Forest, covers: &Derived, row: &FeatureRow) -> [f64; FEATURE_COUNT] {
    let m = FEATURE_COUNT;
    let value = |known: u32| -> f64 {
        forest
            .root_nodes()
            .map(|root| expected(forest, covers, root, row, known))
            .sum::<f64>()
            / forest.trees() as f64
    };
    let values: Vec<f64> = (0..1u32 << m).map(value).collect();
    let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
    let mut phi = [0.0; FEATURE_COUNT];
    for (i, phi) in phi.iter_mut().enumerate() {
        for set in 0..1u32 << m {
            if set & (1 << i) != 0 {
                continue;
            }
            let s = set.count_ones() as usize;
            let weight = factorial(s) * factorial(m - s - 1) / factorial(m);
            *phi += weight * (values[(set | 1 << i) as usize] - values[set as usize]);
        }
    }
    phi
}

/// A row's explanation by recursion (the trees are shallow enough) and by the walk with its
/// stack on the heap, which take the same steps in another order.
fn both_walks(covers: &Derived, row: &FeatureRow) -> [Explanation; 2] {
    let mut scratch = Scratch::new(0);
    let recursive = explain_forest(covers, row, &mut scratch);
    let stacked = explain_walking(covers, row, &mut scratch, 0);
    for (a, b) in recursive.contributions.iter().zip(stacked.contributions) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
    [recursive, stacked]
}

#[test]
fn tree_values_are_the_shapley_values_of_their_definition() {
    for algorithm in [Algorithm::ExtraTrees, Algorithm::RandomForest] {
        let (forest, covers, others) = small_forest(algorithm, 80, 5, 3);
        for row in others.iter().take(6) {
            let exact = brute_force(&forest, &covers, row);
            for explanation in both_walks(&covers, row) {
                for (f, (got, want)) in explanation.contributions.iter().zip(exact).enumerate() {
                    assert!(
                        (got - want).abs() < 1e-12,
                        "{algorithm:?} feature {f}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn base_and_contributions_add_up_to_every_prediction() {
    for (algorithm, rows, depth, trees) in [
        (Algorithm::ExtraTrees, 400, 16, 6),
        (Algorithm::RandomForest, 400, 16, 6),
        (Algorithm::ExtraTrees, 200, 0, 3),
    ] {
        let (forest, covers, others) = small_forest(algorithm, rows, depth, trees);
        for row in &others {
            let prediction = forest.predict_row(row);
            for explanation in both_walks(&covers, row) {
                assert!(
                    (explanation.total() - prediction).abs() < 1e-9,
                    "{algorithm:?}: {} vs {prediction}",
                    explanation.total()
                );
            }
        }
    }
}

#[test]
fn the_base_value_of_extra_trees_is_the_mean_training_quality() {
    let data = read_training_data(crate::bundled::WINE_QUALITY_RED_CSV).unwrap();
    let spec = ModelSpec::build(
        Algorithm::ExtraTrees,
        &SpecOverrides {
            n_trees: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    let Regressor::Forest(forest) = Regressor::fit(&spec, &data.rows, &data.targets).unwrap()
    else {
        panic!("a forest")
    };
    let covers = TreeCovers::count(&forest, data.rows.iter().copied());
    let base = covers.base_value(&forest).unwrap();
    let mean = data.targets.iter().sum::<f64>() / data.targets.len() as f64;
    assert!((base - mean).abs() < 1e-12, "{base} vs {mean}");
    assert!((mean - 5.636_022_514_071_294).abs() < 1e-12);
}

#[test]
fn stored_covers_come_back_in_memory_order_and_bad_ones_are_refused() {
    let (forest, derived, _) = small_forest(Algorithm::ExtraTrees, 120, 6, 3);
    let stored: Vec<u32> = forest
        .stored_order()
        .iter()
        .map(|&at| derived.covers[at as usize])
        .collect();
    let read = |covers: Vec<u32>| TreeCovers::from_stored(covers).derived(&forest).cloned();
    assert_eq!(read(stored.clone()).unwrap(), derived);
    assert!(read(stored[1..].to_vec()).is_err());
    let mut unbalanced = stored.clone();
    unbalanced[1] += 1;
    assert!(read(unbalanced).is_err());
    assert!(read(vec![0; stored.len()]).is_err());
}

#[test]
fn linear_contributions_are_weights_times_distance_from_the_mean() {
    let model = LinearModel {
        weights: std::array::from_fn(|f| f as f64 - 5.0),
        intercept: 3.0,
    };
    let means: [f64; FEATURE_COUNT] = std::array::from_fn(|f| f as f64 * 0.5);
    let row: FeatureRow = std::array::from_fn(|f| 1.0 + f as f64);
    let explanation = explain_linear(&model, &means, &row);
    assert_eq!(explanation.contributions[0], -5.0 * (1.0 - 0.0));
    let prediction = model.intercept
        + row
            .iter()
            .zip(&model.weights)
            .map(|(x, w)| x * w)
            .sum::<f64>();
    assert!((explanation.total() - prediction).abs() < 1e-12);
}

#[test]
fn the_quadrature_gives_every_shapley_weight_to_the_last_bits() {
    fn check<const M: usize>(rule: &Rule<M>) {
        let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        for n in 1..=FEATURE_COUNT.min(Rule::<M>::MAX_FEATURES) {
            for k in 0..n {
                // ∫ s^k (1-s)^(n-1-k) ds = k! (n-k-1)! / n!
                let integral: f64 = (0..M)
                    .map(|g| rule.weighted[n - 1 - k][g] * rule.points[g].powi(k as i32))
                    .sum();
                let exact = factorial(k) * factorial(n - k - 1) / factorial(n);
                assert!(
                    (integral / exact - 1.0).abs() < 1e-14,
                    "{M} points, n {n} k {k}: {integral} vs {exact}"
                );
            }
        }
    }
    check(&*RULE_3);
    check(&*RULE_4);
    check(&*RULE_5);
    check(&*RULE_6);
}
