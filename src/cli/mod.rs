//! The command line: `sommelier train | evaluate | predict | models | serve`.
//! Each command prints readable text, or one JSON object with `--json`.

mod feedback;

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use thiserror::Error;

use crate::bundled;
use crate::config::{ConfigError, Settings};
use crate::model::algorithm::{Algorithm, ModelSpec, SpecError, SpecOverrides, DEFAULT_SEED};
use crate::model::artifact::{DataSource, ModelArtifact};
use crate::model::dataset::{
    read_features_keeping, read_labelled, read_training_data, Dataset, DatasetError, FeatureTable,
};
use crate::model::features::FEATURE_NAMES;
use crate::model::input::{row_from_json, InputError};
use crate::model::metrics::Metrics;
use crate::model::progress;
use crate::model::split::HashName;
use crate::model::split::DEFAULT_SPLIT_KEY;
use crate::model::training::{
    cross_validate, CrossValidation, TrainError, TrainOptions, Trigger, DEFAULT_HOLDOUT,
};
use crate::registry::{open_registry, OpenStoreError};
use crate::registry::{Registry, RegistryError, VersionEntry};
use crate::retraining::{
    identical_champion, train_and_publish, PromotionPolicy, RetrainError, Unchanged,
};
use crate::tracking::{Tracker, TrainingContext};

