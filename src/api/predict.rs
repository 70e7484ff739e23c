//! `POST /api/predict`: one wine (JSON object or form fields) or a batch (`{"instances": [...]}`).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use std::sync::Arc;

use super::body;
use super::error::ApiError;
use super::schema::{BatchPredictionResponse, PredictionResponse};
use crate::feedback::id::{row_id, PredictionId};
use crate::feedback::service::request_id_of;
use crate::model::algorithm::FitError;
use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};
use crate::model::input::{ParseLimits, ParsedBody};
use crate::service::state::{ServingModel, SharedState};
use crate::telemetry::metrics::METRICS;

/// The header that carries a prediction's id on every prediction answer.
pub const X_PREDICTION_ID: HeaderName = HeaderName::from_static("x-prediction-id");

/// A new prediction id, as text and as the header value that carries it.
pub fn new_prediction_id() -> (PredictionId, HeaderValue) {
    let id = PredictionId::new();
    let header = HeaderValue::from_bytes(&id.encode())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    (id, header)
}

/// The prediction id of an answer, as text.
fn id_text(header: &HeaderValue) -> &str {
    header.to_str().unwrap_or_default()
}

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
pub async fn predict(State(state): State<SharedState>, request: Request) -> Response {
    // The body is admitted against the memory budget and read within the deadline here
    // rather than in a route layer: the same checks, one boxed layer less per request.
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
    let parser = body::predict_parser(headers)?;
    let wants_html = parser.form && super::docs::wants_html(headers);
    let raw = wants_html.then(|| body.clone());
    let parsed = body::parse(body, parse_limits(state), parser.parse).await;
    let (id, header) = new_prediction_id();
    if !wants_html {
        let parsed = parsed?;
        if parsed.single {
            return one_as_json(state, headers, &parsed, id, header);
        }
        return answer(state, headers, parsed, id, &header)
            .await
            .map(|answer| with_id(answer.into_json(), header));
    }
    // A browser without JavaScript: answer with the page, result or error inline.
    let outcome = match parsed {
        Ok(parsed) => answer(state, headers, parsed, id, &header).await,
        Err(error) => Err(error),
    };
    let shown = match &outcome {
        Ok(Answer::One(answer)) => Ok(Some(answer)),
        Ok(Answer::Batch(_)) => Ok(None),
        Err(error) => Err(error),
    };
    let page = super::form_result::result_page(state, shown, &raw.unwrap_or_default()).await;
    let status = outcome
        .as_ref()
        .map_or_else(ApiError::status, |_| axum::http::StatusCode::OK);
    let response = (status, Html(page)).into_response();
    Ok(match outcome {
        Ok(_) => with_id(response, header),
        Err(_) => response,
    })
}

/// `response` with the `x-prediction-id` header.
fn with_id(mut response: Response, header: HeaderValue) -> Response {
    response.headers_mut().insert(X_PREDICTION_ID, header);
    response
}

/// The answer for one wine as JSON, the hot path: the row is predicted in place and the body
/// is written from borrowed values (the same JSON as [`PredictionResponse`]).
fn one_as_json(
    state: &SharedState,
    headers: &HeaderMap,
    parsed: &ParsedBody,
    id: PredictionId,
    header: HeaderValue,
) -> Result<Response, ApiError> {
    let guard = state.model_guard();
    let Some(model) = guard.as_ref() else {
        return Err(no_model(state));
    };
    let row = parsed.rows.first().copied().unwrap_or_default();
    let prediction = predict_row(model, &row)?;
    record(state, std::slice::from_ref(&row), &[prediction], model);
    if let Some(log) = state.feedback.log() {
        log.one(
            id,
            &model.artifact.card.version,
            &row,
            prediction,
            request_id_of(headers),
        );
    }
    let answer = OneWine {
        prediction,
        prediction_id: id_text(&header),
        model_version: &model.artifact.card.version,
        out_of_range: OutOfRange(out_of_range_mask(model, &row)),
        ignored_fields: &parsed.ignored_fields,
        interval: interval(state, model, prediction),
    };
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, &answer)
        .map_err(|e| ApiError::Internal(format!("cannot encode the answer: {e}")))?;
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (X_PREDICTION_ID, header),
        ],
        bytes,
    )
        .into_response())
}

/// [`PredictionResponse`] from borrowed values.
#[derive(Serialize)]
struct OneWine<'a> {
    prediction: f64,
    prediction_id: &'a str,
    model_version: &'a str,
    out_of_range: OutOfRange,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignored_fields: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<[f64; 2]>,
}

/// The prediction interval at the configured coverage, when the model is calibrated.
pub fn interval(state: &SharedState, model: &ServingModel, prediction: f64) -> Option<[f64; 2]> {
    model
        .artifact
        .interval(prediction, state.settings.interval_coverage)
}

/// The names of the features whose bit is set, in feature order.
struct OutOfRange(u16);

impl OutOfRange {
    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FEATURE_NAMES
            .iter()
            .enumerate()
            .filter(|(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, name)| *name)
    }
}

impl Serialize for OutOfRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.count_ones() as usize))?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

/// The parse limits of this server.
pub fn parse_limits(state: &SharedState) -> ParseLimits {
    ParseLimits::new(state.settings.max_batch_rows)
}

enum Answer {
    One(PredictionResponse),
    Batch(BatchPredictionResponse),
}

impl Answer {
    fn into_json(self) -> Response {
        match self {
            Answer::One(one) => Json(one).into_response(),
            Answer::Batch(batch) => Json(batch).into_response(),
        }
    }
}

