//! `application/x-www-form-urlencoded` bodies (the HTML form): one wine, fields decoded
//! lazily pair by pair, counted and measured as they come.

use super::limits::{classify_field, text_cell, FieldName, RowBuilder};
use super::{BodyError, IgnoredFields, ParseLimits, ParsedBody};

/// What a JSON body sent as form fields is told: the usual cause is `curl -d` without a
/// `Content-Type`, which sends form fields, and the fields it then lacks are not the mistake.
pub const JSON_SENT_AS_FORM: &str = "the body looks like JSON but came as form fields \
(application/x-www-form-urlencoded, what `curl -d` sends unless told otherwise): send it with \
Content-Type: application/json";

/// Whether a form body is JSON instead: it starts with `{` or `[`, as no field name of a
/// wine or a label does.
pub fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// Parses a form body into one row.
pub fn parse_form(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    if looks_like_json(body) {
        return Err(BodyError::Shape(JSON_SENT_AS_FORM.into()));
    }
    let mut row = RowBuilder::default();
    let mut ignored = IgnoredFields::new(limits.max_ignored_listed);
    for (count, (name, value)) in url::form_urlencoded::parse(body).enumerate() {
        if count == limits.max_keys {
            return Err(BodyError::too_many(
                "the number of form fields",
                limits.max_keys,
            ));
        }
        if name.len() > limits.max_text_bytes {
            return Err(BodyError::too_many(
                "the length of a field name in bytes",
                limits.max_text_bytes,
            ));
        }
        match classify_field(&name) {
            FieldName::Feature(index) => {
                let set = text_cell(index, &value, limits)
                    .map_err(|p| p.for_feature(index))
                    .and_then(|v| row.set(index, v));
                set.map_err(BodyError::Input)?;
            }
            FieldName::Target => {}
            FieldName::Other => ignored.add(&name),
        }
    }
    let row = row
        .finish()
        .map_err(|e| BodyError::Input(e).with_suggestion(ignored.names()))?;
    Ok(ParsedBody {
        rows: vec![row],
        ignored_fields: ignored.into_names(),
        single: true,
    })
}
