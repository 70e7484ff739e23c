//! CSV ingestion: turns an uploaded file into validated rows, or an error that names the problem.
//!
//! Accepts what people really upload: comma, semicolon or tab delimiters (detected), quoted or bare
//! headers matched after normalising case, spaces and underscores, any column order, extra
//! columns (ignored and reported), CRLF line endings and a UTF-8 byte-order mark. The input is
//! streamed through the `csv` reader and hashed on the way, never held as one string.

use std::io::{BufRead, BufReader, Read};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::features::{
    feature_index, normalize_name, parse_feature, parse_value, FeatureRow, ValueProblem,
    FEATURE_COUNT, FEATURE_NAMES, TARGET_NAME,
};
use super::progress;

/// The fewest labelled rows a model may be trained on.
pub const MIN_TRAINING_ROWS: usize = 50;

/// The longest cell accepted: far above any way of writing a measured number (a double needs at
/// most 17 significant digits; 1000 bytes leaves room for any padding a tool may add).
pub const MAX_CELL_BYTES: usize = 1000;

/// Bytes inspected to detect the delimiter and binary content.
const SNIFF_BYTES: usize = 8 * 1024;

/// Labelled rows, ready for training or evaluation.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub rows: Vec<FeatureRow>,
    pub targets: Vec<f64>,
    /// SHA-256 of the raw bytes, hex: identifies the data a model was trained on.
    pub sha256: String,
    /// Header names that are neither features nor the target.
    pub ignored_columns: Vec<String>,
}

/// Unlabelled rows, for prediction.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub rows: Vec<FeatureRow>,
    pub ignored_columns: Vec<String>,
    /// The cells of the column asked to be kept (an id carried through), row by row.
    pub kept: Option<Vec<String>>,
}

#[derive(Debug, Error, PartialEq)]
pub enum DatasetError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not text (binary content found); expected a CSV file")]
    Binary,
    #[error("the file has a header row but no data rows")]
    HeaderOnly,
    #[error("missing required column(s) {}; found: {}{}{}", quoted(.missing), quoted(.found), suggestions(.missing, .found), separator_hint(.found))]
    MissingColumns {
        missing: Vec<String>,
        found: Vec<String>,
    },
    /// A column asked to be kept (`--id`) is not in the header.
    #[error("no column `{}` to carry through; found: {}", clip(.column), quoted(.found))]
    NoSuchColumn { column: String, found: Vec<String> },
    #[error("column `{}` appears more than once in the header", clip(.column))]
    DuplicateColumn { column: String },
    #[error("line {line}, column `{}`: `{}` {}", clip(.column), clip(.value), .problem.describe())]
    BadValue {
        line: u64,
        column: String,
        value: String,
        problem: ValueProblem,
    },
    #[error("line {line}, column `{}`: a cell of {length} bytes is longer than the {MAX_CELL_BYTES} bytes any number needs", clip(.column))]
    CellTooLong {
        line: u64,
        column: String,
        length: usize,
    },
    #[error("line {line}, column `quality`: `{}` is not an integer from 0 to 10", clip(.value))]
    BadQuality { line: u64, value: String },
    #[error("line {line}: expected {expected} fields like the header, found {found}{}", if .found > .expected { " (a decimal comma splits a number in two: write `7.4`, not `7,4`, or separate the fields with `;`)" } else { "" })]
    FieldCount {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("only {rows} data rows; at least {minimum} are needed to train")]
    TooFewRows { rows: usize, minimum: usize },
    #[error("line {line}: {}", clip(.message))]
    Malformed { line: u64, message: String },
    #[error("cannot read the data: {0}")]
    Io(String),
}

/// Names listed in a message: at most [`QUOTED_NAMES`], each clipped (a header row can be
/// one line of many megabytes, and a message is answered, logged and stored).
fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "(nothing)".to_string();
    }
    let mut listed = names
        .iter()
        .take(QUOTED_NAMES)
        .map(|n| format!("`{}`", clip(n)))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > QUOTED_NAMES {
        listed.push_str(&format!(" and {} more", names.len() - QUOTED_NAMES));
    }
    listed
}