/// Wine-quality models: train, evaluate, version and serve them, locally or as an Azure
/// Functions custom handler.
#[derive(Debug, Parser)]
#[command(name = "sommelier", version, about, long_about = None)]
pub struct Cli {
    /// Model registry: a directory or a blob container URL [env: SOMMELIER_STORE] [default: .sommelier]
    #[arg(long, global = true, value_name = "DIR|URL")]
    pub store: Option<String>,
    /// Print one JSON object instead of text (and no progress display).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model, evaluate it on a holdout, store it as a new version, and promote it to
    /// champion if it is at least as good as the current one.
    Train(TrainArgs),
    /// Score the champion (or a given version) on a labelled CSV.
    Evaluate(EvaluateArgs),
    /// Predict quality for each row of a CSV or JSON-lines file (`-` reads standard input).
    Predict(PredictArgs),
    /// List model versions with their metrics, or promote one (rollback).
    Models(ModelsArgs),
    /// Run the HTTP server (the Azure Functions custom handler).
    Serve(ServeArgs),
    /// Join labels to logged predictions, or show what the last join found.
    Feedback(feedback::FeedbackArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled CSV with the 11 features and `quality` (`-` for standard input)
    /// [default: the bundled UCI red-wine data].
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Learning algorithm.
    #[arg(long, value_enum, default_value = "extra-trees")]
    pub algorithm: Algorithm,
    /// Trees in the ensemble (forests) [default: 100].
    #[arg(long, value_name = "N")]
    pub trees: Option<usize>,
    /// Features tried at each split, 1 to 11 (forests) [default: 5 for extra-trees, 2 for random-forest].
    #[arg(long, value_name = "M")]
    pub max_features: Option<usize>,
    /// Most levels per tree (forests): a prediction walks each tree for its depth, so this
    /// caps the cost of the most expensive row; 0 removes the bound [default: 16].
    #[arg(long, value_name = "D")]
    pub max_depth: Option<u16>,
    /// Minimum rows in a leaf (forests) [default: 2 for extra-trees, 1 for random-forest].
    #[arg(long, value_name = "N")]
    pub min_samples_leaf: Option<usize>,
    /// Minimum rows to split a node (forests) [default: 2].
    #[arg(long, value_name = "N")]
    pub min_samples_split: Option<usize>,
    /// Most leaves per tree (forests): leaves grow with the data to stay within it, which
    /// bounds the model's size; 0 removes the bound [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_leaves: Option<usize>,
    /// Regularisation strength (elastic-net) [default: 0.2].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// L1 share of the penalty, 0 to 1 (elastic-net) [default: 0.1].
    #[arg(long)]
    pub l1_ratio: Option<f64>,
    /// Random seed of the forest and of the cross-validation folds. (The holdout does not
    /// depend on it: a row is held out by a hash of its feature values, the same for every
    /// model, so that models stay comparable.)
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Share of rows held out for evaluation, chosen by a hash of each row's feature values
    /// (identical rows always fall on the same side); 0 trains on every row and skips
    /// evaluation, and such a model can later not be compared with a challenger.
    #[arg(long, default_value_t = DEFAULT_HOLDOUT, value_name = "FRACTION")]
    pub holdout: f64,
    /// Also run K-fold cross-validation and report mean ± sd; identical feature rows are kept
    /// in one fold.
    #[arg(long, value_name = "K")]
    pub cv: Option<usize>,
    /// Relative RMSE slack for promotion [env: SOMMELIER_PROMOTION_TOLERANCE] [default: 0.01].
    /// Both models are scored on the rows that neither trained on; the new model is promoted
    /// when, with 95 % confidence (paired bootstrap), its RMSE is not worse than the
    /// champion's by more than this share.
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// The fewest rows unseen by both models for a fair comparison; with fewer, the champion
    /// stays unless --force [env: SOMMELIER_MIN_COMPARABLE_ROWS] [default: 30].
    #[arg(long, value_name = "N")]
    pub min_comparable_rows: Option<usize>,
    /// Promote the new model whatever its score.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Labelled CSV to score on (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Version to score [default: the champion].
    #[arg(long)]
    pub version: Option<String>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// CSV with a header (`,`, `;` or tab separated), or JSON lines (one object per line);
    /// `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub data: PathBuf,
    /// Version to use [default: the champion].
    #[arg(long)]
    pub version: Option<String>,
    /// Column (CSV) or field (JSON lines) carried through to each prediction as its `id`
    /// [default: a column named `id`, when there is one].
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Output: one JSON object per row (`jsonl`), or CSV with a header (`csv`). Each row
    /// carries its number (from 1), its id, the prediction and the features outside the
    /// model's training range. `--json` prints one object for all rows instead.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: PredictFormat,
}

/// How `predict` writes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
    /// Also download and decode every version's model, report any that fails, and exit
    /// non-zero when one does (the listing alone compares stored lengths with the cards,
    /// downloading nothing).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// List versions (the default).
    List,
    /// Make VERSION the champion (rollback or roll forward).
    Promote {
        /// The version to promote.
        version: String,
    },
    /// Show VERSION's card: metrics, calibration of its intervals, global importance.
    Show {
        /// The version to show [default: the champion].
        version: Option<String>,
    },
    /// Write VERSION's trees for other tools: `--format shap-json` is the custom tree model
    /// `shap.TreeExplainer` accepts (leaf values divided by the number of trees, covers as
    /// node_sample_weight).
    Export {
        /// The version to export [default: the champion].
        version: Option<String>,
        /// The export format.
        #[arg(long, value_enum, default_value = "shap-json")]
        format: ExportFormat,
        /// Where to write it (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Formats of `models export`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// shap's custom tree model, as JSON.
    ShapJson,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 [env: FUNCTIONS_CUSTOMHANDLER_PORT takes precedence] [default: 7071].
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] OpenStoreError),
    #[error("{path}: {source}")]
    Data { path: String, source: DatasetError },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {source}")]
    JsonLine {
        path: String,
        line: usize,
        source: InputErrorOrJson,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Retrain(#[from] RetrainError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("no champion model yet: run `sommelier train` first")]
    NoChampion,
    #[error("prediction failed: {0}")]
    Predict(String),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(
        "`serve` has no --json: it writes log lines (set SOMMELIER_LOG_FORMAT=json for JSON ones)"
    )]
    ServeHasNoJson,
    #[error("--json prints one JSON object; it cannot be combined with --format csv")]
    FormatConflict,
    #[error("{path}, line {line}: no field `{field}` for --id")]
    NoIdField {
        path: String,
        line: usize,
        field: String,
    },
    /// `models --verify` found broken versions (the listing already says which).
    #[error("{broken} of {total} versions cannot serve")]
    VerifyFailed { broken: usize, total: usize },
    #[error("{0}")]
    Feedback(String),
    #[error(transparent)]
    Export(#[from] crate::model::explain_export::ExportError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl CliError {
    /// The input column or field at fault, when there is one (the `field` of a JSON error).
    pub fn field(&self) -> Option<String> {
        match self {
            CliError::Data { source, .. } => match source {
                DatasetError::BadValue { column, .. }
                | DatasetError::CellTooLong { column, .. }
                | DatasetError::DuplicateColumn { column }
                | DatasetError::NoSuchColumn { column, .. } => Some(column.clone()),
                DatasetError::BadQuality { .. } => Some("quality".to_string()),
                DatasetError::MissingColumns { missing, .. } => missing.first().cloned(),
                _ => None,
            },
            CliError::JsonLine {
                source: InputErrorOrJson::Input(error),
                ..
            } => error.field().map(str::to_string),
            CliError::NoIdField { field, .. } => Some(field.clone()),
            _ => None,
        }
    }

    /// Whether the command already printed its answer (under `--json`, the one object), so
    /// that only the exit status is left to give.
    pub fn already_reported(&self) -> bool {
        matches!(self, CliError::VerifyFailed { .. })
    }

    /// The error as the one JSON object `--json` prints: `{"error": ..., "field": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": self.to_string(), "field": self.field()})
    }
}

