//! The model pipeline end to end through the library: training quality, the pinned random
//! stream, artifact round trips, and the promotion workflow on a local registry.

use std::sync::Arc;

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::algorithm::{
    Algorithm, ModelSpec, SmartcoreRegressor, SpecOverrides, DEFAULT_SEED,
};
use sommelier::model::artifact::{DataSource, ModelArtifact};
use sommelier::model::dataset::{read_training_data, Dataset};
use sommelier::model::training::{cross_validate, train, TrainOptions, Trigger};
use sommelier::registry::{LocalStore, ModelStore, Registry, Store};
use sommelier::retraining::{train_and_publish, PromotionPolicy};

fn bundled() -> Dataset {
    read_training_data(WINE_QUALITY_RED_CSV).expect("bundled data is valid")
}

fn options(algorithm: Algorithm, overrides: SpecOverrides) -> TrainOptions {
    TrainOptions {
        spec: ModelSpec::build(algorithm, &overrides).expect("spec"),
        holdout: 0.25,
        split_seed: DEFAULT_SEED,
        source: DataSource {
            name: "bundled".into(),
            etag: None,
        },
        trigger: Trigger::Cli,
    }
}

fn policy() -> PromotionPolicy {
    PromotionPolicy {
        tolerance: 0.01,
        force: false,
        keep_versions: 20,
    }
}

#[test]
fn the_bundled_data_is_the_full_uci_red_wine_set() {
    let data = bundled();
    assert_eq!(data.rows.len(), 1599);
    assert!(data.ignored_columns.is_empty());
}

#[test]
fn default_algorithm_meets_the_quality_goal_in_5_fold_cv() {
    let spec = ModelSpec::build(Algorithm::default(), &SpecOverrides::default()).expect("spec");
    let cv = cross_validate(&bundled(), &spec, 5, DEFAULT_SEED, |_| {}).expect("cv");
    eprintln!(
        "default {:?}: CV RMSE {:.4} ± {:.4}",
        Algorithm::default(),
        cv.rmse.mean,
        cv.rmse.sd
    );
    assert!(
        cv.rmse.mean <= 0.570,
        "CV RMSE {:.4} misses the 0.570 goal",
        cv.rmse.mean
    );
}

#[test]
fn elastic_net_stays_comparable_to_the_original_model() {
    let spec = ModelSpec::build(Algorithm::ElasticNet, &SpecOverrides::default()).expect("spec");
    let cv = cross_validate(&bundled(), &spec, 5, DEFAULT_SEED, |_| {}).expect("cv");
    // scikit-learn's ElasticNet(alpha=0.2, l1_ratio=0.1) on the same data: about 0.69.
    assert!(
        (0.66..0.72).contains(&cv.rmse.mean),
        "elastic net CV RMSE {:.4}",
        cv.rmse.mean
    );
}

/// The exact holdout RMSE of the default recipe with the default seed. A change here means
/// the random stream (split, smartcore's feature flags) or the learner changed: check why
/// before updating it.
const REFERENCE_HOLDOUT_RMSE: f64 = 0.604_263_601_419;

#[test]
fn the_seeded_default_training_reproduces_its_reference_metric() {
    let first = train(
        &bundled(),
        &options(Algorithm::default(), SpecOverrides::default()),
    )
    .expect("train");
    let second = train(
        &bundled(),
        &options(Algorithm::default(), SpecOverrides::default()),
    )
    .expect("train");
    let rmse = first.artifact.card.metrics.expect("holdout metrics").rmse;
    eprintln!("reference holdout RMSE: {rmse:.12}");
    assert_eq!(
        rmse,
        second.artifact.card.metrics.expect("metrics").rmse,
        "same data and seed, same model"
    );
    assert!(
        (rmse - REFERENCE_HOLDOUT_RMSE).abs() < 1e-9,
        "holdout RMSE {rmse:.12} differs from the reference"
    );
}

