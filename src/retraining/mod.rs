//! The training workflow shared by every trigger (CLI, HTTP, timer, upload): fit a
//! challenger off the async runtime, store it as a new version, score the champion on the
//! challenger's holdout, and move the champion pointer by compare-and-swap if the rules say so.
//! A failed or worse training never touches the serving model, and a training that would
//! repeat the champion's (same data, recipe and split) is not run at all: see [`retrain`].

pub mod workflow;

use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::model::algorithm::{Algorithm, SpecError};
use crate::model::artifact::ModelArtifact;
use crate::model::comparison::PairedComparison;
use crate::model::dataset::{Dataset, DatasetError};
use crate::model::metrics::population_stability_index;
use crate::model::metrics::Metrics;
use crate::model::split::SplitRule;
use crate::model::training::{train_owned, HeldOut, TrainError, TrainOptions, TrainedModel};
use crate::registry::promotion::{decide, hold_for_label_shift, ChampionScore, Decision};
pub use crate::registry::published::{Retrained, TrainingReport};
use crate::registry::{Champion, ChampionPointer, ModelStore, Registry, RegistryError, StoreError};

/// How many times a lost compare-and-swap is re-decided before giving up.
const MAX_PROMOTION_ATTEMPTS: usize = 16;

/// Promotion rules for one training.
#[derive(Debug, Clone, Copy)]
pub struct PromotionPolicy {
    /// Relative RMSE slack (0.01 = 1 %).
    pub tolerance: f64,
    /// The fewest rows unseen by both models for a fair comparison.
    pub min_comparable_rows: usize,
    pub force: bool,
    /// Versions retention keeps after each training (plus the champion and its previous).
    pub keep_versions: usize,
    /// Label PSI against the champion above which a challenger is held (see
    /// [`hold_for_label_shift`]).
    pub max_label_shift: f64,
}

#[derive(Debug, Error)]
pub enum RetrainError {
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The recipe asked for is not valid (an out-of-range hyperparameter).
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the champion pointer kept changing during promotion; try again")]
    Contended,
    /// A task of the workflow (fit, scoring) panicked or was cancelled.
    #[error("the {task} task failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
}

impl RetrainError {
    /// Whether the input was at fault (retrying the same input cannot help).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            RetrainError::Data(_)
                | RetrainError::Spec(_)
                | RetrainError::Registry(RegistryError::Unservable { .. })
                | RetrainError::Train(TrainError::BadHoldout(_))
                | RetrainError::Train(TrainError::BadFolds { .. })
                | RetrainError::Train(TrainError::NothingToTrainOn { .. })
        )
    }

    /// Whether the store refused our credentials: a configuration error, to surface loudly.
    pub fn is_configuration(&self) -> bool {
        matches!(self, RetrainError::Registry(RegistryError::Store(e)) if e.is_configuration())
    }

    /// Whether the store was unreachable, so a retry later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RetrainError::Registry(RegistryError::Store(e)) if e.is_transient())
            || matches!(self, RetrainError::Contended)
    }
}

/// A training that was not run: the champion was trained on the same data with the same
/// recipe and split, so a new fit would only store an identical model again.
#[derive(Debug, Clone, Serialize)]
pub struct Unchanged {
    /// The champion, which stays.
    pub champion: String,
    pub algorithm: Algorithm,
    /// The champion's holdout metrics.
    pub metrics: Option<Metrics>,
    /// Every row of the data, as in a training's report: the training rows and the held-out.
    pub rows: usize,
    pub training_rows: usize,
    pub reason: String,
    pub data_sha256: String,
}

/// What a training request came to.
#[derive(Clone)]
pub enum Outcome {
    Trained(Box<Retrained>),
    /// Nothing new to learn: see [`identical_champion`].
    Unchanged(Unchanged),
}

