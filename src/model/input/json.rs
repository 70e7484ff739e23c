//! Streaming JSON bodies: `/api/predict` (one object or `{"instances": [...]}`) and MLflow's
//! scoring formats for `/api/invocations` (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`, the last two as rows or as columns).
//!
//! Rows are built straight from the token stream: no intermediate JSON tree, unknown fields
//! skipped without being stored, each field name normalised once, and every cap checked the
//! moment it is reached. Cost is linear in the body; memory is the rows themselves.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::limits::{classify_field, number_cell, text_cell, CellProblem, FieldName, RowBuilder};
use super::{BodyError, IgnoredFields, InputError, ParseLimits, ParsedBody};
use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};

/// The four input fields of MLflow's scoring protocol.
pub const INVOCATION_FIELDS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// Parses a `/api/predict` JSON body: the usual single wine directly (see `plain`), any other
/// body with the general parser.
pub fn parse_predict(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    // A cap of no rows refuses every body; the general parser says so.
    if limits.max_rows > 0 {
        if let Some(row) = super::plain::one_wine(body) {
            return Ok(ParsedBody {
                rows: vec![row],
                ignored_fields: Vec::new(),
                single: true,
            });
        }
    }
    parse_general(body, limits)
}

/// Parses a `/api/predict` JSON body with the general parser.
pub(super) fn parse_general(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    run(body, limits, None, predict_body)
}

type JsonDe<'b> = serde_json::Deserializer<serde_json::de::SliceRead<'b>>;

fn predict_body(ctx: Shared<'_, '_>, de: &mut JsonDe<'_>) -> Result<(), serde_json::Error> {
    de.deserialize_any(PredictBody { ctx })
}

fn invocation_body(ctx: Shared<'_, '_>, de: &mut JsonDe<'_>) -> Result<(), serde_json::Error> {
    de.deserialize_any(InvocationsBody { ctx })
}

/// Parses a `/api/invocations` JSON body.
pub fn parse_invocations(body: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
    match run(body, limits, None, invocation_body) {
        Err(BodyError::Shape(message)) if message == COLUMNS_AFTER_DATA => {
            // A split frame whose rows precede its column names (or that has none): read the
            // names in a first pass, then the rows. Both passes are linear.
            let columns = split_columns(body, limits)?
                .unwrap_or_else(|| (0..FEATURE_COUNT).map(Some).collect());
            run(body, limits, Some(columns), invocation_body)
        }
        other => other,
    }
}

/// Marker of the order where a split frame's rows precede its column names.
const COLUMNS_AFTER_DATA: &str = "`dataframe_split`: `data` before `columns`";

/// The `dataframe_split.columns` of an invocation body, if it has any.
fn split_columns(
    body: &[u8],
    limits: &ParseLimits,
) -> Result<Option<Vec<Option<usize>>>, BodyError> {
    let ctx = RefCell::new(Ctx::new(limits, None));
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de.deserialize_map(ColumnsFirst {
        ctx: &ctx,
        nested: false,
    });
    let ctx = ctx.into_inner();
    match (ctx.error, result) {
        (Some(error), _) => Err(error),
        (None, Err(error)) => Err(json_error(error)),
        (None, Ok(())) => Ok(ctx.split_columns),
    }
}

/// Shared state of one parse: the caps, the rows built so far, the first typed error.
struct Ctx<'l> {
    limits: &'l ParseLimits,
    rows: Vec<FeatureRow>,
    ignored: IgnoredFields,
    single: bool,
    error: Option<BodyError>,
    /// Column names of a `dataframe_split`, once known: feature index per position.
    split_columns: Option<Vec<Option<usize>>>,
}

type Shared<'c, 'l> = &'c RefCell<Ctx<'l>>;

