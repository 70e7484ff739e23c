//! The Prometheus metrics sommelier exports: serving, model behaviour and training.
//! Names follow Prometheus conventions (base units, `_total` counters, bounded labels).
//! Everything is registered in the default registry, which other modules may also use.

use std::sync::{LazyLock, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    register_gauge, register_gauge_vec, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Encoder, Gauge, GaugeVec,
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};

use super::striped::{stripe, Striped, STRIPES};

use crate::model::artifact::ModelCard;
use crate::model::training::Trigger;
use crate::registry::published::TrainingReport;

/// Every collector, created once. What every prediction updates is [`Striped`]: one copy
/// per thread stripe, collected as one.
pub struct Metrics {
    pub http_requests: Striped<IntCounterVec>,
    pub http_duration: Striped<HistogramVec>,
    pub http_in_flight: Striped<IntGauge>,
    pub predictions: Striped<IntCounter>,
    pub batch_size: Striped<Histogram>,
    pub predicted_quality: Striped<Histogram>,
    pub out_of_range: IntCounterVec,
    pub drift_observed: Striped<IntCounter>,
    pub drift_psi: GaugeVec,
    pub model_info: GaugeVec,
    pub model_load_seconds: Gauge,
    pub model_created: Gauge,
    pub cold_starts: IntCounter,
    pub process_start: Gauge,
    pub training_runs: IntCounterVec,
    pub training_duration: HistogramVec,
    pub training_rows: IntGauge,
    pub model_rmse: GaugeVec,
    pub model_mae: GaugeVec,
    pub model_r2: GaugeVec,
    pub last_success: Gauge,
    pub push_failures: IntCounter,
    pub store_errors: IntCounterVec,
    pub serving_degraded: IntGaugeVec,
    pub store_auth_failures: IntCounter,
    pub training_peak_memory: IntGauge,
    /// Label PSI of the last training against its champion, and whether it was held for it.
    pub training_label_shift: Gauge,
    pub training_held_for_label_shift: IntGauge,
}

