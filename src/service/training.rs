//! Trainings started by the server (HTTP, timer, upload, first start): the shared workflow
//! plus what a running instance adds: metrics, the model swap, and an immediate metrics push.

use std::time::Instant;

use crate::feedback::labelled_rows::{self, FeedbackRows};
use crate::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use crate::model::training::{TrainOptions, Trigger};
use crate::registry::StoreError;
use crate::retraining::workflow::{self, Quiet, TrackingMode, TrainingInput, TrainingRequest};
use crate::retraining::{Outcome, PromotionPolicy, RetrainError};
use crate::sources::TrainingData;
use crate::telemetry::metrics::{TrainingOutcome, METRICS};
use crate::telemetry::push::{push_group, training_success_text, TRAINING_JOB};

use super::state::SharedState;

/// How the last training on this instance ended (any trigger), for `GET /api/train`.
#[derive(Debug, Clone)]
pub enum LastTraining {
    Finished {
        trigger: Trigger,
        report: Box<crate::retraining::TrainingReport>,
    },
    Failed {
        trigger: Trigger,
        error: String,
    },
}

/// The labelled production rows a training adds to its data.
pub enum LabelledRows {
    /// Those the last join wrote, read as the training starts.
    Latest,
    /// These, read by the caller: an upload checks for a redelivery against the very rows it
    /// then trains on.
    Read(Option<FeedbackRows>),
}

/// Why an HTTP-started training did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another training is running on this instance")]
    Busy,
    /// The training data could not be read from its store.
    #[error("the training data cannot be read: {0}")]
    Data(crate::registry::StoreError),
    #[error(transparent)]
    Train(RetrainError),
    /// The task running the training ended without a result (it panicked).
    #[error("the training task ended without a result")]
    Lost,
}

/// Starts an HTTP-requested training in its own task, which owns the training lock: a client
/// that hangs up stops waiting, not the training, and a second request meanwhile is refused.
pub async fn start_http_training(
    state: &SharedState,
    algorithm: Option<Algorithm>,
    force: bool,
) -> Result<Outcome, StartError> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let state = state.clone();
    tokio::spawn(async move {
        let Some(_guard) = state.try_start_training() else {
            let _ = started_tx.send(false);
            return;
        };
        let _ = started_tx.send(true);
        let source = crate::sources::TrainingSource::from_settings(&state.settings);
        let result = match crate::sources::load_training_data(&state.settings, &source).await {
            Ok(data) => train_on(
                &state,
                Trigger::Http,
                data,
                LabelledRows::Latest,
                algorithm,
                force,
            )
            .await
            .map_err(StartError::Train),
            Err(error) => {
                tracing::warn!(%error, "training data unavailable");
                state.remember_training(LastTraining::Failed {
                    trigger: Trigger::Http,
                    error: error.to_string(),
                });
                Err(StartError::Data(error))
            }
        };
        // The requester may be gone; the outcome is kept for `GET /api/train` either way.
        let _ = done_tx.send(result);
    });
    if !started_rx.await.unwrap_or(false) {
        return Err(StartError::Busy);
    }
    done_rx.await.unwrap_or(Err(StartError::Lost))
}

