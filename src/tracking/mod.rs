//! Experiment tracking: every training becomes an MLflow run, every stored model a version of
//! an MLflow registered model whose `champion` alias follows sommelier's champion pointer.
//!
//! The model store stays the source of truth: MLflow is never on the critical path. Each
//! call has a short timeout and bounded retries; a failure is logged with the server's
//! message (never credentials), counted in `sommelier_mlflow_failures_total{operation}`, and
//! otherwise ignored. When `MLFLOW_TRACKING_URI` is unset the [`Tracker`] does nothing.
//! The REST calls themselves live in [`mlflow`].

pub mod mlflow;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, Opts};

use crate::config::{MlflowSettings, Settings, StoreLocation};
use crate::model::algorithm::ModelSpec;
use crate::model::artifact::{DataSource, ModelArtifact, ModelCard, SOMMELIER_VERSION};
use crate::model::dataset::Dataset;
use crate::model::training::{TrainOptions, Trigger};
use crate::registry::published::{Retrained, TrainingReport};
use mlflow::{KeyValue, Metric, MlflowClient, MlflowError, RunInfo};

/// The alias that follows the champion.
pub const CHAMPION_ALIAS: &str = "champion";
/// Folder of a run's artifacts that holds the model; a registered version's source.
pub const MODEL_ARTIFACT_DIR: &str = "model";
/// Tag on runs and model versions: the sommelier model version id.
pub const TAG_MODEL_VERSION: &str = "sommelier.model_version";
/// Upper bound on everything one tracking call (a training's whole sequence) may take.
const OPERATION_BUDGET: Duration = Duration::from_secs(90);
/// Longest tag value sent (MLflow 2.x accepts 5000 characters).
const MAX_TAG_CHARS: usize = 5000;
/// Run pages searched for `run_ids`.
const MAX_SEARCH_PAGES: usize = 5;

/// Failed MLflow calls, after retries, by operation (a fixed set of names).
static FAILURES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let opts = Opts::new(
        "sommelier_mlflow_failures_total",
        "MLflow tracking calls that failed after retries, by operation; trainings are unaffected",
    );
    let counter = IntCounterVec::new(opts, &["operation"]).ok()?;
    if let Err(error) = prometheus::register(Box::new(counter.clone())) {
        tracing::warn!(%error, "cannot register the MLflow failure counter");
    }
    Some(counter)
});

/// The operations counted in `sommelier_mlflow_failures_total`.
pub const OPERATIONS: [&str; 11] = [
    "configure",
    "experiment",
    "create_run",
    "log_batch",
    "upload_artifact",
    "end_run",
    "registered_model",
    "model_version",
    "set_alias",
    "search",
    "deadline",
];

/// How many failures were counted for `operation` in this process.
pub fn failure_count(operation: &str) -> u64 {
    FAILURES
        .as_ref()
        .map_or(0, |c| c.with_label_values(&[operation]).get())
}

/// What a training was asked to do: known before it starts, so failures can be tracked too.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingContext {
    pub trigger: Trigger,
    pub source: DataSource,
    pub holdout: f64,
    pub spec: ModelSpec,
    /// Rows of the training data (0 when it could not be read).
    pub rows: usize,
    /// SHA-256 of the training data (empty when it could not be read).
    pub data_sha256: String,
}

impl TrainingContext {
    /// The context of a training of `dataset` with `options` (build it before both are
    /// handed to `train_and_publish`).
    pub fn new(options: &TrainOptions, dataset: &Dataset) -> Self {
        Self {
            trigger: options.trigger,
            source: options.source.clone(),
            holdout: options.holdout,
            spec: options.spec,
            rows: dataset.rows.len(),
            data_sha256: dataset.sha256.clone(),
        }
    }
}

/// Records trainings in MLflow. Cheap to clone; does nothing when tracking is off.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    inner: Option<Arc<Recorder>>,
}

