//! One upload, one training, across instances and cancellations; broken versions listed.
//!
//! - Two server processes sharing one store (a local directory, then an Azurite container)
//!   receive the same blob-trigger envelope at once: exactly one new version; a stale claim
//!   left by a dead instance is taken over, a live one answers `already_training`, and
//!   retention removes expired claims.
//! - `sommelier models` and `GET /api/models` list a non-champion whose `model.bin` was
//!   truncated with its problem; `sommelier models --verify` also catches a same-length
//!   corruption.
//! - An upload envelope whose caller hangs up keeps its training (and the lock) to the end:
//!   a second envelope waits, and trainings never overlap.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sommelier::config::Settings;
use sommelier::model::dataset::sha256_hex;
use sommelier::registry::blob::{BlobUrl, Container, WriteCondition};
use sommelier::registry::claims::{Claim, CLAIM_EXPIRY};
use sommelier::registry::open_registry;
use sommelier::registry::{ModelStore, Registry};

use crate::support;
use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::{binary, bundled_csv, client, free_port, host_string, Server};

/// The bundled data without its last `drop` rows: a distinct upload per `drop`.
fn upload_csv(drop: usize) -> Vec<u8> {
    let text = String::from_utf8(bundled_csv()).expect("utf-8");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = lines[..lines.len() - drop].join("\n");
    out.push('\n');
    out.into_bytes()
}

/// The blob-trigger envelope the host sends for `training-data/{name}`.
fn envelope(name: &str, content: &[u8]) -> Value {
    let uri = format!("https://acct.blob.core.windows.net/training-data/{name}");
    json!({"Data": {"csv": base64::engine::general_purpose::STANDARD.encode(content)},
        "Metadata": {
            "Uri": host_string(&uri),
            "Properties": {"ContentLength": content.len(), "ContentType": "text/csv",
                "ETag": {}, "BlobType": 0, "Metadata": {}},
            "Metadata": {},
            "name": host_string(name),
            "sys": {"MethodName": "retrain-on-upload", "UtcNow": "2026-11-26T06:00:00Z", "RandGuid": "1"}}})
}

/// Delivers an envelope; the HTTP status and the `ReturnValue`.
async fn deliver(server: &Server, body: &Value) -> (u16, Value) {
    let response = client()
        .post(server.url("/retrain-on-upload"))
        .header(
            "X-Azure-Functions-InvocationId",
            "5d0c2f8e-0000-4000-8000-00000000000a",
        )
        .json(body)
        .send()
        .await
        .expect("the envelope is answered");
    let status = response.status().as_u16();
    let value: Value = response.json().await.expect("envelope JSON");
    (status, value["ReturnValue"].clone())
}

fn status_of(answer: &Value) -> &str {
    answer["status"].as_str().unwrap_or("")
}

/// A claim as a dead (or live) instance would have left it.
fn claim_bytes(instance: &str, unix_seconds: u64) -> Vec<u8> {
    serde_json::to_vec(&Claim {
        instance: instance.to_string(),
        process: None,
        claimed_at: "2026-01-01T00:00:00Z".to_string(),
        claimed_unix_seconds: unix_seconds,
        token: format!("{instance}-{unix_seconds}"),
    })
    .expect("claim JSON")
}

