//! `GET /api/models` lists versions; `POST /api/models/{version}/promote` rolls back or forward.

use axum::extract::{Path, State};
use axum::Json;

use super::error::ApiError;
use super::schema::{ModelSummary, ModelsResponse, PromoteResponse};
use crate::service::state::SharedState;

/// Lists every stored version, newest last, and the champion. A version whose card cannot
/// be read, or whose `model.bin` is missing or not the length its card records, is listed
/// with its problem; so is the champion when this instance could not serve it.
///
/// The listing reads metadata only. A full verification (download and decode every version)
/// is `sommelier models --verify`, not a query parameter here: this route is open to the
/// prediction clients' key, and a request that downloads every stored model is not theirs to
/// send.
#[utoipa::path(get, path = "/api/models", responses((status = 200, body = ModelsResponse), (status = 503, body = super::error::ErrorBody)))]
pub async fn list(State(state): State<SharedState>) -> Result<Json<ModelsResponse>, ApiError> {
    let champion = state.registry.champion().await?.map(|p| p.champion.version);
    let entries = state.registry.versions().await?;
    let run_ids = if state.tracker.is_enabled() {
        let versions: Vec<String> = entries.iter().map(|e| e.version.clone()).collect();
        state.tracker.run_ids(&versions).await
    } else {
        Default::default()
    };
    let champion_problem = state.champion_problem();
    let versions = entries
        .into_iter()
        .map(|entry| {
            let is_champion = Some(&entry.version) == champion.as_ref();
            let mlflow_run_id = run_ids.get(&entry.version).cloned();
            match entry.card {
                Ok(c) => ModelSummary {
                    mlflow_run_id,
                    champion: is_champion,
                    problem: entry
                        .artifact_problem
                        .or_else(|| champion_problem.clone().filter(|_| is_champion)),
                    algorithm: c.spec.algorithm().name().to_string(),
                    version: c.version,
                    created_at: c.created_at,
                    metrics: c.metrics,
                    training_rows: c.training_rows,
                    trigger: c.trigger,
                    source: c.source.name,
                },
                Err(problem) => ModelSummary {
                    mlflow_run_id,
                    champion: is_champion,
                    problem: Some(problem),
                    algorithm: "unknown".to_string(),
                    version: entry.version,
                    created_at: String::new(),
                    metrics: None,
                    training_rows: 0,
                    trigger: String::new(),
                    source: String::new(),
                },
            }
        })
        .collect();
    Ok(Json(ModelsResponse { champion, versions }))
}

/// Makes `version` the champion and serves it at once.
#[utoipa::path(
    post,
    path = "/api/models/{version}/promote",
    params(("version" = String, Path, description = "Version to make champion")),
    responses((status = 200, body = PromoteResponse), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody))
)]
pub async fn promote(
    State(state): State<SharedState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<PromoteResponse>, ApiError> {
    // Said in the one error shape, not as the extractor's text.
    let Path(version) = path.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "the version in the path cannot be read: {rejection}"
        ))
    })?;
    // Refused (400) unless the version loads and serves.
    let (artifact, pointer) = state.registry.promote_servable(&version).await?;
    state.install(
        std::sync::Arc::new(artifact),
        Some(pointer.etag.clone()),
        0.0,
    );
    tracing::info!(%version, previous = pointer.champion.previous.as_deref().unwrap_or("none"), "champion promoted by request");
    if state.tracker.is_enabled() {
        let tracker = state.tracker.clone();
        let moved = pointer.champion.version.clone();
        tokio::spawn(async move { tracker.champion_moved(&moved).await });
    }
    Ok(Json(PromoteResponse {
        champion: pointer.champion.version,
        previous: pointer.champion.previous,
    }))
}
