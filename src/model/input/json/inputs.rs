//! MLflow's `instances` and `inputs` on `/api/invocations`: rows (read by `rows`), or
//! columns `{"feature": [v1, v2, ...] or v, ...}`, a scalar column broadcast to every row.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::cells::{count_key, CellSeed, Key, KeySeed};
use super::rows::RowsSeed;
use super::{Ctx, Shared};
use crate::model::features::{FeatureRow, FEATURE_COUNT};
use crate::model::input::limits::{number_cell, text_cell, CellProblem, FieldName, RowBuilder};
use crate::model::input::{BodyError, InputError};

/// `instances` or `inputs`: rows, or columns `{"feature": [v1, v2, ...] or v, ...}`.
pub(super) struct InputsSeed<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
    pub(super) field: &'static str,
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
