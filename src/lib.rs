//! sommelier: wine-quality models trained, versioned, served and monitored, as an
//! Azure Functions custom handler or on a laptop.
//!
//! # Layout
//! Each module may use only the modules above it in this list (checked by a test):
//!
//! | module       | what it holds |
//! |--------------|---------------|
//! | `text`       | wording shared by messages (counts with their nouns) |
//! | `bundled`    | the red-wine data shipped in the binary |
//! | `config`     | every setting, read once into [`config::Settings`] |
//! | `model`      | pure computation: datasets, fitting, the inference layout, explanations, input formats |
//! | `registry`   | the model store: versions, cards, the champion pointer, claims, promotion rules |
//! | `telemetry`  | logging, Prometheus metrics, drift, the Pushgateway pusher |
//! | `sources`    | where training data is read from |
//! | `tracking`   | MLflow runs and registered versions |
//! | `feedback`   | prediction ids, the prediction log, labels, the join and live error |
//! | `retraining` | the one training workflow every trigger runs |
//! | `service`    | the running instance: shared state, its trainings, body budget, heavy lane |
//! | `functions`  | the Functions host's envelope routes (timer, upload, join) |
//! | `api`        | HTTP: routes, admission, errors, the form and the OpenAPI document |
//! | `server`     | the socket: listen, drain, shut down |
//! | `cli`        | the command line |

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
pub mod service;
pub mod sources;
pub mod telemetry;
pub mod text;
pub mod tracking;

#[cfg(test)]
mod layering;
