//! A store whose every version is broken (e.g. written by a build that stored an unservable
//! model) is not an outage: a fresh instance trains a new model and serves it.

use crate::support;
use crate::support::{client, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_only_broken_versions_recovers_by_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let trained = std::process::Command::new(support::binary())
        .args(["--store", store.to_str().unwrap(), "--json", "train"])
        .args(["--algorithm", "elastic-net"])
        .env_remove("SOMMELIER_STORE")
        .env_remove("SOMMELIER_TRAINING_DATA")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("train");
    assert!(trained.status.success());
    let broken: serde_json::Value = serde_json::from_slice(&trained.stdout).expect("json");
    let broken = broken["version"].as_str().expect("version").to_string();
    std::fs::write(store.join(&broken).join("model.bin"), b"not a model").unwrap();

    let server = Server::start(
        dir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    let health = server.wait_healthy(&client()).await;
    let serving = health["model_version"]
        .as_str()
        .expect("a model")
        .to_string();
    assert_ne!(serving, broken, "{health}");
    let models = support::get_json(&server, "/api/models").await;
    assert_eq!(models["champion"], serving.as_str(), "{models}");
}
