//! Turning a request body into rows: picks the parser for the media type and runs it off the
//! async workers (in the server's heavy lane) when the body is large, so a long parse never
//! stalls other requests.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::model::input::{csv, json, urlencoded, BodyError, ParseLimits, ParsedBody};

/// Bodies up to this size are parsed in place: cheaper than a hop to the blocking pool.
pub const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// A body parser: linear in the body, bounded by the limits.
pub type Parser = fn(&[u8], &ParseLimits) -> Result<ParsedBody, BodyError>;

/// A parser chosen from a request's headers.
#[derive(Clone, Copy)]
pub struct ChosenParser {
    pub parse: Parser,
    /// The body is an HTML form (which may want an HTML answer).
    pub form: bool,
}

/// The parser of `/api/predict`'s bodies (which `/api/explain` takes too), or 415 naming what
/// was sent.
pub fn predict_parser(headers: &HeaderMap) -> Result<ChosenParser, ApiError> {
    predict_parser_of(headers).ok_or_else(|| {
        ApiError::unsupported_media_type(
            headers,
            "application/json or application/x-www-form-urlencoded",
        )
    })
}

/// The parser of `/api/predict` for a request's `Content-Type` (JSON or an HTML form),
/// compared in place without regard to case or parameters.
pub fn predict_parser_of(headers: &HeaderMap) -> Option<ChosenParser> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)?;
    if media_type.eq_ignore_ascii_case("application/json") {
        Some(ChosenParser {
            parse: json::parse_predict,
            form: false,
        })
    } else if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(ChosenParser {
            parse: urlencoded::parse_form,
            form: true,
        })
    } else {
        None
    }
}

/// The parser of `/api/invocations` for a media type.
pub fn invocations_parser(media_type: &str) -> Option<Parser> {
    match media_type {
        "application/json" => Some(json::parse_invocations),
        "text/csv" => Some(csv::parse_csv),
        _ => None,
    }
}

/// Parses `body`, on a blocking thread when it is large.
pub async fn parse(
    body: Bytes,
    limits: ParseLimits,
    parser: Parser,
) -> Result<ParsedBody, ApiError> {
    if body.len() <= INLINE_PARSE_BYTES {
        return Ok(parser(&body, &limits)?);
    }
    crate::api::admission::run_heavy(move || parser(&body, &limits))
        .await?
        .map_err(ApiError::from)
}
