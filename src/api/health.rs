//! `GET /api/health` and the host's readiness probe `GET /`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::schema::HealthResponse;
use crate::service::state::SharedState;

/// Healthy when the champion is loaded; `degraded` (still 200) when serving from memory while
/// the store is unreachable or refuses our credentials, or when serving another version
/// because the champion cannot serve; unhealthy (503) when nothing can be served.
#[utoipa::path(get, path = "/api/health", responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn health(State(state): State<SharedState>) -> (StatusCode, Json<HealthResponse>) {
    let degraded = state.degraded();
    match state.model() {
        Some(model) => (
            StatusCode::OK,
            Json(HealthResponse {
                status: if degraded.is_some() {
                    "degraded"
                } else {
                    "healthy"
                },
                model_version: Some(model.artifact.card.version.clone()),
                reason: None,
                degraded,
            }),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthResponse {
                status: "unhealthy",
                model_version: None,
                reason: Some(
                    state
                        .startup_problem()
                        .unwrap_or_else(|| "no model loaded".into()),
                ),
                degraded,
            }),
        ),
    }
}

/// Readiness: answers at once, whatever the model's state.
pub async fn ready(headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A person who opens the server's address in a browser is sent to the form; the host's
    // probe (no `text/html` in `Accept`) gets its answer at once.
    if super::docs::wants_html(&headers) {
        return axum::response::Redirect::to("/api/predict").into_response();
    }
    Json(serde_json::json!({"status": "ready"})).into_response()
}
