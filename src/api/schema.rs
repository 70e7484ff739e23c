//! Request and response types of the prediction API, as documented in the OpenAPI document.
//! Parsing itself goes through `model::input`, which accepts the same shapes and names the
//! field at fault when one is wrong.

use serde::Serialize;
use utoipa::ToSchema;

/// One wine's measurements (any extra field is ignored and reported in `ignored_fields`).
/// Values may also be numeric strings, as HTML forms send them.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct WineFeatures {
    #[schema(example = 7.4)]
    pub fixed_acidity: f64,
    #[schema(example = 0.7)]
    pub volatile_acidity: f64,
    #[schema(example = 0.0)]
    pub citric_acid: f64,
    #[schema(example = 1.9)]
    pub residual_sugar: f64,
    #[schema(example = 0.076)]
    pub chlorides: f64,
    #[schema(example = 11.0)]
    pub free_sulfur_dioxide: f64,
    #[schema(example = 34.0)]
    pub total_sulfur_dioxide: f64,
    #[schema(example = 0.9978)]
    pub density: f64,
    #[serde(rename = "pH")]
    #[schema(example = 3.51)]
    pub ph: f64,
    #[schema(example = 0.56)]
    pub sulphates: f64,
    #[schema(example = 9.4)]
    pub alcohol: f64,
}

/// A batch of wines.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchRequest {
    pub instances: Vec<WineFeatures>,
}

/// The prediction for one wine.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictionResponse {
    /// Predicted quality (0–10 scale).
    pub prediction: f64,
    /// This prediction's id (also in the `x-prediction-id` header): send it back with the
    /// tasted quality to `POST /api/feedback`.
    #[schema(example = "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90")]
    pub prediction_id: String,
    pub model_version: String,
    /// Features outside the range the model was trained on (the prediction is less reliable).
    pub out_of_range: Vec<String>,
    /// Request fields that are not features.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_fields: Vec<String>,
    /// `[low, high]`: contains the true quality with the configured probability
    /// (`SOMMELIER_INTERVAL_COVERAGE`, 0.9 by default), calibrated on the rows the training
    /// held out; absent for models trained before intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
}

/// Predictions for a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPredictionResponse {
    pub predictions: Vec<f64>,
    /// Per row, its id for `POST /api/feedback`: `<x-prediction-id>.<row>`, rows from 0.
    pub prediction_ids: Vec<String>,
    pub model_version: String,
    /// Per row: features outside the training range.
    pub out_of_range: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_fields: Vec<String>,
    /// Per row: `[low, high]` at the configured coverage (see `PredictionResponse`); absent
    /// for models trained before intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<[f64; 2]>>,
}

/// MLflow scoring answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationsResponse {
    pub predictions: Vec<f64>,
}

/// Readiness and model status.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy`, `degraded` (serving, see `degraded`) or `unhealthy`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Why the instance is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the instance is degraded: serving from memory while the store is unreachable or
    /// refuses the credentials, or serving another version because the champion cannot serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// Outcome of `/api/train`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainResponse {
    /// `trained`, or `unchanged` when the champion was trained on the same data with the same
    /// recipe (nothing was trained or stored; `version` is the champion).
    pub status: &'static str,
    /// `Model training successful!`, or why nothing was trained.
    pub message: &'static str,
    pub version: String,
    pub algorithm: String,
    pub metrics: Option<crate::model::metrics::Metrics>,
    /// Rows in the data: the training rows and the held-out rows.
    pub rows: usize,
    /// Rows the model was fitted on.
    pub training_rows: usize,
    pub promoted: bool,
    pub champion: Option<String>,
    pub reason: String,
    pub champion_rmse: Option<f64>,
    /// Both models on the rows neither trained on, with a 95 % interval.
    pub comparison: Option<crate::model::comparison::PairedComparison>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
    /// Peak resident memory of the process while it trained, in bytes (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
}

/// What `GET /api/train` reports: this instance's last training, changing nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingStatus {
    /// Whether a training is running on this instance now.
    pub running: bool,
    /// What started the last training (`http`, `schedule`, `upload`, `startup`), if any ran
    /// since this instance started.
    pub last_trigger: Option<String>,
    /// The last training's report, when it produced a model.
    pub last: Option<TrainResponse>,
    /// Why the last training produced no model, when it failed.
    pub last_error: Option<String>,
}

/// One stored version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub version: String,
    pub algorithm: String,
    pub created_at: String,
    pub metrics: Option<crate::model::metrics::Metrics>,
    pub training_rows: usize,
    pub trigger: String,
    pub source: String,
    pub champion: bool,
    /// Why this version cannot serve (its card is unreadable, its `model.bin` is missing or
    /// not the length its card records, or it is the champion and failed to load); absent
    /// when it is fine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The MLflow run that recorded this version, when tracking is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
}

/// The registry's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    pub champion: Option<String>,
    pub versions: Vec<ModelSummary>,
}

/// Outcome of a promotion.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromoteResponse {
    pub champion: String,
    pub previous: Option<String>,
}
