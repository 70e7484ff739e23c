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

/// Without JavaScript: the server's page explains a valid submission (bars, interval, exact
/// table), echoes an invalid one with the field marked, and gives the training range of a
/// value outside it; a screenshot of each (kept with `SOMMELIER_KEEP_SCREENSHOT=DIR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_shows_why_and_how_sure_without_javascript_in_chromium() {
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
    server.wait_healthy(&client()).await;
    let prefix = dir.path().join("why");
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/why.cjs"))
        .arg(server.url("/api/predict?code=functionkey"))
        .arg(&prefix)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let valid = &seen["valid"];
    let result = valid["result"].as_str().expect("result");
    assert!(
        result.starts_with("Predicted quality: ") && result.contains("= average"),
        "{seen}"
    );
    assert_eq!(valid["bars"], 7, "six bars and the rest: {seen}");
    assert_eq!(
        (valid["interval"].as_u64(), valid["details"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(result.contains("holdout RMSE"), "{seen}");
    assert_eq!(valid["values"]["alcohol"], "12.8", "{seen}");
    let invalid = &seen["invalid"];
    assert_eq!(
        invalid["invalid"],
        serde_json::json!(["volatile_acidity"]),
        "{seen}"
    );
    assert_eq!(invalid["values"]["volatile_acidity"], "-1", "{seen}");
    assert_eq!(invalid["values"]["alcohol"], "12.8", "{seen}");
    assert!(
        !invalid["result"].as_str().unwrap_or("`").contains('`'),
        "{seen}"
    );
    let outside = &seen["outside"];
    assert!(
        outside["notes"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("Outside the training range"),
        "{seen}"
    );
    for name in ["valid", "invalid", "outside"] {
        let shot = dir.path().join(format!("why-{name}.png"));
        assert!(
            std::fs::metadata(&shot)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "a screenshot of the {name} submission"
        );
        if let Some(keep) = std::env::var_os("SOMMELIER_KEEP_SCREENSHOT") {
            let keep = std::path::Path::new(&keep);
            if keep.is_dir() {
                let _ = std::fs::copy(&shot, keep.join(format!("why-{name}.png")));
            }
        }
    }
}
