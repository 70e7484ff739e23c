//! sommelier: wine-quality models trained, versioned, served and monitored, as an
//! Azure Functions custom handler or on a laptop.

pub mod api;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod feedback;
pub mod functions;
pub mod model;
pub mod registry;
pub mod retraining;
pub mod server;
pub mod stores;
pub mod telemetry;
pub mod tracking;
