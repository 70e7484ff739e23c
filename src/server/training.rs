//! Trainings started by the server (HTTP, timer, upload, first start): the shared workflow
//! plus what a running instance adds: metrics, the model swap, and an immediate metrics push.

use std::time::Instant;

use crate::model::algorithm::{Algorithm, FitError, ModelSpec, SpecOverrides};
use crate::model::dataset::{read_training_data, sha256_hex};
use crate::model::split::DEFAULT_SPLIT_KEY;
use crate::model::training::{TrainError, TrainOptions, Trigger};
use crate::registry::{RegistryError, StoreError};
use crate::retraining::{train_and_publish, PromotionPolicy, RetrainError, Retrained};
use crate::stores::TrainingData;
use crate::telemetry::metrics::{TrainingOutcome, METRICS};
use crate::tracking::TrainingContext;

use super::state::SharedState;

/// Share of rows held out when the server trains.
pub const HOLDOUT: f64 = 0.25;

/// Trains on `data` with the default recipe; the caller holds the training lock.
pub async fn train_on(
    state: &SharedState,
    trigger: Trigger,
    data: TrainingData,
    algorithm: Option<Algorithm>,
    force: bool,
) -> Result<Retrained, RetrainError> {
    let started = Instant::now();
    let result = run(state, trigger, data, algorithm, force).await;
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(retrained) => {
            let outcome = if retrained.report.promoted {
                TrainingOutcome::Promoted
            } else {
                TrainingOutcome::KeptChampion
            };
            METRICS.record_training(trigger.as_str(), outcome, seconds, Some(&retrained.report));
            state.install_if_promoted(retrained);
            tracing::info!(
                version = %retrained.report.version,
                trigger = trigger.as_str(),
                promoted = retrained.report.promoted,
                reason = %retrained.report.reason,
                rmse = retrained.report.metrics.map(|m| m.rmse),
                "training finished"
            );
        }
        Err(error) => {
            let outcome = if error.is_input_error() {
                TrainingOutcome::Rejected
            } else {
                TrainingOutcome::Failed
            };
            METRICS.record_training(trigger.as_str(), outcome, seconds, None);
            tracing::warn!(%error, trigger = trigger.as_str(), outcome = outcome.as_str(), "training did not produce a model");
        }
    }
    state.push.push_now();
    result
}

async fn run(
    state: &SharedState,
    trigger: Trigger,
    data: TrainingData,
    algorithm: Option<Algorithm>,
    force: bool,
) -> Result<Retrained, RetrainError> {
    let spec = ModelSpec::build(algorithm.unwrap_or_default(), &SpecOverrides::default())
        .map_err(|e| RetrainError::Train(TrainError::Fit(FitError::Fit(e.to_string()))))?;
    let options = TrainOptions {
        spec,
        holdout: HOLDOUT,
        split_key: DEFAULT_SPLIT_KEY,
        source: data.source,
        trigger,
    };
    let bytes = data.bytes;
    let sha = sha256_hex(&bytes);
    let read = tokio::task::spawn_blocking(move || read_training_data(&bytes[..]))
        .await
        .map_err(|e| {
            RetrainError::Registry(RegistryError::Store(StoreError::Other(format!(
                "reader task failed: {e}"
            ))))
        })?;
    let dataset = match read {
        Ok(dataset) => dataset,
        Err(error) => {
            let context = TrainingContext {
                trigger,
                source: options.source.clone(),
                holdout: options.holdout,
                spec: options.spec,
                rows: 0,
                data_sha256: sha,
            };
            track_failure(state, context, error.to_string());
            return Err(error.into());
        }
    };
    let context = TrainingContext::new(&options, &dataset);
    let policy = PromotionPolicy {
        tolerance: state.settings.promotion_tolerance,
        min_comparable_rows: state.settings.min_comparable_rows,
        force,
        keep_versions: state.settings.keep_versions,
    };
    let result = train_and_publish(&state.registry, dataset, options, policy).await;
    match &result {
        Ok(retrained) => track_success(state, context, retrained),
        Err(error) => track_failure(state, context, error.to_string()),
    }
    result
}

/// Records the training in MLflow in the background: never on the critical path, and never
/// while the training lock is held.
fn track_success(state: &SharedState, context: TrainingContext, retrained: &Retrained) {
    if !state.tracker.is_enabled() {
        return;
    }
    let tracker = state.tracker.clone();
    let retrained = retrained.clone();
    tokio::spawn(async move {
        if let Some(run_id) = tracker.training_succeeded(&context, &retrained).await {
            tracing::info!(version = %retrained.report.version, %run_id, "training tracked in MLflow");
        }
    });
}

fn track_failure(state: &SharedState, context: TrainingContext, error: String) {
    if !state.tracker.is_enabled() {
        return;
    }
    let tracker = state.tracker.clone();
    tokio::spawn(async move { tracker.training_failed(&context, &error).await });
}
