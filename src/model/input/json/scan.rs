//! Checks made on the raw bytes of a body rather than on its tokens: numbers longer than the
//! text limit, and serde_json's errors turned into typed ones.
//!
//! Not here: the walk that builds rows (the format files).

use crate::model::features::FEATURE_NAMES;
use crate::model::input::limits::{classify_field, FieldName};
use crate::model::input::{BodyError, InputError};

/// The error for the first number in `body` longer than `max` bytes, naming its field, if
/// there is such a number: the
/// same limit as numbers given as text. (The JSON parser would read a number of any length,
/// and may round one with a very long mantissa and exponent to a different value.) One pass
/// over the bytes: strings are skipped, and the field is the last string before a `:`.
pub(super) fn overlong_number(body: &[u8], max: usize) -> Option<BodyError> {
    let mut at = 0;
    let mut last_string = 0..0;
    let mut field = None;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => {
                let start = at + 1;
                at = start;
                while let Some(&b) = body.get(at) {
                    match b {
                        b'"' => break,
                        b'\\' => at += 2,
                        _ => at += 1,
                    }
                }
                last_string = start..at.min(body.len());
                at += 1;
            }
            b':' => {
                field = Some(last_string.clone());
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while body
                    .get(at)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    at += 1;
                }
                if at - start > max {
                    let field = field.map_or("(a value)".to_string(), |range| {
                        field_name(&body[range], max)
                    });
                    return Some(BodyError::Input(InputError::TooLong { field, bytes: max }));
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// A client's field name for a message: the feature it names, else its first `max` bytes.
fn field_name(raw: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(max)]);
    match classify_field(&text) {
        FieldName::Feature(index) => FEATURE_NAMES[index].to_string(),
        _ => text.into_owned(),
    }
}

pub(super) fn json_error(error: serde_json::Error) -> BodyError {
    match error.classify() {
        serde_json::error::Category::Data => BodyError::Shape(error.to_string()),
        _ => BodyError::Malformed {
            format: "JSON",
            message: error.to_string(),
        },
    }
}
