//! `POST /api/predict`: one wine (JSON object or form fields) or a batch (`{"instances": [...]}`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use std::sync::Arc;

use super::error::ApiError;
use super::schema::{BatchPredictionResponse, PredictionResponse};
use super::{body, form, media_type, PREDICT_BODY_LIMIT};
use crate::model::algorithm::FitError;
use crate::model::features::FeatureRow;
use crate::model::input::{ParseLimits, ParsedBody};
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
    let Some(parser) = body::predict_parser(&content_type) else {
        return Err(ApiError::UnsupportedMediaType {
            found: headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string(),
            expected: "application/json or application/x-www-form-urlencoded",
        });
    };
    let parsed = body::parse(body, parse_limits(&state), parser).await;
    let outcome = match parsed {
        Ok(parsed) => answer(&state, parsed).await,
        Err(error) => Err(error),
    };
    let wants_html = content_type == "application/x-www-form-urlencoded"
        && headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return outcome.map(|answer| match answer {
            Answer::One(one) => Json(one).into_response(),
            Answer::Batch(batch) => Json(batch).into_response(),
        });
    }
    // A browser without JavaScript: answer with the page, result or error inline.
    let page = match &outcome {
        Ok(Answer::One(answer)) => form::page(Some(form::Outcome::Prediction(answer))),
        Ok(Answer::Batch(_)) => form::page(None),
        Err(error) => form::page(Some(form::Outcome::Error(error))),
    };
    let status = outcome
        .as_ref()
        .map_or_else(ApiError::status, |_| axum::http::StatusCode::OK);
    Ok((status, Html(page)).into_response())
}

/// The parse limits of this server.
pub fn parse_limits(state: &SharedState) -> ParseLimits {
    ParseLimits::new(state.settings.max_batch_rows)
}

enum Answer {
    One(PredictionResponse),
    Batch(BatchPredictionResponse),
}

async fn answer(state: &SharedState, parsed: ParsedBody) -> Result<Answer, ApiError> {
    let model = serving_model(state)?;
    let predictions = run_model(&model, &parsed.rows).await?;
    record(state, &parsed.rows, &predictions, &model);
    let version = model.artifact.card.version.clone();
    if parsed.single {
        let row = parsed.rows.first().copied().unwrap_or_default();
        return Ok(Answer::One(PredictionResponse {
            prediction: predictions.first().copied().unwrap_or_default(),
            model_version: version,
            out_of_range: out_of_range(&model, &row),
            ignored_fields: parsed.ignored_fields,
        }));
    }
    Ok(Answer::Batch(BatchPredictionResponse {
        out_of_range: parsed
            .rows
            .iter()
            .map(|r| out_of_range(&model, r))
            .collect(),
        predictions,
        model_version: version,
        ignored_fields: parsed.ignored_fields,
    }))
}

pub fn serving_model(state: &SharedState) -> Result<Arc<ServingModel>, ApiError> {
    state.model().ok_or_else(|| {
        ApiError::NoModel(
            state
                .startup_problem()
                .unwrap_or_else(|| "the model is loading".into()),
        )
    })
}

/// Runs the model, off the async runtime (in the heavy lane) for large batches. A model that
/// cannot give a finite answer for valid inputs is reported as the inputs' problem (422), never
/// as a server error.
pub async fn run_model(
    model: &Arc<ServingModel>,
    rows: &[FeatureRow],
) -> Result<Vec<f64>, ApiError> {
    let predict = |model: &ServingModel, rows: &[FeatureRow]| {
        model.artifact.predict(rows).map_err(|e| match e {
            FitError::NonFinite => ApiError::Unscorable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        })
    };
    if rows.len() <= INLINE_ROWS {
        return predict(model, rows);
    }
    let model = model.clone();
    let rows = rows.to_vec();
    crate::server::limits::run_heavy(move || predict(&model, &rows)).await?
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
