//! A small client for the parts of MLflow's REST API that sommelier uses: experiments,
//! runs, the artifact proxy, registered models, model versions and aliases.
//!
//! Works against MLflow 2.x and 3.x tracking servers: it always sends `run_id` when creating
//! a model version (3.x requires it), and reads errors by HTTP status and `error_code`
//! without assuming the body is JSON (2.x answers unknown routes with HTML).
//! Every call has a timeout; connection failures (and, for calls that are safe to repeat,
//! timeouts and 5xx answers) are retried a bounded number of times. It knows nothing about
//! trainings: see the parent module for that.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use url::Url;

use crate::config::MlflowSettings;

/// Time allowed for one API call (connect, send, answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra attempts after the first one.
pub const RETRIES: u32 = 2;
/// Longest server message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// What went wrong in one call, with the server's own message when it sent one.
#[derive(Debug, Error)]
pub enum MlflowError {
    #[error("MLflow server cannot be reached: {0}")]
    Unreachable(String),
    #[error("MLflow server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("MLflow answered HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        /// MLflow's `error_code`, or `HTTP_<status>` when the body was not an MLflow error.
        code: String,
        message: String,
    },
    #[error(
        "MLflow answered HTTP {status} with a body that is not what the API describes: {detail}"
    )]
    Unexpected { status: u16, detail: String },
    #[error("MLflow tracking URI `{0}` is not an http(s) URL")]
    BadUri(String),
    #[error("{0}")]
    Unsupported(String),
}

impl MlflowError {
    /// MLflow's `error_code` (`RESOURCE_ALREADY_EXISTS`, ...), when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the server could not be talked to at all, so further calls are pointless now.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, MlflowError::Unreachable(_) | MlflowError::Timeout(_))
    }

    fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { status: 404, .. })
            || self.code() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// Credentials for every request. `Debug` never shows them.
#[derive(Clone)]
enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Bearer(_) => "bearer",
        })
    }
}

/// Which failures a call may be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads and writes that give the same result when repeated: retry connection
    /// failures, timeouts and 5xx answers.
    Safe,
    /// Creations: retry only when the request cannot have been processed (no connection,
    /// or 503 Service Unavailable), so that a retry never creates a second run or version.
    IfNotProcessed,
}

/// A tag or a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub run_name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    pub version: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// One page of runs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunPage {
    #[serde(default)]
    pub runs: Vec<Run>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A client for one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
}

