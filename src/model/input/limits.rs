//! What every body parser shares: the caps it applies while reading, the error it returns,
//! the rows it builds, and the name lookup that maps a client's field name to a feature.

use std::collections::HashSet;
use std::sync::LazyLock;

use thiserror::Error;

use super::InputError;
use crate::model::features::{
    check_bounds, check_finite, normalize_name, parse_feature, FeatureRow, ValueProblem,
    FEATURE_COUNT, FEATURE_NAMES, TARGET_NAME,
};

/// Bytes of a field name or of a value given as text, by default: no number needs more.
pub const MAX_TEXT_BYTES: usize = 1000;

/// Caps applied while a body is read. Each one bounds memory or time before any row exists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParseLimits {
    /// Rows in one request (`SOMMELIER_MAX_BATCH_ROWS`).
    pub max_rows: usize,
    /// Fields in one JSON object or form.
    pub max_keys: usize,
    /// Columns of a CSV header or of `dataframe_split.columns`.
    pub max_columns: usize,
    /// Bytes of a field name or of a value given as text (no number needs more).
    pub max_text_bytes: usize,
    /// Field names listed in `ignored_fields`; more are dropped from the list, not fatal.
    pub max_ignored_listed: usize,
}

impl ParseLimits {
    /// The caps for a server that accepts batches of up to `max_rows` rows.
    pub fn new(max_rows: usize) -> ParseLimits {
        ParseLimits {
            max_rows,
            max_keys: 256,
            max_columns: 256,
            max_text_bytes: MAX_TEXT_BYTES,
            max_ignored_listed: 64,
        }
    }
}

/// Why a body was refused. Every variant is the client's doing: a 4xx, never a 5xx.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BodyError {
    #[error("request body is empty")]
    Empty,
    /// Syntax: not JSON, not CSV, not a form, or nested deeper than any input needs.
    #[error("malformed {format}: {message}")]
    Malformed {
        format: &'static str,
        message: String,
    },
    /// Well-formed, but not one of the accepted shapes.
    #[error("{0}")]
    Shape(String),
    /// A single wine's fields are wrong.
    #[error(transparent)]
    Input(InputError),
    /// One row of a batch is wrong (rows count from 0).
    #[error("row {row}: {source}")]
    Row { row: usize, source: InputError },
    /// A cap of [`ParseLimits`] was reached.
    #[error("{what} exceeds the limit of {limit}{setting}")]
    TooMany {
        what: &'static str,
        limit: usize,
        setting: &'static str,
    },
}

impl BodyError {
    pub(crate) fn too_many_rows(limit: usize) -> BodyError {
        BodyError::TooMany {
            what: "the number of rows",
            limit,
            setting: " (SOMMELIER_MAX_BATCH_ROWS)",
        }
    }

    pub(crate) fn too_many(what: &'static str, limit: usize) -> BodyError {
        BodyError::TooMany {
            what,
            limit,
            setting: "",
        }
    }

    /// This error with a "did you mean" when a missing field was probably given under a
    /// misspelt name among `given`.
    pub fn with_suggestion(self, given: &[String]) -> BodyError {
        let given = || given.iter().map(String::as_str);
        match self {
            BodyError::Input(error) => BodyError::Input(error.with_suggestion(given())),
            BodyError::Row { row, source } => BodyError::Row {
                row,
                source: source.with_suggestion(given()),
            },
            other => other,
        }
    }

