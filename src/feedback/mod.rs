//! Closing the loop in production: every prediction gets an id, a sampled record of it is
//! logged beside the registry, ground-truth labels come back by id, a join matches them and
//! measures each model version's live error, and the labelled rows join the next training.
//!
//! # Layout
//! - `id`: prediction ids (UUIDv7) and the ids labels may name (`<id>` or `<id>.<row>`).
//! - `openapi`: what the OpenAPI document says about ids and feedback.
//! - `form`: the form page's id and tasted-quality form.

pub mod claimed_join;
pub mod id;
pub mod join;
pub mod labelled_rows;
pub mod labels;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod record;
pub mod service;
pub mod store;