/// `; did you mean ...?` for each missing column that a found one probably misspells.
fn suggestions(missing: &[String], found: &[String]) -> String {
    missing
        .iter()
        .filter_map(|name| {
            super::features::did_you_mean(name, found.iter().map(String::as_str))
                .map(|given| format!("; did you mean `{name}` for `{}`?", clip(given)))
        })
        .collect()
}

/// A hint when the header was read as one column: the file is separated by something other
/// than commas, semicolons or tabs.
fn separator_hint(found: &[String]) -> &'static str {
    if found.len() == 1 {
        " (the header was read as one column: separate the fields with `,`, `;` or a tab)"
    } else {
        ""
    }
}

/// Names listed in one message, at most.
const QUOTED_NAMES: usize = 20;
/// Bytes of one piece of input quoted in a message, at most.
pub const QUOTED_BYTES: usize = 100;

/// At most [`QUOTED_BYTES`] of `text`, marked when cut, for a message.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= QUOTED_BYTES {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = QUOTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// Reads labelled training or evaluation data.
pub fn read_labelled(input: impl Read) -> Result<Dataset, DatasetError> {
    let mut parsed = parse(input, true)?;
    let targets = parsed.targets.take().unwrap_or_default();
    Ok(Dataset {
        rows: parsed.rows,
        targets,
        sha256: parsed.sha256,
        ignored_columns: parsed.ignored_columns,
    })
}

/// Reads labelled data and checks there is enough of it to train.
pub fn read_training_data(input: impl Read) -> Result<Dataset, DatasetError> {
    let dataset = read_labelled(input)?;
    if dataset.rows.len() < MIN_TRAINING_ROWS {
        return Err(DatasetError::TooFewRows {
            rows: dataset.rows.len(),
            minimum: MIN_TRAINING_ROWS,
        });
    }
    Ok(dataset)
}

/// Reads feature rows; a `quality` column, if present, is ignored.
pub fn read_features(input: impl Read) -> Result<FeatureTable, DatasetError> {
    read_features_keeping(input, None, false)
}

/// Reads feature rows and the cells of the column `keep` (matched like the features'
/// names), which is then not listed as ignored: an id to carry through to the predictions.
/// A missing `keep` column is an error when `required`, else `kept` is `None`.
pub fn read_features_keeping(
    input: impl Read,
    keep: Option<&str>,
    required: bool,
) -> Result<FeatureTable, DatasetError> {
    let parsed = parse_keeping(input, false, keep.map(|name| (name, required)))?;
    Ok(FeatureTable {
        rows: parsed.rows,
        ignored_columns: parsed.ignored_columns,
        kept: parsed.kept,
    })
}

struct Parsed {
    rows: Vec<FeatureRow>,
    targets: Option<Vec<f64>>,
    sha256: String,
    ignored_columns: Vec<String>,
    kept: Option<Vec<String>>,
}

/// Where each needed value sits in a record.
struct ColumnMap {
    feature_positions: [usize; FEATURE_COUNT],
    target_position: Option<usize>,
    header_names: Vec<String>,
    ignored_columns: Vec<String>,
}

fn parse(input: impl Read, labelled: bool) -> Result<Parsed, DatasetError> {
    parse_keeping(input, labelled, None)
}