impl<'l> Ctx<'l> {
    fn new(limits: &'l ParseLimits, split_columns: Option<Vec<Option<usize>>>) -> Ctx<'l> {
        Ctx {
            limits,
            rows: Vec::new(),
            ignored: IgnoredFields::new(limits.max_ignored_listed),
            single: false,
            error: None,
            split_columns,
        }
    }

    /// Records the typed error and returns a serde error that stops the parse.
    fn fail<E: de::Error>(this: Shared<'_, '_>, error: BodyError) -> E {
        let mut ctx = this.borrow_mut();
        if ctx.error.is_none() {
            let error = error.with_suggestion(ctx.ignored.names());
            ctx.error = Some(error);
        }
        E::custom("stopped")
    }

    fn push_row<E: de::Error>(this: Shared<'_, '_>, row: FeatureRow) -> Result<(), E> {
        let limit = this.borrow().limits.max_rows;
        if this.borrow().rows.len() >= limit {
            return Err(Ctx::fail(this, BodyError::too_many_rows(limit)));
        }
        this.borrow_mut().rows.push(row);
        Ok(())
    }
}

fn run<'l>(
    body: &[u8],
    limits: &'l ParseLimits,
    split_columns: Option<Vec<Option<usize>>>,
    parse: impl for<'c, 'b> FnOnce(Shared<'c, 'l>, &mut JsonDe<'b>) -> Result<(), serde_json::Error>,
) -> Result<ParsedBody, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let ctx = RefCell::new(Ctx::new(limits, split_columns));
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = parse(&ctx, &mut de).and_then(|()| de.end());
    let ctx = ctx.into_inner();
    if let Some(error) = ctx.error {
        return Err(error);
    }
    if let Err(error) = result {
        // A number too large for the parser may be one past the length limit: say so.
        if error.to_string().contains("number") {
            if let Some(error) = overlong_number(body, limits.max_text_bytes) {
                return Err(error);
            }
        }
        return Err(json_error(error));
    }
    if ctx.rows.is_empty() {
        return Err(BodyError::Shape("the batch is empty".to_string()));
    }
    // Checked once the body is known to be valid otherwise: most refused bodies are refused
    // early, without a second pass.
    if let Some(error) = overlong_number(body, limits.max_text_bytes) {
        return Err(error);
    }
    Ok(ParsedBody {
        rows: ctx.rows,
        ignored_fields: ctx.ignored.into_names(),
        single: ctx.single,
    })
}

/// The error for the first number in `body` longer than `max` bytes, naming its field, if
/// there is such a number: the
/// same limit as numbers given as text. (The JSON parser would read a number of any length,
/// and may round one with a very long mantissa and exponent to a different value.) One pass
/// over the bytes: strings are skipped, and the field is the last string before a `:`.
fn overlong_number(body: &[u8], max: usize) -> Option<BodyError> {
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

fn json_error(error: serde_json::Error) -> BodyError {
    match error.classify() {
        serde_json::error::Category::Data => BodyError::Shape(error.to_string()),
        _ => BodyError::Malformed {
            format: "JSON",
            message: error.to_string(),
        },
    }
}

/// Visitor methods that refuse the JSON types a position cannot hold, with a typed message
/// (`$message` receives what was found).
macro_rules! refuse {
    ($message:expr; $($kind:ident),*) => {
        $(refuse!(@one $kind, $message);)*
    };
    (@one scalars, $message:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "a boolean"))))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "a number"))))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "a number"))))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "a number"))))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "a string"))))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "null"))))
        }
    };
    (@one seq, $message:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "an array"))))
        }
    };
    (@one map, $message:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(Ctx::fail(self.ctx, BodyError::Shape($message(&self, "an object"))))
        }
    };
}

/// A field name, classified once.
enum Key {
    /// One of the names the enclosing object gives a meaning (e.g. `instances`).
    Special(usize),
    Field(FieldName, String),
}

struct KeySeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
    special: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_, '_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        let limit = self.ctx.borrow().limits.max_text_bytes;
        if name.len() > limit {
            return Err(Ctx::fail(
                self.ctx,
                BodyError::too_many("the length of a field name in bytes", limit),
            ));
        }
        if let Some(index) = self.special.iter().position(|s| *s == name) {
            return Ok(Key::Special(index));
        }
        let class = classify_field(name);
        let kept = if class == FieldName::Other {
            name.to_string()
        } else {
            String::new()
        };
        Ok(Key::Field(class, kept))
    }
}

