//! `GET|POST /api/train`: retrain on the configured data, one training at a time.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::schema::TrainResponse;
use crate::model::algorithm::Algorithm;
use crate::model::training::Trigger;
use crate::server::state::SharedState;
use crate::server::training::train_on;
use crate::stores::{load_training_data, TrainingSource};

/// Optional query parameters (unknown ones, like `code`, are ignored).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TrainQuery {
    /// Algorithm [default: extra-trees].
    pub algorithm: Option<Algorithm>,
    /// Promote whatever the score.
    #[serde(default)]
    pub force: bool,
}

/// Retrains on `SOMMELIER_TRAINING_DATA` (default: the bundled data) and promotes per the rules.
#[utoipa::path(
    post,
    path = "/api/train",
    params(TrainQuery),
    responses(
        (status = 200, body = TrainResponse),
        (status = 400, description = "The training data is invalid", body = super::error::ErrorBody),
        (status = 409, description = "A training is already running", body = super::error::ErrorBody),
        (status = 503, description = "The model store is unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn train(
    State(state): State<SharedState>,
    query: Result<Query<TrainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TrainResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(_guard) = state.try_start_training() else {
        return Err(ApiError::TrainingInProgress);
    };
    let source = TrainingSource::from_settings(&state.settings);
    let data = load_training_data(&state.settings, &source)
        .await
        .map_err(|e| ApiError::from(crate::registry::RegistryError::Store(e)))?;
    let retrained = train_on(&state, Trigger::Http, data, query.algorithm, query.force).await?;
    let report = retrained.report;
    Ok(Json(TrainResponse {
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
    }))
}