impl MlflowClient {
    /// A client for the configured server. Credentials embedded in the URI are moved into an
    /// `Authorization` header so that the URI never carries them into a log.
    pub fn new(settings: &MlflowSettings) -> Result<Self, MlflowError> {
        let mut base = Url::parse(settings.tracking_uri.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| MlflowError::BadUri(redacted_uri(&settings.tracking_uri)))?;
        let embedded = (!base.username().is_empty()).then(|| {
            let username = percent_decode(base.username());
            let password = base.password().map(percent_decode).unwrap_or_default();
            (username, password)
        });
        // Cannot fail on an http(s) URL with a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let auth = match (
            &settings.username,
            &settings.password,
            &settings.token,
            embedded,
        ) {
            // MLflow's own precedence: basic credentials first, then the token.
            (Some(username), Some(password), _, _) => Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            (_, _, Some(token), _) => Auth::Bearer(token.clone()),
            (_, _, None, Some((username, password))) => Auth::Basic { username, password },
            _ => Auth::None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sommelier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                MlflowError::Unsupported(format!(
                    "cannot build an HTTP client: {}",
                    e.without_url()
                ))
            })?;
        Ok(Self { http, base, auth })
    }

    /// The server's base URL, without credentials.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in segments {
                // A segment may hold several path components (an artifact path).
                path.extend(segment.split('/').filter(|s| !s.is_empty()));
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request, retrying per `repeat`, and returns the status and body of the
    /// successful answer.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
        timeout: Duration,
        repeat: Repeat,
    ) -> Result<Vec<u8>, MlflowError> {
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            request = match &self.auth {
                Auth::None => request,
                Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
                Auth::Bearer(token) => request.bearer_auth(token),
            };
            if let Some((content_type, bytes)) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            let error = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if status.is_success() => return Ok(bytes.to_vec()),
                        Ok(bytes) => api_error(status, &bytes),
                        Err(error) => transport_error(error, timeout),
                    }
                }
                Err(error) => transport_error(error, timeout),
            };
            let retryable = match (&error, repeat) {
                (MlflowError::Unreachable(_), _) => true,
                (MlflowError::Timeout(_), Repeat::Safe) => true,
                (MlflowError::Api { status, .. }, Repeat::Safe) => *status >= 500,
                (MlflowError::Api { status, .. }, Repeat::IfNotProcessed) => *status == 503,
                _ => false,
            };
            if !retryable || attempt >= RETRIES {
                return Err(error);
            }
            attempt += 1;
            tracing::debug!(%error, attempt, "MLflow call failed; retrying");
            tokio::time::sleep(Duration::from_millis(250 * 3u64.pow(attempt - 1))).await;
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<T, MlflowError> {
        let url = self.url(&["api/2.0/mlflow", endpoint], query);
        let body = match body {
            Some(value) => Some((
                "application/json",
                serde_json::to_vec(value).map_err(|e| MlflowError::Unsupported(e.to_string()))?,
            )),
            None => None,
        };
        let bytes = self.send(method, url, body, CALL_TIMEOUT, repeat).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|e| MlflowError::Unexpected {
            status: 200,
            detail: format!("{e}: {}", snippet(bytes)),
        })
    }

    /// The experiment named `name`, created if missing. Two callers creating it at once both
    /// succeed: the loser of the race reads the winner's experiment.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment, MlflowError> {
        if let Some(experiment) = self.experiment_by_name(name).await? {
            return usable(experiment, name);
        }
        let created: Result<Value, _> = self
            .json(
                Method::POST,
                "experiments/create",
                &[],
                Some(&serde_json::json!({ "name": name })),
                Repeat::IfNotProcessed,
            )
            .await;
        match created {
            Ok(value) => match value.get("experiment_id").and_then(Value::as_str) {
                Some(id) => Ok(Experiment {
                    experiment_id: id.to_string(),
                    lifecycle_stage: Some("active".into()),
                }),
                None => Err(MlflowError::Unexpected {
                    status: 200,
                    detail: "experiments/create returned no experiment_id".into(),
                }),
            },
            Err(error) if error.code() == Some("RESOURCE_ALREADY_EXISTS") => {
                match self.experiment_by_name(name).await? {
                    Some(experiment) => usable(experiment, name),
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The experiment named `name`, if it exists.
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let answer: Result<Answer, _> = self
            .json(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
                Repeat::Safe,
            )
            .await;
        match answer {
            Ok(answer) => Ok(Some(answer.experiment)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Starts a run (status RUNNING).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let body = serde_json::json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": tags,
        });
        let answer: Answer = self
            .json(
                Method::POST,
                "runs/create",
                &[],
                Some(&body),
                Repeat::IfNotProcessed,
            )
            .await?;
        Ok(answer.run.info)
    }

    /// Logs params, metrics and tags in one request.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Metric],
        tags: &[KeyValue],
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({
            "run_id": run_id,
            "params": params,
            "metrics": metrics,
            "tags": tags,
        });
        let _: Value = self
            .json(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(&body),
                Repeat::Safe,
            )
            .await?;
        Ok(())
    }

    /// Ends a run with `status` (`FINISHED`, `FAILED` or `KILLED`).
    pub async fn end_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), MlflowError> {
        let body =
            serde_json::json!({ "run_id": run_id, "status": status, "end_time": end_time_ms });
        let _: Value = self
            .json(Method::POST, "runs/update", &[], Some(&body), Repeat::Safe)
            .await?;
        Ok(())
    }

    /// A run by id.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let answer: Answer = self
            .json(
                Method::GET,
                "runs/get",
                &[("run_id", run_id)],
                None,
                Repeat::Safe,
            )
            .await?;
        Ok(answer.run)
    }

    /// One page of the runs of an experiment, newest first.
    pub async fn search_runs(
        &self,
        experiment_id: &str,
        filter: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<RunPage, MlflowError> {
        let mut body = serde_json::json!({
            "experiment_ids": [experiment_id],
            "filter": filter,
            "max_results": max_results,
            "order_by": ["attributes.start_time DESC"],
        });
        if let Some(token) = page_token {
            body["page_token"] = Value::from(token);
        }
        self.json(Method::POST, "runs/search", &[], Some(&body), Repeat::Safe)
            .await
    }

    /// Uploads a file through the artifact proxy. `artifact_uri` is the run's
    /// `mlflow-artifacts:/...` URI; `path` is relative to it.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        content_type: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let url = self.url(&[ARTIFACT_PROXY, &proxy_path(artifact_uri)?, path], &[]);
        // Big forests need more than the API timeout on slow links: a second per MiB more.
        let timeout = CALL_TIMEOUT + Duration::from_secs((bytes.len() >> 20) as u64);
        self.send(
            Method::PUT,
            url,
            Some((content_type, bytes)),
            timeout,
            Repeat::Safe,
        )
        .await?;
        Ok(())
    }

    /// Downloads a file through the artifact proxy.
    pub async fn download_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let url = self.url(&[ARTIFACT_PROXY, &proxy_path(artifact_uri)?, path], &[]);
        self.send(Method::GET, url, None, CALL_TIMEOUT * 6, Repeat::Safe)
            .await
    }

    /// Creates the registered model; one that already exists counts as created.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        let body = serde_json::json!({ "name": name });
        let created: Result<Value, _> = self
            .json(
                Method::POST,
                "registered-models/create",
                &[],
                Some(&body),
                Repeat::IfNotProcessed,
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Registers a new version of `name` from `source`, which must lie inside run `run_id`.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[KeyValue],
        description: &str,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let body = serde_json::json!({
            "name": name,
            "source": source,
            "run_id": run_id,
            "tags": tags,
            "description": description,
        });
        let answer: Answer = self
            .json(
                Method::POST,
                "model-versions/create",
                &[],
                Some(&body),
                Repeat::IfNotProcessed,
            )
            .await?;
        Ok(answer.model_version)
    }

    /// Versions of registered models matching an MLflow filter expression.
    pub async fn search_model_versions(
        &self,
        filter: &str,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
        }
        let answer: Answer = self
            .json(
                Method::GET,
                "model-versions/search",
                &[
                    ("filter", filter),
                    ("max_results", "200"),
                    ("order_by", "version_number DESC"),
                ],
                None,
                Repeat::Safe,
            )
            .await?;
        Ok(answer.model_versions)
    }

    /// Points `alias` of model `name` at `version`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({ "name": name, "alias": alias, "version": version });
        let _: Value = self
            .json(
                Method::POST,
                "registered-models/alias",
                &[],
                Some(&body),
                Repeat::Safe,
            )
            .await?;
        Ok(())
    }

    /// The version `alias` of model `name` points at.
    pub async fn version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let answer: Answer = self
            .json(
                Method::GET,
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
                None,
                Repeat::Safe,
            )
            .await?;
        Ok(answer.model_version)
    }
}

