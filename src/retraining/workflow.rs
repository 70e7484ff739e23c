//! The one training workflow every trigger runs (the CLI, `POST /api/train`, the timer, an
//! upload, a first start): read the data, add the labelled production rows, skip a training
//! that would repeat the champion's, check the store takes writes, fit, publish and decide
//! ([`super::train_and_publish`]), and record the run in MLflow. Callers add only what is
//! theirs: the CLI renders progress and the result, the server counts metrics and installs a
//! promoted model.

use std::io::Read;

use crate::feedback::labelled_rows::{merge, FeedbackRows};
use crate::model::algorithm::Algorithm;
use crate::model::artifact::DataSource;
use crate::model::dataset::{read_training_data, Dataset, DatasetError};
use crate::model::metrics::Metrics;
use crate::model::training::{cross_validate, CrossValidation, TrainOptions, Trigger};
use crate::registry::Registry;
use crate::tracking::{Tracker, TrainingContext};

use super::{
    identical_champion, train_and_publish, Outcome, PromotionPolicy, RetrainError, Retrained,
};

/// The rows to train on, as they arrive.
pub enum TrainingInput {
    /// A whole body or blob, already in memory.
    Bytes(Vec<u8>),
    /// A file or standard input, read as it streams.
    Reader(Box<dyn Read + Send>),
}

/// One training, whatever started it.
pub struct TrainingRequest {
    pub input: TrainingInput,
    /// The recipe, holdout, split key, source and trigger.
    pub options: TrainOptions,
    pub policy: PromotionPolicy,
    /// Labelled production rows to add (see [`crate::feedback::labelled_rows`]).
    pub feedback: Option<FeedbackRows>,
    /// A cross-validation run before the fit (the CLI's `--cv`).
    pub cross_validation: Option<CrossValidationPlan>,
    /// How the run is recorded in MLflow.
    pub tracking: TrackingMode,
}

/// How many folds, shuffled with which seed.
#[derive(Debug, Clone, Copy)]
pub struct CrossValidationPlan {
    pub folds: usize,
    pub seed: u64,
}

/// Whether the caller waits for MLflow (the CLI prints the run id) or the run is recorded in
/// the background (a server never holds its training lock for a tracking server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMode {
    Await,
    Background,
}

/// What a training did besides its outcome.
pub struct Finished {
    pub outcome: Outcome,
    /// The MLflow run, when tracking was awaited and the run was created.
    pub run_id: Option<String>,
    pub cross_validation: Option<CrossValidation>,
}

/// Where a training is, for a caller that shows progress.
pub trait Progress: Send + Sync {
    fn reading(&self, _source: &str) {}
    fn cross_validating(&self, _folds: usize) {}
    fn fold_done(&self, _done: usize) {}
    fn fitting(&self, _algorithm: Algorithm, _rows: usize) {}
    /// The stage shown last is over.
    fn stage_done(&self) {}
}

/// Shows nothing.
pub struct Quiet;

impl Progress for Quiet {}

/// Runs one training from its request to its recorded result.
pub async fn run(
    registry: &Registry,
    tracker: &Tracker,
    request: TrainingRequest,
    progress: &dyn Progress,
) -> Result<Finished, RetrainError> {
    let TrainingRequest {
        input,
        mut options,
        policy,
        feedback,
        cross_validation,
        tracking,
    } = request;
    // Before anything is read or fitted: a store that cannot take the result fails now.
    registry.check_writable().await?;
    let mut dataset = match read(input, &options.source, progress).await? {
        Ok(dataset) => dataset,
        Err(error) => {
            let context = unread_context(&options);
            record_failure(tracker, tracking, context, error.to_string()).await;
            return Err(error.into());
        }
    };
    if let Some(rows) = feedback {
        merge(&mut dataset, &mut options.source, rows);
    }
    // A first start trains because no stored version serves: the champion's card may describe
    // this very training while its model is broken.
    if !policy.force && options.trigger != Trigger::Startup {
        if let Some(unchanged) = identical_champion(registry, &dataset.sha256, &options).await? {
            return Ok(Finished {
                outcome: Outcome::Unchanged(unchanged),
                run_id: None,
                cross_validation: None,
            });
        }
    }
    let cross_validation = match cross_validation {
        Some(plan) => Some(run_cross_validation(&dataset, &options, plan, progress).await?),
        None => None,
    };
    let context = TrainingContext::new(&options, &dataset);
    progress.fitting(options.spec.algorithm(), dataset.rows.len());
    let published = train_and_publish(registry, dataset, options, policy).await;
    progress.stage_done();
    match published {
        Ok(retrained) => {
            let run_id = record_success(tracker, tracking, context, &retrained).await;
            Ok(Finished {
                outcome: Outcome::Trained(Box::new(retrained)),
                run_id,
                cross_validation,
            })
        }
        Err(error) => {
            record_failure(tracker, tracking, context, error.to_string()).await;
            Err(error)
        }
    }
}

