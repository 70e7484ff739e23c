//! `GET /api/openapi.json`: the OpenAPI 3 document, generated from the handlers' types.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sommelier",
        description = "Wine-quality predictions, training and model registry."
    ),
    paths(
        super::form::form_page,
        super::predict::predict,
        super::invocations::invocations,
        super::train::train,
        super::train::status,
        super::models::list,
        super::models::promote,
        super::health::health,
        super::metrics,
    )
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