fn parse_keeping(
    input: impl Read,
    labelled: bool,
    keep: Option<(&str, bool)>,
) -> Result<Parsed, DatasetError> {
    let mut buffered = BufReader::with_capacity(64 * 1024, HashingReader::new(input));
    let (delimiter, line_ends) = sniff(&mut buffered)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(buffered);

    let header = reader
        .byte_headers()
        .map_err(|error| csv_error(error, LineEnds::Lf))?
        .clone();
    let header_names: Vec<String> = header
        .iter()
        .map(|field| String::from_utf8_lossy(field).trim().to_string())
        .collect();
    if header_names.iter().all(|name| name.is_empty()) {
        return Err(DatasetError::Empty);
    }
    let mut columns = map_columns(header_names, labelled)?;
    let kept_position = match keep {
        Some((name, required)) => keep_column(&mut columns, name, required)?,
        None => None,
    };
    let mut kept = kept_position.map(|_| Vec::new());

    let mut rows = Vec::new();
    let mut targets = labelled.then(Vec::new);
    let mut record = csv::ByteRecord::new();
    let data_error = |error: csv::Error| csv_error(error, line_ends);
    while reader.read_byte_record(&mut record).map_err(data_error)? {
        let line = line_ends.line_of_record(record.position(), reader.position());
        if record.len() == 1 && record.get(0).is_some_and(|f| f.is_empty()) {
            continue; // a blank line
        }
        if record.len() != columns.header_names.len() {
            return Err(DatasetError::FieldCount {
                line,
                expected: columns.header_names.len(),
                found: record.len(),
            });
        }
        rows.push(read_row(&record, &columns, line)?);
        if let (Some(kept), Some(position)) = (kept.as_mut(), kept_position) {
            kept.push(cell_text(&record, position, line, &columns)?);
        }
        progress::rows_parsed(rows.len());
        if let (Some(targets), Some(position)) = (targets.as_mut(), columns.target_position) {
            targets.push(read_quality(&record, &columns, position, line)?);
        }
    }
    if rows.is_empty() {
        return Err(DatasetError::HeaderOnly);
    }
    // Drain whatever the csv reader did not need so that the hash covers every byte.
    let mut rest = reader.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| DatasetError::Io(e.to_string()))?;
    let sha256 = rest.into_inner().finish();
    Ok(Parsed {
        rows,
        targets,
        sha256,
        ignored_columns: columns.ignored_columns,
        kept,
    })
}

/// The position of the column `name` (matched after normalising), taken off the ignored list;
/// `None` if it is absent and not `required`.
fn keep_column(
    columns: &mut ColumnMap,
    name: &str,
    required: bool,
) -> Result<Option<usize>, DatasetError> {
    let wanted = normalize_name(name);
    let Some(position) = columns
        .header_names
        .iter()
        .position(|header| normalize_name(header) == wanted)
    else {
        if !required {
            return Ok(None);
        }
        return Err(DatasetError::NoSuchColumn {
            column: name.to_string(),
            found: columns.header_names.clone(),
        });
    };
    let header = &columns.header_names[position];
    columns.ignored_columns.retain(|ignored| ignored != header);
    Ok(Some(position))
}

/// How a text's lines end, read from its header line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LineEnds {
    Lf,
    CrLf,
}

impl LineEnds {
    /// The line where the reader says a record (or an error) starts. It ends a record at the
    /// `\r` of a `\r\n` and counts the `\n` as the next record's, so it places every record
    /// after a CRLF line one line too early; a text is taken to end its lines as its header
    /// does.
    fn line_of(self, position: Option<&csv::Position>) -> u64 {
        position.map_or(0, |p| p.line() + u64::from(self == LineEnds::CrLf))
    }

    /// The line of a record just read, from where the reader says it starts and where the
    /// reader stands after it. The start alone is one line early per blank line skipped
    /// before the record; the end alone is one line late after a `\n` (read with the record
    /// in LF text). The later of the two is the record's line, but for a record that spans
    /// lines (a quoted cell with a line break), which is named by its last line.
    fn line_of_record(self, start: Option<&csv::Position>, after: &csv::Position) -> u64 {
        let end = match self {
            LineEnds::Lf => after.line().saturating_sub(1),
            LineEnds::CrLf => after.line(),
        };
        self.line_of(start).max(end)
    }
}

