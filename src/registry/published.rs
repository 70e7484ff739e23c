//! What a published training is: the version it stored, what was decided, and the champion
//! after the decision. Recorded by metrics and tracking, rendered by the CLI and the API.

use std::sync::Arc;

use serde::Serialize;

use super::ChampionPointer;
use crate::model::algorithm::Algorithm;
use crate::model::artifact::ModelArtifact;
use crate::model::comparison::PairedComparison;
use crate::model::metrics::Metrics;

/// What a training produced and decided.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingReport {
    pub version: String,
    pub algorithm: Algorithm,
    pub metrics: Option<Metrics>,
    pub rows: usize,
    pub training_rows: usize,
    pub promoted: bool,
    /// The champion after this training.
    pub champion: Option<String>,
    pub reason: String,
    pub champion_rmse: Option<f64>,
    /// The paired comparison with the champion on rows neither model trained on.
    pub comparison: Option<PairedComparison>,
    /// Label PSI against the champion's training labels, when both are recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_shift: Option<f64>,
    /// Stored but not promoted because the labels shifted beyond the limit.
    pub held_for_label_shift: bool,
    pub fit_seconds: f64,
    /// Peak resident memory of the process while it trained, in bytes (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    pub ignored_columns: Vec<String>,
    pub data_sha256: String,
}

/// The trained model, the report, and the champion pointer after the decision.
#[derive(Clone)]
pub struct Retrained {
    pub report: TrainingReport,
    pub artifact: Arc<ModelArtifact>,
    pub champion: Option<ChampionPointer>,
}