/// A JSON line that is not JSON, or not a valid feature object.
#[derive(Debug, Error)]
pub enum InputErrorOrJson {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if matches!(cli.command, Command::Serve(_)) && cli.json {
        return Err(CliError::ServeHasNoJson);
    }
    let settings = Settings::from_env(cli.store.as_deref())?;
    let output = Output { json: cli.json };
    match cli.command {
        Command::Train(args) => train(&settings, args, output).await,
        Command::Evaluate(args) => evaluate_command(&settings, args, output).await,
        Command::Predict(args) => predict(&settings, args, output).await,
        Command::Models(args) => models(&settings, args, output).await,
        Command::Serve(args) => {
            let listener = crate::server::bind(&settings, args.port).await?;
            Ok(crate::server::run(listener, settings, crate::server::shutdown_signal()).await?)
        }
        Command::Feedback(args) => feedback::run(&settings, args, cli.json).await,
    }
}

#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn progress(self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    fn print(self, value: &serde_json::Value, text: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(stdout, "{value}")
        } else {
            writeln!(stdout, "{}", text())
        };
    }
}

/// Opens a file, or standard input for `-`.
fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, CliError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    File::open(path)
        .map(|f| Box::new(BufReader::new(f)) as Box<dyn Read + Send>)
        .map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })
}

fn spinner(enabled: bool, message: String) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

async fn train(settings: &Settings, args: TrainArgs, output: Output) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    // Before anything is read or fitted: a store that cannot take the result fails now.
    registry.check_writable().await?;
    let tracker = Tracker::from_settings(settings);
    let overrides = SpecOverrides {
        n_trees: args.trees,
        max_features: args.max_features,
        max_depth: args.max_depth,
        min_samples_leaf: args.min_samples_leaf,
        min_samples_split: args.min_samples_split,
        max_leaves: args.max_leaves,
        alpha: args.alpha,
        l1_ratio: args.l1_ratio,
        seed: Some(args.seed),
    };
    let spec = ModelSpec::build(args.algorithm, &overrides)?;
    let data_path = args
        .data
        .clone()
        .or_else(|| settings.training_data.clone().map(PathBuf::from));
    let source = data_path
        .as_ref()
        .map_or(bundled::SOURCE_NAME.to_string(), |p| {
            p.display().to_string()
        });
    let read = match &data_path {
        Some(path) => {
            let input = open_input(path)?;
            let shown = ProgressDisplay::start(output, Stage::Reading(source.clone()));
            let read = tokio::task::spawn_blocking(move || read_training_data(input))
                .await
                .map_err(|e| CliError::Predict(e.to_string()))?;
            shown.finish();
            read
        }
        None => read_training_data(bundled::WINE_QUALITY_RED_CSV),
    };
    let dataset = match read {
        Ok(dataset) => dataset,
        Err(error) => {
            let context = TrainingContext {
                trigger: Trigger::Cli,
                source: DataSource {
                    name: source.clone(),
                    etag: None,
                },
                holdout: args.holdout,
                spec,
                rows: 0,
                data_sha256: String::new(),
            };
            tracker.training_failed(&context, &error.to_string()).await;
            return Err(CliError::Data {
                path: source,
                source: error,
            });
        }
    };
    let options = TrainOptions {
        spec,
        holdout: args.holdout,
        split_key: DEFAULT_SPLIT_KEY,
        source: DataSource {
            name: source,
            etag: None,
        },
        trigger: Trigger::Cli,
    };
    if !args.force {
        if let Some(unchanged) = identical_champion(&registry, &dataset.sha256, &options).await? {
            print_unchanged(&unchanged, output);
            return Ok(());
        }
    }
    let cv = match args.cv {
        Some(folds) => Some(run_cross_validation(&dataset, &spec, folds, args.seed, output).await?),
        None => None,
    };
    let policy = PromotionPolicy {
        tolerance: args.tolerance.unwrap_or(settings.promotion_tolerance),
        min_comparable_rows: args
            .min_comparable_rows
            .unwrap_or(settings.min_comparable_rows),
        force: args.force,
        keep_versions: settings.keep_versions,
        max_label_shift: settings.max_label_shift,
    };
    progress::fit_started(0);
    let shown = ProgressDisplay::start(
        output,
        Stage::Fitting {
            algorithm: args.algorithm.name(),
            rows: dataset.rows.len(),
        },
    );
    let context = TrainingContext::new(&options, &dataset);
    let retrained = train_and_publish(&registry, dataset, options, policy).await;
    shown.finish();
    let retrained = match retrained {
        Ok(retrained) => retrained,
        Err(error) => {
            tracker.training_failed(&context, &error.to_string()).await;
            return Err(error.into());
        }
    };
    let run_id = tracker.training_succeeded(&context, &retrained).await;
    let report = retrained.report;

    let mut value = serde_json::to_value(&report).unwrap_or_default();
    value["status"] = json!("trained");
    if let Some(run_id) = &run_id {
        value["mlflow_run_id"] = json!(run_id);
    }
    if let Some(cv) = &cv {
        value["cv"] = serde_json::to_value(cv).unwrap_or_default();
    }
    output.print(&value, || {
        let mut text = format!(
            "Trained {} ({}) on {} of {} rows in {:.2} s",
            report.version,
            report.algorithm.name(),
            report.training_rows,
            report.rows,
            report.fit_seconds
        );
        if let Some(bytes) = report.peak_memory_bytes {
            text.push_str(&format!(", peak memory {:.0} MB", bytes as f64 / 1e6));
        }
        match &report.metrics {
            Some(m) => text.push_str(&format!("\nHoldout ({} rows): {}", m.rows, metrics_line(m))),
            None => text.push_str("\nNo holdout: trained on every row, not evaluated."),
        }
        if let Some(cv) = &cv {
            text.push_str(&format!("\n{}", cv_line(cv)));
        }
        if !report.ignored_columns.is_empty() {
            text.push_str(&format!(
                "\nIgnored columns: {}",
                report.ignored_columns.join(", ")
            ));
        }
        if let Some(run_id) = &run_id {
            text.push_str(&format!("\nMLflow run: {run_id}"));
        }
        text.push_str(&format!(
            "\n{}: {}\nChampion: {}",
            if report.promoted {
                "Promoted"
            } else {
                "Not promoted"
            },
            report.reason,
            report.champion.as_deref().unwrap_or("none")
        ));
        text
    });
    Ok(())
}