#[derive(Debug)]
struct Recorder {
    client: MlflowClient,
    experiment_name: String,
    model_name: String,
    store_location: String,
    git_commit: Option<String>,
}

/// Stops a tracking sequence: the step's failure was already logged and counted.
#[derive(Debug)]
struct Abandoned;

impl Tracker {
    /// The tracker the settings ask for: off when `MLFLOW_TRACKING_URI` is unset.
    pub fn from_settings(settings: &Settings) -> Tracker {
        let store_location = match &settings.store {
            StoreLocation::Directory(path) => path.display().to_string(),
            StoreLocation::BlobContainer(url) => url.clone(),
        };
        Tracker::new(settings.mlflow.as_ref(), store_location)
            .with_git_commit(settings.git_commit.clone())
    }

    /// Records `commit` as the source commit of every tracked training.
    pub fn with_git_commit(mut self, commit: Option<String>) -> Tracker {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.git_commit = commit;
        }
        self
    }

    /// A tracker for `settings` (off when `None`); `store_location` names the model store
    /// (no credentials) on registered versions.
    pub fn new(settings: Option<&MlflowSettings>, store_location: impl Into<String>) -> Tracker {
        let Some(settings) = settings else {
            return Tracker::disabled();
        };
        for operation in OPERATIONS {
            if let Some(counter) = FAILURES.as_ref() {
                counter.with_label_values(&[operation]);
            }
        }
        match MlflowClient::new(settings) {
            Ok(client) => {
                tracing::info!(
                    server = client.base_url(),
                    experiment = %settings.experiment_name,
                    model = %settings.model_name,
                    "MLflow tracking on"
                );
                Tracker {
                    inner: Some(Arc::new(Recorder {
                        client,
                        experiment_name: settings.experiment_name.clone(),
                        model_name: settings.model_name.clone(),
                        store_location: store_location.into(),
                        git_commit: None,
                    })),
                }
            }
            Err(error) => {
                failed("configure", &error);
                Tracker::disabled()
            }
        }
    }

    /// A tracker that records nothing.
    pub fn disabled() -> Tracker {
        Tracker { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records a successful training: one run with its parameters, metrics, tags and
    /// artifacts (`model/model.bin`, `model/card.json`), a registered model version, and
    /// the `champion` alias if the model was promoted. Returns the run id when the run was
    /// created.
    pub async fn training_succeeded(
        &self,
        ctx: &TrainingContext,
        retrained: &Retrained,
    ) -> Option<String> {
        let inner = self.inner.as_ref()?;
        let deadline = tokio::time::Instant::now() + OPERATION_BUDGET;
        let report = &retrained.report;
        let card = &retrained.artifact.card;
        let run = within(deadline, inner.start_training_run(ctx, report, card)).await?;
        let recorded = async {
            inner
                .log_training_metrics(ctx, retrained, &run.run_id)
                .await?;
            inner.upload_model(&run, &retrained.artifact).await?;
            optional_step(
                "end_run",
                inner
                    .client
                    .end_run(&run.run_id, "FINISHED", now_ms())
                    .await,
            )?;
            inner.register_version(&run, report).await
        };
        within(deadline, recorded).await;
        Some(run.run_id)
    }

    /// Records a training that failed (or an upload that was rejected): a run that ends
    /// FAILED, with `error` in the tag `sommelier.error` and as the run's description.
    pub async fn training_failed(&self, ctx: &TrainingContext, error: &str) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        if tokio::time::timeout(OPERATION_BUDGET, inner.training_failed(ctx, error))
            .await
            .is_err()
        {
            failed("deadline", &MlflowError::Timeout(OPERATION_BUDGET));
        }
    }

    /// Moves the `champion` alias to the registered version tagged with sommelier model
    /// version `version` (after a rollback or a manual promotion).
    pub async fn champion_moved(&self, version: &str) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        if tokio::time::timeout(OPERATION_BUDGET, inner.champion_moved(version))
            .await
            .is_err()
        {
            failed("deadline", &MlflowError::Timeout(OPERATION_BUDGET));
        }
    }

    /// The MLflow run id of each of `versions` that has a finished run (for listings).
    pub async fn run_ids(&self, versions: &[String]) -> HashMap<String, String> {
        let Some(inner) = self.inner.as_ref() else {
            return HashMap::new();
        };
        tokio::time::timeout(OPERATION_BUDGET, inner.run_ids(versions))
            .await
            .unwrap_or_else(|_| {
                failed("search", &MlflowError::Timeout(OPERATION_BUDGET));
                HashMap::new()
            })
    }
}

