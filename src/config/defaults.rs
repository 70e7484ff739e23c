//! Every setting's default, named once: the settings, the CLI's help and the docs use these.

use std::time::Duration;

/// `SOMMELIER_STORE`: a directory beside the working directory.
pub const STORE_DIRECTORY: &str = ".sommelier";
/// `SOMMELIER_MODEL_REFRESH_SECONDS`: how often the champion pointer is checked.
pub const MODEL_REFRESH: Duration = Duration::from_secs(30);
/// `SOMMELIER_PUSH_INTERVAL_SECONDS`: how often metrics are pushed.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(15);
/// `SOMMELIER_PUSH_STALE_GROUP_SECONDS`: an instance's Pushgateway group not pushed for an
/// hour is deleted, long after the stopped-pushing alert (ten minutes) has said so.
pub const PUSH_STALE_GROUP: Duration = Duration::from_secs(3600);
/// `SOMMELIER_PROMOTION_TOLERANCE`: relative RMSE slack a challenger may lose by (1 %).
pub const PROMOTION_TOLERANCE: f64 = 0.01;
/// `SOMMELIER_MIN_COMPARABLE_ROWS`: the fewest rows unseen by both models that make a
/// comparison.
pub const MIN_COMPARABLE_ROWS: usize = 30;
/// `SOMMELIER_KEEP_VERSIONS`: versions retention keeps (plus the champion and its previous).
pub const KEEP_VERSIONS: usize = 20;
/// `SOMMELIER_MAX_LABEL_SHIFT`: the label PSI above which a challenger is stored but not
/// promoted; a PSI of 0.25 is commonly read as a large shift.
pub const MAX_LABEL_SHIFT: f64 = 0.25;
/// `SOMMELIER_MAX_BATCH_ROWS`: the most rows one prediction request may carry.
pub const MAX_BATCH_ROWS: usize = 10_000;
/// `SOMMELIER_MAX_EXPLAIN_ROWS`: the most rows one explanation request may carry.
pub const MAX_EXPLAIN_ROWS: usize = 100;
/// `SOMMELIER_INTERVAL_COVERAGE`: the share of true qualities intervals are calibrated to hold.
pub const INTERVAL_COVERAGE: f64 = 0.9;
/// `MLFLOW_EXPERIMENT_NAME`.
pub const MLFLOW_EXPERIMENT: &str = "sommelier";
/// `SOMMELIER_MLFLOW_MODEL_NAME`: the registered model in MLflow's registry.
pub const MLFLOW_MODEL_NAME: &str = "sommelier-wine-quality";
/// The instance name when neither the host nor the machine names one.
pub const INSTANCE_ID: &str = "local";

/// `SOMMELIER_MAX_BUFFERED_BYTES`: request bytes buffered at once, server-wide.
pub const MAX_BUFFERED_BYTES: usize = 128 * 1024 * 1024;
/// `SOMMELIER_MAX_LARGE_REQUESTS`: bodies above 1 MiB handled at once.
pub const MAX_LARGE_REQUESTS: usize = 4;
/// `SOMMELIER_HEADER_TIMEOUT_SECONDS`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `SOMMELIER_REQUEST_TIMEOUT_SECONDS`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `SOMMELIER_BODY_START_TIMEOUT_SECONDS`.
pub const BODY_START_TIMEOUT: Duration = Duration::from_secs(5);
/// `SOMMELIER_SHUTDOWN_SECONDS`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `SOMMELIER_PREDICTION_LOG_SAMPLE`: every prediction is logged.
pub const PREDICTION_LOG_SAMPLE: f64 = 1.0;
/// `SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS`.
pub const PREDICTION_LOG_FLUSH: Duration = Duration::from_secs(5);
/// `SOMMELIER_PREDICTION_LOG_QUEUE_ROWS`.
pub const PREDICTION_LOG_QUEUE_ROWS: usize = 65_536;
/// `SOMMELIER_FEEDBACK_HORIZON_DAYS`.
pub const FEEDBACK_HORIZON_DAYS: u32 = 30;
/// `SOMMELIER_PREDICTION_LOG_RETENTION_DAYS`: three horizons.
pub const PREDICTION_LOG_RETENTION_DAYS: u32 = 90;
/// `SOMMELIER_TRAIN_ON_FEEDBACK`.
pub const TRAIN_ON_FEEDBACK: bool = true;
