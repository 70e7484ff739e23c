//! Feature rows from JSON objects (API bodies, JSON-lines input): the edge where untrusted
//! values become a validated [`FeatureRow`], with errors that name the field.
//!
//! Request bodies go through the bounded parsers in the submodules ([`json`], [`csv`],
//! [`urlencoded`]): each costs time linear in the body and applies [`ParseLimits`] while it reads,
//! before any row is built, so no body of a given size costs more than any other.

pub mod csv;
pub mod json;
mod limits;
mod plain;
pub mod urlencoded;

pub use limits::{BodyError, IgnoredFields, ParseLimits, ParsedBody};

use serde_json::{Map, Value};
use thiserror::Error;

use super::features::{FeatureRow, ValueProblem, FEATURE_COUNT};
use limits::{classify_field, number_cell, text_cell, CellProblem, FieldName, RowBuilder};

#[derive(Debug, Clone, Error, PartialEq)]
pub enum InputError {
    #[error("missing field `{field}`{}", suggestion(.field, .given.as_deref()))]
    Missing {
        field: &'static str,
        /// A given name that looks like a misspelling of `field`.
        given: Option<String>,
    },
    #[error("field `{field}` {}", .problem.describe())]
    BadValue {
        field: String,
        problem: ValueProblem,
    },
    #[error("field `{field}` must be a number, not {found}")]
    WrongType { field: String, found: &'static str },
    #[error("field `{field}` is given twice")]
    Duplicate { field: String },
    #[error("field `{field}` is longer than the {bytes} bytes any number needs")]
    TooLong { field: String, bytes: usize },
    #[error("expected a JSON object with the 11 feature fields, got {found}")]
    NotAnObject { found: &'static str },
}

/// ` (found `chloride`: did you mean `chlorides`?)`, or nothing.
fn suggestion(field: &str, given: Option<&str>) -> String {
    given.map_or_else(String::new, |given| {
        format!(
            " (found `{}`: did you mean `{field}`?)",
            crate::model::dataset::clip(given)
        )
    })
}

impl InputError {
    /// This error with a suggestion when a missing field was probably given under a
    /// misspelt name among `given` (the names that were not features).
    pub fn with_suggestion<'a>(self, given: impl IntoIterator<Item = &'a str>) -> InputError {
        match self {
            InputError::Missing { field, given: None } => InputError::Missing {
                field,
                given: crate::model::features::did_you_mean(field, given).map(str::to_string),
            },
            other => other,
        }
    }

    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            InputError::Missing { field, .. } => Some(field),
            InputError::BadValue { field, .. }
            | InputError::WrongType { field, .. }
            | InputError::Duplicate { field }
            | InputError::TooLong { field, .. } => Some(field),
            InputError::NotAnObject { .. } => None,
        }
    }

    /// Whether a value was a number outside its feature's physical range (a 422, not a 400).
    pub fn is_out_of_range(&self) -> bool {
        matches!(
            self,
            InputError::BadValue {
                problem: ValueProblem::OutOfRange { .. },
                ..
            }
        )
    }
}

/// A parsed row plus the names of fields that were not features (reported, not fatal).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    pub row: FeatureRow,
    pub unknown_fields: Vec<String>,
}

pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the 11 features from a JSON value that must be an object. Numbers may also be
/// given as numeric strings (as HTML forms and some clients send them).
pub fn row_from_json(value: &Value) -> Result<ParsedRow, InputError> {
    match value {
        Value::Object(map) => row_from_object(map),
        other => Err(InputError::NotAnObject {
            found: json_type_name(other),
        }),
    }
}

pub fn row_from_object(map: &Map<String, Value>) -> Result<ParsedRow, InputError> {
    row_from_pairs(map.iter().map(|(k, v)| (k.as_str(), Cell::Json(v))))
}

/// Reads the 11 features from text pairs (an HTML form).
pub fn row_from_text_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ParsedRow, InputError> {
    row_from_pairs(pairs.into_iter().map(|(k, v)| (k, Cell::Text(v))))
}

