//! sommelier: wine-quality models trained, versioned, served and monitored, as an
//! Azure Functions custom handler or on a laptop.

pub mod bundled;
pub mod config;
pub mod model;
pub mod registry;
pub mod retraining;
pub mod telemetry;
pub mod stores;