/// What a check found: the rows read and the fitted model's scores on its holdout.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub rows: usize,
    pub metrics: Option<Metrics>,
}

/// Reads and fits the rows as a training would, and stores, promotes and records nothing: a
/// deployment check (an upload under [`crate::sources::CHECK_FOLDER`]). The labelled
/// production rows are left out, since the check is of the upload alone.
pub async fn check(input: TrainingInput, options: TrainOptions) -> Result<Checked, RetrainError> {
    let dataset = read(input, &options.source, &Quiet).await??;
    let rows = dataset.rows.len();
    let trained = super::fit(dataset, options).await?;
    Ok(Checked {
        rows,
        metrics: trained.artifact.card.metrics,
    })
}

/// Reads the rows off the async workers. The outer error is the reading task's; the inner,
/// what was wrong with the data (recorded as a failed run).
async fn read(
    input: TrainingInput,
    source: &DataSource,
    progress: &dyn Progress,
) -> Result<Result<Dataset, DatasetError>, RetrainError> {
    progress.reading(&source.name);
    let read = tokio::task::spawn_blocking(move || match input {
        TrainingInput::Bytes(bytes) => read_training_data(&bytes[..]),
        TrainingInput::Reader(reader) => read_training_data(reader),
    })
    .await;
    progress.stage_done();
    read.map_err(|e| RetrainError::TaskFailed {
        task: "reader",
        reason: e.to_string(),
    })
}

async fn run_cross_validation(
    dataset: &Dataset,
    options: &TrainOptions,
    CrossValidationPlan { folds, seed }: CrossValidationPlan,
    progress: &dyn Progress,
) -> Result<CrossValidation, RetrainError> {
    progress.cross_validating(folds);
    let dataset = dataset.clone();
    let spec = options.spec;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        cross_validate(&dataset, &spec, folds, seed, |done| {
            let _ = done_tx.send(done);
        })
    });
    while let Some(done) = done_rx.recv().await {
        progress.fold_done(done);
    }
    let cv = task.await.map_err(|e| RetrainError::TaskFailed {
        task: "cross-validation",
        reason: e.to_string(),
    })?;
    progress.stage_done();
    Ok(cv?)
}

/// The context of a training whose data could not be read.
fn unread_context(options: &TrainOptions) -> TrainingContext {
    TrainingContext {
        trigger: options.trigger,
        source: options.source.clone(),
        holdout: options.holdout,
        spec: options.spec,
        rows: 0,
        data_sha256: String::new(),
    }
}

async fn record_success(
    tracker: &Tracker,
    mode: TrackingMode,
    context: TrainingContext,
    retrained: &Retrained,
) -> Option<String> {
    if !tracker.is_enabled() {
        return None;
    }
    match mode {
        TrackingMode::Await => tracker.training_succeeded(&context, retrained).await,
        TrackingMode::Background => {
            let tracker = tracker.clone();
            let retrained = retrained.clone();
            tokio::spawn(async move {
                if let Some(run_id) = tracker.training_succeeded(&context, &retrained).await {
                    tracing::info!(version = %retrained.report.version, %run_id, "training tracked in MLflow");
                }
            });
            None
        }
    }
}

async fn record_failure(
    tracker: &Tracker,
    mode: TrackingMode,
    context: TrainingContext,
    error: String,
) {
    if !tracker.is_enabled() {
        return;
    }
    match mode {
        TrackingMode::Await => tracker.training_failed(&context, &error).await,
        TrackingMode::Background => {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.training_failed(&context, &error).await });
        }
    }
}