/// Reports a training that was not run: the champion already is its result.
fn print_unchanged(unchanged: &Unchanged, output: Output) {
    let mut value = serde_json::to_value(unchanged).unwrap_or_default();
    value["status"] = json!("unchanged");
    value["promoted"] = json!(false);
    value["version"] = json!(unchanged.champion);
    output.print(&value, || {
        format!(
            "Unchanged: champion {} was trained on this data with this recipe; nothing trained \
             or stored (--force trains anyway).",
            unchanged.champion
        )
    });
}

/// What a progress display shows.
enum Stage {
    Reading(String),
    Fitting {
        algorithm: &'static str,
        rows: usize,
    },
}

/// Seconds after which a training's display adds an estimate of the time left, and after
/// which (and then as often) a display that is not a terminal writes a line.
const ESTIMATE_AFTER: Duration = Duration::from_secs(3);
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A progress display on standard error while work runs: a live line on a terminal, a line
/// every few seconds otherwise, nothing under `--json`.
struct ProgressDisplay {
    ticker: Option<tokio::task::JoinHandle<()>>,
    bar: ProgressBar,
}

impl ProgressDisplay {
    fn start(output: Output, stage: Stage) -> ProgressDisplay {
        if output.json {
            return ProgressDisplay {
                ticker: None,
                bar: ProgressBar::hidden(),
            };
        }
        let terminal = output.progress();
        let bar = spinner(terminal, stage_message(&stage, Duration::ZERO));
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut next_line = LINE_EVERY;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = started.elapsed();
                let message = stage_message(&stage, elapsed);
                if terminal {
                    shown.set_message(message);
                } else if elapsed >= next_line {
                    next_line += LINE_EVERY;
                    eprintln!("{message}");
                }
            }
        });
        ProgressDisplay {
            ticker: Some(ticker),
            bar,
        }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// `training extra-trees on 1599 rows: 40/100 trees, about 6 s left`.
fn stage_message(stage: &Stage, elapsed: Duration) -> String {
    match stage {
        Stage::Reading(source) => format!("reading {source}: {} rows", progress::rows()),
        Stage::Fitting { algorithm, rows } => {
            let (done, total) = progress::trees();
            let mut text = format!("training {algorithm} on {rows} rows");
            if total > 0 {
                text.push_str(&format!(": {done}/{total} trees"));
                if elapsed >= ESTIMATE_AFTER {
                    if let Some(left) = progress::estimate(done, total, elapsed) {
                        text.push_str(&format!(", {}", progress::describe_left(left)));
                    }
                }
            }
            text
        }
    }
}