const ARTIFACT_PROXY: &str = "api/2.0/mlflow-artifacts/artifacts";

/// The proxy path of a run's artifact URI: `mlflow-artifacts:/1/<run>/artifacts` gives
/// `1/<run>/artifacts`. Other schemes (a server without the artifact proxy) are refused.
pub fn proxy_path(artifact_uri: &str) -> Result<String, MlflowError> {
    let rest = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| {
            MlflowError::Unsupported(format!(
                "artifact URI `{artifact_uri}` is not served by the artifact proxy \
                 (start the server with --artifacts-destination, or --serve-artifacts on 2.x)"
            ))
        })?;
    // `mlflow-artifacts:/1/x` or `mlflow-artifacts://host:port/1/x`.
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, path)| path),
        None => rest,
    };
    Ok(rest.trim_matches('/').to_string())
}

fn usable(experiment: Experiment, name: &str) -> Result<Experiment, MlflowError> {
    if experiment.lifecycle_stage.as_deref() == Some("deleted") {
        return Err(MlflowError::Unsupported(format!(
            "experiment `{name}` is deleted on the MLflow server: restore it, or set MLFLOW_EXPERIMENT_NAME"
        )));
    }
    Ok(experiment)
}

fn transport_error(error: reqwest::Error, timeout: Duration) -> MlflowError {
    if error.is_timeout() {
        MlflowError::Timeout(timeout)
    } else {
        // Without the URL: it would only repeat the configured address.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        let mut text = error.without_url().to_string();
        for cause in causes {
            text.push_str(": ");
            text.push_str(&cause);
        }
        MlflowError::Unreachable(text)
    }
}

