//! `POST /api/invocations`: MLflow's scoring protocol, so MLflow clients work unchanged.
//! JSON with exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//! (plus optional `params`), or `text/csv`; the answer is `{"predictions": [...]}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, MlflowError};
use super::predict::{
    new_prediction_id, parse_limits, record, run_model, serving_model, X_PREDICTION_ID,
};
use super::schema::InvocationsResponse;
use super::{body, media_type, PREDICT_BODY_LIMIT};
use crate::service::state::SharedState;

/// Scores rows in any of MLflow's input formats.
#[utoipa::path(
    post,
    path = "/api/invocations",
    request_body(description = "MLflow scoring input: JSON with exactly one of dataframe_split, dataframe_records, instances, inputs; or text/csv with a header row", content((Object = "application/json"), (String = "text/csv"))),
    responses(
        (status = 200, body = InvocationsResponse),
        (status = 400, description = "Malformed input (MLflow's BAD_REQUEST)", body = super::error::ErrorBody),
        (status = 415, description = "Content type other than application/json or text/csv, or with a parameter other than charset=utf-8 (as MLflow's scoring server)", body = super::error::ErrorBody),
    )
)]
pub async fn invocations(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, MlflowError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, PREDICT_BODY_LIMIT))?;
    let parser = body::invocations_parser(&media_type(&headers))
        .filter(|_| parameters_are_mlflows(&headers));
    let Some(parser) = parser else {
        return Err(ApiError::unsupported_media_type(
            &headers,
            "application/json or text/csv, in UTF-8 (no parameter but charset=utf-8)",
        )
        .into());
    };
    let parsed = body::parse(body, parse_limits(&state), parser).await?;
    let model = serving_model(&state)?;
    let predictions = run_model(&model, &parsed.rows).await?;
    record(&state, &parsed.rows, &predictions, &model);
    let (id, header) = new_prediction_id();
    if let Some(log) = state.feedback.log() {
        log.rows(
            id,
            &model.artifact.card.version,
            &parsed.rows,
            &predictions,
            true,
            crate::feedback::service::request_id_of(&headers),
        );
    }
    Ok((
        [(X_PREDICTION_ID, header)],
        Json(InvocationsResponse { predictions }),
    )
        .into_response())
}

/// Whether the content type's parameters are ones MLflow's scoring server takes: none but
/// `charset`, and that one `utf-8`; it answers 415 to any other, and so does this route.
fn parameters_are_mlflows(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    content_type.split(';').skip(1).all(|parameter| {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        name.trim().eq_ignore_ascii_case("charset")
            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}
