//! MLflow tracking against a real MLflow tracking server, started once for this test binary
//! (`bash scripts/install-tools.sh mlflow` installs it), plus a small local HTTP server that
//! records request headers, and a closed port for the "server down" case.
//! `SOMMELIER_TEST_MLFLOW=<path to an mlflow executable>` runs them against another MLflow.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use sommelier::bundled;
use sommelier::config::MlflowSettings;
use sommelier::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use sommelier::model::artifact::DataSource;
use sommelier::model::dataset::{read_training_data, sha256_hex};
use sommelier::model::training::{TrainOptions, Trigger};
use sommelier::registry::{LocalStore, ModelStore, Registry, Store};
use sommelier::retraining::{train_and_publish, PromotionPolicy, Retrained};
use sommelier::tracking::{failure_count, Tracker, TrainingContext};

use crate::support::free_port;

// ---------------------------------------------------------------------------------------------
// The MLflow server, shared by every test in this binary.

struct MlflowServer {
    url: String,
    /// Closing it (at process exit) makes the wrapper shell stop the server.
    _stdin: Mutex<ChildStdin>,
    _wrapper: Mutex<Child>,
}

static SERVER: OnceLock<Result<MlflowServer, String>> = OnceLock::new();

fn mlflow() -> &'static str {
    match SERVER.get_or_init(start_mlflow) {
        Ok(server) => &server.url,
        Err(message) => panic!("{message}"),
    }
}

