//! `POST /api/train` retrains on the configured data, one training at a time per instance;
//! `GET /api/train` reports the last training this instance finished, changing nothing.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::schema::{TrainResponse, TrainingStatus};
use crate::model::algorithm::Algorithm;
use crate::retraining::{Outcome, TrainingReport, Unchanged};
use crate::service::state::SharedState;
use crate::service::training::{start_http_training, LastTraining, StartError};

/// The largest body `POST /api/train` reads: its options take a few dozen bytes.
pub const TRAIN_BODY_LIMIT: usize = 4 * 1024;

/// Optional query parameters (unknown ones, like `code`, are ignored).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct TrainQuery {
    /// Algorithm [default: extra-trees].
    pub algorithm: Option<Algorithm>,
    /// Promote whatever the score.
    pub force: Option<bool>,
}

/// The same options in the body, as a JSON object or form fields. Unlike the query string,
/// which also carries the Functions key (`code`), a body holds nothing but options: a member
/// that is not one is refused rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainBody {
    #[serde(default, deserialize_with = "given")]
    algorithm: Option<Algorithm>,
    #[serde(default, deserialize_with = "given")]
    force: Option<bool>,
}

/// An option that is present has a value: `null` is refused, not read as absent.
fn given<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// What a body of options may be, for the error that refuses another.
const TRAIN_BODY_FORMS: &str =
    "a JSON object of options such as {\"algorithm\": \"elastic-net\", \"force\": true} \
(Content-Type: application/json), the same as form fields, or no body and query parameters";

/// The training's options: the query string's, each overridden by the same option in the
/// body, as web frameworks merge the two. A body that is a JSON object is read as JSON
/// whatever its declared type (`curl -d` declares form fields), since no form field starts
/// with `{`.
fn options(query: TrainQuery, headers: &HeaderMap, body: &[u8]) -> Result<TrainQuery, ApiError> {
    let from_body = body_options(headers, body)?;
    Ok(TrainQuery {
        algorithm: from_body.algorithm.or(query.algorithm),
        force: from_body.force.or(query.force),
    })
}

/// The options a body carries: none when it is empty.
fn body_options(headers: &HeaderMap, body: &[u8]) -> Result<TrainBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TrainBody::default());
    }
    let media_type = super::media_type(headers);
    let plain = matches!(
        media_type.as_str(),
        "" | "application/json" | "application/x-www-form-urlencoded" | "text/plain"
    );
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!(
            "invalid training options in the body: {e}; send {TRAIN_BODY_FORMS}"
        ))
    };
    let json = media_type == "application/json"
        || (plain && crate::model::input::urlencoded::looks_like_json(body));
    if json {
        // Read straight into the options, not through a map, so that an option given twice
        // is refused ("duplicate field") instead of the last one silently winning.
        if body.trim_ascii_start().first() != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| invalid(&e))?;
            return Err(invalid(&"the body is JSON but not an object"));
        }
        return serde_json::from_slice(body).map_err(|e| invalid(&e));
    }
    if media_type == "application/x-www-form-urlencoded" {
        return serde_urlencoded::from_bytes(body).map_err(|e| invalid(&e));
    }
    Err(ApiError::UnsupportedMediaType {
        found: media_type,
        expected: TRAIN_BODY_FORMS,
    })
}

/// Retrains on `SOMMELIER_TRAINING_DATA` (default: the bundled data) and promotes per the
/// rules; when the champion was trained on the same data with the same recipe, nothing is
/// trained (`status: unchanged`) unless `force`. The training runs in its own task: a client
/// that hangs up does not stop it.
#[utoipa::path(
    post,
    path = "/api/train",
    params(TrainQuery),
    responses(
        (status = 200, body = TrainResponse),
        (status = 400, description = "An option is invalid or, in the body, unknown", body = super::error::ErrorBody),
        (status = 403, description = "Local server: the request is not from this machine's own pages", body = super::error::ErrorBody),
        (status = 409, description = "A training is already running", body = super::error::ErrorBody),
        (status = 500, description = "Configuration error: the server's own training data cannot be read or is invalid, or the store refuses writes", body = super::error::ErrorBody),
        (status = 503, description = "The model store is unavailable, or the server's request-memory budget is in use (see Retry-After)", body = super::error::ErrorBody),
    )
)]
pub async fn train(
    State(state): State<SharedState>,
    query: Result<Query<TrainQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TrainResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let options = options(query, &headers, &body)?;
    let force = options.force.unwrap_or(false);
    match start_http_training(&state, options.algorithm, force).await {
        Ok(Outcome::Trained(retrained)) => Ok(Json(response(retrained.report))),
        Ok(Outcome::Unchanged(unchanged)) => Ok(Json(unchanged_response(unchanged))),
        Err(StartError::Busy) => Err(ApiError::TrainingInProgress),
        Err(StartError::Data(error)) if error.is_transient() => {
            Err(crate::registry::RegistryError::Store(error).into())
        }
        Err(StartError::Data(error)) => Err(ApiError::Configuration(format!(
            "the server's training data (SOMMELIER_TRAINING_DATA) cannot be read: {error}"
        ))),
        Err(StartError::Train(error)) => Err(error.into()),
        Err(StartError::Lost) => Err(ApiError::Internal(
            "the training task ended without a result".to_string(),
        )),
    }
}

