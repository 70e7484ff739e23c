//! The inference layout against smartcore: identical predictions on the bundled data and on
//! random rows, the parallel fit against the one-call fit, migration of first-format
//! artifacts, and the model's size bound at ten times the bundled rows.

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{
    Algorithm, ModelSpec, Regressor, SmartcoreRegressor, SpecOverrides, DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LEAVES,
};
use sommelier::model::artifact::{ArtifactError, DataSource, ModelArtifact};
use sommelier::model::dataset::{read_training_data, Dataset};
use sommelier::model::features::{FeatureRow, FEATURE_COUNT};
use sommelier::model::split::SplitMix64;
use sommelier::model::training::{train, TrainOptions, Trigger};

fn bundled() -> Dataset {
    read_training_data(WINE_QUALITY_RED_CSV).expect("bundled data is valid")
}

/// Uniform in [0, 1), from the library's pinned SplitMix64 stream (the same rows on every run).
fn unit(stream: &mut SplitMix64) -> f64 {
    (stream.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Rows drawn uniformly from a box a little wider than the bundled data's ranges, and some
/// rows that are exactly the training values (which sit on split thresholds' neighbours).
fn random_rows(data: &Dataset, count: usize, seed: u64) -> Vec<FeatureRow> {
    let mut stream = SplitMix64::new(seed);
    let mut low = [f64::INFINITY; FEATURE_COUNT];
    let mut high = [f64::NEG_INFINITY; FEATURE_COUNT];
    for row in &data.rows {
        for i in 0..FEATURE_COUNT {
            low[i] = low[i].min(row[i]);
            high[i] = high[i].max(row[i]);
        }
    }
    (0..count)
        .map(|_| {
            let mut row = [0.0; FEATURE_COUNT];
            for i in 0..FEATURE_COUNT {
                let span = high[i] - low[i];
                row[i] = low[i] - 0.1 * span + 1.2 * span * unit(&mut stream);
            }
            row
        })
        .collect()
}

/// The bundled rows resampled with 2 % multiplicative noise on every feature.
fn resampled(data: &Dataset, count: usize, seed: u64) -> (Vec<FeatureRow>, Vec<f64>) {
    let mut stream = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let pick = (stream.next_u64() % data.rows.len() as u64) as usize;
            let mut row = data.rows[pick];
            for value in row.iter_mut() {
                *value *= 1.0 + 0.04 * (unit(&mut stream) - 0.5);
            }
            (row, data.targets[pick])
        })
        .unzip()
}

fn spec(algorithm: Algorithm) -> ModelSpec {
    ModelSpec::build(algorithm, &SpecOverrides::default()).expect("spec")
}

fn options(algorithm: Algorithm) -> TrainOptions {
    TrainOptions::new(spec(algorithm), DataSource::named("bundled"), Trigger::Cli)
}

/// Every prediction of the inference layout equals smartcore's: for forests every tree ends
/// on the same leaf, so the two differ only by the order in which the leaf values are added
/// (a few units in the last place; a single different leaf would move a prediction by about
/// 1e-4 or more).
fn assert_same_predictions(model: &SmartcoreRegressor, rows: &[FeatureRow], exact: bool) {
    let regressor = model.to_regressor().expect("convert");
    let theirs = model.predict(rows).expect("smartcore predicts");
    let ours = regressor.predict(rows).expect("layout predicts");
    let tolerance = if exact { 1e-13 } else { 1e-9 };
    for (i, (row, (a, b))) in rows.iter().zip(theirs.iter().zip(&ours)).enumerate() {
        let single = regressor.predict_row(row).expect("single row");
        assert_eq!(single.to_bits(), b.to_bits(), "row {i}: single vs batch");
        assert!(
            (a - b).abs() <= tolerance * a.abs().max(1.0),
            "row {i}: smartcore {a} vs layout {b}"
        );
    }
}

#[test]
fn forests_predict_exactly_like_smartcore() {
    let data = bundled();
    let random = random_rows(&data, 3000, 7);
    for algorithm in [Algorithm::ExtraTrees, Algorithm::RandomForest] {
        let overrides = SpecOverrides {
            n_trees: Some(30),
            ..Default::default()
        };
        let spec = ModelSpec::build(algorithm, &overrides).expect("spec");
        let model = SmartcoreRegressor::fit(&spec, &data.rows, &data.targets).expect("fit");
        assert_same_predictions(&model, &data.rows, true);
        assert_same_predictions(&model, &random, true);
    }
}

#[test]
fn the_linear_model_predicts_like_smartcore() {
    let data = bundled();
    let model = SmartcoreRegressor::fit(&spec(Algorithm::ElasticNet), &data.rows, &data.targets)
        .expect("fit");
    assert_same_predictions(&model, &data.rows, false);
    assert_same_predictions(&model, &random_rows(&data, 1000, 8), false);
}

#[test]
fn parallel_extra_trees_are_the_one_call_forest() {
    let data = bundled();
    let spec = spec(Algorithm::ExtraTrees);
    let sequential = SmartcoreRegressor::fit(&spec, &data.rows, &data.targets).expect("fit");
    let parallel = Regressor::fit(&spec, &data.rows, &data.targets).expect("fit");
    assert_eq!(parallel, sequential.to_regressor().expect("convert"));
}