impl Recorder {
    /// The run of a training, created in its experiment with the training's tags.
    async fn start_training_run(
        &self,
        ctx: &TrainingContext,
        report: &TrainingReport,
        card: &ModelCard,
    ) -> Result<RunInfo, Abandoned> {
        let experiment = step(
            "experiment",
            self.client
                .get_or_create_experiment(&self.experiment_name)
                .await,
        )?;

        let mut tags = self.run_tags(ctx);
        tags.push(KeyValue::new(TAG_MODEL_VERSION, &report.version));
        tags.push(KeyValue::new(
            "sommelier.promoted",
            report.promoted.to_string(),
        ));
        tags.push(KeyValue::new("sommelier.decision", clip(&report.reason)));
        tags.push(KeyValue::new("sommelier.store", &self.store_location));
        let start_ms = i64::try_from(card.created_unix_seconds)
            .map_or_else(|_| now_ms(), |s| s.saturating_mul(1000));
        let run = step(
            "create_run",
            self.client
                .create_run(&experiment.experiment_id, &report.version, start_ms, &tags)
                .await,
        )?;
        Ok(run)
    }

    /// Parameters and metrics: the holdout's, the comparison's, global importance and the
    /// intervals' calibration, one metric each.
    async fn log_training_metrics(
        &self,
        ctx: &TrainingContext,
        retrained: &Retrained,
        run_id: &str,
    ) -> Result<(), Abandoned> {
        let report = &retrained.report;
        let card = &retrained.artifact.card;
        let mut params = params(ctx);
        params.push(KeyValue::new(
            "training_rows",
            report.training_rows.to_string(),
        ));
        let now = now_ms();
        let mut values: Vec<(&str, f64)> = Vec::new();
        if let Some(m) = &report.metrics {
            values.extend([
                ("rmse", m.rmse),
                ("mae", m.mae),
                ("r2", m.r2),
                ("within_0_5", m.within_0_5),
                ("within_1_0", m.within_1_0),
            ]);
        }
        if let Some(rmse) = report.champion_rmse {
            values.push(("champion_rmse", rmse));
        }
        if let Some(c) = &report.comparison {
            values.extend([
                ("compared_rows", c.rows as f64),
                ("compared_challenger_rmse", c.challenger_rmse),
                ("compared_mse_difference", c.mean_squared_error_difference),
                ("compared_mse_difference_low", c.interval_95[0]),
                ("compared_mse_difference_high", c.interval_95[1]),
            ]);
        }
        values.push(("fit_seconds", report.fit_seconds));
        if let Some(bytes) = report.peak_memory_bytes {
            values.push(("peak_memory_bytes", bytes as f64));
        }
        // Global importance (mean |contribution| over the holdout) and the intervals'
        // calibration, one metric each.
        let mut owned: Vec<(String, f64)> = Vec::new();
        for entry in card.importance.iter().flat_map(|i| &i.features) {
            owned.push((
                format!("importance_{}", entry.feature),
                entry.mean_abs_contribution,
            ));
        }
        for quantile in card.calibration.iter().flat_map(|c| &c.quantiles) {
            if let Some(half_width) = quantile.half_width {
                let percent = (quantile.coverage * 100.0).round();
                owned.push((format!("interval_half_width_{percent}"), half_width));
            }
        }
        let metrics: Vec<Metric> = values
            .into_iter()
            .chain(owned.iter().map(|(key, value)| (key.as_str(), *value)))
            // JSON has no NaN: a metric that could not be computed is left out.
            .filter(|(_, value)| value.is_finite())
            .map(|(key, value)| Metric {
                key: key.to_string(),
                value,
                timestamp: now,
                step: 0,
            })
            .collect();
        optional_step(
            "log_batch",
            self.client.log_batch(run_id, &params, &metrics, &[]).await,
        )?;

        Ok(())
    }

