//! Every setting sommelier reads, read once into a typed struct from one declaration
//! ([`Settings::from_lookup`]; [`Settings::from_env`] reads the process environment). The
//! names are documented in local.settings.json.example and the README; the defaults are
//! named in [`defaults`]. Nothing else in the crate reads the environment.
//!
//! This module is the bottom layer: it imports nothing else of the crate.

pub mod defaults;
mod feedback;
mod serving;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use feedback::FeedbackSettings;
pub use serving::ServingLimits;
use source::Source;

/// Where models live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreLocation {
    Directory(PathBuf),
    /// A blob container URL (`https://acct.blob.core.windows.net/models` or an Azurite URL).
    BlobContainer(String),
}

impl StoreLocation {
    pub fn parse(text: &str) -> StoreLocation {
        let trimmed = text.trim();
        if trimmed.starts_with("https://") || trimmed.starts_with("http://") {
            StoreLocation::BlobContainer(trimmed.trim_end_matches('/').to_string())
        } else {
            StoreLocation::Directory(PathBuf::from(trimmed))
        }
    }
}

/// Metric push target.
#[derive(Debug, Clone, PartialEq)]
pub struct PushSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub interval: Duration,
    /// `SOMMELIER_PUSH_STALE_GROUP_SECONDS`: an instance's group not pushed for this long is
    /// deleted by any running instance (`None`: never). An instance stopped without a signal
    /// (killed, crashed, scaled in by the platform) cannot delete its own group, and the
    /// Pushgateway never forgets one.
    pub stale_group_after: Option<Duration>,
}

/// MLflow tracking target, from MLflow's own variables.
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowSettings {
    pub tracking_uri: String,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub experiment_name: String,
    pub model_name: String,
}

/// The settings, typed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub store: StoreLocation,
    pub storage_connection_string: Option<String>,
    /// `SOMMELIER_STORAGE_CA_FILE`: extra trusted CA certificates (PEM) for the Blob Storage
    /// endpoint, e.g. a local emulator over HTTPS with a private CA. The system roots stay
    /// trusted. Unset in Azure.
    pub storage_ca_file: Option<PathBuf>,
    pub identity_client_id: Option<String>,
    /// `None`: the bundled data (or, with a blob store, the newest upload).
    pub training_data: Option<String>,
    pub model_refresh: Duration,
    pub promotion_tolerance: f64,
    /// `SOMMELIER_MIN_COMPARABLE_ROWS`: the fewest rows unseen by both models on which a
    /// challenger may be compared with the champion.
    pub min_comparable_rows: usize,
    pub keep_versions: usize,
    /// `SOMMELIER_MAX_LABEL_SHIFT`: label PSI against the champion above which a challenger
    /// is stored but not promoted.
    pub max_label_shift: f64,
    pub max_batch_rows: usize,
    /// `SOMMELIER_MAX_EXPLAIN_ROWS`: the most rows one `/api/explain` request may explain.
    pub max_explain_rows: usize,
    /// `SOMMELIER_INTERVAL_COVERAGE`: the share of true qualities prediction intervals are
    /// calibrated to contain.
    pub interval_coverage: f64,
    pub push: Option<PushSettings>,
    pub mlflow: Option<MlflowSettings>,
    pub json_logs: bool,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, set by the Functions host.
    pub handler_port: Option<u16>,
    /// `WEBSITE_INSTANCE_ID` or the host name: this instance's metrics grouping key.
    pub instance_id: String,
    /// Whether the Functions host in Azure runs this process (it announces itself through
    /// `WEBSITE_*` variables). Locally, state-changing routes accept only loopback requests.
    pub under_functions_host: bool,
    /// Caps on buffered request bodies and slow clients.
    pub serving: ServingLimits,
    /// The prediction log, feedback and its join.
    pub feedback: FeedbackSettings,
    /// `SOMMELIER_GIT_COMMIT` at run time, else at build time: the commit this build came
    /// from, recorded with every tracked training.
    pub git_commit: Option<String>,
    /// What the Azure identity variables say is available (see [`AzureIdentity`]).
    pub azure_identity: AzureIdentity,
    /// Secret settings whose value is a Key Vault reference the platform did not resolve:
    /// each is treated as unset, and health reports the instance degraded while any is.
    pub unresolved_references: Vec<&'static str>,
}

