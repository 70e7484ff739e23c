//! The pieces every format reads with: a field name classified once, a field count checked
//! against its cap, one feature value read as a number or as text.
//!
//! Not here: what a format does with the rows (the format files).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Ctx, Shared};
use crate::model::input::limits::{
    classify_field, number_cell, text_cell, CellProblem, FieldName, RowBuilder,
};
use crate::model::input::{BodyError, InputError};

/// A field name, classified once.
pub(super) enum Key {
    /// One of the names the enclosing object gives a meaning (e.g. `instances`).
    Special(usize),
    Field(FieldName, String),
}

pub(super) struct KeySeed<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
    pub(super) special: &'static [&'static str],
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
pub(super) fn count_key<E: de::Error>(ctx: Shared<'_, '_>, count: &mut usize) -> Result<(), E> {
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
pub(super) struct CellSeed<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
    pub(super) index: usize,
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
pub(super) fn read_cell<'de, A: MapAccess<'de>>(
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

pub(super) fn row_error(row: Option<usize>, source: InputError) -> BodyError {
    match row {
        Some(row) => BodyError::Row { row, source },
        None => BodyError::Input(source),
    }
}
