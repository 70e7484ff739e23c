//! The one place where errors become HTTP answers: a status and a JSON body
//! `{"error": "...", "field": "..."}` naming what is wrong.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use thiserror::Error;

use crate::model::dataset::DatasetError;
use crate::model::explain::ExplainError;
use crate::model::input::BodyError;
use crate::registry::{RegistryError, StoreError};
use crate::retraining::RetrainError;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("unsupported content type `{found}`; send {expected}")]
    UnsupportedMediaType {
        found: String,
        expected: &'static str,
    },
    #[error("Content-Encoding `{0}` is not supported; send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("request body is larger than the {limit_bytes}-byte limit")]
    BodyTooLarge { limit_bytes: usize },
    #[error("no model is loaded yet: {0}")]
    NoModel(String),
    #[error("a training is already running on this instance; try again when it finishes")]
    TrainingInProgress,
    #[error("model version `{0}` not found")]
    VersionNotFound(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the model store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("the model cannot score these inputs: {0}")]
    Unscorable(String),
    /// The server's buffered-bytes budget (or its share of large requests) is in use.
    #[error("the server is busy with other large requests; retry in {retry_after_seconds} s")]
    Busy { retry_after_seconds: u64 },
    #[error("the request took longer than {seconds} s to arrive and be answered")]
    Timeout { seconds: u64 },
    /// A declared body whose first byte did not arrive in time: its reservation is given back.
    #[error("the request body did not start within {seconds} s of its headers")]
    BodyNotStarted { seconds: u64 },
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The server's own setup is wrong (its training data, its store): the request was fine.
    #[error("configuration error: {0}")]
    Configuration(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The serving model cannot explain (trained before explanations), or its covers are
    /// unsound.
    #[error(transparent)]
    Explain(#[from] ExplainError),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
    /// The input field at fault, or null.
    pub field: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Data(_) => StatusCode::BAD_REQUEST,
            ApiError::Body(BodyError::TooMany { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(error) => match error.input_error() {
                Some(input) if input.is_out_of_range() => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            },
            ApiError::Unscorable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } | ApiError::BodyNotStarted { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType { .. } | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoModel(_) | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TrainingInProgress => StatusCode::CONFLICT,
            ApiError::VersionNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) | ApiError::Configuration(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Explain(ExplainError::TrainedBefore) => StatusCode::CONFLICT,
            ApiError::Explain(ExplainError::Mismatch(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn field(&self) -> Option<String> {
        match self {
            ApiError::Body(e) => e.input_error().and_then(|e| e.field()).map(str::to_string),
            ApiError::Data(DatasetError::BadValue { column, .. }) => Some(column.clone()),
            ApiError::Data(DatasetError::BadQuality { .. }) => Some("quality".to_string()),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            field: self.field(),
        }
    }

    /// Maps a body-read failure: too large → 413, anything else → 400.
    pub fn from_body_rejection(rejection: BytesRejection, limit_bytes: usize) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit_bytes }
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::VersionNotFound(version) => ApiError::VersionNotFound(version),
            RegistryError::Store(StoreError::NotFound(what)) => {
                ApiError::VersionNotFound(what.split('/').next().unwrap_or(&what).to_string())
            }
            RegistryError::Store(e) if e.is_transient() => {
                ApiError::StoreUnavailable(e.to_string())
            }
            RegistryError::DeletedWhilePromoting(version) => ApiError::VersionNotFound(version),
            // A version that cannot serve is refused, not an internal failure.
            error @ (RegistryError::Artifact { .. }
            | RegistryError::Card { .. }
            | RegistryError::Unservable { .. }) => ApiError::BadRequest(error.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<RetrainError> for ApiError {
    fn from(error: RetrainError) -> Self {
        match error {
            // The data and the recipe are the server's own, never the request's.
            RetrainError::Data(e) => ApiError::Configuration(format!(
                "the server's training data (SOMMELIER_TRAINING_DATA) is invalid: {e}"
            )),
            RetrainError::Train(e) => {
                ApiError::Configuration(format!("the training cannot run on this data: {e}"))
            }
            RetrainError::Spec(e) => ApiError::BadRequest(e.to_string()),
            RetrainError::Registry(e) => e.into(),
            RetrainError::Contended => ApiError::StoreUnavailable(error.to_string()),
            RetrainError::TaskFailed { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

/// A server-side failure, carried on its response so that the request layer logs it once,
/// tagged with the request's function and Functions invocation id.
#[derive(Debug, Clone)]
pub struct Failure(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        self.add_headers(&mut response);
        if status.is_server_error() {
            response.extensions_mut().insert(Failure(self.to_string()));
        } else {
            response
                .extensions_mut()
                .insert(super::rejected::Rejection(self.to_string()));
        }
        response
    }
}

impl ApiError {
    /// `Retry-After` on a busy answer, and a closed connection after a timeout.
    fn add_headers(&self, response: &mut Response) {
        use axum::http::header::{HeaderValue, CONNECTION, RETRY_AFTER};
        match self {
            ApiError::Busy {
                retry_after_seconds,
            } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            ApiError::Timeout { .. } | ApiError::BodyNotStarted { .. } => {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
    }
}

/// An [`ApiError`] answered in MLflow's scoring-server shape: `{"error_code", "message"}`,
/// plus this API's `error` and `field`.
#[derive(Debug)]
pub struct MlflowError(pub ApiError);

impl From<ApiError> for MlflowError {
    fn from(error: ApiError) -> Self {
        MlflowError(error)
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let code = match status {
            StatusCode::BAD_REQUEST
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::REQUEST_TIMEOUT => "BAD_REQUEST",
            StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
            _ => "INTERNAL_ERROR",
        };
        let body = self.0.body();
        let json = serde_json::json!({
            "error_code": code, "message": body.error, "error": body.error, "field": body.field,
        });
        let mut response = (status, Json(json)).into_response();
        self.0.add_headers(&mut response);
        if status.is_server_error() {
            response.extensions_mut().insert(Failure(body.error));
        } else {
            response
                .extensions_mut()
                .insert(super::rejected::Rejection(body.error));
        }
        response
    }
}

impl ApiError {
    /// 415 for a request whose `Content-Type` the route does not take, naming what was sent.
    pub fn unsupported_media_type(
        headers: &axum::http::HeaderMap,
        expected: &'static str,
    ) -> ApiError {
        ApiError::UnsupportedMediaType {
            found: headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string(),
            expected,
        }
    }
}

impl From<crate::service::body_budget::Busy> for ApiError {
    fn from(busy: crate::service::body_budget::Busy) -> ApiError {
        ApiError::Busy {
            retry_after_seconds: busy.retry_after_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failures_carry_their_message_for_the_request_log() {
        let response = ApiError::Internal("the disk is full".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let failure = response.extensions().get::<Failure>().expect("a failure");
        assert!(failure.0.contains("the disk is full"), "{failure:?}");
        let refused = ApiError::BadRequest("no such field".into()).into_response();
        assert!(refused.extensions().get::<Failure>().is_none());
        let rejection = refused
            .extensions()
            .get::<super::super::rejected::Rejection>()
            .expect("a rejection");
        assert!(rejection.0.contains("no such field"), "{rejection:?}");
    }
}