#[test]
fn first_format_artifacts_are_migrated_on_load() {
    let data = bundled();
    let options = options(Algorithm::ExtraTrees);
    let trained = train(&data, &options).expect("train");
    let smartcore = SmartcoreRegressor::fit(&options.spec, &data.rows, &data.targets).expect("fit");
    let old = ModelArtifact::encode_format_1(&trained.artifact.card, &smartcore).expect("encode");
    let migrated = ModelArtifact::decode(&old).expect("a first-format artifact loads");
    assert_eq!(migrated.card, trained.artifact.card);
    assert_eq!(
        migrated.regressor,
        smartcore.to_regressor().expect("convert"),
        "the migrated artifact holds the layout of the smartcore model it stored"
    );
    assert_same_predictions(&smartcore, &data.rows, true);

    let current = trained.artifact.encode().expect("encode");
    let reloaded = ModelArtifact::decode(&current).expect("decode");
    assert_eq!(reloaded.regressor, trained.artifact.regressor);
    assert_eq!(
        reloaded.encode().expect("encode"),
        current,
        "the walk's layout is written back as the same stored trees"
    );
    let truncated = ModelArtifact::decode(&current[..current.len() / 2]).unwrap_err();
    assert!(
        matches!(truncated, ArtifactError::Corrupt(_)),
        "{truncated:?}"
    );
}

#[test]
fn the_default_model_stays_bounded_in_size_and_depth_at_ten_times_the_bundled_rows() {
    let data = bundled();
    let (rows, targets) = resampled(&data, 16_000, 11);
    let large = Dataset {
        rows: rows.clone(),
        targets: targets.clone(),
        sha256: "synthetic".into(),
        ignored_columns: Vec::new(),
    };
    let mut options = options(Algorithm::ExtraTrees);
    options.holdout = 0.0;
    let trained = train(&large, &options).expect("train");
    let bytes = trained.artifact.encode().expect("encode").len();
    assert!(bytes <= 16 << 20, "model.bin of {bytes} bytes");
    let Regressor::Forest(forest) = &trained.artifact.regressor else {
        panic!("a forest expected")
    };
    assert_eq!(forest.trees(), 100);
    assert!(
        forest.leaves() <= 100 * DEFAULT_MAX_LEAVES,
        "{} leaves",
        forest.leaves()
    );
    assert!(
        forest.memory_bytes() <= 16 << 20,
        "{} bytes",
        forest.memory_bytes()
    );
    assert!(
        forest.levels() <= usize::from(DEFAULT_MAX_DEPTH),
        "{} levels",
        forest.levels()
    );
    let unbounded = SpecOverrides {
        max_leaves: Some(0),
        max_depth: Some(0),
        n_trees: Some(1),
        ..Default::default()
    };
    let spec = ModelSpec::build(Algorithm::ExtraTrees, &unbounded).expect("spec");
    let Regressor::Forest(one_tree) = Regressor::fit(&spec, &rows, &targets).expect("fit") else {
        panic!("a forest expected")
    };
    assert!(
        one_tree.leaves() > DEFAULT_MAX_LEAVES,
        "without the bound a tree grows to {} leaves",
        one_tree.leaves()
    );
    assert!(
        one_tree.levels() > usize::from(DEFAULT_MAX_DEPTH),
        "without the bound a tree grows to {} levels",
        one_tree.levels()
    );
}

/// A model written by the release before the walk's current layout (artifact format 2: extra
/// trees, `--trees 4 --max-leaves 32`, bundled data) with that release's predictions of the
/// bundled rows (`sommelier predict --json`). It loads, predicts the same rows the same (within
/// the last bits, the leaf values being added in another order) and is written back in format
/// 2 byte for byte.
#[test]
fn models_written_by_the_previous_release_load_and_predict_the_same() {
    let stored = include_bytes!("../fixtures/format-2-previous-release.bin");
    let expected: Vec<f64> = include_str!("../fixtures/format-2-previous-release-predictions.txt")
        .lines()
        .map(|line| line.parse().expect("a prediction"))
        .collect();
    let artifact = ModelArtifact::decode(stored).expect("a format-2 artifact loads");
    let data = bundled();
    let ours = artifact.predict(&data.rows).expect("predict");
    assert_eq!(ours.len(), expected.len());
    for (i, (ours, theirs)) in ours.iter().zip(&expected).enumerate() {
        assert!(
            (ours - theirs).abs() <= 1e-13 * theirs.abs(),
            "row {i}: {ours} now, {theirs} before"
        );
    }
    assert_eq!(artifact.encode_format_2().expect("encode"), stored.to_vec());
    // Written by this build (format 3, without covers: it was fitted before them), it reads
    // back the same.
    let rewritten = ModelArtifact::decode(&artifact.encode().expect("encode")).expect("decode");
    assert_eq!(rewritten.regressor, artifact.regressor);
    assert!(rewritten.covers.is_none());
}