#[test]
fn artifacts_round_trip_with_identical_predictions() {
    for algorithm in [
        Algorithm::RandomForest,
        Algorithm::ExtraTrees,
        Algorithm::ElasticNet,
    ] {
        let overrides = SpecOverrides {
            n_trees: Some(20),
            ..Default::default()
        };
        let trained = train(&bundled(), &options(algorithm, overrides)).expect("train");
        let bytes = trained.artifact.encode().expect("encode");
        let loaded = ModelArtifact::decode(&bytes).expect("decode");
        assert_eq!(loaded.card, trained.artifact.card);
        let rows = &bundled().rows[..200];
        assert_eq!(
            loaded.predict(rows).expect("predict"),
            trained.artifact.predict(rows).expect("predict"),
            "{algorithm:?}"
        );
        assert_eq!(loaded.card.feature_stats.len(), 11);
        assert_eq!(
            loaded.card.feature_stats[10].bin_counts.iter().sum::<u64>() as usize,
            loaded.card.training_rows
        );
    }
}

#[test]
fn a_truncated_or_altered_artifact_is_refused() {
    let overrides = SpecOverrides {
        n_trees: Some(5),
        ..Default::default()
    };
    let options = options(Algorithm::ExtraTrees, overrides);
    let trained = train(&bundled(), &options).expect("train");
    let bytes = trained.artifact.encode().expect("encode");
    let error = ModelArtifact::decode(&bytes[..bytes.len() / 2]).expect_err("truncated");
    assert!(error.to_string().contains("corrupt"), "{error}");
    // A first-format model (smartcore's encoding) written by another smartcore release names
    // both versions.
    let data = bundled();
    let smartcore = SmartcoreRegressor::fit(&options.spec, &data.rows, &data.targets).expect("fit");
    let old = ModelArtifact::encode_format_1(&trained.artifact.card, &smartcore).expect("encode");
    let text = String::from_utf8_lossy(&old[..64]).to_string();
    assert!(
        text.contains("0.7.0"),
        "the smartcore version travels in the header"
    );
    let mut foreign = old.clone();
    let at = foreign
        .windows(5)
        .position(|w| w == b"0.7.0")
        .expect("version string");
    foreign[at..at + 5].copy_from_slice(b"0.6.9");
    let error = ModelArtifact::decode(&foreign).expect_err("other smartcore");
    assert!(
        error.to_string().contains("smartcore 0.6.9") && error.to_string().contains("retrain"),
        "{error}"
    );
}

fn local_registry(dir: &std::path::Path) -> Registry {
    Registry::new(Store::Local(LocalStore::new(dir)))
}

#[tokio::test]
async fn first_model_is_promoted_and_a_worse_one_is_kept_but_not_served() {
    let dir = tempfile::tempdir().expect("tmp");
    let registry = local_registry(dir.path());
    let first = train_and_publish(
        &registry,
        bundled(),
        options(Algorithm::default(), SpecOverrides::default()),
        policy(),
    )
    .await
    .expect("train");
    assert!(first.report.promoted, "{}", first.report.reason);
    assert_eq!(first.report.reason, "no champion yet");

    let worse = train_and_publish(
        &registry,
        bundled(),
        options(Algorithm::ElasticNet, SpecOverrides::default()),
        policy(),
    )
    .await
    .expect("train");
    assert!(!worse.report.promoted);
    assert!(
        worse.report.reason.contains("worse"),
        "{}",
        worse.report.reason
    );
    assert_eq!(
        worse.report.champion.as_deref(),
        Some(first.report.version.as_str())
    );
    let champion_rmse = worse
        .report
        .champion_rmse
        .expect("champion scored on the same holdout");
    assert!(
        (champion_rmse - first.report.metrics.expect("m").rmse).abs() < 1e-12,
        "same holdout rows"
    );

    let forced = train_and_publish(
        &registry,
        bundled(),
        options(Algorithm::ElasticNet, SpecOverrides::default()),
        PromotionPolicy {
            force: true,
            ..policy()
        },
    )
    .await
    .expect("train");
    assert!(forced.report.promoted && forced.report.reason.contains("forced"));
    let versions = registry.store().list_versions().await.expect("list");
    assert_eq!(versions.len(), 3, "every version is kept");

    // Rollback in one call, and the pointer remembers the previous champion.
    let pointer = registry
        .promote(&first.report.version)
        .await
        .expect("rollback");
    assert_eq!(pointer.champion.version, first.report.version);
    assert_eq!(
        pointer.champion.previous.as_deref(),
        Some(forced.report.version.as_str())
    );
}

