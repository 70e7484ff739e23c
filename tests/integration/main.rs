//! The integration tests, one binary: one module per area, and one helper module
//! ([`support`]) that they share.
//!
//! A plain `cargo test` runs the fast tier: everything that needs only Rust and the built
//! binary. Tests that need a service or a tool (Azurite, MLflow, Chromium and node, Python with
//! shap, root) are `#[ignore = "needs ..."]`; `bash scripts/test` installs those and runs every
//! test with `-- --include-ignored`. The crash tests are a target of their own
//! (`tests/crash.rs`, built only with the `crash-points` feature).

mod support;

mod api;
mod blob_flow;
mod blob_store;
mod browser;
mod cli;
mod explain;
mod explain_api;
mod feedback_blob;
mod feedback_loop;
mod forest;
mod host_harness;
mod hostile;
mod mlflow_tracking;
mod pipeline;
mod readme;
mod recovery;
mod retention_race;
mod store_contract;
mod upload_once;
