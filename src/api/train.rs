//! `POST /api/train` retrains on the configured data, one training at a time per instance;
//! `GET /api/train` reports the last training this instance finished, changing nothing.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::schema::{TrainResponse, TrainingStatus};
use crate::model::algorithm::Algorithm;
use crate::retraining::{Outcome, TrainingReport, Unchanged};
use crate::service::state::SharedState;
use crate::service::training::{start_http_training, LastTraining, StartError};

/// Optional query parameters (unknown ones, like `code`, are ignored).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TrainQuery {
    /// Algorithm [default: extra-trees].
    pub algorithm: Option<Algorithm>,
    /// Promote whatever the score.
    #[serde(default)]
    pub force: bool,
}

/// Retrains on `SOMMELIER_TRAINING_DATA` (default: the bundled data) and promotes per the
/// rules; when the champion was trained on the same data with the same recipe, nothing is
/// trained (`status: unchanged`) unless `force`. The training runs in its own task: a client
/// that hangs up does not stop it.
#[utoipa::path(
    post,
    path = "/api/train",
    params(TrainQuery),
    responses(
        (status = 200, body = TrainResponse),
        (status = 400, description = "A parameter is invalid", body = super::error::ErrorBody),
        (status = 403, description = "Local server: the request is not from this machine's own pages", body = super::error::ErrorBody),
        (status = 409, description = "A training is already running", body = super::error::ErrorBody),
        (status = 500, description = "Configuration error: the server's own training data cannot be read or is invalid, or the store refuses writes", body = super::error::ErrorBody),
        (status = 503, description = "The model store is unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn train(
    State(state): State<SharedState>,
    query: Result<Query<TrainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TrainResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match start_http_training(&state, query.algorithm, query.force).await {
        Ok(Outcome::Trained(retrained)) => Ok(Json(response(retrained.report))),
        Ok(Outcome::Unchanged(unchanged)) => Ok(Json(unchanged_response(unchanged))),
        Err(StartError::Busy) => Err(ApiError::TrainingInProgress),
        Err(StartError::Data(error)) if error.is_transient() => {
            Err(crate::registry::RegistryError::Store(error).into())
        }
        Err(StartError::Data(error)) => Err(ApiError::Configuration(format!(
            "the server's training data (SOMMELIER_TRAINING_DATA) cannot be read: {error}"
        ))),
        Err(StartError::Train(error)) => Err(error.into()),
        Err(StartError::Lost) => Err(ApiError::Internal(
            "the training task ended without a result".to_string(),
        )),
    }
}

/// The last training on this instance (any trigger) and whether one is running now.
#[utoipa::path(
    get,
    path = "/api/train",
    responses((status = 200, body = TrainingStatus))
)]
pub async fn status(State(state): State<SharedState>) -> Json<TrainingStatus> {
    let running = state.try_start_training().is_none();
    let (last, last_error, last_trigger) = match state.last_training() {
        None => (None, None, None),
        Some(LastTraining::Finished { trigger, report }) => (
            Some(response(*report)),
            None,
            Some(trigger.as_str().to_string()),
        ),
        Some(LastTraining::Failed { trigger, error }) => {
            (None, Some(error), Some(trigger.as_str().to_string()))
        }
    };
    Json(TrainingStatus {
        running,
        last_trigger,
        last,
        last_error,
    })
}

fn response(report: TrainingReport) -> TrainResponse {
    TrainResponse {
        status: "trained",
        message: "Model training successful!",
        version: report.version,
        algorithm: report.algorithm.name().to_string(),
        metrics: report.metrics,
        rows: report.rows,
        promoted: report.promoted,
        champion: report.champion,
        reason: report.reason,
        champion_rmse: report.champion_rmse,
        comparison: report.comparison,
        ignored_columns: report.ignored_columns,
        fit_seconds: report.fit_seconds,
        peak_memory_bytes: report.peak_memory_bytes,
    }
}

/// The answer when nothing was trained: the champion, which stays, and why.
fn unchanged_response(unchanged: Unchanged) -> TrainResponse {
    TrainResponse {
        status: "unchanged",
        message: "Nothing to train: the champion was trained on this data with this recipe.",
        version: unchanged.champion.clone(),
        algorithm: unchanged.algorithm.name().to_string(),
        metrics: unchanged.metrics,
        rows: unchanged.training_rows,
        promoted: false,
        champion: Some(unchanged.champion),
        reason: unchanged.reason,
        champion_rmse: unchanged.metrics.map(|m| m.rmse),
        comparison: None,
        ignored_columns: Vec::new(),
        fit_seconds: 0.0,
        peak_memory_bytes: None,
    }
}