/// Registration can only fail on a duplicate name, which is a programming error caught by
/// the first test that touches metrics.
#[allow(clippy::expect_used)]
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let latency = vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ];
    Metrics {
        http_requests: register_striped(|| {
            IntCounterVec::new(
                Opts::new(
                    "sommelier_http_requests_total",
                    "HTTP requests and envelope invocations by function and status code.",
                ),
                &["function", "status"],
            )
        })
        .expect("register"),
        http_duration: register_striped(|| {
            HistogramVec::new(
                HistogramOpts::new(
                    "sommelier_http_request_duration_seconds",
                    "Time to answer a request, by function.",
                )
                .buckets(latency.clone()),
                &["function"],
            )
        })
        .expect("register"),
        http_in_flight: register_striped(|| {
            IntGauge::new(
                "sommelier_http_requests_in_flight",
                "Requests being handled now.",
            )
        })
        .expect("register"),
        predictions: register_striped(|| {
            IntCounter::new("sommelier_predictions_total", "Rows predicted.")
        })
        .expect("register"),
        batch_size: register_striped(|| {
            Histogram::with_opts(
                HistogramOpts::new(
                    "sommelier_prediction_batch_size",
                    "Rows per prediction request.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
                ]),
            )
        })
        .expect("register"),
        predicted_quality: register_striped(|| {
            Histogram::with_opts(
                HistogramOpts::new("sommelier_predicted_quality", "Predicted quality scores.")
                    .buckets(vec![
                        3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0,
                    ]),
            )
        })
        .expect("register"),
        out_of_range: register_int_counter_vec!(
            "sommelier_feature_out_of_range_total",
            "Input values outside the champion's training range, by feature.",
            &["feature"]
        )
        .expect("register"),
        drift_observed: register_striped(|| {
            IntCounter::new(
                "sommelier_feature_values_observed_total",
                "Rows seen by the drift monitor.",
            )
        })
        .expect("register"),
        drift_psi: register_gauge_vec!(
            "sommelier_feature_drift_psi",
            "Population Stability Index of recent inputs against the training data, by feature (> 0.2: drift).",
            &["feature"]
        )
        .expect("register"),
        model_info: register_gauge_vec!(
            "sommelier_model_info",
            "The serving model (value 1).",
            &["version", "algorithm"]
        )
        .expect("register"),
        model_load_seconds: register_gauge!(
            "sommelier_model_load_duration_seconds",
            "Time the last model load took."
        )
        .expect("register"),
        model_created: register_gauge!(
            "sommelier_model_created_timestamp_seconds",
            "Creation time of the serving model (Unix seconds)."
        )
        .expect("register"),
        cold_starts: register_int_counter!(
            "sommelier_cold_starts_total",
            "Process starts."
        )
        .expect("register"),
        process_start: register_gauge!(
            "sommelier_process_start_time_seconds",
            "Start time of this process (Unix seconds)."
        )
        .expect("register"),
        training_runs: register_int_counter_vec!(
            "sommelier_training_runs_total",
            "Trainings by trigger and outcome (promoted, kept_champion, unchanged, rejected, failed).",
            &["trigger", "outcome"]
        )
        .expect("register"),
        training_duration: register_histogram_vec!(
            "sommelier_training_duration_seconds",
            "Wall time of a training, by trigger.",
            &["trigger"],
            vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
        )
        .expect("register"),
        training_rows: register_int_gauge!(
            "sommelier_training_rows",
            "Rows in the last training data set."
        )
        .expect("register"),
        model_rmse: register_gauge_vec!(
            "sommelier_model_rmse",
            "Holdout RMSE of the last challenger and of the champion on the same rows.",
            &["role"]
        )
        .expect("register"),
        model_mae: register_gauge_vec!(
            "sommelier_model_mae",
            "Holdout MAE of the last challenger and of the serving champion.",
            &["role"]
        )
        .expect("register"),
        model_r2: register_gauge_vec!(
            "sommelier_model_r2",
            "Holdout R² of the last challenger and of the serving champion.",
            &["role"]
        )
        .expect("register"),
        last_success: register_gauge!(LAST_SUCCESS_NAME, LAST_SUCCESS_HELP)
        .expect("register"),
        push_failures: register_int_counter!(
            "sommelier_pushgateway_push_failures_total",
            "Metric pushes that failed or timed out."
        )
        .expect("register"),
        store_errors: register_int_counter_vec!(
            "sommelier_store_errors_total",
            "Failed model store operations, by operation.",
            &["operation"]
        )
        .expect("register"),
        serving_degraded: register_int_gauge_vec!(
            "sommelier_serving_degraded",
            "1 while this instance is degraded, by reason: champion_unservable (serving another \
             version), store_access_denied (credentials refused), store_unavailable.",
            &["reason"]
        )
        .expect("register"),
        store_auth_failures: register_int_counter!(
            "sommelier_store_auth_failures_total",
            "Model store requests refused with 401/403 (a configuration error)."
        )
        .expect("register"),
        training_label_shift: register_gauge!(
            "sommelier_training_label_shift",
            "Population stability index of the last training's quality labels against the champion's."
        )
        .expect("register"),
        training_held_for_label_shift: register_int_gauge!(
            "sommelier_training_held_for_label_shift",
            "1 if the last training was stored but not promoted because its labels differ from the champion's beyond SOMMELIER_MAX_LABEL_SHIFT."
        )
        .expect("register"),
        training_peak_memory: register_int_gauge!(
            "sommelier_training_peak_memory_bytes",
            "Peak resident memory of the process during the last training (Linux only)."
        )
        .expect("register"),
    }
});

/// Registers the [`STRIPES`] copies made by `make` as one collector.
fn register_striped<M: Collector + Clone + 'static>(
    make: impl Fn() -> prometheus::Result<M>,
) -> prometheus::Result<Striped<M>> {
    let striped = Striped::new(make)?;
    prometheus::register(Box::new(striped.clone()))?;
    Ok(striped)
}

/// The `function` label values whose series are resolved once per process (see
/// [`Metrics::record_request`]); any other value is looked up per request.
const FUNCTIONS: [&str; 11] = [
    "predict",
    "invocations",
    "train",
    "health",
    "metrics",
    "openapi",
    "retrain-on-schedule",
    "retrain-on-upload",
    "models",
    "readiness",
    "other",
];

