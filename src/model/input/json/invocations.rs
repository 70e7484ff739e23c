//! `/api/invocations`: which of MLflow's four input fields the body gives, handed to the
//! format that reads it.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::cells::{count_key, Key, KeySeed};
use super::inputs::InputsSeed;
use super::rows::RowsSeed;
use super::split::SplitSeed;
use super::{Ctx, Shared, INVOCATION_FIELDS};
use crate::model::input::BodyError;

/// `/api/invocations`: exactly one of the four input fields; `params` and others ignored.
pub(super) struct InvocationsBody<'c, 'l> {
    pub(super) ctx: Shared<'c, 'l>,
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
