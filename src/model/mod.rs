//! The model pipeline: CSV ingestion and validation, training, evaluation and the
//! self-describing model artifact. Pure computation: no I/O beyond the readers it is given.

pub mod algorithm;
pub mod artifact;
pub mod comparison;
pub mod dataset;
pub mod explain;
pub mod explain_export;
pub mod features;
pub mod forest;
pub mod input;
pub mod interval;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod split;
pub mod training;