async fn assert_no_claims(registry: &Registry) {
    let claims = registry.store().list_claims().await.expect("claims");
    assert!(claims.is_empty(), "claims left behind: {claims:?}");
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Two instances on one store: one training per upload, claims taken over or respected.
async fn exactly_once(registry: &Registry, a: &Server, b: &Server) {
    let http = client();
    a.wait_healthy(&http).await;
    b.wait_healthy(&http).await;
    let before = registry.store().list_versions().await.expect("list").len();

    // The same envelope to both instances at once.
    let csv = upload_csv(7);
    let body = envelope("same.csv", &csv);
    let (first, second) = tokio::join!(deliver(a, &body), deliver(b, &body));
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let statuses = [status_of(&first.1), status_of(&second.1)];
    let trained = statuses
        .iter()
        .filter(|s| matches!(**s, "promoted" | "kept_champion"))
        .count();
    assert_eq!(trained, 1, "exactly one instance trains: {statuses:?}");
    assert!(
        statuses
            .iter()
            .any(|s| matches!(*s, "already_training" | "duplicate")),
        "{statuses:?}"
    );
    let after = registry.store().list_versions().await.expect("list");
    assert_eq!(after.len(), before + 1, "one new version: {after:?}");
    // A later redelivery finds the version; no claim is left behind.
    let (_, again) = deliver(b, &body).await;
    assert_eq!(status_of(&again), "duplicate", "{again}");
    assert_no_claims(registry).await;

    // A live claim of another instance: this delivery does not train.
    let live = upload_csv(11);
    let live_key = sha256_hex(&live);
    let live_tag = registry
        .store()
        .create_claim(&live_key, claim_bytes("busy-instance", now_unix()))
        .await
        .expect("live claim");
    let (status, busy) = deliver(a, &envelope("busy.csv", &live)).await;
    assert_eq!(status, 200);
    assert_eq!(status_of(&busy), "already_training", "{busy}");
    assert_eq!(busy["instance"], "busy-instance");
    assert_eq!(
        registry.store().list_versions().await.expect("list").len(),
        before + 1
    );
    assert!(registry
        .store()
        .delete_claim(&live_key, &live_tag)
        .await
        .expect("release"));

    // A stale claim (its instance died long ago): taken over, trained, released.
    let stale = upload_csv(13);
    registry
        .store()
        .create_claim(&sha256_hex(&stale), claim_bytes("dead-instance", 1_000))
        .await
        .expect("stale claim");
    let (status, taken) = deliver(b, &envelope("stale.csv", &stale)).await;
    assert_eq!(status, 200);
    assert!(
        matches!(status_of(&taken), "promoted" | "kept_champion"),
        "{taken}"
    );
    assert_eq!(
        registry.store().list_versions().await.expect("list").len(),
        before + 2
    );
    assert_no_claims(registry).await;

    // Retention removes an expired claim and keeps a live one.
    registry
        .store()
        .create_claim("0ld", claim_bytes("dead-instance", 1_000))
        .await
        .expect("expired claim");
    let fresh = registry
        .store()
        .create_claim("fresh", claim_bytes("busy-instance", now_unix()))
        .await
        .expect("live claim");
    let report = registry
        .retain_with(100, Duration::from_secs(3600))
        .await
        .expect("retention");
    assert_eq!(report.claims, vec!["0ld"]);
    assert_eq!(
        registry.store().list_claims().await.expect("claims"),
        vec!["fresh"]
    );
    assert!(CLAIM_EXPIRY > Duration::from_secs(30 * 60));
    registry
        .store()
        .delete_claim("fresh", &fresh)
        .await
        .expect("release");
}

/// A non-champion version, for corrupting.
async fn non_champion(registry: &Registry) -> String {
    let champion = registry
        .champion()
        .await
        .expect("pointer")
        .expect("champion")
        .champion
        .version;
    registry
        .store()
        .list_versions()
        .await
        .expect("list")
        .into_iter()
        .find(|v| *v != champion)
        .expect("a non-champion version")
}

/// `sommelier models --json [--verify]` with the store settings in `env`.
fn models_cli(env: &[(&str, String)], verify: bool) -> Value {
    let mut command = Command::new(binary());
    command.args(["models", "--json"]);
    if verify {
        command.arg("--verify");
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run sommelier models");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("models JSON");
    // `--verify` exits 1 when a version cannot serve, still printing the listing.
    let broken = listed["broken"].as_array().is_some_and(|b| !b.is_empty());
    assert_eq!(
        output.status.success(),
        !(verify && broken),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    listed
}

fn problem_of(listing: &Value, version: &str) -> Option<String> {
    listing["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("{version} is not listed: {listing}"))["problem"]
        .as_str()
        .map(str::to_string)
}

/// Truncation shows in every listing; a same-length corruption only under `--verify`.
async fn broken_versions_are_listed(
    server: &Server,
    env: &[(&str, String)],
    victim: &str,
    write_model: impl AsyncWriteModel,
) {
    let original = write_model.read().await;
    assert_eq!(problem_of(&models_cli(env, false), victim), None);
    assert_eq!(problem_of(&models_cli(env, true), victim), None);

    write_model
        .write(original[..original.len() / 2].to_vec())
        .await;
    let listed = models_cli(env, false);
    let problem = problem_of(&listed, victim).expect("a truncated model is flagged");
    assert!(problem.contains("bytes"), "{problem}");
    let api = support::get_json(server, "/api/models").await;
    let problem = problem_of(&api, victim).expect("the API flags it too");
    assert!(problem.contains("model.bin"), "{problem}");

    let mut same_length = original.clone();
    let middle = same_length.len() / 2;
    same_length[middle] ^= 0x5a;
    write_model.write(same_length).await;
    assert_eq!(problem_of(&models_cli(env, false), victim), None);
    let problem = problem_of(&models_cli(env, true), victim).expect("--verify catches it");
    assert!(problem.contains("SHA-256"), "{problem}");

    write_model.write(original).await;
    assert_eq!(problem_of(&models_cli(env, true), victim), None);
}

/// Reads and overwrites one version's `model.bin` behind the store's back.
trait AsyncWriteModel {
    async fn read(&self) -> Vec<u8>;
    async fn write(&self, bytes: Vec<u8>);
}

struct LocalModel(std::path::PathBuf);

impl AsyncWriteModel for LocalModel {
    async fn read(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("model.bin")
    }
    async fn write(&self, bytes: Vec<u8>) {
        std::fs::write(&self.0, bytes).expect("overwrite model.bin");
    }
}

struct BlobModel {
    container: Container,
    name: String,
}

impl AsyncWriteModel for BlobModel {
    async fn read(&self) -> Vec<u8> {
        self.container
            .read(&self.name)
            .await
            .expect("model.bin")
            .bytes
    }
    async fn write(&self, bytes: Vec<u8>) {
        self.container
            .write(
                &self.name,
                bytes,
                WriteCondition::Overwrite,
                "application/octet-stream",
            )
            .await
            .expect("overwrite model.bin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_one_training_per_upload_and_broken_versions_listed() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let env = vec![("SOMMELIER_STORE", store.display().to_string())];
    let a = Server::start(dir.path(), &env);
    a.wait_healthy(&client()).await;
    let b = Server::start(dir.path(), &env);
    let registry = open_registry(&Settings::from_env(Some(&store.display().to_string())).unwrap())
        .await
        .expect("registry");
    exactly_once(&registry, &a, &b).await;

    let victim = non_champion(&registry).await;
    let model = LocalModel(store.join(&victim).join("model.bin"));
    broken_versions_are_listed(&a, &env, &victim, model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn blob_store_one_training_per_upload_and_broken_versions_listed() {
    let azurite = Azurite::start();
    let models = azurite.container_url("models");
    let dir = tempfile::tempdir().expect("workdir");
    let env = vec![
        ("SOMMELIER_STORE", models.clone()),
        (
            "SOMMELIER_STORAGE_CONNECTION_STRING",
            DEV_STORAGE.to_string(),
        ),
    ];
    let a = Server::start(dir.path(), &env);
    a.wait_healthy(&client()).await;
    let b = Server::start(dir.path(), &env);
    let mut settings = Settings::from_env(Some(&models)).expect("settings");
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    settings.storage_ca_file = None;
    let registry = open_registry(&settings).await.expect("registry");
    exactly_once(&registry, &a, &b).await;

    let victim = non_champion(&registry).await;
    let container = Container::open(&BlobUrl::parse(&models).unwrap(), &settings).unwrap();
    let model = BlobModel {
        container,
        name: format!("{victim}/model.bin"),
    };
    broken_versions_are_listed(&a, &env, &victim, model).await;
}

/// Starts `sommelier serve` on `store` with its log in `log`.
fn serve_with_log(workdir: &Path, store: &Path, log: &Path) -> Server {
    let port = free_port();
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(binary())
        .arg("serve")
        .current_dir(workdir)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("SOMMELIER_STORE", store)
        .env("SOMMELIER_LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("SOMMELIER_PUSHGATEWAY_URL")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("spawn sommelier");
    let server = Server {
        port,
        child,
        readiness: Duration::ZERO,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "not listening");
        std::thread::sleep(Duration::from_millis(25));
    }
    server
}

/// Sends an envelope and hangs up after `after`, without reading the answer.
fn send_and_hang_up(server: &Server, body: &Value, after: Duration) {
    let body = serde_json::to_vec(body).expect("envelope");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        stream,
        "POST /retrain-on-upload HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.port,
        body.len()
    )
    .expect("headers");
    stream.write_all(&body).expect("body");
    stream.flush().expect("flush");
    std::thread::sleep(after);
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_keeps_its_training_and_the_lock() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let server = serve_with_log(dir.path(), &store, &log);
    server.wait_healthy(&client()).await;
    let registry = open_registry(&Settings::from_env(Some(&store.display().to_string())).unwrap())
        .await
        .expect("registry");
    let before = registry.store().list_versions().await.expect("list").len();

    send_and_hang_up(
        &server,
        &envelope("hung-up.csv", &upload_csv(3)),
        Duration::from_millis(50),
    );
    let (status, second) = deliver(&server, &envelope("next.csv", &upload_csv(5))).await;
    assert_eq!(status, 200);
    assert!(
        matches!(status_of(&second), "promoted" | "kept_champion"),
        "{second}"
    );
    // The abandoned invocation's training finished too (it ran first, holding the lock).
    let started = Instant::now();
    while registry.store().list_versions().await.expect("list").len() < before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the hung-up upload's training never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sources: Vec<String> = registry
        .cards()
        .await
        .expect("cards")
        .into_iter()
        .map(|c| c.source.name)
        .collect();
    assert!(sources.iter().any(|s| s == "hung-up.csv"), "{sources:?}");
    assert!(sources.iter().any(|s| s == "next.csv"), "{sources:?}");

    // Trainings never overlapped: every start is followed by its end before the next start.
    let text = std::fs::read_to_string(&log).expect("log");
    let mut running = false;
    let mut trainings = 0;
    for line in text.lines() {
        if line.contains("training started") {
            assert!(!running, "two trainings at once:\n{text}");
            running = true;
            trainings += 1;
        } else if line.contains("training finished")
            || line.contains("training did not produce a model")
        {
            assert!(running, "an end without a start:\n{text}");
            running = false;
        }
    }
    assert!(!running, "{text}");
    assert_eq!(
        trainings, 3,
        "the first model and both uploads, one after the other:\n{text}"
    );
}

/// The bundled data `times` times over, each copy's alcohol moved by a little: a larger
/// upload whose training takes several seconds.
fn larger_csv(times: usize) -> Vec<u8> {
    let text = String::from_utf8(bundled_csv()).expect("utf-8");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut out = format!("{header}\n");
    for copy in 0..times {
        for row in &rows {
            let mut fields: Vec<String> = row.split(',').map(str::to_string).collect();
            let alcohol: f64 = fields[10].parse().expect("alcohol");
            fields[10] = format!("{:.3}", alcohol + copy as f64 * 0.001);
            out.push_str(&fields.join(","));
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// A store outage in the middle of an upload's training: the delivery fails with 503 and the
/// claim cannot be released then; the host's retry once the store is back trains the upload
/// (one version), instead of being told for 35 minutes that it is "already being trained".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn an_upload_cut_off_by_a_store_outage_is_trained_on_the_hosts_retry() {
    let mut azurite = Azurite::start();
    let models = azurite.container_url("models");
    let dir = tempfile::tempdir().expect("workdir");
    let env = vec![
        ("SOMMELIER_STORE", models.clone()),
        (
            "SOMMELIER_STORAGE_CONNECTION_STRING",
            DEV_STORAGE.to_string(),
        ),
    ];
    let server = Server::start(dir.path(), &env);
    server.wait_healthy(&client()).await;
    let mut settings = Settings::from_env(Some(&models)).expect("settings");
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    settings.storage_ca_file = None;
    let registry = open_registry(&settings).await.expect("registry");
    let before = registry.store().list_versions().await.expect("list").len();

    let body = envelope("outage.csv", &larger_csv(40));
    let outage = async {
        let started = Instant::now();
        while registry
            .store()
            .list_claims()
            .await
            .expect("claims")
            .is_empty()
        {
            assert!(started.elapsed() < Duration::from_secs(60), "no claim made");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Past Azurite's metadata autosave, so that the claim outlives the crash.
        tokio::time::sleep(Duration::from_secs(6)).await;
        azurite.kill();
    };
    let ((status, first), ()) = tokio::join!(deliver(&server, &body), outage);
    assert_eq!(
        status, 503,
        "the store failed: the host must retry: {first}"
    );
    azurite.resume();

    let (status, retried) = deliver(&server, &body).await;
    assert_eq!(status, 200, "{retried}");
    assert!(
        matches!(status_of(&retried), "promoted" | "kept_champion"),
        "the retry trains the upload: {retried}"
    );
    assert_eq!(
        registry.store().list_versions().await.expect("list").len(),
        before + 1
    );
    assert_no_claims(&registry).await;
}

/// A claim names its process: a claim left by an earlier process with this server's id (a
/// restart after SIGKILL, in a container always the same id) or by a process of this machine
/// that no longer runs is taken over at once, not respected until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_dead_processes_on_this_machine_are_taken_over_at_once() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let server = Server::start(
        dir.path(),
        &[
            ("SOMMELIER_STORE", store.display().to_string()),
            ("HOSTNAME", "claims-test-host".to_string()),
        ],
    );
    server.wait_healthy(&client()).await;
    let registry = Registry::new(sommelier::registry::Store::Local(
        sommelier::registry::LocalStore::new(&store),
    ));
    let mut exited = Command::new("true").spawn().expect("spawn");
    let dead_pid = exited.id();
    exited.wait().expect("exit");
    for (drop, pid) in [(17, server.child.id()), (19, dead_pid)] {
        let csv = upload_csv(drop);
        let claim = Claim {
            process: Some(sommelier::registry::claims::HolderProcess {
                pid,
                started_unix_millis: 1,
            }),
            ..serde_json::from_slice(&claim_bytes("claims-test-host", now_unix())).expect("claim")
        };
        registry
            .store()
            .create_claim(&sha256_hex(&csv), serde_json::to_vec(&claim).expect("json"))
            .await
            .expect("claim");
        let (status, answer) = deliver(&server, &envelope("left.csv", &csv)).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            matches!(status_of(&answer), "promoted" | "kept_champion"),
            "pid {pid}: {answer}"
        );
    }
    assert_no_claims(&registry).await;
}

/// An upload whose quality labels were all moved (here every wine rated 10) beats the
/// champion on its own rows by construction; it is stored but not promoted, the reason names
/// the label shift, and the serving model's predictions do not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_upload_is_stored_but_not_promoted() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let server = Server::start(
        dir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    server.wait_healthy(&client()).await;
    let predict = || async {
        let answer: Value = client()
            .post(server.url("/api/predict"))
            .json(&support::wine())
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        answer["prediction"].as_f64().expect("a prediction")
    };
    let before = predict().await;
    let text = String::from_utf8(bundled_csv()).expect("utf-8");
    let mut poisoned = String::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if i == 0 {
            poisoned.push_str(line);
        } else {
            let (features, _) = line.rsplit_once(',').expect("quality");
            poisoned.push_str(&format!("{features},10"));
        }
        poisoned.push('\n');
    }
    let (status, answer) = deliver(&server, &envelope("poisoned.csv", poisoned.as_bytes())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&answer), "kept_champion", "{answer}");
    let report = &answer["report"];
    assert_eq!(report["held_for_label_shift"], true, "{answer}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or("")
            .contains("label PSI"),
        "{answer}"
    );
    assert_eq!(predict().await, before, "the champion still serves");
    let metrics = support::get_text(&server, "/api/metrics").await;
    assert!(
        metrics.contains("sommelier_training_held_for_label_shift 1"),
        "the alert's gauge is set"
    );
}

/// A rejected upload of one 50 MB line (a "header" of one column) is answered, logged and
/// reported in a few hundred bytes of it, not twice its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_upload_quotes_only_a_little_of_itself() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let server = serve_with_log(dir.path(), &store, &log);
    server.wait_healthy(&client()).await;
    let line = vec![b'a'; 50 * 1024 * 1024];
    let response = client()
        .post(server.url("/retrain-on-upload"))
        .json(&envelope("one-line.csv", &line))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(text.len() < 8 * 1024, "answer of {} bytes", text.len());
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["ReturnValue"]["status"], "rejected", "{text}");
    let logged = std::fs::metadata(&log).expect("log").len();
    assert!(logged < 64 * 1024, "log of {logged} bytes");
}

/// A small tmpfs mounted on a directory for a test's life (needs root; unmounted on drop).
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mounting a small tmpfs needs root");
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    fn make_read_only(&self) {
        let remounted = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(remounted.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn staging_leftovers(store: &Path) -> Vec<String> {
    std::fs::read_dir(store)
        .expect("store")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(".partial-"))
        .collect()
}

/// A store that fills up: every failed training removes what it staged, health says the
/// store refuses writes; once it is read-only, the envelope routes answer 503 (the host
/// retries) or 200, never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a tmpfs)"]
async fn a_full_or_read_only_store_leaves_nothing_behind_and_degrades_health() {
    let dir = tempfile::tempdir().expect("workdir");
    let store = dir.path().join("store");
    let disk = SmallDisk::mount(&store, "3m");
    let server = Server::start(
        dir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    let http = client();
    server.wait_healthy(&http).await;
    let mut refused = 0;
    for _ in 0..4 {
        let response = http
            .post(server.url("/api/train?force=true"))
            .send()
            .await
            .expect("an answer");
        if response.status() != 200 {
            refused += 1;
            assert_eq!(staging_leftovers(&store), Vec::<String>::new());
        }
    }
    assert!(refused >= 1, "the 3 MB store filled up");
    let health = support::get_json(&server, "/api/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["degraded"]
            .as_str()
            .unwrap_or("")
            .contains("refused to store"),
        "{health}"
    );

    disk.make_read_only();
    let (status, answer) = deliver(&server, &envelope("read-only.csv", &upload_csv(23))).await;
    assert_eq!(status, 503, "{answer}");
    let timer = json!({"Data": {"timer": {"IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "retrain-on-schedule", "UtcNow": "2026-11-26T06:00:00Z", "RandGuid": "2"}}});
    let response = http
        .post(server.url("/retrain-on-schedule"))
        .json(&timer)
        .send()
        .await
        .expect("an answer");
    assert!(
        matches!(response.status().as_u16(), 200 | 503),
        "{}",
        response.status()
    );
}
