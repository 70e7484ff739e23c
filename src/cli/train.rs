//! `sommelier train`: the shared training workflow, with progress and the result rendered.

use std::path::PathBuf;

use serde_json::json;

use crate::bundled;
use crate::config::Settings;
use crate::model::algorithm::{ModelSpec, SpecOverrides};
use crate::model::artifact::DataSource;
use crate::model::metrics::Metrics;
use crate::model::split::DEFAULT_SPLIT_KEY;
use crate::model::training::{CrossValidation, TrainOptions, Trigger};
use crate::registry::open_registry;
use crate::retraining::workflow::{
    self, CrossValidationPlan, TrackingMode, TrainingInput, TrainingRequest,
};
use crate::retraining::{Outcome, PromotionPolicy, RetrainError, TrainingReport, Unchanged};
use crate::tracking::Tracker;

use super::progress::CliProgress;
use super::{open_input, CliError, Output, TrainArgs};

pub(super) async fn train(
    settings: &Settings,
    args: TrainArgs,
    output: Output,
) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    // Before the data is even opened: a store that cannot take the result fails now.
    registry.check_writable().await?;
    let tracker = Tracker::from_settings(settings);
    let spec = ModelSpec::build(args.algorithm, &overrides(&args))?;
    let data_path = args
        .data
        .clone()
        .or_else(|| settings.training_data.clone().map(PathBuf::from));
    let (input, source) = match &data_path {
        Some(path) => (
            TrainingInput::Reader(open_input(path)?),
            path.display().to_string(),
        ),
        None => (
            TrainingInput::Bytes(bundled::WINE_QUALITY_RED_CSV.to_vec()),
            bundled::SOURCE_NAME.to_string(),
        ),
    };
    let options = TrainOptions {
        spec,
        holdout: args.holdout,
        split_key: DEFAULT_SPLIT_KEY,
        source: DataSource {
            name: source.clone(),
            etag: None,
        },
        trigger: Trigger::Cli,
    };
    let request = TrainingRequest {
        input,
        options,
        policy: PromotionPolicy {
            tolerance: args.tolerance.unwrap_or(settings.promotion_tolerance),
            min_comparable_rows: args
                .min_comparable_rows
                .unwrap_or(settings.min_comparable_rows),
            force: args.force,
            keep_versions: settings.keep_versions,
            max_label_shift: settings.max_label_shift,
        },
        feedback: crate::feedback::labelled_rows::load(settings).await,
        cross_validation: args.cv.map(|folds| CrossValidationPlan {
            folds,
            seed: args.seed,
        }),
        tracking: TrackingMode::Await,
    };
    let progress = CliProgress::new(output);
    let finished = workflow::run(&registry, &tracker, request, &progress)
        .await
        .map_err(|error| match error {
            RetrainError::Data(data_error) => CliError::Data {
                path: source,
                source: data_error,
            },
            other => other.into(),
        })?;
    let retrained = match finished.outcome {
        Outcome::Unchanged(unchanged) => {
            print_unchanged(&unchanged, output);
            return Ok(());
        }
        Outcome::Trained(retrained) => retrained,
    };
    print_trained(
        &retrained.report,
        finished.run_id.as_deref(),
        finished.cross_validation.as_ref(),
        output,
    );
    Ok(())
}

/// The recipe's overrides from the flags.
fn overrides(args: &TrainArgs) -> SpecOverrides {
    SpecOverrides {
        n_trees: args.trees,
        max_features: args.max_features,
        max_depth: args.max_depth,
        min_samples_leaf: args.min_samples_leaf,
        min_samples_split: args.min_samples_split,
        max_leaves: args.max_leaves,
        alpha: args.alpha,
        l1_ratio: args.l1_ratio,
        seed: Some(args.seed),
    }
}

/// Reports a training that ran: its report, with the MLflow run and cross-validation.
fn print_trained(
    report: &TrainingReport,
    run_id: Option<&str>,
    cv: Option<&CrossValidation>,
    output: Output,
) {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["status"] = json!("trained");
    if let Some(run_id) = run_id {
        value["mlflow_run_id"] = json!(run_id);
    }
    if let Some(cv) = cv {
        value["cv"] = serde_json::to_value(cv).unwrap_or_default();
    }
    output.print(&value, || {
        let mut text = format!(
            "Trained {} ({}) on {} of {} rows in {:.2} s",
            report.version,
            report.algorithm.name(),
            report.training_rows,
            report.rows,
            report.fit_seconds
        );
        if let Some(bytes) = report.peak_memory_bytes {
            text.push_str(&format!(", peak memory {:.0} MB", bytes as f64 / 1e6));
        }
        match &report.metrics {
            Some(m) => text.push_str(&format!("\nHoldout ({} rows): {}", m.rows, metrics_line(m))),
            None => text.push_str("\nNo holdout: trained on every row, not evaluated."),
        }
        if let Some(cv) = cv {
            text.push_str(&format!("\n{}", cv_line(cv)));
        }
        if !report.ignored_columns.is_empty() {
            text.push_str(&format!(
                "\nIgnored columns: {}",
                report.ignored_columns.join(", ")
            ));
        }
        if let Some(run_id) = run_id {
            text.push_str(&format!("\nMLflow run: {run_id}"));
        }
        text.push_str(&format!(
            "\n{}: {}\nChampion: {}",
            if report.promoted {
                "Promoted"
            } else {
                "Not promoted"
            },
            report.reason,
            report.champion.as_deref().unwrap_or("none")
        ));
        text
    });
}

/// Reports a training that was not run: the champion already is its result.
fn print_unchanged(unchanged: &Unchanged, output: Output) {
    let mut value = serde_json::to_value(unchanged).unwrap_or_default();
    value["status"] = json!("unchanged");
    value["promoted"] = json!(false);
    value["version"] = json!(unchanged.champion);
    output.print(&value, || {
        format!(
            "Unchanged: champion {} was trained on this data with this recipe; nothing trained \
             or stored (--force trains anyway).",
            unchanged.champion
        )
    });
}

pub(super) fn metrics_line(m: &Metrics) -> String {
    format!(
        "RMSE {:.4}  MAE {:.4}  R² {:.4}  within ±0.5 {:.1}%  within ±1.0 {:.1}%",
        m.rmse,
        m.mae,
        m.r2,
        m.within_0_5 * 100.0,
        m.within_1_0 * 100.0
    )
}

pub(super) fn cv_line(cv: &CrossValidation) -> String {
    format!(
        "Cross-validation ({} folds): RMSE {:.4} ± {:.4}  MAE {:.4} ± {:.4}  R² {:.4} ± {:.4}",
        cv.folds, cv.rmse.mean, cv.rmse.sd, cv.mae.mean, cv.mae.sd, cv.r2.mean, cv.r2.sd
    )
}
