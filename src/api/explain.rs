//! `POST /api/explain`: every body `/api/predict` takes (one wine, form fields, or a batch),
//! answered with each row's prediction, interval and exact explanation (see
//! `model::explain`): `base_value + Σ contributions` is the prediction.
//!
//! An explanation costs what thousands of predictions cost, so the route admits its body like
//! a prediction (the same budget and deadline), takes at most `SOMMELIER_MAX_EXPLAIN_ROWS`
//! rows (413 past it), and always explains in the heavy lane, between rows checking whether
//! the request is still wanted (a request past its deadline stops there).
//!
//! Not here: the computation (`model::explain`), the form page's rendering (`form`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::body;
use super::error::ApiError;
use super::predict::{interval, record, serving_model};
use crate::model::explain::{Explainer, Explanation};
use crate::model::features::FeatureRow;
use crate::model::input::{BodyError, ParseLimits, ParsedBody};
use crate::service::state::{ServingModel, SharedState};

/// A row's explanation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    /// `tree_path_dependent` (tree ensembles: path-dependent TreeSHAP) or `linear`
    /// (elastic net: weight × (value − training mean)).
    pub method: &'static str,
    /// The model's average prediction over its training rows.
    pub base_value: f64,
    /// Per feature, how much its value moved this prediction from `base_value`.
    #[schema(value_type = Object)]
    pub contributions: BTreeMap<&'static str, f64>,
}

impl From<&Explanation> for ExplanationBody {
    fn from(explanation: &Explanation) -> Self {
        ExplanationBody {
            method: explanation.method,
            base_value: explanation.base_value,
            contributions: explanation.named().collect(),
        }
    }
}

/// One wine's prediction with its explanation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResponse {
    pub prediction: f64,
    pub model_version: String,
    pub out_of_range: Vec<String>,
    /// `[low, high]` at the configured coverage; absent for models trained before intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    pub explanation: ExplanationBody,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_fields: Vec<String>,
}

/// A batch's predictions with their explanations, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchExplainResponse {
    pub predictions: Vec<f64>,
    pub model_version: String,
    pub out_of_range: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<[f64; 2]>>,
    pub explanations: Vec<ExplanationBody>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_fields: Vec<String>,
}

/// Explains one wine or a batch.
#[utoipa::path(
    post,
    path = "/api/explain",
    request_body(
        description = "The bodies /api/predict takes: one wine as a JSON object or form fields, or a batch as {\"instances\": [...]} of at most SOMMELIER_MAX_EXPLAIN_ROWS rows",
        content(
            (super::schema::WineFeatures = "application/json"),
            (super::schema::BatchRequest = "application/json"),
            (super::schema::WineFeatures = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 200, description = "Prediction and explanation for one wine", body = ExplainResponse),
        (status = 200, description = "Predictions and explanations for a batch", body = BatchExplainResponse),
        (status = 400, description = "Invalid input; the body names the field", body = super::error::ErrorBody),
        (status = 409, description = "The model was trained before explanations; retrain to enable them", body = super::error::ErrorBody),
        (status = 413, description = "Body too large, or more rows than SOMMELIER_MAX_EXPLAIN_ROWS", body = super::error::ErrorBody),
        (status = 415, description = "Unsupported content type", body = super::error::ErrorBody),
        (status = 503, description = "No model loaded yet", body = super::error::ErrorBody),
    )
)]
pub async fn explain(State(state): State<SharedState>, request: Request) -> Response {
    let state = &state;
    crate::api::admission::answer_admitted(&state.budget, request, |parts, body| async move {
        respond(state, &parts.headers, body)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn respond(
    state: &SharedState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parser = body::explain_parser(headers)?;
    let parsed = parse(state, body, parser.parse).await?;
    let model = serving_model(state)?;
    let (predictions, explanations) = explain_in_lane(&model, parsed.rows.clone()).await?;
    record(state, &parsed.rows, &predictions, &model);
    Ok(answer(state, &model, parsed, predictions, &explanations))
}

/// Parses with the explanation row limit; too many rows name its setting.
async fn parse(
    state: &SharedState,
    body: Bytes,
    parser: body::Parser,
) -> Result<ParsedBody, ApiError> {
    let limit = state.settings.max_explain_rows;
    let limits = ParseLimits::new(limit);
    match body::parse(body, limits, parser).await {
        Err(ApiError::Body(BodyError::TooMany {
            what: "the number of rows",
            ..
        })) => Err(ApiError::Body(BodyError::TooMany {
            what: "the number of rows to explain",
            limit,
            setting: " (SOMMELIER_MAX_EXPLAIN_ROWS)",
        })),
        other => other,
    }
}

/// Sets its flag when dropped: the request's future is gone (answered, timed out, or its
/// client hung up), so the lane may stop.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Predicts and explains `rows` in the heavy lane, row by row, stopping when the request
/// is no longer wanted.
pub async fn explain_in_lane(
    model: &Arc<ServingModel>,
    rows: Vec<FeatureRow>,
) -> Result<(Vec<f64>, Vec<Explanation>), ApiError> {
    // Refused at once, before queueing, when the model cannot explain.
    Explainer::of(&model.artifact)?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let model = model.clone();
    crate::api::admission::run_heavy(move || {
        let explainer = Explainer::of(&model.artifact)?;
        let mut predictions = Vec::with_capacity(rows.len());
        let mut explanations = Vec::with_capacity(rows.len());
        for row in &rows {
            if cancelled.load(Ordering::Relaxed) {
                return Err(ApiError::Internal("the request was abandoned".into()));
            }
            let prediction = model
                .artifact
                .predict_row(row)
                .map_err(|e| ApiError::Unscorable(e.to_string()))?;
            predictions.push(prediction);
            explanations.push(explainer.explain(row));
        }
        Ok((predictions, explanations))
    })
    .await?
}

fn answer(
    state: &SharedState,
    model: &ServingModel,
    parsed: ParsedBody,
    predictions: Vec<f64>,
    explanations: &[Explanation],
) -> Response {
    let version = model.artifact.card.version.clone();
    let out_of_range = |row: &FeatureRow| -> Vec<String> {
        model
            .artifact
            .out_of_range(row)
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    if parsed.single {
        let row = parsed.rows.first().copied().unwrap_or_default();
        let prediction = predictions.first().copied().unwrap_or_default();
        let Some(explanation) = explanations.first() else {
            return ApiError::Internal("no explanation was made".into()).into_response();
        };
        return Json(ExplainResponse {
            prediction,
            model_version: version,
            out_of_range: out_of_range(&row),
            interval: interval(state, model, prediction),
            explanation: explanation.into(),
            ignored_fields: parsed.ignored_fields,
        })
        .into_response();
    }
    let intervals = model.artifact.conformal.is_some().then(|| {
        predictions
            .iter()
            .filter_map(|&p| interval(state, model, p))
            .collect()
    });
    Json(BatchExplainResponse {
        out_of_range: parsed.rows.iter().map(out_of_range).collect(),
        predictions,
        model_version: version,
        intervals,
        explanations: explanations.iter().map(ExplanationBody::from).collect(),
        ignored_fields: parsed.ignored_fields,
    })
    .into_response()
}