/// The settings that hold credentials, and so may be Key Vault references.
const SECRET_SETTINGS: [&str; 5] = [
    "SOMMELIER_PUSHGATEWAY_PASSWORD",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "SOMMELIER_STORAGE_CONNECTION_STRING",
    "SOMMELIER_PUSHGATEWAY_USERNAME",
];

/// The identity variables Azure sets, as the blob store's credential choice needs them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AzureIdentity {
    /// `IDENTITY_ENDPOINT`: App Service's managed identity endpoint.
    pub managed_identity_endpoint: bool,
    /// `IDENTITY_HEADER`: the secret that endpoint wants; without it the endpoint is unusable.
    pub managed_identity_header: bool,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` all set.
    pub workload_identity: bool,
}

impl AzureIdentity {
    fn read(source: &Source) -> AzureIdentity {
        AzureIdentity {
            managed_identity_endpoint: source.is_set("IDENTITY_ENDPOINT"),
            managed_identity_header: source.is_set("IDENTITY_HEADER"),
            workload_identity: [
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
            ]
            .iter()
            .all(|name| source.is_set(name)),
        }
    }
}

/// Whether any of the variables the Functions host sets in Azure is present.
fn under_functions_host(source: &Source) -> bool {
    [
        "WEBSITE_INSTANCE_ID",
        "WEBSITE_SITE_NAME",
        "WEBSITE_HOSTNAME",
    ]
    .iter()
    .any(|name| source.is_set(name))
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("setting {name}: `{value}` is not valid ({expected})")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The container the prediction log and the labels live in, beside any registry of the
/// storage account (`feedback::store`).
pub const PREDICTION_LOG_CONTAINER: &str = "predictions";

/// A registry in the prediction log's own container would mix models with the log's blobs,
/// and the log's retention would delete them: refused.
fn refuse_the_log_container(store: &StoreLocation) -> Result<(), ConfigError> {
    let StoreLocation::BlobContainer(url) = store else {
        return Ok(());
    };
    let container = url
        .split('?')
        .next()
        .and_then(|path| path.trim_end_matches('/').rsplit('/').next())
        .unwrap_or("");
    if container.eq_ignore_ascii_case(PREDICTION_LOG_CONTAINER) {
        return Err(ConfigError::Invalid {
            name: "SOMMELIER_STORE",
            // The query may hold a SAS token: never repeated.
            value: match url.split_once('?') {
                Some((path, _)) => format!("{path}?…"),
                None => url.clone(),
            },
            expected: "a container other than `predictions`, which holds the prediction log beside the registry",
        });
    }
    Ok(())
}

impl Settings {
    /// Reads the process environment. `store_override` is the `--store` flag.
    pub fn from_env(store_override: Option<&str>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(store_override, |name| std::env::var(name).ok())
    }

    /// Reads the settings from `lookup` (a variable's name to its text): the one place every
    /// setting is declared, parsed and checked.
    pub fn from_lookup(
        store_override: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let source = Source::new(&lookup);
        let store = store_override
            .map(str::to_string)
            .or_else(|| source.text("SOMMELIER_STORE"))
            .map_or(
                StoreLocation::Directory(PathBuf::from(defaults::STORE_DIRECTORY)),
                |s| StoreLocation::parse(&s),
            );
        refuse_the_log_container(&store)?;
        Ok(Settings {
            store,
            storage_connection_string: source.secret("SOMMELIER_STORAGE_CONNECTION_STRING"),
            storage_ca_file: source.text("SOMMELIER_STORAGE_CA_FILE").map(PathBuf::from),
            identity_client_id: source.text("SOMMELIER_IDENTITY_CLIENT_ID"),
            training_data: source.text("SOMMELIER_TRAINING_DATA"),
            model_refresh: Duration::from_secs(source.parsed(
                "SOMMELIER_MODEL_REFRESH_SECONDS",
                defaults::MODEL_REFRESH.as_secs(),
                "whole seconds, at least 1",
                |v| *v >= 1,
            )?),
            promotion_tolerance: source.parsed(
                "SOMMELIER_PROMOTION_TOLERANCE",
                defaults::PROMOTION_TOLERANCE,
                "a number from 0 to 1",
                |v| (0.0..=1.0).contains(v),
            )?,
            min_comparable_rows: source.parsed(
                "SOMMELIER_MIN_COMPARABLE_ROWS",
                defaults::MIN_COMPARABLE_ROWS,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            keep_versions: source.parsed(
                "SOMMELIER_KEEP_VERSIONS",
                defaults::KEEP_VERSIONS,
                "a whole number, at least 2",
                |v| *v >= 2,
            )?,
            max_label_shift: source.parsed(
                "SOMMELIER_MAX_LABEL_SHIFT",
                defaults::MAX_LABEL_SHIFT,
                "a number above 0",
                |v: &f64| *v > 0.0 && v.is_finite(),
            )?,
            max_batch_rows: source.parsed(
                "SOMMELIER_MAX_BATCH_ROWS",
                defaults::MAX_BATCH_ROWS,
                "a whole number, at least 1",
                |v| *v >= 1,
            )?,
            max_explain_rows: source.parsed(
                "SOMMELIER_MAX_EXPLAIN_ROWS",
                defaults::MAX_EXPLAIN_ROWS,
                "a whole number from 1 to 10000",
                |v| (1..=10_000).contains(v),
            )?,
            interval_coverage: source.parsed(
                "SOMMELIER_INTERVAL_COVERAGE",
                defaults::INTERVAL_COVERAGE,
                "a number between 0.5 and 0.99",
                |v: &f64| (0.5..=0.99).contains(v),
            )?,
            push: read_push(&source)?,
            mlflow: read_mlflow(&source),
            json_logs: json_logs(&source)?,
            handler_port: source
                .parsed("FUNCTIONS_CUSTOMHANDLER_PORT", 0u16, "a TCP port", |_| true)
                .map(|p| (p != 0).then_some(p))?,
            instance_id: instance_id(&source),
            under_functions_host: under_functions_host(&source),
            serving: ServingLimits::read(&source)?,
            feedback: FeedbackSettings::read(&source)?,
            git_commit: source
                .text("SOMMELIER_GIT_COMMIT")
                .or_else(|| option_env!("SOMMELIER_GIT_COMMIT").map(str::to_string))
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty()),
            azure_identity: AzureIdentity::read(&source),
            unresolved_references: SECRET_SETTINGS
                .into_iter()
                .filter(|name| {
                    source
                        .text(name)
                        .is_some_and(|v| source::is_unresolved_reference(&v))
                })
                .collect(),
        })
    }
}

/// Whether logs are JSON lines (`SOMMELIER_LOG_FORMAT=json`) rather than text, from the
/// process environment: logging starts before the other settings are read, so that their
/// errors are logged in the chosen format.
pub fn json_logs_from_env() -> bool {
    let lookup = |name: &str| std::env::var(name).ok();
    json_logs(&Source::new(&lookup)).unwrap_or(false)
}

fn json_logs(source: &Source) -> Result<bool, ConfigError> {
    match source.text("SOMMELIER_LOG_FORMAT").as_deref() {
        None | Some("text") => Ok(false),
        Some("json") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name: "SOMMELIER_LOG_FORMAT",
            value: other.to_string(),
            expected: "text or json",
        }),
    }
}

fn read_push(source: &Source) -> Result<Option<PushSettings>, ConfigError> {
    let Some(url) = source.text("SOMMELIER_PUSHGATEWAY_URL") else {
        return Ok(None);
    };
    let interval = Duration::from_secs(source.parsed(
        "SOMMELIER_PUSH_INTERVAL_SECONDS",
        defaults::PUSH_INTERVAL.as_secs(),
        "whole seconds, at least 1",
        |v| *v >= 1,
    )?);
    // Three missed pushes at the least: a live instance's group is never taken for stale (the
    // default too, should the interval be long).
    let fewest = interval.as_secs().saturating_mul(3);
    let stale_seconds = source.parsed(
        "SOMMELIER_PUSH_STALE_GROUP_SECONDS",
        defaults::PUSH_STALE_GROUP.as_secs().max(fewest),
        "whole seconds, 0 (never) or at least three push intervals",
        |v| *v == 0 || *v >= fewest,
    )?;
    Ok(Some(PushSettings {
        url: url.trim_end_matches('/').to_string(),
        username: source.secret("SOMMELIER_PUSHGATEWAY_USERNAME"),
        password: source.secret("SOMMELIER_PUSHGATEWAY_PASSWORD"),
        interval,
        stale_group_after: (stale_seconds > 0).then(|| Duration::from_secs(stale_seconds)),
    }))
}

fn read_mlflow(source: &Source) -> Option<MlflowSettings> {
    let uri = source.text("MLFLOW_TRACKING_URI")?;
    Some(MlflowSettings {
        tracking_uri: uri.trim_end_matches('/').to_string(),
        token: source.secret("MLFLOW_TRACKING_TOKEN"),
        username: source.text("MLFLOW_TRACKING_USERNAME"),
        password: source.secret("MLFLOW_TRACKING_PASSWORD"),
        experiment_name: source
            .text("MLFLOW_EXPERIMENT_NAME")
            .unwrap_or_else(|| defaults::MLFLOW_EXPERIMENT.into()),
        model_name: source
            .text("SOMMELIER_MLFLOW_MODEL_NAME")
            .unwrap_or_else(|| defaults::MLFLOW_MODEL_NAME.into()),
    })
}

/// `WEBSITE_INSTANCE_ID` under Functions, else the host name: this instance's metrics
/// grouping key.
fn instance_id(source: &Source) -> String {
    source
        .text("WEBSITE_INSTANCE_ID")
        .or_else(|| source.text("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| defaults::INSTANCE_ID.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_location_is_a_url_or_a_directory() {
        assert_eq!(
            StoreLocation::parse("https://acct.blob.core.windows.net/models/"),
            StoreLocation::BlobContainer("https://acct.blob.core.windows.net/models".into())
        );
        assert_eq!(
            StoreLocation::parse("models-dir"),
            StoreLocation::Directory(PathBuf::from("models-dir"))
        );
    }

    #[test]
    fn the_prediction_log_container_is_no_registry() {
        for url in [
            "https://acct.blob.core.windows.net/predictions",
            "http://127.0.0.1:10000/devstoreaccount1/predictions/",
        ] {
            let error = Settings::from_lookup(Some(url), lookup_of(&[])).unwrap_err();
            assert!(error.to_string().contains("`predictions`"), "{error}");
        }
        assert!(Settings::from_lookup(
            Some("https://acct.blob.core.windows.net/predictions-staging"),
            lookup_of(&[])
        )
        .is_ok());
    }

    #[test]
    fn a_stale_group_is_at_least_three_push_intervals_old() {
        let push = |pairs: &[(&str, &str)]| {
            let mut all = vec![("SOMMELIER_PUSHGATEWAY_URL", "http://gateway:9091")];
            all.extend_from_slice(pairs);
            Settings::from_lookup(None, lookup_of(&all)).map(|s| s.push.expect("push"))
        };
        assert_eq!(
            push(&[]).unwrap().stale_group_after,
            Some(defaults::PUSH_STALE_GROUP)
        );
        let long = push(&[("SOMMELIER_PUSH_INTERVAL_SECONDS", "1800")]).unwrap();
        assert_eq!(long.stale_group_after, Some(Duration::from_secs(5400)));
        let never = push(&[("SOMMELIER_PUSH_STALE_GROUP_SECONDS", "0")]).unwrap();
        assert_eq!(never.stale_group_after, None);
        assert!(push(&[("SOMMELIER_PUSH_STALE_GROUP_SECONDS", "44")]).is_err());
        assert!(push(&[
            ("SOMMELIER_PUSH_INTERVAL_SECONDS", &u64::MAX.to_string()),
            ("SOMMELIER_PUSH_STALE_GROUP_SECONDS", "100"),
        ])
        .is_err());
    }

    #[test]
    fn an_unresolved_key_vault_reference_is_no_credential() {
        let reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/push/)";
        let settings = Settings::from_lookup(
            None,
            lookup_of(&[
                ("SOMMELIER_PUSHGATEWAY_URL", "http://gateway:9091"),
                ("SOMMELIER_PUSHGATEWAY_USERNAME", "pusher"),
                ("SOMMELIER_PUSHGATEWAY_PASSWORD", reference),
                ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
                (
                    "MLFLOW_TRACKING_TOKEN",
                    " @microsoft.keyvault(VaultName=kv;SecretName=t)",
                ),
                ("MLFLOW_TRACKING_PASSWORD", "resolved-secret"),
            ]),
        )
        .unwrap();
        let push = settings.push.expect("push settings");
        assert_eq!(push.username.as_deref(), Some("pusher"));
        assert_eq!(push.password, None);
        let mlflow = settings.mlflow.expect("mlflow settings");
        assert_eq!(mlflow.token, None);
        assert_eq!(mlflow.password.as_deref(), Some("resolved-secret"));
        assert_eq!(
            settings.unresolved_references,
            vec!["SOMMELIER_PUSHGATEWAY_PASSWORD", "MLFLOW_TRACKING_TOKEN"]
        );
        let plain = Settings::from_lookup(None, lookup_of(&[])).unwrap();
        assert!(plain.unresolved_references.is_empty());
    }

    fn lookup_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn settings_come_from_the_lookup_with_named_defaults() {
        let settings = Settings::from_lookup(None, lookup_of(&[])).unwrap();
        assert_eq!(
            settings.store,
            StoreLocation::Directory(PathBuf::from(defaults::STORE_DIRECTORY))
        );
        assert_eq!(settings.max_batch_rows, defaults::MAX_BATCH_ROWS);
        assert_eq!(settings.serving, ServingLimits::default());
        assert_eq!(settings.feedback, FeedbackSettings::default());
        let settings = Settings::from_lookup(
            Some("flag-store"),
            lookup_of(&[
                ("SOMMELIER_STORE", "env-store"),
                ("SOMMELIER_MAX_BATCH_ROWS", " 12 "),
                ("SOMMELIER_TRAIN_ON_FEEDBACK", "off"),
                ("SOMMELIER_TRAINING_DATA", "   "),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.store,
            StoreLocation::Directory("flag-store".into())
        );
        assert_eq!(settings.max_batch_rows, 12);
        assert!(!settings.feedback.train_on_feedback);
        assert_eq!(settings.training_data, None, "blank counts as unset");
        assert!(settings.azure_identity.managed_identity_endpoint);
        assert!(!settings.azure_identity.managed_identity_header);
    }

    #[test]
    fn a_bad_value_names_the_setting_and_what_it_should_be() {
        let error = Settings::from_lookup(
            None,
            lookup_of(&[("SOMMELIER_REQUEST_TIMEOUT_SECONDS", "0")]),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "setting SOMMELIER_REQUEST_TIMEOUT_SECONDS: `0` is not valid (whole seconds, at least 1)"
        );
        let error =
            Settings::from_lookup(None, lookup_of(&[("SOMMELIER_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(error.to_string().contains("SOMMELIER_LOG_FORMAT"));
    }

    #[test]
    fn the_log_is_kept_at_least_as_long_as_the_join_reads_it() {
        let retention = |pairs: &[(&str, &str)]| {
            Settings::from_lookup(None, lookup_of(pairs)).map(|s| s.feedback.retention_days)
        };
        assert_eq!(retention(&[]).unwrap(), 90);
        assert_eq!(
            retention(&[("SOMMELIER_PREDICTION_LOG_RETENTION_DAYS", "0")]).unwrap(),
            0
        );
        assert_eq!(
            retention(&[
                ("SOMMELIER_PREDICTION_LOG_RETENTION_DAYS", "7"),
                ("SOMMELIER_FEEDBACK_HORIZON_DAYS", "7"),
            ])
            .unwrap(),
            7
        );
        let shorter = retention(&[("SOMMELIER_PREDICTION_LOG_RETENTION_DAYS", "29")]).unwrap_err();
        assert!(
            shorter
                .to_string()
                .contains("from SOMMELIER_FEEDBACK_HORIZON_DAYS"),
            "{shorter}"
        );
    }
}
