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

/// What `/api/predict` and `/api/explain` take.
const PREDICT_MEDIA_TYPES: &str = "application/json or application/x-www-form-urlencoded";

/// The parser of `/api/predict`'s bodies, or 415 naming what was sent; CSV is sent on to
/// `/api/invocations`, which takes it.
pub fn predict_parser(headers: &HeaderMap) -> Result<ChosenParser, ApiError> {
    predict_parser_of(headers).ok_or_else(|| {
        let expected = if super::media_type(headers) == "text/csv" {
            "application/json or application/x-www-form-urlencoded here; CSV rows go to POST /api/invocations"
        } else {
            PREDICT_MEDIA_TYPES
        };
        ApiError::unsupported_media_type(headers, expected)
    })
}

/// The parser of `/api/explain`'s bodies (those of `/api/predict`), or 415 naming what was
/// sent.
pub fn explain_parser(headers: &HeaderMap) -> Result<ChosenParser, ApiError> {
    predict_parser_of(headers)
        .ok_or_else(|| ApiError::unsupported_media_type(headers, PREDICT_MEDIA_TYPES))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(parser: fn(&HeaderMap) -> Result<ChosenParser, ApiError>, media: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, media.parse().unwrap());
        match parser(&headers) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{media} was taken"),
        }
    }

    #[test]
    fn csv_sent_for_a_prediction_is_pointed_to_invocations() {
        let message = refused(predict_parser, "Text/CSV; charset=utf-8");
        assert!(message.contains("POST /api/invocations"), "{message}");
        assert!(message.contains("application/json"), "{message}");
        // Other types, and CSV sent to be explained (invocations explain nothing), get the
        // list of what is taken, and no more.
        for (parser, media) in [
            (predict_parser as fn(&HeaderMap) -> _, "text/plain"),
            (explain_parser, "text/csv"),
        ] {
            let message = refused(parser, media);
            assert!(!message.contains("invocations"), "{message}");
            assert!(message.contains(PREDICT_MEDIA_TYPES), "{message}");
        }
    }
}
