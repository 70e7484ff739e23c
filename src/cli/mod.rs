//! The command line: `sommelier train | evaluate | predict | models | serve`.
//! Each command prints readable text, or one JSON object with `--json`.

mod evaluate;
mod feedback;
mod models;
mod predict;
mod progress;
mod train;

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use thiserror::Error;

use crate::config::{ConfigError, Settings};
use crate::model::algorithm::{Algorithm, SpecError, DEFAULT_SEED};
use crate::model::artifact::ModelArtifact;
use crate::model::dataset::DatasetError;
use crate::model::features::FEATURE_NAMES;
use crate::model::input::InputError;

use crate::model::training::{TrainError, DEFAULT_HOLDOUT};
use crate::registry::OpenStoreError;
use crate::registry::{Registry, RegistryError};
use crate::retraining::RetrainError;

/// Wine-quality models: train, evaluate, version and serve them, locally or as an Azure
/// Functions custom handler.
#[derive(Debug, Parser)]
#[command(name = "sommelier", version, about, long_about = None)]
pub struct Cli {
    /// Model registry: a directory or a blob container URL [default: .sommelier]
    #[arg(long, global = true, value_name = "DIR|URL", env = "SOMMELIER_STORE")]
    pub store: Option<String>,
    /// Print one JSON object instead of text (and no progress display); not for `serve`,
    /// which writes log lines.
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
    #[arg(long, value_parser = share_from_0_to_1, value_name = "SHARE")]
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

/// A share from 0 to 1, as `SOMMELIER_PROMOTION_TOLERANCE` takes it: a negative or larger
/// tolerance would turn the promotion gate into a rubber stamp.
fn share_from_0_to_1(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("`{text}` is not a number from 0 to 1")),
    }
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
        source: JsonLineError,
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
    #[error("model version `{0}` not found: `sommelier models` lists the stored versions")]
    UnknownVersion(String),
    #[error("no model registry in {0}: `--store` (or SOMMELIER_STORE) must name the store the server uses, whose prediction log and labels the join reads")]
    NoRegistry(String),
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
                source: JsonLineError::Input(error),
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
pub enum JsonLineError {
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
    // A blank `SOMMELIER_STORE` counts as unset, as every blank setting does.
    let store = cli
        .store
        .as_deref()
        .filter(|store| !store.trim().is_empty());
    let settings = Settings::from_env(store)?;
    let output = Output { json: cli.json };
    match cli.command {
        Command::Train(args) => train::train(&settings, args, output).await,
        Command::Evaluate(args) => evaluate::evaluate_command(&settings, args, output).await,
        Command::Predict(args) => predict::predict(&settings, args, output).await,
        Command::Models(args) => models::models(&settings, args, output).await,
        Command::Serve(args) => {
            let listener = crate::server::bind(&settings, args.port).await?;
            Ok(crate::server::run(listener, settings, crate::server::shutdown_signal()).await?)
        }
        Command::Feedback(args) => feedback::run_command(&settings, args, cli.json).await,
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

/// The feature names, for help texts.
pub fn feature_list() -> String {
    FEATURE_NAMES.join(", ")
}