/// The one rule every trigger follows: the champion already is the result of training on
/// data with this SHA-256 with these options (algorithm, hyperparameters, seed, holdout
/// and split key). A champion whose card cannot be read, or whose model cannot serve, is not
/// identical (training then replaces it); an unreachable store is an error.
pub async fn identical_champion(
    registry: &Registry,
    data_sha256: &str,
    options: &TrainOptions,
) -> Result<Option<Unchanged>, RetrainError> {
    let Some(pointer) = registry.champion().await? else {
        return Ok(None);
    };
    let card = match registry.card(&pointer.champion.version).await {
        Ok(card) => card,
        Err(error) if error.is_access_problem() => return Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "the champion's card cannot be read; training");
            return Ok(None);
        }
    };
    let same_split = card.split == Some(SplitRule::new(options.split_key, options.holdout));
    if card.data_sha256 != data_sha256 || card.spec != options.spec || !same_split {
        return Ok(None);
    }
    // A champion whose model is missing or cut short is not the result a training would
    // give: training replaces it. (Metadata only: this runs on every timer tick.)
    match registry.stored_model_problem(&card.version).await {
        Ok(None) => {}
        Err(error) if error.is_access_problem() => return Err(error.into()),
        Ok(Some(problem)) => {
            tracing::warn!(champion = %card.version, %problem, "the champion cannot serve; training");
            return Ok(None);
        }
        Err(error) => {
            tracing::warn!(champion = %card.version, %error, "the champion cannot be checked; training");
            return Ok(None);
        }
    }
    Ok(Some(Unchanged {
        reason: format!(
            "unchanged: the champion {} was trained on the same data (SHA-256 {}…) with the \
             same algorithm, parameters and holdout; nothing was trained or stored \
             (force a training to store another version)",
            card.version,
            &data_sha256[..data_sha256.len().min(12)]
        ),
        champion: card.version,
        algorithm: card.spec.algorithm(),
        rows: card.training_rows + card.metrics.map_or(0, |metrics| metrics.rows),
        metrics: card.metrics,
        training_rows: card.training_rows,
        data_sha256: data_sha256.to_string(),
    }))
}

/// Trains and publishes (see [`train_and_publish`]) unless the champion is identical to what
/// the training would produce; `policy.force` always trains.
pub async fn retrain(
    registry: &Registry,
    dataset: Dataset,
    options: TrainOptions,
    policy: PromotionPolicy,
) -> Result<Outcome, RetrainError> {
    if !policy.force {
        if let Some(unchanged) = identical_champion(registry, &dataset.sha256, &options).await? {
            return Ok(Outcome::Unchanged(unchanged));
        }
    }
    let retrained = train_and_publish(registry, dataset, options, policy).await?;
    Ok(Outcome::Trained(Box::new(retrained)))
}

/// Fits off the async workers (a fit takes seconds of processor time).
pub(crate) async fn fit(
    dataset: Dataset,
    options: TrainOptions,
) -> Result<crate::model::training::TrainedModel, RetrainError> {
    tokio::task::spawn_blocking(move || train_owned(dataset, &options))
        .await
        .map_err(|e| RetrainError::TaskFailed {
            task: "training",
            reason: e.to_string(),
        })?
        .map_err(RetrainError::from)
}

/// Trains on `dataset`, compares it with the champion, stores the version (its card carries
/// the comparison), and promotes it per `policy`.
pub async fn train_and_publish(
    registry: &Registry,
    dataset: Dataset,
    options: TrainOptions,
    policy: PromotionPolicy,
) -> Result<Retrained, RetrainError> {
    registry.sweep_leftovers().await;
    let rows = dataset.rows.len();
    let ignored_columns = dataset.ignored_columns.clone();
    let data_sha256 = dataset.sha256.clone();
    let mut trained = fit(dataset, options).await?;
    let current = registry.champion().await?;
    let decision = judge(registry, current.as_ref(), &trained, policy).await?;
    trained.artifact.card.comparison = decision.comparison;
    registry.save(&trained.artifact).await?;
    let (decision, champion) =
        promote_if_better(registry, &trained, policy, current, decision).await?;
    // After every training, promoted or not, so kept challengers cannot pile up.
    match registry.retain(policy.keep_versions).await {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(deleted = %deleted.join(", "), "old model versions deleted")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "retention failed; old versions kept"),
    }
    let card = &trained.artifact.card;
    let report = TrainingReport {
        version: card.version.clone(),
        algorithm: card.spec.algorithm(),
        metrics: card.metrics,
        rows,
        training_rows: card.training_rows,
        promoted: decision.promote,
        champion: champion.as_ref().map(|p| p.champion.version.clone()),
        reason: decision.reason,
        champion_rmse: decision.champion_rmse,
        comparison: decision.comparison,
        label_shift: decision.label_shift,
        held_for_label_shift: decision.held_for_label_shift,
        fit_seconds: card.fit_seconds,
        peak_memory_bytes: card.peak_memory_bytes,
        ignored_columns,
        data_sha256,
    };
    Ok(Retrained {
        report,
        artifact: Arc::new(trained.artifact),
        champion,
    })
}

