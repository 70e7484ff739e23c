//! The loop's settings: the prediction log, the join and the merge of labelled rows into
//! training (see `feedback`).

use std::time::Duration;

use super::source::Source;
use super::{defaults, ConfigError};

/// The prediction log, the join and the merge of labelled rows into training.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackSettings {
    /// `SOMMELIER_PREDICTION_LOG_SAMPLE`: share of prediction requests logged, 0 to 1.
    pub sample: f64,
    /// `SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS`: how often the log queue is written out.
    pub flush: Duration,
    /// `SOMMELIER_PREDICTION_LOG_QUEUE_ROWS`: rows the log may hold (queued, or waiting for
    /// the store); more are dropped and counted.
    pub queue_rows: usize,
    /// `SOMMELIER_FEEDBACK_HORIZON_DAYS`: how far back the join looks for predictions and
    /// labels.
    pub horizon_days: u32,
    /// `SOMMELIER_PREDICTION_LOG_RETENTION_DAYS`: how long the log's and the labels' files are
    /// kept; the join removes older ones. 0 keeps them all.
    pub retention_days: u32,
    /// `SOMMELIER_TRAIN_ON_FEEDBACK`: whether trainings add the labelled production rows.
    pub train_on_feedback: bool,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        FeedbackSettings {
            sample: defaults::PREDICTION_LOG_SAMPLE,
            flush: defaults::PREDICTION_LOG_FLUSH,
            queue_rows: defaults::PREDICTION_LOG_QUEUE_ROWS,
            horizon_days: defaults::FEEDBACK_HORIZON_DAYS,
            retention_days: defaults::PREDICTION_LOG_RETENTION_DAYS,
            train_on_feedback: defaults::TRAIN_ON_FEEDBACK,
        }
    }
}

const RETENTION: &str = "SOMMELIER_PREDICTION_LOG_RETENTION_DAYS";
const RETENTION_EXPECTED: &str =
    "0 to keep every file, or whole days from SOMMELIER_FEEDBACK_HORIZON_DAYS to 3650";

impl FeedbackSettings {
    pub(super) fn read(source: &Source) -> Result<FeedbackSettings, ConfigError> {
        let settings = FeedbackSettings {
            sample: source.parsed(
                "SOMMELIER_PREDICTION_LOG_SAMPLE",
                defaults::PREDICTION_LOG_SAMPLE,
                "a number from 0 to 1",
                |v: &f64| (0.0..=1.0).contains(v),
            )?,
            flush: source.seconds(
                "SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS",
                defaults::PREDICTION_LOG_FLUSH,
                "whole seconds, 1 to 3600",
            )?,
            queue_rows: source.parsed(
                "SOMMELIER_PREDICTION_LOG_QUEUE_ROWS",
                defaults::PREDICTION_LOG_QUEUE_ROWS,
                "a whole number, 1 to 10000000",
                |v| (1..=10_000_000).contains(v),
            )?,
            horizon_days: source.parsed(
                "SOMMELIER_FEEDBACK_HORIZON_DAYS",
                defaults::FEEDBACK_HORIZON_DAYS,
                "whole days, 1 to 3650",
                |v| (1..=3650).contains(v),
            )?,
            retention_days: source.parsed(
                RETENTION,
                defaults::PREDICTION_LOG_RETENTION_DAYS,
                RETENTION_EXPECTED,
                |v| *v <= 3650,
            )?,
            train_on_feedback: source
                .switch("SOMMELIER_TRAIN_ON_FEEDBACK", defaults::TRAIN_ON_FEEDBACK)?,
        };
        // Files the join still reads are never removed: a retention shorter than the horizon
        // would shorten the horizon unseen.
        if settings.retention_days != 0 && settings.retention_days < settings.horizon_days {
            return Err(ConfigError::Invalid {
                name: RETENTION,
                value: settings.retention_days.to_string(),
                expected: RETENTION_EXPECTED,
            });
        }
        Ok(settings)
    }
}
