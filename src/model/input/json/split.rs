//! MLflow's `dataframe_split` (pandas' split orient): `{"columns": [...], "data": [[...], ...]}`,
//! including the order where `data` comes first, read in two linear passes.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::cells::{count_key, CellSeed, Key, KeySeed};
use super::scan::json_error;
use super::{Ctx, Shared};
use crate::model::features::{FeatureRow, FEATURE_COUNT};
use crate::model::input::limits::{FieldName, RowBuilder};
use crate::model::input::{BodyError, InputError, ParseLimits};

/// Marker of the order where a split frame's rows precede its column names.
pub(super) const COLUMNS_AFTER_DATA: &str = "`dataframe_split`: `data` before `columns`";

/// The `dataframe_split.columns` of an invocation body, if it has any.
pub(super) fn split_columns(
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

/// `dataframe_split`: `{"columns": [...], "data": [[...], ...]}` (pandas' split orient;
/// `index` and other fields ignored). Without `columns`, values are in feature order.
pub(super) struct SplitSeed<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
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