enum Cell<'a> {
    Json(&'a Value),
    Text(&'a str),
}

fn row_from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Cell<'a>)>,
) -> Result<ParsedRow, InputError> {
    let limits = ParseLimits::new(1);
    let mut row = RowBuilder::default();
    let mut unknown_fields = Vec::new();
    for (key, cell) in pairs {
        match classify_field(key) {
            FieldName::Feature(index) => row.set(index, cell_value(index, cell, &limits)?)?,
            FieldName::Target => {}
            FieldName::Other => unknown_fields.push(key.to_string()),
        }
    }
    let row = row
        .finish()
        .map_err(|e| e.with_suggestion(unknown_fields.iter().map(String::as_str)))?;
    Ok(ParsedRow {
        row,
        unknown_fields,
    })
}

fn cell_value(index: usize, cell: Cell<'_>, limits: &ParseLimits) -> Result<f64, InputError> {
    let value = match cell {
        Cell::Text(text) => text_cell(index, text, limits),
        Cell::Json(Value::String(text)) => text_cell(index, text, limits),
        Cell::Json(Value::Number(n)) => n
            .as_f64()
            .ok_or(CellProblem::Value(ValueProblem::NotANumber))
            .and_then(|v| number_cell(index, v)),
        Cell::Json(other) => Err(CellProblem::Type(json_type_name(other))),
    };
    value.map_err(|problem| problem.for_feature(index))
}

/// Reads a row given as an array of 11 numbers in feature order.
pub fn row_from_array(values: &[Value]) -> Result<FeatureRow, InputError> {
    let mut row = [0.0; FEATURE_COUNT];
    if values.len() != FEATURE_COUNT {
        return Err(InputError::NotAnObject {
            found: "an array without exactly 11 values",
        });
    }
    let limits = ParseLimits::new(1);
    for (i, value) in values.iter().enumerate() {
        row[i] = cell_value(i, Cell::Json(value), &limits)?;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::features::FEATURE_NAMES;
    use serde_json::json;

    fn sample() -> Value {
        json!({"fixed_acidity": 7.4, "volatile_acidity": 0.7, "citric_acid": 0, "residual_sugar": 1.9,
               "chlorides": 0.076, "free_sulfur_dioxide": 11, "total_sulfur_dioxide": 34,
               "density": 0.9978, "pH": 3.51, "sulphates": 0.56, "alcohol": 9.4})
    }

    #[test]
    fn a_complete_object_parses_in_feature_order() {
        let parsed = row_from_json(&sample()).unwrap();
        assert_eq!(parsed.row[0], 7.4);
        assert_eq!(parsed.row[8], 3.51);
        assert!(parsed.unknown_fields.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = sample();
        v.as_object_mut().unwrap().remove("alcohol");
        assert_eq!(
            row_from_json(&v).unwrap_err(),
            InputError::Missing {
                field: "alcohol",
                given: None
            }
        );
        let mut v = sample();
        let value = v.as_object_mut().unwrap().remove("chlorides").unwrap();
        v["chloride"] = value;
        assert_eq!(
            row_from_json(&v).unwrap_err().to_string(),
            "missing field `chlorides` (found `chloride`: did you mean `chlorides`?)"
        );
        let mut v = sample();
        v["pH"] = json!("acid");
        assert_eq!(
            row_from_json(&v).unwrap_err().to_string(),
            "field `pH` is not a number"
        );
        let mut v = sample();
        v["density"] = json!(null);
        assert_eq!(
            row_from_json(&v).unwrap_err(),
            InputError::WrongType {
                field: "density".into(),
                found: "null"
            }
        );
        assert!(matches!(
            row_from_json(&json!([1, 2])),
            Err(InputError::NotAnObject { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_reported_not_fatal() {
        let mut v = sample();
        v["colour"] = json!("red");
        v["quality"] = json!(5);
        assert_eq!(row_from_json(&v).unwrap().unknown_fields, vec!["colour"]);
    }

    #[test]
    fn form_text_values_parse() {
        let pairs = FEATURE_NAMES
            .iter()
            .map(|n| (*n, "1.5"))
            .collect::<Vec<_>>();
        assert_eq!(
            row_from_text_pairs(pairs).unwrap().row,
            [1.5; FEATURE_COUNT]
        );
        let mut pairs = FEATURE_NAMES.iter().map(|n| (*n, "1")).collect::<Vec<_>>();
        pairs[3].1 = "NaN";
        assert_eq!(
            row_from_text_pairs(pairs).unwrap_err(),
            InputError::BadValue {
                field: "residual_sugar".into(),
                problem: ValueProblem::NaN
            }
        );
    }
}

#[cfg(test)]
mod body_tests;
