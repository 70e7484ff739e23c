//! The loop's settings, read once with the others (`config::Settings::feedback`).

use std::time::Duration;

use crate::config::ConfigError;

/// The prediction log, the join and the merge of labelled rows into training.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSettings {
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
    /// `SOMMELIER_TRAIN_ON_FEEDBACK`: whether trainings add the labelled production rows.
    pub train_on_feedback: bool,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            sample: 1.0,
            flush: Duration::from_secs(5),
            queue_rows: 65_536,
            horizon_days: 30,
            train_on_feedback: true,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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

impl LoopSettings {
    pub fn from_env() -> Result<LoopSettings, ConfigError> {
        let defaults = LoopSettings::default();
        let train_on_feedback = match var("SOMMELIER_TRAIN_ON_FEEDBACK") {
            None => defaults.train_on_feedback,
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => true,
                "0" | "false" | "off" | "no" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SOMMELIER_TRAIN_ON_FEEDBACK",
                        value: text,
                        expected: "true or false",
                    })
                }
            },
        };
        Ok(LoopSettings {
            sample: parsed(
                "SOMMELIER_PREDICTION_LOG_SAMPLE",
                defaults.sample,
                "a number from 0 to 1",
                |v: &f64| (0.0..=1.0).contains(v),
            )?,
            flush: Duration::from_secs(parsed(
                "SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS",
                defaults.flush.as_secs(),
                "whole seconds, 1 to 3600",
                |v| (1..=3600).contains(v),
            )?),
            queue_rows: parsed(
                "SOMMELIER_PREDICTION_LOG_QUEUE_ROWS",
                defaults.queue_rows,
                "a whole number, 1 to 10000000",
                |v| (1..=10_000_000).contains(v),
            )?,
            horizon_days: parsed(
                "SOMMELIER_FEEDBACK_HORIZON_DAYS",
                defaults.horizon_days,
                "whole days, 1 to 3650",
                |v| (1..=3650).contains(v),
            )?,
            train_on_feedback,
        })
    }
}
