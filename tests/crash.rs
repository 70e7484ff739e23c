//! Crash safety of the registry: the real `sommelier train --force` is killed with SIGKILL at
//! each step of saving and promoting (after `model.bin`, after `card.json`, during the
//! pointer write), several times, on a local directory and on Azurite. After every kill, a
//! fresh registry serves a complete version (the champion itself, no fallback), and one
//! retention pass leaves no orphan. At the end a fresh `sommelier serve` is healthy.
//!
//! The crash points are armed through `SOMMELIER_CRASH_POINT`; the binary announces the step
//! on stdout and waits there to be killed.

// The integration tests' helpers; the crash tests use only some of them.
#[allow(dead_code)]
#[path = "integration/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sommelier::config::Settings;
use sommelier::registry::faults::{ENV, REACHED, STEPS};
use sommelier::registry::open_registry;
use sommelier::registry::{ModelStore, Registry};

use support::azurite::{Azurite, DEV_STORAGE};
use support::{client, Server};

/// Where the store is and how to reach it.
struct Target {
    store: String,
    env: Vec<(&'static str, String)>,
}

impl Target {
    fn command(&self) -> Command {
        let mut command = Command::new(support::binary());
        command
            .args(["--store", &self.store, "--json", "train"])
            .args(["--algorithm", "elastic-net", "--force"])
            .env_remove(ENV)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("SOMMELIER_STORE")
            .env_remove("SOMMELIER_TRAINING_DATA")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    async fn registry(&self) -> Registry {
        let mut settings = Settings::from_env(Some(&self.store)).expect("settings");
        settings.storage_connection_string = self
            .env
            .iter()
            .find(|(k, _)| *k == "SOMMELIER_STORAGE_CONNECTION_STRING")
            .map(|(_, v)| v.clone());
        settings.storage_ca_file = None;
        open_registry(&settings).await.expect("registry")
    }
}

/// Runs a training that stops at `step`, and kills it there with SIGKILL.
fn kill_at(target: &Target, step: &str) {
    let mut child = target
        .command()
        .env(ENV, step)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sommelier");
    let stdout = child.stdout.take().expect("stdout");
    let expected = format!("{REACHED} {step}");
    let reached = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == expected);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(reached, "the training never reached `{step}` ({status})");
}

/// A fresh registry serves the champion itself, complete and loadable.
async fn assert_champion_serves(registry: &Registry) -> String {
    let pointer = registry
        .champion()
        .await
        .expect("pointer readable")
        .expect("a champion");
    let servable = registry
        .servable(&pointer.champion)
        .await
        .expect("a servable version");
    assert_eq!(
        servable.fallback_reason, None,
        "the pointer names a complete version"
    );
    pointer.champion.version
}

/// One retention pass with no age threshold, then: every version complete, no leftovers.
async fn assert_no_orphan_after_retention(
    registry: &Registry,
    leftovers: impl Fn() -> Vec<String>,
) -> usize {
    let report = registry
        .retain_with(1000, Duration::ZERO)
        .await
        .expect("retention");
    let remaining = leftovers();
    assert!(
        remaining.is_empty(),
        "orphans after retention: {remaining:?} (swept {:?})",
        report.swept
    );
    for version in registry.store().list_versions().await.expect("list") {
        registry
            .load(&version)
            .await
            .unwrap_or_else(|e| panic!("listed version {version} is incomplete: {e}"));
    }
    report.swept.len()
}

/// Local store leftovers: anything but complete version directories, the pointer and its lock.
fn local_leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .expect("store directory")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let path = entry.path();
            let complete = path.join("card.json").is_file() && path.join("model.bin").is_file();
            let expected = name == "champion" || name == ".champion.lock" || complete;
            (!expected).then_some(name)
        })
        .collect()
}

async fn crash_many_times(target: &Target, rounds: usize, leftovers: impl Fn() -> Vec<String>) {
    let seeded = target.command().output().expect("seed training");
    assert!(seeded.status.success(), "the first training succeeds");
    let registry = target.registry().await;
    let mut kills = 0;
    let mut swept = 0;
    for _ in 0..rounds {
        for step in STEPS {
            let before = assert_champion_serves(&registry).await;
            kill_at(target, step);
            kills += 1;
            let after = assert_champion_serves(&registry).await;
            assert_eq!(after, before, "a killed promotion never moves the pointer");
            swept += assert_no_orphan_after_retention(&registry, &leftovers).await;
        }
    }
    assert_eq!(kills, rounds * STEPS.len());
    // Every kill after the model file leaves a leftover that only the sweep removes.
    assert!(swept >= rounds, "{swept} leftovers swept in {kills} kills");
}

async fn fresh_instance_is_healthy(target: &Target, expected: &str) {
    let workdir = tempfile::tempdir().expect("workdir");
    let mut env = target.env.clone();
    env.push(("SOMMELIER_STORE", target.store.clone()));
    let server = Server::start(workdir.path(), &env);
    let health = server.wait_healthy(&client()).await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["model_version"], expected, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_never_break_a_local_store() {
    let dir = tempfile::tempdir().expect("store");
    let root = dir.path().join("store");
    let target = Target {
        store: root.display().to_string(),
        env: Vec::new(),
    };
    crash_many_times(&target, 4, || local_leftovers(&root)).await;
    let champion = assert_champion_serves(&target.registry().await).await;
    fresh_instance_is_healthy(&target, &champion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_never_break_a_blob_store() {
    let azurite = Azurite::start();
    let target = Target {
        store: azurite.container_url("models"),
        env: vec![("SOMMELIER_STORAGE_CONNECTION_STRING", DEV_STORAGE.into())],
    };
    let registry = target.registry().await;
    let container = match registry.store() {
        sommelier::registry::Store::Blob(blob) => blob.container().clone(),
        sommelier::registry::Store::Local(_) => unreachable!("a blob store"),
    };
    // Blob listings are async: the leftover check lists on a helper runtime thread.
    let leftovers = {
        move || {
            let container = container.clone();
            let listed = std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(container.list())
                    .expect("list blobs")
            })
            .join()
            .expect("lister");
            let all: BTreeSet<String> = listed.into_iter().map(|e| e.name).collect();
            all.iter()
                .filter(|name| {
                    let complete = |v: &str| {
                        all.contains(&format!("{v}/card.json"))
                            && all.contains(&format!("{v}/model.bin"))
                    };
                    match name.split_once('/') {
                        Some((version, _)) => !complete(version),
                        None => name.as_str() != "champion",
                    }
                })
                .cloned()
                .collect()
        }
    };
    crash_many_times(&target, 2, leftovers).await;
    let champion = assert_champion_serves(&registry).await;
    fresh_instance_is_healthy(&target, &champion).await;
}