async fn run_cross_validation(
    dataset: &crate::model::dataset::Dataset,
    spec: &ModelSpec,
    folds: usize,
    seed: u64,
    output: Output,
) -> Result<CrossValidation, CliError> {
    let bar = if output.progress() {
        let bar = ProgressBar::new(folds as u64).with_message("cross-validating");
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] fold {pos}/{len} {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let dataset = dataset.clone();
    let spec = *spec;
    let ticker = bar.clone();
    let cv = tokio::task::spawn_blocking(move || {
        cross_validate(&dataset, &spec, folds, seed, |done| {
            ticker.set_position(done as u64)
        })
    })
    .await
    .map_err(|e| CliError::Predict(e.to_string()))?;
    bar.finish_and_clear();
    Ok(cv?)
}

fn metrics_line(m: &Metrics) -> String {
    format!(
        "RMSE {:.4}  MAE {:.4}  R² {:.4}  within ±0.5 {:.1}%  within ±1.0 {:.1}%",
        m.rmse,
        m.mae,
        m.r2,
        m.within_0_5 * 100.0,
        m.within_1_0 * 100.0
    )
}

fn cv_line(cv: &CrossValidation) -> String {
    format!(
        "Cross-validation ({} folds): RMSE {:.4} ± {:.4}  MAE {:.4} ± {:.4}  R² {:.4} ± {:.4}",
        cv.folds, cv.rmse.mean, cv.rmse.sd, cv.mae.mean, cv.mae.sd, cv.r2.mean, cv.r2.sd
    )
}

/// Loads `version`, or the champion.
async fn load_model(registry: &Registry, version: Option<&str>) -> Result<ModelArtifact, CliError> {
    let version = match version {
        Some(v) => v.to_string(),
        None => {
            registry
                .champion()
                .await?
                .ok_or(CliError::NoChampion)?
                .champion
                .version
        }
    };
    Ok(registry.load(&version).await?)
}

async fn evaluate_command(
    settings: &Settings,
    args: EvaluateArgs,
    output: Output,
) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    let model = load_model(&registry, args.version.as_deref()).await?;
    let path = args.data.display().to_string();
    let dataset =
        read_labelled(open_input(&args.data)?).map_err(|source| CliError::Data { path, source })?;
    let predictions = model
        .predict(&dataset.rows)
        .map_err(|e| CliError::Predict(e.to_string()))?;
    let metrics = Metrics::compute(&predictions, &dataset.targets);
    let overlap = Overlap::of(&model.card, &dataset, &predictions);
    let value = json!({
        "rmse": metrics.rmse, "mae": metrics.mae, "r2": metrics.r2,
        "within_0_5": metrics.within_0_5, "within_1_0": metrics.within_1_0,
        "rows": metrics.rows, "version": model.card.version,
        "training_side_rows": overlap.as_ref().map(|o| o.training_side),
        "unseen": overlap.as_ref().and_then(|o| o.unseen),
    });
    output.print(&value, || {
        let mut text = format!(
            "Model {} on {} rows: {}",
            model.card.version,
            metrics.rows,
            metrics_line(&metrics)
        );
        text.push_str(&match &overlap {
            None => "\nThis version's card records no split rule: whether it trained on these \
                     rows is unknown."
                .to_string(),
            Some(overlap) => overlap.describe(),
        });
        text
    });
    Ok(())
}

/// How the rows of an evaluation relate to the version's own training: the rows that its
/// split rule puts on the training side (it trained on them if they were in its training
/// data) and the metrics on the rest, which it never saw.
struct Overlap {
    training_side: usize,
    unseen: Option<Metrics>,
}

impl Overlap {
    /// `None` when the card records no split rule this build can apply.
    fn of(
        card: &crate::model::artifact::ModelCard,
        data: &Dataset,
        predictions: &[f64],
    ) -> Option<Overlap> {
        let rule = card.split.filter(|r| r.hash != HashName::Unknown)?;
        let (mut predicted, mut targets) = (Vec::new(), Vec::new());
        for ((row, &prediction), &target) in data.rows.iter().zip(predictions).zip(&data.targets) {
            if rule.holds_out(row) {
                predicted.push(prediction);
                targets.push(target);
            }
        }
        Some(Overlap {
            training_side: data.rows.len() - predicted.len(),
            unseen: (!predicted.is_empty()).then(|| Metrics::compute(&predicted, &targets)),
        })
    }

