//! The prediction form in real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `scripts/install-tools.sh`): fill, submit, see the prediction inline.

mod common;

use std::process::Command;

use common::{client, repo_root, Server};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_shows_a_prediction_and_inline_errors_in_chromium() {
    let node_modules = repo_root().join(".tools/node/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run `bash scripts/install-tools.sh`"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &[(
            "SOMMELIER_STORE",
            dir.path().join("store").display().to_string(),
        )],
    );
    let health = server.wait_healthy(&client()).await;
    let screenshot = dir.path().join("form.png");
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/form.cjs"))
        .arg(server.url("/api/predict?code=functionkey"))
        .arg(&screenshot)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let result = seen["result"].as_str().expect("result");
    assert!(result.starts_with("Predicted quality: "), "{seen}");
    assert!(
        result.contains(health["model_version"].as_str().expect("version")),
        "{seen}"
    );
    let value: f64 = result["Predicted quality: ".len()..]
        .split_whitespace()
        .next()
        .expect("number")
        .parse()
        .expect("a number");
    assert!((3.0..=8.5).contains(&value), "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .unwrap_or("")
            .contains("Please enter a value for Density"),
        "{seen}"
    );
    assert_eq!(seen["labels"], 11);
    assert_eq!(
        seen["external"],
        serde_json::json!([]),
        "the page loads nothing from outside"
    );
    assert!(
        std::fs::metadata(&screenshot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot was taken"
    );
    if let Some(keep) = std::env::var_os("SOMMELIER_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&screenshot, keep);
    }
}
