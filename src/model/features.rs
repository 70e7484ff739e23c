//! The eleven physicochemical measurements a model reads, in the model's input order,
//! and the matching of user-supplied column names to them.

/// Number of input features.
pub const FEATURE_COUNT: usize = 11;

/// Feature names in the model's input order (the original API's field names).
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

/// Name of the label column in training data.
pub const TARGET_NAME: &str = "quality";

/// One wine's measurements, in [`FEATURE_NAMES`] order. Every value is finite.
pub type FeatureRow = [f64; FEATURE_COUNT];

/// Normalises a column name so that `Fixed Acidity`, `fixed_acidity` and `"fixed acidity"`
/// compare equal: lower case, surrounding quotes and whitespace dropped, runs of spaces,
/// underscores and hyphens turned into one `_`.
pub fn normalize_name(raw: &str) -> String {
    let trimmed = raw
        .trim_start_matches('\u{feff}')
        .trim()
        .trim_matches('"')
        .trim();
    let mut out = String::with_capacity(trimmed.len());
    let mut pending_separator = false;
    for ch in trimmed.chars() {
        if ch == ' ' || ch == '_' || ch == '-' || ch == '\t' {
            pending_separator = !out.is_empty();
        } else {
            if pending_separator {
                out.push('_');
                pending_separator = false;
            }
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// The index of a feature whose normalised name is `normalized`, if any.
pub fn feature_index(normalized: &str) -> Option<usize> {
    FEATURE_NAMES
        .iter()
        .position(|name| normalize_name(name) == normalized)
}

/// Why a single value cannot be used as a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    Empty,
    NotANumber,
    NaN,
    Infinite,
}

impl ValueProblem {
    pub fn describe(self) -> &'static str {
        match self {
            ValueProblem::Empty => "is empty",
            ValueProblem::NotANumber => "is not a number",
            ValueProblem::NaN => "is NaN",
            ValueProblem::Infinite => "is infinite",
        }
    }
}

/// Parses a text cell into a finite number.
pub fn parse_value(text: &str) -> Result<f64, ValueProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ValueProblem::Empty);
    }
    let value: f64 = text.parse().map_err(|_| ValueProblem::NotANumber)?;
    check_finite(value)
}

/// Accepts a number only if it is finite.
pub fn check_finite(value: f64) -> Result<f64, ValueProblem> {
    if value.is_nan() {
        Err(ValueProblem::NaN)
    } else if value.is_infinite() {
        Err(ValueProblem::Infinite)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_after_normalising_case_spaces_and_underscores() {
        for raw in [
            "fixed acidity",
            "fixed_acidity",
            "Fixed Acidity",
            "\"fixed acidity\"",
            " FIXED  ACIDITY ",
        ] {
            assert_eq!(feature_index(&normalize_name(raw)), Some(0), "{raw}");
        }
        assert_eq!(feature_index(&normalize_name("pH")), Some(8));
        assert_eq!(feature_index(&normalize_name("PH")), Some(8));
        assert_eq!(feature_index(&normalize_name("\u{feff}alcohol")), Some(10));
        assert_eq!(feature_index(&normalize_name("colour")), None);
    }

    #[test]
    fn values_must_be_finite_numbers() {
        assert_eq!(parse_value(" 7.4 "), Ok(7.4));
        assert_eq!(parse_value("1e-3"), Ok(0.001));
        assert_eq!(parse_value(""), Err(ValueProblem::Empty));
        assert_eq!(parse_value("abc"), Err(ValueProblem::NotANumber));
        assert_eq!(parse_value("NaN"), Err(ValueProblem::NaN));
        assert_eq!(parse_value("inf"), Err(ValueProblem::Infinite));
        assert_eq!(parse_value("-infinity"), Err(ValueProblem::Infinite));
    }
}