    fn describe(&self) -> String {
        if self.training_side == 0 {
            return "\nNone of these rows is on this version's training side: the figures \
                    above are on rows it never saw."
                .to_string();
        }
        let mut text = format!(
            "\n{} of these rows are on this version's training side of its split: it trained \
             on them if they were in its training data, so the figures above may flatter it.",
            self.training_side
        );
        text.push_str(&match &self.unseen {
            Some(m) => format!(
                "\nOn the other {} rows, which it never saw: {}",
                m.rows,
                metrics_line(m)
            ),
            None => "\nNo row is left that it never saw.".to_string(),
        });
        text
    }
}

async fn predict(settings: &Settings, args: PredictArgs, output: Output) -> Result<(), CliError> {
    if output.json && args.format == PredictFormat::Csv {
        return Err(CliError::FormatConflict);
    }
    let registry = open_registry(settings).await?;
    let model = load_model(&registry, args.version.as_deref()).await?;
    let path = args.data.display().to_string();
    let mut input = BufReader::new(open_input(&args.data)?);
    let table = if starts_with_json_object(&mut input).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })? {
        read_json_lines(input, &path, args.id.as_deref())?
    } else {
        let id = args.id.as_deref().unwrap_or("id");
        read_features_keeping(input, Some(id), args.id.is_some()).map_err(|source| {
            CliError::Data {
                path: path.clone(),
                source,
            }
        })?
    };
    let predictions = model
        .predict(&table.rows)
        .map_err(|e| CliError::Predict(e.to_string()))?;
    let coverage = settings.interval_coverage;
    let out_of_range: Vec<Vec<&str>> = table.rows.iter().map(|r| model.out_of_range(r)).collect();
    if output.json {
        let mut value = json!({
            "predictions": predictions, "model_version": model.card.version,
            "out_of_range": out_of_range, "rows": table.rows.len(),
            "ignored_columns": table.ignored_columns,
        });
        if let Some(ids) = &table.kept {
            value["ids"] = json!(ids);
        }
        if model.conformal.is_some() {
            let intervals: Vec<_> = predictions
                .iter()
                .filter_map(|&p| model.interval(p, coverage))
                .collect();
            value["intervals"] = json!(intervals);
            value["interval_coverage"] = json!(coverage);
        }
        output.print(&value, String::new);
        return Ok(());
    }
    if !table.ignored_columns.is_empty() {
        eprintln!("ignored columns: {}", table.ignored_columns.join(", "));
    }
    let id = |i: usize| table.kept.as_ref().map(|ids| ids[i].as_str());
    let mut stdout = std::io::stdout().lock();
    match args.format {
        PredictFormat::Jsonl => {
            for (i, (prediction, outside)) in predictions.iter().zip(&out_of_range).enumerate() {
                let mut line =
                    json!({"row": i + 1, "prediction": prediction, "out_of_range": outside});
                if let Some(id) = id(i) {
                    line["id"] = json!(id);
                }
                if let Some(interval) = model.interval(*prediction, coverage) {
                    line["interval"] = json!(interval);
                }
                let _ = writeln!(stdout, "{line}");
            }
        }
        PredictFormat::Csv => {
            let mut writer = csv::Writer::from_writer(stdout);
            let mut header = vec!["row"];
            if table.kept.is_some() {
                header.push("id");
            }
            header.extend(["prediction", "out_of_range", "model_version"]);
            let mut write = |record: Vec<String>| writer.write_record(&record);
            let mut result = write(header.iter().map(|h| h.to_string()).collect());
            for (i, (prediction, outside)) in predictions.iter().zip(&out_of_range).enumerate() {
                let mut record = vec![(i + 1).to_string()];
                if let Some(id) = id(i) {
                    record.push(id.to_string());
                }
                record.extend([
                    prediction.to_string(),
                    outside.join(" "),
                    model.card.version.clone(),
                ]);
                result = result.and_then(|()| write(record));
            }
            result
                .and_then(|()| writer.flush().map_err(csv::Error::from))
                .map_err(|e| CliError::Predict(format!("cannot write the CSV: {e}")))?;
        }
    }
    Ok(())
}

/// Peeks at the first non-blank byte: `{` means JSON lines.
fn starts_with_json_object(input: &mut impl std::io::BufRead) -> std::io::Result<bool> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(false);
        }
        let blanks = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        if blanks < buffer.len() {
            return Ok(buffer[blanks] == b'{');
        }
        input.consume(blanks);
    }
}