/// One function's request series, resolved on its first request: later requests cost the
/// observations alone, not a label hash and a registry lock per metric. Created lazily so
/// that a function never called has no series, as before.
struct FunctionSeries {
    duration: OnceLock<Histogram>,
    /// `status="200"`, by far the most frequent; other codes are looked up.
    ok: OnceLock<IntCounter>,
}

/// Per stripe, per function.
static FUNCTION_SERIES: [[FunctionSeries; FUNCTIONS.len()]; STRIPES] = [const {
    [const {
        FunctionSeries {
            duration: OnceLock::new(),
            ok: OnceLock::new(),
        }
    }; FUNCTIONS.len()]
}; STRIPES];

/// The out-of-range counter of each feature, in feature order, resolved once.
static OUT_OF_RANGE: LazyLock<Vec<IntCounter>> = LazyLock::new(|| {
    crate::model::features::FEATURE_NAMES
        .iter()
        .map(|feature| METRICS.out_of_range.with_label_values(&[feature]))
        .collect()
});

/// Training outcomes, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingOutcome {
    Promoted,
    KeptChampion,
    /// Nothing to train: the champion is what the training would produce.
    Unchanged,
    Rejected,
    Failed,
}

impl TrainingOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TrainingOutcome::Promoted => "promoted",
            TrainingOutcome::KeptChampion => "kept_champion",
            TrainingOutcome::Unchanged => "unchanged",
            TrainingOutcome::Rejected => "rejected",
            TrainingOutcome::Failed => "failed",
        }
    }
}

/// Why an instance reports itself degraded (the `reason` label of `sommelier_serving_degraded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DegradedReason {
    /// The champion cannot serve; another version is served.
    ChampionUnservable,
    /// The store refused the credentials (401/403).
    StoreAccessDenied,
    /// The store cannot be reached.
    StoreUnavailable,
    /// The last training could not store its result (a full or read-only store).
    StoreRefusesWrites,
    /// A secret setting is a Key Vault reference the platform did not resolve.
    UnresolvedSecret,
}

impl DegradedReason {
    pub const ALL: [DegradedReason; 5] = [
        DegradedReason::ChampionUnservable,
        DegradedReason::StoreAccessDenied,
        DegradedReason::StoreUnavailable,
        DegradedReason::StoreRefusesWrites,
        DegradedReason::UnresolvedSecret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DegradedReason::ChampionUnservable => "champion_unservable",
            DegradedReason::StoreAccessDenied => "store_access_denied",
            DegradedReason::StoreUnavailable => "store_unavailable",
            DegradedReason::StoreRefusesWrites => "store_refuses_writes",
            DegradedReason::UnresolvedSecret => "unresolved_secret",
        }
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Counts one request in `sommelier_http_requests_in_flight` for as long as it lives: the
/// gauge goes down on every way out, a client hang-up that drops the request included.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        METRICS.http_in_flight.local().inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.http_in_flight.local().dec();
    }
}

impl Metrics {
    /// Counts and times one answered request of `function`.
    pub fn record_request(&self, function: &str, status: &str, seconds: f64) {
        let stripe = stripe();
        let (durations, requests) = (
            &self.http_duration.all()[stripe],
            &self.http_requests.all()[stripe],
        );
        let Some(index) = FUNCTIONS.iter().position(|f| *f == function) else {
            durations.with_label_values(&[function]).observe(seconds);
            requests.with_label_values(&[function, status]).inc();
            return;
        };
        let series = &FUNCTION_SERIES[stripe][index];
        series
            .duration
            .get_or_init(|| durations.with_label_values(&[function]))
            .observe(seconds);
        if status == "200" {
            series
                .ok
                .get_or_init(|| requests.with_label_values(&[function, "200"]))
                .inc();
        } else {
            requests.with_label_values(&[function, status]).inc();
        }
    }

