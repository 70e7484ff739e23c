//! How much a burst of requests and slow clients may hold (see `service::body_budget` and
//! `api::admission`).

use std::time::Duration;

use super::source::Source;
use super::{defaults, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServingLimits {
    /// `SOMMELIER_MAX_BUFFERED_BYTES`: request bytes buffered at once, server-wide.
    pub max_buffered_bytes: usize,
    /// `SOMMELIER_MAX_LARGE_REQUESTS`: bodies above 1 MiB handled at once.
    pub max_large_requests: usize,
    /// `SOMMELIER_HEADER_TIMEOUT_SECONDS`: time to send a request's headers.
    pub header_timeout: Duration,
    /// `SOMMELIER_REQUEST_TIMEOUT_SECONDS`: time to send a prediction body and get the answer.
    pub request_timeout: Duration,
    /// `SOMMELIER_BODY_START_TIMEOUT_SECONDS`: time from a request's headers to the first byte
    /// of its declared body; past it the body's reservation is given back (408).
    pub body_start_timeout: Duration,
    /// `SOMMELIER_SHUTDOWN_SECONDS`: how long requests in flight may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServingLimits {
    fn default() -> Self {
        ServingLimits {
            max_buffered_bytes: defaults::MAX_BUFFERED_BYTES,
            max_large_requests: defaults::MAX_LARGE_REQUESTS,
            header_timeout: defaults::HEADER_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
            body_start_timeout: defaults::BODY_START_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
        }
    }
}

impl ServingLimits {
    pub(super) fn read(source: &Source) -> Result<ServingLimits, ConfigError> {
        let seconds = |name, default| source.seconds(name, default, "whole seconds, at least 1");
        Ok(ServingLimits {
            max_buffered_bytes: source.parsed(
                "SOMMELIER_MAX_BUFFERED_BYTES",
                defaults::MAX_BUFFERED_BYTES,
                "bytes, at least 16777216 (one largest body)",
                |v| *v >= 16 * 1024 * 1024,
            )?,
            max_large_requests: source.parsed(
                "SOMMELIER_MAX_LARGE_REQUESTS",
                defaults::MAX_LARGE_REQUESTS,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            header_timeout: seconds("SOMMELIER_HEADER_TIMEOUT_SECONDS", defaults::HEADER_TIMEOUT)?,
            request_timeout: seconds(
                "SOMMELIER_REQUEST_TIMEOUT_SECONDS",
                defaults::REQUEST_TIMEOUT,
            )?,
            body_start_timeout: seconds(
                "SOMMELIER_BODY_START_TIMEOUT_SECONDS",
                defaults::BODY_START_TIMEOUT,
            )?,
            shutdown_grace: seconds("SOMMELIER_SHUTDOWN_SECONDS", defaults::SHUTDOWN_GRACE)?,
        })
    }
}