fn read_json_lines(
    input: impl std::io::BufRead,
    path: &str,
    id: Option<&str>,
) -> Result<FeatureTable, CliError> {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let id_field = id.unwrap_or("id");
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|source| CliError::Read {
            path: path.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |source| CliError::JsonLine {
            path: path.to_string(),
            line: index + 1,
            source,
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| fail(InputErrorOrJson::Json(e.to_string())))?;
        let parsed = row_from_json(&value).map_err(|e| fail(e.into()))?;
        match value.get(id_field) {
            Some(serde_json::Value::String(text)) => ids.push(Some(text.clone())),
            Some(serde_json::Value::Null) | None => ids.push(None),
            Some(other) => ids.push(Some(other.to_string())),
        }
        if id.is_some() && ids.last().is_some_and(Option::is_none) {
            return Err(CliError::NoIdField {
                path: path.to_string(),
                line: index + 1,
                field: id_field.to_string(),
            });
        }
        for name in parsed.unknown_fields {
            if name != id_field && !ignored.contains(&name) && ignored.len() < 64 {
                ignored.push(name);
            }
        }
        rows.push(parsed.row);
    }
    let kept = ids
        .iter()
        .any(Option::is_some)
        .then(|| ids.into_iter().map(Option::unwrap_or_default).collect());
    Ok(FeatureTable {
        rows,
        ignored_columns: ignored,
        kept,
    })
}

async fn models(settings: &Settings, args: ModelsArgs, output: Output) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    let tracker = Tracker::from_settings(settings);
    match args.action {
        Some(ModelsAction::Promote { version }) => {
            return promote(&registry, &tracker, &version, output).await
        }
        Some(ModelsAction::Show { version }) => {
            let model = load_model(&registry, version.as_deref()).await?;
            return show(&model, output);
        }
        Some(ModelsAction::Export {
            version,
            format: ExportFormat::ShapJson,
            output: path,
        }) => {
            let model = load_model(&registry, version.as_deref()).await?;
            return export(&model, &path, output);
        }
        Some(ModelsAction::List) | None => {}
    }
    let champion = registry.champion().await?.map(|p| p.champion.version);
    let mut entries = registry.versions().await?;
    if args.verify {
        entries = registry.verify_versions(entries).await?;
    }
    let run_ids = if tracker.is_enabled() {
        tracker
            .run_ids(
                &entries
                    .iter()
                    .map(|e| e.version.clone())
                    .collect::<Vec<_>>(),
            )
            .await
    } else {
        Default::default()
    };
    let broken: Vec<&str> = entries
        .iter()
        .filter(|e| e.problem().is_some())
        .map(|e| e.version.as_str())
        .collect();
    let value = json!({
        "champion": champion,
        "store": registry.store_location(),
        "verified": args.verify,
        "broken": broken,
        "versions": entries.iter().map(|e| {
            let is_champion = Some(&e.version) == champion.as_ref();
            match &e.card {
                Ok(c) => json!({
                    "version": c.version, "algorithm": c.spec.algorithm(), "created_at": c.created_at,
                    "metrics": c.metrics, "training_rows": c.training_rows, "trigger": c.trigger,
                    "source": c.source, "champion": is_champion,
                    "mlflow_run_id": run_ids.get(&c.version), "problem": e.artifact_problem,
                    "artifact": e.artifact,
                }),
                Err(problem) => json!({
                    "version": e.version, "champion": is_champion, "problem": problem,
                    "mlflow_run_id": run_ids.get(&e.version),
                }),
            }
        }).collect::<Vec<_>>(),
    });
    output.print(&value, || {
        let mut text = models_table(&registry, &entries, champion.as_deref(), &run_ids);
        if args.verify {
            text.push_str(&verify_summary(entries.len(), &broken));
        }
        text
    });
    if args.verify && !broken.is_empty() {
        return Err(CliError::VerifyFailed {
            broken: broken.len(),
            total: entries.len(),
        });
    }
    Ok(())
}

/// The last line of `models --verify`: how many versions were checked and which cannot serve.
fn verify_summary(total: usize, broken: &[&str]) -> String {
    if broken.is_empty() {
        format!("\nVerified {total} versions: every one loads and predicts.")
    } else {
        format!(
            "\nVerified {total} versions: {} cannot serve: {}",
            broken.len(),
            broken.join(", ")
        )
    }
}