    /// The model and its card as the run's artifacts (`model/model.bin`, `model/card.json`).
    async fn upload_model(
        &self,
        run: &RunInfo,
        artifact: &Arc<ModelArtifact>,
    ) -> Result<(), Abandoned> {
        let artifact = Arc::clone(artifact);
        let encoded = tokio::task::spawn_blocking(move || {
            let model = artifact.encode().map_err(|e| e.to_string())?;
            // The card file exactly as the registry stores it, artifact digest included.
            let digest = crate::registry::ArtifactDigest::of(&model);
            let card =
                crate::registry::card_file(&artifact.card, &digest).map_err(|e| e.to_string())?;
            Ok::<_, String>((model, card))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match encoded {
            Ok((model, card_json)) => {
                let model_path = format!("{MODEL_ARTIFACT_DIR}/model.bin");
                let card_path = format!("{MODEL_ARTIFACT_DIR}/card.json");
                let uploads = [
                    (model_path, "application/octet-stream", model),
                    (card_path, "application/json", card_json),
                ];
                for (path, content_type, bytes) in uploads {
                    optional_step(
                        "upload_artifact",
                        self.client
                            .upload_artifact(&run.artifact_uri, &path, content_type, bytes)
                            .await,
                    )?;
                }
            }
            Err(error) => failed(
                "upload_artifact",
                &MlflowError::Unsupported(format!("cannot encode the model: {error}")),
            ),
        }
        Ok(())
    }

    /// A registered model version from the run, and the `champion` alias if it was promoted.
    async fn register_version(
        &self,
        run: &RunInfo,
        report: &TrainingReport,
    ) -> Result<(), Abandoned> {
        step(
            "registered_model",
            self.client.ensure_registered_model(&self.model_name).await,
        )?;
        let source = format!(
            "{}/{MODEL_ARTIFACT_DIR}",
            run.artifact_uri.trim_end_matches('/')
        );
        let version_tags = [
            KeyValue::new(TAG_MODEL_VERSION, &report.version),
            KeyValue::new("sommelier.store", &self.store_location),
            KeyValue::new("sommelier.algorithm", report.algorithm.name()),
        ];
        let description = format!(
            "sommelier model {} ({}), stored in {}",
            report.version,
            report.algorithm.name(),
            self.store_location
        );
        let model_version = step(
            "model_version",
            self.client
                .create_model_version(
                    &self.model_name,
                    &source,
                    &run.run_id,
                    &version_tags,
                    &description,
                )
                .await,
        )?;
        // The alias follows the champion after this training (a concurrent training may have
        // won the pointer in between).
        if report.promoted && report.champion.as_deref() == Some(report.version.as_str()) {
            step(
                "set_alias",
                self.client
                    .set_alias(&self.model_name, CHAMPION_ALIAS, &model_version.version)
                    .await,
            )?;
        }
        tracing::info!(
            run_id = %run.run_id,
            model_version = %model_version.version,
            model = %self.model_name,
            "training recorded in MLflow"
        );
        Ok(())
    }

    async fn training_failed(&self, ctx: &TrainingContext, error: &str) -> Result<(), Abandoned> {
        let experiment = step(
            "experiment",
            self.client
                .get_or_create_experiment(&self.experiment_name)
                .await,
        )?;
        let mut tags = self.run_tags(ctx);
        tags.push(KeyValue::new("sommelier.outcome", "failed"));
        tags.push(KeyValue::new("sommelier.error", clip(error)));
        // Shown as the run's description in the MLflow UI.
        tags.push(KeyValue::new("mlflow.note.content", clip(error)));
        let now = now_ms();
        let name = format!(
            "failed-{}-{}",
            ctx.trigger.as_str(),
            crate::model::artifact::compact_utc(u64::try_from(now / 1000).unwrap_or_default())
        );
        let run = step(
            "create_run",
            self.client
                .create_run(&experiment.experiment_id, &name, now, &tags)
                .await,
        )?;
        optional_step(
            "log_batch",
            self.client
                .log_batch(&run.run_id, &params(ctx), &[], &[])
                .await,
        )?;
        step(
            "end_run",
            self.client.end_run(&run.run_id, "FAILED", now_ms()).await,
        )?;
        tracing::info!(run_id = %run.run_id, "failed training recorded in MLflow");
        Ok(())
    }

    async fn champion_moved(&self, version: &str) -> Result<(), Abandoned> {
        let tagged = format!(
            "name = {} AND tags.`{TAG_MODEL_VERSION}` = {}",
            quoted(&self.model_name),
            quoted(version)
        );
        let found = match self.client.search_model_versions(&tagged).await {
            Ok(found) => found,
            // Servers that cannot filter on tags: filter by name, check tags here.
            Err(error) if error.code() == Some("INVALID_PARAMETER_VALUE") => step(
                "search",
                self.client
                    .search_model_versions(&format!("name = {}", quoted(&self.model_name)))
                    .await,
            )?,
            Err(error) => {
                failed("search", &error);
                return Err(Abandoned);
            }
        };
        let target = found
            .into_iter()
            .filter(|v| v.tag(TAG_MODEL_VERSION) == Some(version))
            .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0));
        let Some(target) = target else {
            failed(
                "set_alias",
                &MlflowError::Unsupported(format!(
                    "no version of registered model `{}` is tagged {TAG_MODEL_VERSION}={version}; \
                     the `{CHAMPION_ALIAS}` alias was not moved",
                    self.model_name
                )),
            );
            return Err(Abandoned);
        };
        step(
            "set_alias",
            self.client
                .set_alias(&self.model_name, CHAMPION_ALIAS, &target.version)
                .await,
        )?;
        tracing::info!(model = %self.model_name, model_version = %target.version, %version, "MLflow champion alias moved");
        Ok(())
    }

