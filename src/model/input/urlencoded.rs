//! `application/x-www-form-urlencoded` bodies (the HTML form): one wine, fields decoded
//! lazily pair by pair, counted and measured as they come.

use super::limits::{classify_field, text_cell, FieldName, RowBuilder};
use super::{BodyError, IgnoredFields, ParseLimits, ParsedBody};

/// Parses a form body into one row.
pub fn parse_form(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
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
    Ok(ParsedBody {
        rows: vec![row.finish().map_err(BodyError::Input)?],
        ignored_fields: ignored.into_names(),
        single: true,
    })
}
