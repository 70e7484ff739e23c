//! Every setting sommelier reads, read once from the environment into a typed struct.
//! The names and defaults are documented in local.settings.json.example and the README.

use std::env;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::registry::promotion::{DEFAULT_MAX_LABEL_SHIFT, DEFAULT_MIN_COMPARABLE_ROWS};

/// Where models live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreLocation {
    Directory(PathBuf),
    /// A blob container URL (`https://acct.blob.core.windows.net/models` or an Azurite URL).
    BlobContainer(String),
}

impl StoreLocation {
    pub fn parse(text: &str) -> StoreLocation {
        let trimmed = text.trim();
        if trimmed.starts_with("https://") || trimmed.starts_with("http://") {
            StoreLocation::BlobContainer(trimmed.trim_end_matches('/').to_string())
        } else {
            StoreLocation::Directory(PathBuf::from(trimmed))
        }
    }
}

/// Metric push target.
#[derive(Debug, Clone, PartialEq)]
pub struct PushSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub interval: Duration,
}

/// MLflow tracking target, from MLflow's own variables.
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowSettings {
    pub tracking_uri: String,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub experiment_name: String,
    pub model_name: String,
}

/// The settings, typed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub store: StoreLocation,
    pub storage_connection_string: Option<String>,
    /// `SOMMELIER_STORAGE_CA_FILE`: extra trusted CA certificates (PEM) for the Blob Storage
    /// endpoint, e.g. a local emulator over HTTPS with a private CA. The system roots stay
    /// trusted. Unset in Azure.
    pub storage_ca_file: Option<PathBuf>,
    pub identity_client_id: Option<String>,
    /// `None`: the bundled data (or, with a blob store, the newest upload).
    pub training_data: Option<String>,
    pub model_refresh: Duration,
    pub promotion_tolerance: f64,
    /// `SOMMELIER_MIN_COMPARABLE_ROWS`: the fewest rows unseen by both models on which a
    /// challenger may be compared with the champion.
    pub min_comparable_rows: usize,
    pub keep_versions: usize,
    /// `SOMMELIER_MAX_LABEL_SHIFT`: label PSI against the champion above which a challenger
    /// is stored but not promoted.
    pub max_label_shift: f64,
    pub max_batch_rows: usize,
    /// `SOMMELIER_MAX_EXPLAIN_ROWS`: the most rows one `/api/explain` request may explain.
    pub max_explain_rows: usize,
    /// `SOMMELIER_INTERVAL_COVERAGE`: the share of true qualities prediction intervals are
    /// calibrated to contain.
    pub interval_coverage: f64,
    pub push: Option<PushSettings>,
    pub mlflow: Option<MlflowSettings>,
    pub json_logs: bool,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, set by the Functions host.
    pub handler_port: Option<u16>,
    /// `WEBSITE_INSTANCE_ID` or the host name: this instance's metrics grouping key.
    pub instance_id: String,
    /// Whether the Functions host in Azure runs this process (it announces itself through
    /// `WEBSITE_*` variables). Locally, state-changing routes accept only loopback requests.
    pub under_functions_host: bool,
    /// Caps on buffered request bodies and slow clients.
    pub serving: ServingLimits,
    /// The prediction log, feedback and its join (see `feedback::settings`).
    pub feedback: crate::feedback::settings::LoopSettings,
}

/// How much a burst of requests and slow clients may hold (see `server::limits`).
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
            max_buffered_bytes: 128 * 1024 * 1024,
            max_large_requests: 4,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_start_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServingLimits {
    fn from_env() -> Result<ServingLimits, ConfigError> {
        let defaults = ServingLimits::default();
        let seconds = |name, default: Duration| {
            parsed(name, default.as_secs(), "whole seconds, at least 1", |v| {
                (1..=3600).contains(v)
            })
            .map(Duration::from_secs)
        };
        Ok(ServingLimits {
            max_buffered_bytes: parsed(
                "SOMMELIER_MAX_BUFFERED_BYTES",
                defaults.max_buffered_bytes,
                "bytes, at least 16777216 (one largest body)",
                |v| *v >= 16 * 1024 * 1024,
            )?,
            max_large_requests: parsed(
                "SOMMELIER_MAX_LARGE_REQUESTS",
                defaults.max_large_requests,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            header_timeout: seconds("SOMMELIER_HEADER_TIMEOUT_SECONDS", defaults.header_timeout)?,
            request_timeout: seconds(
                "SOMMELIER_REQUEST_TIMEOUT_SECONDS",
                defaults.request_timeout,
            )?,
            body_start_timeout: seconds(
                "SOMMELIER_BODY_START_TIMEOUT_SECONDS",
                defaults.body_start_timeout,
            )?,
            shutdown_grace: seconds("SOMMELIER_SHUTDOWN_SECONDS", defaults.shutdown_grace)?,
        })
    }
}

/// Whether any of the variables the Functions host sets in Azure is present.
fn under_functions_host() -> bool {
    [
        "WEBSITE_INSTANCE_ID",
        "WEBSITE_SITE_NAME",
        "WEBSITE_HOSTNAME",
    ]
    .iter()
    .any(|name| var(name).is_some())
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("setting {name}: `{value}` is not valid ({expected})")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Reads a variable; empty counts as unset (Functions app settings are often blank).
fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(
    name: &'static str,
    default: T,
    expected: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(text) => {
            text.trim()
                .parse::<T>()
                .ok()
                .filter(|v| valid(v))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: text,
                    expected,
                })
        }
    }
}

