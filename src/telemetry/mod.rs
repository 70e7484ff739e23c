//! Observability: logging, the Prometheus metrics, input drift, and the Pushgateway pusher.

pub mod drift;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod striped;
