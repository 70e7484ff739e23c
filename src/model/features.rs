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

/// Of the names a client gave, the one that most likely meant `expected` (a feature or the
/// target): after normalising, at most two letters apart and less than a third of the
/// name's length (`chloride` for `chlorides`, `alchohol` for `alcohol`). `None` if no name is
/// that close.
pub fn did_you_mean<'a>(
    expected: &str,
    given: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let target = normalize_name(expected);
    let allowed = 2.min(target.chars().count().saturating_sub(1) / 3);
    given
        .into_iter()
        .filter(|name| name.len() <= 4 * target.len().max(1))
        .map(|name| (edit_distance(&normalize_name(name), &target), name))
        .filter(|&(distance, _)| distance > 0 && distance <= allowed.max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance in characters (insertions, deletions and substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Physical limits of each measurement, in [`FEATURE_NAMES`] order, inclusive.
///
/// These are not plausibility ranges (drift monitoring watches those) but what the quantity can
/// physically be: no concentration is negative or above the mass of a litre of liquid, a pH lies
/// in 0–14, a density between that of the lightest and the heaviest liquids a wine could be
/// mixed from, an alcohol content in 0–100 % by volume. Keeping every value inside them keeps
/// every model's arithmetic (statistics, linear terms) finite.
pub const FEATURE_BOUNDS: [(f64, f64); FEATURE_COUNT] = [
    (0.0, 1000.0),      // fixed acidity, g(tartaric acid)/dm³
    (0.0, 1000.0),      // volatile acidity, g(acetic acid)/dm³
    (0.0, 1000.0),      // citric acid, g/dm³
    (0.0, 1000.0),      // residual sugar, g/dm³
    (0.0, 1000.0),      // chlorides, g(sodium chloride)/dm³
    (0.0, 1_000_000.0), // free sulfur dioxide, mg/dm³
    (0.0, 1_000_000.0), // total sulfur dioxide, mg/dm³
    (0.5, 2.0),         // density, g/cm³
    (0.0, 14.0),        // pH
    (0.0, 1000.0),      // sulphates, g(potassium sulphate)/dm³
    (0.0, 100.0),       // alcohol, % by volume
];

/// Why a single value cannot be used as a feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueProblem {
    Empty,
    NotANumber,
    /// A number written with a decimal comma (`7,4`), as many spreadsheets export it.
    DecimalComma,
    NaN,
    Infinite,
    /// Finite, but outside the feature's [`FEATURE_BOUNDS`].
    OutOfRange {
        min: f64,
        max: f64,
    },
}

impl ValueProblem {
    pub fn describe(self) -> String {
        match self {
            ValueProblem::Empty => "is empty".to_string(),
            ValueProblem::NotANumber => "is not a number".to_string(),
            ValueProblem::DecimalComma => {
                "is not a number: it has a decimal comma; write it with a point, e.g. `7.4`"
                    .to_string()
            }
            ValueProblem::NaN => "is NaN".to_string(),
            ValueProblem::Infinite => "is infinite".to_string(),
            ValueProblem::OutOfRange { min, max } => {
                format!("is outside the physical range {min} to {max}")
            }
        }
    }
}

/// Accepts a finite value for the feature at `index` only inside its [`FEATURE_BOUNDS`].
pub fn check_bounds(index: usize, value: f64) -> Result<f64, ValueProblem> {
    let (min, max) = FEATURE_BOUNDS[index];
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ValueProblem::OutOfRange { min, max })
    }
}

/// Parses a text cell into a value of the feature at `index`: finite and within bounds.
pub fn parse_feature(index: usize, text: &str) -> Result<f64, ValueProblem> {
    parse_value(text).and_then(|value| check_bounds(index, value))
}

/// Parses a text cell into a finite number.
pub fn parse_value(text: &str) -> Result<f64, ValueProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ValueProblem::Empty);
    }
    let value: f64 = text.parse().map_err(|_| {
        if written_with_decimal_comma(text) {
            ValueProblem::DecimalComma
        } else {
            ValueProblem::NotANumber
        }
    })?;
    check_finite(value)
}

/// Whether `text` is digits, one comma and digits (a sign allowed): a decimal comma.
fn written_with_decimal_comma(text: &str) -> bool {
    let digits = |part: Option<&str>| {
        part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut parts = text.trim_start_matches(['-', '+']).split(',');
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
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
    fn a_misspelt_name_is_suggested_and_a_distant_one_is_not() {
        assert_eq!(
            did_you_mean("chlorides", ["colour", "chloride"]),
            Some("chloride")
        );
        assert_eq!(did_you_mean("alcohol", ["Alchohol"]), Some("Alchohol"));
        assert_eq!(
            did_you_mean("fixed_acidity", ["Fixed Acidty"]),
            Some("Fixed Acidty")
        );
        assert_eq!(did_you_mean("pH", ["id", "pHH"]), Some("pHH"));
        assert_eq!(did_you_mean("density", ["colour", "id"]), None);
        assert_eq!(
            did_you_mean("quality", ["quality"]),
            None,
            "an exact name is no typo"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

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
        assert_eq!(parse_value(" 7,4"), Err(ValueProblem::DecimalComma));
        assert_eq!(parse_value("-0,25"), Err(ValueProblem::DecimalComma));
        for not_one in ["7,4,1", "7,", ",4", "1.000,5", "a,b"] {
            assert_eq!(
                parse_value(not_one),
                Err(ValueProblem::NotANumber),
                "{not_one}"
            );
        }
        assert_eq!(parse_value("NaN"), Err(ValueProblem::NaN));
        assert_eq!(parse_value("inf"), Err(ValueProblem::Infinite));
        assert_eq!(parse_value("-infinity"), Err(ValueProblem::Infinite));
    }

    #[test]
    fn features_must_lie_within_physical_bounds() {
        let ph = feature_index("ph").unwrap();
        assert_eq!(parse_feature(ph, "3.2"), Ok(3.2));
        assert_eq!(parse_feature(ph, "14"), Ok(14.0));
        assert!(matches!(
            parse_feature(ph, "14.5"),
            Err(ValueProblem::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_feature(0, "-0.1"),
            Err(ValueProblem::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_feature(3, "3e160"),
            Err(ValueProblem::OutOfRange { .. })
        ));
        let problem = check_bounds(ph, 20.0).unwrap_err().describe();
        assert!(problem.contains("0 to 14"), "{problem}");
        // The bundled data lies well inside every bound.
        for (i, (min, max)) in FEATURE_BOUNDS.iter().enumerate() {
            assert!(min < max, "{}", FEATURE_NAMES[i]);
        }
    }
}
