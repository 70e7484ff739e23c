//! Arrays of rows: `instances` on `/api/predict`, and `dataframe_records`, `instances` or
//! `inputs` given as rows on `/api/invocations`. A row is an object of feature fields or, where
//! the format allows it, an array of the 11 values in feature order.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::cells::{count_key, read_cell, row_error, CellSeed, Key, KeySeed};
use super::{Ctx, Shared};
use crate::model::features::{FeatureRow, FEATURE_COUNT};
use crate::model::input::limits::{FieldName, RowBuilder};
use crate::model::input::{BodyError, InputError};

/// An array of rows (`instances`, `dataframe_records`, `inputs`): objects, or with `arrays`
/// also arrays of the 11 values in feature order.
pub(super) struct RowsSeed<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
    pub(super) field: &'static str,
    pub(super) arrays: bool,
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