/// Runs `work` in its own task once the training lock is free; the task owns the lock's guard
/// until `work` ends. The caller only waits for the result: if its future is dropped (the
/// Functions host cancelled the invocation, the connection closed), the work and the lock go
/// on to the end, so no second training can start while a fit is still running. `None` if
/// the task panicked.
pub async fn run_exclusive<T, F, Fut>(state: &SharedState, work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(SharedState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let state = state.clone();
    let task = tokio::spawn(async move {
        let _guard = state.start_training().await;
        work(state.clone()).await
    });
    task.await.ok()
}

/// Trains on `data` with the default recipe, unless the champion is what that training would
/// produce (see [`identical_champion`]) and `force` is off; the caller holds the training lock.
pub async fn train_on(
    state: &SharedState,
    trigger: Trigger,
    data: TrainingData,
    labelled: LabelledRows,
    algorithm: Option<Algorithm>,
    force: bool,
) -> Result<Outcome, RetrainError> {
    let started = Instant::now();
    tracing::info!(trigger = trigger.as_str(), source = %data.source.name, "training started");
    let result = run(state, trigger, data, labelled, algorithm, force).await;
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(Outcome::Unchanged(unchanged)) => {
            tracing::info!(
                champion = %unchanged.champion,
                trigger = trigger.as_str(),
                "training skipped: nothing changed since the champion was trained"
            );
            METRICS.record_training(trigger.as_str(), TrainingOutcome::Unchanged, seconds, None);
            report_success(state);
            state.push.push_now();
            return result;
        }
        Ok(Outcome::Trained(retrained)) => {
            let outcome = if retrained.report.promoted {
                TrainingOutcome::Promoted
            } else {
                TrainingOutcome::KeptChampion
            };
            METRICS.record_training(trigger.as_str(), outcome, seconds, Some(&retrained.report));
            report_success(state);
            state.set_write_problem(None);
            state.install_if_promoted(retrained);
            state.remember_training(LastTraining::Finished {
                trigger,
                report: Box::new(retrained.report.clone()),
            });
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
            if let Some(problem) = write_problem(error) {
                state.set_write_problem(Some(problem));
            }
            state.remember_training(LastTraining::Failed {
                trigger,
                error: error.to_string(),
            });
            tracing::warn!(%error, trigger = trigger.as_str(), outcome = outcome.as_str(), "training did not produce a model");
        }
    }
    state.push.push_now();
    result
}

/// Tells the shared training group when this training succeeded (see
/// [`TRAINING_JOB`]), in a task of its own: a slow gateway never delays an answer.
fn report_success(state: &SharedState) {
    if let Some(settings) = state.settings.push.clone() {
        let text = training_success_text(METRICS.last_success.get());
        tokio::spawn(async move {
            push_group(&settings, TRAINING_JOB, text).await;
        });
    }
}

/// A store failure that says the store refuses writes (a full or read-only disk, a missing
/// role), as health reports it; `None` for anything else (an unreachable store is reported by
/// the pointer checks).
fn write_problem(error: &RetrainError) -> Option<String> {
    match error {
        RetrainError::Registry(registry_error) => registry_error
            .store_error()
            .filter(|e| !e.is_transient() && !matches!(e, StoreError::Conflict))
            .map(|e| format!("the model store refused to store a training's result: {e}")),
        _ => None,
    }
}

/// A deployment check of an upload: the data read and fitted with the recipe an upload's
/// training uses, nothing stored (see [`workflow::check`]); the caller holds the training
/// lock, so a check never runs beside a training.
pub async fn check_upload(data: TrainingData) -> Result<workflow::Checked, RetrainError> {
    let spec = ModelSpec::build(Algorithm::default(), &SpecOverrides::default())?;
    let options = TrainOptions::new(spec, data.source, Trigger::Upload);
    workflow::check(TrainingInput::Bytes(data.bytes), options).await
}

/// The training itself: the shared workflow with this instance's data, recipe and rules.
async fn run(
    state: &SharedState,
    trigger: Trigger,
    data: TrainingData,
    labelled: LabelledRows,
    algorithm: Option<Algorithm>,
    force: bool,
) -> Result<Outcome, RetrainError> {
    let feedback = match labelled {
        LabelledRows::Latest => labelled_rows::load(&state.settings).await,
        LabelledRows::Read(rows) => rows,
    };
    let spec = ModelSpec::build(algorithm.unwrap_or_default(), &SpecOverrides::default())?;
    let request = TrainingRequest {
        input: TrainingInput::Bytes(data.bytes),
        options: TrainOptions::new(spec, data.source, trigger),
        policy: PromotionPolicy {
            tolerance: state.settings.promotion_tolerance,
            min_comparable_rows: state.settings.min_comparable_rows,
            force,
            keep_versions: state.settings.keep_versions,
            max_label_shift: state.settings.max_label_shift,
        },
        feedback,
        cross_validation: None,
        tracking: TrackingMode::Background,
    };
    let finished = workflow::run(&state.registry, &state.tracker, request, &Quiet).await?;
    Ok(finished.outcome)
}
