//! `POST /api/feedback`: the tasted quality of earlier predictions, by prediction id. Admitted
//! against the memory budget and read within the deadline like a prediction; parsed by
//! `feedback::labels`; accepted labels are stored before the answer (202).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::media_type;
use crate::feedback::labels::{parse_csv, parse_form, parse_json, BodyProblem, Parsed, Rejected};
use crate::feedback::metrics::LOG_METRICS;
use crate::model::input::BodyError;
use crate::service::state::SharedState;

/// What was kept and what was not.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    /// Labels stored.
    pub accepted: usize,
    /// Labels refused, by their index in the body (from 0), with the reason.
    pub rejected: Vec<Rejected>,
    /// When every label was refused (422): how many, and the first reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Records the tasted quality of predictions.
#[utoipa::path(
    post,
    path = "/api/feedback",
    request_body(description = "{\"prediction_id\": \"...\", \"quality\": 6}, {\"feedback\": [{...}, ...]} or text/csv with the header prediction_id,quality", content((Object = "application/json"), (String = "text/csv"))),
    responses(
        (status = 202, description = "Labels stored (the latest label of an id wins); refused ones are listed", body = FeedbackResponse),
        (status = 400, description = "Not JSON or CSV of the expected shape", body = super::error::ErrorBody),
        (status = 413, description = "Body or number of labels too large", body = super::error::ErrorBody),
        (status = 415, description = "Content type other than application/json, text/csv or a form", body = super::error::ErrorBody),
        (status = 422, description = "Every label sent was refused, none stored; each is named with its reason (a list or CSV with some labels accepted answers 202)", body = FeedbackResponse),
        (status = 503, description = "The labels could not all be stored (the store did not answer in time, or refused the app's identity); some may be. Sending the same request again is safe: the latest label of an id wins", body = super::error::ErrorBody),
    )
)]
pub async fn feedback(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = record(&state, &headers, &body).await;
    let from_browser_form = media_type(&headers) == "application/x-www-form-urlencoded"
        && super::docs::wants_html(&headers);
    if from_browser_form {
        return page(result);
    }
    match result {
        Ok((status, answer)) => (status, Json(answer)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Reads, checks and stores the labels of a body: the status (202, or 422 when none could be
/// stored) and the answer, or the error that refused the body as a whole.
async fn record(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, FeedbackResponse), ApiError> {
    let max_rows = state.settings.max_batch_rows;
    let parse: fn(&[u8], usize) -> Result<Parsed, BodyProblem> = match media_type(headers).as_str()
    {
        "application/json" => parse_json,
        "text/csv" => parse_csv,
        "application/x-www-form-urlencoded" => parse_form,
        _ => {
            return Err(ApiError::unsupported_media_type(
                headers,
                "application/json, text/csv or application/x-www-form-urlencoded",
            ))
        }
    };
    // Said as a prediction says it, whichever form the body was declared in.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Body(BodyError::Empty));
    }
    let (accepted, rejected, single) = match parse(body, max_rows) {
        Ok(parsed) => parsed,
        Err(BodyProblem::Malformed(reason)) => return Err(ApiError::BadRequest(reason)),
        Err(BodyProblem::TooMany(error)) => return Err(ApiError::Body(error)),
    };
    LOG_METRICS
        .labels
        .with_label_values(&["rejected"])
        .inc_by(rejected.len() as u64);
    if accepted.is_empty() {
        return Ok(every_label_refused(rejected, single));
    }
    if let Err(error) = state.feedback.record_labels(&accepted).await {
        tracing::warn!(%error, "labels could not be stored");
        return Err(ApiError::StoreUnavailable(format!(
            "the labels could not be stored: {error}"
        )));
    }
    LOG_METRICS
        .labels
        .with_label_values(&["accepted"])
        .inc_by(accepted.len() as u64);
    let answer = FeedbackResponse {
        accepted: accepted.len(),
        rejected,
        error: None,
    };
    Ok((StatusCode::ACCEPTED, answer))
}

/// The answer to the form page's tasted-quality form posted by a browser without JavaScript:
/// the form page, saying whether the label was recorded, with the answer's status.
fn page(result: Result<(StatusCode, FeedbackResponse), ApiError>) -> Response {
    let (status, class, message) = match result {
        Ok((status, answer)) if answer.accepted > 0 => (
            status,
            "ok",
            "Thank you: the tasted quality is recorded.".to_string(),
        ),
        Ok((status, answer)) => (
            status,
            "error",
            answer
                .error
                .unwrap_or_else(|| "The tasted quality was not recorded.".to_string()),
        ),
        Err(error) => (error.status(), "error", error.to_string()),
    };
    let html = super::form::render(
        &super::form::Fields::default(),
        class,
        &super::form::plain_message(&message),
    );
    (status, Html(html)).into_response()
}

/// 422 when no label of the body can be stored: a client that checks only the status must not
/// take a body of refused labels for stored ones. Each refusal is listed as in a 202.
fn every_label_refused(rejected: Vec<Rejected>, single: bool) -> (StatusCode, FeedbackResponse) {
    let first = rejected
        .first()
        .map(|r| format!("label {}: {}", r.index, r.error));
    let error = match (single, first) {
        (true, first) => first,
        (false, Some(first)) => Some(format!(
            "{} refused, none stored; {first}",
            crate::text::counted(rejected.len() as u64, "label")
        )),
        (false, None) => None,
    };
    let body = FeedbackResponse {
        accepted: 0,
        rejected,
        error,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, body)
}
