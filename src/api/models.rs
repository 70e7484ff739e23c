//! `GET /api/models` lists versions; `POST /api/models/{version}/promote` rolls back or forward.

use axum::extract::{Path, State};
use axum::Json;

use super::error::ApiError;
use super::schema::{ModelSummary, ModelsResponse, PromoteResponse};
use crate::server::state::SharedState;

/// Lists stored versions, newest last, and the champion.
#[utoipa::path(get, path = "/api/models", responses((status = 200, body = ModelsResponse), (status = 503, body = super::error::ErrorBody)))]
pub async fn list(State(state): State<SharedState>) -> Result<Json<ModelsResponse>, ApiError> {
    let champion = state.registry.champion().await?.map(|p| p.champion.version);
    let cards = state.registry.cards().await?;
    let run_ids = if state.tracker.is_enabled() {
        let versions: Vec<String> = cards.iter().map(|c| c.version.clone()).collect();
        state.tracker.run_ids(&versions).await
    } else {
        Default::default()
    };
    let versions = cards
        .into_iter()
        .map(|c| ModelSummary {
            mlflow_run_id: run_ids.get(&c.version).cloned(),
            champion: Some(&c.version) == champion.as_ref(),
            algorithm: c.spec.algorithm().name().to_string(),
            version: c.version,
            created_at: c.created_at,
            metrics: c.metrics,
            training_rows: c.training_rows,
            trigger: c.trigger,
            source: c.source.name,
        })
        .collect();
    Ok(Json(ModelsResponse { champion, versions }))
}

/// Makes `version` the champion and serves it at once.
#[utoipa::path(
    post,
    path = "/api/models/{version}/promote",
    params(("version" = String, Path, description = "Version to make champion")),
    responses((status = 200, body = PromoteResponse), (status = 404, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody))
)]
pub async fn promote(
    State(state): State<SharedState>,
    Path(version): Path<String>,
) -> Result<Json<PromoteResponse>, ApiError> {
    let artifact = state.registry.load(&version).await?;
    let pointer = state.registry.promote(&version).await?;
    state.install(
        std::sync::Arc::new(artifact),
        Some(pointer.etag.clone()),
        0.0,
    );
    tracing::info!(%version, previous = ?pointer.champion.previous, "champion promoted by request");
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