/// Skips a byte-order mark, rejects binary or empty input, and picks the separator by
/// counting them in the header line (see [`delimiter_of`]), and the line ends by how that
/// line ends.
fn sniff<R: Read>(buffered: &mut BufReader<R>) -> Result<(u8, LineEnds), DatasetError> {
    let peek = buffered
        .fill_buf()
        .map_err(|e| DatasetError::Io(e.to_string()))?;
    if peek.starts_with(b"\xef\xbb\xbf") {
        buffered.consume(3);
    }
    let peek = buffered
        .fill_buf()
        .map_err(|e| DatasetError::Io(e.to_string()))?;
    let sample = &peek[..peek.len().min(SNIFF_BYTES)];
    if sample.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DatasetError::Empty);
    }
    if looks_binary(sample) {
        return Err(DatasetError::Binary);
    }
    let header = sample.split(|&b| b == b'\n').next().unwrap_or(sample);
    let line_ends = if header.len() < sample.len() && header.ends_with(b"\r") {
        LineEnds::CrLf
    } else {
        LineEnds::Lf
    };
    Ok((delimiter_of(sample), line_ends))
}

/// The separator of a CSV text, read from its header (first) line: tab or `;` when that line
/// has more of them than of the others (tab-separated exports, European spreadsheets), else
/// `,`.
pub fn delimiter_of(text: &[u8]) -> u8 {
    let header = text.split(|&b| b == b'\n').next().unwrap_or(text);
    let count = |separator: u8| header.iter().filter(|&&b| b == separator).count();
    let (tabs, semicolons, commas) = (count(b'\t'), count(b';'), count(b','));
    if tabs > semicolons && tabs > commas {
        b'\t'
    } else if semicolons > commas {
        b';'
    } else {
        b','
    }
}

fn looks_binary(sample: &[u8]) -> bool {
    if sample.contains(&0) {
        return true;
    }
    // A cut at the end of the sample may split a character; judge only what is complete.
    match std::str::from_utf8(sample) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    }
}

fn map_columns(header_names: Vec<String>, labelled: bool) -> Result<ColumnMap, DatasetError> {
    let mut feature_positions = [usize::MAX; FEATURE_COUNT];
    let mut target_position = None;
    let mut ignored_columns = Vec::new();
    for (position, name) in header_names.iter().enumerate() {
        let normalized = normalize_name(name);
        let slot = if let Some(index) = feature_index(&normalized) {
            &mut feature_positions[index]
        } else if normalized == TARGET_NAME {
            if !labelled {
                ignored_columns.push(name.clone());
                continue;
            }
            target_position.get_or_insert(usize::MAX)
        } else {
            ignored_columns.push(name.clone());
            continue;
        };
        if *slot != usize::MAX {
            return Err(DatasetError::DuplicateColumn {
                column: name.clone(),
            });
        }
        *slot = position;
    }
    let mut missing: Vec<String> = FEATURE_NAMES
        .iter()
        .zip(feature_positions)
        .filter(|(_, position)| *position == usize::MAX)
        .map(|(name, _)| name.to_string())
        .collect();
    if labelled && target_position.is_none() {
        missing.push(TARGET_NAME.to_string());
    }
    if !missing.is_empty() {
        return Err(DatasetError::MissingColumns {
            missing,
            found: header_names,
        });
    }
    Ok(ColumnMap {
        feature_positions,
        target_position,
        header_names,
        ignored_columns,
    })
}

fn read_row(
    record: &csv::ByteRecord,
    columns: &ColumnMap,
    line: u64,
) -> Result<FeatureRow, DatasetError> {
    let mut row = [0.0; FEATURE_COUNT];
    for (index, (value, &position)) in row
        .iter_mut()
        .zip(columns.feature_positions.iter())
        .enumerate()
    {
        let cell = cell_text(record, position, line, columns)?;
        *value = parse_feature(index, &cell).map_err(|problem| DatasetError::BadValue {
            line,
            column: columns.header_names[position].clone(),
            value: shortened(&cell),
            problem,
        })?;
    }
    Ok(row)
}

fn read_quality(
    record: &csv::ByteRecord,
    columns: &ColumnMap,
    position: usize,
    line: u64,
) -> Result<f64, DatasetError> {
    let cell = cell_text(record, position, line, columns)?;
    match parse_value(&cell) {
        Ok(q) if q.fract() == 0.0 && (0.0..=10.0).contains(&q) => Ok(q),
        _ => Err(DatasetError::BadQuality {
            line,
            value: shortened(&cell),
        }),
    }
}