async fn answer(
    state: &SharedState,
    headers: &HeaderMap,
    parsed: ParsedBody,
    id: PredictionId,
    header: &HeaderValue,
) -> Result<Answer, ApiError> {
    let model = serving_model(state)?;
    let predictions = run_model(&model, &parsed.rows).await?;
    record(state, &parsed.rows, &predictions, &model);
    if let Some(log) = state.feedback.log() {
        log.rows(
            id,
            &model.artifact.card.version,
            &parsed.rows,
            &predictions,
            !parsed.single,
            request_id_of(headers),
        );
    }
    let version = model.artifact.card.version.clone();
    if parsed.single {
        let row = parsed.rows.first().copied().unwrap_or_default();
        let prediction = predictions.first().copied().unwrap_or_default();
        return Ok(Answer::One(PredictionResponse {
            prediction,
            prediction_id: id_text(header).to_string(),
            model_version: version,
            out_of_range: out_of_range(&model, &row),
            ignored_fields: parsed.ignored_fields,
            interval: interval(state, &model, prediction),
        }));
    }
    let intervals = model.artifact.conformal.is_some().then(|| {
        predictions
            .iter()
            .filter_map(|&p| interval(state, &model, p))
            .collect()
    });
    Ok(Answer::Batch(BatchPredictionResponse {
        out_of_range: parsed
            .rows
            .iter()
            .map(|r| out_of_range(&model, r))
            .collect(),
        prediction_ids: (0..predictions.len())
            .map(|row| row_id(id_text(header), row))
            .collect(),
        predictions,
        model_version: version,
        ignored_fields: parsed.ignored_fields,
        intervals,
    }))
}

pub fn serving_model(state: &SharedState) -> Result<Arc<ServingModel>, ApiError> {
    state.model().ok_or_else(|| no_model(state))
}

fn no_model(state: &SharedState) -> ApiError {
    ApiError::NoModel(
        state
            .startup_problem()
            .unwrap_or_else(|| "the model is loading".into()),
    )
}

fn model_error(error: FitError) -> ApiError {
    match error {
        FitError::NonFinite => ApiError::Unscorable(error.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// One row's prediction, in place (no allocation).
fn predict_row(model: &ServingModel, row: &FeatureRow) -> Result<f64, ApiError> {
    model.artifact.predict_row(row).map_err(model_error)
}

/// Runs the model, off the async runtime (in the heavy lane) for large batches. A model that
/// cannot give a finite answer for valid inputs is reported as the inputs' problem (422), never
/// as a server error.
pub async fn run_model(
    model: &Arc<ServingModel>,
    rows: &[FeatureRow],
) -> Result<Vec<f64>, ApiError> {
    let predict = |model: &ServingModel, rows: &[FeatureRow]| {
        model.artifact.predict(rows).map_err(model_error)
    };
    if rows.len() <= INLINE_ROWS {
        return predict(model, rows);
    }
    let model = model.clone();
    let rows = rows.to_vec();
    crate::api::admission::run_heavy(move || predict(&model, &rows)).await?
}

fn out_of_range(model: &ServingModel, row: &FeatureRow) -> Vec<String> {
    OutOfRange(out_of_range_mask(model, row))
        .names()
        .map(str::to_string)
        .collect()
}

/// Bit `i` set when feature `i` of `row` is outside the range the model was trained on.
fn out_of_range_mask(model: &ServingModel, row: &FeatureRow) -> u16 {
    model
        .artifact
        .card
        .feature_stats
        .iter()
        .zip(row)
        .enumerate()
        .filter(|(_, (stats, value))| !stats.contains(**value))
        .fold(0, |mask, (index, _)| mask | 1 << index)
}

/// Feeds the model-behaviour metrics.
pub fn record(state: &SharedState, rows: &[FeatureRow], predictions: &[f64], model: &ServingModel) {
    METRICS.predictions.local().inc_by(predictions.len() as u64);
    METRICS.batch_size.local().observe(rows.len() as f64);
    let quality = METRICS.predicted_quality.local();
    for p in predictions {
        quality.observe(*p);
    }
    for row in rows {
        let mask = out_of_range_mask(model, row);
        if mask != 0 {
            for feature in 0..FEATURE_COUNT {
                if mask & (1 << feature) != 0 {
                    METRICS.record_out_of_range(feature);
                }
            }
        }
    }
    METRICS.drift_observed.local().inc_by(rows.len() as u64);
    state.drift.observe(rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_answer_is_the_schema_json() {
        for (mask, ignored) in [
            (0u16, vec![]),
            (0b100_0000_0101, vec!["colour".to_string()]),
        ] {
            let borrowed = serde_json::to_string(&OneWine {
                prediction: 5.066_666_666_666_667,
                prediction_id: "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90",
                model_version: "20261201T163332084Z-3374054",
                out_of_range: OutOfRange(mask),
                ignored_fields: &ignored,
                interval: Some([4.1, 6.0]),
            })
            .unwrap();
            let owned = serde_json::to_string(&PredictionResponse {
                prediction: 5.066_666_666_666_667,
                prediction_id: "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90".into(),
                model_version: "20261201T163332084Z-3374054".into(),
                out_of_range: OutOfRange(mask).names().map(str::to_string).collect(),
                ignored_fields: ignored.clone(),
                interval: Some([4.1, 6.0]),
            })
            .unwrap();
            assert_eq!(borrowed, owned);
        }
        assert_eq!(
            OutOfRange(0b101).names().collect::<Vec<_>>(),
            ["fixed_acidity", "citric_acid"]
        );
    }
}