/// An error from a non-success answer: MLflow's JSON error when there is one, else the status
/// and the start of the body (2.x answers unknown routes with an HTML page).
fn api_error(status: StatusCode, body: &[u8]) -> MlflowError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error_code: Option<String>,
        message: Option<String>,
    }
    let fallback_code = format!("HTTP_{}", status.as_u16());
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => MlflowError::Api {
            status: status.as_u16(),
            code: parsed.error_code.unwrap_or(fallback_code),
            message: truncate(parsed.message.as_deref().unwrap_or(""), MAX_MESSAGE_CHARS),
        },
        Err(_) => MlflowError::Api {
            status: status.as_u16(),
            code: fallback_code,
            message: snippet(body),
        },
    }
}

/// A short, single-line rendering of a body for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        // An HTML page: its title says it best.
        let title = trimmed
            .split_once("<title>")
            .and_then(|(_, rest)| rest.split_once("</title>"))
            .map(|(title, _)| title.trim().to_string());
        return match title {
            Some(title) if !title.is_empty() => format!("HTML page `{}`", truncate(&title, 80)),
            _ => "an HTML page".into(),
        };
    }
    let flat: String = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        "(empty body)".into()
    } else {
        truncate(&flat, MAX_MESSAGE_CHARS)
    }
}

/// At most `max` characters, marked when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URI with any embedded credentials removed, for messages.
pub fn redacted_uri(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => match uri.split_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => uri.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(uri: &str) -> MlflowSettings {
        MlflowSettings {
            tracking_uri: uri.into(),
            token: None,
            username: None,
            password: None,
            experiment_name: "e".into(),
            model_name: "m".into(),
        }
    }

    #[test]
    fn proxy_paths_drop_the_scheme_and_any_host() {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert!(proxy_path("file:///srv/mlruns/1/abc/artifacts").is_err());
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_queries() {
        let client = MlflowClient::new(&settings("http://127.0.0.1:5000/mlflow/")).unwrap();
        let url = client.url(
            &["api/2.0/mlflow", "experiments/get-by-name"],
            &[("experiment_name", "a b&c")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=a+b%26c"
        );
    }

    #[test]
    fn credentials_in_the_uri_move_to_a_header() {
        let client = MlflowClient::new(&settings("https://alice:p%40ss@mlflow.example/")).unwrap();
        assert_eq!(client.base_url(), "https://mlflow.example");
        match client.auth {
            Auth::Basic { username, password } => {
                assert_eq!((username.as_str(), password.as_str()), ("alice", "p@ss"))
            }
            other => panic!("expected basic auth, got {other:?}"),
        }
        assert!(!format!(
            "{:?}",
            MlflowClient::new(&settings("https://alice:secret@h/")).unwrap()
        )
        .contains("secret"));
        assert!(matches!(
            MlflowClient::new(&settings("file:///srv/mlruns")),
            Err(MlflowError::BadUri(_))
        ));
        assert!(!redacted_uri("https://alice:secret@h/").contains("secret"));
    }

    #[test]
    fn basic_credentials_win_over_a_token_as_in_mlflow() {
        let mut s = settings("http://h");
        s.token = Some("t".into());
        assert!(matches!(
            MlflowClient::new(&s).unwrap().auth,
            Auth::Bearer(_)
        ));
        s.username = Some("u".into());
        s.password = Some("p".into());
        assert!(matches!(
            MlflowClient::new(&s).unwrap().auth,
            Auth::Basic { .. }
        ));
    }

    #[test]
    fn errors_read_json_and_html_bodies() {
        let json = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"Experiment 'x' already exists."}"#,
        );
        assert_eq!(json.code(), Some("RESOURCE_ALREADY_EXISTS"));
        let html = api_error(
            StatusCode::NOT_FOUND,
            b"<!doctype html>\n<html><title>404 Not Found</title><h1>Not Found</h1></html>",
        );
        assert_eq!(html.code(), Some("HTTP_404"));
        assert!(html.to_string().contains("404 Not Found"), "{html}");
        assert!(html.is_not_found());
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
