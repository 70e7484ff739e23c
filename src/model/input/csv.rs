//! `text/csv` prediction bodies: a header row naming the features (any order, matched after
//! normalising, `;` or `,` separated), then one wine per line. Rows are counted and cells
//! measured as they are read; unknown columns are skipped without being parsed.

use super::limits::{classify_field, text_cell, FieldName, RowBuilder};
use super::{BodyError, IgnoredFields, InputError, ParseLimits, ParsedBody};
use crate::model::dataset::clip;
use crate::model::features::{did_you_mean, FEATURE_COUNT, FEATURE_NAMES};

/// Parses a CSV body into rows.
pub fn parse_csv(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(crate::model::dataset::delimiter_of(body))
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let mut ignored = IgnoredFields::new(limits.max_ignored_listed);
    let columns = loop {
        if !reader.read_byte_record(&mut record).map_err(malformed)? {
            return Err(BodyError::Empty);
        }
        if !is_blank(&record) {
            break header(&record, limits, &mut ignored)?;
        }
    };
    let mut rows = Vec::new();
    while reader.read_byte_record(&mut record).map_err(malformed)? {
        if is_blank(&record) {
            continue;
        }
        let row = rows.len();
        if row == limits.max_rows {
            return Err(BodyError::too_many_rows(limits.max_rows));
        }
        if record.len() != columns.len() {
            return Err(BodyError::Shape(format!(
                "CSV row {row} has {} fields; the header has {}",
                record.len(),
                columns.len()
            )));
        }
        let mut builder = RowBuilder::default();
        for (cell, column) in record.iter().zip(&columns) {
            let Some(index) = *column else { continue };
            let value = std::str::from_utf8(cell)
                .map_err(|_| InputError::BadValue {
                    field: FEATURE_NAMES[index].to_string(),
                    problem: crate::model::features::ValueProblem::NotANumber,
                })
                .and_then(|text| text_cell(index, text, limits).map_err(|p| p.for_feature(index)))
                .and_then(|value| builder.set(index, value));
            value.map_err(|source| BodyError::Row { row, source })?;
        }
        rows.push(
            builder
                .finish()
                .map_err(|source| BodyError::Row { row, source })?,
        );
    }
    if rows.is_empty() {
        return Err(BodyError::Shape(
            "the CSV body has a header row but no data rows".to_string(),
        ));
    }
    Ok(ParsedBody {
        rows,
        ignored_fields: ignored.into_names(),
        single: false,
    })
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty)
}

fn malformed(error: csv::Error) -> BodyError {
    BodyError::Malformed {
        format: "CSV",
        message: error.to_string(),
    }
}

/// Maps each header position to a feature, once.
fn header(
    record: &csv::ByteRecord,
    limits: &ParseLimits,
    ignored: &mut IgnoredFields,
) -> Result<Vec<Option<usize>>, BodyError> {
    if record.len() > limits.max_columns {
        return Err(BodyError::too_many(
            "the number of columns",
            limits.max_columns,
        ));
    }
    let mut given = [false; FEATURE_COUNT];
    let mut columns = Vec::with_capacity(record.len());
    for name in record.iter() {
        if name.len() > limits.max_text_bytes {
            return Err(BodyError::too_many(
                "the length of a column name in bytes",
                limits.max_text_bytes,
            ));
        }
        let name = String::from_utf8_lossy(name);
        let column = match classify_field(&name) {
            FieldName::Feature(index) => {
                if given[index] {
                    return Err(BodyError::Input(InputError::Duplicate {
                        field: FEATURE_NAMES[index].to_string(),
                    }));
                }
                given[index] = true;
                Some(index)
            }
            FieldName::Target => None,
            FieldName::Other => {
                ignored.add(&name);
                None
            }
        };
        columns.push(column);
    }
    let missing: Vec<&str> = FEATURE_NAMES
        .iter()
        .zip(given)
        .filter(|(_, given)| !given)
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        let found: Vec<String> = record
            .iter()
            .take(20)
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        let hints: String = missing
            .iter()
            .filter_map(|name| {
                did_you_mean(name, found.iter().map(String::as_str))
                    .map(|given| format!("; did you mean `{name}` for `{}`?", clip(given)))
            })
            .collect();
        return Err(BodyError::Shape(format!(
            "missing required column(s) `{}`; found: `{}`{}{hints}",
            missing.join("`, `"),
            found.join("`, `"),
            if record.len() > found.len() {
                ", ..."
            } else {
                ""
            }
        )));
    }
    Ok(columns)
}