    async fn run_ids(&self, versions: &[String]) -> HashMap<String, String> {
        let mut found = HashMap::new();
        if versions.is_empty() {
            return found;
        }
        // Reading must not create the experiment.
        let experiment = match self.client.experiment_by_name(&self.experiment_name).await {
            Ok(Some(experiment)) => experiment,
            Ok(None) => return found,
            Err(error) => {
                failed("search", &error);
                return found;
            }
        };
        // MLflow filters cannot match a list of run names or tag values: page through the
        // finished runs, newest first, until every version is found.
        let mut token: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let page = match self
                .client
                .search_runs(
                    &experiment.experiment_id,
                    "attributes.status = 'FINISHED'",
                    500,
                    token.as_deref(),
                )
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    failed("search", &error);
                    break;
                }
            };
            for run in &page.runs {
                let version = run
                    .tag(TAG_MODEL_VERSION)
                    .or(run.info.run_name.as_deref())
                    .unwrap_or_default();
                if versions.iter().any(|v| v == version) && !found.contains_key(version) {
                    found.insert(version.to_string(), run.info.run_id.clone());
                }
            }
            token = page.next_page_token.filter(|t| !t.is_empty());
            if found.len() >= versions.len() || token.is_none() {
                break;
            }
        }
        found
    }

    /// Tags every run carries.
    fn run_tags(&self, ctx: &TrainingContext) -> Vec<KeyValue> {
        let mut tags = vec![
            KeyValue::new("sommelier.trigger", ctx.trigger.as_str()),
            KeyValue::new("sommelier.data_sha256", &ctx.data_sha256),
            KeyValue::new("sommelier.data_source", clip(&ctx.source.name)),
            KeyValue::new("sommelier.software_version", SOMMELIER_VERSION),
            KeyValue::new("mlflow.source.name", "sommelier"),
            KeyValue::new("mlflow.source.type", "JOB"),
        ];
        if let Some(etag) = &ctx.source.etag {
            tags.push(KeyValue::new("sommelier.data_etag", etag));
        }
        if let Some(commit) = &self.git_commit {
            tags.push(KeyValue::new("mlflow.source.git.commit", commit));
        }
        tags
    }
}

