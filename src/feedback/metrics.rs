//! The loop's metrics. Per instance (in the default registry, pushed with the instance's
//! group): the prediction log's rows written and dropped, and labels received. Per join (in
//! a registry of their own, pushed under `job="sommelier_feedback"`, a group no instance's
//! shutdown deletes): live RMSE, MAE and labelled rows per model version, unmatched labels,
//! and each version's holdout RMSE beside them for the alert.

use std::sync::LazyLock;

use prometheus::{
    register_int_counter, register_int_counter_vec, Encoder, Gauge, GaugeVec, IntCounter,
    IntCounterVec, Opts, Registry, TextEncoder,
};

use super::join::Report;
use crate::config::PushSettings;

/// The instance's counters.
pub struct LogMetrics {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub write_failures: IntCounter,
    pub labels: IntCounterVec,
}

#[allow(clippy::expect_used)]
pub static LOG_METRICS: LazyLock<LogMetrics> = LazyLock::new(|| {
    LogMetrics {
    written: register_int_counter!(
        "sommelier_prediction_log_rows_total",
        "Prediction rows written to the prediction log."
    )
    .expect("register"),
    dropped: register_int_counter!(
        "sommelier_prediction_log_dropped_total",
        "Sampled prediction rows dropped because the log's queue was full (the store was slow or unreachable, or the predictions outpaced the writer), or left unwritten at shutdown."
    )
    .expect("register"),
    write_failures: register_int_counter!(
        "sommelier_prediction_log_write_failures_total",
        "Appends to the prediction log that failed (retried later)."
    )
    .expect("register"),
    labels: register_int_counter_vec!(
        "sommelier_feedback_labels_total",
        "Labels received by POST /api/feedback, by outcome (accepted, rejected).",
        &["outcome"]
    )
    .expect("register"),
}
});

impl LogMetrics {
    /// Creates every series at 0 when the server starts, so that the first rows dropped or
    /// labels refused show as an increase (what `increase()` and the alerts see), not as a
    /// series appearing.
    pub fn start(&self) {
        for outcome in ["accepted", "rejected"] {
            self.labels.with_label_values(&[outcome]);
        }
    }
}

/// The `job` of the join's group at the Pushgateway.
pub const JOB: &str = "sommelier_feedback";

/// The join's figures as Prometheus text. `holdout` gives each version's holdout RMSE where
/// its card records one.
pub fn report_text(report: &Report, holdout: &[(String, f64)], finished_unix: f64) -> String {
    let registry = Registry::new();
    let gauge_vec = |name: &str, help: &str| {
        let vec = GaugeVec::new(Opts::new(name, help), &["model_version"]);
        if let Ok(vec) = &vec {
            let _ = registry.register(Box::new(vec.clone()));
        }
        vec.ok()
    };
    let rmse = gauge_vec(
        "sommelier_feedback_rmse",
        "RMSE of the version's logged predictions against the labels sent back.",
    );
    let mae = gauge_vec(
        "sommelier_feedback_mae",
        "Mean absolute error of the version's logged predictions against the labels.",
    );
    let rows = gauge_vec(
        "sommelier_feedback_labelled_rows",
        "Logged predictions of the version that have a label.",
    );
    let holdout_rmse = gauge_vec(
        "sommelier_feedback_holdout_rmse",
        "The version's holdout RMSE when it was trained, beside its live RMSE.",
    );
    for version in &report.versions {
        let label = [version.model_version.as_str()];
        if let Some(g) = &rmse {
            g.with_label_values(&label).set(version.rmse);
        }
        if let Some(g) = &mae {
            g.with_label_values(&label).set(version.mae);
        }
        if let Some(g) = &rows {
            g.with_label_values(&label)
                .set(version.labelled_rows as f64);
        }
    }
    for (version, value) in holdout {
        if let Some(g) = &holdout_rmse {
            g.with_label_values(&[version.as_str()]).set(*value);
        }
    }
    let single = |name: &str, help: &str, value: f64| {
        if let Ok(gauge) = Gauge::new(name, help) {
            gauge.set(value);
            let _ = registry.register(Box::new(gauge));
        }
    };
    single(
        "sommelier_feedback_unmatched_labels",
        "Labels whose prediction the last join did not find in the log (not logged, not sampled, not flushed yet, or older than the horizon).",
        report.unmatched_labels as f64,
    );
    single(
        "sommelier_feedback_last_join_timestamp_seconds",
        "When the last join finished (Unix time).",
        finished_unix,
    );
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// Replaces the join's group at the Pushgateway with `text`. A failure is logged, never
/// fatal: the report stays in the store.
pub async fn push(settings: &PushSettings, text: String) -> bool {
    crate::telemetry::push::push_group(settings, JOB, text).await
}