/// The whole text of a cell, however long a real number may be written; a cell longer than
/// [`MAX_CELL_BYTES`] is no number anyone measured and is refused before parsing.
fn cell_text(
    record: &csv::ByteRecord,
    position: usize,
    line: u64,
    columns: &ColumnMap,
) -> Result<String, DatasetError> {
    let bytes = record.get(position).unwrap_or_default();
    if bytes.len() > MAX_CELL_BYTES {
        return Err(DatasetError::CellTooLong {
            line,
            column: columns.header_names[position].clone(),
            length: bytes.len(),
        });
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// A cell as quoted in an error message: absurd cells are shortened to stay readable.
fn shortened(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

fn csv_error(error: csv::Error, line_ends: LineEnds) -> DatasetError {
    let line = line_ends.line_of(error.position());
    let message = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(e) => DatasetError::Io(e.to_string()),
        csv::ErrorKind::Utf8 { .. } => DatasetError::Binary,
        _ => DatasetError::Malformed { line, message },
    }
}

/// Passes bytes through while hashing them.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Lower-case hexadecimal of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of some bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "fixed_acidity,volatile_acidity,citric_acid,residual_sugar,chlorides,free_sulfur_dioxide,total_sulfur_dioxide,density,pH,sulphates,alcohol,quality";
    const ROW: &str = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";

    fn csv_of(header: &str, rows: &[&str], newline: &str) -> String {
        let mut text = header.to_string();
        for row in rows {
            text.push_str(newline);
            text.push_str(row);
        }
        text.push_str(newline);
        text
    }

    fn labelled(text: &str) -> Result<Dataset, DatasetError> {
        read_labelled(text.as_bytes())
    }

    #[test]
    fn reads_comma_separated_rows_in_feature_order() {
        let data = labelled(&csv_of(HEADER, &[ROW, ROW], "\n")).unwrap();
        assert_eq!(data.rows.len(), 2);
        assert_eq!(data.rows[0][0], 7.4);
        assert_eq!(data.rows[0][10], 9.4);
        assert_eq!(data.targets, vec![5.0, 5.0]);
        assert!(data.ignored_columns.is_empty());
        assert_eq!(
            data.sha256,
            sha256_hex(csv_of(HEADER, &[ROW, ROW], "\n").as_bytes())
        );
    }

    #[test]
    fn reads_the_uci_original_semicolon_quoted_format() {
        let header = "\"fixed acidity\";\"volatile acidity\";\"citric acid\";\"residual sugar\";\"chlorides\";\"free sulfur dioxide\";\"total sulfur dioxide\";\"density\";\"pH\";\"sulphates\";\"alcohol\";\"quality\"";
        let row = ROW.replace(',', ";");
        let data = labelled(&csv_of(header, &[&row], "\n")).unwrap();
        assert_eq!(data.rows[0][8], 3.51);
        assert_eq!(data.targets, vec![5.0]);
    }

    #[test]
    fn accepts_crlf_bom_any_order_and_title_case_names() {
        let header = "\u{feff}Quality,Alcohol,Sulphates,PH,Density,Total Sulfur Dioxide,Free Sulfur Dioxide,Chlorides,Residual Sugar,Citric Acid,Volatile Acidity,Fixed Acidity";
        let row = "5,9.4,0.56,3.51,0.9978,34,11,0.076,1.9,0,0.7,7.4";
        let text = csv_of(header, &[row], "\r\n");
        let data = labelled(&text).unwrap();
        let expected = labelled(&csv_of(HEADER, &[ROW], "\n")).unwrap();
        assert_eq!(data.rows, expected.rows);
        assert_eq!(data.targets, expected.targets);
        assert_eq!(
            data.sha256,
            sha256_hex(text.as_bytes()),
            "the BOM is part of the data's hash"
        );
    }

    #[test]
    fn ignores_and_reports_extra_columns() {
        let header = format!("id,{HEADER},colour");
        let row = format!("1,{ROW},red");
        let data = labelled(&csv_of(&header, &[&row], "\n")).unwrap();
        assert_eq!(data.ignored_columns, vec!["id", "colour"]);
        assert_eq!(data.rows[0][0], 7.4);
    }

    #[test]
    fn names_a_missing_column_and_lists_what_was_found() {
        let header = HEADER.replace("alcohol,", "");
        let row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,5";
        let error = labelled(&csv_of(&header, &[row], "\n")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`alcohol`"), "{message}");
        assert!(message.contains("found: `fixed_acidity`"), "{message}");
        assert!(
            matches!(error, DatasetError::MissingColumns { ref missing, .. } if missing == &vec!["alcohol".to_string()])
        );
    }

    #[test]
    fn training_data_needs_a_quality_column_but_features_do_not() {
        let header = HEADER.replace(",quality", "");
        let row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4";
        let text = csv_of(&header, &[row], "\n");
        assert!(matches!(
            labelled(&text),
            Err(DatasetError::MissingColumns { .. })
        ));
        let table = read_features(text.as_bytes()).unwrap();
        assert_eq!(table.rows.len(), 1);
        let with_quality = read_features(csv_of(HEADER, &[ROW], "\n").as_bytes()).unwrap();
        assert_eq!(with_quality.ignored_columns, vec!["quality"]);
    }

    #[test]
    fn lines_are_counted_alike_with_crlf_and_lf_endings() {
        let bad = "7.4,x,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";
        for newline in ["\n", "\r\n"] {
            let error = labelled(&csv_of(HEADER, &[bad], newline)).unwrap_err();
            assert!(
                error.to_string().starts_with("line 2,"),
                "{newline:?}: {error}"
            );
            let error = labelled(&csv_of(HEADER, &[ROW, "", ROW, bad], newline)).unwrap_err();
            assert!(
                error.to_string().starts_with("line 5,"),
                "{newline:?}: {error}"
            );
            // Right after blank lines, and on a last line without a line break.
            let error = labelled(&csv_of(HEADER, &[ROW, "", "", bad], newline)).unwrap_err();
            assert!(
                error.to_string().starts_with("line 5,"),
                "{newline:?}: {error}"
            );
            let error = labelled(&format!("{HEADER}{newline}{ROW}{newline}{bad}")).unwrap_err();
            assert!(
                error.to_string().starts_with("line 3,"),
                "{newline:?}: {error}"
            );
            let error = labelled(&csv_of(HEADER, &[ROW, ROW, "1,2"], newline)).unwrap_err();
            assert!(
                matches!(error, DatasetError::FieldCount { line: 4, .. }),
                "{newline:?}: {error}"
            );
        }
    }

    #[test]
    fn bad_cells_are_reported_with_line_and_column() {
        let cases = [
            (
                "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,,5",
                ValueProblem::Empty,
                "alcohol",
            ),
            (
                "7.4,abc,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5",
                ValueProblem::NotANumber,
                "volatile_acidity",
            ),
            (
                "7.4,0.7,0,1.9,NaN,11,34,0.9978,3.51,0.56,9.4,5",
                ValueProblem::NaN,
                "chlorides",
            ),
            (
                "7.4,0.7,0,1.9,0.076,11,34,0.9978,inf,0.56,9.4,5",
                ValueProblem::Infinite,
                "pH",
            ),
        ];
        for ((bad, problem, column), newline) in
            cases.into_iter().zip(["\n", "\r\n"].iter().cycle())
        {
            let error = labelled(&csv_of(HEADER, &[ROW, bad], newline)).unwrap_err();
            assert_eq!(
                error,
                DatasetError::BadValue {
                    line: 3,
                    column: column.to_string(),
                    value: bad
                        .split(',')
                        .nth(FEATURE_NAMES.iter().position(|n| *n == column).unwrap())
                        .unwrap()
                        .to_string(),
                    problem,
                }
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("line 3, column `{column}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn long_numbers_parse_and_absurd_cells_are_refused() {
        let header = FEATURE_NAMES.join(",") + ",quality";
        let long = "0.99780000000000000000000000000000000001";
        let row = format!("7.4,0.7,0,1.9,0.076,11,34,{long},3.51,0.56,9.4,5");
        let rows: Vec<&str> = std::iter::repeat_n(row.as_str(), MIN_TRAINING_ROWS).collect();
        let dataset = labelled(&csv_of(&header, &rows, "\n")).unwrap();
        assert_eq!(dataset.rows[0][7], 0.9978);

        let absurd = "1".repeat(MAX_CELL_BYTES + 1);
        let row = format!("7.4,0.7,0,1.9,0.076,11,34,{absurd},3.51,0.56,9.4,5");
        let error = labelled(&csv_of(&header, &[&row], "\n")).unwrap_err();
        assert!(
            matches!(&error, DatasetError::CellTooLong { line: 2, column, .. } if column == "density"),
            "{error:?}"
        );
    }

    #[test]
    fn values_outside_physical_bounds_are_refused_with_line_and_column() {
        let header = FEATURE_NAMES.join(",") + ",quality";
        let good = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";
        let bad = "7.4,0.7,0,3e160,0.076,11,34,0.9978,3.51,0.56,9.4,5";
        let error = labelled(&csv_of(&header, &[good, bad], "\n")).unwrap_err();
        assert!(
            matches!(&error, DatasetError::BadValue { line: 3, column, problem: ValueProblem::OutOfRange { .. }, .. } if column == "residual_sugar"),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("outside the physical range"),
            "{error}"
        );
    }

    #[test]
    fn quality_must_be_an_integer_from_0_to_10() {
        for bad in ["5.5", "11", "-1", "good", ""] {
            let row = format!("7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,{bad}");
            let error = labelled(&csv_of(HEADER, &[&row], "\n")).unwrap_err();
            assert_eq!(
                error,
                DatasetError::BadQuality {
                    line: 2,
                    value: bad.to_string()
                }
            );
        }
        let row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,6.0";
        assert_eq!(
            labelled(&csv_of(HEADER, &[row], "\n")).unwrap().targets,
            vec![6.0]
        );
    }

    #[test]
    fn empty_binary_and_header_only_files_get_clear_errors() {
        assert_eq!(labelled("").unwrap_err(), DatasetError::Empty);
        assert_eq!(labelled("\n\r\n  ").unwrap_err(), DatasetError::Empty);
        assert_eq!(
            read_labelled(&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..]).unwrap_err(),
            DatasetError::Binary
        );
        assert_eq!(
            read_labelled(&b"\xff\xfe\xfd garbage, more"[..]).unwrap_err(),
            DatasetError::Binary
        );
        assert_eq!(
            labelled(&format!("{HEADER}\n")).unwrap_err(),
            DatasetError::HeaderOnly
        );
        assert_eq!(labelled(HEADER).unwrap_err(), DatasetError::HeaderOnly);
    }

    #[test]
    fn ragged_rows_and_duplicate_columns_are_errors() {
        let short = "7.4,0.7,0";
        assert_eq!(
            labelled(&csv_of(HEADER, &[ROW, short], "\n")).unwrap_err(),
            DatasetError::FieldCount {
                line: 3,
                expected: 12,
                found: 3
            }
        );
        let header = format!("{HEADER},Alcohol");
        let row = format!("{ROW},9.0");
        assert_eq!(
            labelled(&csv_of(&header, &[&row], "\n")).unwrap_err(),
            DatasetError::DuplicateColumn {
                column: "Alcohol".to_string()
            }
        );
    }

    #[test]
    fn blank_lines_are_skipped() {
        let text = format!("{HEADER}\n{ROW}\n\n{ROW}\n\n");
        assert_eq!(labelled(&text).unwrap().rows.len(), 2);
    }

    #[test]
    fn too_few_rows_to_train_is_an_error() {
        let rows = vec![ROW; 49];
        let error = read_training_data(csv_of(HEADER, &rows, "\n").as_bytes()).unwrap_err();
        assert_eq!(
            error,
            DatasetError::TooFewRows {
                rows: 49,
                minimum: 50
            }
        );
        let rows = vec![ROW; 50];
        assert!(read_training_data(csv_of(HEADER, &rows, "\n").as_bytes()).is_ok());
    }
}