/// Parameters of a training: algorithm, hyperparameters (with the seed), holdout and rows.
fn params(ctx: &TrainingContext) -> Vec<KeyValue> {
    let mut params = vec![KeyValue::new("algorithm", ctx.spec.algorithm().name())];
    params.extend(
        ctx.spec
            .parameters()
            .into_iter()
            .map(|(name, value)| KeyValue::new(name, value)),
    );
    params.push(KeyValue::new("holdout", ctx.holdout.to_string()));
    params.push(KeyValue::new("rows", ctx.rows.to_string()));
    params
}

/// Logs and counts a failed call.
fn failed(operation: &'static str, error: &MlflowError) {
    if let Some(counter) = FAILURES.as_ref() {
        counter.with_label_values(&[operation]).inc();
    }
    tracing::warn!(operation, %error, "MLflow tracking call failed; continuing without it");
}

/// Runs one part of a recording until `deadline`: `None` if it was abandoned (already logged
/// and counted) or ran out of time.
async fn within<T>(
    deadline: tokio::time::Instant,
    part: impl std::future::Future<Output = Result<T, Abandoned>>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, part).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(Abandoned)) => None,
        Err(_) => {
            failed("deadline", &MlflowError::Timeout(OPERATION_BUDGET));
            None
        }
    }
}

/// A step the rest of the sequence needs.
fn step<T>(operation: &'static str, result: Result<T, MlflowError>) -> Result<T, Abandoned> {
    result.map_err(|error| {
        failed(operation, &error);
        Abandoned
    })
}

/// A step the sequence can do without, unless the server is gone altogether.
fn optional_step(
    operation: &'static str,
    result: Result<(), MlflowError>,
) -> Result<(), Abandoned> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            failed(operation, &error);
            if error.is_unreachable() {
                Err(Abandoned)
            } else {
                Ok(())
            }
        }
    }
}

/// A string literal in MLflow's filter syntax.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "\\'"))
}

fn clip(text: &str) -> String {
    mlflow::truncate(text, MAX_TAG_CHARS)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::algorithm::{Algorithm, SpecOverrides};

    #[test]
    fn params_name_the_algorithm_its_hyperparameters_and_the_data() {
        let ctx = TrainingContext {
            trigger: Trigger::Cli,
            source: DataSource {
                name: "wine.csv".into(),
                etag: None,
            },
            holdout: 0.2,
            spec: ModelSpec::build(Algorithm::ExtraTrees, &SpecOverrides::default()).unwrap(),
            rows: 1599,
            data_sha256: "ab".into(),
        };
        let params: HashMap<String, String> =
            params(&ctx).into_iter().map(|p| (p.key, p.value)).collect();
        assert_eq!(params["algorithm"], "extra-trees");
        assert_eq!(params["seed"], "42");
        assert_eq!(params["holdout"], "0.2");
        assert_eq!(params["rows"], "1599");
        assert!(params.contains_key("n_trees"));
    }

    #[test]
    fn filter_literals_escape_quotes() {
        assert_eq!(quoted("a'b"), "'a\\'b'");
    }

    #[tokio::test]
    async fn a_disabled_tracker_does_nothing() {
        let tracker = Tracker::new(None, "dir");
        assert!(!tracker.is_enabled());
        assert!(tracker.run_ids(&["v".into()]).await.is_empty());
    }
}