    /// Counts one input value outside the serving model's training range.
    pub fn record_out_of_range(&self, feature: usize) {
        match OUT_OF_RANGE.get(feature) {
            Some(counter) => counter.inc(),
            None => tracing::warn!(feature, "no out-of-range counter for this feature index"),
        }
    }

    /// Records the process start (once per process), and creates every labelled counter at
    /// zero so that Prometheus sees the first increase of each (a series that appears with a
    /// value has no visible rate).
    pub fn record_start(&self) {
        self.cold_starts.inc();
        self.process_start.set(unix_now());
        for feature in crate::model::features::FEATURE_NAMES {
            self.out_of_range.with_label_values(&[feature]).inc_by(0);
        }
        self.record_degraded(&[]);
        self.store_auth_failures.inc_by(0);
        for trigger in [
            Trigger::Cli,
            Trigger::Http,
            Trigger::Schedule,
            Trigger::Upload,
            Trigger::Startup,
        ] {
            for outcome in [
                TrainingOutcome::Promoted,
                TrainingOutcome::KeptChampion,
                TrainingOutcome::Rejected,
                TrainingOutcome::Failed,
            ] {
                self.training_runs
                    .with_label_values(&[trigger.as_str(), outcome.as_str()])
                    .inc_by(0);
            }
        }
    }

    /// Sets the degraded gauge of every reason: 1 for those in `active`, 0 for the others.
    pub fn record_degraded(&self, active: &[DegradedReason]) {
        for reason in DegradedReason::ALL {
            self.serving_degraded
                .with_label_values(&[reason.as_str()])
                .set(i64::from(active.contains(&reason)));
        }
    }

    /// Records the serving model after a load or swap.
    pub fn record_model(&self, card: &ModelCard, load_seconds: f64) {
        self.model_info.reset();
        self.model_info
            .with_label_values(&[card.version.as_str(), card.spec.algorithm().name()])
            .set(1.0);
        self.model_load_seconds.set(load_seconds);
        self.model_created.set(card.created_unix_seconds as f64);
        if let Some(m) = card.metrics {
            self.model_rmse.with_label_values(&["champion"]).set(m.rmse);
            self.model_mae.with_label_values(&["champion"]).set(m.mae);
            self.model_r2.with_label_values(&["champion"]).set(m.r2);
        }
    }

    /// Records a finished training.
    pub fn record_training(
        &self,
        trigger: &str,
        outcome: TrainingOutcome,
        seconds: f64,
        report: Option<&TrainingReport>,
    ) {
        self.training_runs
            .with_label_values(&[trigger, outcome.as_str()])
            .inc();
        self.training_duration
            .with_label_values(&[trigger])
            .observe(seconds);
        if matches!(outcome, TrainingOutcome::Unchanged) {
            // The champion is up to date with the data: as good as a training for staleness.
            self.last_success.set(unix_now());
        }
        if let Some(report) = report {
            self.training_rows.set(report.rows as i64);
            self.training_label_shift
                .set(report.label_shift.unwrap_or(0.0));
            self.training_held_for_label_shift
                .set(i64::from(report.held_for_label_shift));
            if let Some(bytes) = report.peak_memory_bytes {
                self.training_peak_memory
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            self.last_success.set(unix_now());
            if let Some(m) = report.metrics {
                self.model_rmse
                    .with_label_values(&["challenger"])
                    .set(m.rmse);
                self.model_mae.with_label_values(&["challenger"]).set(m.mae);
                self.model_r2.with_label_values(&["challenger"]).set(m.r2);
            }
        }
    }
}

/// The last successful training's gauge: on each instance, and in the shared group of
/// [`super::push::TRAINING_JOB`] (the Pushgateway wants one help text for one name).
pub const LAST_SUCCESS_NAME: &str = "sommelier_last_successful_training_timestamp_seconds";
pub const LAST_SUCCESS_HELP: &str = "Time of the last training that produced a model, or found the champion already trained on the same data (Unix seconds).";

/// The default registry in the Prometheus text format.
pub fn encode_text() -> String {
    let families = prometheus::gather();
    let mut buffer = Vec::with_capacity(16 * 1024);
    if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
        tracing::warn!(%error, "metrics encoding failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}