/// The last training on this instance (any trigger) and whether one is running now.
#[utoipa::path(
    get,
    path = "/api/train",
    responses((status = 200, body = TrainingStatus))
)]
pub async fn status(State(state): State<SharedState>) -> Json<TrainingStatus> {
    let running = state.try_start_training().is_none();
    let (last, last_error, last_trigger) = match state.last_training() {
        None => (None, None, None),
        Some(LastTraining::Finished { trigger, report }) => (
            Some(response(*report)),
            None,
            Some(trigger.as_str().to_string()),
        ),
        Some(LastTraining::Failed { trigger, error }) => {
            (None, Some(error), Some(trigger.as_str().to_string()))
        }
    };
    Json(TrainingStatus {
        running,
        last_trigger,
        last,
        last_error,
    })
}

fn response(report: TrainingReport) -> TrainResponse {
    TrainResponse {
        status: "trained",
        message: "Model training successful!",
        version: report.version,
        algorithm: report.algorithm.name().to_string(),
        metrics: report.metrics,
        rows: report.rows,
        training_rows: report.training_rows,
        promoted: report.promoted,
        champion: report.champion,
        reason: report.reason,
        champion_rmse: report.champion_rmse,
        comparison: report.comparison,
        ignored_columns: report.ignored_columns,
        fit_seconds: report.fit_seconds,
        peak_memory_bytes: report.peak_memory_bytes,
    }
}

/// The answer when nothing was trained: the champion, which stays, and why.
fn unchanged_response(unchanged: Unchanged) -> TrainResponse {
    TrainResponse {
        status: "unchanged",
        message: "Nothing to train: the champion was trained on this data with this recipe.",
        version: unchanged.champion.clone(),
        algorithm: unchanged.algorithm.name().to_string(),
        metrics: unchanged.metrics,
        rows: unchanged.rows,
        training_rows: unchanged.training_rows,
        promoted: false,
        champion: Some(unchanged.champion),
        reason: unchanged.reason,
        champion_rmse: unchanged.metrics.map(|m| m.rmse),
        comparison: None,
        ignored_columns: Vec::new(),
        fit_seconds: 0.0,
        peak_memory_bytes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::HeaderValue;

    fn typed(media_type: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
        headers
    }

    fn from(media_type: &'static str, body: &str) -> Result<TrainQuery, ApiError> {
        options(TrainQuery::default(), &typed(media_type), body.as_bytes())
    }

    #[test]
    fn no_body_or_an_empty_object_means_the_defaults() {
        for (media_type, body) in [
            ("application/json", ""),
            ("application/json", " {} "),
            ("application/x-www-form-urlencoded", "{}"),
            ("", "\n"),
            ("text/csv", ""),
        ] {
            let options = from(media_type, body).expect("defaults");
            assert_eq!(options.algorithm, None, "{media_type} {body:?}");
            assert_eq!(options.force, None, "{media_type} {body:?}");
        }
    }

    #[test]
    fn options_come_from_a_json_object_or_form_fields() {
        for (media_type, body) in [
            (
                "application/json",
                r#"{"algorithm": "elastic-net", "force": true}"#,
            ),
            // `curl -d` declares form fields whatever it sends.
            (
                "application/x-www-form-urlencoded",
                r#"{"algorithm":"elastic-net","force":true}"#,
            ),
            ("", r#"{"algorithm":"elastic-net","force":true}"#),
            (
                "application/x-www-form-urlencoded",
                "algorithm=elastic-net&force=true",
            ),
        ] {
            let options = from(media_type, body).expect("options");
            assert_eq!(options.algorithm, Some(Algorithm::ElasticNet), "{body}");
            assert_eq!(options.force, Some(true), "{body}");
        }
    }

    #[test]
    fn what_is_not_an_option_is_named() {
        let error = |media_type, body| from(media_type, body).expect_err(body).to_string();
        assert!(error("application/json", r#"{"algo": "x"}"#).contains("unknown field `algo`"));
        for not_an_object in ["[1]", "null", "1", "\"x\"", "true"] {
            assert!(
                error("application/json", not_an_object).contains("not an object"),
                "{not_an_object}"
            );
        }
        assert!(error("application/json", "nope").contains("expected"));
        assert!(error("application/json", r#"{"force": null}"#).contains("expected a boolean"));
        assert!(
            error("application/json", r#"{"algorithm": "svm"}"#).contains("unknown variant `svm`")
        );
        assert!(
            error("application/x-www-form-urlencoded", "force=maybe").contains("`true` or `false`")
        );
        assert!(
            error("application/x-www-form-urlencoded", "code=abc").contains("unknown field `code`")
        );
        for (media_type, body) in [
            ("application/json", r#"{"force": false, "force": true}"#),
            (
                "application/x-www-form-urlencoded",
                "force=false&force=true",
            ),
        ] {
            assert!(
                error(media_type, body).contains("duplicate field `force`"),
                "{body}"
            );
        }
        let refused = from("text/csv", "a,b").expect_err("csv");
        assert!(
            matches!(refused, ApiError::UnsupportedMediaType { .. }),
            "{refused}"
        );
    }

    #[test]
    fn the_body_overrides_the_query_string() {
        let query = TrainQuery {
            algorithm: Some(Algorithm::RandomForest),
            force: Some(true),
        };
        let headers = typed("application/json");
        let merged = options(query, &headers, br#"{"algorithm": "elastic-net"}"#).expect("options");
        assert_eq!(merged.algorithm, Some(Algorithm::ElasticNet));
        assert_eq!(merged.force, Some(true));
    }
}
