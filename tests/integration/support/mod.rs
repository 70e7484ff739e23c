//! What the integration tests share: the binary under test and a server spawned the way the
//! Functions host does, HTTP helpers, the bundled wine data, trained models, and the services
//! ([`azurite`]) that the service tests start themselves.
//!
//! Not here: helpers that one test module alone uses (they stay beside their tests).

pub mod azurite;
pub mod models;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sommelier::model::features::{FEATURE_COUNT, FEATURE_NAMES};

/// The binary under test: `SOMMELIER_BIN` (e.g. the packaged one), else cargo's build.
pub fn binary() -> PathBuf {
    std::env::var_os("SOMMELIER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sommelier")))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The first wine of the bundled data, in the model's feature order.
pub const FIRST_WINE: [f64; FEATURE_COUNT] = [
    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
];

/// The first wine of the bundled data, as the API's JSON object.
pub fn wine() -> Value {
    FEATURE_NAMES
        .iter()
        .zip(FIRST_WINE)
        .map(|(name, value)| (name.to_string(), Value::from(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A string value as the Functions host double-encodes it in `Data` and `Metadata`
/// (`"\"value\""`).
pub fn host_string(value: &str) -> Value {
    Value::String(serde_json::to_string(value).expect("a string serialises"))
}

/// A running `sommelier serve`, killed on drop.
pub struct Server {
    pub port: u16,
    pub child: Child,
    pub readiness: Duration,
}

impl Server {
    /// Starts the binary in `workdir` as the host would (port in the environment, `serve`
    /// from host.json's arguments) and polls `GET /` every 25 ms until it answers.
    pub fn start(workdir: &Path, env: &[(&str, String)]) -> Server {
        Self::launch(workdir, env, None)
    }

    /// [`Server::start`], with the server's output (its log) written to `log`.
    pub fn start_logging_to(workdir: &Path, env: &[(&str, String)], log: &Path) -> Server {
        Self::launch(workdir, env, Some(log))
    }

    fn launch(workdir: &Path, env: &[(&str, String)], log: Option<&Path>) -> Server {
        let port = free_port();
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .current_dir(workdir)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env(
                "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
                "6a1f7f34-5b0f-4e7d-9a55-0c3f8a2e9b11",
            )
            .env(
                "FUNCTIONS_HTTPWORKER_ID",
                "6a1f7f34-5b0f-4e7d-9a55-0c3f8a2e9b11",
            )
            .env("FUNCTIONS_APP_ROOT_PATH", workdir)
            .env("RUST_LOG", "info")
            .env_remove("SOMMELIER_PUSHGATEWAY_URL")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if std::env::var_os("SOMMELIER_TEST_LOGS").is_some() {
            command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        if let Some(log) = log {
            let file = std::fs::File::create(log).expect("the server's log file");
            command
                .stdout(file.try_clone().expect("the log file"))
                .stderr(file);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn the sommelier binary");
        let started = Instant::now();
        let mut server = Server {
            port,
            child,
            readiness: Duration::ZERO,
        };
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && server.raw_get("/").is_some()
            {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("sommelier exited during startup: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not ready after 30 s (the host's initializationTimeout)"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        server.readiness = started.elapsed();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Waits until `/api/health` says healthy (the first start trains a model).
    pub async fn wait_healthy(&self, client: &reqwest::Client) -> Value {
        wait_healthy(self, client).await
    }

    /// A minimal blocking GET, as the host's readiness probe: any HTTP answer counts.
    fn raw_get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1").then_some(answer)
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

/// The bundled CSV.
pub fn bundled_csv() -> Vec<u8> {
    std::fs::read(repo_root().join("data/winequality-red.csv")).expect("bundled data")
}

/// `GET path` on the server, its body as JSON.
pub async fn get_json(server: &impl Address, path: &str) -> Value {
    client()
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

/// `GET path` on the server, its body as text.
pub async fn get_text(server: &impl Address, path: &str) -> String {
    client()
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A server's base address.
pub trait Address {
    fn url(&self, path: &str) -> String;
}

impl<T: Address> Address for &T {
    fn url(&self, path: &str) -> String {
        (*self).url(path)
    }
}

impl Address for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }
}

/// Waits until `/api/health` says healthy (the first start trains a model).
pub async fn wait_healthy(server: &impl Address, client: &reqwest::Client) -> Value {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(server.url("/api/health")).send().await {
            if response.status() == 200 {
                return response.json().await.expect("health JSON");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no healthy model after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server in the test's own process: `server::run` on a listener of the test's, with
/// settings from a lookup (never the process environment) and a shutdown the test owns. For
/// tests that need no process of their own: the metrics are the whole process's, so tests
/// that read metric values run the binary.
pub struct InProcess {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), sommelier::server::ServerError>>>,
}

impl InProcess {
    /// Serves a store in `store` with the settings `variables` on top of the defaults.
    pub async fn start(store: &Path, variables: &[(&str, &str)]) -> InProcess {
        let variables: std::collections::HashMap<String, String> = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let settings =
            sommelier::config::Settings::from_lookup(Some(&store.display().to_string()), |name| {
                variables.get(name).cloned()
            })
            .expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let serving = tokio::spawn(sommelier::server::run(listener, settings, shutdown));
        InProcess {
            port,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Shuts the server down as a signal would, and waits for it to stop.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(30), serving).await;
            assert!(
                matches!(stopped, Ok(Ok(Ok(())))),
                "the server stops cleanly: {stopped:?}"
            );
        }
    }
}

impl Address for InProcess {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// Forces a training over HTTP and checks that it added `labelled` rows from feedback to the
/// bundled data: in its row count and in its card's source.
pub async fn train_adds_labelled_rows(server: &impl Address, labelled: usize) {
    let trained: Value = client()
        .post(server.url("/api/train?force=true"))
        .send()
        .await
        .expect("train")
        .json()
        .await
        .expect("JSON");
    assert_eq!(trained["rows"], 1599 + labelled, "{trained}");
    let models = get_json(server, "/api/models").await;
    let card = models["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"] == trained["version"])
        .expect("the new version")
        .clone();
    let source = card["source"].as_str().expect("source");
    assert!(
        source.ends_with(&format!("+ {labelled} labelled rows from feedback")),
        "{card}"
    );
}

/// `POST path` with `body` of `content_type`: the status, the `x-prediction-id` header and
/// the JSON answer.
pub async fn post_for_id(
    server: &impl Address,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, Option<String>, Value) {
    let response = client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-prediction-id")
        .map(|v| v.to_str().expect("ascii").to_string());
    (status, id, response.json().await.expect("JSON"))
}
