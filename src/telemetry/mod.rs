//! Observability: logging, the Prometheus metrics registry, and the Pushgateway pusher.

pub mod logging;