/// Starts `mlflow server` under a shell that stops it (its whole process group) and deletes
/// its data when this process exits and the shell's standard input closes.
fn start_mlflow() -> Result<MlflowServer, String> {
    // Another MLflow (a 2.x release, say) can be tried with SOMMELIER_TEST_MLFLOW=<its binary>.
    let binary = std::env::var_os("SOMMELIER_TEST_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/mlflow/bin/mlflow")
        });
    if !binary.is_file() {
        return Err(format!(
            "MLflow is not installed ({} is missing): run `bash scripts/install-tools.sh mlflow`",
            binary.display()
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("sommelier-mlflow-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let script = r#"set -m
"$@" >"$DATA/server.log" 2>&1 &
pid=$!
read -r _ || true
kill -TERM -- "-$pid" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.3; done
kill -KILL -- "-$pid" 2>/dev/null
rm -rf "$DATA""#;
    let mut wrapper = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("mlflow-wrapper")
        .arg(&binary)
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .args(["--workers", "1"])
        .env("DATA", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start bash to run MLflow: {e}"))?;
    let stdin = wrapper.stdin.take().ok_or("no stdin pipe")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(Some(status)) = wrapper.try_wait() {
            return Err(format!("the MLflow wrapper exited ({status})"));
        }
        if http_get_status(port, "/health") == Some(200) {
            eprintln!(
                "MLflow server ready on port {port} after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(MlflowServer {
                url: format!("http://127.0.0.1:{port}"),
                _stdin: Mutex::new(stdin),
                _wrapper: Mutex::new(wrapper),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: String = log
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!(
        "MLflow did not answer /health within 120 s; its log ends with:\n{tail}"
    ))
}

fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn settings(url: &str, name: &str) -> MlflowSettings {
    MlflowSettings {
        tracking_uri: url.to_string(),
        token: None,
        username: None,
        password: None,
        experiment_name: format!("exp-{name}"),
        model_name: format!("model-{name}"),
    }
}

fn spec(algorithm: Algorithm) -> ModelSpec {
    let overrides = SpecOverrides {
        n_trees: Some(8),
        // A heavy penalty: a clearly worse linear model, never promoted over a forest.
        alpha: Some(5.0),
        ..SpecOverrides::default()
    };
    ModelSpec::build(algorithm, &overrides).expect("valid spec")
}

/// Trains on the bundled data into `registry`.
async fn train(
    registry: &Registry,
    algorithm: Algorithm,
    force: bool,
) -> (TrainingContext, Retrained) {
    let dataset = read_training_data(bundled::WINE_QUALITY_RED_CSV).expect("bundled data");
    let options = TrainOptions {
        holdout: 0.2,
        ..TrainOptions::new(
            spec(algorithm),
            DataSource::named(bundled::SOURCE_NAME),
            Trigger::Cli,
        )
    };
    let ctx = TrainingContext::new(&options, &dataset);
    let policy = PromotionPolicy {
        tolerance: 0.01,
        min_comparable_rows: 30,
        force,
        keep_versions: 20,
        max_label_shift: sommelier::config::defaults::MAX_LABEL_SHIFT,
    };
    let retrained = train_and_publish(registry, dataset, options, policy)
        .await
        .expect("training succeeds");
    (ctx, retrained)
}

fn temp_registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = Registry::new(Store::Local(LocalStore::new(dir.path().join("models"))));
    (dir, registry)
}

/// Calls the MLflow REST API directly, to check what the tracker left there.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_string(),
        }
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let mut url = url::Url::parse(&format!("{}/api/2.0/mlflow/{endpoint}", self.base)).unwrap();
        url.query_pairs_mut().extend_pairs(query);
        let response = self.http.get(url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {endpoint}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn post(&self, endpoint: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/api/2.0/mlflow/{endpoint}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "POST {endpoint}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn runs(&self, experiment_name: &str) -> Vec<Value> {
        let experiment = self
            .get(
                "experiments/get-by-name",
                &[("experiment_name", experiment_name)],
            )
            .await;
        let id = experiment["experiment"]["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
        let found = self
            .post(
                "runs/search",
                json!({"experiment_ids": [id], "max_results": 100}),
            )
            .await;
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    async fn artifact(&self, artifact_uri: &str, path: &str) -> Vec<u8> {
        let proxied = artifact_uri.strip_prefix("mlflow-artifacts:/").unwrap();
        let response = self
            .http
            .get(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{proxied}/{path}",
                self.base
            ))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "artifact {path}: {}",
            response.status()
        );
        response.bytes().await.unwrap().to_vec()
    }

    async fn champion_version(&self, model: &str) -> String {
        let found = self
            .get(
                "registered-models/alias",
                &[("name", model), ("alias", "champion")],
            )
            .await;
        found["model_version"]["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn versions(&self, model: &str) -> Vec<Value> {
        let filter = format!("name = '{model}'");
        let found = self
            .get("model-versions/search", &[("filter", &filter)])
            .await;
        found["model_versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn pairs(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    (
                        item["key"].as_str().unwrap().to_string(),
                        item["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn version_tag(version: &Value) -> String {
    pairs(&version["tags"])["sommelier.model_version"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Against the real server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow"]
async fn a_training_is_one_run_with_params_metrics_tags_and_artifacts() {
    let url = mlflow();
    let settings = settings(url, "one-run");
    let (_dir, registry) = temp_registry();
    let tracker = Tracker::new(Some(&settings), registry.store_location());
    let (ctx, retrained) = train(&registry, Algorithm::ExtraTrees, false).await;
    let report = &retrained.report;
    assert!(report.promoted, "the first model becomes champion");

    let run_id = tracker
        .training_succeeded(&ctx, &retrained)
        .await
        .expect("a run id");

    let api = Api::new(url);
    let runs = api.runs(&settings.experiment_name).await;
    assert_eq!(runs.len(), 1, "exactly one run: {runs:#?}");
    let run = &runs[0];
    assert_eq!(run["info"]["run_id"], json!(run_id));
    assert_eq!(run["info"]["run_name"], json!(report.version));
    assert_eq!(run["info"]["status"], json!("FINISHED"));

    let params = pairs(&run["data"]["params"]);
    assert_eq!(params["algorithm"], json!("extra-trees"));
    assert_eq!(params["n_trees"], json!("8"));
    assert_eq!(params["seed"], json!("42"));
    assert_eq!(params["holdout"], json!("0.2"));
    assert_eq!(params["rows"], json!(ctx.rows.to_string()));
    assert!(params.contains_key("max_features") && params.contains_key("min_samples_leaf"));

    let metrics = pairs(&run["data"]["metrics"]);
    let card_metrics = report.metrics.expect("holdout metrics");
    for (key, expected) in [
        ("rmse", card_metrics.rmse),
        ("mae", card_metrics.mae),
        ("r2", card_metrics.r2),
        ("within_0_5", card_metrics.within_0_5),
        ("within_1_0", card_metrics.within_1_0),
        ("fit_seconds", report.fit_seconds),
    ] {
        let logged = metrics[key].as_f64().unwrap();
        assert!(
            (logged - expected).abs() < 1e-9,
            "{key}: logged {logged}, expected {expected}"
        );
    }
    assert!(
        !metrics.contains_key("champion_rmse"),
        "no champion to compare with yet"
    );
    // Global importance and the intervals' calibration, one metric each.
    for key in [
        "importance_alcohol",
        "importance_pH",
        "interval_half_width_90",
    ] {
        assert!(
            metrics[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing from {metrics:?}"
        );
    }
    let history = api
        .get(
            "metrics/get-history",
            &[("run_id", &run_id), ("metric_key", "rmse")],
        )
        .await;
    assert_eq!(
        history["metrics"].as_array().unwrap().len(),
        1,
        "each metric logged once"
    );

    let tags = pairs(&run["data"]["tags"]);
    assert_eq!(tags["sommelier.trigger"], json!("cli"));
    assert_eq!(tags["sommelier.data_sha256"], json!(report.data_sha256));
    assert_eq!(tags["sommelier.data_source"], json!(bundled::SOURCE_NAME));
    assert_eq!(
        tags["sommelier.software_version"],
        json!(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(tags["sommelier.model_version"], json!(report.version));
    assert_eq!(tags["sommelier.promoted"], json!("true"));

    // The artifacts, downloaded back through the proxy, are the stored bytes.
    let artifact_uri = run["info"]["artifact_uri"].as_str().unwrap();
    let stored_model = registry.store().get_model(&report.version).await.unwrap();
    let stored_card = registry.store().get_card(&report.version).await.unwrap();
    assert_eq!(
        api.artifact(artifact_uri, "model/model.bin").await,
        stored_model
    );
    assert_eq!(
        api.artifact(artifact_uri, "model/card.json").await,
        stored_card
    );

    // One registered version, from this run, tagged, and champion.
    let versions = api.versions(&settings.model_name).await;
    assert_eq!(versions.len(), 1, "{versions:#?}");
    let version = &versions[0];
    assert_eq!(version["run_id"], json!(run_id));
    assert_eq!(version["source"], json!(format!("{artifact_uri}/model")));
    assert_eq!(version_tag(version), report.version);
    assert_eq!(
        pairs(&version["tags"])["sommelier.store"],
        json!(registry.store_location())
    );
    assert_eq!(
        api.champion_version(&settings.model_name).await,
        version["version"].as_str().unwrap()
    );

    // The listing finds the run by version.
    let ids = tracker
        .run_ids(&[report.version.clone(), "unknown".into()])
        .await;
    assert_eq!(ids.get(&report.version), Some(&run_id));
    assert_eq!(ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow"]
async fn promotion_and_rollback_move_the_champion_alias() {
    let url = mlflow();
    let settings = settings(url, "alias");
    let (_dir, registry) = temp_registry();
    let tracker = Tracker::new(Some(&settings), registry.store_location());
    let api = Api::new(url);
    let by_version = |versions: &[Value], v: &str| {
        versions
            .iter()
            .find(|mv| version_tag(mv) == v)
            .map(|mv| mv["version"].as_str().unwrap().to_string())
            .expect("a registered version")
    };

    let (ctx, first) = train(&registry, Algorithm::ExtraTrees, false).await;
    tracker.training_succeeded(&ctx, &first).await.expect("run");
    let (ctx, second) = train(&registry, Algorithm::ExtraTrees, true).await;
    assert!(second.report.promoted);
    tracker
        .training_succeeded(&ctx, &second)
        .await
        .expect("run");
    let versions = api.versions(&settings.model_name).await;
    assert_eq!(
        api.champion_version(&settings.model_name).await,
        by_version(&versions, &second.report.version),
        "the alias follows a promotion"
    );

    // A worse model is registered but does not take the alias.
    let (ctx, worse) = train(&registry, Algorithm::ElasticNet, false).await;
    assert!(!worse.report.promoted, "{}", worse.report.reason);
    let worse_run = tracker.training_succeeded(&ctx, &worse).await.expect("run");
    let versions = api.versions(&settings.model_name).await;
    assert_eq!(versions.len(), 3);
    assert_eq!(
        api.champion_version(&settings.model_name).await,
        by_version(&versions, &second.report.version)
    );
    let run = api.get("runs/get", &[("run_id", &worse_run)]).await;
    let metrics = pairs(&run["run"]["data"]["metrics"]);
    assert!(
        metrics.contains_key("champion_rmse"),
        "compared with the champion: {metrics:?}"
    );

    // Rollback: the store's pointer moves, then the alias follows.
    registry
        .promote(&first.report.version)
        .await
        .expect("rollback");
    tracker.champion_moved(&first.report.version).await;
    assert_eq!(
        api.champion_version(&settings.model_name).await,
        by_version(&versions, &first.report.version),
        "the alias follows a rollback"
    );

    // Unknown versions leave the alias alone (and are counted).
    let before = failure_count("set_alias");
    tracker.champion_moved("19990101T000000Z-0000000").await;
    assert!(failure_count("set_alias") > before);
    assert_eq!(
        api.champion_version(&settings.model_name).await,
        by_version(&versions, &first.report.version)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow"]
async fn a_rejected_upload_leaves_a_failed_run_with_the_reason() {
    let url = mlflow();
    let settings = settings(url, "failed");
    let tracker = Tracker::new(Some(&settings), "models");
    let upload = b"alcohol,quality\nnot-a-number,5\n".to_vec();
    let reason = match read_training_data(upload.as_slice()) {
        Ok(_) => panic!("the upload should be rejected"),
        Err(error) => error.to_string(),
    };
    let ctx = TrainingContext {
        trigger: Trigger::Upload,
        source: DataSource {
            name: "training-data/bad.csv".into(),
            etag: Some("\"0x8D0\"".into()),
        },
        holdout: 0.2,
        spec: spec(Algorithm::ExtraTrees),
        rows: 0,
        data_sha256: sha256_hex(&upload),
    };
    // Two at once into an experiment that does not exist yet: both get a run.
    let other = tracker.clone();
    let (ctx2, reason2) = (ctx.clone(), reason.clone());
    tokio::join!(
        tracker.training_failed(&ctx, &reason),
        other.training_failed(&ctx2, &reason2)
    );

    let runs = Api::new(url).runs(&settings.experiment_name).await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run in &runs {
        assert_eq!(run["info"]["status"], json!("FAILED"));
        let tags = pairs(&run["data"]["tags"]);
        assert_eq!(tags["sommelier.error"], json!(reason));
        assert_eq!(tags["sommelier.trigger"], json!("upload"));
        assert_eq!(
            tags["sommelier.data_source"],
            json!("training-data/bad.csv")
        );
        assert_eq!(tags["sommelier.data_sha256"], json!(sha256_hex(&upload)));
        assert_eq!(
            pairs(&run["data"]["params"])["algorithm"],
            json!("extra-trees")
        );
    }
    // Failed runs are not listed as model versions' runs.
    assert!(tracker.run_ids(&["failed".into()]).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Without a working server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_training_proceeds_and_failures_are_counted() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (_dir, registry) = temp_registry();
    let tracker = Tracker::new(Some(&settings(&closed, "down")), registry.store_location());
    let (ctx, retrained) = train(&registry, Algorithm::ElasticNet, false).await;
    assert!(retrained.report.promoted);
    let before = failure_count("experiment");

    let started = Instant::now();
    assert_eq!(tracker.training_succeeded(&ctx, &retrained).await, None);
    tracker.training_failed(&ctx, "boom").await;
    tracker.champion_moved(&retrained.report.version).await;
    assert!(tracker
        .run_ids(std::slice::from_ref(&retrained.report.version))
        .await
        .is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "four calls took {elapsed:?}"
    );

    assert!(failure_count("experiment") >= before + 2);
    let families = prometheus::default_registry().gather();
    let family = families
        .iter()
        .find(|f| f.name() == "sommelier_mlflow_failures_total")
        .expect("the counter is in the default registry");
    let experiment_failures: f64 = family
        .get_metric()
        .iter()
        .filter(|m| m.get_label().iter().any(|l| l.value() == "experiment"))
        .map(|m| m.get_counter().get_value())
        .sum();
    assert!(experiment_failures >= 2.0);
    // The store is untouched by tracking: the model is there and champion.
    let champion = registry.champion().await.unwrap().expect("champion");
    assert_eq!(champion.champion.version, retrained.report.version);
}

/// A tiny HTTP server that records each request's headers and answers every request with a
/// JSON body that satisfies any of the calls the tracker makes.
async fn recording_server() -> (String, Arc<Mutex<Vec<(String, HashMap<String, String>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let mut lines = head.lines();
                let request_line = lines.next().unwrap_or_default().to_string();
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                record.lock().unwrap().push((request_line, headers));
                let body = json!({
                    "experiment": {"experiment_id": "1", "lifecycle_stage": "active"},
                    "run": {"info": {"run_id": "r1", "artifact_uri": "mlflow-artifacts:/1/r1/artifacts"}},
                    "model_version": {"version": "1"},
                    "model_versions": [],
                    "runs": [],
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sent_as_configured() {
    let ctx = TrainingContext {
        trigger: Trigger::Http,
        source: DataSource {
            name: "bundled".into(),
            etag: None,
        },
        holdout: 0.2,
        spec: spec(Algorithm::ElasticNet),
        rows: 10,
        data_sha256: "00".into(),
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret pass")
    );
    let cases = [
        (Some("tok-123"), None, None, "Bearer tok-123".to_string()),
        (None, Some("alice"), Some("s3cret pass"), basic.clone()),
        // Both configured: basic wins, as in MLflow's own client.
        (Some("tok-123"), Some("alice"), Some("s3cret pass"), basic),
    ];
    for (token, username, password, expected) in cases {
        let (url, seen) = recording_server().await;
        let mut settings = settings(&url, "auth");
        settings.token = token.map(str::to_string);
        settings.username = username.map(str::to_string);
        settings.password = password.map(str::to_string);
        Tracker::new(Some(&settings), "models")
            .training_failed(&ctx, "boom")
            .await;
        let seen = seen.lock().unwrap().clone();
        // get-by-name, runs/create, runs/log-batch, runs/update.
        assert_eq!(seen.len(), 4, "{seen:#?}");
        for (request, headers) in &seen {
            assert_eq!(headers.get("authorization"), Some(&expected), "{request}");
            assert!(
                !request.contains("s3cret") && !request.contains("tok-123"),
                "{request}"
            );
        }
    }

    // No credentials: no header.
    let (url, seen) = recording_server().await;
    Tracker::new(Some(&settings(&url, "anonymous")), "models")
        .training_failed(&ctx, "boom")
        .await;
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|(_, headers)| !headers.contains_key("authorization")));
}

// ---------------------------------------------------------------------------------------------
// The wiring: the real binary records its trainings when MLFLOW_TRACKING_URI is set.

fn sommelier_cli(store: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sommelier"))
        .args(args)
        .arg("--json")
        .arg("--store")
        .arg(store)
        .envs(env.iter().copied())
        .output()
        .expect("run sommelier");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow"]
async fn the_cli_and_the_server_track_their_trainings() {
    let url = mlflow();
    let api = Api::new(url);
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("models");
    let experiment = "wiring-cli-and-server";
    let model_name = "wiring-model";
    let env = [
        ("MLFLOW_TRACKING_URI", url),
        ("MLFLOW_EXPERIMENT_NAME", experiment),
        ("SOMMELIER_MLFLOW_MODEL_NAME", model_name),
    ];

    // CLI: the run id is reported and listed next to the version.
    let trained = sommelier_cli(&store, &env, &["train", "--trees", "10"]);
    let run_id = trained["mlflow_run_id"]
        .as_str()
        .expect("a run id")
        .to_string();
    let run = api.get("runs/get", &[("run_id", &run_id)]).await;
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    assert_eq!(run["run"]["info"]["run_name"], trained["version"]);
    let listed = sommelier_cli(&store, &env, &["models"]);
    assert_eq!(listed["versions"][0]["mlflow_run_id"], run_id.as_str());

    // Server: an HTTP training is tracked in the background with trigger `http`.
    let port = free_port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_sommelier"))
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("SOMMELIER_STORE", &store)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut answer = None;
    for _ in 0..600 {
        if let Ok(response) = http.post(format!("{base}/api/train")).send().await {
            if response.status() == 200 {
                answer = Some(response.json::<Value>().await.expect("json"));
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the server trained");
    let version = answer["version"].as_str().expect("version").to_string();
    let mut tracked = None;
    for _ in 0..100 {
        let listed: Value = http
            .get(format!("{base}/api/models"))
            .send()
            .await
            .expect("models")
            .json()
            .await
            .expect("json");
        let entry = listed["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .find(|v| v["version"] == version.as_str())
            .cloned();
        if let Some(id) = entry.and_then(|e| e["mlflow_run_id"].as_str().map(str::to_string)) {
            tracked = Some(id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let server_run = tracked.expect("the HTTP training appears in MLflow");
    let run = api.get("runs/get", &[("run_id", &server_run)]).await;
    let tags = pairs(&run["run"]["data"]["tags"]);
    assert_eq!(
        tags.get("sommelier.trigger"),
        Some(&Value::String("http".into())),
        "{tags:?}"
    );
}