/// `models show VERSION`: the card, with its calibration and global importance.
fn show(model: &ModelArtifact, output: Output) -> Result<(), CliError> {
    let card = &model.card;
    let value = serde_json::to_value(card).unwrap_or_default();
    output.print(&value, || {
        let mut text = format!(
            "Model {} ({}), trained {} on {} rows of {}",
            card.version,
            card.spec.algorithm().name(),
            card.created_at,
            card.training_rows,
            card.source.name
        );
        match &card.metrics {
            Some(m) => text.push_str(&format!("\nHoldout ({} rows): {}", m.rows, metrics_line(m))),
            None => text.push_str("\nNo holdout: not evaluated."),
        }
        match &card.calibration {
            Some(c) => {
                let widths: Vec<String> = c
                    .quantiles
                    .iter()
                    .map(|q| {
                        let width = q
                            .half_width
                            .map_or("unbounded".to_string(), |h| format!("±{h:.3}"));
                        format!("{:.0} % {width}", q.coverage * 100.0)
                    })
                    .collect();
                text.push_str(&format!(
                    "\nIntervals ({}, {} held-out rows): {}",
                    c.method,
                    c.rows,
                    widths.join(", ")
                ));
            }
            None => {
                text.push_str("\nIntervals: none (trained before intervals, or without a holdout)")
            }
        }
        match &card.importance {
            Some(importance) => {
                text.push_str(&format!(
                    "\nGlobal importance (mean |contribution| over {} held-out rows):",
                    importance.rows
                ));
                for entry in &importance.features {
                    text.push_str(&format!(
                        "\n  {:<22} {:.4}",
                        entry.feature, entry.mean_abs_contribution
                    ));
                }
            }
            None => text.push_str(
                "\nGlobal importance: none (trained before explanations, or without a holdout)",
            ),
        }
        text
    });
    Ok(())
}

/// `models export VERSION --format shap-json --output FILE`.
fn export(model: &ModelArtifact, path: &Path, output: Output) -> Result<(), CliError> {
    let export = crate::model::explain_export::shap_export(model)?;
    let failed = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec(&export).map_err(|e| failed(e.into()))?;
    if path.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&bytes).map_err(failed)?;
        return Ok(());
    }
    std::fs::write(path, &bytes).map_err(failed)?;
    let value = json!({
        "version": model.card.version, "format": "shap-json", "output": path.display().to_string(),
        "trees": export.trees.len(), "base_value": export.base_value,
    });
    output.print(&value, || {
        format!(
            "Wrote {} trees of {} to {} (shap-json, base value {:.6})",
            export.trees.len(),
            model.card.version,
            path.display(),
            export.base_value
        )
    });
    Ok(())
}

/// `models promote VERSION`: refused unless the version loads and serves; then the pointer
/// moves and so does MLflow's `champion` alias (when tracking is on).
async fn promote(
    registry: &Registry,
    tracker: &Tracker,
    version: &str,
    output: Output,
) -> Result<(), CliError> {
    let pointer = registry.promote(version).await?;
    tracker.champion_moved(&pointer.champion.version).await;
    let value =
        json!({"champion": pointer.champion.version, "previous": pointer.champion.previous});
    output.print(&value, || {
        format!(
            "Champion is now {} (was {})",
            pointer.champion.version,
            pointer.champion.previous.as_deref().unwrap_or("none")
        )
    });
    Ok(())
}

fn models_table(
    registry: &Registry,
    entries: &[VersionEntry],
    champion: Option<&str>,
    run_ids: &std::collections::HashMap<String, String>,
) -> String {
    if entries.is_empty() {
        return format!(
            "No models in {} yet: run `sommelier train`.",
            registry.store_location()
        );
    }
    let mut text = format!(
        "  {:<28} {:<14} {:>8} {:>8} {:>8} {:>6}  {:<20}  source",
        "version", "algorithm", "rmse", "mae", "r2", "rows", "created"
    );
    for entry in entries {
        let mark = if Some(entry.version.as_str()) == champion {
            "*"
        } else {
            " "
        };
        let c = match &entry.card {
            Ok(card) => card,
            Err(problem) => {
                text.push_str(&format!("\n{mark} {:<28} BROKEN: {problem}", entry.version));
                continue;
            }
        };
        let (rmse, mae, r2) = c.metrics.map_or(("-".into(), "-".into(), "-".into()), |m| {
            (
                format!("{:.4}", m.rmse),
                format!("{:.4}", m.mae),
                format!("{:.4}", m.r2),
            )
        });
        text.push_str(&format!(
            "\n{mark} {:<28} {:<14} {:>8} {:>8} {:>8} {:>6}  {:<20}  {}",
            c.version,
            c.spec.algorithm().name(),
            rmse,
            mae,
            r2,
            c.training_rows,
            c.created_at,
            c.source.name
        ));
        if let Some(run_id) = run_ids.get(&c.version) {
            text.push_str(&format!("  mlflow run {run_id}"));
        }
        if let Some(problem) = &entry.artifact_problem {
            text.push_str(&format!("\n  {:<28} BROKEN: {problem}", ""));
        }
    }
    text.push_str("\n(* champion)");
    text
}

/// The feature names, for help texts.
pub fn feature_list() -> String {
    FEATURE_NAMES.join(", ")
}