impl Settings {
    /// Reads the environment. `store_override` is the `--store` flag.
    pub fn from_env(store_override: Option<&str>) -> Result<Settings, ConfigError> {
        let store = store_override
            .map(str::to_string)
            .or_else(|| var("SOMMELIER_STORE"))
            .map_or(StoreLocation::Directory(PathBuf::from(".sommelier")), |s| {
                StoreLocation::parse(&s)
            });
        let refresh = parsed(
            "SOMMELIER_MODEL_REFRESH_SECONDS",
            30u64,
            "whole seconds, at least 1",
            |v| *v >= 1,
        )?;
        let push = match var("SOMMELIER_PUSHGATEWAY_URL") {
            None => None,
            Some(url) => Some(PushSettings {
                url: url.trim_end_matches('/').to_string(),
                username: var("SOMMELIER_PUSHGATEWAY_USERNAME"),
                password: var("SOMMELIER_PUSHGATEWAY_PASSWORD"),
                interval: Duration::from_secs(parsed(
                    "SOMMELIER_PUSH_INTERVAL_SECONDS",
                    15u64,
                    "whole seconds, at least 1",
                    |v| *v >= 1,
                )?),
            }),
        };
        let mlflow = var("MLFLOW_TRACKING_URI").map(|uri| MlflowSettings {
            tracking_uri: uri.trim_end_matches('/').to_string(),
            token: var("MLFLOW_TRACKING_TOKEN"),
            username: var("MLFLOW_TRACKING_USERNAME"),
            password: var("MLFLOW_TRACKING_PASSWORD"),
            experiment_name: var("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|| "sommelier".into()),
            model_name: var("SOMMELIER_MLFLOW_MODEL_NAME")
                .unwrap_or_else(|| "sommelier-wine-quality".into()),
        });
        let log_format = var("SOMMELIER_LOG_FORMAT").unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError::Invalid {
                name: "SOMMELIER_LOG_FORMAT",
                value: log_format,
                expected: "text or json",
            });
        }
        Ok(Settings {
            store,
            storage_connection_string: var("SOMMELIER_STORAGE_CONNECTION_STRING"),
            storage_ca_file: var("SOMMELIER_STORAGE_CA_FILE").map(PathBuf::from),
            identity_client_id: var("SOMMELIER_IDENTITY_CLIENT_ID"),
            training_data: var("SOMMELIER_TRAINING_DATA"),
            model_refresh: Duration::from_secs(refresh),
            promotion_tolerance: parsed(
                "SOMMELIER_PROMOTION_TOLERANCE",
                0.01f64,
                "a number from 0 to 1",
                |v| (0.0..=1.0).contains(v),
            )?,
            min_comparable_rows: parsed(
                "SOMMELIER_MIN_COMPARABLE_ROWS",
                DEFAULT_MIN_COMPARABLE_ROWS,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            keep_versions: parsed(
                "SOMMELIER_KEEP_VERSIONS",
                20usize,
                "a whole number, at least 2",
                |v| *v >= 2,
            )?,
            max_label_shift: parsed(
                "SOMMELIER_MAX_LABEL_SHIFT",
                DEFAULT_MAX_LABEL_SHIFT,
                "a number above 0",
                |v: &f64| *v > 0.0 && v.is_finite(),
            )?,
            max_batch_rows: parsed(
                "SOMMELIER_MAX_BATCH_ROWS",
                10_000usize,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            max_explain_rows: parsed(
                "SOMMELIER_MAX_EXPLAIN_ROWS",
                100usize,
                "a whole number from 1 to 10000",
                |v| (1..=10_000).contains(v),
            )?,
            interval_coverage: parsed(
                "SOMMELIER_INTERVAL_COVERAGE",
                crate::model::interval::DEFAULT_COVERAGE,
                "a number between 0.5 and 0.99",
                |v: &f64| (0.5..=0.99).contains(v),
            )?,
            push,
            mlflow,
            json_logs: log_format == "json",
            handler_port: parsed("FUNCTIONS_CUSTOMHANDLER_PORT", 0u16, "a TCP port", |_| true)
                .map(|p| (p != 0).then_some(p))?,
            instance_id: var("WEBSITE_INSTANCE_ID")
                .or_else(|| var("HOSTNAME"))
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                })
                .unwrap_or_else(|| "local".into()),
            under_functions_host: under_functions_host(),
            serving: ServingLimits::from_env()?,
            feedback: crate::feedback::settings::LoopSettings::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_location_is_a_url_or_a_directory() {
        assert_eq!(
            StoreLocation::parse("https://acct.blob.core.windows.net/models/"),
            StoreLocation::BlobContainer("https://acct.blob.core.windows.net/models".into())
        );
        assert_eq!(
            StoreLocation::parse("models-dir"),
            StoreLocation::Directory(PathBuf::from("models-dir"))
        );
    }
}
