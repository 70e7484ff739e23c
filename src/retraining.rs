//! The training workflow shared by every trigger (CLI, HTTP, timer, upload): fit a
//! challenger off the async runtime, store it as a new version, score the champion on the
//! challenger's holdout, and move the champion pointer by compare-and-swap if the rules say so.
//! A failed or worse training never touches the serving model.

use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::model::algorithm::Algorithm;
use crate::model::artifact::ModelArtifact;
use crate::model::dataset::{Dataset, DatasetError};
use crate::model::metrics::Metrics;
use crate::model::training::{train, TrainError, TrainOptions, TrainedModel};
use crate::registry::promotion::{decide, ChampionScore, Decision};
use crate::registry::{Champion, ChampionPointer, ModelStore, Registry, RegistryError, StoreError};

/// How many times a lost compare-and-swap is re-decided before giving up.
const MAX_PROMOTION_ATTEMPTS: usize = 16;

/// Promotion rules for one training.
#[derive(Debug, Clone, Copy)]
pub struct PromotionPolicy {
    /// Relative RMSE slack (0.01 = 1 %).
    pub tolerance: f64,
    pub force: bool,
    /// Versions retention keeps after each training (plus the champion and its previous).
    pub keep_versions: usize,
}

/// What a training produced and decided.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingReport {
    pub version: String,
    pub algorithm: Algorithm,
    pub metrics: Option<Metrics>,
    pub rows: usize,
    pub training_rows: usize,
    pub promoted: bool,
    /// The champion after this training.
    pub champion: Option<String>,
    pub reason: String,
    pub champion_rmse: Option<f64>,
    pub fit_seconds: f64,
    pub ignored_columns: Vec<String>,
    pub data_sha256: String,
}

#[derive(Debug, Error)]
pub enum RetrainError {
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the champion pointer kept changing during promotion; try again")]
    Contended,
}

impl RetrainError {
    /// Whether the input was at fault (retrying the same input cannot help).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            RetrainError::Data(_)
                | RetrainError::Registry(RegistryError::Unservable { .. })
                | RetrainError::Train(TrainError::BadHoldout(_))
                | RetrainError::Train(TrainError::BadFolds { .. })
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

/// The trained model, the report, and the champion pointer after the decision.
#[derive(Clone)]
pub struct Retrained {
    pub report: TrainingReport,
    pub artifact: Arc<ModelArtifact>,
    pub champion: Option<ChampionPointer>,
}

/// Trains on `dataset`, stores the version, and promotes it per `policy`.
pub async fn train_and_publish(
    registry: &Registry,
    dataset: Dataset,
    options: TrainOptions,
    policy: PromotionPolicy,
) -> Result<Retrained, RetrainError> {
    let rows = dataset.rows.len();
    let ignored_columns = dataset.ignored_columns.clone();
    let data_sha256 = dataset.sha256.clone();
    let trained = tokio::task::spawn_blocking(move || train(&dataset, &options))
        .await
        .map_err(|e| {
            RegistryError::Store(StoreError::Other(format!("training task failed: {e}")))
        })??;
    registry.save(&trained.artifact).await?;
    let (decision, champion) = promote_if_better(registry, &trained, policy).await?;
    // After every training, promoted or not, so kept challengers cannot pile up.
    match registry.retain(policy.keep_versions).await {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(?deleted, "old model versions deleted")
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
        fit_seconds: card.fit_seconds,
        ignored_columns,
        data_sha256,
    };
    Ok(Retrained {
        report,
        artifact: Arc::new(trained.artifact),
        champion,
    })
}

/// Compares with the champion and moves the pointer; on a lost race, re-reads and re-decides.
async fn promote_if_better(
    registry: &Registry,
    trained: &TrainedModel,
    policy: PromotionPolicy,
) -> Result<(Decision, Option<ChampionPointer>), RetrainError> {
    let challenger_rmse = trained.artifact.card.metrics.map(|m| m.rmse);
    let version = &trained.artifact.card.version;
    for _ in 0..MAX_PROMOTION_ATTEMPTS {
        let current = registry.champion().await?;
        let score = match &current {
            None => ChampionScore::None,
            Some(pointer) => score_champion(registry, &pointer.champion.version, trained).await?,
        };
        let decision = decide(challenger_rmse, &score, policy.tolerance, policy.force);
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
    }
    Err(RetrainError::Contended)
}

/// The champion's RMSE on the challenger's holdout rows.
async fn score_champion(
    registry: &Registry,
    champion_version: &str,
    trained: &TrainedModel,
) -> Result<ChampionScore, RetrainError> {
    if trained.holdout_rows.is_empty() {
        return Ok(ChampionScore::Rmse(f64::NAN));
    }
    let champion = match registry.load(champion_version).await {
        Ok(artifact) => artifact,
        // Unreachable or refused: nothing is known about the champion, so no comparison.
        Err(error) if error.is_access_problem() => return Err(error.into()),
        Err(error) => return Ok(ChampionScore::Unusable(error.to_string())),
    };
    match champion.predict(&trained.holdout_rows) {
        Ok(predictions) => Ok(ChampionScore::Rmse(
            Metrics::compute(&predictions, &trained.holdout_targets).rmse,
        )),
        Err(error) => Ok(ChampionScore::Unusable(error.to_string())),
    }
}
