//! Streaming JSON bodies: `/api/predict` (one object or `{"instances": [...]}`) and MLflow's
//! scoring formats for `/api/invocations` (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`, the last two as rows or as columns).
//!
//! Rows are built straight from the token stream: no intermediate JSON tree, unknown fields
//! skipped without being stored, each field name normalised once, and every cap checked the
//! moment it is reached. Cost is linear in the body; memory is the rows themselves.
//!
//! This file holds the entry points and the state one parse shares; each wire format has its
//! own file: `predict` (one wine or `instances`), `invocations` (which MLflow field),
//! `rows` (arrays of rows), `inputs` (`instances`/`inputs` as columns), `split`
//! (`dataframe_split`). `cells` reads field names and values for all of them, `scan` holds
//! the checks made on the raw bytes.

use std::cell::RefCell;

use serde::de::{self, Deserializer};

use super::{BodyError, IgnoredFields, ParseLimits, ParsedBody};
use crate::model::features::{FeatureRow, FEATURE_COUNT};

/// Visitor methods that refuse the JSON types a position cannot hold, with a typed message
/// (`$message` receives what was found). Defined before the submodules so that they see it.
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

mod cells;
mod inputs;
mod invocations;
mod predict;
mod rows;
mod scan;
mod split;

use invocations::InvocationsBody;
use predict::PredictBody;
use scan::{json_error, overlong_number};
use split::{split_columns, COLUMNS_AFTER_DATA};

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