#[tokio::test]
async fn no_holdout_trains_on_every_row_and_does_not_replace_a_champion() {
    let dir = tempfile::tempdir().expect("tmp");
    let registry = local_registry(dir.path());
    let mut all_rows = options(Algorithm::default(), SpecOverrides::default());
    all_rows.holdout = 0.0;
    let first = train_and_publish(&registry, bundled(), all_rows.clone(), policy())
        .await
        .expect("train");
    assert!(first.report.promoted && first.report.metrics.is_none());
    assert_eq!(first.report.training_rows, 1599);
    let second = train_and_publish(&registry, bundled(), all_rows, policy())
        .await
        .expect("train");
    assert!(!second.report.promoted, "{}", second.report.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_trainings_end_with_one_complete_champion_and_no_lost_version() {
    let dir = tempfile::tempdir().expect("tmp");
    let registry = Arc::new(local_registry(dir.path()));
    let mut tasks = Vec::new();
    for seed in 0..6u64 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let overrides = SpecOverrides {
                n_trees: Some(10),
                seed: Some(seed),
                ..Default::default()
            };
            train_and_publish(
                &registry,
                bundled(),
                options(Algorithm::ExtraTrees, overrides),
                policy(),
            )
            .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.expect("join").expect("train").report.version);
    }
    let stored = registry.store().list_versions().await.expect("list");
    for version in &versions {
        assert!(stored.contains(version), "version {version} was lost");
    }
    let champion = registry
        .champion()
        .await
        .expect("read")
        .expect("a champion");
    assert!(versions.contains(&champion.champion.version));
    registry
        .load(&champion.champion.version)
        .await
        .expect("the champion is complete and loads");
}

#[tokio::test]
async fn retention_keeps_the_newest_the_champion_and_the_previous_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let registry = local_registry(dir.path());
    let tiny = || {
        options(
            Algorithm::ExtraTrees,
            SpecOverrides {
                n_trees: Some(20),
                ..Default::default()
            },
        )
    };
    let keep_all = PromotionPolicy {
        keep_versions: 100,
        ..policy()
    };
    let first = train_and_publish(&registry, bundled(), tiny(), keep_all)
        .await
        .expect("train")
        .report
        .version;
    let second = train_and_publish(
        &registry,
        bundled(),
        tiny(),
        PromotionPolicy {
            force: true,
            ..keep_all
        },
    )
    .await
    .expect("train")
    .report
    .version;
    let mut unpromoted = Vec::new();
    for _ in 0..3 {
        let weak = SpecOverrides {
            alpha: Some(50.0),
            ..Default::default()
        };
        let report = train_and_publish(
            &registry,
            bundled(),
            options(Algorithm::ElasticNet, weak),
            keep_all,
        )
        .await
        .expect("train")
        .report;
        assert!(!report.promoted);
        unpromoted.push(report.version);
    }
    let deleted = registry.retain(2).await.expect("retain");
    assert_eq!(
        deleted,
        vec![unpromoted[0].clone()],
        "only the oldest unprotected version goes"
    );
    let stored = registry.store().list_versions().await.expect("list");
    let mut expected = vec![first, second, unpromoted[1].clone(), unpromoted[2].clone()];
    expected.sort();
    assert_eq!(stored, expected);
}
