//! `POST /api/predict`: one wine (JSON object or form fields) or a batch (`{"instances": [...]}`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::error::ApiError;
use super::schema::{BatchPredictionResponse, PredictionResponse};
use super::{form, media_type, PREDICT_BODY_LIMIT};
use crate::model::features::FeatureRow;
use crate::model::input::{json_type_name, row_from_json, row_from_text_pairs, ParsedRow};
use crate::server::state::{ServingModel, SharedState};
use crate::telemetry::metrics::METRICS;

/// Rows above which prediction moves to a blocking thread.
const INLINE_ROWS: usize = 64;

/// Predicts quality for one wine or a batch.
#[utoipa::path(
    post,
    path = "/api/predict",
    request_body(
        description = "One wine as a JSON object or form fields (application/x-www-form-urlencoded), or a batch as {\"instances\": [...]}",
        content(
            (super::schema::WineFeatures = "application/json"),
            (super::schema::BatchRequest = "application/json"),
            (super::schema::WineFeatures = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 200, description = "Prediction for one wine", body = PredictionResponse),
        (status = 200, description = "Predictions for a batch", body = BatchPredictionResponse),
        (status = 400, description = "Invalid input; the body names the field", body = super::error::ErrorBody),
        (status = 413, description = "Body or batch too large", body = super::error::ErrorBody),
        (status = 415, description = "Unsupported content type", body = super::error::ErrorBody),
        (status = 503, description = "No model loaded yet", body = super::error::ErrorBody),
    )
)]
pub async fn predict(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, PREDICT_BODY_LIMIT))?;
    let content_type = media_type(&headers);
    match content_type.as_str() {
        "application/json" => {
            let value = parse_json(&body)?;
            predict_json(&state, &value)
                .await
                .map(IntoResponse::into_response)
        }
        "application/x-www-form-urlencoded" => {
            let wants_html = headers
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            let outcome = predict_form(&state, &body).await;
            if wants_html {
                // A browser without JavaScript: answer with the page, result or error inline.
                let page = match &outcome {
                    Ok(answer) => form::page(Some(form::Outcome::Prediction(answer))),
                    Err(error) => form::page(Some(form::Outcome::Error(error))),
                };
                let status = outcome
                    .as_ref()
                    .map_or_else(ApiError::status, |_| axum::http::StatusCode::OK);
                return Ok((status, Html(page)).into_response());
            }
            outcome.map(|answer| Json(answer).into_response())
        }
        _ => Err(ApiError::UnsupportedMediaType {
            found: headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string(),
            expected: "application/json or application/x-www-form-urlencoded",
        }),
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyBody);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

async fn predict_json(state: &SharedState, value: &Value) -> Result<Response, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(format!(
            "expected a JSON object with the 11 feature fields or {{\"instances\": [...]}}, got {}",
            json_type_name(value)
        )));
    };
    let Some(instances) = map.get("instances") else {
        let parsed = row_from_json(value)?;
        return Ok(Json(predict_one(state, parsed).await?).into_response());
    };
    let Value::Array(items) = instances else {
        return Err(ApiError::BadRequest(format!(
            "`instances` must be an array of objects, got {}",
            json_type_name(instances)
        )));
    };
    check_batch(state, items.len())?;
    let mut rows = Vec::with_capacity(items.len());
    let mut ignored = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let parsed =
            row_from_json(item).map_err(|source| ApiError::RowInput { row: index, source })?;
        for field in parsed.unknown_fields {
            if !ignored.contains(&field) {
                ignored.push(field);
            }
        }
        rows.push(parsed.row);
    }
    let model = serving_model(state)?;
    let predictions = run_model(&model, rows.clone()).await?;
    record(state, &rows, &predictions, &model);
    Ok(Json(BatchPredictionResponse {
        out_of_range: rows.iter().map(|r| out_of_range(&model, r)).collect(),
        predictions,
        model_version: model.artifact.card.version.clone(),
        ignored_fields: ignored,
    })
    .into_response())
}

async fn predict_form(state: &SharedState, body: &[u8]) -> Result<PredictionResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed form data: {e}")))?;
    if pairs.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let parsed = row_from_text_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    predict_one(state, parsed).await
}

pub async fn predict_one(
    state: &SharedState,
    parsed: ParsedRow,
) -> Result<PredictionResponse, ApiError> {
    let model = serving_model(state)?;
    // One row walks the trees in a few microseconds: inline, without allocating.
    let prediction = model
        .artifact
        .predict_row(&parsed.row)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    record(
        state,
        std::slice::from_ref(&parsed.row),
        std::slice::from_ref(&prediction),
        &model,
    );
    Ok(PredictionResponse {
        prediction,
        model_version: model.artifact.card.version.clone(),
        out_of_range: out_of_range(&model, &parsed.row),
        ignored_fields: parsed.unknown_fields,
    })
}

pub fn check_batch(state: &SharedState, rows: usize) -> Result<(), ApiError> {
    if rows == 0 {
        return Err(ApiError::BadRequest("the batch is empty".to_string()));
    }
    let limit = state.settings.max_batch_rows;
    if rows > limit {
        return Err(ApiError::BatchTooLarge { rows, limit });
    }
    Ok(())
}

pub fn serving_model(state: &SharedState) -> Result<std::sync::Arc<ServingModel>, ApiError> {
    state.model().ok_or_else(|| {
        ApiError::NoModel(
            state
                .startup_problem()
                .unwrap_or_else(|| "the model is loading".into()),
        )
    })
}

/// Runs the model, off the async runtime for large batches.
pub async fn run_model(
    model: &std::sync::Arc<ServingModel>,
    rows: Vec<FeatureRow>,
) -> Result<Vec<f64>, ApiError> {
    let predict = |model: &ServingModel, rows: &[FeatureRow]| {
        model
            .artifact
            .predict(rows)
            .map_err(|e| ApiError::Internal(e.to_string()))
    };
    if rows.len() <= INLINE_ROWS {
        return predict(model, &rows);
    }
    let model = model.clone();
    tokio::task::spawn_blocking(move || predict(&model, &rows))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn out_of_range(model: &ServingModel, row: &FeatureRow) -> Vec<String> {
    model
        .artifact
        .out_of_range(row)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Feeds the model-behaviour metrics.
pub fn record(state: &SharedState, rows: &[FeatureRow], predictions: &[f64], model: &ServingModel) {
    METRICS.predictions.inc_by(predictions.len() as u64);
    METRICS.batch_size.observe(rows.len() as f64);
    for p in predictions {
        METRICS.predicted_quality.observe(*p);
    }
    for row in rows {
        for feature in model.artifact.out_of_range(row) {
            METRICS.out_of_range.with_label_values(&[feature]).inc();
        }
    }
    METRICS.drift_observed.inc_by(rows.len() as u64);
    state.drift.observe(rows);
}