/// Moves the pointer to the stored challenger if `decision` says so; on a lost race,
/// re-reads the champion and decides again (a bounded number of times).
async fn promote_if_better(
    registry: &Registry,
    trained: &TrainedModel,
    policy: PromotionPolicy,
    mut current: Option<ChampionPointer>,
    mut decision: Decision,
) -> Result<(Decision, Option<ChampionPointer>), RetrainError> {
    let version = &trained.artifact.card.version;
    for _ in 0..MAX_PROMOTION_ATTEMPTS {
        if !decision.promote {
            return Ok((decision, current));
        }
        let champion = Champion {
            version: version.clone(),
            previous: current.as_ref().map(|p| p.champion.version.clone()),
            updated_at: crate::registry::now_rfc3339(),
        };
        let expected = current.as_ref().map(|p| &p.etag);
        match registry.store().write_champion(&champion, expected).await {
            Ok(etag) => return Ok((decision, Some(ChampionPointer { champion, etag }))),
            Err(StoreError::Conflict) => {
                tracing::info!(%version, "champion changed while promoting; deciding again");
            }
            Err(other) => return Err(RegistryError::from(other).into()),
        }
        current = registry.champion().await?;
        decision = judge(registry, current.as_ref(), trained, policy).await?;
    }
    Err(RetrainError::Contended)
}

/// Scores the champion against the challenger and decides. The scoring runs off the async
/// workers (the champion predicts every comparable row).
async fn judge(
    registry: &Registry,
    current: Option<&ChampionPointer>,
    trained: &TrainedModel,
    policy: PromotionPolicy,
) -> Result<Decision, RetrainError> {
    let mut champion_labels = None;
    let score = match current {
        None => ChampionScore::None,
        Some(pointer) => match load_champion(registry, &pointer.champion.version).await? {
            Err(unusable) => unusable,
            Ok(champion) => {
                champion_labels = champion.card.label_counts;
                let held_out = Arc::clone(&trained.holdout);
                let minimum = policy.min_comparable_rows;
                tokio::task::spawn_blocking(move || score_champion(&champion, &held_out, minimum))
                    .await
                    .map_err(|e| RetrainError::TaskFailed {
                        task: "scoring",
                        reason: e.to_string(),
                    })?
            }
        },
    };
    let challenger_rmse = trained.artifact.card.metrics.map(|m| m.rmse);
    let decision = decide(challenger_rmse, &score, policy.tolerance, policy.force);
    let shift = champion_labels
        .zip(trained.artifact.card.label_counts)
        .map(|(champion, challenger)| population_stability_index(&champion, &challenger));
    Ok(hold_for_label_shift(
        decision,
        shift,
        policy.max_label_shift,
        policy.force,
    ))
}

/// The champion's artifact, or why it cannot be used. Store access failures are errors: an
/// unreachable store (retrying later may succeed) or refused credentials (a configuration
/// error) say nothing about the champion. Anything else makes the champion unusable.
async fn load_champion(
    registry: &Registry,
    version: &str,
) -> Result<Result<ModelArtifact, ChampionScore>, RetrainError> {
    match registry.load(version).await {
        Ok(artifact) => Ok(Ok(artifact)),
        Err(error) if error.is_access_problem() => Err(error.into()),
        Err(error) => Ok(Err(ChampionScore::Unusable(error.to_string()))),
    }
}

/// Both models on the challenger's holdout rows that the champion's rule also held out:
/// rows neither model trained on. No fair comparison without a shared rule or enough rows.
fn score_champion(
    champion: &ModelArtifact,
    held_out: &HeldOut,
    min_comparable_rows: usize,
) -> ChampionScore {
    if held_out.rows.is_empty() {
        return ChampionScore::NotComparable(
            "the new model was trained on every row (holdout 0), so nothing is left to compare on"
                .to_string(),
        );
    }
    let Some(champion_rule) = champion.card.split else {
        return ChampionScore::NotComparable(format!(
            "the champion {} records no split rule (it predates rows split by their feature values), so the rows it trained on are unknown",
            champion.card.version
        ));
    };
    let shared = match held_out.split.shared_holdout(&champion_rule) {
        Ok(shared) => shared,
        Err(why) => return ChampionScore::NotComparable(why),
    };
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut challenger = Vec::new();
    for (i, row) in held_out.rows.iter().enumerate() {
        if shared.holds_out(row) {
            rows.push(*row);
            targets.push(held_out.targets[i]);
            challenger.push(held_out.predictions[i]);
        }
    }
    if rows.len() < min_comparable_rows {
        return ChampionScore::NotComparable(format!(
            "only {} rows are unseen by both models; at least {min_comparable_rows} are needed",
            rows.len()
        ));
    }
    match champion.predict(&rows) {
        Ok(old) => ChampionScore::Compared(PairedComparison::compute(&old, &challenger, &targets)),
        Err(error) => ChampionScore::Unusable(error.to_string()),
    }
}
