//! `/api/predict`: one wine's fields, or `{"instances": [...]}`.
//!
//! Not here: the usual single wine, which `plain` reads before this parser is tried.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::cells::{count_key, CellSeed, Key, KeySeed};
use super::rows::RowsSeed;
use super::{Ctx, Shared};
use crate::model::features::FEATURE_NAMES;
use crate::model::input::limits::{FieldName, RowBuilder};
use crate::model::input::{BodyError, InputError};

/// `/api/predict`: one wine's fields, or `instances`.
pub(super) struct PredictBody<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
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
        // Features beside `instances` are not read either: a batch is its instances.
        let mut beside_instances = Vec::new();
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
                    // Named as the feature is (the key's own spelling is not kept).
                    if beside_instances.len() < ctx.borrow().limits.max_ignored_listed {
                        beside_instances.push(FEATURE_NAMES[index]);
                    }
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
            let mut c = ctx.borrow_mut();
            for name in beside_instances {
                c.ignored.add(name);
            }
            for name in &single_ignored {
                c.ignored.add(name);
            }
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