    /// The row-level error, if the body failed on one row's values.
    pub fn input_error(&self) -> Option<&InputError> {
        match self {
            BodyError::Input(e) | BodyError::Row { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Field names that were not features, each listed once, in the order first seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IgnoredFields {
    names: Vec<String>,
    seen: HashSet<String>,
    cap: usize,
}

impl IgnoredFields {
    pub fn new(cap: usize) -> IgnoredFields {
        IgnoredFields {
            cap,
            ..IgnoredFields::default()
        }
    }

    pub fn add(&mut self, name: &str) {
        if self.names.len() < self.cap && !self.seen.contains(name) {
            self.seen.insert(name.to_string());
            self.names.push(name.to_string());
        }
    }

    /// The names listed so far.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// What a body parser returns: validated rows in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBody {
    pub rows: Vec<FeatureRow>,
    /// Fields or columns that were not features (the target column is not listed).
    pub ignored_fields: Vec<String>,
    /// One wine given as a bare object or form, rather than a batch.
    pub single: bool,
}

/// What a client's field name refers to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldName {
    Feature(usize),
    Target,
    Other,
}

/// The features' names, normalised once.
static NORMALIZED_FEATURES: LazyLock<[String; FEATURE_COUNT]> =
    LazyLock::new(|| FEATURE_NAMES.map(normalize_name));

/// Classifies a field name: exact names cost one comparison per feature, other spellings
/// one normalisation of the name itself.
pub fn classify_field(name: &str) -> FieldName {
    if let Some(index) = FEATURE_NAMES.iter().position(|n| *n == name) {
        return FieldName::Feature(index);
    }
    if name == TARGET_NAME {
        return FieldName::Target;
    }
    let normalized = normalize_name(name);
    if let Some(index) = NORMALIZED_FEATURES.iter().position(|n| *n == normalized) {
        FieldName::Feature(index)
    } else if normalized == TARGET_NAME {
        FieldName::Target
    } else {
        FieldName::Other
    }
}

/// Why one cell cannot be a feature value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellProblem {
    Value(ValueProblem),
    Type(&'static str),
    TooLong(usize),
}

impl CellProblem {
    pub fn for_feature(self, index: usize) -> InputError {
        let field = FEATURE_NAMES[index].to_string();
        match self {
            CellProblem::Value(problem) => InputError::BadValue { field, problem },
            CellProblem::Type(found) => InputError::WrongType { field, found },
            CellProblem::TooLong(bytes) => InputError::TooLong { field, bytes },
        }
    }
}

/// A number given as a number: finite and within the feature's bounds.
pub fn number_cell(index: usize, value: f64) -> Result<f64, CellProblem> {
    check_finite(value)
        .and_then(|v| check_bounds(index, v))
        .map_err(CellProblem::Value)
}

/// A number given as text: short enough to be a number, then parsed and bounded.
pub fn text_cell(index: usize, text: &str, limits: &ParseLimits) -> Result<f64, CellProblem> {
    if text.len() > limits.max_text_bytes {
        return Err(CellProblem::TooLong(limits.max_text_bytes));
    }
    parse_feature(index, text).map_err(CellProblem::Value)
}

/// One row being filled field by field.
#[derive(Debug, Clone, Copy)]
pub struct RowBuilder {
    row: FeatureRow,
    seen: [bool; FEATURE_COUNT],
}

impl Default for RowBuilder {
    fn default() -> Self {
        RowBuilder {
            row: [f64::NAN; FEATURE_COUNT],
            seen: [false; FEATURE_COUNT],
        }
    }
}

impl RowBuilder {
    pub fn set(&mut self, index: usize, value: f64) -> Result<(), InputError> {
        if self.seen[index] {
            return Err(InputError::Duplicate {
                field: FEATURE_NAMES[index].to_string(),
            });
        }
        self.seen[index] = true;
        self.row[index] = value;
        Ok(())
    }

    pub fn finish(self) -> Result<FeatureRow, InputError> {
        match self.seen.iter().position(|s| !s) {
            Some(missing) => Err(InputError::Missing {
                field: FEATURE_NAMES[missing],
                given: None,
            }),
            None => Ok(self.row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_classified_after_normalising() {
        assert_eq!(classify_field("pH"), FieldName::Feature(8));
        assert_eq!(classify_field(" Fixed Acidity"), FieldName::Feature(0));
        assert_eq!(classify_field("QUALITY"), FieldName::Target);
        assert_eq!(classify_field("colour"), FieldName::Other);
    }

    #[test]
    fn ignored_fields_are_listed_once_up_to_the_cap() {
        let mut ignored = IgnoredFields::new(2);
        for name in ["a", "b", "a", "c"] {
            ignored.add(name);
        }
        assert_eq!(ignored.into_names(), vec!["a", "b"]);
    }

    #[test]
    fn cells_are_bounded() {
        let limits = ParseLimits::new(10);
        assert_eq!(text_cell(8, "3.2", &limits), Ok(3.2));
        assert!(matches!(
            number_cell(8, 1.797e308),
            Err(CellProblem::Value(ValueProblem::OutOfRange { .. }))
        ));
        assert_eq!(
            text_cell(8, &"1".repeat(2000), &limits),
            Err(CellProblem::TooLong(1000))
        );
    }
}
