//! The command line: `sommelier train | evaluate | predict | models | serve`.
//! Each command prints readable text, or one JSON object with `--json`.

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
use crate::model::dataset::{read_features, read_labelled, read_training_data, DatasetError};
use crate::model::features::FEATURE_NAMES;
use crate::model::input::{row_from_json, InputError};
use crate::model::metrics::Metrics;
use crate::model::split::DEFAULT_SPLIT_KEY;
use crate::model::training::{
    cross_validate, evaluate, CrossValidation, TrainError, TrainOptions, Trigger, DEFAULT_HOLDOUT,
};
use crate::registry::{Registry, RegistryError, VersionEntry};
use crate::retraining::{train_and_publish, PromotionPolicy, RetrainError};
use crate::stores::{open_registry, OpenStoreError};
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
    /// CSV with a header, or JSON lines (one object per line); `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub data: PathBuf,
    /// Version to use [default: the champion].
    #[arg(long)]
    pub version: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
    /// Also download and decode every version's model and report any that fails (the
    /// listing alone compares stored lengths with the cards, downloading nothing).
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
    #[error(transparent)]
    Export(#[from] crate::model::explain_export::ExportError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
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
    let settings = Settings::from_env(cli.store.as_deref())?;
    let output = Output { json: cli.json };
    match cli.command {
        Command::Train(args) => train(&settings, args, output).await,
        Command::Evaluate(args) => evaluate_command(&settings, args, output).await,
        Command::Predict(args) => predict(&settings, args, output).await,
        Command::Models(args) => models(&settings, args, output).await,
        Command::Serve(args) => Ok(crate::server::run(settings, args.port).await?),
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
        Some(path) => read_training_data(open_input(path)?),
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
    let cv = match args.cv {
        Some(folds) => Some(run_cross_validation(&dataset, &spec, folds, args.seed, output).await?),
        None => None,
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
    let policy = PromotionPolicy {
        tolerance: args.tolerance.unwrap_or(settings.promotion_tolerance),
        min_comparable_rows: args
            .min_comparable_rows
            .unwrap_or(settings.min_comparable_rows),
        force: args.force,
        keep_versions: settings.keep_versions,
        max_label_shift: settings.max_label_shift,
    };
    let bar = spinner(
        output.progress(),
        format!(
            "training {} on {} rows",
            args.algorithm.name(),
            dataset.rows.len()
        ),
    );
    let context = TrainingContext::new(&options, &dataset);
    let retrained = train_and_publish(&registry, dataset, options, policy).await;
    bar.finish_and_clear();
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
    let metrics = evaluate(&model, &dataset).map_err(|e| CliError::Predict(e.to_string()))?;
    let value = json!({
        "rmse": metrics.rmse, "mae": metrics.mae, "r2": metrics.r2,
        "within_0_5": metrics.within_0_5, "within_1_0": metrics.within_1_0,
        "rows": metrics.rows, "version": model.card.version,
    });
    output.print(&value, || {
        format!(
            "Model {} on {} rows: {}",
            model.card.version,
            metrics.rows,
            metrics_line(&metrics)
        )
    });
    Ok(())
}

async fn predict(settings: &Settings, args: PredictArgs, output: Output) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    let model = load_model(&registry, args.version.as_deref()).await?;
    let path = args.data.display().to_string();
    let mut input = BufReader::new(open_input(&args.data)?);
    let rows = if starts_with_json_object(&mut input).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })? {
        read_json_lines(input, &path)?
    } else {
        read_features(input)
            .map_err(|source| CliError::Data {
                path: path.clone(),
                source,
            })?
            .rows
    };
    let predictions = model
        .predict(&rows)
        .map_err(|e| CliError::Predict(e.to_string()))?;
    let coverage = settings.interval_coverage;
    if output.json {
        let mut value = json!({"predictions": predictions, "version": model.card.version});
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
    let mut stdout = std::io::stdout().lock();
    for (row, prediction) in rows.iter().zip(&predictions) {
        let mut line = json!({"prediction": prediction, "out_of_range": model.out_of_range(row)});
        if let Some(interval) = model.interval(*prediction, coverage) {
            line["interval"] = json!(interval);
        }
        let _ = writeln!(stdout, "{line}");
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
) -> Result<Vec<crate::model::features::FeatureRow>, CliError> {
    let mut rows = Vec::new();
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
        rows.push(row_from_json(&value).map_err(|e| fail(e.into()))?.row);
    }
    Ok(rows)
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
    let value = json!({
        "champion": champion,
        "store": registry.store_location(),
        "verified": args.verify,
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
        models_table(&registry, &entries, champion.as_deref(), &run_ids)
    });
    Ok(())
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