/// Counts an object's fields against the cap.
fn count_key<E: de::Error>(ctx: Shared<'_, '_>, count: &mut usize) -> Result<(), E> {
    *count += 1;
    let limit = ctx.borrow().limits.max_keys;
    if *count > limit {
        return Err(Ctx::fail(
            ctx,
            BodyError::too_many("the number of fields in one object", limit),
        ));
    }
    Ok(())
}

/// One feature value: a number, or a number as text. Wrong values are returned, not raised,
/// so the caller can name the row.
struct CellSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_, '_> {
    type Value = Result<f64, CellProblem>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_, '_> {
    type Value = Result<f64, CellProblem>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(number_cell(self.index, v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(number_cell(self.index, v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(number_cell(self.index, v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(text_cell(self.index, v, self.ctx.borrow().limits))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(CellProblem::Type("a boolean")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(CellProblem::Type("null")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(CellProblem::Type("an array")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(CellProblem::Type("an object")))
    }
}

/// Reads the next cell of feature `index` into `row`; a bad value fails the parse with the
/// row named (`row: None` for a single wine).
fn read_cell<'de, A: MapAccess<'de>>(
    ctx: Shared<'_, '_>,
    map: &mut A,
    index: usize,
    row: &mut RowBuilder,
    row_number: Option<usize>,
) -> Result<(), A::Error> {
    let cell = map.next_value_seed(CellSeed { ctx, index })?;
    let outcome = cell
        .map_err(|problem| problem.for_feature(index))
        .and_then(|value| row.set(index, value));
    outcome.map_err(|source| Ctx::fail(ctx, row_error(row_number, source)))
}

fn row_error(row: Option<usize>, source: InputError) -> BodyError {
    match row {
        Some(row) => BodyError::Row { row, source },
        None => BodyError::Input(source),
    }
}

/// `/api/predict`: one wine's fields, or `instances`.
struct PredictBody<'c, 'l> {
    ctx: Shared<'c, 'l>,
}

impl<'de> Visitor<'de> for PredictBody<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with the 11 feature fields or {\"instances\": [...]}")
    }
    refuse!(|_: &Self, found| format!("expected a JSON object with the 11 feature fields or {{\"instances\": [...]}}, got {found}"); scalars, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut single = RowBuilder::default();
        // A single wine's errors count only if the body turns out not to be a batch.
        let mut single_error: Option<InputError> = None;
        let mut single_ignored = Vec::new();
        let mut batch = false;
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed {
            ctx,
            special: &["instances"],
        })? {
            count_key(ctx, &mut keys)?;
            match key {
                Key::Special(_) => {
                    if batch {
                        return Err(Ctx::fail(
                            ctx,
                            BodyError::Shape("`instances` is given twice".into()),
                        ));
                    }
                    batch = true;
                    map.next_value_seed(RowsSeed {
                        ctx,
                        field: "instances",
                        arrays: false,
                    })?;
                }
                Key::Field(FieldName::Feature(index), _) => {
                    let cell = map.next_value_seed(CellSeed { ctx, index })?;
                    if single_error.is_none() {
                        let set = cell
                            .map_err(|p| p.for_feature(index))
                            .and_then(|v| single.set(index, v));
                        single_error = set.err();
                    }
                }
                Key::Field(FieldName::Other, name) => {
                    if single_ignored.len() < ctx.borrow().limits.max_ignored_listed {
                        single_ignored.push(name);
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Field(FieldName::Target, _) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if batch {
            return Ok(());
        }
        for name in &single_ignored {
            ctx.borrow_mut().ignored.add(name);
        }
        let row = match single_error {
            Some(error) => Err(error),
            None => single.finish(),
        }
        .map_err(|e| Ctx::fail(ctx, BodyError::Input(e)))?;
        let mut c = ctx.borrow_mut();
        c.rows.push(row);
        c.single = true;
        Ok(())
    }
}

/// An array of rows (`instances`, `dataframe_records`, `inputs`): objects, or with `arrays`
/// also arrays of the 11 values in feature order.
struct RowsSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
    field: &'static str,
    arrays: bool,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` to be an array of rows", self.field)
    }
    refuse!(|this: &Self, found| format!("`{}` must be an array of rows, got {found}", this.field); scalars, map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let limit = self.ctx.borrow().limits.max_rows;
            if index == limit {
                // One more element would be one row too many: refuse before reading it.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(Ctx::fail(self.ctx, BodyError::too_many_rows(limit)));
                }
                return Ok(());
            }
            let row = seq.next_element_seed(RowSeed {
                ctx: self.ctx,
                row: index,
                arrays: self.arrays,
            })?;
            match row {
                Some(row) => Ctx::push_row(self.ctx, row)?,
                None => return Ok(()),
            }
            index += 1;
        }
    }
}

/// One row of a batch.
struct RowSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
    row: usize,
    arrays: bool,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = FeatureRow;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<FeatureRow, D::Error> {
        de.deserialize_any(self)
    }
}

impl RowSeed<'_, '_> {
    fn wrong_type<E: de::Error>(&self, found: &'static str) -> E {
        Ctx::fail(
            self.ctx,
            BodyError::Row {
                row: self.row,
                source: InputError::NotAnObject { found },
            },
        )
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = FeatureRow;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row: an object of feature fields")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FeatureRow, A::Error> {
        let ctx = self.ctx;
        let mut row = RowBuilder::default();
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed { ctx, special: &[] })? {
            count_key(ctx, &mut keys)?;
            match key {
                Key::Field(FieldName::Feature(index), _) => {
                    read_cell(ctx, &mut map, index, &mut row, Some(self.row))?
                }
                Key::Field(FieldName::Other, name) => {
                    ctx.borrow_mut().ignored.add(&name);
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        row.finish()
            .map_err(|source| Ctx::fail(ctx, row_error(Some(self.row), source)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FeatureRow, A::Error> {
        if !self.arrays {
            return Err(self.wrong_type("an array"));
        }
        let mut row = [0.0; FEATURE_COUNT];
        let mut count = 0;
        while count < FEATURE_COUNT {
            let Some(cell) = seq.next_element_seed(CellSeed {
                ctx: self.ctx,
                index: count,
            })?
            else {
                break;
            };
            row[count] = cell.map_err(|problem| {
                Ctx::fail(
                    self.ctx,
                    row_error(Some(self.row), problem.for_feature(count)),
                )
            })?;
            count += 1;
        }
        if count < FEATURE_COUNT || seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(self.wrong_type("an array without exactly 11 values"));
        }
        Ok(row)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FeatureRow, E> {
        Err(self.wrong_type("a boolean"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FeatureRow, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FeatureRow, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FeatureRow, E> {
        Err(self.wrong_type("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<FeatureRow, E> {
        Err(self.wrong_type("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FeatureRow, E> {
        Err(self.wrong_type("null"))
    }
}

/// `/api/invocations`: exactly one of the four input fields; `params` and others ignored.
struct InvocationsBody<'c, 'l> {
    ctx: Shared<'c, 'l>,
}

fn exactly_one() -> BodyError {
    BodyError::Shape(format!(
        "the input must be a JSON object with exactly one of the input fields {}",
        INVOCATION_FIELDS.join(", ")
    ))
}

impl<'de> Visitor<'de> for InvocationsBody<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a JSON object with exactly one of {}",
            INVOCATION_FIELDS.join(", ")
        )
    }
    refuse!(|_: &Self, found| format!("the input must be a JSON object with exactly one of {}; got {found}", INVOCATION_FIELDS.join(", ")); scalars, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut found = false;
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed {
            ctx,
            special: &INVOCATION_FIELDS,
        })? {
            count_key(ctx, &mut keys)?;
            let Key::Special(which) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if found {
                return Err(Ctx::fail(ctx, exactly_one()));
            }
            found = true;
            match INVOCATION_FIELDS[which] {
                "dataframe_split" => map.next_value_seed(SplitSeed { ctx })?,
                "dataframe_records" => map.next_value_seed(RowsSeed {
                    ctx,
                    field: "dataframe_records",
                    arrays: true,
                })?,
                field => map.next_value_seed(InputsSeed { ctx, field })?,
            }
        }
        if !found {
            return Err(Ctx::fail(ctx, exactly_one()));
        }
        Ok(())
    }
}

/// `instances` or `inputs`: rows, or columns `{"feature": [v1, v2, ...] or v, ...}`.
struct InputsSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "`{}` to be an array of rows or an object of columns",
            self.field
        )
    }
    refuse!(|this: &Self, found| format!("`{}` must be an array of rows or an object of columns, got {found}", this.field); scalars);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        RowsSeed {
            ctx: self.ctx,
            field: self.field,
            arrays: true,
        }
        .visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut columns = Columns::default();
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed { ctx, special: &[] })? {
            count_key(ctx, &mut keys)?;
            match key {
                Key::Field(FieldName::Feature(index), _) => {
                    if columns.given[index] {
                        return Err(Ctx::fail(
                            ctx,
                            BodyError::Input(InputError::Duplicate {
                                field: crate::model::features::FEATURE_NAMES[index].into(),
                            }),
                        ));
                    }
                    columns.given[index] = true;
                    map.next_value_seed(ColumnSeed {
                        ctx,
                        index,
                        columns: &mut columns,
                    })?;
                }
                Key::Field(FieldName::Other, name) => {
                    ctx.borrow_mut().ignored.add(&name);
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let rows = columns.finish().map_err(|error| Ctx::fail(ctx, error))?;
        ctx.borrow_mut().rows = rows;
        Ok(())
    }
}

/// Columns being read: per-row builders for array columns, broadcast values for scalars.
#[derive(Default)]
struct Columns {
    rows: Vec<RowBuilder>,
    scalars: [Option<f64>; FEATURE_COUNT],
    given: [bool; FEATURE_COUNT],
    any_array: bool,
}

impl Columns {
    fn finish(self) -> Result<Vec<FeatureRow>, BodyError> {
        let mut rows = if self.any_array {
            self.rows
        } else {
            vec![RowBuilder::default()]
        };
        rows.iter_mut()
            .enumerate()
            .map(|(i, row)| {
                for (index, value) in self.scalars.iter().enumerate() {
                    if let Some(value) = value {
                        row.set(index, *value)
                            .map_err(|source| BodyError::Row { row: i, source })?;
                    }
                }
                row.finish()
                    .map_err(|source| BodyError::Row { row: i, source })
            })
            .collect()
    }
}

struct ColumnSeed<'c, 'l, 'b> {
    ctx: Shared<'c, 'l>,
    index: usize,
    columns: &'b mut Columns,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl ColumnSeed<'_, '_, '_> {
    fn scalar<E: de::Error>(self, cell: Result<f64, CellProblem>) -> Result<(), E> {
        let value = cell.map_err(|problem| {
            Ctx::fail(self.ctx, BodyError::Input(problem.for_feature(self.index)))
        })?;
        self.columns.scalars[self.index] = Some(value);
        Ok(())
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column: an array of numbers, or one number for every row")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        self.columns.any_array = true;
        let limit = ctx.borrow().limits.max_rows;
        let mut row = 0;
        while let Some(cell) = seq.next_element_seed(CellSeed {
            ctx,
            index: self.index,
        })? {
            if row == limit {
                return Err(Ctx::fail(ctx, BodyError::too_many_rows(limit)));
            }
            if row == self.columns.rows.len() {
                self.columns.rows.push(RowBuilder::default());
            }
            let set = cell
                .map_err(|p| p.for_feature(self.index))
                .and_then(|value| self.columns.rows[row].set(self.index, value));
            set.map_err(|source| Ctx::fail(ctx, BodyError::Row { row, source }))?;
            row += 1;
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let cell = number_cell(self.index, v);
        self.scalar(cell)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let cell = number_cell(self.index, v as f64);
        self.scalar(cell)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let cell = number_cell(self.index, v as f64);
        self.scalar(cell)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let cell = text_cell(self.index, v, self.ctx.borrow().limits);
        self.scalar(cell)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar(Err(CellProblem::Type("a boolean")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Err(CellProblem::Type("null")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.scalar(Err(CellProblem::Type("an object")))
    }
}

/// `dataframe_split`: `{"columns": [...], "data": [[...], ...]}` (pandas' split orient;
/// `index` and other fields ignored). Without `columns`, values are in feature order.
struct SplitSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
}

impl<'de> DeserializeSeed<'de> for SplitSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

fn split_error(what: &str) -> BodyError {
    BodyError::Shape(format!("`dataframe_split` {what}"))
}

impl<'de> Visitor<'de> for SplitSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`dataframe_split` to be an object with `columns` and `data`")
    }
    refuse!(|_: &Self, found| format!("`dataframe_split` must be an object with `columns` and `data`, got {found}"); scalars, seq);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let preset = ctx.borrow().split_columns.is_some();
        let mut have_columns = preset;
        let mut have_data = false;
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed {
            ctx,
            special: &["columns", "data"],
        })? {
            count_key(ctx, &mut keys)?;
            match key {
                Key::Special(0) if preset => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Special(0) => {
                    if have_columns {
                        return Err(Ctx::fail(ctx, split_error("gives `columns` twice")));
                    }
                    if have_data {
                        return Err(Ctx::fail(
                            ctx,
                            BodyError::Shape(COLUMNS_AFTER_DATA.to_string()),
                        ));
                    }
                    let columns = map.next_value_seed(ColumnNamesSeed { ctx })?;
                    ctx.borrow_mut().split_columns = Some(columns);
                    have_columns = true;
                }
                Key::Special(_) => {
                    if have_data {
                        return Err(Ctx::fail(ctx, split_error("gives `data` twice")));
                    }
                    have_data = true;
                    map.next_value_seed(SplitRowsSeed { ctx })?;
                }
                Key::Field(..) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !have_data {
            return Err(Ctx::fail(
                ctx,
                split_error("needs `data`: an array of rows"),
            ));
        }
        Ok(())
    }
}

/// `columns`: names, each classified once; a feature index (or nothing) per position.
struct ColumnNamesSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
}

impl<'de> DeserializeSeed<'de> for ColumnNamesSeed<'_, '_> {
    type Value = Vec<Option<usize>>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnNamesSeed<'_, '_> {
    type Value = Vec<Option<usize>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`columns` to be an array of names")
    }
    refuse!(|_: &Self, found| format!("`dataframe_split.columns` must be an array of names, got {found}"); scalars, map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let limit = ctx.borrow().limits.max_columns;
        let mut positions = Vec::new();
        let mut given = [false; FEATURE_COUNT];
        while let Some(key) = seq.next_element_seed(KeySeed { ctx, special: &[] })? {
            if positions.len() == limit {
                return Err(Ctx::fail(
                    ctx,
                    BodyError::too_many("the number of columns", limit),
                ));
            }
            let position = match key {
                Key::Field(FieldName::Feature(index), _) => {
                    if given[index] {
                        return Err(Ctx::fail(
                            ctx,
                            BodyError::Input(InputError::Duplicate {
                                field: crate::model::features::FEATURE_NAMES[index].into(),
                            }),
                        ));
                    }
                    given[index] = true;
                    Some(index)
                }
                Key::Field(FieldName::Other, name) => {
                    ctx.borrow_mut().ignored.add(&name);
                    None
                }
                _ => None,
            };
            positions.push(position);
        }
        if let Some(missing) = given.iter().position(|g| !g) {
            return Err(Ctx::fail(
                ctx,
                BodyError::Input(InputError::Missing {
                    field: crate::model::features::FEATURE_NAMES[missing],
                    given: None,
                }),
            ));
        }
        Ok(positions)
    }
}

/// `data`: rows of values matching `columns` position by position.
struct SplitRowsSeed<'c, 'l> {
    ctx: Shared<'c, 'l>,
}

impl<'de> DeserializeSeed<'de> for SplitRowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SplitRowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`dataframe_split.data` to be an array of rows")
    }
    refuse!(|_: &Self, found| format!("`dataframe_split.data` must be an array of rows, got {found}"); scalars, map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let columns = ctx.borrow().split_columns.clone();
        let Some(columns) = columns else {
            // No `columns` yet: either they come later, or the values are in feature order.
            return Err(Ctx::fail(
                ctx,
                BodyError::Shape(COLUMNS_AFTER_DATA.to_string()),
            ));
        };
        let mut row = 0;
        while let Some(values) = seq.next_element_seed(SplitRowSeed {
            ctx,
            row,
            columns: &columns,
        })? {
            Ctx::push_row(ctx, values)?;
            row += 1;
        }
        Ok(())
    }
}

struct SplitRowSeed<'c, 'l, 'k> {
    ctx: Shared<'c, 'l>,
    row: usize,
    columns: &'k [Option<usize>],
}

impl<'de> DeserializeSeed<'de> for SplitRowSeed<'_, '_, '_> {
    type Value = FeatureRow;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<FeatureRow, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SplitRowSeed<'_, '_, '_> {
    type Value = FeatureRow;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "row {} of `dataframe_split.data` to be an array",
            self.row
        )
    }
    refuse!(|this: &Self, found| format!("row {} of `dataframe_split.data` must be an array, got {found}", this.row); scalars, map);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FeatureRow, A::Error> {
        let ctx = self.ctx;
        let mut row = RowBuilder::default();
        let mut position = 0;
        loop {
            let more = match self.columns.get(position) {
                Some(Some(index)) => {
                    match seq.next_element_seed(CellSeed { ctx, index: *index })? {
                        Some(cell) => {
                            let set = cell
                                .map_err(|p| p.for_feature(*index))
                                .and_then(|v| row.set(*index, v));
                            set.map_err(|source| {
                                Ctx::fail(
                                    ctx,
                                    BodyError::Row {
                                        row: self.row,
                                        source,
                                    },
                                )
                            })?;
                            true
                        }
                        None => false,
                    }
                }
                Some(None) | None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
            position += 1;
        }
        if position != self.columns.len() {
            return Err(Ctx::fail(
                ctx,
                split_error(&format!(
                    "row {} has {position} values for {} columns",
                    self.row,
                    self.columns.len()
                )),
            ));
        }
        row.finish().map_err(|source| {
            Ctx::fail(
                ctx,
                BodyError::Row {
                    row: self.row,
                    source,
                },
            )
        })
    }
}

/// The first pass for a split frame whose `data` precedes `columns`: reads the names only
/// (top level, then inside `dataframe_split`), skipping everything else.
struct ColumnsFirst<'c, 'l> {
    ctx: Shared<'c, 'l>,
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for ColumnsFirst<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnsFirst<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let special: &'static [&'static str] = if self.nested {
            &["columns"]
        } else {
            &["dataframe_split"]
        };
        let mut keys = 0;
        while let Some(key) = map.next_key_seed(KeySeed { ctx, special })? {
            count_key(ctx, &mut keys)?;
            match key {
                Key::Special(_) if self.nested => {
                    let columns = map.next_value_seed(ColumnNamesSeed { ctx })?;
                    ctx.borrow_mut().split_columns = Some(columns);
                }
                Key::Special(_) => map.next_value_seed(ColumnsFirst { ctx, nested: true })?,
                Key::Field(..) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}
